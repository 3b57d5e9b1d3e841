//! Run records: what happened to every job, phase by phase. Written as JSON under the state dir.

use std::fmt;

use pika_incus_guest_role::IncusGuestRole;
use serde::{Deserialize, Serialize};

/// Version of the run record layout, bumped on incompatible changes.
pub const RUN_RECORD_SCHEMA: u32 = 1;

/// One `pikaci run`: its jobs in the order they ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: u32,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub jobs: Vec<JobRecord>,
}

impl RunRecord {
    /// A fresh, running record.
    pub fn new(run_id: impl Into<String>, started_at: impl Into<String>) -> Self {
        Self {
            schema: RUN_RECORD_SCHEMA,
            run_id: run_id.into(),
            started_at: started_at.into(),
            finished_at: None,
            status: RunStatus::Running,
            jobs: Vec::new(),
        }
    }

    /// The worst job status, `Passed` for a run without jobs.
    pub fn worst_job_status(&self) -> JobStatus {
        self.jobs
            .iter()
            .map(|j| j.status)
            .max()
            .unwrap_or(JobStatus::Passed)
    }
}

/// State of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Passed,
    Failed,
    Interrupted,
}

/// Outcome of a job, ordered from best to worst (a run's exit code follows its worst job).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    /// The command exited 0.
    Passed,
    /// The command exited non-zero.
    Failed,
    /// The command ran longer than the job's timeout and was killed.
    TimedOut,
    /// The job could not run its command (launch, upload or Incus failed).
    Error,
    /// Ctrl-C stopped the job.
    Interrupted,
}

impl JobStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed-out",
            JobStatus::Error => "error",
            JobStatus::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    /// The command that ran (the staged Linux command for Incus jobs that have one).
    pub command: String,
    /// `host` or `incus`.
    pub runtime: String,
    pub status: JobStatus,
    /// The command's exit status, when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the job is `error`/`timed-out`, naming what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's output (stdout and stderr, interleaved).
    pub log_path: String,
    pub duration_ms: u64,
    /// Host jobs: the single `run` phase. Incus jobs: the same phases as `remote_linux_vm.phases`.
    pub phases: Vec<PhaseRecord>,
    /// Incus jobs only: where and on which image the job ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_linux_vm: Option<RemoteLinuxVmExecutionRecord>,
}

impl JobRecord {
    /// The record of a job that is starting: status `error` until a runner says otherwise, no
    /// phases yet.
    pub fn starting(
        job_id: impl Into<String>,
        command: impl Into<String>,
        runtime: impl Into<String>,
        log_path: impl Into<String>,
    ) -> Self {
        JobRecord {
            job_id: job_id.into(),
            command: command.into(),
            runtime: runtime.into(),
            status: JobStatus::Error,
            exit_code: None,
            error: None,
            log_path: log_path.into(),
            duration_ms: 0,
            phases: Vec::new(),
            remote_linux_vm: None,
        }
    }
}

/// How an Incus job ran: backend, image and phases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLinuxVmExecutionRecord {
    /// Always `incus` today.
    pub backend: String,
    /// The image the guest was launched from; `None` when the alias could not be resolved.
    #[serde(default)]
    pub incus_image: Option<RemoteLinuxVmImageRecord>,
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    /// The ephemeral instance (deleted by the `cleanup` phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// How the snapshot reached the guest; `None` before it was decided (and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_transfer: Option<SnapshotTransfer>,
    /// The Incus cluster member the guest ran on (absent off a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// How the workspace snapshot reaches an Incus guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotTransfer {
    /// Staged in a host directory and attached as the role's read-only `snapshot` disk device.
    Mount,
    /// Pushed as a tar through the Incus files API and unpacked in the guest.
    Upload,
}

/// The Incus image a job ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLinuxVmImageRecord {
    /// The role the image belongs to; `None` when a custom alias was used (it may not be the role's
    /// image) and in records written before roles existed. Older records call it `role`.
    #[serde(default, alias = "role", skip_serializing_if = "Option::is_none")]
    pub guest_role: Option<IncusGuestRole>,
    pub project: String,
    pub alias: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Who built that image from what (its `pika.*` properties); `None` when unknown, or in
    /// records written before images carried provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<pika_incus::ImageProvenance>,
}

