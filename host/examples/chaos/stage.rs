//! What every scenario sets up: its directory, a simulator, the host configuration, and a
//! logged-in user.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Ctx;
use super::api::Api;
use super::proc::{HostProc, HostSpec, free_port};
use super::sim::Sim;

/// The payer of every order.
pub const OPENID: &str = "o_chaos_payer";

/// One scenario's surroundings.
pub struct Stage {
    /// Scenario directory: key files, host logs, the SQLite file.
    pub dir: PathBuf,
    /// The simulator the hosts call.
    pub sim: Sim,
    admin: String,
    env: Vec<(String, String)>,
}

impl Stage {
    /// Creates `ctx.root/name` and starts a simulator.
    pub async fn new(ctx: &Ctx, name: &str) -> Result<Self> {
        let dir = ctx.root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let sim = Sim::start().await?;
        let admin = format!("chaos-admin-{}", super::rand::hex(16));
        let env = sim.host_env(&dir, &admin)?;
        Ok(Self {
            dir,
            sim,
            admin,
            env,
        })
    }

    /// A host process specification on a free loopback port over `database_url`; its log is
    /// `<dir>/<name>.log`.
    pub fn spec(&self, ctx: &Ctx, database_url: &str, name: &str) -> Result<HostSpec> {
        let addr: SocketAddr = free_port()?;
        let admin_addr: SocketAddr = free_port()?;
        let mut env = self.env.clone();
        env.extend(
            [
                ("WXPAY_LISTEN", addr.to_string()),
                ("WXPAY_ADMIN_LISTEN", admin_addr.to_string()),
                ("WXPAY_DATABASE_URL", database_url.to_owned()),
                ("WXPAY_NOTIFY_URL", format!("http://{addr}")),
                // The reconciler would query the simulator about orders it never saw paid and
                // could close them; the scenarios measure the notification path, so it stays
                // out of the way (nothing is old enough to be reconciled during a run).
                ("WXPAY_RECONCILE_AFTER_SECS", "3600".to_owned()),
                ("WXPAY_RECONCILE_INTERVAL_SECS", "600".to_owned()),
                ("WXPAY_HTTP_TIMEOUT_MS", "5000".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        Ok(HostSpec {
            bin: ctx.bin.clone(),
            env,
            addr,
            admin_addr,
            log: self.dir.join(format!("{name}.log")),
        })
    }

    /// Starts a host over `database_url` and waits until it is ready.
    pub async fn host(&self, ctx: &Ctx, database_url: &str, name: &str) -> Result<HostProc> {
        let spec = self.spec(ctx, database_url, name)?;
        HostProc::start(spec, &ctx.http)
            .await
            .with_context(|| format!("start host {name}"))
    }

    /// The API of a host with this stage's back-office token.
    pub fn api(&self, ctx: &Ctx, host: &HostProc) -> Api {
        Api::new(&ctx.http, host.base_url(), host.admin_url(), &self.admin)
    }

    /// Logs [`OPENID`] in through `api` (the simulator issues the code); returns the token.
    pub async fn login(&self, api: &Api) -> Result<String> {
        api.login(&self.sim.login_code(OPENID))
            .await
            .context("log the payer in")
    }
}

/// Creates one 1-yuan order per number for [`OPENID`], 16 requests in flight.
pub async fn create_orders(api: &Api, nos: &[String]) -> Result<()> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for no in nos {
        let (api, gate, no) = (api.clone(), gate.clone(), no.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            api.create_order(OPENID, &no, AMOUNT).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("an order-creating task failed")??;
    }
    Ok(())
}

/// Every order's amount, in fen.
pub const AMOUNT: i64 = 100;

/// WeChat's transaction id for the `i`-th payment of a scenario (28 digits, like WeChat's).
pub fn transaction_id(i: usize) -> String {
    format!("42{:026}", i + 1)
}
