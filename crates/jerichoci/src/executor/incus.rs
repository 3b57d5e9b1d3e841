//! The Incus runner: a job in an ephemeral guest of its role (launch, upload, run, collect,
//! cleanup), the cleanup in the background when asked.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use pika_guest_launch::{MountSources, apply_contract, launch};
use pika_incus::{ExecRequest, InstanceCreate, ProjectClient};
use pika_incus_guest_role::IncusGuestRole;

use super::staging::{SNAPSHOT_MOUNT, SnapshotSource, StageGuard, snapshot_plan};
use super::{Executor, Progress, RunOutcome, UNLIMITED, millis};
use crate::cleanup::PendingDelete;
use crate::job::JobSpec;
use crate::naming::now_rfc3339;
use crate::record::{
    JobRecord, JobStatus, Phase, PhaseRecord, PhaseStatus, RemoteLinuxVmExecutionRecord,
    RemoteLinuxVmImageRecord, SnapshotTransfer,
};
use crate::remote::RemoteIncusContext;
use crate::snapshot::build_snapshot;

/// Where the command's output goes in the guest (copied into the job log while it runs).
pub const GUEST_OUTPUT: &str = "/tmp/pikaci-job-output";
/// How often the output is copied while the command runs (a log over [`BIG_OUTPUT`]: 10 s).
const STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// Output size from which the guest file is copied less often (each copy reads the whole file).
const BIG_OUTPUT: usize = 8 << 20;
/// Extra time given to Incus's own wait, so the executor's timeout fires first.
const WAIT_SLACK: Duration = Duration::from_secs(30);

impl Executor {
    pub(super) async fn run_incus(
        &self,
        run_id: &str,
        job: &JobSpec,
        mut log: File,
        record: &mut JobRecord,
    ) {
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

/// The cluster group the job's guest goes to: the context's (env, else role), when the Incus
/// server is a cluster; a standalone server has no groups.
async fn placement_group(project: &ProjectClient, context: &RemoteIncusContext) -> Option<String> {
    let group = context.cluster_group.clone()?;
    match project.client().server_info().await {
        Ok(info) if info.environment.server_clustered => Some(group),
        _ => None,
    }
}
