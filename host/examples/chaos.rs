//! Chaos harness (not a test): measures the host's money guarantees with real processes.
//!
//! ```text
//! cargo build --release -p wxpay-host
//! cargo run --release -p wxpay-host --example chaos -- [--short] [--only NAME]...
//! ```
//!
//! Every host under test is a separate `wxpay-host serve` process (the binary next to this
//! example, configured by `WXPAY_*` variables, on a free loopback port) talking to an
//! in-process WeChat Pay simulator in public-key mode; the harness plays WeChat's notification
//! sender. Scenarios (`--only` takes these names; the PostgreSQL ones use
//! `WXPAY_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, in a schema of
//! their own that is dropped afterwards):
//!
//! - `storm`: notifications with redelivery while the host is SIGKILLed and restarted, SQLite
//!   (1,000 orders and 3 kills; `--short`: 200 and 2); `storm-pg`: the same on PostgreSQL (not
//!   in `--short`).
//! - `outage`: PostgreSQL behind a TCP proxy of the harness, cut for 30 s (`--short`: 5 s) while
//!   notifications flow.
//! - `replicas`: one notification delivered 1,000 times (`--short`: 200) over two hosts sharing
//!   one PostgreSQL database.
//! - `race`: the back office's close and the `SUCCESS` notification fired together, 100 runs
//!   (`--short`: 20), SQLite; `race-pg`: the same on PostgreSQL (not in `--short`).
//!
//! Prints one summary line per scenario (then its elapsed time), indented details, and exits
//! non-zero if any guarantee failed: a payment lost or recorded twice, more than one `PAID`
//! event, a delivery never answered 2xx, the host dying during the outage. Loopback only;
//! bounded in count and time (10 min full, 3 min `--short`, then it reports failure); child
//! processes are killed on every way out.
#![allow(missing_docs)]

#[path = "chaos/api.rs"]
mod api;
#[path = "chaos/db.rs"]
mod db;
#[path = "chaos/outage.rs"]
mod outage;
#[path = "chaos/proc.rs"]
mod proc;
#[path = "chaos/proxy.rs"]
mod proxy;
#[path = "chaos/race.rs"]
mod race;
#[path = "chaos/rand.rs"]
mod rand;
#[path = "chaos/replicas.rs"]
mod replicas;
#[path = "chaos/sim.rs"]
mod sim;
#[path = "chaos/stage.rs"]
mod stage;
#[path = "chaos/storm.rs"]
mod storm;
#[path = "chaos/verdict.rs"]
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

const USAGE: &str = "usage: chaos [--short] [--only NAME[,NAME]...]...
  NAME: storm, storm-pg, outage, replicas, race, race-pg
  (default: all of them; --short runs storm, outage, replicas and race)";

/// Everything the scenarios share.
pub struct Ctx {
    /// `--short`: smaller counts, shorter outage.
    pub short: bool,
    /// The `wxpay-host` binary.
    pub bin: PathBuf,
    /// Loopback HTTP client.
    pub http: reqwest::Client,
    /// This run's directory (scenario subdirectories, logs).
    pub root: PathBuf,
    /// PostgreSQL server URL.
    pub pg: String,
}

/// A scenario's result.
pub struct Report {
    /// The summary line.
    pub line: String,
    /// Whether every guarantee held.
    pub ok: bool,
    /// Indented detail lines.
    pub details: Vec<String>,
}

/// Storage backend of a scenario that runs on either.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Storm,
    StormPg,
    Outage,
    Replicas,
    Race,
    RacePg,
}

impl Scenario {
    const ALL: [Self; 6] = [
        Self::Storm,
        Self::StormPg,
        Self::Outage,
        Self::Replicas,
        Self::Race,
        Self::RacePg,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Storm => "storm",
            Self::StormPg => "storm-pg",
            Self::Outage => "outage",
            Self::Replicas => "replicas",
            Self::Race => "race",
            Self::RacePg => "race-pg",
        }
    }

    fn in_short_run(self) -> bool {
        !matches!(self, Self::StormPg | Self::RacePg)
    }

    async fn run(self, ctx: &Ctx) -> Result<Report> {
        match self {
            Self::Storm => storm::run(ctx, Backend::Sqlite).await,
            Self::StormPg => storm::run(ctx, Backend::Postgres).await,
            Self::Outage => outage::run(ctx).await,
            Self::Replicas => replicas::run(ctx).await,
            Self::Race => race::run(ctx, Backend::Sqlite).await,
            Self::RacePg => race::run(ctx, Backend::Postgres).await,
        }
    }
}

struct Args {
    short: bool,
    only: Vec<Scenario>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut out = Self {
            short: false,
            only: Vec::new(),
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--short" => out.short = true,
                "--only" => {
                    let names = args.next().context("--only needs a scenario name")?;
                    for name in names.split(',') {
                        let s = Scenario::ALL
                            .into_iter()
                            .find(|s| s.name() == name)
                            .with_context(|| format!("unknown scenario {name:?}"))?;
                        out.only.push(s);
                    }
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(out)
    }

    fn scenarios(&self) -> Vec<Scenario> {
        if self.only.is_empty() {
            Scenario::ALL
                .into_iter()
                .filter(|s| !self.short || s.in_short_run())
                .collect()
        } else {
            self.only.clone()
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let ctx = match setup(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let budget = Duration::from_secs(if args.short { 180 } else { 600 });
    let started = Instant::now();
    // Every scenario owns its processes, tasks and proxy: when this future is dropped (deadline,
    // Ctrl-C) they are dropped too, and `HostProc`'s `Drop` kills the hosts.
    let all = run_all(&ctx, args.scenarios());
    let failed = tokio::select! {
        failed = all => failed,
        () = tokio::time::sleep(budget) => {
            println!("chaos: global deadline of {} s exceeded", budget.as_secs());
            vec!["deadline".to_owned()]
        }
        _ = tokio::signal::ctrl_c() => {
            println!("chaos: interrupted");
            vec!["interrupted".to_owned()]
        }
    };
    db::drop_leftover_schemas().await;
    let took = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&ctx.root);
        println!("chaos: every guarantee held ({took:.1} s)");
        ExitCode::SUCCESS
    } else {
        println!(
            "chaos: FAILED: {} ({took:.1} s); logs in {}",
            failed.join(", "),
            ctx.root.display()
        );
        ExitCode::FAILURE
    }
}

fn setup(args: &Args) -> Result<Ctx> {
    let bin = proc::host_binary()?;
    let root = std::env::temp_dir().join(format!(
        "wxpay-chaos-{}-{}",
        std::process::id(),
        rand::hex(4)
    ));
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    println!(
        "chaos: {} run, host {}",
        if args.short { "short" } else { "full" },
        bin.display()
    );
    Ok(Ctx {
        short: args.short,
        bin,
        http: api::client()?,
        root,
        pg: db::postgres_url(),
    })
}

/// Runs the scenarios one after the other; returns the names of those that failed.
async fn run_all(ctx: &Ctx, scenarios: Vec<Scenario>) -> Vec<String> {
    let mut failed = Vec::new();
    for s in scenarios {
        let t = Instant::now();
        let result = s.run(ctx).await;
        let took = t.elapsed().as_secs_f64();
        match result {
            Ok(r) => {
                println!("{} ({took:.1} s)", r.line);
                for d in &r.details {
                    println!("    {}", d.replace('\n', "\n    "));
                }
                if !r.ok {
                    failed.push(s.name().to_owned());
                }
            }
            Err(e) => {
                println!("{}: error after {took:.1} s: {e:#}", s.name());
                failed.push(s.name().to_owned());
            }
        }
    }
    failed
}
