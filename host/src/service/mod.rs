//! The only code that changes state. Each operation reads the rows it decides on inside its
//! write transaction (locked), asks [`crate::domain`] what to do, writes exactly that and records
//! what actually happened, then commits. Upstream calls happen outside transactions; their
//! verified answers come back in as events.
//!
//! - [`orders`]: create, place the JSAPI order (prepay), close, accept a reviewed payment.
//! - [`payments`]: apply a verified transaction (notification or query); sync one order.
//! - [`refunds`]: request, apply WeChat's refund statuses, resubmit unknown outcomes.
//! - [`reconcile`]: one reconciler pass over what is due.

pub mod orders;
pub mod payments;
pub mod reconcile;
pub mod refunds;
pub mod users;

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::{Decision, InvalidField, Order};
use crate::metrics::Metrics;
use crate::store::{BoxFuture, Cas, NotificationRecord, OwnedNotification, Store, StoreError, Tx};
use crate::wechat::{ClientInitError, UpstreamError, WechatClient};

/// Shared application state: configuration, store, WeChat client, metrics, clock. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// Persistent storage.
    pub store: Store,
    /// The WeChat client.
    pub wechat: WechatClient,
    /// Process metrics.
    pub metrics: Metrics,
    /// The clock every decision uses.
    pub clock: Arc<dyn Clock>,
    /// Seals session keys at rest.
    pub data_key: users::DataKey,
    /// Payments this process has seen committed ([`payments::RecordedPayments`]).
    pub recorded_payments: payments::RecordedPayments,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Storage could not be opened or migrated.
    #[error("WXPAY_DATABASE_URL: {0}")]
    Store(#[from] StoreError),
    /// The WeChat client could not be built.
    #[error(transparent)]
    Client(#[from] ClientInitError),
    /// The platform certificates are unusable for this merchant (e.g. 404 in public-key mode).
    #[error("{0}")]
    Upstream(UpstreamError),
    /// `WXPAY_DATA_KEY` is unusable.
    #[error("WXPAY_DATA_KEY: {0}")]
    DataKey(wxpay_core::Error),
    /// The listening socket is unusable.
    #[error("WXPAY_LISTEN: {0}")]
    Listen(std::io::Error),
}

impl AppState {
    /// [`AppState::with_clock`] on the system clock.
    ///
    /// # Errors
    /// [`InitError`] naming the failing setting.
    pub async fn new(config: Config) -> Result<Self, InitError> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Opens the store (running migrations) and builds the WeChat client. In certificate mode,
    /// downloads the platform certificates once; an unreachable WeChat is only a warning (the
    /// reconciler retries), a configuration mismatch is an error.
    ///
    /// # Errors
    /// [`InitError`] naming the failing setting.
    pub async fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, InitError> {
        let metrics = Metrics::default();
        let data_key = users::DataKey::new(config.data_key.as_ref(), config.root_secret())
            .map_err(InitError::DataKey)?;
        let wechat = WechatClient::new(&config, metrics.clone(), clock.clone())?;
        let store = Store::connect(config.database_url.as_str()).await?;
        if wechat.certificate_mode() {
            match wechat.refresh_certificates(true).await {
                Ok(n) => tracing::info!(certificates = n, "platform certificates loaded"),
                Err(e @ UpstreamError::Config(_)) => return Err(InitError::Upstream(e)),
                Err(e) => tracing::warn!(error = %e, "cannot download platform certificates yet"),
            }
        }
        let recorded_payments = payments::RecordedPayments::new(config.recorded_payments);
        Ok(Self(Arc::new(Inner {
            config,
            store,
            wechat,
            metrics,
            clock,
            data_key,
            recorded_payments,
        })))
    }

    /// Now, by the state's clock (unix seconds).
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// Why a service operation did not happen. Nothing is half-written in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A field breaks WeChat's rules.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The openid has never logged in.
    #[error("no user with this openid has logged in")]
    UnknownUser,
    /// No such order or refund (or not the caller's).
    #[error("not found")]
    NotFound,
    /// The state does not allow it; the message is safe to show.
    #[error("{0}")]
    Conflict(String),
    /// The database failed; retry later.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// WeChat failed or could not be verified; nothing was changed because of it.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Another internal failure (e.g. the OS random generator).
    #[error("internal: {0}")]
    Internal(String),
}

/// A fresh merchant number: `prefix` + 24 hex digits from the OS random generator.
///
/// # Errors
/// [`ServiceError::Internal`] if the OS generator fails (no fallback to a weaker one).
pub fn random_no(prefix: &str) -> Result<String, ServiceError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| ServiceError::Internal(format!("os rng: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(b)))
}

/// What a decided order change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The order changed; `kind` is the recorded event.
    Changed {
        /// The order as written.
        order: Order,
        /// The event kind.
        kind: &'static str,
    },
    /// Nothing to change (e.g. a repeated report); `outcome` says why.
    Kept {
        /// The order as read.
        order: Order,
        /// Why nothing changed.
        outcome: &'static str,
    },
    /// The state does not allow it.
    Refused {
        /// The order as read.
        order: Order,
        /// Why, safe to show.
        reason: String,
    },
    /// Already recorded: this notification id (found in the database), or this payment on this
    /// order (known to this process from an earlier commit, [`payments::RecordedPayments`]).
    /// Nothing was written.
    Duplicate,
    /// No such order.
    Missing,
}

impl Outcome {
    /// A short label for logs and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Changed { kind, .. } => kind,
            Self::Kept { outcome, .. } => outcome,
            Self::Refused { .. } => "refused",
            Self::Duplicate => "duplicate",
            Self::Missing => "unknown_order",
        }
    }
}

