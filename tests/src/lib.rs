//! Shared helpers of the cross-crate tests: locating and loading a vector directory.

use std::path::{Path, PathBuf};

/// The vector directory: `$WXPAY_VECTORS_DIR`, else the project's `tests/vectors`.
#[must_use]
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("WXPAY_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors"))
}

/// The operation files a vector directory may hold; any other `*.json` is an error.
pub const KNOWN_FILES: &[&str] = &[
    "v2_sign",
    "v2_notify",
    "v2_refund_req_info",
    "v3_pay_sign",
    "v3_authorization",
    "v3_response",
    "v3_notification",
    "v3_decrypt",
    "v3_certificates",
    "rsa_oaep",
];

/// The `*.json` files of `dir`, sorted, as `(stem, path)`.
///
/// # Errors
/// If the directory cannot be read.
pub fn vector_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((stem, path));
        }
    }
    out.sort();
    Ok(out)
}
