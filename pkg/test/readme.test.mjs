// Every code example of README.md runs: ```js blocks as ES modules in Node (from a folder
// inside the package, so `import 'wxpay-wasm'` resolves to this package; cwd holds the key
// files they read), ```js worker blocks in workerd through a small driver worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as wx from 'wxpay-wasm';
import { fixturesDir } from './vector-runner.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const require = createRequire(import.meta.url);
const keys = join(fixturesDir(), 'keys');
const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```js( worker)?\n([\s\S]*?)```/g)]
  .map((m, i) => ({ i, worker: Boolean(m[1]), code: m[2] }));

const tmp = join(here, `.readme-${process.pid}`);
mkdirSync(tmp, { recursive: true });
copyFileSync(join(keys, 'merchant_private_key.pem'), join(tmp, 'apiclient_key.pem'));
copyFileSync(join(keys, 'platform_cert.pem'), join(tmp, 'wechatpay_cert.pem'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const apiV3Key = 'abababababababababababababababab';

/** A notification as WeChat Pay would send it now, signed with the test platform key. */
function freshNotification() {
  const key = new wx.ApiV3Key(apiV3Key);
  const nonce = 'aZ3bC4dE5fG6';
  const tx = { mchid: '1900009191', appid: 'wxd678efh567hg6787', out_trade_no: 'order-1001',
    trade_state: 'SUCCESS', amount: { total: 100 } };
  const body = JSON.stringify({ id: 'EV-1', create_time: '2026-01-01T00:00:00+08:00',
    resource_type: 'encrypt-resource', event_type: 'TRANSACTION.SUCCESS', summary: '支付成功',
    resource: { original_type: 'transaction', algorithm: 'AEAD_AES_256_GCM',
      ciphertext: key.encrypt(nonce, 'transaction', JSON.stringify(tx)),
      associated_data: 'transaction', nonce } });
  const ts = String(Math.floor(Date.now() / 1000));
  const hnonce = wx.nonceStr();
  const sig = crypto.sign('sha256', Buffer.from(`${ts}\n${hnonce}\n${body}\n`),
    readFileSync(join(keys, 'platform_private_key.pem'), 'utf8')).toString('base64');
  const serial = new wx.PlatformKeys().addCertificate(readFileSync(join(keys, 'platform_cert.pem'), 'utf8'));
  // As Node's http module gives them: lower-case names.
  return { body, headers: { 'wechatpay-timestamp': ts, 'wechatpay-nonce': hnonce,
    'wechatpay-signature': sig, 'wechatpay-serial': serial,
    'wechatpay-signature-type': 'WECHATPAY2-SHA256-RSA2048' } };
}

test('README has Node and Workers examples', () => {
  assert.ok(blocks.filter((b) => !b.worker).length >= 3);
  assert.ok(blocks.some((b) => b.worker));
});

for (const b of blocks.filter((x) => !x.worker)) {
  test(`README example ${b.i + 1} runs in Node`, async () => {
    const file = join(tmp, `example-${b.i}.mjs`);
    writeFileSync(file, b.code);
    process.env.WECHATPAY_APIV3_KEY = apiV3Key;
    process.chdir(tmp);
    const mod = await import(pathToFileURL(file).href);
    if (mod.onNotify) {
      const n = freshNotification();
      assert.deepEqual(mod.onNotify(n.headers, n.body),
        { status: 200, event: 'TRANSACTION.SUCCESS', outTradeNo: 'order-1001' });
      assert.deepEqual(mod.onNotify(n.headers, n.body.replace('EV-1', 'EV-2')),
        { status: 401, code: 'signature_mismatch' });
      assert.deepEqual(mod.onNotify({ ...n.headers, 'wechatpay-serial': 'PUB_KEY_ID_0' }, n.body),
        { status: 503, code: 'unknown_serial' });
    }
  });
}

for (const b of blocks.filter((x) => x.worker)) {
  test(`README example ${b.i + 1} runs in workerd`, () => {
    const dir = join(tmp, `worker-${b.i}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'readme-worker.mjs'), b.code);
    for (const [from, to] of [['web.mjs', 'web.mjs'], ['dist/web/wxpay_wasm.js', 'wxpay_wasm.js'],
      ['dist/web/wxpay_wasm_bg.wasm', 'wxpay_wasm_bg.wasm']]) {
      copyFileSync(join(pkg, from), join(dir, to));
    }
    const env = { MERCHANT_KEY_PEM: readFileSync(join(keys, 'merchant_private_key.pem'), 'utf8'),
      MCHID: '1900009191', MERCHANT_SERIAL_NO: '1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C',
      APPID: 'wxd678efh567hg6787' };
    writeFileSync(join(dir, 'env.json'), JSON.stringify(env));
    writeFileSync(join(dir, 'driver.mjs'), `import worker from 'readme-worker.mjs';
import env from 'env.json';
export default {
  async test() {
    const res = await worker.fetch(new Request('https://shop.example/pay', { method: 'POST',
      body: JSON.stringify({ prepayId: 'wx201410272009395522657a690389285100' }) }), env);
    console.log('WXPAY_RESULT ' + JSON.stringify(await res.json()));
  },
};
`);
    writeFileSync(join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = ( services = [ (name = "main", worker = .worker) ] );
const worker :Workerd.Worker = (
  modules = [
    (name = "driver.mjs", esModule = embed "driver.mjs"),
    (name = "readme-worker.mjs", esModule = embed "readme-worker.mjs"),
    (name = "env.json", json = embed "env.json"),
    (name = "wxpay-wasm", esModule = embed "web.mjs"),
    (name = "dist/web/wxpay_wasm.js", esModule = embed "wxpay_wasm.js"),
    (name = "wxpay-wasm/wxpay_wasm_bg.wasm", wasm = embed "wxpay_wasm_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ["nodejs_compat"],
);
`);
    const out = execFileSync(require.resolve('workerd/bin/workerd'), ['test', join(dir, 'config.capnp')],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    const line = out.split('\n').find((l) => l.includes('WXPAY_RESULT '));
    assert.ok(line, out);
    const pay = JSON.parse(line.slice(line.indexOf('WXPAY_RESULT ') + 13));
    assert.equal(pay.package, 'prepay_id=wx201410272009395522657a690389285100');
    // Same signature as Node's own crypto over the same message.
    const msg = wx.paySignMessage(pay.appId, pay.timeStamp, pay.nonceStr, pay.package);
    assert.equal(pay.paySign, crypto.sign('sha256', Buffer.from(msg), env.MERCHANT_KEY_PEM).toString('base64'));
  });
}
