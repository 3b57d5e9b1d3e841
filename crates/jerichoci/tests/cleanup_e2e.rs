//! Background cleanup against the real incusd: records first, deletes after, nothing leaks.

use std::sync::Arc;

use jerichoci::fixtures::{CiProject, guest_phases_deferred, phases, workspace};
use jerichoci::remote::{PROJECT_ENV, incus_client_from, process_env};
use jerichoci::{
    CleanupLedger, Executor, JobSpec, JobStatus, PendingDelete, PhaseStatus, RunStore,
    SweepOutcome, sweep,
};
use pika_incus::IncusClient;
use pika_incus_guest_role::IncusGuestRole;

fn executor(ws: &std::path::Path, project: &str) -> Executor {
    let project = project.to_owned();
    Executor::new(RunStore::new(ws.join(".pikaci/runs")), ws)
        .with_incus(incus_client_from(process_env).unwrap())
        .with_env(Arc::new(move |var| {
            (var == PROJECT_ENV).then(|| project.clone())
        }))
}

/// A project, a workspace and an [`executor`] in them that deletes guests in the background.
fn background(tag: &str) -> (CiProject, tempfile::TempDir, Executor) {
    let project = CiProject::new(tag);
    let ws = workspace("");
    let exec = executor(ws.path(), &project.name).with_background_cleanup(true);
    (project, ws, exec)
}

/// A sweep now deletes the one pending guest, after which the project and the ledger are empty.
async fn sweep_deletes_the_last_guest(
    ledger: &CleanupLedger,
    incus: &IncusClient,
    project: &CiProject,
) {
    let outcomes = sweep(ledger, incus, None).await.unwrap();
    assert!(
        matches!(outcomes.as_slice(), [SweepOutcome::Deleted { .. }]),
        "{outcomes:?}"
    );
    project.assert_no_instances();
    assert_eq!(ledger.entries().unwrap(), (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn records_are_written_before_the_delete_and_no_guest_outlives_it() {
    let (project, _ws, exec) = background("jci-bg");
    let role = IncusGuestRole::PikaciRunner;
    let jobs = [
        JobSpec::incus("one", "true", role),
        JobSpec::incus("two", "exit 3", role),
    ];
    let run = exec.run("bg-run", &jobs).await.unwrap();
    assert_eq!(run.jobs[0].status, JobStatus::Passed);
    assert_eq!(phases(&run.jobs[0]), guest_phases_deferred(PhaseStatus::Ok));
    assert_eq!(run.jobs[1].status, JobStatus::Failed);
    assert_eq!(
        phases(&run.jobs[1]),
        guest_phases_deferred(PhaseStatus::Failed)
    );
    // The record on disk is the final one although the deletes may still be running.
    assert_eq!(exec.store().read("bg-run").unwrap(), run);
    exec.finish_cleanups().await;
    project.assert_no_instances();
    let ledger = exec.cleanup_ledger();
    assert_eq!(ledger.entries().unwrap(), (vec![], vec![]));
    // The staged snapshots went with their instances.
    let leftovers: Vec<_> = std::fs::read_dir(exec.store().run_dir("bg-run"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn an_abandoned_delete_is_finished_by_the_next_sweep_and_live_runs_are_left_alone() {
    let (project, _ws, exec) = background("jci-abandon");
    let job = JobSpec::incus("one", "true", IncusGuestRole::PikaciRunner);
    let run = exec.run("abandoned", &[job]).await.unwrap();
    assert_eq!(run.jobs[0].status, JobStatus::Passed);
    // As if the process exited at once: the delete task is stopped before it could finish.
    exec.abandon_cleanups();
    let ledger = exec.cleanup_ledger();
    let (entries, _) = ledger.entries().unwrap();
    assert_eq!(entries.len(), 1, "the pending delete stays on disk");

    let incus = incus_client_from(process_env).unwrap();
    // The run's process still holds its lock (this executor is alive): a sweep leaves it.
    let outcomes = sweep(&ledger, &incus, None).await.unwrap();
    assert!(
        matches!(outcomes.as_slice(), [SweepOutcome::Live { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(ledger.entries().unwrap().0.len(), 1);
    drop(exec);
    sweep_deletes_the_last_guest(&ledger, &incus, &project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_failed_delete_is_recorded_and_retried() {
    let project = CiProject::new("jci-retry");
    let ws = workspace("");
    let store = RunStore::new(ws.path().join(".pikaci/runs"));
    let ledger = CleanupLedger::new(&store);
    let incus = incus_client_from(process_env).unwrap();
    // A guest Incus refuses to delete (delete protection), pending from a run that is over.
    let alias = IncusGuestRole::PikaciRunner.default_image_alias();
    project.incus_ok(&[
        "launch",
        alias,
        "stuck",
        "--profile",
        jerichoci::remote::DEFAULT_PROFILE,
        "-c",
        "security.protection.delete=true",
    ]);
    let entry = PendingDelete {
        endpoint: incus.endpoint().to_owned(),
        project: project.name.clone(),
        instance: "stuck".into(),
        run_id: "over".into(),
        job_id: "j".into(),
        stage: None,
        since: "t".into(),
        failures: 0,
        last_error: None,
    };
    ledger.record(&entry).unwrap();
    let outcomes = sweep(&ledger, &incus, None).await.unwrap();
    assert!(
        matches!(outcomes.as_slice(), [SweepOutcome::Failed { .. }]),
        "{outcomes:?}"
    );
    let (entries, _) = ledger.entries().unwrap();
    assert_eq!(entries[0].failures, 1);
    let error = entries[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("stuck"),
        "the error names the instance: {error}"
    );
    assert_eq!(project.instance_names(), ["stuck"]);

    project.incus_ok(&["config", "unset", "stuck", "security.protection.delete"]);
    sweep_deletes_the_last_guest(&ledger, &incus, &project).await;
}
