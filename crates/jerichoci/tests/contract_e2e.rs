//! jerichoci applies the role's runtime contract against the real incusd: the instance carries the
//! role's limits, instance config and the snapshot as a read-only mount, or, forced, the upload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jerichoci::executor::SNAPSHOT_MOUNT;
use jerichoci::fixtures::{CiProject, workspace};
use jerichoci::remote::{MOUNT_SOURCES_ENV, PROJECT_ENV, incus_client_from, process_env};
use jerichoci::{
    Executor, JobRecord, JobSpec, JobStatus, Phase, PhaseStatus, Progress, RunStore,
    SnapshotTransfer,
};
use pika_incus_guest_role::IncusGuestRole;
use pika_test_support::incus;
use serde_json::Value;

const ROLE: IncusGuestRole = IncusGuestRole::PikaciRunner;

/// An executor in `project` that reads the job's instance back from Incus (with the CLI) right
/// after the launch phase, while the instance exists.
fn executor(ws: &std::path::Path, project: &CiProject) -> (Executor, Arc<Mutex<Option<Value>>>) {
    executor_with(ws, project, &[])
}

/// Runs `job` alone (run `contract`); it must pass. Returns its record.
async fn run_passing(exec: &Executor, job: JobSpec) -> JobRecord {
    let run = exec.run("contract", &[job]).await.unwrap();
    let job = run.jobs.into_iter().next().expect("the job's record");
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    job
}

/// The job's instance as Incus showed it right after the launch (see [`executor`]).
fn launched(seen: &Mutex<Option<Value>>) -> Value {
    seen.lock()
        .unwrap()
        .take()
        .expect("the instance was read back")
}

/// [`executor`] with further pikaci environment.
fn executor_with(
    ws: &std::path::Path,
    project: &CiProject,
    extra: &[(&str, &str)],
) -> (Executor, Arc<Mutex<Option<Value>>>) {
    let seen = Arc::new(Mutex::new(None));
    let name = project.name.clone();
    let mut env: HashMap<String, String> = [(PROJECT_ENV.to_owned(), name.clone())].into();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let sink = seen.clone();
    let exec = Executor::new(RunStore::new(ws.join(".pikaci/runs")), ws)
        .with_incus(incus_client_from(process_env).unwrap())
        .with_env(Arc::new(move |var| env.get(var).cloned()))
        .with_progress(Arc::new(move |event| {
            if let Progress::PhaseFinished { job, phase } = event
                && phase.phase == Phase::Launch
                && phase.status == PhaseStatus::Ok
            {
                let instance = jerichoci::naming::instance_name("contract", &job.id);
                let path = format!("/1.0/instances/{instance}?project={name}");
                let json = serde_json::from_str(&incus(&["query", &path])).unwrap();
                *sink.lock().unwrap() = Some(json);
            }
        }));
    (exec, seen)
}

fn snapshot_mount_path() -> &'static str {
    ROLE.mounts()
        .iter()
        .find(|m| m.name == SNAPSHOT_MOUNT)
        .expect("pikaci-runner declares the snapshot mount in roles.toml")
        .path
}

