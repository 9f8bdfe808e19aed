// The JS-side conversions of the bindings (wasm/src/js/glue.js): headers in every accepted
// shape, v2 parameter values as JSON writes them, and results with non-ASCII text, checked
// against what the Rust side is known to compute.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as wx from 'wxpay-wasm';
import { API_V3_KEY, keysDir, signedNotification } from './notification-fixture.mjs';

const KEY = '192006250b4c09247ec02edce69f6a2d';
const malformed = (e) => e instanceof Error && e.code === 'malformed';

test('notification headers: plain objects, Headers, Map, pairs; repeats and bad shapes refused', () => {
  const { headers, body } = signedNotification();
  const keys = new wx.PlatformKeys();
  keys.addCertificate(readFileSync(join(keysDir, 'platform_cert.pem'), 'utf8'));
  const key = new wx.ApiV3Key(API_V3_KEY);
  const canonical = Object.fromEntries(Object.entries(headers)
    .map(([k, v]) => [k.replace(/(^|-)w/g, (m) => m.toUpperCase()).replace('-type', '-Type'), v]));
  const shapes = {
    lower: headers,
    canonical,
    'extra headers, an undefined one': { ...headers, host: 'x', 'x-undefined': undefined },
    'without the optional signature type': { ...headers, 'wechatpay-signature-type': undefined },
    Headers: new Headers(headers),
    Map: new Map(Object.entries(headers)),
    pairs: Object.entries(headers),
    'mixed case': Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v])),
  };
  for (const [name, h] of Object.entries(shapes)) {
    const n = keys.verifyNotification(key, h, body);
    assert.equal(n.summary, '支付成功', name);
    assert.equal(n.resource.associatedData, 'transaction', name);
    assert.equal(JSON.parse(n.plaintext).out_trade_no, 'order-1001', name);
    // Bytes instead of a string: the same result.
    assert.deepEqual(keys.verifyNotification(key, h, new TextEncoder().encode(body)), n, name);
  }
  const refused = {
    'both spellings': { ...headers, 'Wechatpay-Nonce': headers['wechatpay-nonce'] },
    'a number': { ...headers, 'wechatpay-timestamp': Number(headers['wechatpay-timestamp']) },
    'a missing one': { ...headers, 'wechatpay-serial': undefined },
    'a string': 'wechatpay-nonce: x',
    'pairs of numbers': [[1, 2]],
  };
  for (const [name, h] of Object.entries(refused)) {
    assert.throws(() => keys.verifyNotification(key, h, body), malformed, name);
  }
  // A repeated header (an array in Node) is joined like fetch's `Headers`: another value.
  assert.throws(() => keys.verifyNotification(key, { ...headers, 'wechatpay-serial': ['a', 'b'] }, body),
    (e) => e.code === 'unknown_serial');
  assert.throws(() => keys.verifyNotification(key,
    { ...headers, 'wechatpay-nonce': [headers['wechatpay-nonce'], 'x'] }, body),
    (e) => e.code === 'signature_mismatch');
});

test('v2 parameter values: as JSON.stringify writes them', () => {
  const base = { appid: 'wx1', body: '腾讯充值中心-QQ会员充值', mch_id: '10000100' };
  const want = wx.v2Sign({ ...base, total_fee: '1', device: 'true' }, KEY);
  assert.equal(want.stringToSign, 'appid=wx1&body=腾讯充值中心-QQ会员充值&device=true&mch_id=10000100&total_fee=1');
  // Numbers, booleans, values JSON leaves out or writes as null, and toJSON.
  const same = [
    { ...base, total_fee: 1, device: true },
    { ...base, total_fee: 1, device: true, a: null, b: undefined, c: NaN, d: Infinity, e: '' },
    { ...base, total_fee: { toJSON: () => '1' }, device: true, f: () => 1 },
  ];
  for (const p of same) assert.deepEqual(wx.v2Sign(p, KEY), want, JSON.stringify(p));
  assert.equal(wx.v2Sign({ n: -0, m: -5 }, KEY).stringToSign, 'm=-5&n=0');
  for (const bad of [{ a: 1.5 }, { a: 2 ** 53 }, { a: { b: 1 } }, { a: [1] }, { a: 1n }, { a: '\ud800' }]) {
    assert.throws(() => wx.v2Sign(bad, KEY), malformed, String(Object.values(bad)[0]));
  }
  for (const bad of [null, 'a=1', [['a', '1']]]) assert.throws(() => wx.v2Sign(bad, KEY), malformed);
  const cyclic = { a: '1' };
  cyclic.self = cyclic;
  assert.throws(() => wx.v2Sign(cyclic, KEY), malformed);
  assert.deepEqual(wx.v2Sign({}, KEY).stringToSign, '');
});

test('results carry non-ASCII text and emoji intact', () => {
  const params = { appid: 'wx1', body: '支付 😀 ok', attach: 'a' };
  const xml = wx.v2SignedXml(params, KEY);
  const fields = wx.v2VerifyNotification(xml, KEY);
  assert.equal(fields.body, params.body);
  assert.equal(fields.attach, 'a');
  assert.deepEqual(Object.keys(wx.v2ParseXml('<xml><b>😀</b><a>x</a></xml>')).sort(), ['a', 'b']);
  const pay = wx.v2RequestPayment(KEY, 'MD5', 'wx1', 'p', { timeStamp: '1', nonceStr: '随机' });
  assert.equal(pay.nonceStr, '随机');
  assert.equal(pay.package, 'prepay_id=p');
  assert.match(pay.paySign, /^[0-9A-F]{32}$/);
});
