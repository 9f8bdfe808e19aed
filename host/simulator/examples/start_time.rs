//! How long a simulator takes to start with generated keys (two RSA-2048 key pairs and a
//! self-signed certificate) and with keys read from `tests/vectors/keys`.
//!
//! ```text
//! cargo run -p wxpay-simulator --example start_time -- [STARTS]
//! cargo run --release -p wxpay-simulator --example start_time -- [STARTS]
//! ```
//!
//! Starts `STARTS` (default 20) simulators one after the other on loopback and prints the
//! minimum, median and maximum of each way; RSA key generation searches random primes, so
//! single starts vary a lot.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use wxpay_simulator::SimulatorOptions;

async fn measure(starts: usize, opts: impl Fn() -> SimulatorOptions) -> Vec<Duration> {
    let mut times = Vec::with_capacity(starts);
    for _ in 0..starts {
        let t = Instant::now();
        let sim = wxpay_simulator::spawn(opts())
            .await
            .expect("simulator starts");
        times.push(t.elapsed());
        sim.shutdown().await;
    }
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: {} starts, min {:.0} ms, median {:.0} ms, max {:.0} ms",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    );
}

#[tokio::main]
async fn main() {
    let starts = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_usize)
        .max(1);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("simulator start time ({profile} build)");
    report(
        "generated keys",
        &measure(starts, SimulatorOptions::default).await,
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/keys");
    report(
        "keys read from tests/vectors/keys",
        &measure(starts, || SimulatorOptions::default().keys_dir(&dir)).await,
    );
}
