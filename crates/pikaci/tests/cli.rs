//! The `pikaci` binary without Incus: usage errors, config errors, host targets, records.

use std::path::Path;
use std::process::{Command, Output};

use jerichoci::remote::GUEST_ROLE_ENV;
use jerichoci::{JobStatus, RunRecord, RunStatus};
use pika_incus_guest_role::IncusGuestRole;

fn pikaci(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pikaci"))
        .args(args)
        .current_dir(dir)
        .env_remove(GUEST_ROLE_ENV)
        .env("PIKACI_STATE_DIR", dir.join("state"))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn config_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.toml"), config).unwrap();
    dir
}

#[test]
fn help_lists_commands_and_env_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = pikaci(dir.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "list",
        "run",
        "show",
        "--config",
        "--json",
        GUEST_ROLE_ENV,
        "PIKACI_STATE_DIR",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    assert!(text.contains(&IncusGuestRole::valid_ids()), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(pikaci(dir.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(pikaci(dir.path(), &["show"]).status.code(), Some(2));
    // Outside a git repository without --config.
    let out = pikaci(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
}

#[test]
fn bad_config_names_file_line_and_column() {
    let dir = config_dir("[targets.unit]\ncommand = \"true\"\nruntime = \"vm\"\n");
    let out = pikaci(dir.path(), &["--config", "ci.toml", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("ci.toml:3:11:"), "{err}");
    assert!(err.contains("incus") && err.contains("host"), "{err}");

    let missing = pikaci(dir.path(), &["--config", "nope.toml", "list"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("nope.toml"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn list_shows_targets_and_json() {
    let dir = config_dir(
        "[targets.unit]\ncommand = \"cargo test\"\ntimeout-secs = 60\n[targets.lint]\ncommand = \"true\"\nruntime = \"host\"\n",
    );
    let out = pikaci(dir.path(), &["--config", "ci.toml", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("TARGET"), "{text}");
    assert!(
        text.contains("unit") && text.contains("cargo test") && text.contains("60s"),
        "{text}"
    );
    assert!(
        text.contains(&format!("incus:{}", IncusGuestRole::PikaciRunner)),
        "{text}"
    );

    let out = pikaci(dir.path(), &["--config", "ci.toml", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "lint");
    assert_eq!(json[0]["runtime"], "host");
    assert_eq!(json[1]["timeout_secs"], 60);
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let dir = config_dir("[targets.a]\ncommand = \"true\"\nruntime = \"host\"\n");
    let out = pikaci(dir.path(), &["--config", "ci.toml", "run", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"b\"") && stderr(&out).contains("targets: a"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn host_targets_run_and_exit_with_the_worst_job() {
    let dir = config_dir(
        "[targets.ok]\ncommand = \"echo fine; echo warn >&2\"\nruntime = \"host\"\n\
         [targets.bad]\ncommand = \"exit 5\"\nruntime = \"host\"\n\
         [targets.slow]\ncommand = \"sleep 30\"\nruntime = \"host\"\ntimeout-secs = 1\n",
    );
    let out = pikaci(dir.path(), &["--config", "ci.toml", "run", "ok"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("[ok] run"), "{}", stderr(&out));

    let out = pikaci(dir.path(), &["--config", "ci.toml", "run", "ok", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let started = std::time::Instant::now();
    let out = pikaci(
        dir.path(),
        &["--config", "ci.toml", "--json", "run", "bad", "slow"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 20);
    let record: RunRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let statuses: Vec<_> = record
        .jobs
        .iter()
        .map(|j| (j.job_id.as_str(), j.status))
        .collect();
    assert_eq!(
        statuses,
        [("bad", JobStatus::Failed), ("slow", JobStatus::TimedOut)]
    );

    // show reads the same record back; `latest` is the newest run.
    let out = pikaci(
        dir.path(),
        &["--config", "ci.toml", "show", &record.run_id, "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: RunRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, record);
    let out = pikaci(dir.path(), &["--config", "ci.toml", "show", "latest"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&record.run_id) && text.contains("timed-out"),
        "{text}"
    );

    // The first run's log holds both streams.
    let first = pikaci(dir.path(), &["--config", "ci.toml", "--json", "run", "ok"]);
    let first: RunRecord = serde_json::from_slice(&first.stdout).unwrap();
    let log = std::fs::read_to_string(&first.jobs[0].log_path).unwrap();
    assert_eq!(log, "fine\nwarn\n");

    let out = pikaci(dir.path(), &["--config", "ci.toml", "show", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&record.run_id), "{}", stderr(&out));
}

#[test]
fn invalid_role_env_is_a_usage_error_before_anything_runs() {
    let dir = config_dir(
        "[targets.first]\ncommand = \"touch ran\"\nruntime = \"host\"\n[targets.unit]\ncommand = \"true\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pikaci"))
        .args(["--config", "ci.toml", "run", "first", "unit"])
        .current_dir(dir.path())
        .env("PIKACI_STATE_DIR", dir.path().join("state"))
        .env(GUEST_ROLE_ENV, "ci-runner")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(GUEST_ROLE_ENV) && err.contains("ci-runner"),
        "{err}"
    );
    assert!(err.contains(&IncusGuestRole::valid_ids()), "{err}");
    assert!(!dir.path().join("ran").exists());
    assert!(!dir.path().join("state").exists());
}

/// What a terminal shows of `pikaci ARGS` run in `dir` under a pseudo-terminal (util-linux
/// `script`), with `NO_COLOR` set to `no_color` or unset.
fn on_terminal(dir: &Path, args: &str, no_color: Option<&str>) -> String {
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_pikaci")))
        .arg("/dev/null")
        .current_dir(dir)
        .env_remove(GUEST_ROLE_ENV)
        .env("PIKACI_STATE_DIR", dir.join("state"))
        .env_remove("NO_COLOR");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let out = script.output().expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_is_coloured_only_on_a_terminal_without_no_color() {
    let dir = config_dir(
        "[targets.ok]\ncommand = \"true\"\nruntime = \"host\"\n\
         [targets.bad]\ncommand = \"exit 5\"\nruntime = \"host\"\n",
    );
    let run = "--config ci.toml run ok bad";
    let coloured = on_terminal(dir.path(), run, None);
    assert!(coloured.contains("\x1b[32mpassed"), "{coloured:?}");
    for no_color in ["1", "yes"] {
        let plain = on_terminal(dir.path(), run, Some(no_color));
        assert!(plain.contains("[ok] passed"), "{plain:?}");
        assert!(!plain.contains('\x1b'), "NO_COLOR={no_color}: {plain:?}");
    }
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_terminal(dir.path(), run, Some("")).contains('\x1b'));
    let piped = pikaci(dir.path(), &["--config", "ci.toml", "run", "ok", "bad"]);
    assert!(!stderr(&piped).contains('\x1b'), "{}", stderr(&piped));
}

/// ESC sequences (terminal title, screen clear), BEL and a C1 CSI in pikaci.toml reach no output
/// raw: `list`, the live lines of `run`, its summary and `show` print them escaped.
#[test]
fn control_characters_from_the_config_are_escaped_in_every_output() {
    let dir = config_dir(
        "[targets.t]\ncommand = \"true '\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m'\"\nruntime = \"host\"\n\
         description = \"title \\u001b]0;pwned\\u0007 clear \\u001b[2J\\u001bc\"\n",
    );
    let raw = |out: &Output| {
        let text = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        String::from_utf8_lossy(&text)
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .map(|c| format!("{:?}", c))
            .collect::<Vec<_>>()
    };
    let out = pikaci(dir.path(), &["--config", "ci.toml", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(raw(&out), Vec::<String>::new());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r"title \u{1b}]0;pwned\u{7} clear \u{1b}[2J\u{1b}c"),
        "{text}"
    );
    assert!(text.contains(r"\u{1b}[2J\u{9b}31m"), "{text}");

    let out = pikaci(dir.path(), &["--config", "ci.toml", "run", "t"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(raw(&out), Vec::<String>::new());
    assert!(
        stderr(&out).contains(r"[t] start (host): true '\u{1b}]0;pwned"),
        "{}",
        stderr(&out)
    );

    let out = pikaci(dir.path(), &["--config", "ci.toml", "show", "latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(raw(&out), Vec::<String>::new());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(r"command: true '\u{1b}]0;pwned"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
