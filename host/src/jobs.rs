//! The schedule of background work: every `WXPAY_RECONCILE_INTERVAL_SECS` one reconciler pass
//! ([`crate::service::reconcile::run_once`]), and in certificate mode a platform certificate
//! refresh every `WXPAY_CERT_REFRESH_SECS`. What a pass does is the service's business.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::service::AppState;
use crate::service::reconcile::{ReconcileReport, run_once};

/// Spawns the loop; it stops when `shutdown` turns `true`.
pub fn spawn(s: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = s.config.reconcile_interval.max(Duration::from_secs(1));
        let mut last_cert_refresh = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
            match run_once(&s, s.now()).await {
                Ok(r) if r != ReconcileReport::default() => tracing::info!(?r, "reconciler pass"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciler pass failed"),
            }
            if s.wechat.certificate_mode()
                && last_cert_refresh.elapsed() >= s.config.cert_refresh_interval
            {
                last_cert_refresh = Instant::now();
                if let Err(e) = s.wechat.refresh_certificates(true).await {
                    // A 404 here is a configuration error: report it loudly, keep serving.
                    tracing::error!(error = %e, "platform certificate refresh failed");
                }
            }
        }
    })
}
