#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - [`js`] (feature `js`): the wasm-bindgen bindings behind the npm package; RSA through the
//!   platform's `node:crypto` where there is one ([`js::provider`]), else the core's pure-Rust
//!   provider.
//! - `c_abi` (feature `c-abi`): the JSON C ABI described above.
//!
//! This crate contains no cryptography: it only converts values and calls the core.

#[cfg(feature = "c-abi")]
pub mod c_abi;
#[cfg(feature = "js")]
pub mod js;
