//! `wxpay-host`: the WeChat Pay mini-program payment server.
//!
//! A merchant runs it next to its mini-program: it logs users in (`jscode2session`), keeps
//! orders in SQLite or PostgreSQL, places JSAPI orders, hands out `wx.requestPayment`
//! parameters, and applies WeChat Pay notifications exactly once. All signing, verification and
//! decryption is `wxpay-core`'s. With the default `sandbox` feature, `sandbox` points a host at the
//! local WeChat Pay simulator (crate `wxpay-simulator`); without it no simulator is built in.
//!
//! Dependencies point one way: [`http`] → [`service`] → [`domain`] / [`store`] / [`wechat`].
//!
//! - [`domain`]: pure rules — the order and refund state machines, validated ids.
//! - [`service`]: the only code that changes state, deciding on rows locked in its transaction.
//! - [`http`]: handlers that parse, authorize, call one service and render; `AppError`.
//! - [`store`]: SQLite and PostgreSQL behind one interface; [`wechat`]: the signed, verified
//!   upstream client.
//! - [`jobs`]: the reconciler's schedule; [`config`]: `WXPAY_*` variables; [`metrics`];
//!   [`clock`].
//! - [`Host`]: a running server (listener + reconciler) with graceful shutdown.

pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod metrics;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod service;
pub mod store;
pub mod wechat;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, PlatformKeySource, Secret};
pub use http::app;
pub use service::{AppState, InitError};

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
        Self::serve(state, listener, run_jobs)
    }

    /// Serves an already built `state` (e.g. one on a test clock) on `listener`; with
    /// `run_jobs`, also starts the reconciler.
    ///
    /// # Errors
    /// [`InitError::Listen`] if the listener has no local address.
    pub fn serve(
        state: AppState,
        listener: TcpListener,
        run_jobs: bool,
    ) -> Result<Self, InitError> {
        let addr = listener.local_addr().map_err(InitError::Listen)?;
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
