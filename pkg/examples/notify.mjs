// The framework-independent part of a WeChat Pay APIv3 notification endpoint, shared by the
// Express, Koa and Fastify recipes next to this file:
//
// 1. verify the signature over the raw body bytes exactly as received (never a re-serialized
//    JSON object: one changed space and the signature no longer matches),
// 2. decrypt the resource,
// 3. persist what happened, and only then
// 4. answer: 204 (no body) once recorded; otherwise an error status with WeChat's
//    `{"code":"FAIL","message":…}`, on which WeChat Pay retries later.
import { ApiV3Key, PlatformKeys } from 'wxpay-wasm';

/** HTTP status for each error code: the sender's fault is 4xx, ours (retry later) is 5xx. */
const STATUS = {
  signature_mismatch: 401, // forged, tampered, or a WECHATPAY/SIGNTEST probe
  timestamp_expired: 400, // replayed or badly delayed
  malformed: 400,
  unknown_serial: 503, // a platform key we do not hold yet: refresh certificates, WeChat retries
  decrypt_failed: 500, // wrong APIv3 key configured: ours to fix
  invalid_key: 500,
};

/**
 * Handles one notification. `deps.store.record(notification, resource)` must persist durably
 * and idempotently (the notification `id` is unique per event; WeChat may deliver it again) and
 * throw if it could not.
 * @returns {Promise<{ status: number, body?: { code: string, message: string } }>}
 */
export async function handleNotification(deps, headers, rawBody) {
  let notification;
  try {
    notification = deps.platformKeys.verifyNotification(deps.apiV3Key, headers, rawBody);
  } catch (e) {
    const status = STATUS[e.code] ?? 500;
    deps.log?.(`notification rejected: ${e.code}${e.probe ? ' (probe)' : ''}`);
    return { status, body: { code: 'FAIL', message: e.code ?? 'error' } };
  }
  try {
    await deps.store.record(notification, JSON.parse(notification.plaintext));
  } catch (e) {
    // Not recorded, so not acknowledged: WeChat Pay will deliver it again.
    deps.log?.(`notification ${notification.id} not recorded: ${e.message}`);
    return { status: 500, body: { code: 'FAIL', message: 'not recorded' } };
  }
  return { status: 204 };
}

/** Keys from configuration, parsed once at start-up (public-key mode shown; certificate mode
 * adds certificates with `platformKeys.addCertificate(pem)`). */
export function keysFrom({ publicKeyId, publicKeyPem, certificatePems = [], apiV3Key }) {
  const platformKeys = new PlatformKeys();
  if (publicKeyId) platformKeys.addPublicKey(publicKeyId, publicKeyPem);
  for (const pem of certificatePems) platformKeys.addCertificate(pem);
  return { platformKeys, apiV3Key: new ApiV3Key(apiV3Key) };
}

/** Largest body accepted: WeChat's notifications are a few KB. */
export const BODY_LIMIT = 64 * 1024;
