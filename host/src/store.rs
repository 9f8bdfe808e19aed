//! Persistent state on SQLite (default, WAL) or PostgreSQL behind one [`Store`].
//!
//! Every SQL statement is written once in the common dialect (`$n` placeholders work on both).
//! State changes run in one transaction whose first statement is a write: a conditional `UPDATE
//! … WHERE state = $from` (or an `INSERT … ON CONFLICT DO NOTHING` on the notification id),
//! so concurrent or duplicated notifications, also from several replicas sharing one
//! PostgreSQL, make exactly one transition. On SQLite write transactions are `BEGIN IMMEDIATE`,
//! so they queue on the database lock instead of failing on a read-to-write upgrade.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::config::Secret;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (connection, constraint, I/O…).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Running the embedded migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    /// A row holds a value this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The operation conflicts with the current state (message is safe to show).
    #[error("{0}")]
    Conflict(String),
    /// No such row.
    #[error("not found")]
    NotFound,
}

/// Result alias of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Life-cycle state of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    /// Created, awaiting payment.
    Created,
    /// Paid (a verified notification or an order query said `SUCCESS`).
    Paid,
    /// Closed unpaid (expired or closed by the merchant).
    Closed,
    /// A refund is being processed.
    Refunding,
    /// Fully refunded.
    Refunded,
    /// An authentic payment did not match the order (amount, payer…): needs a human.
    Review,
}

impl OrderState {
    /// All states, for metrics.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Paid,
        Self::Closed,
        Self::Refunding,
        Self::Refunded,
        Self::Review,
    ];

    /// The stored and serialized name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Paid => "PAID",
            Self::Closed => "CLOSED",
            Self::Refunding => "REFUNDING",
            Self::Refunded => "REFUNDED",
            Self::Review => "REVIEW",
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("order state {s:?}")))
    }
}

/// An order row.
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    /// Merchant order number (primary key).
    pub out_trade_no: String,
    /// Payer's openid.
    pub openid: String,
    /// Amount in fen.
    pub amount: i64,
    /// Goods description.
    pub description: String,
    /// Merchant data returned in the notification.
    pub attach: Option<String>,
    /// Current state.
    pub state: OrderState,
    /// Prepay id of the JSAPI order, once ordered.
    #[serde(skip)]
    pub prepay_id: Option<String>,
    /// When the prepay id stops being usable (unix seconds).
    #[serde(skip)]
    pub prepay_expires_at: Option<i64>,
    /// WeChat transaction id, once paid.
    pub transaction_id: Option<String>,
    /// Amount refunded so far, in fen.
    pub refunded: i64,
    /// Why the order is under review.
    pub review_reason: Option<String>,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Payment deadline (unix seconds).
    pub expire_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
}

/// One entry of an order's history.
#[derive(Clone, Debug, Serialize)]
pub struct OrderEvent {
    /// When (unix seconds).
    pub at: i64,
    /// What happened, e.g. `created`, `notify_paid`, `reconciled_paid`.
    pub kind: String,
    /// State before, for transitions.
    pub from_state: Option<String>,
    /// State after, for transitions.
    pub to_state: Option<String>,
    /// Free text.
    pub detail: String,
}

/// A refund row.
#[derive(Clone, Debug, Serialize)]
pub struct Refund {
    /// Merchant refund number (primary key).
    pub out_refund_no: String,
    /// The refunded order.
    pub out_trade_no: String,
    /// Amount in fen.
    pub amount: i64,
    /// Reason shown to the payer.
    pub reason: Option<String>,
    /// `PROCESSING`, `SUCCESS`, `CLOSED`, `ABNORMAL` or `FAILED`.
    pub state: String,
    /// WeChat refund id.
    pub refund_id: Option<String>,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
}

/// A new order.
#[derive(Clone, Debug)]
pub struct NewOrder {
    /// Merchant order number.
    pub out_trade_no: String,
    /// Payer's openid.
    pub openid: String,
    /// Amount in fen (> 0).
    pub amount: i64,
    /// Goods description.
    pub description: String,
    /// Merchant data.
    pub attach: Option<String>,
    /// Payment deadline (unix seconds).
    pub expire_at: i64,
}

/// A logged-in user as returned by `jscode2session`.
#[derive(Clone, Debug)]
pub struct User {
    /// openid for this mini-program.
    pub openid: String,
    /// unionid, when the app is bound to an open platform account.
    pub unionid: Option<String>,
    /// The session key (secret; never returned or logged).
    pub session_key: Secret,
}

