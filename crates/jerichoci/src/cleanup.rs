//! Guest deletes off the job's critical path, tracked on disk so that no guest leaks.
//!
//! With [`crate::Executor::with_background_cleanup`], a job writes a [`PendingDelete`] into the
//! ledger (`<state dir>/.pending-deletes/<instance>.json`) *before* its instance is created, and
//! removes it only once Incus says the instance is gone. The job's record is written with its
//! `cleanup` phase `deferred`; the delete runs in a task of its own.
//!
//! Whatever ends the process first (a normal exit before the task finished, a failed delete,
//! `kill -9`), the entry stays, and the next [`sweep`] deletes the instance. A sweep only takes
//! entries whose run is over: each run holds an exclusive lock on `<run dir>/.lock` for the life
//! of its process (the kernel drops it when the process dies, however it dies), so a second
//! `pikaci run` on the same state dir never deletes the guest of a run that is still going.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pika_incus::IncusClient;
use serde::{Deserialize, Serialize};

use crate::store::RunStore;

/// The ledger's directory inside the state dir.
pub const LEDGER_DIR: &str = ".pending-deletes";
/// The lock file a live run holds inside its run directory.
pub const RUN_LOCK_FILE: &str = ".lock";
/// Attempts of one delete before it is left to the next sweep.
const ATTEMPTS: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(400);

/// A guest that was (or may have been) created and is not known to be deleted yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    /// The Incus endpoint (`unix:...` or `https://...`) the instance lives on.
    pub endpoint: String,
    pub project: String,
    pub instance: String,
    pub run_id: String,
    pub job_id: String,
    /// The snapshot staged for the instance's mount, removed after the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<PathBuf>,
    /// RFC 3339, UTC: when the entry was written.
    pub since: String,
    /// Failed delete attempts so far, and the last error.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The pending deletes of one state dir.
#[derive(Clone, Debug)]
pub struct CleanupLedger {
    dir: PathBuf,
    runs: RunStore,
}

impl CleanupLedger {
    pub fn new(store: &RunStore) -> Self {
        Self {
            dir: store.dir().join(LEDGER_DIR),
            runs: store.clone(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, instance: &str) -> PathBuf {
        self.dir.join(format!("{instance}.json"))
    }

    /// Writes `entry` atomically (temp file + rename).
    pub fn record(&self, entry: &PendingDelete) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path(&entry.instance);
        let tmp = self.dir.join(format!(".{}.tmp", entry.instance));
        let json = serde_json::to_vec_pretty(entry).expect("ledger entries always serialize");
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &path)
    }

    /// Drops the entry of `instance` (there being none is fine).
    pub fn remove(&self, instance: &str) -> io::Result<()> {
        match fs::remove_file(self.path(instance)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every entry, sorted by instance name. Unreadable entries are skipped with their path in
    /// the second list (they are not ours to guess at).
    pub fn entries(&self) -> io::Result<(Vec<PendingDelete>, Vec<PathBuf>)> {
        let read = match fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let (mut entries, mut bad) = (Vec::new(), Vec::new());
        for item in read {
            let path = item?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<PendingDelete>(&b).ok())
            {
                Some(entry) => entries.push(entry),
                None => bad.push(path),
            }
        }
        entries.sort_by(|a, b| a.instance.cmp(&b.instance));
        bad.sort();
        Ok((entries, bad))
    }

    /// Takes run `run_id`'s lock for the life of the returned file (the run is live while it is
    /// held).
    pub fn lock_run(&self, run_id: &str) -> io::Result<File> {
        let dir = self.runs.create_run(run_id).map_err(io::Error::other)?;
        let file = File::create(dir.join(RUN_LOCK_FILE))?;
        file.lock()?;
        Ok(file)
    }

    /// Whether run `run_id` is over: no live process holds its lock. With `wait`, blocks until
    /// the lock is free (a process that is exiting).
    fn run_is_over(&self, run_id: &str, wait: bool) -> bool {
        let path = self.runs.run_dir(run_id).join(RUN_LOCK_FILE);
        let Ok(file) = File::open(&path) else {
            // No lock file: the run never got as far as locking, or its directory is gone.
            return true;
        };
        if wait {
            file.lock_shared().is_ok()
        } else {
            file.try_lock_shared().is_ok()
        }
    }
}

/// What a sweep did with one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum SweepOutcome {
    /// The instance is gone (deleted now, or already); the entry was dropped.
    Deleted { instance: String, run_id: String },
    /// The delete failed again; the entry stays with the error for the next sweep.
    Failed {
        instance: String,
        run_id: String,
        error: String,
    },
    /// Its run is still going (a live process holds its lock): left to that process.
    Live { instance: String, run_id: String },
    /// It lives on another Incus endpoint than this sweep's: left for a sweep there.
    OtherEndpoint { instance: String, endpoint: String },
}

