//! Prometheus metrics, rendered by hand in the text exposition format.
//!
//! Orders by state are read from the store at scrape time (so they are right across replicas);
//! notification outcomes and upstream latency are this process's counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::domain::OrderState;

/// Histogram bucket bounds (seconds) for upstream latency.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

#[derive(Default)]
struct Inner {
    notifications: BTreeMap<(&'static str, &'static str), u64>,
    upstream: BTreeMap<&'static str, Histogram>,
    reconciler: BTreeMap<&'static str, u64>,
    optimistic_retries: u64,
    payments_known_in_memory: u64,
}

/// Process metrics. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Inner>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one notification of `kind` (`pay`/`refund`) with `outcome`.
    pub fn notification(&self, kind: &'static str, outcome: &'static str) {
        *self
            .inner()
            .notifications
            .entry((kind, outcome))
            .or_default() += 1;
    }

    /// Records one upstream call's latency.
    pub fn observe_upstream(&self, endpoint: &'static str, took: Duration, ok: bool) {
        let secs = took.as_secs_f64();
        let mut inner = self.inner();
        let h = inner.upstream.entry(endpoint).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
        if !ok {
            h.errors += 1;
        }
    }

    /// Counts one reconciler action (`paid`, `closed`, `query_error`…).
    pub fn reconciler(&self, action: &'static str) {
        *self.inner().reconciler.entry(action).or_default() += 1;
    }

    /// The number of notifications answered by [`Metrics::payment_known_in_memory`].
    #[must_use]
    pub fn payments_known_in_memory(&self) -> u64 {
        self.inner().payments_known_in_memory
    }

    /// Counts one lost race of PostgreSQL's optimistic write (the order changed between the
    /// read and the conditional write; read and decide again).
    pub fn optimistic_retry(&self) {
        self.inner().optimistic_retries += 1;
    }

    /// Counts one notification answered from the payments known to be recorded, without the
    /// database.
    pub fn payment_known_in_memory(&self) {
        self.inner().payments_known_in_memory += 1;
    }

    /// Count of notifications with this kind and outcome (for tests).
    #[must_use]
    pub fn notification_count(&self, kind: &str, outcome: &str) -> u64 {
        self.inner()
            .notifications
            .iter()
            .filter(|((k, o), _)| *k == kind && *o == outcome)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Renders everything in the Prometheus text format.
    #[must_use]
    pub fn render(&self, orders: &[(OrderState, i64)]) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP wxpay_orders Orders by state.\n# TYPE wxpay_orders gauge\n");
        for (state, n) in orders {
            let _ = writeln!(out, "wxpay_orders{{state=\"{state}\"}} {n}");
        }
        let inner = self.inner();
        out.push_str(
            "# HELP wxpay_notifications_total WeChat Pay notifications by outcome.\n\
             # TYPE wxpay_notifications_total counter\n",
        );
        for ((kind, outcome), n) in &inner.notifications {
            let _ = writeln!(
                out,
                "wxpay_notifications_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP wxpay_upstream_request_duration_seconds Latency of calls to WeChat.\n\
             # TYPE wxpay_upstream_request_duration_seconds histogram\n",
        );
        for (endpoint, h) in &inner.upstream {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "wxpay_upstream_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "wxpay_upstream_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\n\
                 wxpay_upstream_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\n\
                 wxpay_upstream_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        out.push_str(
            "# HELP wxpay_upstream_errors_total Failed calls to WeChat (transport or 5xx).\n\
             # TYPE wxpay_upstream_errors_total counter\n",
        );
        for (endpoint, h) in &inner.upstream {
            let _ = writeln!(
                out,
                "wxpay_upstream_errors_total{{endpoint=\"{endpoint}\"}} {}",
                h.errors
            );
        }
        out.push_str(
            "# HELP wxpay_reconciler_actions_total Reconciler actions.\n\
             # TYPE wxpay_reconciler_actions_total counter\n",
        );
        for (action, n) in &inner.reconciler {
            let _ = writeln!(
                out,
                "wxpay_reconciler_actions_total{{action=\"{action}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP wxpay_store_optimistic_retries_total PostgreSQL writes re-decided after the \
             order changed between read and write.\n\
             # TYPE wxpay_store_optimistic_retries_total counter\n\
             wxpay_store_optimistic_retries_total {}",
            inner.optimistic_retries
        );
        let _ = writeln!(
            out,
            "# HELP wxpay_notifications_known_payment_total Payment notifications answered \
             without the database: the payment was already recorded on the order.\n\
             # TYPE wxpay_notifications_known_payment_total counter\n\
             wxpay_notifications_known_payment_total {}",
            inner.payments_known_in_memory
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let m = Metrics::default();
        m.notification("pay", "applied");
        m.notification("pay", "applied");
        m.observe_upstream("jsapi", Duration::from_millis(20), true);
        let text = m.render(&[(OrderState::Paid, 3)]);
        assert!(text.contains("wxpay_orders{state=\"PAID\"} 3"));
        assert!(text.contains("wxpay_notifications_total{kind=\"pay\",outcome=\"applied\"} 2"));
        assert!(text.contains("endpoint=\"jsapi\",le=\"0.025\"} 1"));
        assert!(text.contains("endpoint=\"jsapi\",le=\"0.01\"} 0"));
    }
}
