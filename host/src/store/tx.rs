//! [`Tx`]: one write transaction. Reads that decide take row locks; writes store what the
//! domain decided. Dropping a `Tx` without [`Tx::commit`] rolls everything back.

use sqlx::{Postgres, Sqlite, Transaction};

use super::{ORDER_COLUMNS, REFUND_COLUMNS, Result, bind_mutable, order_row, refund_row};
use crate::domain::{Order, Refund};

enum Inner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction on either backend.
pub struct Tx {
    inner: Inner,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Sqlite(_) => "Tx(sqlite)",
            Inner::Postgres(_) => "Tx(postgres)",
        })
    }
}

/// A verified notification to record once (its id is the primary key).
#[derive(Clone, Debug)]
pub struct NotificationRecord<'a> {
    /// WeChat's notification id.
    pub id: &'a str,
    /// `pay` or `refund`.
    pub kind: &'static str,
    /// WeChat's event type.
    pub event_type: &'a str,
    /// The order it concerns.
    pub out_trade_no: &'a str,
}

/// A [`NotificationRecord`] that owns its strings (to travel to the SQLite writer).
#[derive(Clone, Debug)]
pub struct OwnedNotification {
    /// WeChat's notification id.
    pub id: String,
    /// `pay` or `refund`.
    pub kind: &'static str,
    /// WeChat's event type.
    pub event_type: String,
    /// The order it concerns.
    pub out_trade_no: String,
}

impl OwnedNotification {
    /// The borrowed form the transaction methods take.
    #[must_use]
    pub fn record(&self) -> NotificationRecord<'_> {
        NotificationRecord {
            id: &self.id,
            kind: self.kind,
            event_type: &self.event_type,
            out_trade_no: &self.out_trade_no,
        }
    }
}

impl From<&NotificationRecord<'_>> for OwnedNotification {
    fn from(n: &NotificationRecord<'_>) -> Self {
        Self {
            id: n.id.to_owned(),
            kind: n.kind,
            event_type: n.event_type.to_owned(),
            out_trade_no: n.out_trade_no.to_owned(),
        }
    }
}

