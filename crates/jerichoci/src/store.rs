//! The state dir: one directory per run holding `run.json` and one `<job>.log` per job.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::record::RunRecord;

/// File name of a run's record inside its directory.
pub const RUN_RECORD_FILE: &str = "run.json";

/// Why the state dir could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a run record: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no run {run:?} in {dir}; known runs: {known}")]
    UnknownRun {
        run: String,
        dir: PathBuf,
        known: String,
    },
    #[error("no runs in {dir} yet")]
    NoRuns { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A job ID as a file name: anything but `[A-Za-z0-9._-]` becomes `_`.
fn safe_file_name(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Run records under one directory (`PIKACI_STATE_DIR`, default `.pikaci/runs/`).
#[derive(Clone, Debug)]
pub struct RunStore {
    dir: PathBuf,
}

impl RunStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of run `run_id`.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.dir.join(run_id)
    }

    /// Where job `job_id` of run `run_id` logs its output.
    pub fn log_path(&self, run_id: &str, job_id: &str) -> PathBuf {
        self.run_dir(run_id)
            .join(format!("{}.log", safe_file_name(job_id)))
    }

    /// Where job `job_id` of run `run_id` stages its snapshot for a mount (removed after the job).
    pub fn snapshot_stage_path(&self, run_id: &str, job_id: &str) -> PathBuf {
        self.run_dir(run_id)
            .join(format!("{}.snapshot", safe_file_name(job_id)))
    }

    /// Creates the run's directory.
    pub fn create_run(&self, run_id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.run_dir(run_id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Writes `record` atomically (temp file + rename), so readers never see half a record.
    pub fn write(&self, record: &RunRecord) -> Result<PathBuf, StoreError> {
        let dir = self.create_run(&record.run_id)?;
        let path = dir.join(RUN_RECORD_FILE);
        let tmp = dir.join(format!(".{RUN_RECORD_FILE}.tmp"));
        let mut json = serde_json::to_vec_pretty(record).expect("run records always serialize");
        json.push(b'\n');
        fs::write(&tmp, json).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Reads run `run` (`latest` means the newest run).
    pub fn read(&self, run: &str) -> Result<RunRecord, StoreError> {
        let run_id = if run == "latest" {
            self.run_ids()?.pop().ok_or_else(|| StoreError::NoRuns {
                dir: self.dir.clone(),
            })?
        } else {
            run.to_owned()
        };
        let path = self.run_dir(&run_id).join(RUN_RECORD_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let known = self.run_ids()?;
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(StoreError::UnknownRun {
                    run: run_id,
                    dir: self.dir.clone(),
                    known,
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode { path, source })
    }

    /// IDs of the runs that have a record, oldest first (run IDs sort by start time).
    pub fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            if entry.path().join(RUN_RECORD_FILE).is_file() {
                ids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;

    #[test]
    fn records_round_trip_and_latest_is_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path().join("runs"));
        assert!(matches!(
            store.read("latest"),
            Err(StoreError::NoRuns { .. })
        ));
        let mut a = RunRecord::new("20260101-000000-0001", "t1");
        a.status = RunStatus::Passed;
        let b = RunRecord::new("20260102-000000-0001", "t2");
        store.write(&b).unwrap();
        store.write(&a).unwrap();
        assert_eq!(store.read("20260101-000000-0001").unwrap(), a);
        assert_eq!(store.read("latest").unwrap(), b);
        assert_eq!(
            store.run_ids().unwrap(),
            ["20260101-000000-0001", "20260102-000000-0001"]
        );
    }

    #[test]
    fn unknown_run_lists_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        store.write(&RunRecord::new("r1", "t")).unwrap();
        let msg = store.read("r2").unwrap_err().to_string();
        assert!(
            msg.contains("\"r2\"") && msg.contains("known runs: r1"),
            "{msg}"
        );
    }

    #[test]
    fn log_paths_stay_inside_the_run_dir() {
        let store = RunStore::new("/state");
        assert_eq!(
            store.log_path("r", "../x/y"),
            PathBuf::from("/state/r/.._x_y.log")
        );
    }
}
