// Node entry (CommonJS; node.mjs re-exports this same instance for `import`).
// Loads the wasm-bindgen glue built for Node and installs `node:crypto` as the RSA provider.
'use strict';

const wasm = require('./dist/node/wxpay_wasm.js');

wasm.setPlatformCrypto(require('node:crypto'));

module.exports = {
  ...wasm,
  /** Nothing to load in Node (the module is instantiated on require); kept so that code written
   * for the web build (`await init()`) runs unchanged. */
  init: async () => {},
};