/// Runs `$body` with `$c` bound to the transaction's connection on either backend.
macro_rules! on {
    ($self:expr, $c:ident => $body:expr) => {
        match &mut $self.inner {
            Inner::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            Inner::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

impl Tx {
    pub(super) fn sqlite(t: Transaction<'static, Sqlite>) -> Self {
        Self {
            inner: Inner::Sqlite(t),
        }
    }

    pub(super) fn postgres(t: Transaction<'static, Postgres>) -> Self {
        Self {
            inner: Inner::Postgres(t),
        }
    }

    fn lock_suffix(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "",
            Inner::Postgres(_) => " FOR UPDATE",
        }
    }

    /// Commits.
    ///
    /// # Errors
    /// Database failure: nothing was written.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            Inner::Sqlite(t) => t.commit().await?,
            Inner::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Starts the savepoint of one job of a write batch.
    pub(super) async fn savepoint(&mut self) -> Result<()> {
        on!(self, c => { sqlx::query("SAVEPOINT job").execute(c).await?; });
        Ok(())
    }

    /// Keeps what the job wrote (the batch's commit makes it durable).
    pub(super) async fn release_savepoint(&mut self) -> Result<()> {
        on!(self, c => { sqlx::query("RELEASE SAVEPOINT job").execute(c).await?; });
        Ok(())
    }

    /// Undoes what the job wrote; the batch goes on.
    pub(super) async fn rollback_to_savepoint(&mut self) -> Result<()> {
        on!(self, c => {
            sqlx::query("ROLLBACK TO SAVEPOINT job").execute(&mut *c).await?;
            sqlx::query("RELEASE SAVEPOINT job").execute(c).await?;
        });
        Ok(())
    }

    /// The order, locked until the end of the transaction.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn order_for_update(&mut self, out_trade_no: &str) -> Result<Option<Order>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1{}",
            self.lock_suffix()
        ));
        on!(self, c => {
            let row = sqlx::query(sql).bind(out_trade_no).fetch_optional(c).await?;
            match row {
                Some(r) => Ok(Some(order_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The refund, locked until the end of the transaction.
    ///
    /// # Errors
    /// Database failure or a corrupt row.
    pub async fn refund_for_update(&mut self, out_refund_no: &str) -> Result<Option<Refund>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_refund_no = $1{}",
            self.lock_suffix()
        ));
        on!(self, c => {
            let row = sqlx::query(sql).bind(out_refund_no).fetch_optional(c).await?;
            match row {
                Some(r) => Ok(Some(refund_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Inserts a new order; `false` when the number is taken.
    ///
    /// # Errors
    /// Database failure.
    pub async fn insert_order(&mut self, o: &Order) -> Result<bool> {
        on!(self, c => {
            let res = sqlx::query(
                "INSERT INTO orders (out_trade_no, openid, amount, description, attach, state, \
                 created_at, expire_at, updated_at, next_check_at, checks) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (out_trade_no) DO NOTHING",
            )
            .bind(&o.out_trade_no)
            .bind(&o.openid)
            .bind(o.amount)
            .bind(&o.description)
            .bind(o.attach.as_deref())
            .bind(o.state.as_str())
            .bind(o.created_at)
            .bind(o.expire_at)
            .bind(o.updated_at)
            .bind(o.next_check_at)
            .bind(o.checks)
            .execute(c)
            .await?;
            Ok(res.rows_affected() == 1)
        })
    }

    /// Writes every mutable column of `o` (a row read with [`Tx::order_for_update`] and changed
    /// by the domain).
    ///
    /// # Errors
    /// Database failure.
    pub async fn write_order(&mut self, o: &Order) -> Result<()> {
        on!(self, c => {
            let q = sqlx::query(
                "UPDATE orders SET state = $1, prepay_id = $2, prepay_expires_at = $3, \
                 transaction_id = $4, paid_amount = $5, refunded = $6, refund_pending = $7, \
                 review_reason = $8, double_payment = $9, updated_at = $10, \
                 next_check_at = $11, checks = $12 WHERE out_trade_no = $13",
            );
            bind_mutable!(q, o)
            .bind(&o.out_trade_no)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Inserts a refund; `false` when the number is taken.
    ///
    /// # Errors
    /// Database failure.
    pub async fn insert_refund(&mut self, r: &Refund) -> Result<bool> {
        on!(self, c => {
            let res = sqlx::query(
                "INSERT INTO refunds (out_refund_no, out_trade_no, amount, reason, state, \
                 refund_id, source, created_at, updated_at, next_check_at, attempts) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (out_refund_no) DO NOTHING",
            )
            .bind(&r.out_refund_no)
            .bind(&r.out_trade_no)
            .bind(r.amount)
            .bind(r.reason.as_deref())
            .bind(r.state.as_str())
            .bind(r.refund_id.as_deref())
            .bind(&r.source)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.next_check_at)
            .bind(r.attempts)
            .execute(c)
            .await?;
            Ok(res.rows_affected() == 1)
        })
    }

    /// Writes every mutable column of `r`.
    ///
    /// # Errors
    /// Database failure.
    pub async fn write_refund(&mut self, r: &Refund) -> Result<()> {
        on!(self, c => {
            sqlx::query(
                "UPDATE refunds SET state = $1, refund_id = $2, updated_at = $3, \
                 next_check_at = $4, attempts = $5 WHERE out_refund_no = $6",
            )
            .bind(r.state.as_str())
            .bind(r.refund_id.as_deref())
            .bind(r.updated_at)
            .bind(r.next_check_at)
            .bind(r.attempts)
            .bind(&r.out_refund_no)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Appends an entry to an order's history.
    ///
    /// # Errors
    /// Database failure.
    pub async fn event(
        &mut self,
        out_trade_no: &str,
        kind: &str,
        from: Option<&str>,
        to: Option<&str>,
        detail: &str,
        at: i64,
    ) -> Result<()> {
        on!(self, c => {
            sqlx::query(
                "INSERT INTO order_events (out_trade_no, at, kind, from_state, to_state, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(out_trade_no)
            .bind(at)
            .bind(kind)
            .bind(from)
            .bind(to)
            .bind(detail)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Whether notification `id` is recorded (seen from inside the transaction).
    ///
    /// # Errors
    /// Database failure.
    pub async fn notification_recorded(&mut self, id: &str) -> Result<bool> {
        on!(self, c => {
            let n: Option<i32> = sqlx::query_scalar("SELECT 1 FROM notifications WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await?;
            Ok(n.is_some())
        })
    }

    /// Records a notification with what it did; `false` if its id was already recorded (a
    /// redelivery), in which case the caller must write nothing else.
    ///
    /// # Errors
    /// Database failure.
    pub async fn record_notification(
        &mut self,
        n: &NotificationRecord<'_>,
        outcome: &str,
        now: i64,
    ) -> Result<bool> {
        on!(self, c => {
            let res = sqlx::query(
                "INSERT INTO notifications (id, kind, event_type, out_trade_no, outcome, \
                 received_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(n.id)
            .bind(n.kind)
            .bind(n.event_type)
            .bind(n.out_trade_no)
            .bind(outcome)
            .bind(now)
            .execute(c)
            .await?;
            Ok(res.rows_affected() == 1)
        })
    }

    /// Moves an order's next check (only while it is still in `state`).
    ///
    /// # Errors
    /// Database failure.
    pub async fn reschedule_order(
        &mut self,
        out_trade_no: &str,
        state: &str,
        next_check_at: Option<i64>,
        checks: i64,
    ) -> Result<()> {
        on!(self, c => {
            sqlx::query(
                "UPDATE orders SET next_check_at = $1, checks = $2 \
                 WHERE out_trade_no = $3 AND state = $4",
            )
            .bind(next_check_at)
            .bind(checks)
            .bind(out_trade_no)
            .bind(state)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Moves a refund's next resubmission/query (only while it is still in `state`).
    ///
    /// # Errors
    /// Database failure.
    pub async fn reschedule_refund(
        &mut self,
        out_refund_no: &str,
        state: &str,
        next_check_at: Option<i64>,
        attempts: i64,
    ) -> Result<()> {
        on!(self, c => {
            sqlx::query(
                "UPDATE refunds SET next_check_at = $1, attempts = $2 \
                 WHERE out_refund_no = $3 AND state = $4",
            )
            .bind(next_check_at)
            .bind(attempts)
            .bind(out_refund_no)
            .bind(state)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub(super) async fn claim_orders(
        &mut self,
        sql: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Order>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        on!(self, c => {
            let rows = sqlx::query(sql)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(c)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(order_row!(r));
            }
            Ok(out)
        })
    }

    pub(super) async fn claim_refunds(
        &mut self,
        sql: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Refund>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        on!(self, c => {
            let rows = sqlx::query(sql)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(c)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(refund_row!(r));
            }
            Ok(out)
        })
    }
}
