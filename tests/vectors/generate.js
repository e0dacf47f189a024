// Writes Stripe webhook signature test vectors to standard output, made and
// judged by Stripe's official library. Run: npm install && npm run generate
'use strict';
const Stripe = require('stripe');
const stripe = new Stripe('sk_test_vectors_only');

const NOW = 1763900000;
const SECRET = 'whsec_vector_secret_one_0123456789abcdef';
const OLD_SECRET = 'whsec_vector_secret_old_fedcba9876543210';
const payload = JSON.stringify({
  id: 'evt_vector_1', object: 'event', type: 'payment_intent.succeeded', created: NOW,
  data: { object: { id: 'pi_vector_1', object: 'payment_intent', amount: 2999, currency: 'usd' } },
});
const unicode = JSON.stringify({ id: 'evt_vector_2', object: 'event', type: 'customer.updated',
  created: NOW, data: { object: { id: 'cus_1', name: 'Zoë Ångström — 東京' } } });

const sign = (body, secret, t) =>
  stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp: t });
const v1Of = (header) => header.split(',').find((p) => p.startsWith('v1=')).slice(3);

// Stripe's own verdict: try each secret as a rolling receiver would.
function verdict(body, header, secrets) {
  let last = 'signature_mismatch';
  for (const secret of secrets) {
    try {
      stripe.webhooks.constructEvent(body, header, secret, 300, undefined, NOW * 1000);
      return 'ok';
    } catch (e) {
      const m = String(e.message);
      if (/No stripe-signature header/i.test(m)) return 'missing_signature';
      if (/Unable to extract timestamp and signatures|No signatures found with expected scheme/i.test(m)) return 'malformed_signature';
      if (/tolerance/i.test(m)) last = 'timestamp_too_old';
      else if (!/No signatures found matching/i.test(m)) throw e;
    }
  }
  return last;
}

const good = sign(payload, SECRET, NOW);
const cases = [
  { name: 'valid', body: payload, header: good, secrets: [SECRET] },
  { name: 'valid_unicode_body', body: unicode, header: sign(unicode, SECRET, NOW), secrets: [SECRET] },
  { name: 'rolled_secret_signed_with_old', body: payload, header: sign(payload, OLD_SECRET, NOW),
    secrets: [SECRET, OLD_SECRET] },
  { name: 'rolled_secret_signed_with_new', body: payload, header: good, secrets: [OLD_SECRET, SECRET] },
  { name: 'wrong_secret', body: payload, header: sign(payload, OLD_SECRET, NOW), secrets: [SECRET] },
  { name: 'tampered_body', body: payload.replace('2999', '2990'), header: good, secrets: [SECRET] },
  { name: 'stale_timestamp', body: payload, header: sign(payload, SECRET, NOW - 301), secrets: [SECRET] },
  { name: 'oldest_accepted_timestamp', body: payload, header: sign(payload, SECRET, NOW - 300),
    secrets: [SECRET] },
  { name: 'timestamp_changed_after_signing', body: payload,
    header: good.replace(`t=${NOW}`, `t=${NOW + 1}`), secrets: [SECRET] },
  { name: 'missing_header', body: payload, header: '', secrets: [SECRET] },
  { name: 'garbled_header', body: payload, header: 'garbage', secrets: [SECRET] },
  { name: 'no_v1', body: payload, header: `t=${NOW}`, secrets: [SECRET] },
  { name: 'only_v0_scheme', body: payload, header: `t=${NOW},v0=${v1Of(good)}`, secrets: [SECRET] },
  { name: 'second_v1_matches', body: payload, header: `t=${NOW},v1=${'0'.repeat(64)},v1=${v1Of(good)}`,
    secrets: [SECRET] },
  { name: 'v0_and_v1', body: payload, header: `t=${NOW},v1=${v1Of(good)},v0=abc`, secrets: [SECRET] },
  { name: 'uppercase_hex', body: payload, header: `t=${NOW},v1=${v1Of(good).toUpperCase()}`,
    secrets: [SECRET] },
  { name: 'truncated_signature', body: payload, header: `t=${NOW},v1=${v1Of(good).slice(0, 63)}`,
    secrets: [SECRET] },
].map((c) => ({ ...c, now: NOW, expect: verdict(c.body, c.header, c.secrets) }));

// Where paystream is deliberately stricter than Stripe's library: a
// timestamp further ahead than the tolerance is refused too.
const future = { name: 'future_timestamp', body: payload, header: sign(payload, SECRET, NOW + 301),
  secrets: [SECRET], now: NOW };
future.stripe_library_says = verdict(future.body, future.header, future.secrets);
future.expect = 'timestamp_in_future';
cases.push(future);

process.stdout.write(JSON.stringify({ generated_with: `stripe ${Stripe.PACKAGE_VERSION || require('fs').readFileSync(require.resolve('stripe').replace(/cjs.*$/, 'package.json'), 'utf8').match(/"version": "([^"]+)"/)[1]}`,
  tolerance: 300, cases }, null, 2) + '\n');
