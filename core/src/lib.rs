//! # wxpay-core
//!
//! The sans-IO core of wxpay: every signature, verification and decryption of the WeChat Pay
//! mini-program payment flow, APIv2 and APIv3, byte-exact against the project's known-answer
//! vectors.
//!
//! No IO happens here: the current time comes in as `now` (unix seconds), randomness as a
//! [`rand_core::CryptoRng`], keys as PEM text. Outputs are values (headers, parameter objects,
//! decrypted payloads) that the caller sends or stores. The same code runs natively in the host
//! and as WebAssembly in Node and edge runtimes.
//!
//! | module | what |
//! | --- | --- |
//! | [`nonce`] | `nonce_str` and timestamps |
//! | [`v2`] | APIv2: canonical string, MD5/HMAC-SHA256, XML, notifications, `req_info` |
//! | [`v3`] | APIv3: `Authorization`, `paySign`, response/notification verification, certificates |
//! | [`keys`] | [`MerchantSigner`], [`PlatformKeys`], [`PublicKey`] |
//! | [`aead`] | `AEAD_AES_256_GCM` resource decryption |
//! | [`b64`] | strict standard base64 for signatures and ciphertexts |
//! | [`provider`] | the RSA primitives behind [`CryptoProvider`] (RustCrypto, AWS-LC, JS) |
//! | [`error`] | the one [`Error`] enum with its stable [`Error::code`] |
//!
//! The example of the project README (`core/tests/readme_example.rs` checks that the two stay
//! identical), with its set-up hidden:
//!
//! ```rust
//! use wxpay_core::{MerchantSigner, PlatformKeys, provider::default_provider, v3};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let keys = "../tests/vectors/keys";
//! # let pem = std::fs::read_to_string(format!("{keys}/merchant_private_key.pem"))?;
//! # let (serial, appid, prepay_id, now) = ("1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C", "wxd678efh567hg6787", "wx2014", 1_700_000_000u64);
//! # let vectors: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("../tests/vectors/v3_notification.json")?)?;
//! # let case = &vectors["cases"][0];
//! # let (raw_body, now) = (case["body"].as_str().unwrap_or_default().as_bytes(), case["now"].as_u64().unwrap_or_default());
//! # let request_headers = case["headers"].as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()));
//! # let api_v3_key = v3::ApiV3Key::new(vectors["api_v3_key"].as_str().unwrap_or_default())?;
//! # let mut platform_keys = PlatformKeys::new();
//! # platform_keys.insert_certificate_pem(default_provider(), &std::fs::read_to_string(format!("{keys}/platform_cert.pem"))?)?;
//!
//! let signer = MerchantSigner::from_pem(default_provider(), &pem, "1900009191", serial)?;
//! let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
//! // wx.requestPayment parameters, ready to serialize to the mini-program
//! let nonce = wxpay_core::nonce_str(&mut rng);
//! let params = v3::pay_sign(&signer, &mut rng, appid, &now.to_string(), &nonce, prepay_id)?;
//! assert_eq!(params.sign_type, "RSA");
//! // a notification: verify on the raw body, then decrypt
//! let headers = v3::WechatpayHeaders::from_pairs(request_headers)?;
//! let notification = v3::verify_notification(&platform_keys, &api_v3_key, &headers, raw_body, now)?;
//! let paid = notification.transaction()?;
//! # assert!(!paid.out_trade_no.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use wxpay_core::{MerchantSigner, provider::default_provider, v3};
//! # let pem = include_str!("../../tests/vectors/keys/merchant_private_key.pem");
//! let signer = MerchantSigner::from_pem(default_provider(), pem, "1900009191", "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C")?;
//! let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
//! let params = v3::pay_sign(&signer, &mut rng, "wxd678efh567hg6787", "1436213027",
//!     "LTLAPA35fRi2hj0gUisAgkya7T4JkffT", "wxd27f5e9749ce86b5799569ed4a7d771a")?;
//! assert_eq!(params.sign_type, "RSA");
//! # Ok::<(), wxpay_core::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod aead;
pub mod b64;
pub mod error;
pub mod keys;
pub mod nonce;
pub mod open_data;
pub mod provider;
pub mod v2;
pub mod v3;

pub use error::{Error, Result};
pub use keys::{MerchantSigner, PlatformKeys, PublicKey};
pub use nonce::{nonce_str, timestamp};
pub use provider::CryptoProvider;
pub use rand_core;
