//! Per-client-IP token buckets, and who the client is behind a reverse proxy.
//!
//! `/api/login` costs a `jscode2session` call against the mini-program's daily quota, so it is
//! throttled per IP *before* any upstream call; failed back-office authentications are
//! throttled too (an attacker guessing the admin token gets a few tries a minute).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Buckets tracked at most; beyond that the fullest (idle) ones are forgotten.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per IP: `per_minute` tokens, refilled continuously, burst `per_minute`.
#[derive(Debug)]
pub struct Throttle {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Throttle {
    /// A throttle allowing `per_minute` events per IP and minute.
    #[must_use]
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let per_sec = self.per_minute / 60.0;
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(self.per_minute);
        b.at = now;
    }

    /// Takes one token for `ip`; `Err(wait)` when none is left (wait until the next one).
    ///
    /// # Errors
    /// The time until a token is available again.
    pub fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        self.take_at(ip, Instant::now())
    }

    fn take_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            // Forget buckets that have refilled completely: they carry no information.
            let full = self.per_minute;
            let per_sec = self.per_minute / 60.0;
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < full
            });
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let per_sec = self.per_minute / 60.0;
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }

    /// Whether `ip` has no token left, without taking one.
    #[must_use]
    pub fn exhausted(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get_mut(&ip).is_some_and(|b| {
            self.refill(b, now);
            b.tokens < 1.0
        })
    }
}

/// At most one event per key and `window` (e.g. one WeChat query per order every few seconds,
/// however often a client asks): per process, so each replica keeps its own.
#[derive(Debug)]
pub struct OncePer {
    window: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl OncePer {
    /// A gate letting one event per key through every `window`.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event for `key` may happen now; if so, it is counted.
    #[must_use]
    pub fn admit(&self, key: &str) -> bool {
        self.admit_at(key, Instant::now())
    }

    fn admit_at(&self, key: &str, now: Instant) -> bool {
        let mut map = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, at| now.saturating_duration_since(*at) < window);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        match map.get(key) {
            Some(at) if now.saturating_duration_since(*at) < self.window => false,
            _ => {
                map.insert(key.to_owned(), now);
                true
            }
        }
    }
}

/// The client's IP: the socket's peer, or — only when the peer is a trusted reverse proxy — the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy (left-most
/// entries are whatever the client chose to send).
#[must_use]
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .copied()
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_ip() {
        let t = Throttle::new(3);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.take_at(a, t0).is_ok());
        }
        let wait = t.take_at(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(t.take_at(b, t0).is_ok(), "another IP has its own bucket");
        assert!(
            t.take_at(a, t0 + Duration::from_secs(20)).is_ok(),
            "refilled"
        );
    }

    #[test]
    fn once_per_key_and_window() {
        let g = OncePer::new(Duration::from_secs(3));
        let t0 = Instant::now();
        assert!(g.admit_at("A", t0));
        assert!(!g.admit_at("A", t0 + Duration::from_secs(2)));
        assert!(g.admit_at("B", t0 + Duration::from_secs(2)), "per key");
        assert!(g.admit_at("A", t0 + Duration::from_secs(3)), "window over");
        assert!(!g.admit_at("A", t0 + Duration::from_secs(4)));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let direct: SocketAddr = "5.5.5.5:5000".parse().unwrap();
        let trusted = ["10.0.0.9".parse().unwrap()];
        assert_eq!(
            client_ip(Some(direct), &h, &trusted),
            Some("5.5.5.5".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &h, &[]),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &HeaderMap::new(), &trusted),
            Some("10.0.0.9".parse().unwrap())
        );
    }
}
