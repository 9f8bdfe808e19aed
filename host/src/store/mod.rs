//! Persistent state on SQLite (default, WAL) or PostgreSQL behind one [`Store`].
//!
//! Every SQL statement is written once in the common dialect (`$n` placeholders work on both);
//! the few differences (row locks, `SKIP LOCKED`) are chosen per backend. State changes happen
//! only inside a [`Tx`]: the service layer locks the rows it decides on
//! ([`Tx::order_for_update`], PostgreSQL `SELECT … FOR UPDATE`; SQLite write transactions are
//! `BEGIN IMMEDIATE`, which already holds the database's write lock), asks the domain what to
//! do, and writes exactly that before committing. Nothing here decides a state change.

mod tx;
mod writer;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use tx::{NotificationRecord, OwnedNotification, Tx};
pub use writer::{MAX_BATCH, WriterStats};

/// A boxed future borrowing for `'a` (the shape of a write job).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

use crate::config::Secret;
use crate::domain::order::UnknownValue;
use crate::domain::{Order, OrderState, Refund};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The SQLite write batch this write belonged to was not committed (nothing of it was
    /// applied), or the writer has stopped.
    #[error("write not committed: {0}")]
    Batch(String),
}

impl From<UnknownValue> for StoreError {
    fn from(e: UnknownValue) -> Self {
        Self::Corrupt(e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One entry of an order's history.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrderEventRow {
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

#[derive(Clone)]
enum Backend {
    /// Reads (and the writes not yet routed through the writer) on `pool`; [`Store::write`]
    /// jobs on the single writer's own connection.
    Sqlite {
        pool: SqlitePool,
        writer: writer::Writer,
    },
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
            Backend::Sqlite { .. } => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite { pool: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Decodes an [`Order`] from a row of either backend.
macro_rules! order_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = &$row;
        crate::domain::Order {
            out_trade_no: r.try_get("out_trade_no")?,
            openid: r.try_get("openid")?,
            amount: r.try_get("amount")?,
            description: r.try_get("description")?,
            attach: r.try_get("attach")?,
            state: r.try_get::<String, _>("state")?.parse()?,
            prepay_id: r.try_get("prepay_id")?,
            prepay_expires_at: r.try_get("prepay_expires_at")?,
            transaction_id: r.try_get("transaction_id")?,
            paid_amount: r.try_get("paid_amount")?,
            refunded: r.try_get("refunded")?,
            refund_pending: r.try_get("refund_pending")?,
            review_reason: r.try_get("review_reason")?,
            double_payment: r.try_get("double_payment")?,
            created_at: r.try_get("created_at")?,
            expire_at: r.try_get("expire_at")?,
            updated_at: r.try_get("updated_at")?,
            next_check_at: r.try_get("next_check_at")?,
            checks: r.try_get("checks")?,
        }
    }};
}
pub(crate) use order_row;

/// Decodes a [`Refund`] from a row of either backend.
macro_rules! refund_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = &$row;
        crate::domain::Refund {
            out_refund_no: r.try_get("out_refund_no")?,
            out_trade_no: r.try_get("out_trade_no")?,
            amount: r.try_get("amount")?,
            reason: r.try_get("reason")?,
            state: r.try_get::<String, _>("state")?.parse()?,
            refund_id: r.try_get("refund_id")?,
            source: r.try_get("source")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            next_check_at: r.try_get("next_check_at")?,
            attempts: r.try_get("attempts")?,
        }
    }};
}
pub(crate) use refund_row;

/// The columns [`order_row!`] reads.
pub(crate) const ORDER_COLUMNS: &str = "out_trade_no, openid, amount, description, attach, state, \
    prepay_id, prepay_expires_at, transaction_id, paid_amount, refunded, refund_pending, \
    review_reason, double_payment, created_at, expire_at, updated_at, next_check_at, checks";

/// The columns [`refund_row!`] reads.
pub(crate) const REFUND_COLUMNS: &str = "out_refund_no, out_trade_no, amount, reason, state, \
    refund_id, source, created_at, updated_at, next_check_at, attempts";

/// What [`Store::apply_if_unchanged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    /// Written, in one statement.
    Applied,
    /// The order changed since it was read: nothing written; read and decide again.
    Stale,
    /// The notification was recorded meanwhile: nothing written.
    Duplicate,
}