/// The role's launch config as it must show on a container instance.
fn assert_launch_config(config: &Value) {
    for (key, value) in ROLE.launch_config() {
        if pika_incus::api::is_vm_only_config_key(&key) {
            assert!(config.get(&key).is_none(), "{key} on a container: {config}");
        } else {
            assert_eq!(config[&key], value.as_str(), "{key}: {config}");
        }
    }
    assert_eq!(config["limits.cpu"], ROLE.cpu().to_string());
    assert_eq!(config["limits.memory"], format!("{}MiB", ROLE.memory_mib()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn the_job_reads_the_snapshot_through_a_read_only_mount_in_a_guest_with_the_roles_contract() {
    let project = CiProject::new("jci-mount");
    let ws = workspace("");
    let (exec, seen) = executor(ws.path(), &project);
    // As the role's unprivileged user: `id -u` prints its uid (roles.toml `user`).
    let command = "cat docs/notes/hello.txt && touch written 2>&1; test ! -e written && pwd && id -u && id -g";
    let job = JobSpec::incus("mounted", command, ROLE);
    let stage = exec.store().snapshot_stage_path("contract", &job.id);
    let job = &run_passing(&exec, job).await;
    let log = std::fs::read_to_string(&job.log_path).unwrap();
    let user = ROLE.user().expect("the runner role has a user");
    assert_ne!(user.uid, 0);
    assert_eq!(
        log,
        format!(
            "hello from the snapshot\ntouch: written: Read-only file system\n{}\n{}\n{}\n",
            snapshot_mount_path(),
            user.uid,
            user.gid
        )
    );
    let remote = job.remote_linux_vm.as_ref().unwrap();
    assert_eq!(remote.snapshot_transfer, Some(SnapshotTransfer::Mount));

    let instance = launched(&seen);
    assert_launch_config(&instance["config"]);
    let device = &instance["devices"][SNAPSHOT_MOUNT];
    assert_eq!(device["type"], "disk", "{device}");
    assert_eq!(device["readonly"], "true", "{device}");
    assert_eq!(device["path"], snapshot_mount_path(), "{device}");
    let staged = std::fs::canonicalize(stage.parent().unwrap())
        .unwrap()
        .join(stage.file_name().unwrap());
    assert_eq!(device["source"], staged.display().to_string(), "{device}");

    // The staged copy is gone with the job, and so is the instance.
    assert!(!stage.exists(), "{} left behind", stage.display());
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn the_upload_fallback_unpacks_the_snapshot_where_the_mount_would_be() {
    let project = CiProject::new("jci-upload");
    let ws = workspace("");
    let (exec, seen) = executor(ws.path(), &project);
    let exec = exec.force_snapshot_upload(true);
    let job = JobSpec::incus(
        "uploaded",
        "cat docs/notes/hello.txt && touch written && pwd",
        ROLE,
    );
    let stage = exec.store().snapshot_stage_path("contract", &job.id);
    let job = &run_passing(&exec, job).await;
    assert_eq!(
        std::fs::read_to_string(&job.log_path).unwrap(),
        format!("hello from the snapshot\n{}\n", snapshot_mount_path())
    );
    let remote = job.remote_linux_vm.as_ref().unwrap();
    assert_eq!(remote.snapshot_transfer, Some(SnapshotTransfer::Upload));
    let phases: Vec<Phase> = job.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Launch,
            Phase::Upload,
            Phase::Run,
            Phase::Collect,
            Phase::Cleanup
        ]
    );
    let instance = launched(&seen);
    assert_launch_config(&instance["config"]);
    assert!(
        instance["devices"].get(SNAPSHOT_MOUNT).is_none(),
        "{instance}"
    );
    assert!(!stage.exists());
    project.assert_no_instances();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn an_optional_cache_mount_is_attached_only_when_pikaci_names_its_directory() {
    use std::os::unix::fs::MetadataExt;

    let project = CiProject::new("jci-cache");
    let ws = workspace("");
    let optional: Vec<_> = ROLE.mounts().iter().filter(|m| m.optional).collect();
    let [given, left] = optional[..] else {
        panic!("the runner role has two optional cache mounts: {optional:?}");
    };
    let user = ROLE.user().expect("the runner role has a user");
    // The cache belongs to the role's user on the host too (a container sees it shifted).
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(cache.path(), Some(user.uid), Some(user.gid)).unwrap();
    let sources = format!("{}={}", given.name, cache.path().display());
    let (exec, seen) = executor_with(ws.path(), &project, &[(MOUNT_SOURCES_ENV, &sources)]);
    let command = format!("echo kept > {}/from-job", given.path);
    run_passing(&exec, JobSpec::incus("cached", &command, ROLE)).await;

    let written = cache.path().join("from-job");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "kept\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), user.uid);
    let instance = launched(&seen);
    let device = &instance["devices"][given.name];
    assert_eq!(device["type"], "disk", "{device}");
    assert_eq!(device["path"], given.path, "{device}");
    assert_eq!(
        device["source"],
        cache.path().display().to_string(),
        "{device}"
    );
    assert!(device.get("readonly").is_none(), "{device}");
    assert!(
        instance["devices"].get(left.name).is_none(),
        "an optional mount without a directory is not attached: {instance}"
    );
    project.assert_no_instances();
}
