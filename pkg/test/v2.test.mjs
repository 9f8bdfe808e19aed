// APIv2 rules that the vectors do not pin down, checked through the package: a notification may
// not downgrade the order's sign type, and signed XML verifies whatever its values hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as wx from 'wxpay-wasm';

const KEY = '192006250b4c09247ec02edce69f6a2d';

test('a notification may upgrade MD5 to HMAC-SHA256 but never downgrade', () => {
  const md5 = wx.v2SignedXml({ appid: 'wx1', total_fee: 1, sign_type: 'MD5' }, KEY, 'MD5');
  const hmac = wx.v2SignedXml({ appid: 'wx1', total_fee: 1, sign_type: 'HMAC-SHA256' }, KEY, 'HMAC-SHA256');
  assert.equal(wx.v2VerifyNotification(hmac, KEY, 'MD5').total_fee, '1');
  assert.equal(wx.v2VerifyNotification(md5, KEY, 'MD5').total_fee, '1');
  assert.throws(() => wx.v2VerifyNotification(md5, KEY, 'HMAC-SHA256'),
    (e) => e instanceof Error && e.code === 'signature_mismatch');
});

test('signed XML round-trips CR, CRLF, tab and ]]> in values', () => {
  const params = { appid: 'wx1', body: 'a\rb\r\nc\td]]>e', attach: '\r' };
  for (const t of ['MD5', 'HMAC-SHA256']) {
    const xml = wx.v2SignedXml(params, KEY, t);
    assert.ok(!xml.includes('\r'), xml);
    const fields = wx.v2VerifyNotification(xml, KEY, t);
    assert.equal(fields.body, params.body);
    assert.equal(fields.attach, '\r');
  }
  assert.throws(() => wx.v2SignedXml({ a: '\u0001' }, KEY), (e) => e.code === 'malformed');
});
