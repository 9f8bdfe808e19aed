// Web / edge entry (browsers, Cloudflare workerd, Deno): the wasm-bindgen web build with an
// explicit `init`. Where `node:crypto` is available (workerd with `nodejs_compat`, Deno, Bun)
// it becomes the RSA provider; elsewhere the pure-Rust one is used.
import wbgInit, { setPlatformCrypto } from './dist/web/wxpay_wasm.js';

export * from './dist/web/wxpay_wasm.js';

/**
 * Instantiates the module. `input` is what the platform gives for the .wasm: a
 * `WebAssembly.Module` (workerd: `import wasm from 'wxpay-wasm/wxpay_wasm_bg.wasm'`), a URL,
 * a `Response` or bytes; by default the .wasm next to this file is fetched.
 * `options.crypto`: a `node:crypto` module to use for RSA (default: found automatically),
 * or `null` to use the pure-Rust provider.
 */
export async function init(input, options = {}) {
  await wbgInit(input === undefined ? undefined : { module_or_path: input });
  let crypto = options.crypto;
  if (crypto === undefined) {
    crypto = globalThis.process?.getBuiltinModule?.('node:crypto');
  }
  if (crypto === undefined) {
    try {
      crypto = await import(/* webpackIgnore: true */ 'node:crypto');
    } catch {
      crypto = null; // a browser: no node:crypto
    }
  }
  // Only a module with the synchronous RSA calls the provider needs.
  if (crypto && typeof crypto.sign === 'function' && typeof crypto.createPrivateKey === 'function'
      && typeof crypto.privateDecrypt === 'function') {
    setPlatformCrypto(crypto);
  } else {
    setPlatformCrypto(null);
  }
}
