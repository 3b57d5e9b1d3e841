//! Running jobs: on the host, or in an ephemeral Incus instance (launch, upload, run, collect,
//! cleanup), writing the run record after every job.
//!
//! This module holds the [`Executor`] (its settings, the run loop, the phase records); the
//! runners are its children: `host` (`sh -c` in the workspace), `incus` (a guest of the
//! job's role) and `staging` (how the workspace snapshot reaches the guest: a mounted staged
//! directory or an uploaded tar).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pika_incus::IncusClient;
use tokio::sync::watch;

use crate::cleanup::CleanupLedger;
use crate::job::{JobRuntimeConfig, JobSpec};
use crate::naming::now_rfc3339;
use crate::record::{JobRecord, JobStatus, Phase, PhaseRecord, PhaseStatus, RunRecord, RunStatus};
use crate::remote::{RemoteIncusContext, RemoteIncusError, process_env};
use crate::store::{RunStore, StoreError};

mod host;
mod incus;
mod staging;

pub use incus::GUEST_OUTPUT;
pub use staging::{GUEST_SNAPSHOT_DIR, GUEST_SNAPSHOT_TAR, SNAPSHOT_MOUNT};

/// Limit of a command without a job timeout.
const UNLIMITED: Duration = Duration::from_secs(7 * 24 * 3600);
/// An env lookup shared by the executor (tests pass their own instead of the process env).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the executor reports while it works (pikaci prints these as live progress).
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    JobStarted {
        job: &'a JobSpec,
        log_path: &'a Path,
    },
    /// Incus jobs: where the job runs, before the launch.
    Placed {
        job: &'a JobSpec,
        context: &'a RemoteIncusContext,
    },
    PhaseFinished {
        job: &'a JobSpec,
        phase: &'a PhaseRecord,
    },
    JobFinished {
        job: &'a JobSpec,
        record: &'a JobRecord,
    },
}

/// A progress callback.
pub type ProgressSink = Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// Runs jobs and records them. Build with [`Executor::new`] and the `with_*` setters.
#[derive(Clone)]
pub struct Executor {
    store: RunStore,
    workspace: PathBuf,
    snapshot_exclude: Vec<PathBuf>,
    incus: Option<IncusClient>,
    env: EnvLookup,
    cancel: watch::Receiver<bool>,
    progress: ProgressSink,
    force_upload: bool,
    background: Option<Background>,
}

