// A Cloudflare-style worker using the web build of wxpay-wasm, run by `workerd test`
// (test/workerd.test.mjs writes the config). It signs a request and a paySign, verifies a
// notification, with node:crypto (nodejs_compat) and with the pure-Rust provider, and prints
// one JSON line with the results for the Node side to compare with the vectors.
import { init, MerchantSigner, PlatformKeys, ApiV3Key, platformCryptoAvailable } from 'wxpay-wasm';
import wasmModule from 'wxpay-wasm/wxpay_wasm_bg.wasm';
import fixture from './fixture.json';

export default {
  async test() {
    await init(wasmModule);
    const out = { platformCrypto: platformCryptoAvailable(), runs: [] };
    for (const provider of ['platform', 'rust']) {
      const signer = new MerchantSigner(fixture.merchantPem, fixture.auth.mchid, fixture.auth.serial_no, { provider });
      const auth = signer.authorization(fixture.auth.method, fixture.auth.url, fixture.auth.body,
        { timestamp: fixture.auth.timestamp, nonceStr: fixture.auth.nonce_str });
      const pay = signer.paySign(fixture.pay.app_id, fixture.pay.package,
        { timeStamp: fixture.pay.time_stamp, nonceStr: fixture.pay.nonce_str });
      const keys = new PlatformKeys({ provider });
      keys.addCertificate(fixture.certPem);
      const n = fixture.notification;
      const notification = keys.verifyNotification(new ApiV3Key(fixture.apiV3Key), new Headers(n.headers), n.body, n.now);
      let tampered;
      try {
        keys.verifyNotification(new ApiV3Key(fixture.apiV3Key), n.headers, n.body.replace('"', ' "'), n.now);
      } catch (e) {
        tampered = { isError: e instanceof Error, code: e.code };
      }
      // With no explicit now, Date.now() is used: the 2021 notification is then stale.
      let stale;
      try {
        keys.verifyNotification(new ApiV3Key(fixture.apiV3Key), n.headers, n.body);
      } catch (e) {
        stale = e.code;
      }
      out.runs.push({ provider: signer.provider, header: auth.header, paySign: pay.paySign,
        plaintext: notification.plaintext, tampered, stale });
    }
    console.log(`WXPAY_RESULT ${JSON.stringify(out)}`);
  },
};
