//! Randomness for timings (kill moments, jitter, race offsets): the OS generator, nothing to
//! seed, because the schedules these drive are not reproducible anyway.

use std::time::Duration;

/// A uniformly random integer in `0..n` (`0` when `n == 0`).
pub fn below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    // A failing OS generator only makes the timings less random, never wrong.
    if getrandom::fill(&mut b).is_err() {
        return 0;
    }
    // Modulo bias is irrelevant for timing jitter.
    u64::from_le_bytes(b) % n
}

/// A uniformly random duration in `lo..=hi` (millisecond resolution).
pub fn between(lo: Duration, hi: Duration) -> Duration {
    let (lo_ms, hi_ms) = (millis(lo), millis(hi.max(lo)));
    Duration::from_millis(lo_ms + below(hi_ms - lo_ms + 1))
}

/// `n` random hex characters' worth of bytes (`2 * bytes` characters).
pub fn hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if getrandom::fill(&mut b).is_err() {
        // Names only need to differ between concurrent runs; the clock does that too.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{:x}{t:x}", std::process::id());
    }
    ::hex::encode(b)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