/// The one place where an order changes: in one transaction, locks the order, lets `decide`
/// choose on the locked row, records the notification (if any) with what actually happened,
/// writes the decision and its event, and commits. A notification id seen before writes
/// nothing ([`Outcome::Duplicate`]); redeliveries of committed notifications are recognised
/// before the write transaction, so duplicate storms do not queue on the write lock. On
/// SQLite the transaction is a job of the single writer's group commit
/// ([`crate::store::Store::write`]): the outcome comes back only once it is committed.
///
/// On PostgreSQL it is optimistic first ([`change_order_optimistic`]): two round trips, one
/// read and one conditional statement, instead of seven; under contention it falls back to the
/// locked transaction. Either way the decision is applied only to the row it was taken on.
///
/// # Errors
/// Database failure: nothing is committed.
pub(crate) async fn change_order(
    s: &AppState,
    out_trade_no: &str,
    note: Option<&NotificationRecord<'_>>,
    decide: impl Fn(&Order, i64) -> Decision + Send + 'static,
) -> Result<Outcome, StoreError> {
    if s.store.is_postgres()
        && let Some(outcome) = change_order_optimistic(s, out_trade_no, note, &decide).await?
    {
        return Ok(outcome);
    }
    if let Some(n) = note
        && s.store.notification_seen(n.id).await?
    {
        return Ok(Outcome::Duplicate);
    }
    let now = s.now();
    let no = out_trade_no.to_owned();
    let note = note.map(OwnedNotification::from);
    s.store
        .write(
            move |tx: &mut Tx| -> BoxFuture<'_, Result<Outcome, StoreError>> {
                Box::pin(async move { decide_locked(tx, &no, note.as_ref(), decide, now).await })
            },
        )
        .await
}

/// Tries of the optimistic path before the locked transaction.
const OPTIMISTIC_TRIES: usize = 3;

/// PostgreSQL: reads the order (and whether the notification is recorded) in one statement,
/// decides on that row, and writes the decision, the event and the notification in one
/// statement that applies only if the row is still the one read ([`Store::apply_if_unchanged`]).
/// `None` after [`OPTIMISTIC_TRIES`] lost races: the caller takes the locked path.
async fn change_order_optimistic(
    s: &AppState,
    out_trade_no: &str,
    note: Option<&NotificationRecord<'_>>,
    decide: &(impl Fn(&Order, i64) -> Decision + Send),
) -> Result<Option<Outcome>, StoreError> {
    for _ in 0..OPTIMISTIC_TRIES {
        let (order, seen) = s
            .store
            .order_and_seen(out_trade_no, note.map(|n| n.id))
            .await?;
        if seen {
            return Ok(Some(Outcome::Duplicate));
        }
        let Some(order) = order else {
            return Ok(Some(Outcome::Missing));
        };
        let now = s.now();
        let decision = decide(&order, now);
        let label = match &decision {
            Decision::Change { kind, .. } => *kind,
            Decision::Keep { outcome } => outcome,
            Decision::Refuse { .. } => "refused",
        };
        let note = note.map(|n| (n, label));
        let (cas, outcome) = match decision {
            Decision::Change {
                order: next,
                kind,
                detail,
            } => {
                let cas = s
                    .store
                    .apply_if_unchanged(&order, Some((&next, kind, &detail)), note, now)
                    .await?;
                (cas, Outcome::Changed { order: next, kind })
            }
            Decision::Keep { outcome } => (
                s.store.apply_if_unchanged(&order, None, note, now).await?,
                Outcome::Kept { order, outcome },
            ),
            Decision::Refuse { reason } => (
                s.store.apply_if_unchanged(&order, None, note, now).await?,
                Outcome::Refused { order, reason },
            ),
        };
        match cas {
            Cas::Applied => return Ok(Some(outcome)),
            Cas::Duplicate => return Ok(Some(Outcome::Duplicate)),
            Cas::Stale => s.metrics.optimistic_retry(),
        }
    }
    Ok(None)
}

/// [`change_order`]'s transaction body.
async fn decide_locked(
    tx: &mut Tx,
    out_trade_no: &str,
    note: Option<&OwnedNotification>,
    decide: impl FnOnce(&Order, i64) -> Decision,
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(order) = tx.order_for_update(out_trade_no).await? else {
        return Ok(Outcome::Missing);
    };
    let decision = decide(&order, now);
    let label = match &decision {
        Decision::Change { kind, .. } => *kind,
        Decision::Keep { outcome } => outcome,
        Decision::Refuse { .. } => "refused",
    };
    if let Some(n) = note
        && !tx.record_notification(&n.record(), label, now).await?
    {
        return Ok(Outcome::Duplicate);
    }
    Ok(match decision {
        Decision::Change {
            order: next,
            kind,
            detail,
        } => {
            tx.write_order(&next).await?;
            tx.event(
                out_trade_no,
                kind,
                Some(order.state.as_str()),
                Some(next.state.as_str()),
                &detail,
                now,
            )
            .await?;
            Outcome::Changed { order: next, kind }
        }
        Decision::Keep { outcome } => Outcome::Kept { order, outcome },
        Decision::Refuse { reason } => Outcome::Refused { order, reason },
    })
}
