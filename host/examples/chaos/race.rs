//! The close/pay race (issue 7, 3.1): for an order with a prepay id, the back office's close
//! and the payment's `SUCCESS` notification are fired together, the notification offset from
//! the close by a few milliseconds either way (swept across the close's own duration). A
//! notification answered other than 2xx is redelivered until 2xx. The order must never end
//! without its transaction id: `PAID` or `REVIEW` with the id is right, anything else (`CLOSED`
//! with no id above all) is a lost payment.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::api::{Api, Ending, Tally, post, until_2xx};
use super::db::Db;
use super::stage::{AMOUNT, OPENID, Stage, create_orders, transaction_id};
use super::{Backend, Ctx, Report};

/// Runs the race on `backend`.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<Report> {
    let (name, label) = match backend {
        Backend::Sqlite => ("race", "close/pay race"),
        Backend::Postgres => ("race-pg", "close/pay race (PostgreSQL)"),
    };
    let stage = Stage::new(ctx, name).await?;
    let db = match backend {
        Backend::Sqlite => Db::sqlite(&stage.dir),
        Backend::Postgres => Db::postgres(&ctx.pg).await?,
    };
    let report = race(ctx, &stage, &db, label).await;
    let removed = db.remove().await;
    stage.sim.shutdown().await;
    let report = report?;
    removed?;
    Ok(report)
}

async fn race(ctx: &Ctx, stage: &Stage, db: &Db, label: &str) -> Result<Report> {
    let runs: usize = if ctx.short { 20 } else { 100 };
    let mut host = stage.host(ctx, &db.url(), "host").await?;
    let api = stage.api(ctx, &host);
    let token = stage.login(&api).await?;

    // Warm-up: how long a close and a notification take here, to sweep the offset over.
    let (close_ms, notify_ms) = warm_up(ctx, stage, &api, &token).await?;
    let lo = -(notify_ms + 2);
    let hi = close_ms + 2;

    let gate = Semaphore::new(1);
    let tally = Tally::default();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost = 0;
    for r in 0..runs {
        let no = format!("RACE{r:06}");
        create_orders(&api, std::slice::from_ref(&no)).await?;
        api.pay(&token, &no).await?;
        let tid = transaction_id(r);
        let n = stage
            .sim
            .paid(&format!("race-{r}"), &no, OPENID, AMOUNT, &tid)?;
        let steps = i64::try_from(runs.saturating_sub(1).max(1)).unwrap_or(1);
        let offset = lo + (hi - lo) * i64::try_from(r).unwrap_or(0) / steps;
        let after = |ms: i64| async move {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms.unsigned_abs())).await;
            }
        };
        let url = api.notify_url();
        let (closed, first) = tokio::join!(
            async {
                after(-offset).await;
                api.close(&no).await
            },
            async {
                after(offset).await;
                post(&ctx.http, &url, &n).await
            }
        );
        let close = match closed {
            Ok((status, _)) => status.to_string(),
            Err(e) => format!("error {e:#}"),
        };
        if !first.is_2xx() {
            let deadline = Instant::now() + Duration::from_secs(30);
            let urls = [url];
            until_2xx(&ctx.http, &urls, &n, &gate, deadline, &tally, |_, _| {})
                .await
                .with_context(|| format!("redeliver {no}'s notification"))?;
        }
        let e = Ending::of(&api.order(&no).await?);
        let kept = matches!(e.state.as_str(), "PAID" | "REVIEW")
            && e.transaction_id.as_deref() == Some(tid.as_str());
        lost += usize::from(!kept);
        let what = format!(
            "{}{} {} (close {close}, notification {first})",
            if kept { "" } else { "LOST: " },
            e.state,
            if e.transaction_id.is_some() {
                "with tx"
            } else {
                "without tx"
            }
        );
        *outcomes.entry(what).or_default() += 1;
    }
    let alive = host.exited()?.is_none();
    let mut details = vec![format!(
        "notification sent {lo} ms to +{hi} ms after the close (a close takes ~{close_ms} ms, \
         a notification ~{notify_ms} ms)"
    )];
    details.extend(outcomes.iter().map(|(k, v)| format!("{v} × {k}")));
    if !alive {
        details.push(format!("the host died:\n{}", host.log_tail()));
    }
    Ok(Report {
        line: format!("{label}: {runs} runs, {lost} lost"),
        ok: lost == 0 && alive,
        details,
    })
}

/// Median milliseconds of a close and of a first notification, from a few warm-up orders.
async fn warm_up(ctx: &Ctx, stage: &Stage, api: &Api, token: &str) -> Result<(i64, i64)> {
    let mut close = Vec::new();
    let mut notify = Vec::new();
    for w in 0..5 {
        let no = format!("WARM{w:06}");
        create_orders(api, std::slice::from_ref(&no)).await?;
        api.pay(token, &no).await?;
        let t = Instant::now();
        let (status, v) = api.close(&no).await?;
        anyhow::ensure!(
            status == 200,
            "warm-up close of {no} answered {status}: {v}"
        );
        close.push(t.elapsed());
        let no = format!("WARMPAID{w:04}");
        create_orders(api, std::slice::from_ref(&no)).await?;
        let n = stage.sim.paid(
            &format!("warm-{w}"),
            &no,
            OPENID,
            AMOUNT,
            &format!("43{:026}", w + 1),
        )?;
        let t = Instant::now();
        let a = post(&ctx.http, &api.notify_url(), &n).await;
        anyhow::ensure!(a.is_2xx(), "warm-up notification for {no} answered {a}");
        notify.push(t.elapsed());
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        i64::try_from(v[v.len() / 2].as_millis()).unwrap_or(i64::MAX)
    };
    Ok((median(close), median(notify)))
}
