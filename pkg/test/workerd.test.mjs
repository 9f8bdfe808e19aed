// The web build in a Workers runtime: npm `workerd` (Cloudflare's runtime, binary shipped in the
// package) runs test/workerd/worker.mjs with `workerd test`; no sockets are opened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { webModules } from './web-modules.mjs';
import { fixturesDir } from './vector-runner.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const require = createRequire(import.meta.url);
const dir = fixturesDir();
const vec = (f) => JSON.parse(readFileSync(join(dir, f), 'utf8'));

test('web build in workerd: sign a request and a paySign, verify a notification', () => {
  const workerd = require.resolve('workerd/bin/workerd');
  const auth = vec('v3_authorization.json').cases[0];
  const pay = vec('v3_pay_sign.json').cases[0];
  const notif = vec('v3_notification.json');
  const n = notif.cases.find((c) => c.expected === 'ok' && /certificate/.test(c.name));
  const fixture = {
    merchantPem: readFileSync(join(dir, 'keys', 'merchant_private_key.pem'), 'utf8'),
    certPem: readFileSync(join(dir, 'keys', 'platform_cert.pem'), 'utf8'),
    apiV3Key: notif.api_v3_key,
    auth, pay, notification: n,
  };
  const tmp = mkdtempSync(join(tmpdir(), 'wxpay-workerd-'));
  try {
    writeFileSync(join(tmp, 'fixture.json'), JSON.stringify(fixture));
    copyFileSync(join(here, 'workerd', 'worker.mjs'), join(tmp, 'worker.mjs'));
    const modules = webModules(pkg, tmp);
    // Module names mirror the package layout so that web.mjs's relative import resolves.
    writeFileSync(join(tmp, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "fixture.json", json = embed "fixture.json"),
${modules}
  ],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ["nodejs_compat"],
);
`);
    const out = execFileSync(workerd, ['test', join(tmp, 'config.capnp')],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    const line = out.split('\n').find((l) => l.includes('WXPAY_RESULT '));
    assert.ok(line, `no result line in workerd output:\n${out}`);
    const r = JSON.parse(line.slice(line.indexOf('WXPAY_RESULT ') + 'WXPAY_RESULT '.length));
    assert.equal(r.platformCrypto, true, 'node:crypto found under nodejs_compat');
    assert.deepEqual(r.runs.map((x) => x.provider), ['platform', 'rust']);
    for (const run of r.runs) {
      assert.equal(run.header, auth.expected_header, run.provider);
      assert.equal(run.paySign, pay.expected, run.provider);
      assert.equal(run.plaintext, n.resource_plaintext, run.provider);
      assert.deepEqual(run.tampered, { isError: true, code: 'signature_mismatch' }, run.provider);
      assert.equal(run.stale, 'timestamp_expired', run.provider);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
