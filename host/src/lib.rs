//! `wxpay-host`: the WeChat Pay mini-program payment server.
//!
//! A merchant runs it next to its mini-program: it logs users in (`jscode2session`), keeps
//! orders in SQLite or PostgreSQL, places JSAPI orders, hands out `wx.requestPayment`
//! parameters, and applies WeChat Pay notifications exactly once. All signing, verification and
//! decryption is `wxpay-core`'s. [`simulator`] is a local WeChat Pay for tests and the sandbox.
//!
//! - [`config`]: `WXPAY_*` variables (+ optional TOML file) with documented defaults.
//! - [`app`](mod@app): `fn app(state) -> Router` and the handlers; [`error`]: `AppError`.
//! - [`store`]: the storage interface over SQLite and PostgreSQL.
//! - [`wechat`]: the signed, verified upstream client.
//! - [`jobs`]: the reconciler. [`metrics`]: Prometheus text.
//! - [`Host`]: a running server (listener + reconciler) with graceful shutdown.

pub mod app;
pub mod config;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod simulator;
pub mod store;
pub mod wechat;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use app::{AppState, InitError, app};
pub use config::{Config, PlatformKeySource, Secret};

/// A running host: HTTP server plus (optionally) the reconciler.
#[derive(Debug)]
pub struct Host {
    /// The application state (store, client, metrics).
    pub state: AppState,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    jobs: Option<JoinHandle<()>>,
}

impl Host {
    /// Builds the state from `config` and serves it on `listener`; with `run_jobs`, also starts
    /// the reconciler.
    ///
    /// # Errors
    /// [`InitError`] if storage or the WeChat client cannot be set up.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        run_jobs: bool,
    ) -> Result<Self, InitError> {
        let state = AppState::new(config).await?;
        let addr = listener.local_addr().map_err(|e| {
            InitError::Upstream(wechat::UpstreamError::Transport(format!("listener: {e}")))
        })?;
        let (shutdown, rx) = watch::channel(false);
        let router = app(state.clone());
        let mut srx = rx.clone();
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = srx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "server failed");
            }
        });
        let jobs = run_jobs.then(|| jobs::spawn(state.clone(), rx));
        tracing::info!(%addr, "wxpay-host listening");
        Ok(Self {
            state,
            addr,
            shutdown,
            server,
            jobs,
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (at most 10 s), stops the reconciler and
    /// closes the database pool.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        if let Some(j) = self.jobs {
            let _ = tokio::time::timeout(Duration::from_secs(10), j).await;
        }
        self.state.store.close().await;
    }

    /// Waits until the server task ends (after [`Host::trigger_shutdown`] or a failure).
    pub async fn wait(&mut self) {
        let _ = (&mut self.server).await;
    }

    /// Asks the server and the reconciler to stop.
    pub fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// A configuration that points a host at a running simulator (sandbox, demo and tests).
///
/// `notify_base` is the host's own base URL (where the simulator delivers notifications).
#[must_use]
pub fn simulator_config(
    sim: &simulator::SimulatorHandle,
    listen: SocketAddr,
    notify_base: &str,
    database_url: &str,
    admin_token: &str,
) -> Config {
    let platform = match sim.platform_public_key_id() {
        Some(id) => PlatformKeySource::PublicKey {
            id: id.to_owned(),
            pem: sim.platform_public_key_pem().to_owned(),
        },
        None => PlatformKeySource::Certificates,
    };
    Config {
        listen,
        database_url: database_url.to_owned(),
        appid: sim.appid().to_owned(),
        appsecret: Secret::new(sim.appsecret()),
        mchid: sim.mchid().to_owned(),
        merchant_serial: sim.merchant_serial().to_owned(),
        merchant_key_pem: Secret::new(sim.merchant_private_key_pem()),
        api_v3_key: Secret::new(sim.api_v3_key()),
        platform,
        notify_url: notify_base.trim_end_matches('/').to_owned(),
        admin_token: Secret::new(admin_token),
        api_base: sim.base_url().to_owned(),
        login_base: sim.base_url().to_owned(),
        order_expire: Duration::from_secs(1800),
        session_ttl: Duration::from_secs(7200),
        reconcile_interval: Duration::from_secs(5),
        reconcile_after: Duration::from_secs(30),
        cert_refresh_interval: Duration::from_secs(43_200),
        http_timeout: Duration::from_secs(5),
        upstream_retries: 2,
        body_limit: 65_536,
    }
}
