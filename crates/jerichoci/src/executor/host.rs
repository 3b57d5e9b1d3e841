//! The host runner: a job's command with `sh -c` in the workspace, no guest.

use std::fs::File;
use std::time::Instant;

use super::{Executor, RunOutcome, UNLIMITED};
use crate::job::JobSpec;
use crate::record::JobRecord;

impl Executor {
    pub(super) async fn run_host(&self, job: &JobSpec, log: File, record: &mut JobRecord) {
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
