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
//!   [`clock`]; [`doctor`]: `wxpay-host doctor` and `verify-notification`.
//! - [`Host`]: a running server (listener + reconciler) with graceful shutdown.

pub mod clock;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod metrics;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod server;
pub mod service;
pub mod store;
pub mod wechat;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, PlatformKeySource, Secret};
pub use service::{AppState, InitError};

/// The two sockets a host serves: the public one (WeChat and the mini-program) and the private
/// admin one (back office, metrics).
#[derive(Debug)]
pub struct Listeners {
    /// `WXPAY_LISTEN`.
    pub public: TcpListener,
    /// `WXPAY_ADMIN_LISTEN`.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds `WXPAY_LISTEN` and `WXPAY_ADMIN_LISTEN`.
    ///
    /// # Errors
    /// [`InitError::Listen`] naming the address that could not be bound.
    pub async fn bind(config: &Config) -> Result<Self, InitError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                InitError::Listen(std::io::Error::new(e.kind(), format!("{addr}: {e}")))
            })
        };
        Ok(Self {
            public: bind(config.listen).await?,
            admin: bind(config.edge.admin_listen).await?,
        })
    }

    /// Two free loopback ports (tests, sandbox).
    ///
    /// # Errors
    /// [`InitError::Listen`].
    pub async fn loopback() -> Result<Self, InitError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            public: TcpListener::bind(any).await.map_err(InitError::Listen)?,
            admin: TcpListener::bind(any).await.map_err(InitError::Listen)?,
        })
    }
}

/// A running host: the public and admin servers plus (optionally) the reconciler.
#[derive(Debug)]
pub struct Host {
    /// The application state (store, client, metrics).
    pub state: AppState,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    jobs: Option<JoinHandle<()>>,
}

impl Host {
    /// Builds the state from `config` and serves it on `listeners`; with `run_jobs`, also starts
    /// the reconciler.
    ///
    /// # Errors
    /// [`InitError`] if storage or the WeChat client cannot be set up.
    pub async fn start(
        config: Config,
        listeners: Listeners,
        run_jobs: bool,
    ) -> Result<Self, InitError> {
        let state = AppState::new(config).await?;
        Self::serve(state, listeners, run_jobs)
    }

    /// Serves an already built `state` (e.g. one on a test clock) on `listeners`; with
    /// `run_jobs`, also starts the reconciler.
    ///
    /// # Errors
    /// [`InitError::Listen`] if a listener has no local address.
    pub fn serve(state: AppState, listeners: Listeners, run_jobs: bool) -> Result<Self, InitError> {
        let addr = listeners.public.local_addr().map_err(InitError::Listen)?;
        let admin_addr = listeners.admin.local_addr().map_err(InitError::Listen)?;
        let (shutdown, rx) = watch::channel(false);
        let edge = http::Edge::new(&state);
        let limits = server::ConnLimits {
            header_read_timeout: state.config.edge.header_timeout,
            max_connections: state.config.edge.max_connections,
        };
        let mut servers = Vec::new();
        for (listener, router) in [
            (
                listeners.public,
                http::public_app(state.clone(), edge.clone()),
            ),
            (
                listeners.admin,
                http::admin_app(state.clone(), edge.clone()),
            ),
        ] {
            let mut srx = rx.clone();
            let stop = async move {
                let _ = srx.wait_for(|v| *v).await;
            };
            servers.push(tokio::spawn(server::serve(
                listener,
                router,
                limits,
                stop,
                Duration::from_secs(10),
            )));
        }
        let jobs = run_jobs.then(|| jobs::spawn(state.clone(), rx));
        tracing::info!(%addr, admin = %admin_addr, "wxpay-host listening");
        Ok(Self {
            state,
            addr,
            admin_addr,
            shutdown,
            servers,
            jobs,
        })
    }

    /// The bound public address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound admin address.
    #[must_use]
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// `http://PUBLIC_ADDR`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADMIN_ADDR`.
    #[must_use]
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Stops accepting, lets in-flight requests finish (at most 10 s), stops the reconciler and
    /// closes the database pool.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(11), server).await;
        }
        if let Some(j) = self.jobs {
            let _ = tokio::time::timeout(Duration::from_secs(10), j).await;
        }
        self.state.store.close().await;
    }

    /// Waits until the server tasks end (after [`Host::trigger_shutdown`] or a failure).
    pub async fn wait(&mut self) {
        for server in &mut self.servers {
            let _ = server.await;
        }
    }

    /// Asks the server and the reconciler to stop.
    pub fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}
