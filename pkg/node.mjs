// Node entry for `import`: the same instance as `require('wxpay-wasm')` (no dual-package hazard).
import wasm from './node.cjs';

export const {
  init,
  MerchantSigner, PlatformKeys, PublicKey, ApiV3Key,
  nonceStr, timestamp, requestMessage, paySignMessage, responseMessage,
  setPlatformCrypto, platformCryptoAvailable,
  v2Sign, v2Verify, v2CanonicalString, v2ParseXml, v2VerifyNotification, v2SignedXml,
  v2ReplyXml, v2DecryptReqInfo, v2RequestPayment,
} = wasm;
export default wasm;
