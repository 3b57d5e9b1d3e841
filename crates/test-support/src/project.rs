//! A throwaway Incus project for one test.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::image;
use crate::process::{run, run_ok};

/// The prefix of every Incus project a test creates: `PIKA_TEST_PROJECT_PREFIX` (scripts/test.sh
/// sets one per run, so concurrent runs never sweep each other's projects), else `pika-test`.
pub fn project_prefix() -> String {
    std::env::var("PIKA_TEST_PROJECT_PREFIX").unwrap_or_else(|_| "pika-test".into())
}

/// The storage pool tests put root disks on: `PIKA_TEST_STORAGE_POOL`, else `default`.
pub fn storage_pool() -> String {
    std::env::var("PIKA_TEST_STORAGE_POOL").unwrap_or_else(|_| "default".into())
}

/// `<tag>-<pid>-<n>-<nanos>`: unique within this process and, with high odds, across reruns.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{tag}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

/// An Incus project `<prefix>-<tag>-…`, deleted with its instances, images and profiles on drop.
/// Setup and inspection go through the `incus` CLI, so the code under test is checked against an
/// independent client.
pub struct TestProject {
    pub name: String,
}

impl TestProject {
    /// An empty project named with [`project_prefix`].
    pub fn new(tag: &str) -> Self {
        Self::with_prefix(&project_prefix(), tag)
    }

    /// An empty project named with `prefix` (benchmarks use their own, so the sweep of a
    /// concurrent scripts/test.sh does not delete it mid-run).
    pub fn with_prefix(prefix: &str, tag: &str) -> Self {
        let name = format!("{prefix}-{}", unique(tag));
        run_ok(Command::new("incus").args(["project", "create", &name]));
        TestProject { name }
    }

    /// `incus --project <this> <args>`.
    pub fn incus(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Like [`Self::incus`], panicking on failure; returns stdout.
    pub fn incus_ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("incus");
        command.args(["--project", &self.name]).args(args);
        command
    }

    /// Creates profile `name`, with a root disk on `root_pool` when given (a new project's profiles
    /// have no root disk).
    pub fn create_profile(&self, name: &str, root_pool: Option<&str>) {
        self.incus_ok(&["profile", "create", name]);
        if let Some(pool) = root_pool {
            let pool = format!("pool={pool}");
            self.incus_ok(&[
                "profile", "device", "add", name, "root", "disk", "path=/", &pool,
            ]);
        }
    }

    /// Points `alias` at the project's image, importing the shared busybox image first if the
    /// project has none; returns the fingerprint Incus reports for it.
    pub fn import_image(&self, alias: &str) -> String {
        match self.images().first() {
            Some(fingerprint) => {
                self.incus_ok(&["image", "alias", "create", alias, fingerprint]);
            }
            None => {
                let shared = image::shared_container();
                let metadata = self.own_metadata(&shared.metadata());
                let rootfs = shared.rootfs().display().to_string();
                let imported =
                    self.incus(&["image", "import", &metadata, &rootfs, "--alias", alias]);
                let _ = std::fs::remove_file(&metadata);
                assert!(
                    imported.status.success(),
                    "incus image import: {}",
                    String::from_utf8_lossy(&imported.stderr)
                );
            }
        }
        let fingerprint = self.alias_target(alias);
        assert_eq!(fingerprint.len(), 64, "{fingerprint}");
        fingerprint
    }

