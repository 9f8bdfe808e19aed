//! Load run (not a test), out of process: verified payment notifications per second against a
//! `wxpay-host serve` process, with the load generator in a process of its own.
//!
//! ```text
//! cargo build --release -p wxpay-host --bin wxpay-host --example load
//! target/release/examples/load [--short] [--store sqlite|postgres]… [--in-flight N]…
//!                              [--orders N] [--copies K]
//! ```
//!
//! Per configuration (every `--store` × every `--in-flight`; default SQLite and PostgreSQL at
//! 16 and 64 in flight, 5,000 orders × 3 copies; `--short`: both stores at 16, 300 orders):
//!
//! 1. a `wxpay-host serve` process (the binary next to this example) on free loopback ports,
//!    over a fresh SQLite file or a fresh PostgreSQL database (on the server at
//!    `WXPAY_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, dropped
//!    afterwards), pointed at an in-process WeChat Pay simulator in public-key mode (key
//!    material, logins; idle while the load runs);
//! 2. the orders are created through the back office, and `K` `TRANSACTION.SUCCESS`
//!    notifications per order with distinct ids are signed before anything is timed (copy 1 of
//!    every order, then copy 2 of every order, …: first payments, then redeliveries);
//! 3. the generator (`load generate`, this binary re-executed) POSTs each once with `N` in
//!    flight on one thread and reports latencies;
//! 4. reported from outside: the host's CPU (`/proc/<pid>/stat`) and peak RSS (`VmHWM`), the
//!    CPU of the PostgreSQL processes working for the database (its backends, autovacuum, WAL
//!    writer, checkpointer, background writer; SQLite runs inside the host), and afterwards,
//!    through the back office, that every order is `PAID` with its transaction id and exactly
//!    one move into `PAID`.
//!
//! Prints a markdown table row per configuration. Exits non-zero only on a correctness
//! problem or a setup failure — a lost or doubled payment, an order paid without its event, a
//! notification not answered 2xx — never because of speed. Loopback only; the host is killed
//! on every way out.
#![allow(missing_docs)]

#[allow(dead_code)]
#[path = "chaos/api.rs"]
mod api;
#[allow(dead_code)]
#[path = "chaos/proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "chaos/rand.rs"]
mod rand;
#[allow(dead_code)]
#[path = "chaos/sim.rs"]
mod sim;
#[allow(dead_code)]
#[path = "chaos/stage.rs"]
mod stage;
#[allow(dead_code)]
#[path = "chaos/verdict.rs"]
mod verdict;

#[path = "load/generate.rs"]
mod generate;
#[path = "load/measure.rs"]
mod measure;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use generate::Outcome;
use measure::FreshDb;
use stage::{AMOUNT, OPENID, Stage, create_orders, transaction_id};
use verdict::Verdict;

const USAGE: &str = "usage: load [--short] [--store sqlite|postgres]... [--in-flight N]... \
                     [--orders N] [--copies K] [--fault lose|double]
       load generate URL REQUESTS_FILE IN_FLIGHT   (the generator process)";

/// What the chaos modules reused here expect of their context.
pub struct Ctx {
    /// The `wxpay-host` binary.
    pub bin: PathBuf,
    /// Loopback HTTP client (setup and checks, not the load).
    pub http: reqwest::Client,
    /// This run's directory.
    pub root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// A fault planted on purpose, to see the run fail (the check of the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The first order's notifications are never sent: its payment is lost.
    Lose,
    /// After the run, a second move into `PAID` is written into the first order's history
    /// behind the host's back: a doubled payment.
    Double,
}

