//! The host under test as a separate OS process: `wxpay-host serve`, configured by `WXPAY_*`
//! variables, killed with SIGKILL and restarted on the same port and database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

/// How long a starting host may take to answer `/healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to (re)start one host process.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// The `wxpay-host` binary.
    pub bin: PathBuf,
    /// `WXPAY_*` variables (listen address and database included).
    pub env: Vec<(String, String)>,
    /// The address in `WXPAY_LISTEN` (mini-program API and notifications).
    pub addr: SocketAddr,
    /// The address in `WXPAY_ADMIN_LISTEN` (back office).
    pub admin_addr: SocketAddr,
    /// Where stdout and stderr of every start are appended.
    pub log: PathBuf,
}

/// A running (or just killed) host process. Dropping it kills the process.
#[derive(Debug)]
pub struct HostProc {
    spec: HostSpec,
    child: Option<Child>,
    /// How many times a process was started (1 after [`HostProc::start`]).
    pub starts: u32,
}

impl HostProc {
    /// Starts the host and waits until `/healthz` answers 200.
    pub async fn start(spec: HostSpec, http: &reqwest::Client) -> Result<Self> {
        let mut host = Self {
            spec,
            child: None,
            starts: 0,
        };
        host.spawn()?;
        host.wait_ready(http).await?;
        Ok(host)
    }

    /// `http://ADDR` of the public listener.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.spec.addr)
    }

    /// `http://ADDR` of the back-office listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.spec.admin_addr)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("open {}", self.spec.log.display()))?;
        let err = log.try_clone().context("clone the log file handle")?;
        let mut cmd = Command::new(&self.spec.bin);
        cmd.arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        // Only what the harness sets: nothing from a WXPAY_CONFIG file or the caller's shell.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("WXPAY_") {
                cmd.env_remove(k);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.spec.bin.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Waits until `/healthz` answers 200 on both listeners; fails if the process exits or
    /// takes too long.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<()> {
        for base in [self.base_url(), self.admin_url()] {
            self.wait_healthy(http, &format!("{base}/healthz")).await?;
        }
        Ok(())
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client, url: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "the host exited while starting ({status}); log: {}\n{}",
                    self.spec.log.display(),
                    self.log_tail()
                );
            }
            let ok = http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the host did not answer {url} within {} s; log: {}\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.spec.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `Some(status)` if the process has exited (or was killed and reaped), else `None`.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().context("wait for the host process"),
            None => bail!("no host process was started"),
        }
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on Unix), then reap the process.
    pub async fn kill9(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("no host process to kill");
        };
        if child.try_wait().context("poll the host")?.is_none() {
            child.kill().context("SIGKILL the host")?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().context("reap the host")?.is_none() {
            if Instant::now() > deadline {
                bail!("the killed host process was not reaped within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Kills (if still running) and starts a new process on the same port and database.
    pub async fn restart(&mut self, http: &reqwest::Client) -> Result<()> {
        self.kill9().await?;
        self.spawn()?;
        self.wait_ready(http).await
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback port that was free a moment ago (the host binds it next).
pub fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    l.local_addr().context("local address")
}

/// The `wxpay-host` binary next to this example (`target/<profile>/examples/chaos` →
/// `target/<profile>/wxpay-host`).
pub fn host_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the chaos binary")?;
    let dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("the chaos binary is not in target/<profile>/examples")?;
    let bin = dir.join(format!("wxpay-host{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release -p wxpay-host`",
            bin.display()
        );
    }
    // `cargo run --example chaos` does not rebuild the server binary: say so if it is stale.
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let host_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = ["src", "migrations", "Cargo.toml"]
        .iter()
        .filter_map(|p| newest_file(&host_dir.join(p)))
        .max();
    if let (Some(built), Some((changed, path))) = (built, newest)
        && changed > built
    {
        eprintln!(
            "chaos: warning: {} changed after {} was built; rebuild it with \
             `cargo build --release -p wxpay-host` to measure the current code",
            path.display(),
            bin.display()
        );
    }
    Ok(bin)
}

/// The most recently modified file under `path` (or `path` itself), with its time.
fn newest_file(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some((meta.modified().ok()?, path.to_owned()));
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest_file(&e.ok()?.path()))
        .max()
}