    /// Imports `image` (e.g. [`image::openclaw_container`]) under `alias`, with a fingerprint of
    /// this project's own (see [`Self::own_metadata`]); returns the fingerprint.
    pub fn import_container(&self, image: &image::ContainerImage, alias: &str) -> String {
        let metadata = self.own_metadata(&image.metadata());
        let rootfs = image.rootfs().display().to_string();
        let imported = self.incus(&["image", "import", &metadata, &rootfs, "--alias", alias]);
        let _ = std::fs::remove_file(&metadata);
        assert!(
            imported.status.success(),
            "incus image import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
        self.alias_target(alias)
    }

    /// A copy of the shared metadata tarball with one more file naming this project, so each
    /// project's image has its own fingerprint. Incus 6.0 keeps one file per fingerprint for all
    /// projects, and deleting the image in one project while another creates an instance from the
    /// same fingerprint loses the file under the other ("open /var/lib/incus/images/<fp>: no such
    /// file"), which made concurrent tests flaky.
    fn own_metadata(&self, shared: &std::path::Path) -> String {
        let out = std::env::temp_dir().join(format!("{}-metadata.tar.xz", self.name));
        let script = r#"set -e; dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT
tar -C "$dir" -xJf "$1"; printf '%s\n' "$2" >"$dir/pika-test-project"
cd "$dir"; tar --sort=name -cJf "$3" -- *"#;
        run_ok(
            Command::new("bash")
                .args(["-c", script, "bash"])
                .arg(shared)
                .arg(&self.name)
                .arg(&out),
        );
        out.display().to_string()
    }

    /// The image fingerprint `alias` points at, as the incus CLI reports it.
    pub fn alias_target(&self, alias: &str) -> String {
        let path = format!(
            "/1.0/images/aliases/{}?project={}",
            alias.replace('/', "%2F"),
            self.name
        );
        let json: Value =
            serde_json::from_str(&run_ok(Command::new("incus").args(["query", &path])))
                .expect("incus query prints JSON");
        json["target"].as_str().unwrap_or_default().to_owned()
    }

    /// Fingerprints of the project's images.
    pub fn images(&self) -> Vec<String> {
        fingerprints(&self.list(&["image", "list"]))
    }

    /// Every instance with its config (`incus list --format json`).
    pub fn instances(&self) -> Vec<Value> {
        self.list(&["list"])
    }

    pub fn instance(&self, name: &str) -> Option<Value> {
        self.instances().into_iter().find(|i| i["name"] == name)
    }

    /// Names of the instances in the project.
    pub fn instance_names(&self) -> Vec<String> {
        names(&self.instances())
    }

    /// Waits up to `within` for the project to have no instances (deletes that run in the
    /// background after their caller returned), then asserts it.
    pub fn assert_no_instances_within(&self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.instance_names().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.assert_no_instances();
    }

    pub fn assert_no_instances(&self) {
        assert_eq!(
            self.instance_names(),
            Vec::<String>::new(),
            "instances left in {}",
            self.name
        );
    }

    /// `incus <args> --format json`, panicking unless it lists.
    fn list(&self, args: &[&str]) -> Vec<Value> {
        let text = self.incus_ok(&[args, &["--format", "json"]].concat());
        let value: Value = serde_json::from_str(&text).expect("incus prints JSON");
        value.as_array().cloned().unwrap_or_default()
    }

    /// Like [`Self::list`], but empty when the command fails (cleanup of a half-made project).
    fn list_lenient(&self, args: &[&str]) -> Vec<Value> {
        let output = self.incus(&[args, &["--format", "json"]].concat());
        serde_json::from_slice::<Value>(&output.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

fn names(items: &[Value]) -> Vec<String> {
    field(items, "name")
}

fn fingerprints(items: &[Value]) -> Vec<String> {
    field(items, "fingerprint")
}

fn field(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i[key].as_str().map(str::to_owned))
        .collect()
}

impl Drop for TestProject {
    fn drop(&mut self) {
        for instance in names(&self.list_lenient(&["list"])) {
            let _ = self.incus(&["delete", "--force", &instance]);
        }
        for fingerprint in fingerprints(&self.list_lenient(&["image", "list"])) {
            let _ = self.incus(&["image", "delete", &fingerprint]);
        }
        for profile in names(&self.list_lenient(&["profile", "list"])) {
            if profile != "default" {
                let _ = self.incus(&["profile", "delete", &profile]);
            }
        }
        let _ = run(Command::new("incus").args(["project", "delete", &self.name]));
    }
}
