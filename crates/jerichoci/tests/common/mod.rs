//! Fixtures for the tests against the real incusd (shared with crates/pikaci/tests via `#[path]`).
//!
//! Each test gets its own `pika-test-*` project with a `pika-agent-dev` profile (root disk on the test
//! pool) and the busybox test image imported under the `pikaci-runner` role's default alias. Setup
//! and inspection use the `incus` CLI, so the code under test is checked against an independent
//! client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use jerichoci::IncusGuestRole;
use jerichoci::remote::DEFAULT_PROFILE;

pub const NEEDS_INCUS: &str = "needs a real incusd: run scripts/test.sh";

/// `incus ARGS...`, panicking with its stderr on failure; returns stdout.
pub fn incus(args: &[&str]) -> String {
    let out = Command::new("incus")
        .args(args)
        .output()
        .expect("the incus CLI runs");
    assert!(
        out.status.success(),
        "incus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The busybox container image: `$PIKA_TEST_IMAGE_DIR/container` (scripts/test.sh) or one built
/// into `scratch` with scripts/lib/test-image.sh.
pub fn container_image(scratch: &Path) -> PathBuf {
    if let Ok(dir) = std::env::var("PIKA_TEST_IMAGE_DIR") {
        let dir = PathBuf::from(dir).join("container");
        if dir.join("rootfs.squashfs").is_file() {
            return dir;
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = scratch.join("image");
    let status = Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib/test-image.sh && test_image_container \"$1\" 'jerichoci test' jerichoci")
        .arg("bash")
        .arg(&out)
        .current_dir(&repo)
        .status()
        .expect("bash runs");
    assert!(status.success(), "building the test image failed");
    out
}

/// A `pika-test-<tag>-<pid>-<n>` project, deleted with everything in it on drop.
pub struct TestProject {
    pub name: String,
    /// Fingerprint Incus reported when it imported the image.
    pub fingerprint: String,
    _scratch: tempfile::TempDir,
}

impl TestProject {
    pub fn new(tag: &str) -> Self {
        let prefix =
            std::env::var("PIKA_TEST_PROJECT_PREFIX").unwrap_or_else(|_| "pika-test".into());
        Self::with_prefix(&prefix, tag)
    }

    /// A project named `<prefix>-<tag>-<pid>-<n>` (benchmarks use their own prefix, so the
    /// `pika-test-*` sweep of a concurrent scripts/test.sh does not delete it mid-run).
    pub fn with_prefix(prefix: &str, tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = tempfile::tempdir().unwrap();
        let image = container_image(scratch.path());
        let pool = std::env::var("PIKA_TEST_STORAGE_POOL").unwrap_or_else(|_| "default".into());
        incus(&["project", "create", &name]);
        let project = format!("--project={name}");
        incus(&["profile", "create", DEFAULT_PROFILE, &project]);
        incus(&[
            "profile",
            "device",
            "add",
            DEFAULT_PROFILE,
            "root",
            "disk",
            "path=/",
            &format!("pool={pool}"),
            &project,
        ]);
        let alias = IncusGuestRole::PikaciRunner.default_image_alias();
        let metadata = image.join("metadata.tar.xz");
        let rootfs = image.join("rootfs.squashfs");
        incus(&[
            "image",
            "import",
            metadata.to_str().unwrap(),
            rootfs.to_str().unwrap(),
            &project,
            &format!("--alias={alias}"),
        ]);
        let mut this = Self {
            name,
            fingerprint: String::new(),
            _scratch: scratch,
        };
        this.fingerprint = this.alias_target(alias);
        assert_eq!(this.fingerprint.len(), 64, "{}", this.fingerprint);
        this
    }

    /// The image fingerprint alias `alias` points at, as the incus CLI reports it.
    pub fn alias_target(&self, alias: &str) -> String {
        let path = format!(
            "/1.0/images/aliases/{}?project={}",
            alias.replace('/', "%2F"),
            self.name
        );
        let json: serde_json::Value = serde_json::from_str(&incus(&["query", &path])).unwrap();
        json["target"].as_str().unwrap().to_owned()
    }

    /// Adds alias `alias` for the imported image.
    pub fn add_alias(&self, alias: &str) {
        incus(&[
            "image",
            "alias",
            "create",
            alias,
            &self.fingerprint,
            &format!("--project={}", self.name),
        ]);
    }

    /// Names of the instances in the project.
    pub fn instances(&self) -> Vec<String> {
        incus(&[
            "list",
            "--format=csv",
            "--columns=n",
            &format!("--project={}", self.name),
        ])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
    }

    pub fn assert_no_instances(&self) {
        assert_eq!(
            self.instances(),
            Vec::<String>::new(),
            "instances left in {}",
            self.name
        );
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let project = format!("--project={}", self.name);
        let run = |args: &[&str]| {
            let _ = Command::new("incus").args(args).output();
        };
        for instance in self.instances() {
            run(&["delete", "--force", &instance, &project]);
        }
        if let Ok(out) = Command::new("incus")
            .args(["image", "list", "--format=csv", "--columns=F", &project])
            .output()
        {
            for fp in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                run(&["image", "delete", fp, &project]);
            }
        }
        run(&["profile", "delete", DEFAULT_PROFILE, &project]);
        run(&["project", "delete", &self.name]);
    }
}

/// A git working tree with a nested file, an ignored file and a `pikaci.toml` with `config`.
pub fn workspace(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::create_dir_all(root.join("docs/notes")).unwrap();
    std::fs::write(
        root.join("docs/notes/hello.txt"),
        "hello from the snapshot\n",
    )
    .unwrap();
    std::fs::write(root.join(".gitignore"), "secret.txt\n").unwrap();
    std::fs::write(root.join("secret.txt"), "must not be uploaded\n").unwrap();
    std::fs::write(root.join("pikaci.toml"), config).unwrap();
    dir
}
