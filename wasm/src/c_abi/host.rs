//! Crypto supplied by the embedding host, optionally — the C ABI's counterpart of the npm
//! package's `node:crypto` provider. Pure-wasm RSA signs a few dozen times a second; a Python
//! or Go host that has OpenSSL (or AWS-LC, or Go's crypto) signs thousands.
//!
//! Optional for real: a host that supplies nothing links exactly as before (one import). One
//! that supplies crypto appends its functions to the module's exported, growable function table
//! (`__indirect_function_table`) and names their indices once with the `host_crypto.install`
//! op; the module then calls them through that table. Their types (all `i32`):
//!
//! | function | signature | meaning |
//! | --- | --- | --- |
//! | `rsa_key` | `(der_ptr, der_len) -> handle` | parse a PKCS#8 RSA private key; `< 0` on failure |
//! | `rsa_sign` | `(handle, msg_ptr, msg_len, out_ptr, out_cap) -> len` | RSASSA-PKCS1-v1_5 SHA-256; `< 0` on failure |
//! | `rsa_key_free` | `(handle)` | release the key |
//! | `aes_256_gcm_decrypt` | `(key_ptr, nonce_ptr, aad_ptr, aad_len, ct_ptr, ct_len, out_ptr) -> len` | 32-byte key, 12-byte nonce, ciphertext ‖ 16-byte tag; plaintext (`ct_len − 16` bytes) to `out_ptr`; `< 0` when the tag does not verify |
//!
//! Keys for this provider are created with `"provider": "host"`. Verification, OAEP and the key
//! policy (RSA 2048–4096) stay in the core: the key is also parsed by the pure-Rust provider,
//! which checks it and does OAEP decryption.

use std::cell::Cell;
use wxpay_core::provider::{CryptoProvider, RsaPrivateKey, RsaPublicKey, rustcrypto};
use wxpay_core::{Error, Result};
use zeroize::Zeroizing;

/// Table indices of the host's functions; 0 = not supplied (index 0 is never a function).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HostFunctions {
    /// `rsa_key(der_ptr, der_len) -> handle`.
    #[serde(default)]
    pub rsa_key: u32,
    /// `rsa_sign(handle, msg_ptr, msg_len, out_ptr, out_cap) -> len`.
    #[serde(default)]
    pub rsa_sign: u32,
    /// `rsa_key_free(handle)`.
    #[serde(default)]
    pub rsa_key_free: u32,
    /// `aes_256_gcm_decrypt(key, nonce, aad, aad_len, ct, ct_len, out) -> len`.
    #[serde(default)]
    pub aes_256_gcm_decrypt: u32,
}

thread_local! {
    static FUNCTIONS: Cell<HostFunctions> = const { Cell::new(HostFunctions {
        rsa_key: 0, rsa_sign: 0, rsa_key_free: 0, aes_256_gcm_decrypt: 0 }) };
}

/// Installs the host's functions (replacing earlier ones).
///
/// # Errors
/// [`Error::Malformed`] when RSA is half supplied (`rsa_key` and `rsa_sign` go together), or
/// outside wasm32, where there is no table to call through.
pub fn install(f: HostFunctions) -> Result<()> {
    if (f.rsa_key == 0) != (f.rsa_sign == 0) {
        return Err(Error::Malformed(
            "rsa_key and rsa_sign are supplied together",
        ));
    }
    if !cfg!(target_arch = "wasm32") {
        return Err(Error::Malformed(
            "host crypto is called through the wasm function table",
        ));
    }
    FUNCTIONS.set(f);
    Ok(())
}

/// Whether the host supplied RSA signing.
#[must_use]
pub fn has_rsa() -> bool {
    FUNCTIONS.get().rsa_sign != 0
}

/// The host provider as the core sees it.
#[derive(Debug, Clone, Copy)]
pub struct HostProvider;

/// The host provider as a `&'static dyn CryptoProvider`.
pub static PROVIDER: HostProvider = HostProvider;

#[cfg(target_arch = "wasm32")]
mod call {
    // Function pointers are table indices in wasm32; a host function of another type makes
    // `call_indirect` trap, it cannot be called with the wrong arguments.
    #![allow(unsafe_code)]

    pub(super) fn rsa_key(idx: u32, der: &[u8]) -> i32 {
        // SAFETY: `idx` is a table slot the host filled with a function of this type (the
        // contract of `host_crypto.install`); a mismatch traps in `call_indirect`.
        let f: extern "C" fn(*const u8, usize) -> i32 =
            unsafe { core::mem::transmute(idx as usize) };
        f(der.as_ptr(), der.len())
    }