/// The steps of a job. Incus jobs go through all five; host jobs only `run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Create and start the ephemeral instance with the role's contract (and resolve the image
    /// fingerprint), then wait until it is ready by the role's readiness.
    Launch,
    /// Deliver the workspace snapshot: stage it in a host directory for the mount (before the
    /// launch), or push it and unpack it in the guest (after the launch).
    Upload,
    /// Run the command.
    Run,
    /// Copy the rest of the command's output into the log file (it is copied while it runs too).
    Collect,
    /// Delete the instance (`deferred` with background cleanup: after the record is written).
    Cleanup,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Launch => "launch",
            Phase::Upload => "upload",
            Phase::Run => "run",
            Phase::Collect => "collect",
            Phase::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseStatus {
    Ok,
    Failed,
    TimedOut,
    Interrupted,
    /// `cleanup` with background cleanup: handed to a task after the record; the ledger of
    /// pending deletes tracks it until the instance is gone (`jerichoci::cleanup`).
    Deferred,
}

/// One phase of a job with its duration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub status: PhaseStatus,
    pub duration_ms: u64,
    /// `run` phase: the command's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(guest_role: Option<IncusGuestRole>) -> RemoteLinuxVmImageRecord {
        RemoteLinuxVmImageRecord {
            guest_role,
            project: "pika-managed-agents".into(),
            alias: IncusGuestRole::PikaciRunner.default_image_alias().into(),
            fingerprint: Some("abc123".into()),
            provenance: None,
        }
    }

    #[test]
    fn legacy_image_record_without_guest_role_decodes_to_none() {
        let json = r#"{"project":"p","alias":"some/alias","fingerprint":"f"}"#;
        let rec: RemoteLinuxVmImageRecord = serde_json::from_str(json).unwrap();
        assert_eq!(rec.guest_role, None);
        assert_eq!(rec.alias, "some/alias");
        assert_eq!(rec.fingerprint.as_deref(), Some("f"));
    }

    #[test]
    fn image_record_with_the_old_role_key_decodes() {
        let json = r#"{"role":"pikaci-runner","project":"p","alias":"a","fingerprint":null}"#;
        let rec: RemoteLinuxVmImageRecord = serde_json::from_str(json).unwrap();
        assert_eq!(rec.guest_role, Some(IncusGuestRole::PikaciRunner));
        assert_eq!(rec.fingerprint, None);
    }

    #[test]
    fn image_record_with_an_unknown_role_is_rejected() {
        let json = r#"{"guest_role":"nope","project":"p","alias":"a"}"#;
        let err = serde_json::from_str::<RemoteLinuxVmImageRecord>(json).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn encoding_writes_guest_role_and_omits_it_when_none() {
        let with = serde_json::to_value(image(Some(IncusGuestRole::PikaciRunner))).unwrap();
        assert_eq!(with["guest_role"], "pikaci-runner");
        assert!(with.get("role").is_none());

        let without = serde_json::to_value(image(None)).unwrap();
        let obj = without.as_object().unwrap();
        assert!(!obj.contains_key("guest_role"), "{without}");
        assert!(!obj.contains_key("role"), "{without}");
        assert_eq!(
            without["alias"],
            IncusGuestRole::PikaciRunner.default_image_alias()
        );
    }

    #[test]
    fn legacy_execution_record_without_image_decodes() {
        let json = r#"{"backend":"incus"}"#;
        let rec: RemoteLinuxVmExecutionRecord = serde_json::from_str(json).unwrap();
        assert_eq!(rec.incus_image, None);
        assert!(rec.phases.is_empty());
    }

    #[test]
    fn worst_job_status_orders_error_above_failure() {
        let mut run = RunRecord::new("r", "t");
        assert_eq!(run.worst_job_status(), JobStatus::Passed);
        for status in [
            JobStatus::Failed,
            JobStatus::Passed,
            JobStatus::Error,
            JobStatus::TimedOut,
        ] {
            run.jobs.push(JobRecord {
                status,
                ..JobRecord::starting(status.to_string(), "true", "host", "")
            });
        }
        assert_eq!(run.worst_job_status(), JobStatus::Error);
    }
}
