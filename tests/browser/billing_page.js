// Drives the customer billing page (GET /billing) in headless Chromium as
// a customer would: opens it with a credential in the fragment, reads what
// it shows, saves a screenshot, presses Pay Now and follows the Checkout
// URL. Prints a JSON report for tests/integration/test_billing.c to check.
//
// Environment: PAYSTREAM_INTAKE_URL, BILLING_TOKEN (the customer's JWT),
// BILLING_SCREENSHOT (a .png path), CHROMIUM (default /usr/bin/chromium).
'use strict';

const puppeteer = require('puppeteer-core');

const base = process.env.PAYSTREAM_INTAKE_URL;
const token = process.env.BILLING_TOKEN;
const screenshot = process.env.BILLING_SCREENSHOT;

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // As root (CI), Chromium runs only without its sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const report = { errors: [], dialogs: [], requests: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 900, height: 1000 });
    page.on('pageerror', (e) => report.errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') report.errors.push(m.text()); });
    page.on('dialog', async (d) => { report.dialogs.push(d.message()); await d.dismiss(); });
    // Nothing leaves this machine: the Checkout page is answered here.
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      const url = req.url();
      report.requests.push(req.method() + ' ' + url.replace(base, ''));
      if (url.startsWith(base)) return req.continue();
      return req.respond({ status: 200, contentType: 'text/html', body: '<p>Checkout</p>' });
    });

    await page.goto(`${base}/billing#token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#account:not([hidden])', { timeout: 20000 });
    report.page = await page.evaluate(() => {
      const text = (id) => document.getElementById(id).textContent;
      const rows = (id) => Array.from(document.querySelectorAll(`#${id} tbody tr`),
        (tr) => Array.from(tr.cells, (td) => td.textContent));
      return {
        address: location.href,
        who: text('who'),
        balance: text('balance'),
        payable: text('payable'),
        usage: rows('usage'),
        invoices: rows('invoices'),
        payments: rows('payments'),
        pay_enabled: !document.getElementById('pay').disabled,
        signin_shown: document.getElementById('signin').getClientRects().length > 0,
      };
    });
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

    await Promise.all([
      page.waitForNavigation({ timeout: 20000 }),
      page.click('#pay'),
    ]);
    report.checkout_url = page.url();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((e) => {
  process.stderr.write(`billing_page: ${e.stack || e}\n`);
  process.exit(1);
});
