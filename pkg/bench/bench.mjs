// `npm run bench`: this package (both RSA providers) vs `wechatpay-node-v3` vs bare `node:crypto`
// for the hot operations of a mini-program payment backend, plus module instantiate time.
// A benchmark, not a test: it prints ops/s and ratios, and asserts only that the three
// implementations agree on the bytes they produce.
//
// BENCH_MS (default 2000) sets the measuring time per cell (5 interleaved rounds).
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as wx from 'wxpay-wasm';

const require = createRequire(import.meta.url);
const Pay = require('wechatpay-node-v3');

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, '..');
// The project's own fixtures (not $WXPAY_VECTORS_DIR: the bench needs these exact keys and cases).
const vectors = join(pkgDir, '..', 'tests', 'vectors');
const key = (name) => readFileSync(join(vectors, 'keys', name), 'utf8');
const file = (name) => JSON.parse(readFileSync(join(vectors, name), 'utf8'));

const MS = Number(process.env.BENCH_MS ?? 2000);

async function measure(fn, ms) {
  // Count whole iterations for `ms` milliseconds.
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 4; i++) await fn();
    n += 4;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Interleaved rounds (A B C D, A B C D, …) so that drift in CPU speed hits every column alike;
 * the median round per column. */
async function compare(fns, rounds = 5) {
  const live = Object.entries(fns).filter(([, fn]) => fn);
  for (const [, fn] of live) await measure(fn, Math.min(100, MS / 5)); // warm-up (JIT, caches)
  const samples = Object.fromEntries(live.map(([k]) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [k, fn] of live) samples[k].push(await measure(fn, MS / rounds));
  }
  return Object.fromEntries(Object.entries(fns).map(([k, fn]) => [k, fn ? median(samples[k]) : null]));
}

const merchantPem = key('merchant_private_key.pem');
const certPem = key('platform_cert.pem');
const mchid = '1900009191';
const serialNo = '1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C';
const appId = 'wxd678efh567hg6787';
const prepayId = 'wx201410272009395522657a690389285100';
const orderBody = JSON.stringify({
  appid: appId, mchid, description: 'Image形象店-深圳腾大-QQ公仔',
  out_trade_no: '1217752501201407033233368018', notify_url: 'https://www.weixin.qq.com/wxpay/pay.php',
  amount: { total: 100, currency: 'CNY' }, payer: { openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' },
});
const notif = file('v3_notification.json');
const apiV3KeyStr = notif.api_v3_key;
const okCase = notif.cases.find((c) => c.expected === 'ok' && /certificate/.test(c.name))
  ?? notif.cases.find((c) => c.expected === 'ok');
const v2case = file('v2_sign.json').cases.find((c) => c.sign_type === 'MD5' && c.expected.length === 32);

// ---- bare node:crypto (keys parsed once, like a careful hand-written integration) ----
const bare = (() => {
  const priv = crypto.createPrivateKey(merchantPem);
  const pub = crypto.createPublicKey(certPem);
  const nonce = () => crypto.randomBytes(16).toString('hex');
  const sign = (m) => crypto.sign('sha256', Buffer.from(m), priv).toString('base64');
  return {
    paySign() {
      const timeStamp = String(Math.floor(Date.now() / 1000));
      const nonceStr = nonce();
      const pkg = `prepay_id=${prepayId}`;
      return { appId, timeStamp, nonceStr, package: pkg, signType: 'RSA',
        paySign: sign(`${appId}\n${timeStamp}\n${nonceStr}\n${pkg}\n`) };
    },
    authorization(method, url, body) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonceStr = nonce();
      const signature = sign(`${method}\n${url}\n${timestamp}\n${nonceStr}\n${body}\n`);
      return `WECHATPAY2-SHA256-RSA2048 mchid="${mchid}",nonce_str="${nonceStr}",signature="${signature}",timestamp="${timestamp}",serial_no="${serialNo}"`;
    },
    notification(headers, body, now) {
      const ts = Number(headers['Wechatpay-Timestamp']);
      if (Math.abs(now - ts) > 300) throw new Error('timestamp_expired');
      const msg = `${headers['Wechatpay-Timestamp']}\n${headers['Wechatpay-Nonce']}\n${body}\n`;
      if (!crypto.verify('sha256', Buffer.from(msg), pub, Buffer.from(headers['Wechatpay-Signature'], 'base64'))) {
        throw new Error('signature_mismatch');
      }
      const n = JSON.parse(body);
      const r = n.resource;
      const ct = Buffer.from(r.ciphertext, 'base64');
      const d = crypto.createDecipheriv('aes-256-gcm', apiV3KeyStr, r.nonce);
      d.setAuthTag(ct.subarray(ct.length - 16));
      d.setAAD(Buffer.from(r.associated_data));
      const plaintext = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]).toString('utf8');
      return { ...n, plaintext };
    },
    v2Md5(params, k) {
      const s = Object.keys(params).filter((x) => x !== 'sign' && params[x] !== '').sort()
        .map((x) => `${x}=${params[x]}`).join('&');
      return crypto.createHash('md5').update(`${s}&key=${k}`).digest('hex').toUpperCase();
    },
  };
})();