    pub(super) fn rsa_sign(idx: u32, handle: i32, msg: &[u8], out: &mut [u8]) -> i32 {
        // SAFETY: as above.
        let f: extern "C" fn(i32, *const u8, usize, *mut u8, usize) -> i32 =
            unsafe { core::mem::transmute(idx as usize) };
        f(handle, msg.as_ptr(), msg.len(), out.as_mut_ptr(), out.len())
    }

    pub(super) fn rsa_key_free(idx: u32, handle: i32) {
        // SAFETY: as above.
        let f: extern "C" fn(i32) = unsafe { core::mem::transmute(idx as usize) };
        f(handle);
    }

    pub(super) fn aes_256_gcm_decrypt(
        idx: u32,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        ct: &[u8],
        out: &mut [u8],
    ) -> i32 {
        // SAFETY: as above; `out` holds `ct.len() - 16` bytes, all the host may write.
        let f: extern "C" fn(
            *const u8,
            *const u8,
            *const u8,
            usize,
            *const u8,
            usize,
            *mut u8,
        ) -> i32 = unsafe { core::mem::transmute(idx as usize) };
        f(
            key.as_ptr(),
            nonce.as_ptr(),
            aad.as_ptr(),
            aad.len(),
            ct.as_ptr(),
            ct.len(),
            out.as_mut_ptr(),
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod call {
    // Never reached: `install` refuses outside wasm32, so every index stays 0.
    pub(super) fn rsa_key(_: u32, _: &[u8]) -> i32 {
        -1
    }
    pub(super) fn rsa_sign(_: u32, _: i32, _: &[u8], _: &mut [u8]) -> i32 {
        -1
    }
    pub(super) fn rsa_key_free(_: u32, _: i32) {}
    pub(super) fn aes_256_gcm_decrypt(
        _: u32,
        _: &[u8; 32],
        _: &[u8; 12],
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
    ) -> i32 {
        -1
    }
}

impl CryptoProvider for HostProvider {
    fn name(&self) -> &'static str {
        "host"
    }

    fn private_key(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivateKey>> {
        let f = FUNCTIONS.get();
        if f.rsa_key == 0 {
            return Err(Error::InvalidKey(
                "the host supplied no RSA (host_crypto.install)",
            ));
        }
        // The core's policy and OAEP: the pure-Rust provider parses and checks the key too.
        let rust = rustcrypto::PROVIDER.private_key(pkcs8_der)?;
        let handle = call::rsa_key(f.rsa_key, pkcs8_der);
        if handle < 0 {
            return Err(Error::InvalidKey("the host could not parse the RSA key"));
        }
        Ok(Box::new(HostKey { handle, rust }))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublicKey>> {
        rustcrypto::PROVIDER.public_key(spki_der)
    }

    fn aes_256_gcm_decrypt(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        let f = FUNCTIONS.get();
        if f.aes_256_gcm_decrypt == 0 {
            return None;
        }
        let len = ciphertext_and_tag.len().checked_sub(16)?;
        let mut out = Zeroizing::new(vec![0u8; len]);
        let n = call::aes_256_gcm_decrypt(
            f.aes_256_gcm_decrypt,
            key,
            nonce,
            aad,
            ciphertext_and_tag,
            &mut out,
        );
        Some(if usize::try_from(n).ok() == Some(len) {
            Ok(out)
        } else {
            Err(Error::DecryptFailed)
        })
    }
}

struct HostKey {
    handle: i32,
    rust: Box<dyn RsaPrivateKey>,
}

impl RsaPrivateKey for HostKey {
    fn sign_pkcs1v15_sha256(
        &self,
        _rng: &mut dyn rand_core::CryptoRng,
        message: &[u8],
    ) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; 512];
        let n = call::rsa_sign(FUNCTIONS.get().rsa_sign, self.handle, message, &mut sig);
        match usize::try_from(n) {
            Ok(n) if (256..=512).contains(&n) => {
                sig.truncate(n);
                Ok(sig)
            }
            _ => Err(Error::InvalidKey("the host could not sign")),
        }
    }

    fn decrypt_oaep_sha1(
        &self,
        rng: &mut dyn rand_core::CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.rust.decrypt_oaep_sha1(rng, ciphertext)
    }
}

impl Drop for HostKey {
    fn drop(&mut self) {
        let f = FUNCTIONS.get();
        if f.rsa_key_free != 0 {
            call::rsa_key_free(f.rsa_key_free, self.handle);
        }
    }
}
