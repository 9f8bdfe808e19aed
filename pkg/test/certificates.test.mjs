// Certificate-mode bootstrap: the first GET /v3/certificates is verified with the certificate it
// carries (only the APIv3 key decrypts it), later ones with the keys held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as wx from 'wxpay-wasm';
import { fixturesDir } from './vector-runner.mjs';

const dir = fixturesDir();
const c = JSON.parse(readFileSync(join(dir, 'v3_certificates.json'), 'utf8')).cases[0];
const platformPrivate = readFileSync(join(dir, 'keys', 'platform_private_key.pem'), 'utf8');
const serial = c.certificates[0].serial_no;

function signed(body, { nonce = 'n1', ts = Math.floor(Date.now() / 1000) } = {}) {
  const sig = crypto.sign('sha256', Buffer.from(`${ts}\n${nonce}\n${body}\n`), platformPrivate).toString('base64');
  return { 'Wechatpay-Timestamp': String(ts), 'Wechatpay-Nonce': nonce, 'Wechatpay-Signature': sig,
    'Wechatpay-Serial': serial };
}

for (const provider of ['platform', 'rust']) {
  test(`verifyCertificatesResponse bootstraps an empty key set (${provider})`, () => {
    const keys = new wx.PlatformKeys({ provider });
    const apiV3Key = new wx.ApiV3Key(c.api_v3_key, { provider });
    const headers = signed(c.body);
    const certs = keys.verifyCertificatesResponse(apiV3Key, headers, c.body);
    assert.deepEqual(certs.map((x) => x.serialNo), [serial]);
    assert.deepEqual(keys.serials(), [], 'not added without add: true');
    keys.verifyCertificatesResponse(apiV3Key, headers, c.body, { add: true });
    assert.deepEqual(keys.serials(), [serial]);
    // A signature over something else, a stale timestamp, an unknown serial: refused.
    const wrong = { ...headers, 'Wechatpay-Nonce': 'n2' };
    assert.throws(() => new wx.PlatformKeys({ provider }).verifyCertificatesResponse(apiV3Key, wrong, c.body),
      (e) => e.code === 'signature_mismatch');
    const stale = signed(c.body, { ts: Math.floor(Date.now() / 1000) - 3600 });
    assert.throws(() => keys.verifyCertificatesResponse(apiV3Key, stale, c.body),
      (e) => e.code === 'timestamp_expired');
    assert.throws(() => keys.verifyCertificatesResponse(apiV3Key, { ...headers, 'Wechatpay-Serial': 'ABCD' }, c.body),
      (e) => e.code === 'unknown_serial');
    // The wrong APIv3 key cannot decrypt, so it cannot bootstrap either.
    assert.throws(() => new wx.PlatformKeys({ provider }).verifyCertificatesResponse(
      new wx.ApiV3Key('cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd', { provider }), headers, c.body),
    (e) => e.code === 'decrypt_failed');
  });
}
