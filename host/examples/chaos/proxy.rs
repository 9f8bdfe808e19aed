//! A loopback TCP proxy between the host and PostgreSQL that the harness can cut: every open
//! connection is closed and the listening socket is closed too, so new connections are refused
//! (ECONNREFUSED) until [`Proxy::restore`] listens again on the same port. The machine's
//! PostgreSQL server is never touched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// A running proxy. Dropping it stops it and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the proxy")?;
        let addr = listener.local_addr().context("proxy address")?;
        let (up, rx) = watch::channel(true);
        let conns = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, addr, upstream, rx, conns.clone()));
        Ok(Self {
            addr,
            up,
            conns,
            task,
        })
    }

    /// Where the host connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and stops listening: the database is unreachable.
    pub fn cut(&self) {
        self.up.send_replace(false);
        for c in lock(&self.conns).drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restore(&self) -> Result<()> {
        self.up.send_replace(true);
        // The accept loop rebinds; wait until a connection goes through.
        for _ in 0..200 {
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the proxy could not listen again on {}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for c in lock(&self.conns).drain(..) {
            c.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut up: watch::Receiver<bool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
) {
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.as_ref() else {
            // Cut: not listening. Wait for the restore, then bind the same port again.
            if up.wait_for(|v| *v).await.is_err() {
                return;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!("chaos proxy: cannot listen again on {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        tokio::select! {
            changed = up.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*up.borrow_and_update() {
                    listener = None;
                }
            }
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                // Checked under the lock `cut` drains with: a connection accepted just as the
                // cut happens is either dropped here or aborted by `cut`.
                let mut c = lock(&conns);
                if *up.borrow() {
                    c.retain(|h| !h.is_finished());
                    c.push(tokio::spawn(forward(client, upstream)).abort_handle());
                }
            }
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
