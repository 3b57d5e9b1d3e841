//! jerichoci: the CI executor behind `pikaci`.
//!
//! A [`JobSpec`] is a shell command plus a runtime: [`JobRuntimeConfig::HostProcess`] runs it with
//! `sh -c` in the workspace; [`JobRuntimeConfig::Incus`] runs it in an ephemeral Incus instance of a
//! guest role ([`IncusGuestRole`](pika_incus_guest_role::IncusGuestRole), `pikaci-runner` for CI) on a snapshot of the workspace.
//!
//! An Incus job goes through five phases, each recorded with its duration ([`Phase`]):
//! `launch` (create + start the instance from the role's image alias while the snapshot tar is
//! built), `upload` (push the tar of `git ls-files -co --exclude-standard`, unpack it into
//! `/workspace/snapshot`), `run` (`sh -c` there; stdout and stderr go to one guest file that is
//! copied into the job's log file every second while the command runs), `collect` (copy the rest,
//! also after a timeout or Ctrl-C) and `cleanup` (delete the instance; this runs on success,
//! failure, timeout and Ctrl-C alike; with [`Executor::with_background_cleanup`] after the job's
//! record, off its critical path, tracked by the [`cleanup`] ledger until the instance is gone).
//!
//! Where it runs comes from [`RemoteIncusContext`]: the `PIKACI_REMOTE_LINUX_VM_INCUS_*` environment
//! ([`remote`]) over the job's own config. The image record attributes the image to the role only
//! when the alias is the role's default ([`RemoteIncusContext::recorded_guest_role`]).
//!
//! ```no_run
//! use jerichoci::{Executor, JobSpec, RunStore, naming::new_run_id, remote};
//! use pika_incus_guest_role::IncusGuestRole;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let incus = remote::incus_client_from(remote::process_env)?;
//! let executor = Executor::new(RunStore::new(".pikaci/runs"), ".").with_incus(incus);
//! let job = JobSpec::incus("unit", "cargo test --workspace", IncusGuestRole::PikaciRunner);
//! let record = executor.run(&new_run_id(), &[job]).await?;
//! println!("{}", serde_json::to_string_pretty(&record)?);
//! # Ok(())
//! # }
//! ```

pub mod cleanup;
pub mod executor;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod job;
pub mod naming;
pub mod record;
pub mod remote;
pub mod snapshot;
pub mod store;

pub use cleanup::{CleanupLedger, PendingDelete, SweepOutcome, sweep};
pub use executor::{EnvLookup, Executor, Progress, ProgressSink, RunError};
pub use job::{IncusRuntimeConfig, JobRuntimeConfig, JobSpec};
pub use record::{
    JobRecord, JobStatus, Phase, PhaseRecord, PhaseStatus, RemoteLinuxVmExecutionRecord,
    RemoteLinuxVmImageRecord, RunRecord, RunStatus, SnapshotTransfer,
};
pub use remote::{
    RemoteIncusContext, RemoteIncusError, load_remote_incus_image_record,
    remote_linux_vm_incus_guest_role, remote_linux_vm_incus_guest_role_from,
    remote_linux_vm_incus_image_alias, remote_linux_vm_incus_image_alias_from,
};
pub use store::RunStore;