/// The mutable columns of an order, in the order `bind_mutable!` binds them.
const MUTABLE: [&str; 12] = [
    "state",
    "prepay_id",
    "prepay_expires_at",
    "transaction_id",
    "paid_amount",
    "refunded",
    "refund_pending",
    "review_reason",
    "double_payment",
    "updated_at",
    "next_check_at",
    "checks",
];

/// `col IS NOT DISTINCT FROM $k AND …` over [`MUTABLE`], from placeholder `$first`.
fn unchanged(first: usize) -> String {
    MUTABLE
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} IS NOT DISTINCT FROM ${}", first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The order and whether a notification is recorded.
static READ_WITH_SEEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {ORDER_COLUMNS}, EXISTS (SELECT 1 FROM notifications WHERE id = $2) AS seen \
         FROM orders WHERE out_trade_no = $1"
    )
});

/// New row ($1–$12), order ($13), seen row ($14–$25), notification id, kind, event type,
/// outcome ($26–$29), now ($30), event kind and detail ($31, $32).
static CAS_CHANGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let set = MUTABLE
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH u AS (UPDATE orders SET {set} WHERE out_trade_no = $13 AND {} \
         RETURNING out_trade_no), \
         n AS (INSERT INTO notifications (id, kind, event_type, out_trade_no, outcome, \
         received_at) SELECT $26, $27, $28, out_trade_no, $29, $30 FROM u \
         WHERE $26::text IS NOT NULL), \
         e AS (INSERT INTO order_events (out_trade_no, at, kind, from_state, to_state, detail) \
         SELECT out_trade_no, $30, $31, $14, $1, $32 FROM u) \
         SELECT COUNT(*) FROM u",
        unchanged(14)
    )
});

/// Notification id, kind, event type, outcome ($1–$4), now ($5), order ($6), seen row
/// ($7–$18).
static CAS_NOTE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO notifications (id, kind, event_type, out_trade_no, outcome, received_at) \
         SELECT $1, $2, $3, out_trade_no, $4, $5 FROM orders WHERE out_trade_no = $6 AND {}",
        unchanged(7)
    )
});

