// The package's entry points: `require` and `import` in Node give the same instance with the
// node:crypto provider installed; errors are real `Error`s with a `code`; handles free.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as esm from 'wxpay-wasm';
import { fixturesDir } from './vector-runner.mjs';

const require = createRequire(import.meta.url);
const keyPem = readFileSync(join(fixturesDir(), 'keys', 'merchant_private_key.pem'), 'utf8');

test('require and import resolve to one instance', () => {
  const cjs = require('wxpay-wasm');
  assert.equal(cjs.MerchantSigner, esm.MerchantSigner);
  assert.equal(typeof esm.init, 'function');
  assert.equal(esm.platformCryptoAvailable(), true);
  // Every documented export exists in both.
  for (const name of Object.keys(cjs)) assert.ok(name in esm || name === 'default', name);
});

test('require works from a CommonJS process and import from an ES module process', () => {
  const opts = { cwd: join(import.meta.dirname ?? '.', '..'), encoding: 'utf8' };
  const cjs = execFileSync(process.execPath, ['-e',
    "const w=require('wxpay-wasm');console.log(typeof w.MerchantSigner, w.nonceStr().length)"], opts);
  assert.equal(cjs.trim(), 'function 32');
  const mjs = execFileSync(process.execPath, ['--input-type=module', '-e',
    "import {nonceStr, v2Sign} from 'wxpay-wasm';console.log(nonceStr().length, v2Sign({a:1},'k').stringToSign)"], opts);
  assert.equal(mjs.trim(), '32 a=1');
});

test('errors are Error objects with the vector codes', () => {
  const cases = [
    [() => new esm.MerchantSigner('not a pem', '1', '2'), 'invalid_key'],
    [() => new esm.ApiV3Key('short'), 'invalid_key'],
    [() => esm.v2Verify({ a: '1', sign: 'X' }, 'k'), 'signature_mismatch'],
    [() => esm.v2ParseXml('<xml><a>1</a'), 'malformed'],
    [() => new esm.PlatformKeys().verifyResponse({}, ''), 'malformed'],
    [() => new esm.PlatformKeys({ provider: 'nope' }), 'malformed'],
  ];
  for (const [fn, code] of cases) {
    assert.throws(fn, (e) => e instanceof Error && e.code === code && e.name === 'WxpayError'
      && typeof e.message === 'string' && typeof e.stack === 'string');
  }
});

test('providers: auto is the platform in Node; rust on request; same bytes', () => {
  const auto = new esm.MerchantSigner(keyPem, '1900009191', 'S');
  const rust = new esm.MerchantSigner(keyPem, '1900009191', 'S', { provider: 'rust' });
  assert.equal(auto.provider, 'platform');
  assert.equal(rust.provider, 'rust');
  assert.equal(auto.sign('hello'), rust.sign(new TextEncoder().encode('hello')));
  auto.free();
  rust.free();
  assert.throws(() => auto.sign('x')); // freed handles cannot be used
});

test('without node:crypto, auto falls back to pure Rust and platform is refused', () => {
  const before = new esm.MerchantSigner(keyPem, '1', 'S');
  const want = before.sign('m');
  esm.setPlatformCrypto(null);
  try {
    // Keys parsed earlier keep the node:crypto they were parsed with.
    assert.equal(before.provider, 'platform');
    assert.equal(before.sign('m'), want);
    assert.equal(esm.platformCryptoAvailable(), false);
    assert.equal(new esm.MerchantSigner(keyPem, '1', 'S').provider, 'rust');
    assert.throws(() => new esm.MerchantSigner(keyPem, '1', 'S', { provider: 'platform' }),
      (e) => e.code === 'invalid_key');
  } finally {
    esm.setPlatformCrypto(require('node:crypto'));
  }
});

test('now defaults to the clock and can be passed', () => {
  const s = new esm.MerchantSigner(keyPem, '1900009191', 'S');
  const before = Math.floor(Date.now() / 1000);
  const p = s.paySign('wx1', 'prepay_id=abc');
  assert.ok(Math.abs(Number(p.timeStamp) - before) <= 2);
  assert.match(p.nonceStr, /^[0-9A-Za-z]{32}$/);
  assert.equal(s.paySign('wx1', 'abc', { now: 1700000000 }).timeStamp, '1700000000');
  assert.equal(esm.timestamp(1700000000.9), '1700000000');
  const seen = new Set(Array.from({ length: 200 }, () => esm.nonceStr()));
  assert.equal(seen.size, 200);
});