struct Args {
    fault: Option<Fault>,
    short: bool,
    stores: Vec<Store>,
    in_flight: Vec<usize>,
    orders: usize,
    copies: usize,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let (mut short, mut stores, mut in_flight) = (false, Vec::new(), Vec::new());
        let (mut orders, mut copies, mut fault) = (None, 3, None);
        while let Some(a) = args.next() {
            let mut value = || args.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--short" => short = true,
                "--store" => stores.push(match value()?.as_str() {
                    "sqlite" => Store::Sqlite,
                    "postgres" => Store::Postgres,
                    other => bail!("unknown store {other:?}"),
                }),
                "--in-flight" => in_flight.push(value()?.parse().context("--in-flight")?),
                "--orders" => orders = Some(value()?.parse().context("--orders")?),
                "--copies" => copies = value()?.parse().context("--copies")?,
                "--fault" => {
                    fault = Some(match value()?.as_str() {
                        "lose" => Fault::Lose,
                        "double" => Fault::Double,
                        other => bail!("unknown fault {other:?} (lose or double)"),
                    });
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        if stores.is_empty() {
            stores = vec![Store::Sqlite, Store::Postgres];
        }
        if in_flight.is_empty() {
            in_flight = if short { vec![16] } else { vec![16, 64] };
        }
        let orders = orders.unwrap_or(if short { 300 } else { 5000 });
        if orders == 0 || copies == 0 || in_flight.contains(&0) {
            bail!("--orders, --copies and --in-flight must be positive");
        }
        Ok(Self {
            fault,
            short,
            stores,
            in_flight,
            orders,
            copies,
        })
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "generate") {
        return match generate::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load generate: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse(args.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(orchestrate(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every configuration; `Ok(false)` if any had a correctness problem.
async fn orchestrate(args: &Args) -> Result<bool> {
    let ctx = Ctx {
        bin: proc::host_binary()?,
        http: api::client()?,
        root: std::env::temp_dir().join(format!(
            "wxpay-load-{}-{}",
            std::process::id(),
            rand::hex(4)
        )),
    };
    std::fs::create_dir_all(&ctx.root).with_context(|| format!("create {}", ctx.root.display()))?;
    let stage = Stage::new(&ctx, "stage").await?;
    let result = run_all(&ctx, &stage, args).await;
    stage.sim.shutdown().await;
    match result {
        Ok(true) => {
            let _ = std::fs::remove_dir_all(&ctx.root);
            Ok(true)
        }
        Ok(false) => {
            println!("load: FAILED; logs in {}", ctx.root.display());
            Ok(false)
        }
        Err(e) => Err(e.context(format!("logs in {}", ctx.root.display()))),
    }
}

async fn run_all(ctx: &Ctx, stage: &Stage, args: &Args) -> Result<bool> {
    let total = args.orders * args.copies;
    println!(
        "load: {} run, host {}; {} orders × {} copies = {total} notifications per configuration",
        if args.short { "short" } else { "full" },
        ctx.bin.display(),
        args.orders,
        args.copies,
    );
    let nos: Vec<String> = (0..args.orders).map(|i| format!("LOAD{i:08}")).collect();
    let paid: Vec<(String, String)> = nos
        .iter()
        .enumerate()
        .map(|(i, no)| (no.clone(), transaction_id(i)))
        .collect();
    let signing = Instant::now();
    // A lost payment: the first order's notifications are left out of the load.
    let sent_for = if args.fault == Some(Fault::Lose) {
        &paid[1..]
    } else {
        &paid[..]
    };
    let requests = sign_all(stage, sent_for, args.copies)?;
    let total = sent_for.len() * args.copies;
    let file = ctx.root.join("requests.jsonl");
    std::fs::write(&file, requests).with_context(|| format!("write {}", file.display()))?;
    println!(
        "load: {total} notifications signed in {:.1} s (not timed)\n",
        signing.elapsed().as_secs_f64()
    );
    println!(
        "| store | in flight | notifications | notifications/s | p50 | p99 | p99.9 | host CPU \
         per notification | database CPU per notification | host peak RSS | exactly once |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut all_ok = true;
    for &store in &args.stores {
        for &in_flight in &args.in_flight {
            let run = Run {
                ctx,
                stage,
                store,
                in_flight,
                nos: &nos,
                paid: &paid,
                file: &file,
                notifications: total,
                fault: args.fault,
            };
            let (row, ok, notes) = run.go().await?;
            println!("{row}");
            for n in notes {
                eprintln!("    {n}");
            }
            all_ok &= ok;
        }
    }
    Ok(all_ok)
}

/// Signs `copies` notifications with distinct ids per order, copy-major; one request line
/// each. Two threads: RSA signing is most of the setup time.
fn sign_all(stage: &Stage, paid: &[(String, String)], copies: usize) -> Result<String> {
    let jobs: Vec<(usize, usize)> = (0..copies)
        .flat_map(|k| (0..paid.len()).map(move |i| (k, i)))
        .collect();
    let half = jobs.len().div_ceil(2);
    let lines: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let workers: Vec<_> = jobs
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(k, i)| {
                            let (no, tid) = &paid[i];
                            let n = stage.sim.paid(
                                &format!("load-{i}-{k}"),
                                no,
                                OPENID,
                                AMOUNT,
                                tid,
                            )?;
                            generate::request_line(&n.headers, &n.body)
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| bail!("a signing thread panicked"))
            })
            .collect()
    });
    let mut out = String::new();
    for chunk in lines {
        for line in chunk? {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// One configuration.
struct Run<'a> {
    ctx: &'a Ctx,
    stage: &'a Stage,
    store: Store,
    in_flight: usize,
    nos: &'a [String],
    paid: &'a [(String, String)],
    /// The generator's input: one pre-signed request per line, each sent once.
    file: &'a std::path::Path,
    /// Lines in `file`.
    notifications: usize,
    fault: Option<Fault>,
}

impl Run<'_> {
    /// Returns the table row, whether every check held, and notes for stderr.
    async fn go(&self) -> Result<(String, bool, Vec<String>)> {
        let name = format!("{}-{}", self.store.name().to_lowercase(), self.in_flight);
        match self.store {
            Store::Sqlite => {
                let dir = self.ctx.root.join(&name);
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}", dir.join("host.db").display());
                let r = self.measure(&name, &url, None).await;
                // The SQLite file (and its WAL) can be large: remove it now, keep the log.
                for f in ["host.db", "host.db-wal", "host.db-shm"] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
                r
            }
            Store::Postgres => {
                let db = FreshDb::create(&measure_pg_url()).await?;
                let r = self.measure(&name, &db.url.clone(), Some(&db)).await;
                let dropped = db.drop().await;
                let r = r?;
                dropped?;
                Ok(r)
            }
        }
    }

    async fn measure(
        &self,
        name: &str,
        db_url: &str,
        pg: Option<&FreshDb>,
    ) -> Result<(String, bool, Vec<String>)> {
        let host = self.stage.host(self.ctx, db_url, name).await?;
        let api = self.stage.api(self.ctx, &host);
        self.stage.login(&api).await?;
        create_orders(&api, self.nos)
            .await
            .context("create the orders")?;
        let pid = measure::host_pid()?;
        // Let the host's pool settle after the setup burst before sampling.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let host_before = measure::cpu(pid).context("read the host's CPU time")?;
        let db_before = match pg {
            Some(db) => Some(db.server_cpu().await?),
            None => None,
        };
        let outcome = self.generate(&api.notify_url()).await?;
        let host_cpu = measure::cpu(pid)
            .context("read the host's CPU time")?
            .saturating_sub(host_before);
        let db_cpu = match (pg, db_before) {
            (Some(db), Some(before)) if !before.is_empty() => {
                Some(measure::cpu_delta(&before, &db.server_cpu().await?))
            }
            _ => None,
        };
        let rss = measure::peak_rss_kib(pid);
        if self.fault == Some(Fault::Double)
            && let Some((no, _)) = self.paid.first()
        {
            plant_double(db_url, no).await?;
        }
        let verdict = Verdict::of(&api, self.paid).await?;
        drop(host);

        let n = outcome.sent.max(1) as f64;
        let total = self.paid.len();
        let correct = verdict.lost.is_empty()
            && verdict.doubled.is_empty()
            && verdict.unrecorded.is_empty()
            && outcome.ok == outcome.sent
            && outcome.sent == self.notifications;
        let once = total - verdict.lost.len() - verdict.doubled.len() - verdict.unrecorded.len();
        let mut check = format!("{once}/{total} PAID once");
        if outcome.ok != outcome.sent {
            let _ = write!(
                check,
                ", {} non-2xx, {} unanswered",
                outcome.non_2xx, outcome.errors
            );
        }
        if !correct {
            check.push_str(" — **FAILED**");
        }
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1e3);
        let per = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3 / n);
        let row = format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {check} |",
            self.store.name(),
            self.in_flight,
            outcome.sent,
            outcome.sent as f64 / outcome.elapsed_s,
            ms(outcome.p50_us),
            ms(outcome.p99_us),
            ms(outcome.p999_us),
            per(host_cpu),
            match (self.store, db_cpu) {
                (Store::Sqlite, _) => "in the host".to_owned(),
                (Store::Postgres, Some(d)) => per(d),
                (Store::Postgres, None) => "not visible".to_owned(),
            },
            rss.map_or("?".to_owned(), |k| format!("{:.0} MiB", k as f64 / 1024.0)),
        );
        let mut notes = vec![format!(
            "{name}: {:.2} s, max {}, generator CPU {:.3} ms per notification",
            outcome.elapsed_s,
            ms(outcome.max_us),
            outcome.cpu_ms / n
        )];
        if let Some(p) = &outcome.first_problem {
            notes.push(format!("{name}: first problem: {p}"));
        }
        notes.extend(
            verdict
                .details()
                .into_iter()
                .map(|d| format!("{name}: {d}")),
        );
        Ok((row, correct, notes))
    }

    /// Runs the generator process and parses its report.
    async fn generate(&self, url: &str) -> Result<Outcome> {
        let exe = std::env::current_exe().context("locate this binary")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("generate")
            .arg(url)
            .arg(self.file)
            .arg(self.in_flight.to_string());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .context("wait for the generator")?
            .context("run the generator")?;
        if !out.status.success() {
            bail!(
                "the generator failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parse the generator's report")
    }
}

/// `--fault double`: a second `CREATED → PAID` event in `no`'s history, written straight into
/// the database.
async fn plant_double(db_url: &str, no: &str) -> Result<()> {
    use sqlx::Connection as _;
    let sql = "INSERT INTO order_events (out_trade_no, at, kind, from_state, to_state, detail) \
               VALUES ($1, 0, 'notify_paid', 'CREATED', 'PAID', 'planted by load --fault double')";
    if db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(db_url).await?;
        sqlx::query(sql).bind(no).execute(&mut c).await?;
    } else {
        let mut c = sqlx::PgConnection::connect(db_url).await?;
        sqlx::query(sql).bind(no).execute(&mut c).await?;
    }
    Ok(())
}

/// The PostgreSQL server the fresh databases are created on.
fn measure_pg_url() -> String {
    std::env::var("WXPAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}
