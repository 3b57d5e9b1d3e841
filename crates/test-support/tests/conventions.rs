//! The conventions every binary of the workspace keeps, checked on the real binaries: completion
//! scripts that their shells parse, no escape codes under `NO_COLOR` or into a pipe, and `RUST_LOG`
//! honoured. The binaries come from `cargo metadata`, so a new one is checked without editing this.

use std::path::PathBuf;
use std::process::{Command, Output};

use pika_test_support::{run, run_ok, workspace_bins};

/// Every `[[bin]]` of the workspace, built.
fn binaries() -> &'static [(String, PathBuf)] {
    let bins = workspace_bins();
    assert!(bins.len() >= 5, "too few binaries found: {bins:?}");
    bins
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `command` run under a pseudo-terminal (util-linux `script`), so it sees a terminal on stdout
/// and stderr; returns what the terminal showed, whatever the exit status.
fn on_terminal(command: &str, envs: &[(&str, &str)]) -> String {
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .env_remove("NO_COLOR");
    for (key, value) in envs {
        script.env(key, value);
    }
    String::from_utf8_lossy(&run(&mut script).stdout).into_owned()
}

const ESC: &str = "\x1b[";

#[test]
fn every_binary_prints_completions_its_shells_parse() {
    let scratch = tempfile::tempdir().unwrap();
    for (name, bin) in binaries() {
        for (shell, checker) in [
            ("bash", &["bash", "-n"][..]),
            ("zsh", &["zsh", "-n"]),
            ("fish", &["fish", "--no-execute"]),
        ] {
            let script = run_ok(Command::new(bin).args(["completions", shell]));
            assert!(script.contains(name.as_str()), "{name} {shell}: {script}");
            let file = scratch.path().join(format!("{name}.{shell}"));
            std::fs::write(&file, &script).unwrap();
            let check = run(Command::new(checker[0]).args(&checker[1..]).arg(&file));
            assert!(
                check.status.success(),
                "{shell} rejects the completions of {name}: {}",
                stderr(&check)
            );
        }
        let bad = run(Command::new(bin).args(["completions", "tcsh"]));
        assert_eq!(bad.status.code(), Some(2), "{name}: {}", stderr(&bad));
        assert!(stderr(&bad).contains("bash"), "{name}: {}", stderr(&bad));
    }
}

#[test]
fn no_color_and_pipes_get_no_escape_codes() {
    for (name, bin) in binaries() {
        let help = format!("{} --help", bin.display());
        // The terminal is real: without NO_COLOR, clap colours the help.
        assert!(
            on_terminal(&help, &[]).contains(ESC),
            "{name}: no colour on a terminal"
        );
        let plain = on_terminal(&help, &[("NO_COLOR", "1")]);
        assert!(!plain.contains(ESC), "{name} ignores NO_COLOR: {plain:?}");
        let usage_error = on_terminal(
            &format!("{} --no-such-flag", bin.display()),
            &[("NO_COLOR", "1")],
        );
        assert!(
            !usage_error.contains(ESC),
            "{name} ignores NO_COLOR: {usage_error:?}"
        );
        let piped = run(Command::new(bin).arg("--help"));
        assert!(
            !String::from_utf8_lossy(&piped.stdout).contains(ESC),
            "{name} colours a pipe"
        );
    }
}

#[test]
fn every_binary_honours_rust_log() {
    for (name, bin) in binaries() {
        let quiet = run(Command::new(bin)
            .args(["completions", "bash"])
            .env_remove("RUST_LOG"));
        assert!(quiet.status.success(), "{name}: {}", stderr(&quiet));
        assert!(
            !stderr(&quiet).contains("DEBUG"),
            "{name} logs debug by default"
        );

        let debug = run(Command::new(bin)
            .args(["completions", "bash"])
            .env("RUST_LOG", "debug"));
        let err = stderr(&debug);
        assert!(
            err.contains("DEBUG") && err.contains(&format!("{name} starting")),
            "{name}: {err:?}"
        );
        assert!(
            !err.contains(ESC),
            "{name} colours logs into a pipe: {err:?}"
        );
    }
}
