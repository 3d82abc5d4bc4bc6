// Access tokens in Twilio's format (HS256 JWT, `cty: twilio-fpa;v=1`), minted with node:crypto.

import { createHmac, randomBytes } from 'node:crypto';

const b64url = (value) => Buffer.from(value).toString('base64url');

/**
 * Mints an access token.
 *
 * - `ttl` (seconds, default 3600) sets `exp = now + ttl`; `exp`/`nbf` (Unix seconds) override it directly,
 *   e.g. `{ exp: now - 60 }` for an expired token.
 * - `serviceSid` adds `grants.chat.service_sid` (the server's default service when omitted).
 * - `keySecret` signs; pass another secret for a token the server must reject.
 */
export function mintToken({ accountSid, keySid, keySecret, identity, ttl = 3600, nbf, exp, serviceSid, now }) {
  const issuedAt = now ?? Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'HS256', cty: 'twilio-fpa;v=1' };
  const chat = serviceSid ? { service_sid: serviceSid } : {};
  const claims = {
    jti: `${keySid}-${issuedAt}-${randomBytes(4).toString('hex')}`,
    iss: keySid,
    sub: accountSid,
    nbf: nbf ?? issuedAt,
    exp: exp ?? issuedAt + ttl,
    grants: { identity, chat },
  };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', keySecret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/** The same token with one character of its signature changed: well-formed, but its signature is wrong. */
export function tamperSignature(token) {
  const cut = token.lastIndexOf('.') + 1;
  const signature = token.slice(cut);
  const first = signature[0] === 'A' ? 'B' : 'A';
  return token.slice(0, cut) + first + signature.slice(1);
}

/** The same token with its claims changed (another identity) but the original signature. */
export function tamperClaims(token, identity) {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  claims.grants.identity = identity;
  return `${header}.${b64url(JSON.stringify(claims))}.${signature}`;
}

/** The decoded claims of a token (no verification): for assertions on what a test minted. */
export function decodeClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}
