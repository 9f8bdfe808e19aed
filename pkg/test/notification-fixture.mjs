// A v3 notification as WeChat Pay would send it now, signed locally with the test platform key
// (tests/vectors/keys, the project's own copy), for tests that drive handlers end to end.
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as wx from 'wxpay-wasm';
import { fixturesDir } from './vector-runner.mjs';

export const keysDir = join(fixturesDir(), 'keys');
export const API_V3_KEY = 'abababababababababababababababab';
export const PUBLIC_KEY_ID = 'PUB_KEY_ID_0114232134912410000000000000';
const platformPrivate = readFileSync(join(keysDir, 'platform_private_key.pem'), 'utf8');

/** `{ headers, body }` with Node-style lower-case header names; `serial` defaults to the
 * platform certificate's serial. */
export function signedNotification({ outTradeNo = 'order-1001', id = 'EV-1', serial } = {}) {
  const key = new wx.ApiV3Key(API_V3_KEY);
  const nonce = 'aZ3bC4dE5fG6';
  const tx = { mchid: '1900009191', appid: 'wxd678efh567hg6787', out_trade_no: outTradeNo,
    trade_state: 'SUCCESS', amount: { total: 100 } };
  const body = JSON.stringify({ id, create_time: '2026-01-01T00:00:00+08:00',
    resource_type: 'encrypt-resource', event_type: 'TRANSACTION.SUCCESS', summary: '支付成功',
    resource: { original_type: 'transaction', algorithm: 'AEAD_AES_256_GCM',
      ciphertext: key.encrypt(nonce, 'transaction', JSON.stringify(tx)),
      associated_data: 'transaction', nonce } });
  key.free();
  const ts = String(Math.floor(Date.now() / 1000));
  const hnonce = wx.nonceStr();
  const sig = crypto.sign('sha256', Buffer.from(`${ts}\n${hnonce}\n${body}\n`), platformPrivate)
    .toString('base64');
  if (serial === undefined) {
    const k = new wx.PlatformKeys();
    serial = k.addCertificate(readFileSync(join(keysDir, 'platform_cert.pem'), 'utf8'));
    k.free();
  }
  return { body, headers: { 'wechatpay-timestamp': ts, 'wechatpay-nonce': hnonce,
    'wechatpay-signature': sig, 'wechatpay-serial': serial,
    'wechatpay-signature-type': 'WECHATPAY2-SHA256-RSA2048' } };
}
