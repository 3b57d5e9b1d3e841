//! Running jobs: on the host, or in an ephemeral Incus instance (launch, upload, run, collect,
//! cleanup), writing the run record after every job.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pika_guest_launch::{MountSources, apply_contract, launch};
use pika_incus::{ExecRequest, FileMode, IncusClient, InstanceCreate, ProjectClient};
use pika_incus_guest_role::IncusGuestRole;
use tokio::sync::watch;

use crate::cleanup::{CleanupLedger, PendingDelete};
use crate::job::{JobRuntimeConfig, JobSpec};
use crate::naming::now_rfc3339;
use crate::record::{
    JobRecord, JobStatus, Phase, PhaseRecord, PhaseStatus, RemoteLinuxVmExecutionRecord,
    RemoteLinuxVmImageRecord, RunRecord, RunStatus, SnapshotTransfer,
};
use crate::remote::{RemoteIncusContext, RemoteIncusError, process_env};
use crate::snapshot::{Snapshot, SnapshotError, build_snapshot, stage_snapshot};
use crate::store::{RunStore, StoreError};

/// The role mount jerichoci fills with the workspace snapshot (pikaci-runner declares it in
/// roles.toml; its guest path is where commands run).
pub const SNAPSHOT_MOUNT: &str = "snapshot";
/// Where the snapshot is unpacked for a role without a [`SNAPSHOT_MOUNT`] mount.
pub const GUEST_SNAPSHOT_DIR: &str = "/workspace/snapshot";
/// Where the snapshot tar is pushed before it is unpacked (and removed).
pub const GUEST_SNAPSHOT_TAR: &str = "/tmp/pikaci-snapshot.tar";
/// Where the command's output goes in the guest (copied into the job log while it runs).
pub const GUEST_OUTPUT: &str = "/tmp/pikaci-job-output";
/// How often the output is copied while the command runs (a log over [`BIG_OUTPUT`]: 10 s).
const STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// Output size from which the guest file is copied less often (each copy reads the whole file).
const BIG_OUTPUT: usize = 8 << 20;
/// Limit of a command without a job timeout.
const UNLIMITED: Duration = Duration::from_secs(7 * 24 * 3600);
/// Extra time given to Incus's own wait, so the executor's timeout fires first.
const WAIT_SLACK: Duration = Duration::from_secs(30);

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

/// How a job's snapshot gets into its guest, and where the guest sees it.
struct SnapshotPlan {
    transfer: SnapshotTransfer,
    guest_dir: &'static str,
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
        let mut record = JobRecord {
            job_id: job.id.clone(),
            command: job.effective_command().to_owned(),
            runtime: job.runtime.kind().to_owned(),
            status: JobStatus::Error,
            exit_code: None,
            error: None,
            log_path: log_path.display().to_string(),
            duration_ms: 0,
            phases: Vec::new(),
            remote_linux_vm: None,
        };
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

    // ---- host ------------------------------------------------------------------------------------

