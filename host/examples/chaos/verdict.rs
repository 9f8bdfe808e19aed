//! Reading back, through the back office, whether every payment was recorded exactly once.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::{Api, Ending};

/// Orders read back in parallel.
const READERS: usize = 16;

/// What the back office says about a set of paid orders.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Orders not `PAID` with the transaction id that was paid (payments lost).
    pub lost: Vec<(String, Ending)>,
    /// Orders that moved into `PAID` more than once.
    pub doubled: Vec<(String, Ending)>,
    /// Orders `PAID` without any event recording the move (history lost).
    pub unrecorded: Vec<(String, Ending)>,
}

impl Verdict {
    /// Reads every `(out_trade_no, transaction_id)` and sorts the failures.
    pub async fn of(api: &Api, paid: &[(String, String)]) -> Result<Self> {
        let gate = Arc::new(Semaphore::new(READERS));
        let mut set = JoinSet::new();
        for (no, tid) in paid.iter().cloned() {
            let (api, gate) = (api.clone(), gate.clone());
            set.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let order = api.order(&no).await?;
                anyhow::Ok((no, tid, Ending::of(&order)))
            });
        }
        let mut v = Self::default();
        while let Some(r) = set.join_next().await {
            let (no, tid, e) = r.context("a reader task failed")??;
            if e.state != "PAID" || e.transaction_id.as_deref() != Some(tid.as_str()) {
                v.lost.push((no, e));
            } else if e.paid_events > 1 {
                v.doubled.push((no, e));
            } else if e.paid_events == 0 {
                v.unrecorded.push((no, e));
            }
        }
        for list in [&mut v.lost, &mut v.doubled, &mut v.unrecorded] {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(v)
    }

    /// Detail lines naming the first few failures of each kind.
    pub fn details(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, list) in [
            ("lost", &self.lost),
            ("doubled", &self.doubled),
            ("PAID without a PAID event", &self.unrecorded),
        ] {
            if list.is_empty() {
                continue;
            }
            let shown: Vec<String> = list
                .iter()
                .take(5)
                .map(|(no, e)| {
                    format!(
                        "{no} {} tx {} ({} PAID events)",
                        e.state,
                        e.transaction_id.as_deref().unwrap_or("none"),
                        e.paid_events
                    )
                })
                .collect();
            let more = list.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            out.push(format!("{what}: {}{tail}", shown.join("; ")));
        }
        out
    }
}
