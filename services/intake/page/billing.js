// The customer billing page: the signed-in customer's balance, this
// month's usage by meter, open invoices and recent payments, from
// GET /api/v1/customers/me, and Pay Now, which asks
// POST /billing/create-payment for a Checkout Session and follows its URL.
//
// The credential (an API key or a JWT) comes in the address's fragment,
// /billing#token=..., which browsers never send to a server, or from the
// sign-in form; it is kept in this tab's sessionStorage only. Every value
// shown is set as text, never as markup.
'use strict';

const STORE = 'paystream.billing.token';
const $ = (id) => document.getElementById(id);

function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(STORE, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(STORE);
}

// Minor units as text, exactly: digits are placed, never divided.
function fractionDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency })
      .resolvedOptions().maximumFractionDigits;
  } catch (e) {
    return 2;
  }
}

function decimal(minor, currency) {
  const digits = fractionDigits(currency);
  let s = String(minor);
  const sign = s.startsWith('-') ? '-' : '';
  s = s.replace('-', '').padStart(digits + 1, '0');
  const whole = s.slice(0, s.length - digits);
  return sign + whole + (digits ? '.' + s.slice(s.length - digits) : '');
}

function money(minor, currency) {
  const [whole, frac] = decimal(minor, currency).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return currency.toUpperCase() + ' ' + grouped + (frac !== undefined ? '.' + frac : '');
}

function day(iso) {
  return iso ? iso.slice(0, 10) : '';
}

function say(text, isError) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

async function api(method, path, body, headers) {
  const res = await fetch(path, {
    method,
    headers: Object.assign({ Authorization: 'Bearer ' + sessionStorage.getItem(STORE) },
      body ? { 'Content-Type': 'application/json' } : {}, headers || {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  let json = null;
  try {
    json = await res.json();
  } catch (e) {
    // not JSON: reported below by status
  }
  if (!res.ok) {
    const err = new Error((json && json.error && json.error.message) || 'HTTP ' + res.status);
    err.status = res.status;
    err.code = json && json.error && json.error.code;
    throw err;
  }
  return { status: res.status, body: json };
}

function fill(tableId, rows, empty) {
  const tbody = $(tableId).tBodies[0];
  tbody.replaceChildren();
  if (rows.length === 0) {
    const td = tbody.insertRow().insertCell();
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = 'empty';
    td.textContent = empty;
    return;
  }
  for (const cells of rows) {
    const tr = tbody.insertRow();
    cells.forEach((text, i) => {
      const td = tr.insertCell();
      td.textContent = text;
      if (i === cells.length - 1) td.className = 'num';
    });
  }
}

let customer = null;

function show(c) {
  customer = c;
  $('who').textContent = (c.name ? c.name + ' · ' : '') + c.email;
  $('balance').textContent = money(c.balance_minor, c.currency);
  $('payable').textContent = money(c.payable_minor, c.currency);
  $('pay').disabled = c.payable_minor <= 0;
  fill('usage', c.usage_this_period.meters.map((m) =>
    [m.meter, String(m.quantity), money(m.amount_minor, c.currency)]), 'No usage this month');
  // The quantity column is a number too.
  for (const tr of $('usage').tBodies[0].rows) if (tr.cells.length === 3) tr.cells[1].className = 'num';
  fill('invoices', c.open_invoices.map((i) =>
    [i.id, day(i.created_at), money(i.amount_due_minor, i.currency)]), 'No open invoices');
  fill('payments', c.recent_payments.map((p) =>
    [day(p.created_at), p.state.replace('_', ' '), money(p.amount_minor, p.currency)]),
    'No payments yet');
  $('account').hidden = false;
  $('signin').hidden = true;
}

function signIn(message) {
  sessionStorage.removeItem(STORE);
  $('account').hidden = true;
  $('signin').hidden = false;
  say(message || '', Boolean(message));
}

async function load() {
  say('Loading…');
  try {
    show((await api('GET', '/api/v1/customers/me')).body);
    say('');
  } catch (e) {
    if (e.status === 401) signIn('Sign in again: ' + e.message);
    else if (e.code === 'customer_missing') say('You are not registered for billing yet.', true);
    else say('Your billing could not be loaded: ' + e.message, true);
  }
}

// One key per press of the button: a retried request makes no second
// session.
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'billing-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function pay() {
  $('pay').disabled = true;
  say('Opening the payment page…');
  try {
    const res = await api('POST', '/billing/create-payment',
      { amount: decimal(customer.payable_minor, customer.currency) },
      { 'Idempotency-Key': idempotencyKey() });
    if (res.body && res.body.url) {
      location.assign(res.body.url);
      return;
    }
    say('The payment page is not ready yet; try again in a moment.', true);
  } catch (e) {
    say('The payment could not be started: ' + e.message, true);
  }
  $('pay').disabled = false;
}

document.addEventListener('DOMContentLoaded', () => {
  $('pay').addEventListener('click', pay);
  $('signout').addEventListener('click', () => signIn(''));
  $('signin').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(STORE, $('token').value.trim());
    $('token').value = '';
    load();
  });
  if (takeToken()) load();
  else signIn('');
});
