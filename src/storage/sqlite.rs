//! SQLite specifics: file creation, WAL, foreign keys, busy timeout.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Result, StoreError};

/// The database file as opened: if it is moved, deleted or replaced under a running
/// server, the open connections keep working on the old inode and every write would be
/// lost, so readiness and every statement (`guard`) compare the path's current inode
/// with this one.
#[derive(Debug, Clone)]
pub(super) struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// `guard`'s last answer and when it was taken (ms since the epoch): one `stat` per
    /// `GUARD_EVERY`, not one per statement.
    ok: Arc<AtomicBool>,
    checked_ms: Arc<AtomicU64>,
}

/// How stale `guard`'s answer may be.
const GUARD_EVERY_MS: u64 = 250;

impl FileIdentity {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            ok: Arc::new(AtomicBool::new(true)),
            checked_ms: Arc::new(AtomicU64::new(now_ms())),
        })
    }

    /// Before a statement: refuses (the handlers answer 503 with `Retry-After`) while the
    /// path does not name the file the connections have open, so nothing is written into
    /// a file nobody will see again, and nothing is read from one. Resumes by itself when
    /// the file is back; a different file at the path needs a restart (the connections
    /// hold the old one), and readiness keeps saying so.
    pub(super) fn guard(&self) -> Result<()> {
        let now = now_ms();
        if now.saturating_sub(self.checked_ms.load(Ordering::Relaxed)) >= GUARD_EVERY_MS {
            return self.recheck();
        }
        if self.ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            self.recheck()
        }
    }

    /// `check`, remembered for `guard` (readiness calls it too).
    pub(super) fn recheck(&self) -> Result<()> {
        let result = self.check();
        self.checked_ms.store(now_ms(), Ordering::Relaxed);
        self.ok.store(result.is_ok(), Ordering::Relaxed);
        result
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
    let path = options.get_filename().to_path_buf();
    // An in-memory database has no file to protect.
    let in_memory = path.as_os_str() == ":memory:" || url.contains("mode=memory");
    if !in_memory {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            crate::private_files::create_dir(dir)?;
        }
        // The file holds password hashes: 0600 before SQLite opens it, and SQLite gives
        // its -wal and -shm files the same mode.
        crate::private_files::create_file(&path)?;
    }
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
