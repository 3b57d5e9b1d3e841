//! `pi-sandbox` arrived the way the README says any role arrives: one `[roles.pi-sandbox]` table in
//! roles.toml and its NixOS module. Outside those, the generated files (whatever the codegen
//! writes), tests and docs, no file of the repository names it: no launcher, script or Nix file
//! grew a case for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use pika_role_spec::{GENERATED_FILES, MANIFEST_FILE, Registry};

const ROLE: &str = "pi-sandbox";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Tests and docs may name any role.
fn is_test_or_doc(path: &str) -> bool {
    path.ends_with(".md")
        || path.starts_with("tests/")
        || path.starts_with("scripts/tests/")
        || path.contains("/tests/")
}

#[test]
#[ignore = "walks the git checkout (`git ls-files`), which crane's sandbox does not have: scripts/test.sh runs it"]
fn pi_sandbox_is_named_only_by_its_table_its_module_generated_files_tests_and_docs() {
    let root = repo_root();
    let registry = Registry::load(&root.join(MANIFEST_FILE)).expect("roles.toml is valid");
    let role = registry
        .roles
        .iter()
        .find(|r| r.id == ROLE)
        .expect("roles.toml defines pi-sandbox");
    let mut allowed: Vec<String> = vec![MANIFEST_FILE.to_owned()];
    allowed.extend(role.modules.iter().map(|m| (*m).to_owned()));
    allowed.extend(GENERATED_FILES.iter().map(|f| (*f).to_owned()));

    // Tracked and untracked files, as a commit of this tree would hold them.
    let out = Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(&root)
        .output()
        .expect("git runs");
    assert!(out.status.success());
    let files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        files.len() > 50,
        "the whole repository is listed: {}",
        files.len()
    );

    let offenders: Vec<&String> = files
        .iter()
        .filter(|path| !allowed.contains(path) && !is_test_or_doc(path))
        .filter(|path| {
            path.contains(ROLE)
                || std::fs::read(root.join(path))
                    .map(|bytes| String::from_utf8_lossy(&bytes).contains(ROLE))
                    .unwrap_or(false)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "files other than roles.toml, {:?}, generated files, tests and docs name {ROLE}: {offenders:?}",
        role.modules
    );
    // The allowed files really carry it (the test looks where the role lives).
    for path in &allowed {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        assert!(
            text.contains(ROLE) || path.ends_with(&format!("{ROLE}.nix")),
            "{path} does not name {ROLE}"
        );
    }
}
