//! The database file's identity and storage faults. While kv has the file open, SQLite
//! never removes or recreates it or its `-wal`; if someone else does, SQLite carries on
//! writing to the unlinked file and every later write would be lost. [`OpenFiles`] records
//! both files at open and checks, before each commit, that the paths still name them; and
//! [`storage_error`] turns disk-full and read-only faults into errors that name the file.

use super::inspect::side_file;
use crate::error::{Error, Result};
use rusqlite::ErrorCode;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity: (device, inode).
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The database file and its write-ahead log as the writer opened them. While the writer
/// is open, SQLite never removes or recreates either, so a different identity at a path
/// means someone else removed, moved or replaced the file.
pub(super) struct OpenFiles {
    db: FileId,
    /// SQLite names the log after the database's real path (symlinks resolved).
    wal_path: PathBuf,
    wal: FileId,
    /// The `-wal` file recorded, kept open to flush it ([`OpenFiles::sync_wal`]).
    wal_file: File,
}

impl OpenFiles {
    /// Records the identity of the database at `path` and of its `-wal`, just opened by the
    /// writer (which keeps the log open from its first transaction).
    pub(super) fn record(path: &Path) -> Result<OpenFiles> {
        let identify = |file: &Path| {
            file_id(file).map_err(|e| Error::Database {
                path: path.to_path_buf(),
                reason: format!("cannot check {}: {e}", file.display()),
            })
        };
        let real_path = std::fs::canonicalize(path).map_err(|e| Error::Database {
            path: path.to_path_buf(),
            reason: format!("cannot resolve: {e}"),
        })?;
        let wal_path = side_file(&real_path, "-wal");
        let wal_file = File::open(&wal_path).map_err(|e| Error::Database {
            path: path.to_path_buf(),
            reason: format!("cannot open {}: {e}", wal_path.display()),
        })?;
        let wal = wal_file.metadata().map_err(|e| Error::Database {
            path: path.to_path_buf(),
            reason: format!("cannot check {}: {e}", wal_path.display()),
        })?;
        Ok(OpenFiles {
            db: identify(path)?,
            wal: (wal.dev(), wal.ino()),
            wal_path,
            wal_file,
        })
    }

    /// Flushes the `-wal` file to the disk (`fdatasync`), after checking that its path
    /// still names it: every transaction committed before the call is then durable,
    /// including those committed with `synchronous=NORMAL`, which SQLite writes to the
    /// log without flushing it. A flush is of the file, not of the descriptor, so this
    /// one flushes what SQLite wrote through its own.
    pub(super) fn sync_wal(&self, db_path: &Path) -> Result<()> {
        self.check(db_path)?;
        self.wal_file.sync_data().map_err(|e| Error::Unwritable {
            path: self.wal_path.clone(),
            reason: format!("cannot be flushed to the disk: {e}"),
        })
    }

    /// Checks that the database's path and its `-wal` still name the files the writer has
    /// open: two `stat`s, noise next to the fsync of a commit. Once a file is removed (or
    /// moved away, or replaced), SQLite carries on writing to the unlinked file, so every
    /// write acknowledged from then on would vanish when kv exits (the database file), or
    /// at the next crash (the `-wal`).
    ///
    /// The node then keeps running, refusing every write with this error, rather than
    /// exiting: like a database whose disk went read-only, it keeps serving reads of the
    /// data it still has open, and that open file is the only copy of everything
    /// acknowledged before the removal (recoverable from `/proc/<pid>/fd` while kv runs);
    /// exiting would discard it, and a supervisor restarting kv would bring it up on a
    /// new, empty database. Writes resume by themselves if the file is moved back.
    pub(super) fn check(&self, db_path: &Path) -> Result<()> {
        for (path, id) in [(db_path, self.db), (self.wal_path.as_path(), self.wal)] {
            let reason = match file_id(path) {
                Ok(now) if now == id => continue,
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    format!("cannot be checked ({e}); the write was not committed")
                }
                _ => "was removed or replaced while kv had it open; kv no longer writes to \
                      it (writes would go to a removed file and be lost) and serves reads \
                      from the copy it has open"
                    .to_string(),
            };
            return Err(Error::Unwritable {
                path: path.to_path_buf(),
                reason,
            });
        }
        Ok(())
    }
}

/// `e`, naming the database file when it is a fault of the file or its filesystem.
pub(super) fn storage_error(path: &Path, e: rusqlite::Error) -> Error {
    let Some(code) = e.sqlite_error() else {
        return Error::Sqlite(e);
    };
    let hint = match code.code {
        ErrorCode::DiskFull => "free space on its filesystem",
        ErrorCode::SystemIoFailure | ErrorCode::ReadOnly | ErrorCode::CannotOpen => {
            "is its filesystem read-only, full or failing?"
        }
        _ => return Error::Sqlite(e),
    };
    Error::Unwritable {
        path: path.to_path_buf(),
        reason: format!(
            "cannot be written: {e} (SQLite code {}); {hint}",
            code.extended_code
        ),
    }
}
