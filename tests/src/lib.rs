//! Shared helpers of the cross-crate tests: locating and loading a vector directory.

use std::path::{Path, PathBuf};

/// The vector directory: `$WXPAY_VECTORS_DIR`, else the project's `tests/vectors`.
#[must_use]
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("WXPAY_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors"))
}

/// The project's own copy of the vectors (`tests/vectors`), whatever `$WXPAY_VECTORS_DIR` says:
/// the fixture keys and files of every test that is not the vector run itself, so that pointing
/// the runners at another vector set never breaks unrelated tests.
#[must_use]
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// `tests/fixtures/runner-contract`: a `v2_refund_req_info.json` whose first plaintext is JSON
/// (compared as text, never parsed), whose second gives `fields` (parsed and compared), and
/// whose case named `wrong fields` must be the one failure of every runner.
#[must_use]
pub fn runner_contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runner-contract")
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

/// A scratch copy of a vector directory's keys plus two deliberate faults — the first
/// `v3_pay_sign` case with one character of its expected signature changed, and an unknown
/// `v9_unknown.json` — to prove that a runner reports exactly those. Remove it when done.
///
/// # Panics
/// If `src` lacks `keys/` or `v3_pay_sign.json`, or the temp dir is not writable (test-only).
#[must_use]
pub fn faulty_vectors_copy(src: &Path, tag: &str) -> PathBuf {
    let tmp = std::env::temp_dir().join(format!("wxpay-{tag}-vectors-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("keys")).expect("tmp dir");
    for f in std::fs::read_dir(src.join("keys")).expect("keys") {
        let p = f.expect("entry").path();
        std::fs::copy(&p, tmp.join("keys").join(p.file_name().expect("name"))).expect("copy key");
    }
    let text = std::fs::read_to_string(src.join("v3_pay_sign.json")).expect("read");
    let mut pay: serde_json::Value = serde_json::from_str(&text).expect("json");
    let sig = pay["cases"][0]["expected"]
        .as_str()
        .expect("sig")
        .to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    pay["cases"][0]["expected"] =
        serde_json::Value::String(format!("{first}{}", sig.get(1..).expect("non-empty")));
    std::fs::write(tmp.join("v3_pay_sign.json"), pay.to_string()).expect("write");
    std::fs::write(tmp.join("v9_unknown.json"), r#"{"cases":[]}"#).expect("write");
    tmp
}
