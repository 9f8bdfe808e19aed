// Type declarations of `wxpay-wasm`, written by hand (the wasm-bindgen glue's own are not
// shipped): the same API from every entry (Node `require`/`import`, web/workerd).

/** The error codes of the test vectors' README; `err.code` of every thrown `WxpayError`. */
export type ErrorCode =
  | 'signature_mismatch'
  | 'unknown_serial'
  | 'timestamp_expired'
  | 'malformed'
  | 'decrypt_failed'
  | 'invalid_key';

/** Every error this package throws: a real `Error` (`name === 'WxpayError'`). */
export interface WxpayError extends Error {
  readonly code: ErrorCode;
  /** `true` when a `WECHATPAY/SIGNTEST/` probe signature was rejected. */
  readonly probe?: true;
}

/**
 * Which implementation performs RSA: `platform` = `node:crypto` (Node, workerd with
 * `nodejs_compat`), `rust` = the pure-Rust core, `auto` (default) = platform when available.
 */
export type Provider = 'auto' | 'platform' | 'rust';

export interface KeyOptions {
  provider?: Provider;
}

/** Unix seconds; defaults to `Date.now()` wherever it is optional. */
export type UnixSeconds = number;

/** A message or body: a string (UTF-8) or the exact bytes. */
export type Bytes = string | Uint8Array;

/** Header names are matched case-insensitively. */
export type HeadersLike =
  | Record<string, string | string[] | undefined>
  | Headers
  | Map<string, string>
  | Iterable<readonly [string, string]>;

/**
 * Loads the module. Node: nothing to do (kept for portable code). Web/workerd: instantiates
 * `input` (a `WebAssembly.Module`, URL, `Response` or bytes; default: fetch the .wasm next to
 * the glue) and installs `node:crypto` when the platform has it (or `options.crypto`; `null`
 * forces the pure-Rust provider).
 */
export function init(
  input?: WebAssembly.Module | URL | string | Response | BufferSource | Promise<Response>,
  options?: { crypto?: unknown | null },
): Promise<void>;

/** Installs (or with `null` removes) the `node:crypto` module used by the platform provider. */
export function setPlatformCrypto(crypto: unknown | null): void;
/** Whether `provider: 'auto'` means `node:crypto`. */
export function platformCryptoAvailable(): boolean;

/** The `{ message, signature, header }` of an APIv3 request signature. */
export interface Authorization {
  /** The exact signed text (`METHOD\nURL\ntimestamp\nnonce\nbody\n`). */
  message: string;
  signature: string;
  /** The `Authorization` header value (`WECHATPAY2-SHA256-RSA2048 mchid="…",…`). */
  header: string;
}

/** The object to pass to `wx.requestPayment` (APIv3). */
export interface RequestPayment {
  appId: string;
  timeStamp: string;
  nonceStr: string;
  package: string;
  signType: 'RSA';
  paySign: string;
}

/** The object to pass to `wx.requestPayment` (APIv2). */
export interface RequestPaymentV2 {
  appId: string;
  timeStamp: string;
  nonceStr: string;
  package: string;
  signType: 'MD5' | 'HMAC-SHA256';
  paySign: string;
}

export interface SignOptions {
  /** Default: `timestamp(now)`. */
  timeStamp?: string;
  /** Default: a fresh 32-character nonce. */
  nonceStr?: string;
  now?: UnixSeconds;
}

/** The merchant's API key (`apiclient_key.pem`) with its mchid and certificate serial. */
export class MerchantSigner {
  /** @throws {WxpayError} `invalid_key` */
  constructor(pem: string, mchid: string, serialNo: string, options?: KeyOptions);
  readonly mchid: string;
  readonly serialNo: string;
  readonly provider: 'platform' | 'rust';
  /** SHA256withRSA, base64. */
  sign(message: Bytes): string;
  /** RSA-OAEP (SHA-1) decryption of a sensitive field. @throws {WxpayError} `decrypt_failed` */
  decryptOaep(ciphertext: string): string;
  /** @throws {WxpayError} `malformed` for a lower-case method or a URL not starting with `/` */
  authorization(
    method: string,
    url: string,
    body?: string,
    options?: { timestamp?: string; nonceStr?: string; now?: UnixSeconds },
  ): Authorization;
  /** `prepayId` with or without the `prepay_id=` prefix. */
  paySign(appId: string, prepayId: string, options?: SignOptions): RequestPayment;
  /** Frees the key now instead of at garbage collection. */
  free(): void;
  [Symbol.dispose](): void;
}

/** One RSA public key (SPKI PEM). */
export class PublicKey {
  constructor(pem: string, options?: KeyOptions);
  /** @throws {WxpayError} `signature_mismatch` */
  verify(message: Bytes, signature: string): void;
  encryptOaep(plaintext: string): string;
  free(): void;
  [Symbol.dispose](): void;
}