/// Binds the [`MUTABLE`] columns of `$o` to the query `$q` (any query type).
macro_rules! bind_mutable {
    ($q:expr, $o:expr) => {{
        let o: &Order = $o;
        $q.bind(o.state.as_str())
            .bind(o.prepay_id.as_deref())
            .bind(o.prepay_expires_at)
            .bind(o.transaction_id.as_deref())
            .bind(o.paid_amount)
            .bind(o.refunded)
            .bind(o.refund_pending)
            .bind(o.review_reason.as_deref())
            .bind(o.double_payment.as_deref())
            .bind(o.updated_at)
            .bind(o.next_check_at)
            .bind(o.checks)
    }};
}
pub(crate) use bind_mutable;

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
                .connect_with(opts.clone())
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            // The writer's own connection, kept open for the life of the store.
            let writer_pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await?;
            Backend::Sqlite {
                pool,
                writer: writer::Writer::spawn(writer_pool),
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Self { backend })
    }

    /// What SQLite's single writer has done (batches, jobs); `None` on PostgreSQL.
    #[must_use]
    pub fn writer_stats(&self) -> Option<WriterStats> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Some(writer.stats()),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether this is the PostgreSQL backend.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        if let Backend::Sqlite { writer, .. } = &self.backend {
            writer.close().await;
        }
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

    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE` on the single writer's connection,
    /// so it holds the write lock from its first statement, never fails on a read-to-write
    /// upgrade, and waits for its turn in a queue rather than in SQLite's busy handler).
    ///
    /// # Errors
    /// The database is unreachable or busy past its timeout.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match &self.backend {
            // The writer's one connection: transactions queue for it (fairly, without the
            // busy handler's sleeps) between the writer's batches.
            Backend::Sqlite { writer, .. } => {
                Tx::sqlite(writer.pool().begin_with("BEGIN IMMEDIATE").await?)
            }
            Backend::Postgres(pool) => Tx::postgres(pool.begin().await?),
        })
    }

    /// Runs `job` in one write transaction and returns its value once committed. On SQLite the
    /// job goes to the single writer, which commits it together with the jobs that arrived
    /// meanwhile (group commit, see `store/writer.rs`); on PostgreSQL it is its own
    /// transaction. A job that returns an error is rolled back (its savepoint, on SQLite).
    ///
    /// # Errors
    /// The job's error, or [`StoreError::Batch`] / database errors when the commit failed:
    /// then nothing of the job was applied.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T>> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.write(job).await,
            Backend::Postgres(pool) => {
                let mut tx = Tx::postgres(pool.begin().await?);
                let value = job(&mut tx).await?;
                tx.commit().await?;
                Ok(value)
            }
        }
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

    /// The stored (sealed) session key of a user.
    ///
    /// # Errors
    /// Database failure.
    pub async fn session_key(&self, openid: &str) -> Result<Option<String>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT session_key FROM users WHERE openid = $1")
                .bind(openid)
                .fetch_optional(pool)
                .await?
        }))
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

    /// An order by number (no lock: for reading and rendering only).
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

    /// An order with its history and refunds, read in one snapshot (one read transaction,
    /// `REPEATABLE READ` on PostgreSQL), so that the amounts, the events and the refunds shown
    /// together agree with each other even while the order is being written.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn order_snapshot(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<(Order, Vec<OrderEventRow>, Vec<Refund>)>> {
        macro_rules! reads {
            ($tx:expr) => {{
                use sqlx::Row as _;
                let order_sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"
                ));
                let Some(r) = sqlx::query(order_sql)
                    .bind(out_trade_no)
                    .fetch_optional(&mut *$tx)
                    .await?
                else {
                    return Ok(None);
                };
                let order = order_row!(r);
                let rows = sqlx::query(
                    "SELECT at, kind, from_state, to_state, detail FROM order_events \
                     WHERE out_trade_no = $1 ORDER BY id",
                )
                .bind(out_trade_no)
                .fetch_all(&mut *$tx)
                .await?;
                let mut events = Vec::with_capacity(rows.len());
                for r in rows {
                    events.push(OrderEventRow {
                        at: r.try_get("at")?,
                        kind: r.try_get("kind")?,
                        from_state: r.try_get("from_state")?,
                        to_state: r.try_get("to_state")?,
                        detail: r.try_get("detail")?,
                    });
                }
                let refund_sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_trade_no = $1 \
                     ORDER BY created_at, out_refund_no"
                ));
                let rows = sqlx::query(refund_sql)
                    .bind(out_trade_no)
                    .fetch_all(&mut *$tx)
                    .await?;
                let mut refunds = Vec::with_capacity(rows.len());
                for r in rows {
                    refunds.push(refund_row!(r));
                }
                Ok(Some((order, events, refunds)))
            }};
        }
        match &self.backend {
            // A deferred transaction in WAL mode reads one snapshot from its first read.
            Backend::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await?;
                let out: Result<_> = reads!(tx);
                tx.rollback().await?;
                out
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let out: Result<_> = reads!(tx);
                tx.rollback().await?;
                out
            }
        }
    }

    /// The history of an order, oldest first.
    ///
    /// # Errors
    /// Database failure.
    pub async fn order_events(&self, out_trade_no: &str) -> Result<Vec<OrderEventRow>> {
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
                out.push(OrderEventRow {
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

    /// The refunds of an order, oldest first.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn refunds(&self, out_trade_no: &str) -> Result<Vec<Refund>> {
        with_pool!(self, pool => {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_trade_no = $1 \
                 ORDER BY created_at, out_refund_no"
            ));
            let rows = sqlx::query(sql).bind(out_trade_no).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(refund_row!(r));
            }
            Ok(out)
        })
    }

    /// A refund by number (no lock).
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>> {
        with_pool!(self, pool => {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_refund_no = $1"
            ));
            let row = sqlx::query(sql).bind(out_refund_no).fetch_optional(pool).await?;
            match row {
                Some(r) => Ok(Some(refund_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Takes up to `limit` orders whose `next_check_at` is due at `now`, oldest-due first, and
    /// leases them until `lease_until` (their `next_check_at` moves there), in one transaction.
    /// On PostgreSQL rows another instance is claiming are skipped (`FOR UPDATE SKIP LOCKED`),
    /// so replicas share the work instead of repeating it; a crashed instance's lease simply
    /// runs out.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn claim_due_orders(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Order>> {
        let lock = if self.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE orders SET next_check_at = $2 WHERE out_trade_no IN (SELECT out_trade_no \
             FROM orders WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $3{lock}) \
             RETURNING {ORDER_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let out = tx.claim_orders(&sql, now, lease_until, limit).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Like [`Store::claim_due_orders`], for refunds to resubmit or query.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn claim_due_refunds(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Refund>> {
        let lock = if self.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE refunds SET next_check_at = $2 WHERE out_refund_no IN (SELECT out_refund_no \
             FROM refunds WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $3{lock}) \
             RETURNING {REFUND_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let out = tx.claim_refunds(&sql, now, lease_until, limit).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Whether a notification id is already recorded (read on the pool, no lock: a recorded
    /// notification was committed, so a redelivery can be acknowledged without the write lock).
    ///
    /// # Errors
    /// Database failure.
    pub async fn notification_seen(&self, id: &str) -> Result<bool> {
        let n: Option<i32> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT 1 FROM notifications WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(n.is_some())
    }

    /// PostgreSQL's optimistic path, read half: the order and whether notification `note_id`
    /// is already recorded, in one statement (one round trip).
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn order_and_seen(
        &self,
        out_trade_no: &str,
        note_id: Option<&str>,
    ) -> Result<(Option<Order>, bool)> {
        let Backend::Postgres(pool) = &self.backend else {
            return Err(StoreError::Batch("order_and_seen is PostgreSQL's".into()));
        };
        use sqlx::Row as _;
        let row = sqlx::query(sqlx::AssertSqlSafe(&**READ_WITH_SEEN))
            .bind(out_trade_no)
            .bind(note_id)
            .fetch_optional(pool)
            .await?;
        match row {
            Some(r) => {
                let seen: bool = r.try_get("seen")?;
                Ok((Some(order_row!(r)), seen))
            }
            None => Ok((
                None,
                match note_id {
                    Some(id) => self.notification_seen(id).await?,
                    None => false,
                },
            )),
        }
    }

    /// PostgreSQL's optimistic path, write half: applies what was decided on `seen` — the new
    /// row and its event (`change`), the notification with its outcome (`note`) — in **one**
    /// statement, only if the order is still exactly `seen` (every mutable column compared, so
    /// the decision stands as if it had been taken on the locked row). The statement is atomic:
    /// a notification recorded meanwhile (unique violation) undoes the update too.
    ///
    /// # Errors
    /// Database failure.
    pub async fn apply_if_unchanged(
        &self,
        seen: &Order,
        change: Option<(&Order, &str, &str)>,
        note: Option<(&NotificationRecord<'_>, &str)>,
        now: i64,
    ) -> Result<Cas> {
        let Backend::Postgres(pool) = &self.backend else {
            return Err(StoreError::Batch(
                "apply_if_unchanged is PostgreSQL's".into(),
            ));
        };
        let result = match change {
            Some((next, kind, detail)) => {
                let q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(&**CAS_CHANGE));
                let q = bind_mutable!(q, next).bind(&seen.out_trade_no);
                bind_mutable!(q, seen)
                    .bind(note.map(|(n, _)| n.id))
                    .bind(note.map_or("", |(n, _)| n.kind))
                    .bind(note.map_or("", |(n, _)| n.event_type))
                    .bind(note.map_or("", |(_, label)| label))
                    .bind(now)
                    .bind(kind)
                    .bind(detail)
                    .fetch_one(pool)
                    .await
                    .map(|n| n == 1)
            }
            None => {
                let Some((n, label)) = note else {
                    return Ok(Cas::Applied);
                };
                let q = sqlx::query(sqlx::AssertSqlSafe(&**CAS_NOTE))
                    .bind(n.id)
                    .bind(n.kind)
                    .bind(n.event_type)
                    .bind(label)
                    .bind(now)
                    .bind(&seen.out_trade_no);
                bind_mutable!(q, seen)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected() == 1)
            }
        };
        match result {
            Ok(true) => Ok(Cas::Applied),
            Ok(false) => Ok(Cas::Stale),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("23505")
                    && e.constraint() == Some("notifications_pkey") =>
            {
                Ok(Cas::Duplicate)
            }
            Err(e) => Err(e.into()),
        }
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
            .iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (*s, n)
            })
            .collect())
    }
}
