//! The database of one scenario: a SQLite file in the scenario's directory, or a fresh
//! PostgreSQL schema (selected through the URL's `options=-c search_path=…`) that is dropped
//! afterwards.

use std::net::SocketAddr;
use std::path::Path;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Connection;

/// Schemas created and not yet dropped, as `(server URL, schema)`: a run cut short by its
/// deadline drops them on the way out.
static LIVE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// `WXPAY_TEST_POSTGRES_URL`'s default, as in the host's own tests.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server the PostgreSQL scenarios use.
pub fn postgres_url() -> String {
    std::env::var("WXPAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// One scenario's database.
#[derive(Debug)]
pub enum Db {
    /// A SQLite file (removed with the scenario's directory).
    Sqlite {
        /// `sqlite://…`.
        url: String,
    },
    /// A schema of its own on the PostgreSQL server.
    Postgres {
        /// The server URL without the schema.
        base: String,
        /// The schema's name.
        schema: String,
    },
}

impl Db {
    /// A SQLite file `host.db` in `dir`.
    pub fn sqlite(dir: &Path) -> Self {
        Self::Sqlite {
            url: format!("sqlite://{}", dir.join("host.db").display()),
        }
    }

    /// Creates a fresh schema on the server at `base`.
    pub async fn postgres(base: &str) -> Result<Self> {
        let schema = format!("chaos_{}", super::rand::hex(6));
        let mut conn = sqlx::PgConnection::connect(base).await.with_context(|| {
            format!("connect to PostgreSQL at {base} (WXPAY_TEST_POSTGRES_URL)")
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("create schema {schema}"))?;
        conn.close().await.ok();
        live().push((base.to_owned(), schema.clone()));
        Ok(Self::Postgres {
            base: base.to_owned(),
            schema,
        })
    }

    /// The URL the host is given.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { url } => url.clone(),
            Self::Postgres { base, schema } => with_schema(base, schema),
        }
    }

    /// The PostgreSQL server's address, for a proxy in front of it.
    pub async fn upstream(&self) -> Result<SocketAddr> {
        let Self::Postgres { base, .. } = self else {
            anyhow::bail!("only a PostgreSQL database has an upstream address");
        };
        let u = url::Url::parse(base).context("parse the PostgreSQL URL")?;
        let host = u.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = u.port().unwrap_or(5432);
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolve {host}:{port}"))?
            .next()
            .with_context(|| format!("{host}:{port} has no address"))
    }

    /// The URL the host is given when it reaches the server through `proxy`.
    pub fn url_via(&self, proxy: SocketAddr) -> Result<String> {
        let Self::Postgres { base, schema } = self else {
            anyhow::bail!("only a PostgreSQL database can sit behind the proxy");
        };
        let mut u = url::Url::parse(base).context("parse the PostgreSQL URL")?;
        u.set_host(Some(&proxy.ip().to_string()))
            .context("set the proxy host")?;
        u.set_port(Some(proxy.port()))
            .map_err(|()| anyhow::anyhow!("cannot set a port on {base}"))?;
        Ok(with_schema(u.as_str(), schema))
    }

    /// Drops the PostgreSQL schema (a SQLite file goes with its directory).
    pub async fn remove(&self) -> Result<()> {
        if let Self::Postgres { base, schema } = self {
            drop_schema(base, schema).await?;
            live().retain(|(_, s)| s != schema);
        }
        Ok(())
    }
}

/// Drops the schemas of scenarios that did not get to [`Db::remove`] (deadline, Ctrl-C).
pub async fn drop_leftover_schemas() {
    let left: Vec<(String, String)> = live().drain(..).collect();
    for (base, schema) in left {
        match tokio::time::timeout(Duration::from_secs(10), drop_schema(&base, &schema)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("chaos: {e:#}"),
            Err(_) => eprintln!("chaos: dropping schema {schema} timed out"),
        }
    }
}

async fn drop_schema(base: &str, schema: &str) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .context("connect to PostgreSQL to drop the schema")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("drop schema {schema}"))?;
    conn.close().await.ok();
    Ok(())
}

fn live() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}
