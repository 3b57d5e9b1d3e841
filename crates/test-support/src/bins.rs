//! Workspace binaries a test runs that are not its own package's (`CARGO_BIN_EXE_*` only names
//! those).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::process::{repo_root, run_ok};

/// Binary `bin` of `package`, (re)built by cargo into the running test's (or example's) profile
/// directory, so it is never stale; built once per process.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .entry(format!("{package}/{bin}"))
        .or_insert_with(|| build(package, bin))
        .clone()
}

fn build(package: &str, bin: &str) -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    // target/<profile>/{deps,examples}/<me> -> target/<profile>
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if profile_dir.ends_with("release") {
        command.arg("--release");
    }
    run_ok(command.current_dir(repo_root()));
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