// ---- wechatpay-node-v3 (re-parses its PEM on every call) ----
const sdk = (() => {
  const pay = new Pay({ appid: appId, mchid, serial_no: serialNo, publicKey: Buffer.from(certPem),
    privateKey: Buffer.from(merchantPem), key: apiV3KeyStr });
  Pay.certificates[okCase.headers['Wechatpay-Serial']] = crypto.createPublicKey(certPem)
    .export({ type: 'spki', format: 'pem' });
  return {
    paySign() {
      // What its transactions_jsapi() builds after the prepay call.
      const timeStamp = parseInt(String(+new Date() / 1000), 10).toString();
      const nonceStr = Math.random().toString(36).substr(2, 15);
      const pkg = `prepay_id=${prepayId}`;
      return { appId, timeStamp, nonceStr, package: pkg, signType: 'RSA',
        paySign: pay.sign(`${appId}\n${timeStamp}\n${nonceStr}\n${pkg}\n`) };
    },
    authorization(method, url, body) { return pay.buildAuthorization(method, url, body); },
    async notification(headers, body) {
      const ok = await pay.verifySign({ timestamp: headers['Wechatpay-Timestamp'],
        nonce: headers['Wechatpay-Nonce'], body, serial: headers['Wechatpay-Serial'],
        signature: headers['Wechatpay-Signature'] });
      if (!ok) throw new Error('signature_mismatch');
      const r = JSON.parse(body).resource;
      return pay.decipher_gcm(r.ciphertext, r.associated_data, r.nonce, apiV3KeyStr);
    },
  };
})();

// ---- this package, per provider ----
function ours(provider) {
  const signer = new wx.MerchantSigner(merchantPem, mchid, serialNo, { provider });
  const keys = new wx.PlatformKeys({ provider });
  keys.addCertificate(certPem);
  const apiV3Key = new wx.ApiV3Key(apiV3KeyStr);
  return {
    signer,
    paySign: () => signer.paySign(appId, prepayId),
    authorization: (m, u, b) => signer.authorization(m, u, b).header,
    notification: (h, b, now) => keys.verifyNotification(apiV3Key, h, b, now),
    v2Md5: (p, k) => wx.v2Sign(p, k, 'MD5').sign,
  };
}

const impls = { platform: ours('platform'), rust: ours('rust') };

