//! Database outage: the host reaches PostgreSQL through the harness's TCP proxy; while
//! notifications flow the proxy is cut (every connection closed, new ones refused) and later
//! restored. The host must answer 5xx meanwhile, stay alive, recover without a restart, and
//! every notification must be applied after redelivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::api::{Answer, Tally, until_2xx};
use super::db::Db;
use super::proxy::Proxy;
use super::stage::{AMOUNT, OPENID, Stage, create_orders, transaction_id};
use super::verdict::Verdict;
use super::{Ctx, Report};

/// Deliveries in flight at once.
const IN_FLIGHT: usize = 32;

/// Runs the outage.
pub async fn run(ctx: &Ctx) -> Result<Report> {
    let stage = Stage::new(ctx, "outage").await?;
    let db = Db::postgres(&ctx.pg).await?;
    let report = outage(ctx, &stage, &db).await;
    let removed = db.remove().await;
    stage.sim.shutdown().await;
    let report = report?;
    removed?;
    Ok(report)
}

async fn outage(ctx: &Ctx, stage: &Stage, db: &Db) -> Result<Report> {
    let (orders, before, down, after) = if ctx.short {
        (150, 2, 5, 3)
    } else {
        (600, 3, 30, 5)
    };
    let (before, down, after) = (
        Duration::from_secs(before),
        Duration::from_secs(down),
        Duration::from_secs(after),
    );
    let proxy = Proxy::start(db.upstream().await?).await?;
    let host = stage.host(ctx, &db.url_via(proxy.addr())?, "host").await?;
    let api = stage.api(ctx, &host);
    stage.login(&api).await?;
    let nos: Vec<String> = (0..orders).map(|i| format!("OUTAGE{i:06}")).collect();
    create_orders(&api, &nos).await?;
    let mut paid = Vec::with_capacity(orders);
    let mut notes = Vec::with_capacity(orders);
    for (i, no) in nos.iter().enumerate() {
        let tid = transaction_id(i);
        notes.push(
            stage
                .sim
                .paid(&format!("outage-{i}"), no, OPENID, AMOUNT, &tid)?,
        );
        paid.push((no.clone(), tid));
    }

    let host = Arc::new(Mutex::new(host));
    let tally = Arc::new(Tally::default());
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let urls = Arc::new(vec![api.notify_url()]);
    let down_5xx = Arc::new(AtomicU64::new(0));
    let down_2xx = Arc::new(AtomicU64::new(0));
    let down_failed = Arc::new(AtomicU64::new(0));
    let slowest_5xx = Arc::new(AtomicU64::new(0));
    let flow = before + down + after;
    let t0 = Instant::now();
    let (cut_at, restore_at) = (t0 + before, t0 + before + down);
    let deadline = t0 + flow + Duration::from_secs(if ctx.short { 30 } else { 60 });
    let mut deliveries = JoinSet::new();
    for (i, n) in notes.into_iter().enumerate() {
        let at = t0 + flow.mul_f64(i as f64 / orders as f64);
        let (http, urls, gate, tally) =
            (ctx.http.clone(), urls.clone(), gate.clone(), tally.clone());
        let (down_5xx, down_2xx) = (down_5xx.clone(), down_2xx.clone());
        let (down_failed, slowest_5xx) = (down_failed.clone(), slowest_5xx.clone());
        deliveries.spawn(async move {
            tokio::time::sleep_until(at).await;
            until_2xx(&http, &urls, &n, &gate, deadline, &tally, |sent, a| {
                let answered = Instant::now();
                // The outage concerns an attempt that overlapped it.
                if sent < restore_at && answered >= cut_at && !a.is_2xx() {
                    down_failed.fetch_add(1, Ordering::Relaxed);
                    if matches!(a, Answer::Status(500..=599)) {
                        down_5xx.fetch_add(1, Ordering::Relaxed);
                        let ms = u64::try_from((answered - sent).as_millis()).unwrap_or(u64::MAX);
                        slowest_5xx.fetch_max(ms, Ordering::Relaxed);
                    }
                }
                // Acknowledged while the database could not be reached: never right.
                if a.is_2xx() && (cut_at..restore_at).contains(&answered) {
                    down_2xx.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await
        });
    }
    // The cut, and a watchdog that restarts (and counts) a host that died.
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchdog = JoinSet::new();
    {
        let (host, http, stop) = (host.clone(), ctx.http.clone(), stop.clone());
        watchdog.spawn(async move {
            let mut crashes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut h = host.lock().await;
                if let Some(status) = h.exited()? {
                    crashes.push(format!("{status} at {:.1} s", t0.elapsed().as_secs_f64()));
                    h.restart(&http).await.context("restart the crashed host")?;
                }
            }
            anyhow::Ok(crashes)
        });
    }
    tokio::time::sleep_until(cut_at).await;
    proxy.cut();
    tokio::time::sleep_until(restore_at).await;
    proxy.restore().await?;
    let mut undelivered = Vec::new();
    while let Some(r) = deliveries.join_next().await {
        if let Err(e) = r.context("a delivery task failed")? {
            undelivered.push(e.to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let crashes = watchdog
        .join_next()
        .await
        .context("the watchdog task is missing")?
        .context("the watchdog task failed")??;
    let mut host = host.lock().await;
    let restarts = host.starts - 1;
    let alive = host.exited()?.is_none();
    let verdict = Verdict::of(&api, &paid).await?;
    let answered_5xx = down_5xx.load(Ordering::Relaxed);
    let acked_down = down_2xx.load(Ordering::Relaxed);
    let ok = verdict.lost.is_empty()
        && verdict.doubled.is_empty()
        && verdict.unrecorded.is_empty()
        && undelivered.is_empty()
        && restarts == 0
        && alive
        && answered_5xx > 0
        && acked_down == 0;
    let mut details = vec![format!(
        "{}; {} attempts failed across the outage, the slowest 5xx after {:.1} s; {acked_down} \
         answered 2xx while the database was cut",
        tally.describe(),
        down_failed.load(Ordering::Relaxed),
        slowest_5xx.load(Ordering::Relaxed) as f64 / 1000.0,
    )];
    if acked_down > 0 {
        details.push("notifications were acknowledged while the database was cut".to_owned());
    }
    if answered_5xx == 0 {
        details.push("no 5xx while the database was down".to_owned());
    }
    if restarts > 0 || !alive {
        details.push(format!(
            "the host died during the outage ({}):\n{}",
            crashes.join(", "),
            host.log_tail()
        ));
    }
    if !undelivered.is_empty() {
        details.push(format!(
            "{} notifications never answered 2xx, e.g. {}",
            undelivered.len(),
            undelivered[0]
        ));
    }
    details.extend(verdict.details());
    Ok(Report {
        line: format!(
            "database outage: {} s down, {orders} notifications, {answered_5xx} answered 5xx \
             while down, {} lost, host restarts {restarts}",
            down.as_secs(),
            verdict.lost.len()
        ),
        ok,
        details,
    })
}
