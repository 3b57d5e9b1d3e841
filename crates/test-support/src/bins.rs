//! Workspace binaries a test runs that are not its own package's (`CARGO_BIN_EXE_*` only names
//! those).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

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

/// Every `[[bin]]` of the workspace's packages (name, path), found with `cargo metadata` and built
/// in one `cargo build --workspace --bins` (what `cargo test --workspace` has already built, so
/// usually a no-op), once per process.
pub fn workspace_bins() -> &'static [(String, PathBuf)] {
    static BINS: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BINS.get_or_init(|| {
        let metadata = run_ok(cargo().args(["metadata", "--no-deps", "--format-version", "1"]));
        let metadata: Value = serde_json::from_str(&metadata).expect("cargo metadata prints JSON");
        let mut names = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            for target in package["targets"].as_array().into_iter().flatten() {
                let is_bin = target["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"));
                if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                    names.push(name.to_owned());
                }
            }
        }
        cargo_build(&["--workspace", "--bins"]);
        names
            .into_iter()
            .map(|name| {
                let path = built(&name);
                (name, path)
            })
            .collect()
    })
}

fn build(package: &str, bin: &str) -> PathBuf {
    cargo_build(&["-p", package, "--bin", bin]);
    built(bin)
}

/// `cargo build ARGS` in the running test's profile.
fn cargo_build(args: &[&str]) {
    let mut command = cargo();
    command.args(["build", "--quiet"]).args(args);
    if profile_dir().ends_with("release") {
        command.arg("--release");
    }
    run_ok(&mut command);
}

fn built(bin: &str) -> PathBuf {
    let path = profile_dir().join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `target/<profile>` of the running test or example (`target/<profile>/{deps,examples}/<me>`).
fn profile_dir() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    command
}
