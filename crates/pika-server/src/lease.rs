//! One server per database: an exclusive lock (`flock`) on `DB.lock`, next to the database, held
//! for the life of the process.
//!
//! Why a lock file and not SQLite's own locking: SQLite lets many processes share a WAL database,
//! which is exactly what must not happen here. Two servers on one database would each settle the
//! other's in-flight provisions at startup and each remove instances the other is still building.
//! The lock is `flock(2)` (std's `File::try_lock`): the kernel drops it when the process dies, so
//! a crash never leaves a stale lock behind, and it does not interfere with SQLite's POSIX locks on
//! the database file itself. The file holds the holder's PID, for the error message only.
//!
//! The lock guards one database file. A *copy* of the database (a backup restored elsewhere) is
//! another file with its own lock: what keeps a copy from deleting the original's instances is the
//! ledger of created instances (see [`crate::store::Store::record_created`] and
//! [`crate::reconcile`]).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lease {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "database {db} is in use by another pika-server ({holder} holds the lock {lock}); \
         two servers on one database would settle and remove each other's agents: stop the other \
         server, or give this one its own PIKA_SERVER_DB"
    )]
    Held {
        db: String,
        lock: String,
        holder: String,
    },
    #[error("lock file {lock} of database {db}: {source}")]
    Io {
        db: String,
        lock: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lock file of a database: `DB.lock` in the same directory.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl Lease {
    /// Takes the lock of `db` without waiting; refuses when another process holds it.
    pub fn acquire(db: &Path) -> Result<Lease, LeaseError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = lock_path(db);
        let io = |source| LeaseError::Io {
            db: db.display().to_string(),
            lock: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "a process".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(LeaseError::Held {
                    db: db.display().to_string(),
                    lock: path.display().to_string(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(err)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Lease { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lease_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("agents.db");
        let first = Lease::acquire(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("agents.db.lock"));
        // flock locks belong to the open file description: a second open in the same process
        // conflicts as a second process would.
        let err = Lease::acquire(&db).unwrap_err().to_string();
        assert!(err.contains("in use by another pika-server"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("agents.db.lock"), "{err}");
        drop(first);
        Lease::acquire(&db).unwrap();
    }
}
