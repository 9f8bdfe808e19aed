// The size of the shipped .wasm, gzip -9, for both builds. Size is a property of the build, not
// a speed, so it is checked on every test run: a hard ceiling just above today's size (199.5 KB
// with Node's zlib; growth past it fails),
// and the 150 KB target of issue 10, which is not reached yet, as a `todo` that every run reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CEILING_GZIP_BYTES = 200_000;
export const TARGET_GZIP_BYTES = 150_000;

const sizes = (build) => {
  const wasm = readFileSync(join(pkg, 'dist', build, 'wxpay_wasm_bg.wasm'));
  return { raw: wasm.length, gz: gzipSync(wasm, { level: 9 }).length };
};

for (const build of ['node', 'web']) {
  test(`${build} .wasm is within the ${CEILING_GZIP_BYTES}-byte gzip ceiling`, (t) => {
    const { raw, gz } = sizes(build);
    t.diagnostic(`${build}: ${raw} bytes raw, ${gz} bytes gzip -9`);
    console.log(`${build} .wasm: ${raw} bytes raw, ${gz} bytes gzip -9 (ceiling ${CEILING_GZIP_BYTES}, target ${TARGET_GZIP_BYTES})`);
    assert.ok(gz <= CEILING_GZIP_BYTES, `${gz} bytes gzipped > ${CEILING_GZIP_BYTES}`);
  });

  test(`${build} .wasm within the ${TARGET_GZIP_BYTES}-byte gzip target`, { todo: 'issue 10 item 2' }, () => {
    const { gz } = sizes(build);
    assert.ok(gz <= TARGET_GZIP_BYTES, `${gz} bytes gzipped > ${TARGET_GZIP_BYTES}`);
  });
}