/// A state change to make together with something else, or on its own.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Required current state.
    pub from: OrderState,
    /// New state.
    pub to: OrderState,
    /// Event kind for the history.
    pub kind: &'static str,
    /// Event detail for the history.
    pub detail: String,
    /// Transaction id to record (kept if `None`).
    pub transaction_id: Option<String>,
    /// Review reason to record (only with `to == Review`).
    pub review_reason: Option<String>,
}

/// A verified notification to record.
#[derive(Clone, Debug)]
pub struct NotificationRecord {
    /// WeChat's notification id.
    pub id: String,
    /// `pay` or `refund`.
    pub kind: &'static str,
    /// WeChat's event type.
    pub event_type: String,
    /// The order it concerns.
    pub out_trade_no: String,
}

/// What recording a notification did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// First delivery, and the state changed.
    Transitioned,
    /// First delivery, but the order was no longer in the required state.
    NoChange,
    /// This notification id was already recorded.
    Duplicate,
}

impl Applied {
    /// Metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transitioned => "applied",
            Self::NoChange => "no_change",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A refund result to apply (from a refund notification, a refund answer or a query).
#[derive(Clone, Debug)]
pub struct RefundUpdate {
    /// Merchant refund number.
    pub out_refund_no: String,
    /// WeChat refund id.
    pub refund_id: Option<String>,
    /// Final WeChat status: `SUCCESS`, `CLOSED` or `ABNORMAL`; anything else is ignored.
    pub status: String,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store: a connection pool to SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction `$tx` on either backend and commits it.
macro_rules! in_tx {
    ($self:expr, $tx:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Decodes an [`Order`] from a row of either backend.
macro_rules! order_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = &$row;
        Order {
            out_trade_no: r.try_get("out_trade_no")?,
            openid: r.try_get("openid")?,
            amount: r.try_get("amount")?,
            description: r.try_get("description")?,
            attach: r.try_get("attach")?,
            state: r.try_get::<String, _>("state")?.parse()?,
            prepay_id: r.try_get("prepay_id")?,
            prepay_expires_at: r.try_get("prepay_expires_at")?,
            transaction_id: r.try_get("transaction_id")?,
            refunded: r.try_get("refunded")?,
            review_reason: r.try_get("review_reason")?,
            created_at: r.try_get("created_at")?,
            expire_at: r.try_get("expire_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! refund_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = &$row;
        Refund {
            out_refund_no: r.try_get("out_refund_no")?,
            out_trade_no: r.try_get("out_trade_no")?,
            amount: r.try_get("amount")?,
            reason: r.try_get("reason")?,
            state: r.try_get("state")?,
            refund_id: r.try_get("refund_id")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

/// Applies a [`Transition`] on `$conn` (inside a transaction); evaluates to `bool` (changed).
macro_rules! transition_on {
    ($conn:expr, $no:expr, $t:expr, $now:expr) => {{
        let t: &Transition = $t;
        let res = sqlx::query(
            "UPDATE orders SET state = $1, transaction_id = COALESCE($2, transaction_id), \
             review_reason = COALESCE($3, review_reason), updated_at = $4 \
             WHERE out_trade_no = $5 AND state = $6",
        )
        .bind(t.to.as_str())
        .bind(t.transaction_id.as_deref())
        .bind(t.review_reason.as_deref())
        .bind($now)
        .bind($no)
        .bind(t.from.as_str())
        .execute(&mut *$conn)
        .await?;
        let changed = res.rows_affected() == 1;
        if changed {
            event_on!(
                $conn,
                $no,
                t.kind,
                Some(t.from.as_str()),
                Some(t.to.as_str()),
                &t.detail,
                $now
            );
        }
        changed
    }};
}

macro_rules! event_on {
    ($conn:expr, $no:expr, $kind:expr, $from:expr, $to:expr, $detail:expr, $now:expr) => {{
        sqlx::query(
            "INSERT INTO order_events (out_trade_no, at, kind, from_state, to_state, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($no)
        .bind($now)
        .bind($kind)
        .bind($from)
        .bind($to)
        .bind($detail)
        .execute(&mut *$conn)
        .await?;
    }};
}

const ORDER_COLUMNS: &str = "out_trade_no, openid, amount, description, attach, state, prepay_id, \
    prepay_expires_at, transaction_id, refunded, review_reason, created_at, expire_at, updated_at";

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and runs the embedded migrations.
    /// SQLite files are created if missing and opened in WAL mode.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`], connection or migration failures.
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(opts)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Self { backend })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }

    /// `SELECT 1`, for health checks.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    /// Inserts or updates a user after login.
    ///
    /// # Errors
    /// Database failure.
    pub async fn upsert_user(&self, user: &User, now: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO users (openid, unionid, session_key, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (openid) DO UPDATE SET \
                 unionid = COALESCE(excluded.unionid, users.unionid), \
                 session_key = excluded.session_key, updated_at = excluded.updated_at",
            )
            .bind(&user.openid)
            .bind(user.unionid.as_deref())
            .bind(user.session_key.expose())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Whether a user with this openid has logged in.
    ///
    /// # Errors
    /// Database failure.
    pub async fn user_exists(&self, openid: &str) -> Result<bool> {
        let n: i64 = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE openid = $1")
                .bind(openid)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }

    /// Stores a session (by the SHA-256 hex of its token).
    ///
    /// # Errors
    /// Database failure.
    pub async fn create_session(
        &self,
        token_hash: &str,
        openid: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, openid, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(openid)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The openid of a live session.
    ///
    /// # Errors
    /// Database failure.
    pub async fn session_openid(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT openid FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Deletes expired sessions; returns how many.
    ///
    /// # Errors
    /// Database failure.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64> {
        Ok(with_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Creates an order in state `CREATED` with a `created` event.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `out_trade_no` exists; database failure.
    pub async fn insert_order(&self, o: &NewOrder, now: i64) -> Result<Order> {
        let inserted = in_tx!(self, tx => {
            let res = sqlx::query(
                "INSERT INTO orders (out_trade_no, openid, amount, description, attach, state, \
                 created_at, expire_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) \
                 ON CONFLICT (out_trade_no) DO NOTHING",
            )
            .bind(&o.out_trade_no)
            .bind(&o.openid)
            .bind(o.amount)
            .bind(&o.description)
            .bind(o.attach.as_deref())
            .bind(OrderState::Created.as_str())
            .bind(now)
            .bind(o.expire_at)
            .execute(&mut *tx)
            .await?;
            let inserted = res.rows_affected() == 1;
            if inserted {
                let detail = format!("amount={} openid={}", o.amount, o.openid);
                event_on!(tx, &o.out_trade_no, "created", None::<&str>,
                          Some(OrderState::Created.as_str()), &detail, now);
            }
            inserted
        });
        if !inserted {
            return Err(StoreError::Conflict(format!(
                "order {} already exists",
                o.out_trade_no
            )));
        }
        self.order(&o.out_trade_no)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// An order by number.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn order(&self, out_trade_no: &str) -> Result<Option<Order>> {
        with_pool!(self, pool => {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"
            ));
            let row = sqlx::query(sql).bind(out_trade_no).fetch_optional(pool).await?;
            match row {
                Some(r) => Ok(Some(order_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The history of an order, oldest first.
    ///
    /// # Errors
    /// Database failure.
    pub async fn order_events(&self, out_trade_no: &str) -> Result<Vec<OrderEvent>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT at, kind, from_state, to_state, detail FROM order_events \
                 WHERE out_trade_no = $1 ORDER BY id",
            )
            .bind(out_trade_no)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                use sqlx::Row as _;
                out.push(OrderEvent {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    from_state: r.try_get("from_state")?,
                    to_state: r.try_get("to_state")?,
                    detail: r.try_get("detail")?,
                });
            }
            Ok(out)
        })
    }

    /// The refunds of an order.
    ///
    /// # Errors
    /// Database failure.
    pub async fn refunds(&self, out_trade_no: &str) -> Result<Vec<Refund>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT out_refund_no, out_trade_no, amount, reason, state, refund_id, created_at, \
                 updated_at FROM refunds WHERE out_trade_no = $1 ORDER BY created_at, out_refund_no",
            )
            .bind(out_trade_no)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(refund_row!(r));
            }
            Ok(out)
        })
    }

    /// A refund by number.
    ///
    /// # Errors
    /// Database failure.
    pub async fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT out_refund_no, out_trade_no, amount, reason, state, refund_id, created_at, \
                 updated_at FROM refunds WHERE out_refund_no = $1",
            )
            .bind(out_refund_no)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(refund_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Records the prepay id of a still-unpaid order.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the order is no longer `CREATED`; database failure.
    pub async fn set_prepay(
        &self,
        out_trade_no: &str,
        prepay_id: &str,
        prepay_expires_at: i64,
        now: i64,
    ) -> Result<()> {
        let changed = in_tx!(self, tx => {
            let res = sqlx::query(
                "UPDATE orders SET prepay_id = $1, prepay_expires_at = $2, updated_at = $3 \
                 WHERE out_trade_no = $4 AND state = $5",
            )
            .bind(prepay_id)
            .bind(prepay_expires_at)
            .bind(now)
            .bind(out_trade_no)
            .bind(OrderState::Created.as_str())
            .execute(&mut *tx)
            .await?;
            let changed = res.rows_affected() == 1;
            if changed {
                event_on!(tx, out_trade_no, "prepay", None::<&str>, None::<&str>,
                          "JSAPI order placed", now);
            }
            changed
        });
        if changed {
            Ok(())
        } else {
            Err(StoreError::Conflict("order is not awaiting payment".into()))
        }
    }

    /// Makes a state change if the order is in `t.from`; returns whether it changed.
    ///
    /// # Errors
    /// Database failure.
    pub async fn transition(&self, out_trade_no: &str, t: &Transition, now: i64) -> Result<bool> {
        Ok(in_tx!(self, tx => transition_on!(tx, out_trade_no, t, now)))
    }

    /// Records a verified notification and applies `change` in the same transaction, once per
    /// notification id. A duplicate id changes nothing.
    ///
    /// # Errors
    /// Database failure: nothing is committed and the caller must answer 5xx.
    pub async fn apply_notification(
        &self,
        n: &NotificationRecord,
        change: Option<&Transition>,
        now: i64,
    ) -> Result<Applied> {
        Ok(in_tx!(self, tx => {
            let outcome = change.map_or("recorded", |c| c.kind);
            let res = sqlx::query(
                "INSERT INTO notifications (id, kind, event_type, out_trade_no, outcome, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&n.id)
            .bind(n.kind)
            .bind(&n.event_type)
            .bind(&n.out_trade_no)
            .bind(outcome)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 0 {
                Applied::Duplicate
            } else if let Some(t) = change {
                if transition_on!(tx, &n.out_trade_no, t, now) {
                    Applied::Transitioned
                } else {
                    Applied::NoChange
                }
            } else {
                Applied::NoChange
            }
        }))
    }

    /// Starts a refund: checks the refundable balance, inserts the refund as `PROCESSING` and
    /// moves the order to `REFUNDING`, in one transaction. An existing `out_refund_no` of the
    /// same order is returned unchanged (idempotent retry).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the order is not paid or the amount exceeds the refundable
    /// balance; [`StoreError::NotFound`]; database failure.
    pub async fn begin_refund(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
        amount: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Refund> {
        if let Some(existing) = self.refund(out_refund_no).await? {
            if existing.out_trade_no != out_trade_no || existing.amount != amount {
                return Err(StoreError::Conflict("out_refund_no already used".into()));
            }
            return Ok(existing);
        }
        let ok = in_tx!(self, tx => {
            // Write first (see module docs): the guard is part of the UPDATE.
            let res = sqlx::query(
                "UPDATE orders SET state = $1, updated_at = $2, refund_pending = refund_pending + $5 \
                 WHERE out_trade_no = $3 AND state IN ($4, $1) \
                 AND amount - refunded - refund_pending >= $5",
            )
            .bind(OrderState::Refunding.as_str())
            .bind(now)
            .bind(out_trade_no)
            .bind(OrderState::Paid.as_str())
            .bind(amount)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 1 {
                sqlx::query(
                    "INSERT INTO refunds (out_refund_no, out_trade_no, amount, reason, state, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, 'PROCESSING', $5, $5)",
                )
                .bind(out_refund_no)
                .bind(out_trade_no)
                .bind(amount)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let detail = format!("out_refund_no={out_refund_no} amount={amount}");
                event_on!(tx, out_trade_no, "refund_requested", None::<&str>,
                          Some(OrderState::Refunding.as_str()), &detail, now);
                true
            } else {
                false
            }
        });
        if !ok {
            return match self.order(out_trade_no).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::Conflict(
                    "order is not paid or the amount exceeds the refundable balance".into(),
                )),
            };
        }
        self.refund(out_refund_no)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Applies a final refund status once (optionally recording notification `n` in the same
    /// transaction). `SUCCESS` adds to the order's refunded amount; the order returns to `PAID`
    /// or becomes `REFUNDED` when nothing is left to refund and no refund is pending.
    ///
    /// # Errors
    /// Database failure.
    pub async fn apply_refund(
        &self,
        n: Option<&NotificationRecord>,
        u: &RefundUpdate,
        now: i64,
    ) -> Result<Applied> {
        let to = match u.status.as_str() {
            "SUCCESS" => "SUCCESS",
            "CLOSED" => "CLOSED",
            "ABNORMAL" => "ABNORMAL",
            "FAILED" => "FAILED",
            _ => "PROCESSING",
        };
        Ok(in_tx!(self, tx => {
            let mut duplicate = false;
            if let Some(n) = n {
                let res = sqlx::query(
                    "INSERT INTO notifications (id, kind, event_type, out_trade_no, outcome, \
                     received_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&n.id)
                .bind(n.kind)
                .bind(&n.event_type)
                .bind(&n.out_trade_no)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                duplicate = res.rows_affected() == 0;
            }
            if duplicate {
                Applied::Duplicate
            } else if to == "PROCESSING" {
                Applied::NoChange
            } else {
                let row: Option<(String, i64)> = sqlx::query_as(
                    "UPDATE refunds SET state = $1, refund_id = COALESCE($2, refund_id), \
                     updated_at = $3 WHERE out_refund_no = $4 AND state = 'PROCESSING' \
                     RETURNING out_trade_no, amount",
                )
                .bind(to)
                .bind(u.refund_id.as_deref())
                .bind(now)
                .bind(&u.out_refund_no)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    None => Applied::NoChange,
                    Some((no, amount)) => {
                        let add = if to == "SUCCESS" { amount } else { 0 };
                        sqlx::query(
                            "UPDATE orders SET refunded = refunded + $1, updated_at = $2, \
                             refund_pending = refund_pending - $4, \
                             state = CASE WHEN refund_pending - $4 > 0 THEN 'REFUNDING' \
                             WHEN refunded + $1 >= amount THEN 'REFUNDED' ELSE 'PAID' END \
                             WHERE out_trade_no = $3 AND state = 'REFUNDING'",
                        )
                        .bind(add)
                        .bind(now)
                        .bind(&no)
                        .bind(amount)
                        .execute(&mut *tx)
                        .await?;
                        let detail = format!("out_refund_no={} status={to}", u.out_refund_no);
                        event_on!(tx, &no, "refund_result", Some(OrderState::Refunding.as_str()),
                                  None::<&str>, &detail, now);
                        Applied::Transitioned
                    }
                }
            }
        }))
    }

    /// Unpaid orders (with a prepay id) created at or before `created_before`, oldest first.
    ///
    /// # Errors
    /// Database failure.
    pub async fn stale_orders(&self, created_before: i64, limit: i64) -> Result<Vec<Order>> {
        self.orders_where(
            "state = 'CREATED' AND prepay_id IS NOT NULL AND created_at <= $1 \
             ORDER BY created_at LIMIT $2",
            created_before,
            limit,
        )
        .await
    }

    /// Unpaid orders whose deadline is at or before `now`.
    ///
    /// # Errors
    /// Database failure.
    pub async fn expired_orders(&self, now: i64, limit: i64) -> Result<Vec<Order>> {
        self.orders_where(
            "state = 'CREATED' AND expire_at <= $1 ORDER BY expire_at LIMIT $2",
            now,
            limit,
        )
        .await
    }

    /// Refunds still `PROCESSING` created at or before `created_before`.
    ///
    /// # Errors
    /// Database failure.
    pub async fn pending_refunds(&self, created_before: i64, limit: i64) -> Result<Vec<Refund>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT out_refund_no, out_trade_no, amount, reason, state, refund_id, created_at, \
                 updated_at FROM refunds WHERE state = 'PROCESSING' AND created_at <= $1 \
                 ORDER BY created_at LIMIT $2",
            )
            .bind(created_before)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(refund_row!(r));
            }
            Ok(out)
        })
    }

    async fn orders_where(&self, clause: &'static str, a: i64, limit: i64) -> Result<Vec<Order>> {
        with_pool!(self, pool => {
            let sql = sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {clause}"));
            let rows = sqlx::query(sql).bind(a).bind(limit).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(order_row!(r));
            }
            Ok(out)
        })
    }

    /// Number of orders per state (all states, zeros included).
    ///
    /// # Errors
    /// Database failure.
    pub async fn order_counts(&self) -> Result<Vec<(OrderState, i64)>> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT state, COUNT(*) FROM orders GROUP BY state")
                .fetch_all(pool)
                .await?
        });
        Ok(OrderState::ALL
            .into_iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s, n)
            })
            .collect())
    }
}
