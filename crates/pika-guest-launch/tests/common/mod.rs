//! A throwaway Incus project for the tests against the real incusd: named with
//! `PIKA_TEST_PROJECT_PREFIX`, using the default project's profiles (root disk), with the busybox
//! test images of scripts/lib/test-image.sh. Setup and inspection use the `incus` CLI, an
//! independent client. Deleted with everything in it on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use pika_incus::IncusClient;
use pika_incus::ProjectClient;

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

/// `$PIKA_TEST_IMAGE_DIR/<kind>` (scripts/test.sh), or one built into `scratch`.
pub fn test_image(kind: &str, scratch: &Path) -> PathBuf {
    if let Ok(dir) = std::env::var("PIKA_TEST_IMAGE_DIR") {
        let dir = PathBuf::from(dir).join(kind);
        if dir.join("metadata.tar.xz").is_file() {
            return dir;
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = scratch.join(kind);
    let status = Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib/test-image.sh && test_image_\"$1\" \"$2\"")
        .args(["bash", kind, out.to_str().unwrap()])
        .current_dir(&repo)
        .status()
        .expect("bash runs");
    assert!(status.success(), "building the {kind} test image failed");
    out
}

pub struct TestProject {
    pub name: String,
    scratch: tempfile::TempDir,
    /// Fingerprints of the imported test images, by kind.
    imported: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl TestProject {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let prefix =
            std::env::var("PIKA_TEST_PROJECT_PREFIX").unwrap_or_else(|_| "pika-test".into());
        let name = format!(
            "{prefix}-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        incus(&["project", "create", &name, "-c", "features.profiles=false"]);
        TestProject {
            name,
            scratch: tempfile::tempdir().unwrap(),
            imported: Default::default(),
        }
    }

    pub fn flag(&self) -> String {
        format!("--project={}", self.name)
    }

    /// Imports the busybox `container` (or fake `vm`) test image under `alias` (a second alias of
    /// an image already imported points at the same image).
    pub fn import(&self, kind: &str, alias: &str) {
        let flag = self.flag();
        let mut imported = self.imported.lock().unwrap();
        if let Some(fingerprint) = imported.get(kind) {
            incus(&["image", "alias", "create", alias, fingerprint, &flag]);
            return;
        }
        let image = test_image(kind, self.scratch.path());
        let root = if kind == "vm" {
            "disk.qcow2"
        } else {
            "rootfs.squashfs"
        };
        let (metadata, rootfs) = (image.join("metadata.tar.xz"), image.join(root));
        let alias_flag = format!("--alias={alias}");
        incus(&[
            "image",
            "import",
            metadata.to_str().unwrap(),
            rootfs.to_str().unwrap(),
            &flag,
            &alias_flag,
        ]);
        let path = format!(
            "/1.0/images/aliases/{}?project={}",
            alias.replace('/', "%2F"),
            self.name
        );
        let json: serde_json::Value = serde_json::from_str(&incus(&["query", &path])).unwrap();
        imported.insert(kind.to_owned(), json["target"].as_str().unwrap().to_owned());
    }

    pub fn client(&self) -> ProjectClient {
        IncusClient::unix(pika_incus::api::DEFAULT_UNIX_SOCKET)
            .unwrap()
            .in_project(self.name.clone())
    }

    /// `GET /1.0/instances/<name>` as the CLI sees it, `None` when it does not exist.
    pub fn instance(&self, name: &str) -> Option<serde_json::Value> {
        let out = Command::new("incus")
            .args([
                "query",
                &format!("/1.0/instances/{name}?project={}", self.name),
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn instances(&self) -> Vec<String> {
        incus(&["list", "--format=csv", "--columns=n", &self.flag()])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let flag = self.flag();
        let run = |args: &[&str]| {
            let _ = Command::new("incus").args(args).output();
        };
        for instance in self.instances() {
            run(&["delete", "--force", &instance, &flag]);
        }
        if let Ok(out) = Command::new("incus")
            .args(["image", "list", "--format=csv", "--columns=F", &flag])
            .output()
        {
            for fp in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                run(&["image", "delete", fp, &flag]);
            }
        }
        run(&["project", "delete", &self.name]);
    }
}
