//! The platform crypto provider: the core's RSA primitives through `node:crypto`.
//!
//! Pure-wasm RSA signs about 100–150 times a second; `node:crypto` called from wasm signs about
//! as fast as Node itself, with identical bytes (PKCS#1 v1.5 is deterministic). So where the
//! platform has `node:crypto` (Node, workerd with `nodejs_compat`, Deno, Bun) the package hands
//! the module in once ([`set_platform_crypto`]) and every key parsed for this provider becomes a
//! `KeyObject` once; hot calls pass only the message bytes (a view on wasm memory, no copy) and
//! copy back the signature.
//!
//! `KeyObject`s are JS values and so neither `Send` nor `Sync`, which the core's provider traits
//! require. They therefore live in a thread-local table (wasm32 without the `atomics` feature
//! has one thread) and the Rust key objects hold only their slot number; dropping one frees the
//! slot.

use js_sys::{Object, Reflect, Uint8Array};
use rand_core::CryptoRng;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wxpay_core::provider::{CryptoProvider, RsaPrivateKey, RsaPublicKey};
use wxpay_core::{Error, Result};
use zeroize::Zeroizing;

#[wasm_bindgen]
extern "C" {
    /// The subset of the `node:crypto` module this provider calls.
    #[derive(Clone)]
    pub type NodeCrypto;

    #[wasm_bindgen(method, catch, js_name = createPrivateKey)]
    fn create_private_key(this: &NodeCrypto, options: &Object) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = createPublicKey)]
    fn create_public_key(this: &NodeCrypto, options: &Object) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn sign(
        this: &NodeCrypto,
        algorithm: &JsValue,
        data: &[u8],
        key: &JsValue,
    ) -> Result<Uint8Array, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn verify(
        this: &NodeCrypto,
        algorithm: &JsValue,
        data: &[u8],
        key: &JsValue,
        signature: &[u8],
    ) -> Result<bool, JsValue>;

    #[wasm_bindgen(method, catch, js_name = publicEncrypt)]
    fn public_encrypt(this: &NodeCrypto, key: &Object, data: &[u8]) -> Result<Uint8Array, JsValue>;

    #[wasm_bindgen(method, catch, js_name = privateDecrypt)]
    fn private_decrypt(this: &NodeCrypto, key: &Object, data: &[u8])
    -> Result<Uint8Array, JsValue>;
}

