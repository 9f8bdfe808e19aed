// Every case of the vector directory ($WXPAY_VECTORS_DIR, default tests/vectors) through the
// npm package, with the node:crypto provider and with the pure-Rust one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as wx from 'wxpay-wasm';
import {
  KNOWN_FILES, fixturesDir, runDir, runnerContractDir, vectorFiles, vectorsDir,
} from './vector-runner.mjs';

const PROVIDERS = ['platform', 'rust'];
const dir = vectorsDir();

test('the vector directory holds only known files', () => {
  const unknown = vectorFiles(dir).map(([stem]) => stem).filter((s) => !KNOWN_FILES.includes(s));
  assert.deepEqual(unknown, []);
});

for (const [stem] of vectorFiles(dir)) {
  test(`vectors ${stem} (node:crypto and pure-Rust providers)`, (t) => {
    // runDir on a one-file view keeps the runner's own bookkeeping (unknown files, counts).
    const tmp = mkdtempSync(join(tmpdir(), 'wxpay-v-'));
    try {
      cpSync(join(dir, 'keys'), join(tmp, 'keys'), { recursive: true });
      cpSync(join(dir, `${stem}.json`), join(tmp, `${stem}.json`));
      const { counts, failures } = runDir(wx, tmp, PROVIDERS);
      const cases = JSON.parse(readFileSync(join(dir, `${stem}.json`), 'utf8')).cases.length;
      t.diagnostic(`${stem}: ${cases} cases x ${PROVIDERS.length} providers = ${counts[stem] ?? 0} runs`);
      console.log(`${stem}: ${cases} cases x ${PROVIDERS.length} providers = ${counts[stem] ?? 0} runs`);
      assert.deepEqual(failures, []);
      assert.equal(counts[stem], cases * PROVIDERS.length);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('the runner reports a flipped vector and an unknown file', () => {
  const fixtures = fixturesDir();
  const tmp = mkdtempSync(join(tmpdir(), 'wxpay-v-'));
  try {
    cpSync(join(fixtures, 'keys'), join(tmp, 'keys'), { recursive: true });
    const pay = JSON.parse(readFileSync(join(fixtures, 'v3_pay_sign.json'), 'utf8'));
    const sig = pay.cases[0].expected;
    pay.cases[0].expected = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    writeFileSync(join(tmp, 'v3_pay_sign.json'), JSON.stringify(pay));
    writeFileSync(join(tmp, 'v9_unknown.json'), '{"cases":[]}');
    const { failures } = runDir(wx, tmp, PROVIDERS);
    assert.ok(failures.some((f) => f.includes('paySign 0')), failures.join('\n'));
    assert.ok(failures.some((f) => f.includes('unknown vector file')), failures.join('\n'));
    assert.equal(failures.length, PROVIDERS.length + 1, failures.join('\n'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the runner follows the req_info contract: text compared, parsed only for fields', () => {
  const { counts, failures } = runDir(wx, runnerContractDir(), PROVIDERS);
  assert.equal(counts.v2_refund_req_info, 3 * PROVIDERS.length);
  assert.equal(failures.length, PROVIDERS.length, failures.join('\n'));
  assert.ok(failures.every((f) => f.includes('/ wrong fields /')), failures.join('\n'));
});
