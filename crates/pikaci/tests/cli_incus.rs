//! The `pikaci` binary against the real incusd, with the environment set on the child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jerichoci::fixtures::{self, CiProject, workspace};
use jerichoci::remote::{GUEST_ROLE_ENV, IMAGE_ALIAS_ENV, PROFILE_ENV, PROJECT_ENV};
use jerichoci::{JobStatus, Phase, PhaseStatus, RunRecord, RunStatus};
use pika_incus_guest_role::IncusGuestRole;

const CONFIG: &str = r#"
[targets.reads-snapshot]
command = "cat docs/notes/hello.txt && test ! -e secret.txt"

[targets.fails]
command = "echo failing >&2; exit 3"

[targets.slow]
command = "echo started; sleep 120"
"#;

fn pikaci(ws: &Path, project: &CiProject, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pikaci"));
    cmd.current_dir(ws)
        .env(PROJECT_ENV, &project.name)
        .env_remove(PROFILE_ENV)
        .env_remove(GUEST_ROLE_ENV)
        .env_remove(IMAGE_ALIAS_ENV)
        .env_remove("PIKACI_STATE_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(ws: &Path, project: &CiProject, env: &[(&str, &str)], args: &[&str]) -> Output {
    pikaci(ws, project, env).args(args).output().unwrap()
}

fn show_latest(ws: &Path, project: &CiProject) -> RunRecord {
    let out = run(ws, project, &[], &["show", "latest", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `pikaci run slow` and reads its stderr until the launch phase has ended (at most
/// `within`); returns the child, the rest of its stderr and what it printed so far.
fn start_slow_run(
    ws: &Path,
    project: &CiProject,
    within: Duration,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
    String,
) {
    let mut child = pikaci(ws, project, &[])
        .args(["--config", "pikaci.toml", "run", "slow"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + within;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("[slow] launch") || Instant::now() > deadline {
            break;
        }
    }
    assert!(seen.contains("[slow] launch   ok"), "{seen}");
    (child, lines, seen)
}

/// The guests of a finished run are deleted in the background: soon no instance is left and the
/// ledger of pending deletes is empty.
fn no_guest_left(ws: &Path, project: &CiProject) {
    project.assert_no_instances_within(Duration::from_secs(30));
    let ledger = ws.join(".pikaci/runs").join(jerichoci::cleanup::LEDGER_DIR);
    let deadline = Instant::now() + Duration::from_secs(10);
    let pending = || {
        std::fs::read_dir(&ledger)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_else(|_| Vec::new())
    };
    while !pending().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pending(),
        Vec::<std::ffi::OsString>::new(),
        "pending deletes left"
    );
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn pass_and_fail_targets_in_pikaci_runner_guests() {
    let project = CiProject::new("pikaci-run");
    let ws = workspace(CONFIG);
    let out = run(
        ws.path(),
        &project,
        &[],
        &["--config", "pikaci.toml", "run", "reads-snapshot", "fails"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for phase in ["launch", "upload", "run", "collect", "cleanup"] {
        assert!(
            err.contains(&format!("[reads-snapshot] {phase}")),
            "no live {phase} line:\n{err}"
        );
    }

    let record = show_latest(ws.path(), &project);
    assert_eq!(record.status, RunStatus::Failed);
    let pass = &record.jobs[0];
    assert_eq!(
        (pass.job_id.as_str(), pass.status),
        ("reads-snapshot", JobStatus::Passed)
    );
    assert_eq!(fixtures::log(pass), "hello from the snapshot\n");
    // Default state dir: .pikaci/runs in the workspace.
    assert!(Path::new(&pass.log_path).starts_with(ws.path().join(".pikaci/runs")));
    let image = fixtures::incus_image(pass);
    assert_eq!(
        image.alias,
        IncusGuestRole::PikaciRunner.default_image_alias()
    );
    assert_eq!(
        image.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(image.guest_role, Some(IncusGuestRole::PikaciRunner));
    assert_eq!(image.project, project.name);

    let fail = &record.jobs[1];
    assert_eq!((fail.status, fail.exit_code), (JobStatus::Failed, Some(3)));
    assert_eq!(fixtures::log(fail), "failing\n");
    no_guest_left(ws.path(), &project);
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn custom_alias_env_drops_the_guest_role_from_the_record() {
    let project = CiProject::new("pikaci-alias");
    project.add_alias("experiments/runner");
    let ws = workspace(CONFIG);
    let out = run(
        ws.path(),
        &project,
        &[(IMAGE_ALIAS_ENV, "experiments/runner")],
        &["--config", "pikaci.toml", "--json", "run", "reads-snapshot"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: RunRecord = serde_json::from_slice(&out.stdout).unwrap();
    let image = fixtures::incus_image(&record.jobs[0]);
    assert_eq!(image.alias, "experiments/runner");
    assert_eq!(
        image.fingerprint.as_deref(),
        Some(project.fingerprint.as_str())
    );
    assert_eq!(image.guest_role, None);
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        raw["jobs"][0]["remote_linux_vm"]["incus_image"]
            .get("guest_role")
            .is_none(),
        "{raw}"
    );
    no_guest_left(ws.path(), &project);
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn invalid_role_env_fails_before_any_instance_is_created() {
    let project = CiProject::new("pikaci-badrole");
    let ws = workspace(CONFIG);
    let out = run(
        ws.path(),
        &project,
        &[(GUEST_ROLE_ENV, "pikaci")],
        &["--config", "pikaci.toml", "run"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(GUEST_ROLE_ENV) && err.contains(&IncusGuestRole::valid_ids()),
        "{err}"
    );
    assert!(!ws.path().join(".pikaci").exists(), "a run was recorded");
    project.assert_no_instances();
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn ctrl_c_deletes_the_instance_and_exits_130() {
    let project = CiProject::new("pikaci-sigint");
    let ws = workspace(CONFIG);
    // Wait until the command runs (the launch, after the snapshot was staged, has finished), then
    // interrupt.
    let limit = Duration::from_secs(120);
    let deadline = Instant::now() + limit;
    let (mut child, lines, seen) = start_slow_run(ws.path(), &project, limit);
    assert!(seen.contains("[slow] upload   ok"), "{seen}");
    // The job's output streams into its log while it runs: wait for it, then interrupt.
    let log_path = seen
        .split("  log: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the start line names the log")
        .to_owned();
    while std::fs::read_to_string(&log_path).unwrap_or_default() != "started\n" {
        assert!(Instant::now() < deadline, "no live output in {log_path}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        project.instances().len(),
        1,
        "the job's instance should be running"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{seen}{}", rest.join("\n"));
    no_guest_left(ws.path(), &project);

    let record = show_latest(ws.path(), &project);
    assert_eq!(record.status, RunStatus::Interrupted);
    let job = &record.jobs[0];
    assert_eq!(job.status, JobStatus::Interrupted);
    assert_eq!(fixtures::log(job), "started\n");
    // The command (sleep 120) was cut short, not waited for.
    let run_phase = fixtures::phase(job, Phase::Run);
    assert!(run_phase.duration_ms < 60_000, "{run_phase:?}");
    let phases: Vec<_> = fixtures::phases(job);
    assert_eq!(
        phases,
        fixtures::guest_phases_deferred(PhaseStatus::Interrupted)
    );
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn a_guest_of_a_killed_run_is_deleted_by_the_next_run() {
    let project = CiProject::new("pikaci-kill9");
    let ws = workspace(CONFIG);
    let (mut child, _lines, _) = start_slow_run(ws.path(), &project, Duration::from_secs(120));
    // kill -9: no cleanup code of the process runs.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        project.instances().len(),
        1,
        "the killed run's guest is left"
    );

    let out = run(
        ws.path(),
        &project,
        &[],
        &["--config", "pikaci.toml", "run", "reads-snapshot"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_guest_left(ws.path(), &project);
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn cleanup_lists_nothing_pending_after_a_finished_run() {
    let project = CiProject::new("pikaci-cleanup");
    let ws = workspace(CONFIG);
    let out = run(
        ws.path(),
        &project,
        &[],
        &["--config", "pikaci.toml", "run", "reads-snapshot"],
    );
    assert!(out.status.success());
    no_guest_left(ws.path(), &project);
    let out = run(
        ws.path(),
        &project,
        &[],
        &["--config", "pikaci.toml", "--json", "cleanup"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