    async fn run_host(&self, job: &JobSpec, log: File, record: &mut JobRecord) {
        let started = Instant::now();
        let spawned = log.try_clone().and_then(|err_log| {
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(job.effective_command())
                .current_dir(&self.workspace)
                .stdin(std::process::Stdio::null())
                .stdout(log)
                .stderr(err_log)
                .kill_on_drop(true)
                .spawn()
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let error = format!("cannot start `sh -c` in {}: {e}", self.workspace.display());
                self.finish_run_phase(job, record, started, RunOutcome::Error(error));
                return;
            }
        };
        let limit = job.timeout.unwrap_or(UNLIMITED);
        let outcome = tokio::select! {
            status = tokio::time::timeout(limit, child.wait()) => match status {
                Ok(Ok(status)) => RunOutcome::Exited(status.code().unwrap_or(128 + signal_of(&status))),
                Ok(Err(e)) => RunOutcome::Error(format!("waiting for the command: {e}")),
                Err(_) => RunOutcome::TimedOut(limit),
            },
            () = self.wait_cancel() => RunOutcome::Interrupted,
        };
        if !matches!(outcome, RunOutcome::Exited(_) | RunOutcome::Error(_)) {
            let _ = child.kill().await;
        }
        self.finish_run_phase(job, record, started, outcome);
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

    // ---- incus -----------------------------------------------------------------------------------

    async fn run_incus(&self, run_id: &str, job: &JobSpec, mut log: File, record: &mut JobRecord) {
        let context = match self.place(run_id, job) {
            Ok(Some(context)) => context,
            Ok(None) => unreachable!("run_incus is only called for Incus jobs"),
            Err(e) => {
                record.error = Some(e.to_string());
                let _ = writeln!(log, "jerichoci: {e}");
                return;
            }
        };
        (self.progress)(Progress::Placed {
            job,
            context: &context,
        });
        record.remote_linux_vm = Some(RemoteLinuxVmExecutionRecord {
            backend: "incus".to_owned(),
            incus_image: None,
            phases: Vec::new(),
            instance_name: Some(context.instance_name.clone()),
            profile: Some(context.profile.clone()),
            snapshot_transfer: None,
            location: None,
        });
        let Some(incus) = &self.incus else {
            record.error = Some(format!(
                "job `{}` runs on Incus but the executor has no Incus client",
                job.id
            ));
            return;
        };
        let project = incus.in_project(&context.project);
        let plan = snapshot_plan(context.guest_role, incus.is_local(), self.force_upload);
        if let Some(remote) = &mut record.remote_linux_vm {
            remote.snapshot_transfer = Some(plan.transfer);
        }
        let mut stage = StageGuard(None);
        let snapshot = match plan.transfer {
            SnapshotTransfer::Mount => {
                let path = self.store.snapshot_stage_path(run_id, &job.id);
                stage.0 = Some(path.clone());
                SnapshotSource::Stage(path)
            }
            // The tar is built while the instance launches.
            SnapshotTransfer::Upload => {
                let workspace = self.workspace.clone();
                let exclude = self.snapshot_exclude.clone();
                SnapshotSource::Tar(tokio::task::spawn_blocking(move || {
                    build_snapshot(&workspace, &exclude)
                }))
            }
        };

        // Background cleanup: the pending delete is on disk before the instance can exist.
        let pending = self.background.as_ref().map(|background| {
            let entry = PendingDelete {
                endpoint: incus.endpoint().to_owned(),
                project: context.project.clone(),
                instance: context.instance_name.clone(),
                run_id: run_id.to_owned(),
                job_id: job.id.clone(),
                stage: stage.0.clone(),
                since: now_rfc3339(),
                failures: 0,
                last_error: None,
            };
            (background, entry)
        });
        if let Some((background, entry)) = &pending
            && let Err(e) = background.ledger.record(entry)
        {
            let e = format!(
                "cannot record the pending delete in {}: {e}",
                background.ledger.dir().display()
            );
            let _ = writeln!(log, "jerichoci: {e}");
            record.error = Some(e);
            return;
        }

        let mut guard = InstanceGuard::new(project.clone(), context.instance_name.clone());
        let outcome = self
            .incus_phases(
                job,
                &context,
                &project,
                (snapshot, plan.guest_dir),
                &mut guard,
                &mut log,
                record,
            )
            .await;

        // Cleanup runs on every path that may have created the instance, then the staged
        // snapshot goes (the instance no longer mounts it). In the background when asked: the
        // task owns the instance and the staged snapshot from here on.
        let started = Instant::now();
        let (cleanup, deferred) = match pending {
            Some((background, entry)) if guard.armed => {
                guard.armed = false;
                stage.0 = None;
                let (ledger, incus) = (background.ledger.clone(), incus.clone());
                background
                    .tasks
                    .lock()
                    .expect("tasks lock")
                    .spawn(async move {
                        crate::cleanup::settle(&ledger, &incus, entry).await;
                    });
                (Ok(()), true)
            }
            pending => {
                let cleanup = guard.cleanup().await.map_err(|e| e.to_string());
                let cleanup = cleanup.and_then(|()| stage.remove());
                if let (Ok(()), Some((background, entry))) = (&cleanup, pending) {
                    let _ = background.ledger.remove(&entry.instance);
                }
                (cleanup, false)
            }
        };
        let cleanup_error = cleanup.as_ref().err().cloned();
        self.phase_done(
            job,
            record,
            PhaseRecord {
                phase: Phase::Cleanup,
                status: match cleanup {
                    Ok(()) if deferred => PhaseStatus::Deferred,
                    Ok(()) => PhaseStatus::Ok,
                    Err(_) => PhaseStatus::Failed,
                },
                duration_ms: millis(started.elapsed()),
                exit_code: None,
                error: cleanup_error.clone(),
            },
        );
        match outcome {
            Ok(()) => {}
            Err(e) => {
                let _ = writeln!(log, "jerichoci: {e}");
                record.error.get_or_insert(e);
            }
        }
        if let Some(e) = cleanup_error {
            let _ = writeln!(log, "jerichoci: cleanup: {e}");
            if record.status == JobStatus::Passed {
                record.status = JobStatus::Error;
            }
            record.error.get_or_insert(format!("cleanup: {e}"));
        }
    }

    /// Stage (mount), launch, upload (tar), run, collect. Returns the error that stopped the job
    /// early (recorded in its phase already).
    #[allow(clippy::too_many_arguments)]
    async fn incus_phases(
        &self,
        job: &JobSpec,
        context: &RemoteIncusContext,
        project: &ProjectClient,
        (snapshot, guest_dir): (SnapshotSource, &'static str),
        guard: &mut InstanceGuard,
        log: &mut File,
        record: &mut JobRecord,
    ) -> Result<(), String> {
        // The optional mounts the operator gave host directories for (caches); the others stay
        // unattached.
        let mut sources: MountSources = context
            .mount_sources
            .iter()
            .map(|(name, dir)| (name.clone(), Some(dir.clone())))
            .collect();
        // upload, mount flavour: stage the snapshot before the launch (the device needs it).
        let snapshot = match snapshot {
            SnapshotSource::Stage(path) => {
                let started = Instant::now();
                let staged = self.stage(path).await;
                self.simple_phase(
                    job,
                    record,
                    Phase::Upload,
                    started,
                    &staged.as_ref().map(drop).map_err(Clone::clone),
                );
                sources.insert(SNAPSHOT_MOUNT.to_owned(), Some(staged?));
                self.check_cancel(record)?;
                None
            }
            SnapshotSource::Tar(tar) => {
                // The upload fills the mount's guest path instead of a device.
                if context
                    .guest_role
                    .mounts()
                    .iter()
                    .any(|m| m.name == SNAPSHOT_MOUNT)
                {
                    sources.insert(SNAPSHOT_MOUNT.to_owned(), None);
                }
                Some(tar)
            }
        };

        // launch: create and start with the role's contract, wait for its readiness.
        let started = Instant::now();
        guard.armed = true;
        let launched = tokio::select! {
            r = self.launch_guest(job, context, project, &sources, record) => r,
            () = self.wait_cancel() => Err("interrupted (Ctrl-C)".to_owned()),
        };
        self.simple_phase(job, record, Phase::Launch, started, &launched);
        launched?;
        if let (Ok(instance), Some(remote)) = (
            project.get_instance(&context.instance_name).await,
            &mut record.remote_linux_vm,
        ) {
            remote.location = Some(instance.location).filter(|l| !l.is_empty() && l != "none");
        }
        self.check_cancel(record)?;

        if let Some(tar) = snapshot {
            self.upload(job, context, project, tar, guest_dir, record)
                .await?;
        }

        self.run_and_collect(job, context, project, guest_dir, log, record)
            .await
    }

    /// Copies the workspace into `path` for the read-only mount; returns its absolute path.
    async fn stage(&self, path: PathBuf) -> Result<PathBuf, String> {
        let workspace = self.workspace.clone();
        let exclude = self.snapshot_exclude.clone();
        tokio::task::spawn_blocking(move || {
            stage_snapshot(&workspace, &exclude, &path)?;
            path.canonicalize().map_err(|source| SnapshotError::Stage {
                path: path.clone(),
                source,
            })
        })
        .await
        .map_err(|e| format!("snapshot task: {e}"))?
        .map_err(|e| format!("snapshot: {e}"))
    }

    /// Creates the instance from the alias with the role's contract (limits, instance config,
    /// the snapshot mount) and waits for the role's readiness; the alias goes into the record.
    async fn launch_guest(
        &self,
        job: &JobSpec,
        context: &RemoteIncusContext,
        project: &ProjectClient,
        sources: &MountSources,
        record: &mut JobRecord,
    ) -> Result<(), String> {
        let alias = project.get_image_alias(&context.image_alias).await;
        let fingerprint = alias.as_ref().ok().map(|a| a.target.clone());
        let provenance = match &fingerprint {
            Some(fingerprint) => crate::remote::image_provenance(project, fingerprint).await,
            None => None,
        };
        if let Some(remote) = &mut record.remote_linux_vm {
            remote.incus_image = Some(RemoteLinuxVmImageRecord {
                provenance,
                ..context.image_record(fingerprint)
            });
        }
        let alias = alias.map_err(|e| format!("launch: {e}"))?;
        let mut create = InstanceCreate::from_alias(&context.instance_name, &context.image_alias)
            .instance_type(alias.instance_type())
            .profiles([context.profile.as_str()])
            .description(format!("pikaci job {}", job.id))
            .ephemeral(true);
        if let Some(role) = context.recorded_guest_role() {
            // Labelled only when the image is the role's own (see recorded_guest_role).
            create = create.config(pika_incus_guest_role::GUEST_ROLE_CONFIG_KEY, role.as_str());
        }
        if let Some(group) = placement_group(project, context).await {
            create = create.target(pika_incus::api::cluster_group_target(&group));
        }
        let create = apply_contract(create, context.guest_role, sources)
            .map_err(|e| format!("launch: {e}"))?;
        launch(
            project,
            &create,
            context.guest_role,
            &[],
            context.ready_timeout,
        )
        .await
        .map(drop)
        .map_err(|e| format!("launch: {e}"))
    }

    /// upload, tar flavour: push the snapshot tar and unpack it at `guest_dir`.
    async fn upload(
        &self,
        job: &JobSpec,
        context: &RemoteIncusContext,
        project: &ProjectClient,
        snapshot: tokio::task::JoinHandle<Result<Snapshot, SnapshotError>>,
        guest_dir: &str,
        record: &mut JobRecord,
    ) -> Result<(), String> {
        let started = Instant::now();
        let uploaded = async {
            let snapshot = snapshot
                .await
                .map_err(|e| format!("snapshot task: {e}"))?
                .map_err(|e| format!("snapshot: {e}"))?;
            project
                .push_file(
                    &context.instance_name,
                    GUEST_SNAPSHOT_TAR,
                    snapshot.tar,
                    FileMode::default(),
                )
                .await
                .map_err(|e| format!("upload: {e}"))?;
            // The unpacked copy is the job's own (unlike the read-only mount): it belongs to the
            // user the job runs as.
            let chown = context
                .guest_role
                .user()
                .map(|u| format!(" && chown -R {}:{} {guest_dir}", u.uid, u.gid))
                .unwrap_or_default();
            let unpack = format!(
                "mkdir -p {guest_dir} && tar -xf {GUEST_SNAPSHOT_TAR} -C {guest_dir} && rm -f {GUEST_SNAPSHOT_TAR}{chown}"
            );
            let out = project
                .exec(
                    &context.instance_name,
                    &ExecRequest::new(["sh", "-c", unpack.as_str()]),
                )
                .await
                .map_err(|e| format!("upload: unpack: {e}"))?;
            if !out.success() {
                return Err(format!(
                    "upload: unpacking the snapshot exited {}: {}",
                    out.exit_code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(())
        };
        let uploaded = tokio::select! {
            r = uploaded => r,
            () = self.wait_cancel() => Err("interrupted (Ctrl-C)".to_owned()),
        };
        self.simple_phase(job, record, Phase::Upload, started, &uploaded);
        uploaded?;
        self.check_cancel(record)
    }

    /// run, then collect.
    async fn run_and_collect(
        &self,
        job: &JobSpec,
        context: &RemoteIncusContext,
        project: &ProjectClient,
        guest_dir: &str,
        log: &mut File,
        record: &mut JobRecord,
    ) -> Result<(), String> {
        // run: the command, stdout and stderr into one guest file (so the log keeps their order),
        // copied into the log while the command runs.
        let started = Instant::now();
        let limit = job.timeout.unwrap_or(UNLIMITED);
        let script = format!("exec >{GUEST_OUTPUT} 2>&1; exec sh -c \"$1\"");
        let exec = as_role_user(
            ExecRequest::new([
                "sh",
                "-c",
                script.as_str(),
                "pikaci",
                job.effective_command(),
            ])
            .cwd(guest_dir)
            .timeout(limit + WAIT_SLACK),
            context.guest_role,
        );
        let mut tail = OutputTail::default();
        let running = async {
            let exec = project.exec(&context.instance_name, &exec);
            tokio::pin!(exec);
            let mut next = tokio::time::Instant::now() + STREAM_INTERVAL;
            loop {
                tokio::select! {
                    result = &mut exec => break result,
                    () = tokio::time::sleep_until(next) => {
                        let _ = tail.pull(project, &context.instance_name, log).await;
                        next = tokio::time::Instant::now() + tail.interval();
                    }
                }
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(limit, running) => match r {
                Ok(Ok(out)) => RunOutcome::Exited(out.exit_code),
                Ok(Err(e)) => RunOutcome::Error(format!("run: {e}")),
                Err(_) => RunOutcome::TimedOut(limit),
            },
            () = self.wait_cancel() => RunOutcome::Interrupted,
        };
        let exited = matches!(outcome, RunOutcome::Exited(_));
        self.finish_run_phase(job, record, started, outcome);

        // collect: the rest of the output (also after a timeout or Ctrl-C: what the command wrote).
        let started = Instant::now();
        let collected = tail
            .pull(project, &context.instance_name, log)
            .await
            .map_err(|e| format!("collect: {e}"));
        self.simple_phase(job, record, Phase::Collect, started, &collected);
        if let Err(e) = collected
            && exited
        {
            record.status = JobStatus::Error;
            return Err(e);
        }
        Ok(())
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

/// The part of the guest output file already copied into the job log.
#[derive(Default)]
struct OutputTail {
    copied: usize,
}

impl OutputTail {
    /// Copies what the command wrote since the last pull into `log`.
    async fn pull(
        &mut self,
        project: &ProjectClient,
        instance: &str,
        log: &mut File,
    ) -> Result<(), String> {
        let bytes = project
            .pull_file(instance, GUEST_OUTPUT)
            .await
            .map_err(|e| e.to_string())?;
        if bytes.len() > self.copied {
            log.write_all(&bytes[self.copied..])
                .and_then(|()| log.flush())
                .map_err(|e| format!("writing the job log: {e}"))?;
            self.copied = bytes.len();
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        if self.copied > BIG_OUTPUT {
            STREAM_INTERVAL * 10
        } else {
            STREAM_INTERVAL
        }
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

/// `exec` as the role's unprivileged user (roles.toml `user`) when it has one: its uid and gid, and
/// `USER`, `LOGNAME` and `HOME` (`/home/NAME`, NixOS's home of a normal user) as a login would set
/// them (Incus exec sets root's otherwise). A role without a user runs commands as root.
fn as_role_user(exec: ExecRequest, role: IncusGuestRole) -> ExecRequest {
    match role.user() {
        Some(user) => exec
            .user(user.uid, user.gid)
            .env("USER", user.name)
            .env("LOGNAME", user.name)
            .env("HOME", format!("/home/{}", user.name)),
        None => exec,
    }
}

/// Mount when the role declares a [`SNAPSHOT_MOUNT`] and Incus shares this host's filesystem
/// (`local`: the unix socket); otherwise upload (an HTTPS endpoint cannot see a host directory).
/// The guest sees the snapshot at the mount's path either way.
fn snapshot_plan(role: IncusGuestRole, local: bool, force_upload: bool) -> SnapshotPlan {
    let mount = role.mounts().iter().find(|m| m.name == SNAPSHOT_MOUNT);
    let transfer = if mount.is_some() && local && !force_upload {
        SnapshotTransfer::Mount
    } else {
        SnapshotTransfer::Upload
    };
    SnapshotPlan {
        transfer,
        guest_dir: mount.map_or(GUEST_SNAPSHOT_DIR, |m| m.path),
    }
}

/// The snapshot of an Incus job: a host directory to stage (mount) or a tar being built (upload).
enum SnapshotSource {
    Stage(PathBuf),
    Tar(tokio::task::JoinHandle<Result<Snapshot, SnapshotError>>),
}

/// Owns a staged snapshot directory: [`StageGuard::remove`] deletes it; so does a drop.
struct StageGuard(Option<PathBuf>);

impl StageGuard {
    fn remove(&mut self) -> Result<(), String> {
        match self.0.take() {
            None => Ok(()),
            Some(path) => match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
                    "removing the staged snapshot {}: {e}",
                    path.display()
                )),
                _ => Ok(()),
            },
        }
    }
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Owns an instance that may exist: [`InstanceGuard::cleanup`] deletes it. Dropping an armed guard
/// without cleanup (a cancelled future) still deletes it, from a spawned task.
struct InstanceGuard {
    project: ProjectClient,
    name: String,
    armed: bool,
}

impl InstanceGuard {
    fn new(project: ProjectClient, name: String) -> Self {
        Self {
            project,
            name,
            armed: false,
        }
    }

    async fn cleanup(&mut self) -> Result<(), pika_incus::Error> {
        if !self.armed {
            return Ok(());
        }
        let result = self.project.remove_instance(&self.name).await;
        self.armed = false;
        result
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if self.armed
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let project = self.project.clone();
            let name = std::mem::take(&mut self.name);
            handle.spawn(async move {
                let _ = project.remove_instance(&name).await;
            });
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_status: &std::process::ExitStatus) -> i32 {
    0
}

/// The cluster group the job's guest goes to: the context's (env, else role), when the Incus
/// server is a cluster; a standalone server has no groups.
async fn placement_group(project: &ProjectClient, context: &RemoteIncusContext) -> Option<String> {
    let group = context.cluster_group.clone()?;
    match project.client().server_info().await {
        Ok(info) if info.environment.server_clustered => Some(group),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_mount(role: IncusGuestRole) -> Option<&'static str> {
        role.mounts()
            .iter()
            .find(|m| m.name == SNAPSHOT_MOUNT)
            .map(|m| m.path)
    }

    #[test]
    fn the_snapshot_is_mounted_only_locally_for_roles_with_the_mount() {
        let with: Vec<_> = IncusGuestRole::ALL
            .iter()
            .filter(|r| snapshot_mount(**r).is_some())
            .collect();
        assert!(
            !with.is_empty(),
            "some role of roles.toml declares `{SNAPSHOT_MOUNT}`"
        );
        for &role in IncusGuestRole::ALL {
            let local = snapshot_plan(role, true, false);
            let remote = snapshot_plan(role, false, false);
            let forced = snapshot_plan(role, true, true);
            match snapshot_mount(role) {
                Some(path) => {
                    assert_eq!(local.transfer, SnapshotTransfer::Mount, "{role}");
                    assert_eq!(local.guest_dir, path);
                    assert_eq!(
                        remote.guest_dir, path,
                        "the upload lands where the mount would"
                    );
                }
                None => {
                    assert_eq!(local.transfer, SnapshotTransfer::Upload, "{role}");
                    assert_eq!(local.guest_dir, GUEST_SNAPSHOT_DIR);
                }
            }
            // An HTTPS endpoint cannot see this host's directories: always the upload.
            assert_eq!(remote.transfer, SnapshotTransfer::Upload, "{role}");
            assert_eq!(forced.transfer, SnapshotTransfer::Upload, "{role}");
        }
    }
}