// Same bytes everywhere (deterministic PKCS#1 v1.5).
{
  const m = `${appId}\n1436213027\nNONCE\nprepay_id=${prepayId}\n`;
  const want = crypto.sign('sha256', Buffer.from(m), crypto.createPrivateKey(merchantPem)).toString('base64');
  for (const [name, impl] of Object.entries(impls)) {
    if (impl.signer.sign(m) !== want) throw new Error(`${name} provider signature differs from node:crypto`);
  }
  if (impls.platform.v2Md5(v2case.params, v2case.key) !== v2case.expected) throw new Error('v2 differs');
  if (bare.v2Md5(v2case.params, v2case.key) !== v2case.expected) throw new Error('bare v2 differs');
  const pt = impls.platform.notification(okCase.headers, okCase.body, okCase.now).plaintext;
  if (pt !== okCase.resource_plaintext) throw new Error('notification plaintext differs');
}

const url = '/v3/pay/transactions/jsapi';
const rows = [];
async function row(op, fns) {
  rows.push({ op, ...(await compare(fns)) });
  process.stderr.write(`measured ${op}\n`);
}

const h = okCase.headers;
await row('paySign', {
  wasmPlatform: impls.platform.paySign, wasmRust: impls.rust.paySign,
  sdk: sdk.paySign, bare: bare.paySign,
});
await row('Authorization header', {
  wasmPlatform: () => impls.platform.authorization('POST', url, orderBody),
  wasmRust: () => impls.rust.authorization('POST', url, orderBody),
  sdk: () => sdk.authorization('POST', url, orderBody),
  bare: () => bare.authorization('POST', url, orderBody),
});
await row('notification verify+decrypt', {
  wasmPlatform: () => impls.platform.notification(h, okCase.body, okCase.now),
  wasmRust: () => impls.rust.notification(h, okCase.body, okCase.now),
  sdk: () => sdk.notification(h, okCase.body),
  bare: () => bare.notification(h, okCase.body, okCase.now),
});
await row('v2 MD5 sign', {
  wasmPlatform: () => impls.platform.v2Md5(v2case.params, v2case.key),
  wasmRust: null, // no RSA involved: the same code as wasmPlatform
  sdk: null, // wechatpay-node-v3 has no APIv2
  bare: () => bare.v2Md5(v2case.params, v2case.key),
});

// Module instantiate: compile + instantiate of the shipped .wasm, in process (median of 9), and
// a cold `require('wxpay-wasm')` in a fresh node (median of 5) against a bare `node -e ''`.
const wasmBytes = readFileSync(join(pkgDir, 'dist', 'node', 'wxpay_wasm_bg.wasm'));
const compileMs = [];
for (let i = 0; i < 9; i++) {
  const t = performance.now();
  await WebAssembly.compile(wasmBytes);
  compileMs.push(performance.now() - t);
}
const coldMs = (code) => median(Array.from({ length: 5 }, () => Number(execFileSync(process.execPath,
  ['-e', `const t=performance.now();${code};console.log(performance.now()-t)`], { cwd: pkgDir }).toString())));
const requireMs = coldMs("require('wxpay-wasm')");
const sdkRequireMs = coldMs("require('wechatpay-node-v3')");

const fmt = (x) => (x == null ? '—' : x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const ratio = (a, b) => (a == null || b == null ? '—' : `${(a / b).toFixed(2)}×`);
console.log('\nops/s (higher is better); ratios are this package with the platform provider over the others\n');
console.log('| operation | wasm + node:crypto | wasm + pure Rust | wechatpay-node-v3 | bare node:crypto | platform/bare | platform/sdk | rust/bare |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.op} | ${fmt(r.wasmPlatform)} | ${fmt(r.wasmRust)} | ${fmt(r.sdk)} | ${fmt(r.bare)} | ${ratio(r.wasmPlatform, r.bare)} | ${ratio(r.wasmPlatform, r.sdk)} | ${ratio(r.wasmRust, r.bare)} |`);
}
console.log(`\n.wasm ${wasmBytes.length} bytes; WebAssembly.compile median ${compileMs.length && median(compileMs).toFixed(1)} ms;`
  + ` cold require('wxpay-wasm') ${requireMs.toFixed(1)} ms vs require('wechatpay-node-v3') ${sdkRequireMs.toFixed(1)} ms`);
