//! Child processes: run one, fail the test with its output when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository checkout (this crate is `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/<name> is two levels below the repository")
        .to_path_buf()
}

/// Runs `command` to completion; panics only when it cannot be started.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"))
}

/// Runs `command`, panics with its output unless it succeeds; returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `incus ARGS...` (the independent client the tests check the code under test against); returns
/// stdout, panics with stderr on failure.
pub fn incus(args: &[&str]) -> String {
    run_ok(Command::new("incus").args(args))
}
