// The files of the web build a Workers config must embed, with the module names that keep the
// package's relative imports resolving: web.mjs, the wasm-bindgen glue, the .wasm and the
// crate's JS snippets (dist/web/snippets/…, under a directory named by a hash).
import { copyFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Copies the web build into `dir` and returns the capnp `modules` entries for it. */
export function webModules(pkg, dir) {
  const files = [
    ['web.mjs', 'web.mjs', 'wxpay-wasm', 'esModule'],
    ['dist/web/wxpay_wasm.js', 'wxpay_wasm.js', 'dist/web/wxpay_wasm.js', 'esModule'],
    ['dist/web/wxpay_wasm_bg.wasm', 'wxpay_wasm_bg.wasm', 'wxpay-wasm/wxpay_wasm_bg.wasm', 'wasm'],
  ];
  const snippets = join(pkg, 'dist', 'web', 'snippets');
  readdirSync(snippets, { recursive: true })
    .filter((f) => f.endsWith('.js'))
    .forEach((f, i) => {
      const from = relative(pkg, join(snippets, f));
      files.push([from, `snippet-${i}.js`, from, 'esModule']);
    });
  return files.map(([from, to, name, kind]) => {
    copyFileSync(join(pkg, from), join(dir, to));
    return `    (name = "${name}", ${kind} = embed "${to}"),`;
  }).join('\n');
}
