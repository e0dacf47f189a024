// Writes JWT test vectors to standard output, made and judged by the
// jsonwebtoken library. paystream is stricter than the library's defaults in
// these ways, applied after its verdict: exp and sub are required (sub a
// printable string without spaces, up to 128 bytes), scope must be a string,
// and a payload that is not a JSON object, or a header or payload with a key
// twice, is malformed.
// Run: npm install && npm run generate
'use strict';
const jwt = require('jsonwebtoken');
const crypto = require('crypto');

const NOW = 1763900000;
const LEEWAY = 30;
const SECRET = 'jwt_vector_secret_0123456789abcdef0123456789';
const OTHER = 'jwt_vector_other_secret_fedcba9876543210fedc';
const b64 = (s) => Buffer.from(s).toString('base64url');
const hs256 = (input, secret) => crypto.createHmac('sha256', secret).update(input).digest('base64url');
// A token from raw header and payload text, signed as HS256 would be.
const raw = (header, payload, secret = SECRET) => {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${hs256(input, secret)}`;
};
const sign = (payload, opts = {}) =>
  jwt.sign(payload, opts.secret || SECRET, { algorithm: opts.alg || 'HS256', noTimestamp: true });

function verdict(token) {
  let claims;
  try {
    claims = jwt.verify(token, SECRET, { algorithms: ['HS256'], clockTimestamp: NOW, clockTolerance: LEEWAY });
  } catch (e) {
    const m = String(e.message);
    if (e.name === 'TokenExpiredError') return 'token_expired';
    if (e.name === 'NotBeforeError') return 'token_not_yet_valid';
    if (/invalid algorithm|jwt signature is required/.test(m)) return 'unsupported_algorithm';
    if (/invalid signature/.test(m)) return 'bad_signature';
    if (/jwt malformed|jwt must be provided|invalid token|Unexpected token|JSON/.test(m)) return 'malformed_token';
    if (/invalid (exp|nbf) value/.test(m)) return 'bad_claims';
    throw e;
  }
  const [h, p] = token.split('.').slice(0, 2).map((x) => Buffer.from(x, 'base64url').toString());
  const object = (text) => { try { const v = JSON.parse(text); return v !== null && typeof v === 'object' && !Array.isArray(v); } catch (e) { return false; } };
  const dup = (text) => { const keys = [...text.matchAll(/"(\w+)":/g)].map((k) => k[1]); return new Set(keys).size !== keys.length; };
  if (!object(p) || dup(h) || dup(p)) return 'malformed_token';
  const sub = claims.sub;
  if (typeof claims.exp !== 'number' || typeof sub !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(sub) ||
      (claims.scope !== undefined && typeof claims.scope !== 'string')) return 'bad_claims';
  return 'ok';
}

const base = { sub: 'user_42', exp: NOW + 600 };
const good = sign(base);
const [gh, gp, gs] = good.split('.');
const cases = [
  ['valid', good],
  ['valid_admin_scope', sign({ ...base, scope: 'read admin write' })],
  ['valid_scope_without_admin', sign({ ...base, scope: 'administrator read' })],
  ['valid_nbf_past', sign({ ...base, nbf: NOW - 10 })],
  ['valid_nbf_within_leeway', sign({ ...base, nbf: NOW + LEEWAY })],
  ['valid_exp_within_leeway', sign({ ...base, exp: NOW - LEEWAY + 1 })],
  ['valid_fractional_exp', raw('{"alg":"HS256","typ":"JWT"}', `{"sub":"user_42","exp":${NOW + 0.5}}`)],
  ['expired', sign({ ...base, exp: NOW - LEEWAY })],
  ['not_yet_valid', sign({ ...base, nbf: NOW + LEEWAY + 1 })],
  ['wrong_secret', sign(base, { secret: OTHER })],
  ['tampered_payload', `${gh}.${b64(JSON.stringify({ ...base, sub: 'user_1' }))}.${gs}`],
  ['alg_none', `${b64('{"alg":"none","typ":"JWT"}')}.${gp}.`],
  ['alg_none_with_signature', `${b64('{"alg":"none","typ":"JWT"}')}.${gp}.${gs}`],
  ['alg_hs512', sign(base, { alg: 'HS512' })],
  ['alg_hs384', sign(base, { alg: 'HS384' })],
  ['alg_lowercase', raw('{"alg":"hs256","typ":"JWT"}', JSON.stringify(base))],
  ['alg_missing', raw('{"typ":"JWT"}', JSON.stringify(base))],
  ['duplicate_alg', raw('{"alg":"none","alg":"HS256"}', JSON.stringify(base))],
  ['duplicate_sub', raw('{"alg":"HS256"}', `{"sub":"user_1","sub":"user_42","exp":${NOW + 600}}`)],
  ['no_exp', sign({ sub: 'user_42' })],
  ['exp_string', raw('{"alg":"HS256"}', `{"sub":"user_42","exp":"${NOW + 600}"}`)],
  ['no_sub', sign({ exp: NOW + 600 })],
  ['sub_number', sign({ sub: 42, exp: NOW + 600 })],
  ['sub_empty', sign({ sub: '', exp: NOW + 600 })],
  ['sub_with_space', sign({ sub: 'user 42', exp: NOW + 600 })],
  ['sub_too_long', sign({ sub: 'u'.repeat(129), exp: NOW + 600 })],
  ['sub_longest', sign({ sub: 'u'.repeat(128), exp: NOW + 600 })],
  ['scope_array', sign({ ...base, scope: ['admin'] })],
  ['two_parts', `${gh}.${gp}`],
  ['four_parts', `${good}.${gs}`],
  ['empty', ''],
  ['payload_not_json', `${gh}.${b64('not json')}.${hs256(`${gh}.${b64('not json')}`, SECRET)}`],
  ['payload_array', raw('{"alg":"HS256"}', '[1,2]')],
  ['signature_truncated', `${gh}.${gp}.${gs.slice(0, 42)}`],
  ['signature_padded', `${gh}.${gp}.${gs}=`],
];
process.stdout.write(JSON.stringify({
  generated_with: `jsonwebtoken ${require('jsonwebtoken/package.json').version}`,
  secret: SECRET, now: NOW, leeway: LEEWAY,
  cases: cases.map(([name, token]) => ({ name, token, expect: verdict(token) })),
}, null, 2) + '\n');
