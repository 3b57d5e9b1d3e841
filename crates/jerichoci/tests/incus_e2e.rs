//! jerichoci against the real incusd: real instances, real exec, real cleanup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jerichoci::fixtures::{self, CiProject, guest_phases, phases, workspace};
use jerichoci::remote::{
    GUEST_ROLE_ENV, IMAGE_ALIAS_ENV, PROJECT_ENV, incus_client_from, process_env,
};
use jerichoci::{
    Executor, JobSpec, JobStatus, Phase, PhaseStatus, RemoteIncusContext, RunStatus, RunStore,
    load_remote_incus_image_record,
};
use pika_incus_guest_role::IncusGuestRole;

fn env(pairs: &[(&str, &str)]) -> jerichoci::EnvLookup {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    Arc::new(move |name| map.get(name).cloned())
}

fn executor(ws: &std::path::Path, env: jerichoci::EnvLookup) -> Executor {
    let incus = incus_client_from(process_env).unwrap();
    Executor::new(RunStore::new(ws.join(".pikaci/runs")), ws)
        .with_incus(incus)
        .with_env(env)
}

/// Runs one `true` job of the runner role in `project` with its image alias set to `alias` through
/// the environment; returns the job's record.
async fn run_true_with_alias(
    project: &CiProject,
    alias: &str,
    run_id: &str,
) -> jerichoci::JobRecord {
    let ws = workspace("");
    let exec = executor(
        ws.path(),
        env(&[(PROJECT_ENV, &project.name), (IMAGE_ALIAS_ENV, alias)]),
    );
    let mut run = exec
        .run(
            run_id,
            &[JobSpec::incus("j", "true", IncusGuestRole::PikaciRunner)],
        )
        .await
        .unwrap();
    run.jobs.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn passing_and_failing_jobs_run_on_the_snapshot_and_are_recorded() {
    let project = CiProject::new("jci-run");
    let ws = workspace("");
    let exec = executor(ws.path(), env(&[(PROJECT_ENV, &project.name)]));
    let role = IncusGuestRole::PikaciRunner;
    let jobs = [
        JobSpec::incus(
            "reads-snapshot",
            "cat docs/notes/hello.txt && test ! -e secret.txt && test ! -e .pikaci && echo on-stderr >&2 && pwd",
            role,
        ),
        JobSpec::incus("fails", "echo about to fail; exit 7", role),
    ];
    let run = exec.run("e2e-run", &jobs).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.jobs.len(), 2);

    let pass = &run.jobs[0];
    assert_eq!(pass.status, JobStatus::Passed, "{pass:?}");
    assert_eq!(pass.exit_code, Some(0));
    assert_eq!(phases(pass), guest_phases(PhaseStatus::Ok));
    let log = fixtures::log(pass);
    assert_eq!(
        log,
        "hello from the snapshot\non-stderr\n/workspace/snapshot\n"
    );

    let remote = pass.remote_linux_vm.as_ref().unwrap();
    assert_eq!(remote.backend, "incus");
    assert_eq!(remote.phases, pass.phases);
    let image = remote.incus_image.as_ref().unwrap();
    assert_eq!(image.alias, role.default_image_alias());
    assert_eq!(image.project, project.name);
    assert_eq!(
        image.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(image.guest_role, Some(role));
    // The test image carries provenance (scripts/lib/test-image.sh): the record keeps it.
    assert!(
        image
            .provenance
            .as_ref()
            .is_some_and(|p| p.source_rev.is_some() && p.role.is_some()),
        "{image:?}"
    );

    let fail = &run.jobs[1];
    assert_eq!(fail.status, JobStatus::Failed);
    assert_eq!(fail.exit_code, Some(7));
    assert_eq!(fixtures::log(fail), "about to fail\n");
    let run_phase = fixtures::phase(fail, Phase::Run);
    assert_eq!(
        (run_phase.status, run_phase.exit_code),
        (PhaseStatus::Failed, Some(7))
    );
    assert_eq!(fail.phases.last().unwrap().phase, Phase::Cleanup);
    assert_eq!(fail.phases.last().unwrap().status, PhaseStatus::Ok);

    // The record on disk is the one returned.
    assert_eq!(exec.store().read("e2e-run").unwrap(), run);
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn custom_alias_runs_but_is_not_attributed_to_the_role() {
    let project = CiProject::new("jci-alias");
    project.add_alias("custom/runner");
    let job = &run_true_with_alias(&project, "custom/runner", "e2e-alias").await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    let image = fixtures::incus_image(job);
    assert_eq!(image.alias, "custom/runner");
    assert_eq!(
        image.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(image.guest_role, None);
    let json = serde_json::to_value(image).unwrap();
    assert!(json.get("guest_role").is_none(), "{json}");
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn invalid_role_env_fails_before_any_instance_exists() {
    let project = CiProject::new("jci-badrole");
    let ws = workspace("");
    let exec = executor(
        ws.path(),
        env(&[(PROJECT_ENV, &project.name), (GUEST_ROLE_ENV, "ci-runner")]),
    );
    let jobs = [
        JobSpec::host("host-first", "touch ran"),
        JobSpec::incus("j", "true", IncusGuestRole::PikaciRunner),
    ];
    let err = exec
        .run("e2e-badrole", &jobs)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(GUEST_ROLE_ENV) && err.contains("ci-runner"),
        "{err}"
    );
    assert!(err.contains(&IncusGuestRole::valid_ids()), "{err}");
    // Nothing ran: not even the host job before it, and no record was written.
    assert!(!ws.path().join("ran").exists());
    assert!(exec.store().run_ids().unwrap().is_empty());
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn timeout_stops_the_command_and_deletes_the_instance() {
    let project = CiProject::new("jci-timeout");
    let ws = workspace("");
    let exec = executor(ws.path(), env(&[(PROJECT_ENV, &project.name)]));
    let job = JobSpec::incus(
        "slow",
        "echo started; sleep 60",
        IncusGuestRole::PikaciRunner,
    )
    .with_timeout(Some(Duration::from_secs(2)));
    let run = exec.run("e2e-timeout", &[job]).await.unwrap();
    let job = &run.jobs[0];
    assert_eq!(job.status, JobStatus::TimedOut, "{job:?}");
    // The limit applies to the command alone; launch and cleanup time on a busy incusd do not count.
    let run_phase = fixtures::phase(job, Phase::Run);
    assert!(
        (2000..20_000).contains(&run_phase.duration_ms),
        "{run_phase:?}"
    );
    assert!(
        job.error.as_deref().unwrap().contains("timeout of 2s"),
        "{job:?}"
    );
    let statuses: Vec<_> = phases(job);
    assert_eq!(statuses, guest_phases(PhaseStatus::TimedOut));
    // What the command wrote before it was stopped is in the log.
    assert_eq!(fixtures::log(job), "started\n");
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn output_reaches_the_log_while_the_command_runs() {
    let project = CiProject::new("jci-stream");
    let ws = workspace("");
    let exec = executor(ws.path(), env(&[(PROJECT_ENV, &project.name)]));
    let job = JobSpec::incus(
        "stream",
        "echo early; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo late",
        IncusGuestRole::PikaciRunner,
    );
    let log_path = exec.store().log_path("e2e-stream", "stream");
    let task = tokio::spawn({
        let exec = exec.clone();
        async move { exec.run("e2e-stream", &[job]).await }
    });
    // The command waits for /tmp/go, so "early" can only be in the log if it was copied live.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while std::fs::read_to_string(&log_path).unwrap_or_default() != "early\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "no live output in {}",
            log_path.display()
        );
        assert!(
            !task.is_finished(),
            "the job ended before its output was seen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let instance = project
        .instance_names()
        .pop()
        .expect("the job's instance runs");
    pika_test_support::incus(&[
        "exec",
        &instance,
        &format!("--project={}", project.name),
        "--",
        "touch",
        "/tmp/go",
    ]);
    let run = task.await.unwrap().unwrap();
    assert_eq!(run.jobs[0].status, JobStatus::Passed, "{:?}", run.jobs[0]);
    assert_eq!(std::fs::read_to_string(&log_path).unwrap(), "early\nlate\n");
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn missing_alias_is_a_launch_error_naming_it() {
    let project = CiProject::new("jci-noalias");
    let job = &run_true_with_alias(&project, "no/such-alias", "e2e-noalias").await;
    assert_eq!(job.status, JobStatus::Error);
    assert!(job.error.as_deref().unwrap().contains("launch"), "{job:?}");
    assert_eq!(
        phases(job),
        [
            (Phase::Upload, PhaseStatus::Ok),
            (Phase::Launch, PhaseStatus::Failed),
            (Phase::Cleanup, PhaseStatus::Ok)
        ]
    );
    let image = fixtures::incus_image(job);
    assert_eq!(
        (image.alias.as_str(), image.fingerprint.as_deref()),
        ("no/such-alias", None)
    );
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn image_record_fingerprint_is_what_incus_reports() {
    let project = CiProject::new("jci-record");
    let incus = incus_client_from(process_env).unwrap();
    let job = JobSpec::incus("j", "true", IncusGuestRole::PikaciRunner);
    let name = project.name.clone();
    let ctx =
        RemoteIncusContext::for_job_from(&job, "r", |n| (n == PROJECT_ENV).then(|| name.clone()))
            .unwrap();
    let record = load_remote_incus_image_record(&incus, &ctx).await.unwrap();
    assert_eq!(
        record.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(record.guest_role, Some(IncusGuestRole::PikaciRunner));
    let image = incus
        .in_project(&project.name)
        .get_image(&project.fingerprint)
        .await
        .unwrap();
    let provenance = record
        .provenance
        .as_ref()
        .expect("the test image carries provenance");
    assert_eq!(
        provenance.source_rev.as_deref(),
        image.properties.get("pika.source-rev").map(String::as_str)
    );
    assert!(provenance.source_rev.is_some());

    project.add_alias("custom/other");
    let name = project.name.clone();
    let ctx = RemoteIncusContext::for_job_from(&job, "r", |n| match n {
        PROJECT_ENV => Some(name.clone()),
        IMAGE_ALIAS_ENV => Some("custom/other".into()),
        _ => None,
    })
    .unwrap();
    let record = load_remote_incus_image_record(&incus, &ctx).await.unwrap();
    assert_eq!(
        record.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(record.guest_role, None);
}