/** A verified, decrypted APIv3 notification. */
export interface Notification {
  id: string;
  createTime: string;
  eventType: string;
  resourceType: string;
  summary: string;
  resource: {
    originalType: string;
    algorithm: string;
    ciphertext: string;
    associatedData: string;
    nonce: string;
  };
  /** The decrypted resource, exactly as sent (JSON text; `JSON.parse` it). */
  plaintext: string;
}

/** WeChat Pay platform keys by serial: certificates and `PUB_KEY_ID_…` public keys together. */
export class PlatformKeys {
  constructor(options?: KeyOptions);
  readonly provider: 'platform' | 'rust';
  /** Returns the certificate serial (upper-case hex). */
  addCertificate(pem: string): string;
  addPublicKey(keyId: string, pem: string): void;
  has(serial: string): boolean;
  serials(): string[];
  /** The serial for `Wechatpay-Serial` when encrypting sensitive fields. */
  preferredSerial(now?: UnixSeconds): string | undefined;
  removeExpired(now?: UnixSeconds): number;
  /** @throws {WxpayError} `unknown_serial`, `signature_mismatch` */
  verify(serial: string, message: Bytes, signature: string): void;
  encryptOaep(serial: string, plaintext: string): string;
  /**
   * Verifies an APIv3 response. Pass the body exactly as received.
   * @throws {WxpayError} `malformed`, `timestamp_expired`, `unknown_serial`, `signature_mismatch`
   */
  verifyResponse(headers: HeadersLike, body: Bytes, now?: UnixSeconds): void;
  /**
   * Verifies an APIv3 notification and decrypts its resource.
   * @throws {WxpayError} as `verifyResponse`, and `decrypt_failed`
   */
  verifyNotification(apiV3Key: ApiV3Key, headers: HeadersLike, body: Bytes, now?: UnixSeconds): Notification;
  /**
   * Verifies a `GET /v3/certificates` response and decrypts it: with a key held here, or on the
   * first download with the certificate the response carries (which only the APIv3 key
   * decrypts). `add: true` also adds the certificates to this set.
   * @throws {WxpayError} as `verifyNotification`, and `invalid_key`
   */
  verifyCertificatesResponse(apiV3Key: ApiV3Key, headers: HeadersLike, body: Bytes,
    options?: { now?: UnixSeconds; add?: boolean }): DownloadedCertificate[];
  free(): void;
  [Symbol.dispose](): void;
}

export interface DownloadedCertificate {
  serialNo: string;
  effectiveTime: string;
  expireTime: string;
  notBefore: number;
  notAfter: number;
  pem: string;
}

/** The APIv3 key (32 bytes). With the platform provider, AES-GCM runs in `node:crypto`. */
export class ApiV3Key {
  /** @throws {WxpayError} `invalid_key` unless 32 bytes */
  constructor(key: string, options?: KeyOptions);
  readonly provider: 'platform' | 'rust';
  decrypt(nonce: string, associatedData: string, ciphertext: string): string;
  encrypt(nonce: string, associatedData: string, plaintext: string): string;
  /** Decrypts a `GET /v3/certificates` body (verify the response first). */
  decryptCertificates(body: Bytes): DownloadedCertificate[];
  free(): void;
  [Symbol.dispose](): void;
}

/** A 32-character `[0-9A-Za-z]` nonce. */
export function nonceStr(): string;
/** Decimal unix seconds. */
export function timestamp(now?: UnixSeconds): string;
/** Diagnostics: the exact text an APIv3 request signature covers. */
export function requestMessage(method: string, url: string, timestamp: string, nonceStr: string, body: string): string;
/** Diagnostics: the exact text a `paySign` covers. */
export function paySignMessage(appId: string, timeStamp: string, nonceStr: string, packageValue: string): string;
/** Diagnostics: the exact text a response/notification signature covers. */
export function responseMessage(timestamp: string, nonce: string, body: Bytes): string;

/** APIv2 parameters; numbers must be safe integers, `null`/`undefined`/empty are skipped. */
export type V2Params = Record<string, string | number | boolean | null | undefined>;
export type V2SignType = 'MD5' | 'HMAC-SHA256';

/** APIv2 signature (default MD5), upper-case hex. */
export function v2Sign(params: V2Params, key: string, signType?: V2SignType): { stringToSign: string; sign: string };
export function v2CanonicalString(params: V2Params): string;
/** @throws {WxpayError} `signature_mismatch` */
export function v2Verify(params: V2Params, key: string, signType?: V2SignType): void;
export function v2ParseXml(xml: string): Record<string, string>;
/** Verifies an APIv2 XML notification and returns its fields. */
export function v2VerifyNotification(xml: string, key: string, orderSignType?: V2SignType): Record<string, string>;
export function v2SignedXml(params: V2Params, key: string, signType?: V2SignType): string;
export function v2ReplyXml(ok: boolean, message: string): string;
export function v2DecryptReqInfo(reqInfo: string, key: string): string;
export function v2RequestPayment(
  key: string,
  signType: V2SignType | undefined,
  appId: string,
  prepayId: string,
  options?: SignOptions,
): RequestPaymentV2;
