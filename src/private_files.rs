//! Creating the data oxidp keeps on disk (the SQLite database with its password hashes,
//! mails with live reset links) so that only the service's own user can read it:
//! directories 0700, files 0600, whatever the process umask is.
//!
//! Each creation names its mode rather than the process setting `umask(077)` at start:
//! a umask is process-wide state that the library, the CLI and a test binary running
//! many servers would all share, and it says nothing at the place a file is made.
//! SQLite's own files (`-wal`, `-shm`, journals) take the mode of the database file
//! (SQLite's unix VFS, `findCreateFileMode` and `unixOpenSharedMemory`), so creating the
//! database file 0600 covers them.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories oxidp creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the data files oxidp creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700. An existing directory is left
/// as it is (it is the operator's), with a warning when others can read it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            warn_if_open(dir, &m, "directory", "700");
            Ok(())
        }
        _ => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
    }
}

/// Creates an empty file with mode 0600 unless it exists; an existing file keeps its
/// mode, with a warning when others can read it.
pub fn create_file(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if let Ok(m) = fs::metadata(path) {
                warn_if_open(path, &m, "file", "600");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes a new file (never replacing one) with mode 0600.
pub async fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .await?;
    file.write_all(contents).await?;
    file.flush().await
}

fn warn_if_open(path: &Path, meta: &fs::Metadata, what: &str, mode: &str) {
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "data {what} is readable by group or others; chmod {mode} it");
    }
}