#[wasm_bindgen(module = "/src/js/platform.js")]
extern "C" {
    #[wasm_bindgen(js_name = aes256GcmDecryptInto)]
    fn aes_256_gcm_decrypt_into(
        crypto: &NodeCrypto,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> bool;
}

/// `crypto.constants.RSA_PKCS1_OAEP_PADDING` (OpenSSL's value; the same in Node and workerd).
const RSA_PKCS1_OAEP_PADDING: f64 = 4.0;

#[derive(Clone)]
struct Platform {
    crypto: NodeCrypto,
    /// The interned algorithm names, so that hot calls do not build JS strings each time.
    sha256: JsValue,
}

/// A parsed key: the module that parsed it, its `KeyObject` and the options object OAEP calls
/// take, built once.
struct Slot {
    platform: Platform,
    key: JsValue,
    oaep: Object,
}

thread_local! {
    static PLATFORM: RefCell<Option<Platform>> = const { RefCell::new(None) };
    static SLOTS: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// Installs (or, with `undefined`/`null`, removes) the `node:crypto` module that
/// [`PROVIDER`] calls. Keys parsed before keep the module they were parsed with.
#[wasm_bindgen(js_name = setPlatformCrypto)]
pub fn set_platform_crypto(crypto: JsValue) {
    let platform = if crypto.is_undefined() || crypto.is_null() {
        None
    } else {
        Some(Platform {
            crypto: crypto.unchecked_into(),
            sha256: JsValue::from_str("sha256"),
        })
    };
    PLATFORM.with_borrow_mut(|p| *p = platform);
}

/// Whether a platform `node:crypto` is installed, i.e. whether `provider: "auto"` means the
/// platform provider.
#[wasm_bindgen(js_name = platformCryptoAvailable)]
#[must_use]
pub fn platform_crypto_available() -> bool {
    PLATFORM.with_borrow(Option::is_some)
}

/// The platform provider as the core sees it.
#[derive(Debug, Clone, Copy)]
pub struct NodeCryptoProvider;

/// The platform provider as a `&'static dyn CryptoProvider`.
pub static PROVIDER: NodeCryptoProvider = NodeCryptoProvider;

fn with_platform<T>(f: impl FnOnce(&Platform) -> Result<T>) -> Result<T> {
    PLATFORM.with_borrow(|p| match p {
        Some(p) => f(p),
        None => Err(Error::InvalidKey(
            "no platform crypto (node:crypto) is installed",
        )),
    })
}

fn with_slot<T>(index: usize, f: impl FnOnce(&Platform, &Slot) -> Result<T>) -> Result<T> {
    SLOTS.with_borrow(|slots| match slots.get(index) {
        Some(Some(slot)) => f(&slot.platform, slot),
        // Unreachable while the owning `KeySlot` is alive: it frees its slot only on drop.
        _ => Err(Error::InvalidKey("platform key was freed")),
    })
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // `Reflect.set` on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// Owns one slot of the table; frees it on drop.
#[derive(Debug)]
struct KeySlot(usize);

impl KeySlot {
    fn insert(platform: Platform, key: JsValue) -> Self {
        let oaep = Object::new();
        set(&oaep, "key", &key);
        set(&oaep, "padding", &JsValue::from_f64(RSA_PKCS1_OAEP_PADDING));
        set(&oaep, "oaepHash", &JsValue::from_str("sha1"));
        let slot = Slot {
            platform,
            key,
            oaep,
        };
        SLOTS.with_borrow_mut(|slots| {
            if let Some(i) = slots.iter().position(Option::is_none) {
                slots[i] = Some(slot);
                Self(i)
            } else {
                slots.push(Some(slot));
                Self(slots.len() - 1)
            }
        })
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        // `try_with`: during thread-local teardown there is nothing left to free.
        let _ = SLOTS.try_with(|slots| {
            if let Ok(mut slots) = slots.try_borrow_mut()
                && let Some(s) = slots.get_mut(self.0)
            {
                *s = None;
            }
        });
    }
}

fn der_options(der: &[u8], kind: &str) -> (Object, Uint8Array) {
    // A JS-owned copy: the wasm view may move if memory grows, and we wipe the copy afterwards.
    let bytes = Uint8Array::from(der);
    let options = Object::new();
    set(&options, "key", &bytes);
    set(&options, "format", &JsValue::from_str("der"));
    set(&options, "type", &JsValue::from_str(kind));
    (options, bytes)
}

impl CryptoProvider for NodeCryptoProvider {
    fn name(&self) -> &'static str {
        "node:crypto"
    }

    fn private_key(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivateKey>> {
        let (platform, key) = with_platform(|p| {
            let (options, bytes) = der_options(pkcs8_der, "pkcs8");
            let key = p.crypto.create_private_key(&options);
            bytes.fill(0, 0, bytes.length());
            let key = key.map_err(|_| Error::InvalidKey("not an RSA PKCS#8 private key"))?;
            Ok((p.clone(), key))
        })?;
        check_rsa(&key)?;
        Ok(Box::new(PrivateKey(KeySlot::insert(platform, key))))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublicKey>> {
        let (platform, key) = with_platform(|p| {
            let (options, _) = der_options(spki_der, "spki");
            let key = p
                .crypto
                .create_public_key(&options)
                .map_err(|_| Error::InvalidKey("not an RSA SubjectPublicKeyInfo"))?;
            Ok((p.clone(), key))
        })?;
        check_rsa(&key)?;
        Ok(Box::new(PublicKey(KeySlot::insert(platform, key))))
    }

    /// AES-256-GCM through `node:crypto`, which has AES instructions; the wasm module has only
    /// constant-time software AES, several times slower. Without an installed platform the core
    /// decrypts itself.
    fn aes_256_gcm_decrypt(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        PLATFORM.with_borrow(|p| {
            let p = p.as_ref()?;
            let Some((body, tag)) = ciphertext_and_tag
                .len()
                .checked_sub(16)
                .map(|n| ciphertext_and_tag.split_at(n))
            else {
                return Some(Err(Error::DecryptFailed));
            };
            let mut out = Zeroizing::new(vec![0; body.len()]);
            // One JS call: createDecipheriv, setAAD, setAuthTag, update, final (`platform.js`).
            // It answers `false` only when the tag does not verify.
            if aes_256_gcm_decrypt_into(&p.crypto, key, nonce, aad, body, tag, &mut out) {
                Some(Ok(out))
            } else {
                Some(Err(Error::DecryptFailed))
            }
        })
    }

    // MD5 and HMAC-SHA256 (APIv2) stay the core's defaults. Measured from wasm in Node 20
    // (`v2Sign`, one `node:crypto` call per digest): 1–3 µs slower per call at 100 bytes (a
    // hash or HMAC object costs more than hashing a few blocks in wasm; an APIv2 string is
    // 100–300 bytes), about even at 256–512 bytes, faster only from about 1 KiB; and the
    // override cost 341 bytes of the gzipped module, which would pass its size ceiling.
}

/// The same policy as the core's RustCrypto provider: RSA, 2048–4096 bits.
fn check_rsa(key: &JsValue) -> Result<()> {
    let get = |obj: &JsValue, k: &str| Reflect::get(obj, &JsValue::from_str(k)).ok();
    let is_rsa = get(key, "asymmetricKeyType")
        .and_then(|t| t.as_string())
        .as_deref()
        == Some("rsa");
    let bits = get(key, "asymmetricKeyDetails")
        .and_then(|d| get(&d, "modulusLength"))
        .and_then(|b| b.as_f64());
    match (is_rsa, bits) {
        (true, Some(bits)) if (2048.0..=4096.0).contains(&bits) => Ok(()),
        (true, _) => Err(Error::InvalidKey("RSA modulus must be 2048 to 4096 bits")),
        (false, _) => Err(Error::InvalidKey("not an RSA key")),
    }
}

#[derive(Debug)]
struct PrivateKey(KeySlot);

impl RsaPrivateKey for PrivateKey {
    fn sign_pkcs1v15_sha256(&self, _rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        // OpenSSL blinds private-key operations with its own RNG.
        with_slot(self.0.0, |p, s| {
            p.crypto
                .sign(&p.sha256, message, &s.key)
                .map(|sig| sig.to_vec())
                .map_err(|_| Error::InvalidKey("the RSA key could not sign"))
        })
    }

    fn decrypt_oaep_sha1(
        &self,
        _rng: &mut dyn CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        with_slot(self.0.0, |p, s| {
            let pt = p
                .crypto
                .private_decrypt(&s.oaep, ciphertext)
                .map_err(|_| Error::DecryptFailed)?;
            let out = Zeroizing::new(pt.to_vec());
            pt.fill(0, 0, pt.length());
            Ok(out)
        })
    }
}

#[derive(Debug)]
struct PublicKey(KeySlot);

impl RsaPublicKey for PublicKey {
    fn verify_pkcs1v15_sha256(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        with_slot(self.0.0, |p, s| {
            match p.crypto.verify(&p.sha256, message, &s.key, signature) {
                Ok(true) => Ok(()),
                // A signature of the wrong length makes some platforms throw rather than
                // return false: both are a mismatch.
                Ok(false) | Err(_) => Err(Error::SignatureMismatch),
            }
        })
    }

    fn encrypt_oaep_sha1(&self, _rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        with_slot(self.0.0, |p, s| {
            p.crypto
                .public_encrypt(&s.oaep, message)
                .map(|ct| ct.to_vec())
                .map_err(|_| Error::Malformed("plaintext too long for RSA-OAEP"))
        })
    }
}
