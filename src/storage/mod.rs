//! The only module that talks SQL. `Store` is a cheap `Clone` handle over either a SQLite
//! or a PostgreSQL pool; each public method is one statement or one transaction.
//!
//! Both dialects share the SQL text wherever they agree (numbered `$1` placeholders,
//! `ON CONFLICT`, `RETURNING` work on both); `dispatch!` compiles one body against each
//! pool type, so the code is written once and type-checked twice, without `sqlx::Any`.

mod accounts;
mod admin;
mod audit;
mod backchannel;
mod clients;
mod failures;
mod keys;
mod migrations;
mod purge;
mod refresh;
mod sessions;
mod sqlite;
mod users;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;

pub use accounts::{AccountToken, KeepSession, MailedToken, ProfileChange, TokenPurpose, Verified};
pub use admin::AdminUserChange;
pub use audit::{AuditQuery, AuditRecord};
pub use backchannel::Delivery;
pub use clients::{ClientRecord, RedirectKind};
pub use failures::FailureCount;
pub use keys::KeyRecord;
pub use purge::Purged;
pub use refresh::{NewRefresh, RefreshRecord};
pub use sessions::{CodeRecord, Redeemed, SessionInfo, SessionOrigin, SessionRecord};
pub use users::{NewUser, SeedUserRecord, UserRecord};

use crate::config::DatabaseKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the string names what is taken.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// A rule checked inside a transaction (e.g. retiring the active key).
    #[error("{0}")]
    Refused(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database file: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    sqlite_file: Option<sqlite::FileIdentity>,
}

/// SQLite has one writer at a time. Writers that find the lock taken wait in SQLite's
/// busy handler, which sleeps 1, 2, 5 … 100 ms between tries: under concurrent refreshes
/// the cores idled while the lock sat free (refresh at 0.30 of its RSA ceiling). So every
/// write goes through a pool of one connection, where waiting is an orderly async queue,
/// and reads use the other connections (WAL readers never wait for the writer).
#[derive(Clone)]
enum Pool {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either dialect (SQLite's read
/// connections).
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::storage::Pool::Sqlite { read: $pool, .. } => {
                $store.sqlite_guard()?;
                $body
            }
            $crate::storage::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch;

/// `dispatch!` for a body that writes (one statement or one transaction): SQLite's
/// writer connection.
macro_rules! dispatch_write {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::storage::Pool::Sqlite { write: $pool, .. } => {
                $store.sqlite_guard()?;
                $body
            }
            $crate::storage::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch_write;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind()).finish()
    }
}

impl Store {
    /// Opens the pool. SQLite files (and their directory) are created as needed.
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self> {
        let url = url.expose_secret();
        let acquire = Duration::from_secs(5);
        match DatabaseKind::of(url) {
            Some(DatabaseKind::Postgres) => {
                let options: PgConnectOptions = url.parse()?;
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect_with(options)
                    .await?;
                Ok(Self {
                    pool: Pool::Postgres(pool),
                    sqlite_file: None,
                })
            }
            _ => {
                let (read, write, file) = sqlite::connect(url, max_connections, acquire).await?;
                Ok(Self {
                    pool: Pool::Sqlite { read, write },
                    sqlite_file: file,
                })
            }
        }
    }

    pub fn kind(&self) -> DatabaseKind {
        match self.pool {
            Pool::Sqlite { .. } => DatabaseKind::Sqlite,
            Pool::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Applies every pending migration of this dialect.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite { write, .. } => migrations::sqlite().run(write).await?,
            Pool::Postgres(pool) => migrations::postgres().run(pool).await?,
        }
        Ok(())
    }

    /// SQLite: refuses while the database file is not the one the connections have open
    /// (`sqlite::FileIdentity::guard`). Called by `dispatch!` before every statement.
    fn sqlite_guard(&self) -> Result<()> {
        match &self.sqlite_file {
            Some(file) => file.guard(),
            None => Ok(()),
        }
    }

    /// Readiness: reads a real table, so a missing or unreadable database fails (a bare
    /// `SELECT 1` would succeed on SQLite without touching the file).
    pub async fn ping(&self) -> Result<()> {
        if let Some(file) = &self.sqlite_file {
            file.recheck()?;
        }
        dispatch!(self, pool => {
            sqlx::query("SELECT COUNT(*) FROM signing_keys").execute(pool).await?;
        });
        Ok(())
    }

    /// Connections open in the pool, and how many of them are idle (a metric).
    pub fn pool_use(&self) -> (u32, usize) {
        match &self.pool {
            Pool::Sqlite { read, write } => (
                read.size() + write.size(),
                read.num_idle() + write.num_idle(),
            ),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Maps a unique-constraint violation to `Conflict(what)`, other errors unchanged.
fn on_unique(e: sqlx::Error, what: impl Fn(&str) -> &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let detail = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
        return StoreError::Conflict(what(&detail));
    }
    StoreError::Database(e)
}

/// Whether a lookup key can exist at all: PostgreSQL text cannot hold NUL, and such a
/// key from a client must read as "not found", not as a database error.
pub(crate) fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// Seconds since the Unix epoch; the storage layer's only notion of time.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
