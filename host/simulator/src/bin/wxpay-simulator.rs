//! `wxpay-simulator`: the local WeChat Pay + WeChat login simulator, standalone.
//!
//! ```text
//! wxpay-simulator [--listen ADDR] [--public-key-mode] [--compress FACTOR] [--keys-dir DIR]
//!                 [--out-dir DIR]
//! ```
//!
//! Generates fresh key pairs (or, with `--keys-dir`, reads them from PEM files there: see
//! `SimulatorOptions::keys_dir`), prints its base URL, the TEST-ONLY credentials as `WXPAY_*`
//! environment lines for a host, and curl examples for the control API, then runs until Ctrl-C.
//! The key files a host reads (`WXPAY_MERCHANT_KEY_FILE`, `WXPAY_PLATFORM_PUBLIC_KEY_FILE`) are
//! written to `--out-dir` (default: a `wxpay-simulator` folder in the system temp directory).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use wxpay_simulator::{SimulatorHandle, SimulatorOptions};

const USAGE: &str = "usage: wxpay-simulator [--listen ADDR] [--public-key-mode] \
                     [--public-key-migration] \
                     [--compress FACTOR] [--keys-dir DIR] [--out-dir DIR]";

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
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args { opts, key_dir })
}

fn write_keys(h: &SimulatorHandle, dir: &PathBuf) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let merchant = dir.join("merchant_private_key.pem");
    let platform = dir.join("platform_public_key.pem");
    std::fs::write(&merchant, h.merchant_private_key_pem())?;
    std::fs::write(&platform, h.platform_public_key_pem())?;
    Ok((merchant, platform))
}

fn print_banner(
    h: &SimulatorHandle,
    merchant_key: &std::path::Path,
    platform_key: &std::path::Path,
) {
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
    println!("Drive it:");
    println!("  curl -s -XPOST {base}/sim/login/code -d '{{\"openid\":\"oTestUser\"}}'");
    println!("  curl -s -XPOST {base}/sim/orders/OUT_TRADE_NO/pay");
    println!(
        "  curl -s -XPOST {base}/sim/notify-behavior -d '{{\"behavior\":\"duplicate\",\"count\":5}}'"
    );
    println!("  curl -s {base}/sim/stats");
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
    let (merchant_key, platform_key) = match write_keys(&handle, &args.key_dir) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!(
                "wxpay-simulator: cannot write key files to {}: {e}",
                args.key_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    print_banner(&handle, &merchant_key, &platform_key);
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("wxpay-simulator: cannot wait for Ctrl-C: {e}");
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
