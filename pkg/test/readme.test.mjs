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
import { webModules } from './web-modules.mjs';
import { API_V3_KEY, PUBLIC_KEY_ID, signedNotification } from './notification-fixture.mjs';

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
copyFileSync(join(keys, 'platform_public_key.pem'), join(tmp, 'pub_key.pem'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

test('README has Node and Workers examples', () => {
  assert.ok(blocks.filter((b) => !b.worker).length >= 3);
  assert.ok(blocks.some((b) => b.worker));
});

for (const b of blocks.filter((x) => !x.worker)) {
  test(`README example ${b.i + 1} runs in Node`, async () => {
    const file = join(tmp, `example-${b.i}.mjs`);
    writeFileSync(file, b.code);
    process.env.WECHATPAY_APIV3_KEY = API_V3_KEY;
    process.env.WECHATPAY_PUBLIC_KEY_ID = PUBLIC_KEY_ID;
    process.chdir(tmp);
    const mod = await import(pathToFileURL(file).href);
    if (mod.onNotify) {
      const n = signedNotification({ serial: PUBLIC_KEY_ID });
      const recorded = [];
      const record = async (id, tx) => { recorded.push([id, tx.out_trade_no]); };
      assert.deepEqual(await mod.onNotify(n.headers, n.body, record), { status: 204 });
      assert.deepEqual(recorded, [['EV-1', 'order-1001']]);
      assert.deepEqual(await mod.onNotify(n.headers, n.body.replace('EV-1', 'EV-2'), record),
        { status: 401, body: { code: 'FAIL', message: 'signature_mismatch' } });
      assert.deepEqual(await mod.onNotify({ ...n.headers, 'wechatpay-serial': 'PUB_KEY_ID_0' }, n.body, record),
        { status: 503, body: { code: 'FAIL', message: 'unknown_serial' } });
      // Storage down: not acknowledged.
      const failing = async () => { throw new Error('db down'); };
      assert.equal((await mod.onNotify(n.headers, n.body, failing)).status, 500);
      assert.equal(recorded.length, 1);
    }
    if (mod.bootstrapCertificates) {
      const c = JSON.parse(readFileSync(join(fixturesDir(), 'v3_certificates.json'), 'utf8')).cases[0];
      const ts = String(Math.floor(Date.now() / 1000));
      const serial = c.certificates[0].serial_no;
      const sig = crypto.sign('sha256', Buffer.from(`${ts}\nn\n${c.body}\n`),
        readFileSync(join(keys, 'platform_private_key.pem'), 'utf8')).toString('base64');
      const headers = { 'wechatpay-timestamp': ts, 'wechatpay-nonce': 'n',
        'wechatpay-signature': sig, 'wechatpay-serial': serial };
      const got = await mod.bootstrapCertificates(async () => ({ headers, body: c.body }), c.api_v3_key);
      assert.deepEqual(got.serials, [serial]);
      assert.deepEqual(got.platform.serials(), [serial]);
      await assert.rejects(mod.bootstrapCertificates(async () => ({ headers, body: c.body.replace('"data"', ' "data"') }),
        c.api_v3_key), (e) => e.code === 'signature_mismatch');
    }
  });
}

for (const b of blocks.filter((x) => x.worker)) {
  test(`README example ${b.i + 1} runs in workerd`, () => {
    const dir = join(tmp, `worker-${b.i}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'readme-worker.mjs'), b.code);
    const modules = webModules(pkg, dir);
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
${modules}
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
