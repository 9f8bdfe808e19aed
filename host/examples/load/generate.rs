//! The load generator, a process of its own (`load generate …`, started by the orchestrator):
//! reads pre-signed notifications, POSTs each exactly once with a fixed number in flight on one
//! thread, and prints one JSON line with the count, answers, latency percentiles and its own
//! CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// A request that has not been answered within this long counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One line of the requests file: `{"h": [[name, value], …], "b": "body"}`.
pub fn request_line(headers: &[(String, String)], body: &[u8]) -> Result<String> {
    let body = std::str::from_utf8(body).context("a notification body is not UTF-8")?;
    Ok(json!({ "h": headers, "b": body }).to_string())
}

/// What the generator reports (its stdout, one JSON object).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Requests sent.
    pub sent: usize,
    /// Answered 2xx.
    pub ok: usize,
    /// Answered with another status.
    pub non_2xx: usize,
    /// Not answered (connection error, timeout).
    pub errors: usize,
    /// The first non-2xx status or error, for the report.
    pub first_problem: Option<String>,
    /// From the first send to the last answer.
    pub elapsed_s: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The slowest request.
    pub max_us: u64,
    /// The generator's own CPU time over its whole life (reading the file included).
    pub cpu_ms: f64,
}

/// `generate URL FILE IN_FLIGHT`: runs on a single-threaded runtime, prints an [`Outcome`].
pub fn main(args: &[String]) -> Result<()> {
    let [url, file, in_flight] = args else {
        bail!("usage: load generate URL REQUESTS_FILE IN_FLIGHT");
    };
    let in_flight: usize = in_flight.parse().context("IN_FLIGHT")?;
    let requests = Arc::new(read(file)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the runtime")?;
    let outcome = rt.block_on(run(url.clone(), requests, in_flight.max(1)))?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

fn read(file: &str) -> Result<Vec<(HeaderMap, Bytes)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).context("parse a request line")?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for pair in v["h"].as_array().context("no headers")? {
            let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
                bail!("a header is not a [name, value] pair: {pair}");
            };
            headers.insert(
                HeaderName::try_from(name).context("header name")?,
                HeaderValue::try_from(value).context("header value")?,
            );
        }
        let body = v["b"].as_str().context("no body")?;
        out.push((headers, Bytes::copy_from_slice(body.as_bytes())));
    }
    Ok(out)
}

/// What one worker saw: latencies in microseconds, answers and the first problem.
#[derive(Default)]
struct Seen {
    latencies: Vec<u64>,
    ok: usize,
    non_2xx: usize,
    errors: usize,
    first_problem: Option<String>,
}

async fn run(
    url: String,
    requests: Arc<Vec<(HeaderMap, Bytes)>>,
    in_flight: usize,
) -> Result<Outcome> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(in_flight)
        .build()
        .context("build the HTTP client")?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (http, url, requests, next) =
            (http.clone(), url.clone(), requests.clone(), next.clone());
        workers.spawn(async move {
            let mut seen = Seen::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((headers, body)) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let answer = http
                    .post(&url)
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await;
                let problem = match answer {
                    Ok(resp) => {
                        let status = resp.status();
                        // Read the answer so the connection is reused.
                        let _ = resp.bytes().await;
                        if status.is_success() {
                            seen.ok += 1;
                            None
                        } else {
                            seen.non_2xx += 1;
                            Some(format!("status {status}"))
                        }
                    }
                    Err(e) => {
                        seen.errors += 1;
                        Some(format!("{e}"))
                    }
                };
                seen.latencies
                    .push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                if seen.first_problem.is_none() {
                    seen.first_problem = problem;
                }
            }
            seen
        });
    }
    let mut all = Seen::default();
    while let Some(seen) = workers.join_next().await {
        let seen = seen.context("a generator task failed")?;
        all.latencies.extend(seen.latencies);
        all.ok += seen.ok;
        all.non_2xx += seen.non_2xx;
        all.errors += seen.errors;
        all.first_problem = all.first_problem.or(seen.first_problem);
    }
    let elapsed = started.elapsed();
    let mut lat = all.latencies;
    lat.sort_unstable();
    // Nearest-rank percentile: the smallest latency at or above which `p` of the requests lie.
    let pct = |p: f64| {
        let rank = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1));
        lat.get(rank - 1).copied().unwrap_or(0)
    };
    let cpu = super::measure::cpu(std::process::id()).unwrap_or_default();
    Ok(Outcome {
        sent: lat.len(),
        ok: all.ok,
        non_2xx: all.non_2xx,
        errors: all.errors,
        first_problem: all.first_problem,
        elapsed_s: elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: lat.last().copied().unwrap_or(0),
        cpu_ms: cpu.as_secs_f64() * 1e3,
    })
}