/// Deletes the guests of the ledger whose run is over. `wait_for` names a run whose lock the
/// sweep waits for (the run that started this sweep as it exited); other live runs are skipped.
pub async fn sweep(
    ledger: &CleanupLedger,
    incus: &IncusClient,
    wait_for: Option<&str>,
) -> io::Result<Vec<SweepOutcome>> {
    let (entries, _bad) = ledger.entries()?;
    let mut outcomes = Vec::new();
    for entry in entries {
        if entry.endpoint != incus.endpoint() {
            outcomes.push(SweepOutcome::OtherEndpoint {
                instance: entry.instance,
                endpoint: entry.endpoint,
            });
            continue;
        }
        let wait = wait_for == Some(entry.run_id.as_str());
        let over = {
            let ledger = ledger.clone();
            let run_id = entry.run_id.clone();
            tokio::task::spawn_blocking(move || ledger.run_is_over(&run_id, wait))
                .await
                .unwrap_or(false)
        };
        if !over {
            outcomes.push(SweepOutcome::Live {
                instance: entry.instance,
                run_id: entry.run_id,
            });
            continue;
        }
        outcomes.push(settle(ledger, incus, entry).await);
    }
    Ok(outcomes)
}

/// Deletes `entry`'s instance (a few attempts), then its staged snapshot, then the entry; a
/// failure is written back into the entry.
pub async fn settle(
    ledger: &CleanupLedger,
    incus: &IncusClient,
    mut entry: PendingDelete,
) -> SweepOutcome {
    let project = incus.in_project(&entry.project);
    let mut result = project.remove_instance(&entry.instance).await;
    for _ in 1..ATTEMPTS {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
        result = project.remove_instance(&entry.instance).await;
    }
    let result = result.map_err(|e| e.to_string()).and_then(|()| {
        match entry.stage.as_deref().map(fs::remove_dir_all) {
            Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => Err(format!(
                "removing the staged snapshot {}: {e}",
                entry.stage.as_deref().unwrap_or(Path::new("")).display()
            )),
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => match ledger.remove(&entry.instance) {
            Ok(()) => SweepOutcome::Deleted {
                instance: entry.instance,
                run_id: entry.run_id,
            },
            Err(e) => SweepOutcome::Failed {
                error: format!("{}: {e}", ledger.path(&entry.instance).display()),
                instance: entry.instance,
                run_id: entry.run_id,
            },
        },
        Err(error) => {
            entry.failures += 1;
            entry.last_error = Some(error.clone());
            let _ = ledger.record(&entry);
            SweepOutcome::Failed {
                instance: entry.instance,
                run_id: entry.run_id,
                error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(instance: &str, run_id: &str) -> PendingDelete {
        PendingDelete {
            endpoint: "unix:/x".into(),
            project: "p".into(),
            instance: instance.into(),
            run_id: run_id.into(),
            job_id: "j".into(),
            stage: None,
            since: "t".into(),
            failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = CleanupLedger::new(&RunStore::new(dir.path()));
        assert_eq!(ledger.entries().unwrap(), (vec![], vec![]));
        ledger.record(&entry("b", "r1")).unwrap();
        ledger.record(&entry("a", "r1")).unwrap();
        fs::write(ledger.dir().join("junk.json"), "{").unwrap();
        let (entries, bad) = ledger.entries().unwrap();
        assert_eq!(entries, [entry("a", "r1"), entry("b", "r1")]);
        assert_eq!(bad, [ledger.dir().join("junk.json")]);
        ledger.remove("a").unwrap();
        ledger.remove("a").unwrap();
        assert_eq!(ledger.entries().unwrap().0, [entry("b", "r1")]);
    }

    #[test]
    fn a_run_is_live_while_its_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = CleanupLedger::new(&RunStore::new(dir.path()));
        assert!(ledger.run_is_over("never-locked", false));
        let lock = ledger.lock_run("r1").unwrap();
        assert!(!ledger.run_is_over("r1", false));
        drop(lock);
        assert!(ledger.run_is_over("r1", false));
        assert!(ledger.run_is_over("r1", true));
    }
}