/// Background cleanup: the ledger, the run locks this executor holds, and the delete tasks.
#[derive(Clone)]
struct Background {
    ledger: CleanupLedger,
    locks: Arc<std::sync::Mutex<Vec<File>>>,
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl Executor {
    /// An executor writing records to `store`, running jobs on the workspace `workspace` (a git
    /// working tree). Without [`Executor::with_incus`], Incus jobs fail with an error.
    pub fn new(store: RunStore, workspace: impl Into<PathBuf>) -> Self {
        let workspace = workspace.into();
        // Runs written inside the workspace never go into its snapshot.
        let snapshot_exclude = store
            .dir()
            .strip_prefix(&workspace)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(Path::to_owned)
            .into_iter()
            .collect();
        Self {
            store,
            workspace,
            snapshot_exclude,
            incus: None,
            env: Arc::new(process_env),
            cancel: watch::channel(false).1,
            progress: Arc::new(|_| {}),
            force_upload: false,
            background: None,
        }
    }

    /// Deletes each job's instance off the job's critical path: the job's record is written with
    /// its `cleanup` phase `deferred` and the delete runs in a task, tracked in the
    /// [`CleanupLedger`] of the state dir from before the launch until Incus says the instance is
    /// gone (see [`crate::cleanup`]). [`Executor::finish_cleanups`] waits for the tasks.
    pub fn with_background_cleanup(mut self, on: bool) -> Self {
        self.background = on.then(|| Background {
            ledger: CleanupLedger::new(&self.store),
            locks: Arc::default(),
            tasks: Arc::default(),
        });
        self
    }

    /// The ledger of pending deletes of this executor's state dir.
    pub fn cleanup_ledger(&self) -> CleanupLedger {
        CleanupLedger::new(&self.store)
    }

    /// Waits for the background deletes started so far (a no-op without background cleanup).
    pub async fn finish_cleanups(&self) {
        let Some(background) = &self.background else {
            return;
        };
        loop {
            let mut tasks = std::mem::take(&mut *background.tasks.lock().expect("tasks lock"));
            if tasks.is_empty() {
                return;
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Stops the background deletes still running (their ledger entries stay for the next sweep)
    /// and says whether any was unfinished.
    pub fn abandon_cleanups(&self) -> bool {
        let Some(background) = &self.background else {
            return false;
        };
        let mut tasks = background.tasks.lock().expect("tasks lock");
        let unfinished = !tasks.is_empty();
        tasks.abort_all();
        while tasks.try_join_next().is_some() {}
        unfinished
    }

    /// Uploads the snapshot even where it could be mounted (the benchmark compares both).
    pub fn force_snapshot_upload(mut self, force: bool) -> Self {
        self.force_upload = force;
        self
    }

    pub fn with_incus(mut self, incus: IncusClient) -> Self {
        self.incus = Some(incus);
        self
    }

    /// Reads the `PIKACI_REMOTE_LINUX_VM_INCUS_*` variables through `env` instead of the process env.
    pub fn with_env(mut self, env: EnvLookup) -> Self {
        self.env = env;
        self
    }

    /// Stops the run when `cancel` turns `true` (Ctrl-C): the running job's instance is deleted, the
    /// job is recorded as interrupted and no further job starts.
    pub fn with_cancel(mut self, cancel: watch::Receiver<bool>) -> Self {
        self.cancel = cancel;
        self
    }

    pub fn with_progress(mut self, progress: ProgressSink) -> Self {
        self.progress = progress;
        self
    }

    /// Also keeps `rel` (relative to the workspace) out of snapshots.
    pub fn exclude_from_snapshot(mut self, rel: impl Into<PathBuf>) -> Self {
        self.snapshot_exclude.push(rel.into());
        self
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// Resolves where `job` would run, without touching Incus: `None` for host jobs, an error for an
    /// invalid `PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE`. Call it for every job before a run so a bad
    /// environment fails before any instance exists.
    pub fn place(
        &self,
        run_id: &str,
        job: &JobSpec,
    ) -> Result<Option<RemoteIncusContext>, RemoteIncusError> {
        match job.runtime {
            JobRuntimeConfig::HostProcess => Ok(None),
            JobRuntimeConfig::Incus(_) => {
                RemoteIncusContext::for_job_from(job, run_id, |name| (self.env)(name)).map(Some)
            }
        }
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    async fn wait_cancel(&self) {
        let mut cancel = self.cancel.clone();
        // An executor without a sender never cancels.
        if cancel.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs `jobs` one after the other as run `run_id`, writing the record after each job. Stops
    /// early when cancelled. The placement of every job is checked first (see [`Executor::place`]).
    pub async fn run(&self, run_id: &str, jobs: &[JobSpec]) -> Result<RunRecord, RunError> {
        for job in jobs {
            self.place(run_id, job)?;
        }
        let mut record = RunRecord::new(run_id, now_rfc3339());
        self.store.write(&record)?;
        if let Some(background) = &self.background {
            // Held for the life of the process: a sweep leaves this run's guests alone meanwhile.
            let lock = background
                .ledger
                .lock_run(run_id)
                .map_err(|source| StoreError::Io {
                    path: self.store.run_dir(run_id),
                    source,
                })?;
            background.locks.lock().expect("locks lock").push(lock);
        }
        for job in jobs {
            if self.cancelled() {
                break;
            }
            let job_record = self.run_job(run_id, job).await;
            record.jobs.push(job_record);
            self.store.write(&record)?;
        }
        record.finished_at = Some(now_rfc3339());
        record.status = if self.cancelled() {
            RunStatus::Interrupted
        } else if record.worst_job_status() == JobStatus::Passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        self.store.write(&record)?;
        Ok(record)
    }

    /// Runs one job and returns its record (never fails: failures are in the record).
    pub async fn run_job(&self, run_id: &str, job: &JobSpec) -> JobRecord {
        let started = Instant::now();
        let log_path = self.store.log_path(run_id, &job.id);
        (self.progress)(Progress::JobStarted {
            job,
            log_path: &log_path,
        });
        let mut record = JobRecord::starting(
            job.id.clone(),
            job.effective_command(),
            job.runtime.kind(),
            log_path.display().to_string(),
        );
        let log = self
            .store
            .create_run(run_id)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))
            });
        match log {
            Err(e) => record.error = Some(format!("cannot create the job log: {e}")),
            Ok(log) => match &job.runtime {
                JobRuntimeConfig::HostProcess => self.run_host(job, log, &mut record).await,
                JobRuntimeConfig::Incus(_) => self.run_incus(run_id, job, log, &mut record).await,
            },
        }
        record.duration_ms = millis(started.elapsed());
        (self.progress)(Progress::JobFinished {
            job,
            record: &record,
        });
        record
    }

    fn phase_done(&self, job: &JobSpec, record: &mut JobRecord, phase: PhaseRecord) {
        (self.progress)(Progress::PhaseFinished { job, phase: &phase });
        if let Some(remote) = &mut record.remote_linux_vm {
            remote.phases.push(phase.clone());
        }
        record.phases.push(phase);
    }

    fn finish_run_phase(
        &self,
        job: &JobSpec,
        record: &mut JobRecord,
        started: Instant,
        outcome: RunOutcome,
    ) {
        let (status, phase_status, exit_code, error) = match outcome {
            RunOutcome::Exited(0) => (JobStatus::Passed, PhaseStatus::Ok, Some(0), None),
            RunOutcome::Exited(code) => (JobStatus::Failed, PhaseStatus::Failed, Some(code), None),
            RunOutcome::TimedOut(limit) => (
                JobStatus::TimedOut,
                PhaseStatus::TimedOut,
                None,
                Some(format!(
                    "the command ran longer than its timeout of {}s",
                    limit.as_secs()
                )),
            ),
            RunOutcome::Interrupted => (
                JobStatus::Interrupted,
                PhaseStatus::Interrupted,
                None,
                Some("interrupted (Ctrl-C)".to_owned()),
            ),
            RunOutcome::Error(e) => (JobStatus::Error, PhaseStatus::Failed, None, Some(e)),
        };
        record.status = status;
        record.exit_code = exit_code;
        record.error.clone_from(&error);
        self.phase_done(
            job,
            record,
            PhaseRecord {
                phase: Phase::Run,
                status: phase_status,
                duration_ms: millis(started.elapsed()),
                exit_code,
                error,
            },
        );
    }

    fn check_cancel(&self, record: &mut JobRecord) -> Result<(), String> {
        if self.cancelled() {
            record.status = JobStatus::Interrupted;
            return Err("interrupted (Ctrl-C)".to_owned());
        }
        Ok(())
    }

    fn simple_phase(
        &self,
        job: &JobSpec,
        record: &mut JobRecord,
        phase: Phase,
        started: Instant,
        result: &Result<(), String>,
    ) {
        let interrupted = self.cancelled() && result.is_err();
        if interrupted {
            record.status = JobStatus::Interrupted;
        }
        self.phase_done(
            job,
            record,
            PhaseRecord {
                phase,
                status: match result {
                    Ok(()) => PhaseStatus::Ok,
                    Err(_) if interrupted => PhaseStatus::Interrupted,
                    Err(_) => PhaseStatus::Failed,
                },
                duration_ms: millis(started.elapsed()),
                exit_code: None,
                error: result.as_ref().err().cloned(),
            },
        );
    }
}

/// How the command ended.
enum RunOutcome {
    Exited(i32),
    TimedOut(Duration),
    Interrupted,
    Error(String),
}

/// Why a run could not start or its record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Placement(#[from] RemoteIncusError),
    #[error("cannot write the run record: {0}")]
    Store(#[from] StoreError),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
