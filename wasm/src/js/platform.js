// The platform provider's `node:crypto` primitives that take several JS calls, as one function
// each: one crossing of the wasm boundary per primitive instead of one per call (wasm-bindgen
// snippet, shipped with both builds). The cryptography is node:crypto's; no protocol logic
// here. Inputs are views on wasm memory (no copy); the output is written into `out`, a view on
// wasm memory too.

/** AES-256-GCM decryption of `ct` with its 16-byte `tag` into `out` (as long as `ct`); `false`
 * when the tag does not verify. */
export function aes256GcmDecryptInto(crypto, key, nonce, aad, ct, tag, out) {
  let p;
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    d.setAuthTag(tag);
    p = d.update(ct);
    d.final(); // throws on a tag mismatch
    if (p.length !== out.length) return false;
    out.set(p);
    return true;
  } catch {
    return false;
  } finally {
    // The plaintext stays in the JS heap only until the collector runs; wipe it.
    if (p) p.fill(0);
  }
}
