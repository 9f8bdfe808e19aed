// Checked by `tsc --noEmit` (test/types.test.mjs): the declarations in index.d.ts fit real use.
import {
  ApiV3Key, MerchantSigner, PlatformKeys, init, v2Sign, v2VerifyNotification,
  type Notification, type RequestPayment, type WxpayError,
} from 'wxpay-wasm';

export async function handler(pem: string, certPem: string, apiV3Key: string): Promise<string> {
  await init();
  const signer = new MerchantSigner(pem, '1900009191', '1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C');
  const pay: RequestPayment = signer.paySign('wxd678efh567hg6787', 'wx201410272009395522657a690389285100');
  const auth = signer.authorization('POST', '/v3/pay/transactions/jsapi', '{}', { now: 1700000000 });
  const keys = new PlatformKeys({ provider: 'auto' });
  const serial: string = keys.addCertificate(certPem);
  try {
    const n: Notification = keys.verifyNotification(new ApiV3Key(apiV3Key),
      new Headers({ 'Wechatpay-Serial': serial }), '{}');
    return n.plaintext + n.resource.associatedData;
  } catch (e) {
    const err = e as WxpayError;
    if (err.code === 'timestamp_expired' || err.probe) return 'retry';
    throw err;
  } finally {
    keys.free();
    signer.free();
  }
  // @ts-expect-error unreachable; also checks that a wrong code literal is rejected
  const bad: WxpayError['code'] = 'nope';
  return pay.paySign + auth.header + v2Sign({ total_fee: 1 }, 'k', 'MD5').sign
    + v2VerifyNotification('<xml/>', 'k')['return_code'] + bad;
}
