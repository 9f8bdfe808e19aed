//! Two replicas: two host processes share one PostgreSQL database; one and the same
//! notification is delivered many times, alternately to each, concurrently. Exactly one event
//! may move the order into `PAID`, and every delivery must be answered 2xx.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::{Answer, Ending, post};
use super::db::Db;
use super::stage::{AMOUNT, OPENID, Stage, create_orders, transaction_id};
use super::{Ctx, Report};

/// Deliveries in flight at once (over both replicas).
const IN_FLIGHT: usize = 32;

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Result<Report> {
    let stage = Stage::new(ctx, "replicas").await?;
    let db = Db::postgres(&ctx.pg).await?;
    let report = replicas(ctx, &stage, &db).await;
    let removed = db.remove().await;
    stage.sim.shutdown().await;
    let report = report?;
    removed?;
    Ok(report)
}

async fn replicas(ctx: &Ctx, stage: &Stage, db: &Db) -> Result<Report> {
    let deliveries = if ctx.short { 200 } else { 1000 };
    // One after the other, so the second finds the schema migrated.
    let mut a = stage.host(ctx, &db.url(), "replica-a").await?;
    let mut b = stage.host(ctx, &db.url(), "replica-b").await?;
    let (api_a, api_b) = (stage.api(ctx, &a), stage.api(ctx, &b));
    stage.login(&api_a).await?;
    let no = "TWIN000001".to_owned();
    create_orders(&api_a, std::slice::from_ref(&no)).await?;
    let tid = transaction_id(0);
    let n = Arc::new(stage.sim.paid("twin-1", &no, OPENID, AMOUNT, &tid)?);
    let urls = [api_a.notify_url(), api_b.notify_url()];
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut set = JoinSet::new();
    for i in 0..deliveries {
        let (http, url, n, gate) = (
            ctx.http.clone(),
            urls[i % 2].clone(),
            n.clone(),
            gate.clone(),
        );
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            anyhow::Ok(post(&http, &url, &n).await)
        });
    }
    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        let answer: Answer = r.context("a delivery task failed")??;
        ok += usize::from(answer.is_2xx());
        *answers.entry(answer.to_string()).or_default() += 1;
    }
    let ending = Ending::of(&api_b.order(&no).await?);
    let alive = a.exited()?.is_none() && b.exited()?.is_none();
    let events = ending.paid_events;
    let recorded = ending.state == "PAID" && ending.transaction_id.as_deref() == Some(tid.as_str());
    let passed = events == 1 && ok == deliveries && recorded && alive;
    let mut details = vec![format!(
        "answers: {}; order {} tx {}",
        answers
            .iter()
            .map(|(k, v)| format!("{v} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        ending.state,
        ending.transaction_id.as_deref().unwrap_or("none")
    )];
    if !alive {
        details.push(format!(
            "a replica died:\n{}\n{}",
            a.log_tail(),
            b.log_tail()
        ));
    }
    Ok(Report {
        line: format!(
            "two replicas: {deliveries} deliveries, {events} paid event{}, {ok} answered 2xx",
            if events == 1 { "" } else { "s" }
        ),
        ok: passed,
        details,
    })
}
