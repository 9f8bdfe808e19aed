//! What the orchestrator reads from outside the processes it measures: CPU time and peak RSS
//! from `/proc`, the PostgreSQL server's processes that work for one database, and the fresh
//! database itself.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Connection;

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, which is 100 on every architecture Linux
/// runs on today (`getconf CLK_TCK`); `sysconf` would need `libc` for a constant.
const TICK: Duration = Duration::from_millis(10);

/// User + system CPU time of process `pid` (all its threads, not its children), or `None` if
/// the process is gone or not visible.
pub fn cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` (field 2) may contain spaces and parentheses: count fields after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // After `comm`: state(3) ppid(4) … utime(14) stime(15), i.e. indexes 11 and 12 of `rest`.
    let utime: u32 = fields.nth(11)?.parse().ok()?;
    let stime: u32 = fields.next()?.parse().ok()?;
    Some(TICK * (utime + stime))
}

/// `(ppid, comm)` of process `pid`.
fn parent_and_name(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let ppid = stat[close + 2..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ppid, comm))
}

/// The pid of this process's child named `wxpay-host` (the host under test; chaos's
/// `HostProc` keeps its `Child` to itself, so it is found through `/proc`).
pub fn host_pid() -> Result<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        else {
            continue;
        };
        if let Some((ppid, comm)) = parent_and_name(pid)
            && ppid == me
            && comm == "wxpay-host"
        {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        other => anyhow::bail!("expected one wxpay-host child process, found {other:?}"),
    }
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A fresh PostgreSQL database of its own (so that the server processes working for it can be
/// told apart from other users of the server), dropped by [`FreshDb::drop`].
pub struct FreshDb {
    /// The server URL the harness administers through (its own database, not this one).
    admin_url: String,
    /// The new database's name.
    pub name: String,
    /// The URL the host is given.
    pub url: String,
}

impl FreshDb {
    /// Creates `wxpay_load_<random>` on the server at `admin_url`.
    pub async fn create(admin_url: &str) -> Result<Self> {
        let name = format!("wxpay_load_{}", super::rand::hex(6));
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connect to PostgreSQL at {admin_url}"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("create database {name}"))?;
        conn.close().await.ok();
        let mut url = url::Url::parse(admin_url).context("parse the PostgreSQL URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// CPU time of the server processes working for this database (its backends and
    /// autovacuum workers) plus the server-wide WAL writer, checkpointer and background
    /// writer, by pid. Empty if the server's processes are not visible here (another machine
    /// or container).
    pub async fn server_cpu(&self) -> Result<HashMap<u32, Duration>> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .context("connect to PostgreSQL to list its processes")?;
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
             OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
        )
        .bind(&self.name)
        .fetch_all(&mut conn)
        .await
        .context("list the server's processes")?;
        conn.close().await.ok();
        Ok(pids
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .filter_map(|p| cpu(p).map(|c| (p, c)))
            .collect())
    }

    /// Drops the database (closing the host's connections if any are left).
    pub async fn drop(self) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .context("connect to PostgreSQL to drop the database")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("drop database {}", self.name))?;
        conn.close().await.ok();
        Ok(())
    }
}

/// CPU spent between two [`FreshDb::server_cpu`] samples: processes that started in between
/// count in full, processes that ended in between are missed (the host keeps its pool open, so
/// its backends live through the run).
pub fn cpu_delta(before: &HashMap<u32, Duration>, after: &HashMap<u32, Duration>) -> Duration {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}
