//! Users: login (`jscode2session` → a session token), the `session_key` kept encrypted at rest,
//! and its documented use — decrypting the mini-program's open data (开放数据解密).
//!
//! The `session_key` is sealed with AES-256-GCM (the core's [`wxpay_core::aead`]) under the data
//! key: `WXPAY_DATA_KEY` (32 bytes) or, when unset, a key derived with HKDF-SHA256 from the
//! APIv3 key. Stored as `v1.<12-char nonce>.<base64 ciphertext>`; a database leak alone reveals
//! no session key.

use hmac::{Hmac, KeyInit as _, Mac as _};
use rand_core::UnwrapErr;
use serde_json::Value;
use sha2::Sha256;
use wxpay_core::aead::{self, ApiV3Key};

use super::{AppState, ServiceError};
use crate::config::Secret;

/// Associated data binding a sealed value to its purpose.
const SEALED_AAD: &str = "wxpay-host session_key v1";

/// The key that seals session keys at rest.
pub struct DataKey(ApiV3Key);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// `WXPAY_DATA_KEY` when given (32 bytes), else HKDF-SHA256(salt = "wxpay-host data key",
    /// ikm = the APIv3 key, info = "session_key at rest v1"), the first 16 bytes hex-encoded
    /// into the 32-byte key format the core's AES-256-GCM takes.
    ///
    /// # Errors
    /// [`wxpay_core::Error`] if the configured key is not 32 bytes.
    pub fn new(
        configured: Option<&Secret>,
        api_v3_key: &Secret,
    ) -> Result<Self, wxpay_core::Error> {
        if let Some(k) = configured {
            return ApiV3Key::new(k.expose()).map(Self);
        }
        let extract = |salt: &[u8], ikm: &[u8]| -> Option<Vec<u8>> {
            let mut m = <Hmac<Sha256>>::new_from_slice(salt).ok()?;
            m.update(ikm);
            Some(m.finalize().into_bytes().to_vec())
        };
        let prk = zeroize::Zeroizing::new(
            extract(b"wxpay-host data key", api_v3_key.expose().as_bytes())
                .ok_or(wxpay_core::Error::InvalidKey("data key derivation"))?,
        );
        let mut info = b"session_key at rest v1".to_vec();
        info.push(1);
        let okm = zeroize::Zeroizing::new(
            extract(&prk, &info).ok_or(wxpay_core::Error::InvalidKey("data key derivation"))?,
        );
        let hex_key = zeroize::Zeroizing::new(hex::encode(&okm[..16]));
        ApiV3Key::new(&hex_key).map(Self)
    }

    /// Seals a secret for storage.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if encryption fails.
    pub fn seal(&self, secret: &Secret) -> Result<String, ServiceError> {
        let nonce: String = wxpay_core::nonce_str(&mut UnwrapErr(getrandom::SysRng))
            .chars()
            .take(12)
            .collect();
        let ct = aead::encrypt(&self.0, &nonce, SEALED_AAD, secret.expose().as_bytes())
            .map_err(|e| ServiceError::Internal(format!("seal: {e}")))?;
        Ok(format!("v1.{nonce}.{ct}"))
    }

    /// Opens a sealed secret; `None` for anything that is not one (e.g. a value written before
    /// sealing existed, or under another key).
    #[must_use]
    pub fn open(&self, stored: &str) -> Option<Secret> {
        let rest = stored.strip_prefix("v1.")?;
        let (nonce, ct) = rest.split_once('.')?;
        aead::decrypt(&self.0, nonce, SEALED_AAD, ct)
            .ok()
            .map(Secret::new)
    }
}

/// A logged-in user's new session.
#[derive(Debug)]
pub struct Session {
    /// The bearer token (only its hash is stored).
    pub token: String,
    /// The user's openid.
    pub openid: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Exchanges a `wx.login` code for the user's identity, stores the user (session key sealed)
/// and a new session (by the SHA-256 of its token).
///
/// # Errors
/// Upstream errors (invalid code, rate limit, busy), storage, OS randomness.
pub async fn login(s: &AppState, code: &str) -> Result<Session, ServiceError> {
    let mut user = s.wechat.jscode2session(code).await?;
    let now = s.now();
    user.session_key = Secret::new(s.data_key.seal(&user.session_key)?);
    s.store.upsert_user(&user, now).await?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("os rng: {e}")))?;
    let token = hex::encode(raw);
    let ttl = i64::try_from(s.config.session_ttl.as_secs()).unwrap_or(7200);
    s.store
        .create_session(
            &crate::http::token_hash(&token),
            &user.openid,
            now + ttl,
            now,
        )
        .await?;
    Ok(Session {
        token,
        openid: user.openid,
        expires_in: ttl,
    })
}

/// Why open data could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum OpenDataError {
    /// No usable session key is stored: the user must log in again (`wx.login`).
    #[error("no session key: log in again")]
    NoSessionKey,
    /// The data does not decrypt with the session key (stale key, tampered or malformed data).
    #[error("encryptedData does not decrypt with the current session key")]
    Undecryptable,
    /// Decrypted, but for another mini-program (`watermark.appid`).
    #[error("watermark.appid is not this mini-program")]
    ForeignWatermark,
}

/// Decrypts open data for `openid` with its stored session key and checks its
/// `watermark.appid`.
///
/// # Errors
/// [`OpenDataError`] (as `Ok(Err(..))`), storage failures.
pub async fn decrypt_open_data(
    s: &AppState,
    openid: &str,
    encrypted_data: &str,
    iv: &str,
) -> Result<Result<Value, OpenDataError>, ServiceError> {
    let Some(key) = s
        .store
        .session_key(openid)
        .await?
        .and_then(|stored| s.data_key.open(&stored))
    else {
        return Ok(Err(OpenDataError::NoSessionKey));
    };
    let Ok(text) = wxpay_core::open_data::decrypt_open_data(key.expose(), encrypted_data, iv)
    else {
        return Ok(Err(OpenDataError::Undecryptable));
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Ok(Err(OpenDataError::Undecryptable));
    };
    if v["watermark"]["appid"].as_str() != Some(s.config.appid.as_str()) {
        return Ok(Err(OpenDataError::ForeignWatermark));
    }
    Ok(Ok(v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_session_keys_open_only_under_their_key() {
        let v3 = Secret::new("0123456789abcdef0123456789abcdef");
        let derived = DataKey::new(None, &v3).unwrap();
        let sealed = derived
            .seal(&Secret::new("tiihtNczf5v6AKRyjwEUhQ=="))
            .unwrap();
        assert!(sealed.starts_with("v1."), "{sealed}");
        assert!(!sealed.contains("tiihtNczf5v6AKRyjwEUhQ"));
        assert_eq!(
            derived.open(&sealed).unwrap().expose(),
            "tiihtNczf5v6AKRyjwEUhQ=="
        );
        // Derivation is stable; another key (or a legacy plaintext value) does not open it.
        assert!(DataKey::new(None, &v3).unwrap().open(&sealed).is_some());
        let other =
            DataKey::new(Some(&Secret::new("fedcba9876543210fedcba9876543210")), &v3).unwrap();
        assert!(other.open(&sealed).is_none());
        assert!(derived.open("tiihtNczf5v6AKRyjwEUhQ==").is_none());
        assert!(DataKey::new(Some(&Secret::new("short")), &v3).is_err());
        assert_eq!(format!("{derived:?}"), "DataKey([redacted])");
    }
}
