//! SQLite specifics: file creation, WAL, foreign keys, busy timeout.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Result, StoreError};

/// The database file as opened: if it is deleted or replaced under a running server, the
/// open connections keep working on the old inode and every write would be lost, so
/// readiness compares the path's current inode with this one.
#[derive(Debug, Clone)]
pub(super) struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    pub(super) fn check(&self) -> Result<()> {
        match Self::of(&self.path) {
            Some(now) if now.dev == self.dev && now.ino == self.ino => Ok(()),
            Some(_) => Err(StoreError::Io(std::io::Error::other(format!(
                "database file {} was replaced under the running server",
                self.path.display()
            )))),
            None => Err(StoreError::Io(std::io::Error::other(format!(
                "database file {} is missing",
                self.path.display()
            )))),
        }
    }
}

pub(super) async fn connect(
    url: &str,
    max_connections: u32,
    acquire: Duration,
) -> Result<(SqlitePool, SqlitePool, Option<FileIdentity>)> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        // WAL lets readers run beside the one writer; NORMAL sync is durable in WAL mode
        // except for the last transactions on power loss, the usual trade-off.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let path = options.get_filename().to_path_buf();
    // The writer first: it creates the file and switches it to WAL before readers open it.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire)
        .connect_with(options.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire)
        .connect_with(options)
        .await?;
    Ok((read, write, FileIdentity::of(&path)))
}
