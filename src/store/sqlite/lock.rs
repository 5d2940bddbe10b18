//! One database file, one node: an exclusive lock on the database file, held for as long
//! as the store is open, so that a second kv process cannot open the same file and take
//! writes beside the first (each would wake only its own replicas).
//!
//! It is a `flock` (through `File::try_lock`) on a descriptor of kv's own: the kernel
//! releases it when the process dies, however it dies, so a node killed with `SIGKILL`
//! restarts with no cleanup; and on Linux it is independent of the `fcntl` byte-range
//! locks SQLite takes, so `sqlite3` and other readers keep working beside a running node.
//! The holder's pid comes from `/proc/locks`, which names the process behind every
//! `flock`. (On NFS, Linux emulates `flock` with `fcntl` locks: there the lock would block
//! SQLite's own locks, so keep kv's databases on a local filesystem.)

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The held lock; released when dropped (or when the process ends).
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path`, creating an empty file there if there is none (an empty
    /// file is a new database to SQLite). Refuses, naming the holder's pid, when another
    /// process holds it.
    pub(super) fn acquire(path: &Path) -> Result<FileLock> {
        let refuse = |reason: String| Error::Database {
            path: path.to_path_buf(),
            reason,
        };
        let file = open(path).map_err(|e| {
            refuse(format!(
                "cannot open: {e} (is its directory missing or not writable?)"
            ))
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(refuse("is a directory, not a database file".into()));
        }
        match file.try_lock() {
            Ok(()) => Ok(FileLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let holder = holder_pid(&file)
                    .map_or_else(|| "another process".to_string(), |pid| format!("pid {pid}"));
                Err(refuse(format!(
                    "is in use by another kv node ({holder}); one database file serves one \
                     node: stop that node first, or give this one another --db file"
                )))
            }
            Err(TryLockError::Error(e)) => Err(refuse(format!("cannot lock: {e}"))),
        }
    }
}

/// Opens `path` for locking: read-write (creating it if missing), or read-only where the
/// file cannot be written (a lock needs no write access; the store reports the read-only
/// file itself, more precisely, when it opens it).
fn open(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(file) => Ok(file),
        Err(e) if path.exists() && !path.is_dir() => File::open(path).map_err(|_| e),
        Err(_) if path.is_dir() => File::open(path),
        Err(e) => Err(e),
    }
}

/// The pid of the process holding a `flock` on `file`, from `/proc/locks`.
fn holder_pid(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, meta.dev(), meta.ino())
}

/// Finds the `FLOCK` entry for the file (`dev`, `ino`) in the text of `/proc/locks`, whose
/// lines read `1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF` (major and
/// minor in hex; a waiting lock has `->` after the number).
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = split_dev(dev);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, _, pid, id, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = id.split(':');
        let maj = u64::from_str_radix(parts.next()?, 16).ok()?;
        let min = u64::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse::<u64>().ok()?;
        (maj == major && min == minor && inode == ino)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// A device number's (major, minor), as glibc encodes them in `st_dev`.
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("a.db");
        let held = FileLock::acquire(&path).expect("first lock");
        let err = FileLock::acquire(&path).err().expect("second lock refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        FileLock::acquire(&path).expect("free again once dropped");
    }

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 fe:00:611 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 99 fe:00:611 0 EOF\n\
                     2: POSIX  ADVISORY  READ 77 08:01:5 128 128\n";
        assert_eq!(holder_in(locks, 0xfe00, 611), Some(4242));
        assert_eq!(holder_in(locks, 0xfe00, 612), None);
        assert_eq!(holder_in(locks, 0x0801, 5), None, "only flock entries");
    }
}
