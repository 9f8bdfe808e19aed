//! `wxpay-simulator`: the local WeChat Pay + WeChat login simulator, standalone.
//!
//! ```text
//! wxpay-simulator [--listen ADDR] [--public-key-mode] [--public-key-migration]
//!                 [--compress FACTOR] [--keys-dir DIR] [--out-dir DIR]
//!                 [--api-v2-key KEY] [--v2-sign-type MD5|HMAC-SHA256] [--tls]
//! ```
//!
//! Generates fresh key pairs (or, with `--keys-dir`, reads them from PEM files there: see
//! `SimulatorOptions::keys_dir`), prints its base URL, the TEST-ONLY credentials as `WXPAY_*`
//! environment lines for a host, and curl examples for the control API, then runs until Ctrl-C.
//! The key files a host reads (`WXPAY_MERCHANT_KEY_FILE`, `WXPAY_PLATFORM_PUBLIC_KEY_FILE`) are
//! written to `--out-dir` (default: a `wxpay-simulator` folder in the system temp directory).
//!
//! `--tls` serves HTTPS with mutual TLS on `/secapi/` (`SimulatorOptions::tls`) and also writes
//! `tls_ca.pem` (the CA a client must trust), `apiclient_cert.pem` and `apiclient_key.pem` (the
//! merchant API client certificate and its key, for `/secapi/`) to `--out-dir`. All of it is
//! generated at every start and only for tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wxpay_simulator::{SimulatorHandle, SimulatorOptions, V2SignType};

const USAGE: &str = "usage: wxpay-simulator [--listen ADDR] [--public-key-mode] \
                     [--public-key-migration] \
                     [--compress FACTOR] [--keys-dir DIR] [--out-dir DIR] \
                     [--api-v2-key KEY] [--v2-sign-type MD5|HMAC-SHA256] [--tls]";

struct Args {
    opts: SimulatorOptions,
    key_dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut opts = SimulatorOptions::default();
    let mut key_dir = std::env::temp_dir().join("wxpay-simulator");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => {
                opts.listen = value("--listen")?
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen: {e}"))?;
            }
            "--public-key-mode" => opts.public_key_mode = true,
            "--public-key-migration" => opts.public_key_migration = true,
            "--compress" => {
                let factor = value("--compress")?
                    .parse::<u32>()
                    .map_err(|e| format!("--compress: {e}"))?;
                opts = opts.time_compressed(factor);
            }
            "--keys-dir" => opts = opts.keys_dir(value("--keys-dir")?),
            "--out-dir" => key_dir = PathBuf::from(value("--out-dir")?),
            "--api-v2-key" => opts.api_v2_key = Some(value("--api-v2-key")?),
            "--v2-sign-type" => {
                opts.v2_sign_type = value("--v2-sign-type")?
                    .parse::<V2SignType>()
                    .map_err(|e| format!("--v2-sign-type: {e}"))?;
            }
            "--tls" => opts.tls = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args { opts, key_dir })
}

/// The files written to `--out-dir`.
struct KeyFiles {
    merchant_key: PathBuf,
    platform_key: PathBuf,
    /// With `--tls`: `tls_ca.pem`, `apiclient_cert.pem`, `apiclient_key.pem`.
    tls: Option<[PathBuf; 3]>,
}

fn write_keys(h: &SimulatorHandle, dir: &Path) -> std::io::Result<KeyFiles> {
    std::fs::create_dir_all(dir)?;
    let merchant_key = dir.join("merchant_private_key.pem");
    let platform_key = dir.join("platform_public_key.pem");
    std::fs::write(&merchant_key, h.merchant_private_key_pem())?;
    std::fs::write(&platform_key, h.platform_public_key_pem())?;
    let tls = match (
        h.tls_root_ca_pem(),
        h.merchant_client_cert_pem(),
        h.merchant_client_key_pem(),
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            let files = [
                dir.join("tls_ca.pem"),
                dir.join("apiclient_cert.pem"),
                dir.join("apiclient_key.pem"),
            ];
            for (path, pem) in files.iter().zip([ca, cert, key]) {
                std::fs::write(path, pem)?;
            }
            Some(files)
        }
        _ => None,
    };
    Ok(KeyFiles {
        merchant_key,
        platform_key,
        tls,
    })
}

fn print_banner(h: &SimulatorHandle, files: &KeyFiles) {
    let (merchant_key, platform_key) = (&files.merchant_key, &files.platform_key);
    let base = h.base_url();
    println!("WeChat Pay simulator listening on {base}");
    println!("TEST-ONLY credentials (never use them for real payments):");
    println!("  WXPAY_API_BASE={base}");
    println!("  WXPAY_LOGIN_BASE={base}");
    println!("  WXPAY_APPID={}", h.appid());
    println!("  WXPAY_APPSECRET={}", h.appsecret());
    println!("  WXPAY_MCHID={}", h.mchid());
    println!("  WXPAY_MERCHANT_SERIAL={}", h.merchant_serial());
    println!("  WXPAY_MERCHANT_KEY_FILE={}", merchant_key.display());
    println!("  WXPAY_API_V3_KEY={}", h.api_v3_key());
    println!("  WXPAY_API_V2_KEY={}", h.api_v2_key());
    println!("  (APIv2 sign type: {})", h.v2_sign_type());
    match h.platform_public_key_id() {
        Some(id) => {
            println!(
                "  WXPAY_PLATFORM_PUBLIC_KEY_FILE={}",
                platform_key.display()
            );
            println!("  WXPAY_PLATFORM_PUBLIC_KEY_ID={id}");
        }
        None => println!(
            "  (certificate mode: the platform certificate {} comes from {base}/v3/certificates)",
            h.platform_certificate_serial().unwrap_or_default()
        ),
    }
    let curl = match &files.tls {
        Some([ca, cert, key]) => {
            println!("TLS (TEST-ONLY certificates, generated at this start):");
            println!("  trusted root CA: {}", ca.display());
            println!(
                "  merchant API client certificate (/secapi/): {}",
                cert.display()
            );
            println!("  its private key: {}", key.display());
            println!("  WXPAY_MERCHANT_CERT_FILE={}", cert.display());
            format!("curl -s --cacert {}", ca.display())
        }
        None => "curl -s".to_owned(),
    };
    println!("Drive it:");
    println!("  {curl} -XPOST {base}/sim/login/code -d '{{\"openid\":\"oTestUser\"}}'");
    println!("  {curl} -XPOST {base}/sim/orders/OUT_TRADE_NO/pay");
    println!(
        "  {curl} -XPOST {base}/sim/notify-behavior -d '{{\"behavior\":\"duplicate\",\"count\":5}}'"
    );
    println!("  {curl} {base}/sim/stats");
    if let Some([_, cert, key]) = &files.tls {
        println!(
            "  {curl} --cert {} --key {} -XPOST {base}/secapi/pay/refund -d @refund.xml",
            cert.display(),
            key.display()
        );
    }
    println!("Ctrl-C stops it.");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let handle = match wxpay_simulator::spawn(args.opts).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("wxpay-simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = match write_keys(&handle, &args.key_dir) {
        Ok(files) => files,
        Err(e) => {
            eprintln!(
                "wxpay-simulator: cannot write key files to {}: {e}",
                args.key_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    print_banner(&handle, &files);
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("wxpay-simulator: cannot wait for Ctrl-C: {e}");
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
