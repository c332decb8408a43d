//! The data directory at start: created when missing, writable, and holding a usable
//! database. Every failure names the path, the cause and the fix, once: no layer adds a
//! prefix another already gave.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::store::SqliteStorage;

/// The database file in the data directory.
pub const DATABASE_FILE: &str = "host.sqlite3";

/// The file the writability check creates and removes again.
const WRITE_CHECK_FILE: &str = ".pbx-host-write-check";

/// Why the data directory cannot be used. The fix names `--data-dir`, the daemon's flag
/// (for an embedding PBX: [`crate::HostOptions::data_dir`]).
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {} does not exist and cannot be created ({cause}): create it, or point --data-dir at another directory",
        .path.display()
    )]
    CannotCreate { path: PathBuf, cause: io::Error },
    #[error(
        "data directory {} is not a directory: point --data-dir at a directory",
        .path.display()
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "data directory {} is read-only ({cause}): the host needs to write {DATABASE_FILE} there; make it writable or point --data-dir at another directory",
        .path.display()
    )]
    ReadOnly { path: PathBuf, cause: io::Error },
    #[error(
        "data directory {} is full ({cause}): the host needs space for {DATABASE_FILE} there; free some space or point --data-dir at another directory",
        .path.display()
    )]
    Full { path: PathBuf, cause: io::Error },
    #[error(
        "{} is a directory, not a SQLite database: move it away or point --data-dir at another directory",
        .path.display()
    )]
    DatabaseIsADirectory { path: PathBuf },
    #[error(
        "{} is not a SQLite database ({cause}): move it away or point --data-dir at another directory",
        .path.display()
    )]
    NotADatabase { path: PathBuf, cause: String },
    #[error(
        "{} is corrupt ({cause}): restore it from a backup, or move it away and point --data-dir at another directory",
        .path.display()
    )]
    DatabaseCorrupt { path: PathBuf, cause: String },
    #[error(
        "{} is read-only ({cause}): the host needs to write it; make it writable or point --data-dir at another directory",
        .path.display()
    )]
    DatabaseReadOnly { path: PathBuf, cause: String },
    #[error(
        "cannot open the database {} ({cause}): check the file and its directory, or point --data-dir at another directory",
        .path.display()
    )]
    Database { path: PathBuf, cause: String },
}

/// Create `dir` if needed, check that the host can write there, and open its database.
pub(super) fn open_storage(dir: &Path) -> Result<SqliteStorage, DataDirError> {
    prepare(dir)?;
    let path = dir.join(DATABASE_FILE);
    if path.is_dir() {
        return Err(DataDirError::DatabaseIsADirectory { path });
    }
    SqliteStorage::open(&path).map_err(|e| diagnose(path, e.to_string()))
}

/// `dir` exists (created if missing), is a directory, and takes a new file.
fn prepare(dir: &Path) -> Result<(), DataDirError> {
    let path = dir.to_path_buf();
    if dir.exists() && !dir.is_dir() {
        return Err(DataDirError::NotADirectory { path });
    }
    std::fs::create_dir_all(dir).map_err(|cause| DataDirError::CannotCreate {
        path: path.clone(),
        cause,
    })?;
    // SQLite in WAL mode creates `-wal` and `-shm` files beside the database: the directory
    // itself must take new files, even when the database exists already.
    let check = dir.join(WRITE_CHECK_FILE);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&check);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&check);
            Ok(())
        }
        Err(cause)
            if matches!(
                cause.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) =>
        {
            Err(DataDirError::Full { path, cause })
        }
        Err(cause) => Err(DataDirError::ReadOnly { path, cause }),
    }
}

/// Why the database at `path` did not open (`message`: what opening it said). The storage
/// error carries SQLite's message only, so SQLite is asked once more for its code.
fn diagnose(path: PathBuf, message: String) -> DataDirError {
    let probe = rusqlite::Connection::open(&path).and_then(|conn| {
        conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
        conn.is_readonly(rusqlite::MAIN_DB)
    });
    match probe {
        Err(e) => {
            let cause = e.to_string();
            match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => DataDirError::NotADatabase { path, cause },
                Some(ErrorCode::DatabaseCorrupt) => DataDirError::DatabaseCorrupt { path, cause },
                Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                    DataDirError::DatabaseReadOnly { path, cause }
                }
                _ => DataDirError::Database {
                    path,
                    cause: message,
                },
            }
        }
        Ok(true) => DataDirError::DatabaseReadOnly {
            path,
            cause: message,
        },
        Ok(false) => DataDirError::Database {
            path,
            cause: message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_created_and_its_database_opened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        assert!(open_storage(&data).is_ok());
        assert!(data.join(DATABASE_FILE).is_file());
        assert!(!data.join(WRITE_CHECK_FILE).exists());
    }

    #[test]
    fn each_unusable_data_directory_is_named_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = open_storage(&file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("is not a directory") && e.contains("--data-dir"),
            "{e}"
        );

        let e = open_storage(&file.join("below"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cannot be created"), "{e}");

        let db_dir = dir.path().join("dbdir");
        std::fs::create_dir_all(db_dir.join(DATABASE_FILE)).unwrap();
        let e = open_storage(&db_dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("is a directory, not a SQLite database"), "{e}");

        let garbage = dir.path().join("garbage");
        std::fs::create_dir_all(&garbage).unwrap();
        std::fs::write(garbage.join(DATABASE_FILE), [0x5au8; 4096]).unwrap();
        let e = open_storage(&garbage)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("is not a SQLite database (file is not a database)")
                && e.contains("move it away"),
            "{e}"
        );
    }
}
