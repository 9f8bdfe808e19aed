//! kill -9 storm: every order's payment notification is delivered at once (32 in flight,
//! WeChat-style redelivery) while the host process is SIGKILLed at random moments and restarted
//! on the same port and database. The moments are random points of progress (a random number of
//! acknowledged notifications inside each of `kills` equal slices), so every kill falls while
//! requests are in flight however fast the machine is. Afterwards every order must be `PAID`
//! once, with its transaction id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::api::{Tally, until_2xx};
use super::db::Db;
use super::stage::{AMOUNT, OPENID, Stage, create_orders, transaction_id};
use super::verdict::Verdict;
use super::{Backend, Ctx, Report};

/// Deliveries in flight at once.
const IN_FLIGHT: usize = 32;

/// Runs the storm on `backend`.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<Report> {
    let (name, label) = match backend {
        Backend::Sqlite => ("storm", "kill -9 storm"),
        Backend::Postgres => ("storm-pg", "kill -9 storm (PostgreSQL)"),
    };
    let stage = Stage::new(ctx, name).await?;
    let db = match backend {
        Backend::Sqlite => Db::sqlite(&stage.dir),
        Backend::Postgres => Db::postgres(&ctx.pg).await?,
    };
    let report = storm(ctx, &stage, &db, label).await;
    let removed = db.remove().await;
    stage.sim.shutdown().await;
    let report = report?;
    removed?;
    Ok(report)
}

async fn storm(ctx: &Ctx, stage: &Stage, db: &Db, label: &str) -> Result<Report> {
    let (orders, kills): (usize, u32) = if ctx.short { (200, 2) } else { (1000, 3) };
    let host = stage.host(ctx, &db.url(), "host").await?;
    let api = stage.api(ctx, &host);
    stage.login(&api).await?;
    let nos: Vec<String> = (0..orders).map(|i| format!("STORM{i:06}")).collect();
    create_orders(&api, &nos).await?;
    let mut paid = Vec::with_capacity(orders);
    let mut notes = Vec::with_capacity(orders);
    for (i, no) in nos.iter().enumerate() {
        let tid = transaction_id(i);
        notes.push(
            stage
                .sim
                .paid(&format!("storm-{i}"), no, OPENID, AMOUNT, &tid)?,
        );
        paid.push((no.clone(), tid));
    }

    let host = Arc::new(Mutex::new(host));
    let tally = Arc::new(Tally::default());
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let urls = Arc::new(vec![api.notify_url()]);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(if ctx.short { 30 } else { 60 });
    let mut deliveries = JoinSet::new();
    for n in notes {
        let (http, urls, gate, tally) =
            (ctx.http.clone(), urls.clone(), gate.clone(), tally.clone());
        deliveries.spawn(async move {
            until_2xx(&http, &urls, &n, &gate, deadline, &tally, |_, _| {}).await
        });
    }
    // A JoinSet, so that the task is aborted (and the host released) if this future is dropped.
    let mut killer = JoinSet::new();
    {
        let (host, http, tally, gate) =
            (host.clone(), ctx.http.clone(), tally.clone(), gate.clone());
        killer.spawn(async move {
            let slot = orders as u64 / u64::from(kills);
            let mut in_flight = Vec::new();
            let mut downtime = Duration::ZERO;
            for k in 0..u64::from(kills) {
                let at = slot * k + slot / 10 + super::rand::below(slot * 8 / 10);
                while tally.ok.load(Ordering::Relaxed) < at {
                    anyhow::ensure!(Instant::now() < deadline, "no progress to kill at");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let mut h = host.lock().await;
                in_flight.push(IN_FLIGHT - gate.available_permits());
                let down = Instant::now();
                h.restart(&http).await.context("restart after SIGKILL")?;
                downtime += down.elapsed();
            }
            anyhow::Ok((downtime, in_flight))
        });
    }
    let mut undelivered = Vec::new();
    while let Some(r) = deliveries.join_next().await {
        if let Err(e) = r.context("a delivery task failed")? {
            undelivered.push(e.to_string());
        }
    }
    let delivered = t0.elapsed();
    let (downtime, in_flight) = killer
        .join_next()
        .await
        .context("the killer task is missing")?
        .context("the killer task failed")??;
    let mut host = host.lock().await;
    let starts = host.starts;
    if let Some(status) = host.exited()? {
        anyhow::bail!(
            "the host died after the storm ({status})\n{}",
            host.log_tail()
        );
    }
    let verdict = Verdict::of(&api, &paid).await?;
    let killed = starts - 1;
    let ok = verdict.lost.is_empty()
        && verdict.doubled.is_empty()
        && verdict.unrecorded.is_empty()
        && undelivered.is_empty()
        && killed == kills;
    let mut details = vec![format!(
        "{}; in flight at each kill: {in_flight:?}; {:.2} s down in total; deliveries took \
         {:.1} s",
        tally.describe(),
        downtime.as_secs_f64(),
        delivered.as_secs_f64()
    )];
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
            "{label}: {orders} orders, {killed} kills, {} lost, {} doubled",
            verdict.lost.len(),
            verdict.doubled.len()
        ),
        ok,
        details,
    })
}
