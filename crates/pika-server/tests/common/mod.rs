//! Test harness shared by the pika-server and pika-cli integration tests: a throwaway Incus
//! project with the busybox test image imported under the managed-openclaw default alias, and a
//! real `pika-server` process configured for it.
//!
//! Included by `crates/pika-cli/tests` through `#[path]`, so it names no binary itself.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pika_managed_agent_contract::IncusGuestRole;
use serde_json::Value;

/// The profile every test project gets (the default profile of a new project has no root disk;
/// the server adds the root disk itself).
pub const TEST_PROFILE: &str = "pika-test";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/<name> is two levels below the repository")
        .to_path_buf()
}

pub fn storage_pool() -> String {
    std::env::var("PIKA_TEST_STORAGE_POOL").unwrap_or_else(|_| "default".into())
}

pub fn incus_socket() -> String {
    std::env::var("INCUS_SOCKET").unwrap_or_else(|_| "/var/lib/incus/unix.socket".into())
}

/// `PIKA_TEST_IMAGE_DIR/container`, or a busybox image built once per test binary.
pub fn container_image_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PIKA_TEST_IMAGE_DIR") {
            return PathBuf::from(dir).join("container");
        }
        let dir = std::env::temp_dir().join(format!("pika-server-test-image-{}", std::process::id()));
        let script = format!(
            "source {}/scripts/lib/test-image.sh && test_image_container {} 'pika-server test' server",
            repo_root().display(),
            dir.display()
        );
        run_ok(Command::new("bash").arg("-c").arg(script));
        dir
    })
    .clone()
}

pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"))
}

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

pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

/// The prefix of every Incus project this test run creates: `PIKA_TEST_PROJECT_PREFIX` (scripts/test.sh
/// sets one per run, so concurrent runs never sweep each other's projects), else `pika-test`.
pub fn test_project_prefix() -> String {
    std::env::var("PIKA_TEST_PROJECT_PREFIX").unwrap_or_else(|_| "pika-test".into())
}

/// A `pika-test-*` Incus project with a profile and the test image; deleted on drop.
pub struct TestProject {
    pub name: String,
}

impl TestProject {
    pub fn new(tag: &str) -> Self {
        let name = format!("{}-{}", test_project_prefix(), unique(tag));
        run_ok(Command::new("incus").args(["project", "create", &name]));
        let project = TestProject { name };
        project.incus_ok(&["profile", "create", TEST_PROFILE]);
        project.import_image(IncusGuestRole::ManagedOpenclaw.default_image_alias());
        project
    }

    /// `incus <args> --project <this>`.
    pub fn incus(&self, args: &[&str]) -> Output {
        run(Command::new("incus")
            .args(args)
            .args(["--project", &self.name]))
    }

    pub fn incus_ok(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("incus")
                .args(args)
                .args(["--project", &self.name]),
        )
    }

    /// Imports the busybox container image under `alias` (a second alias reuses the image).
    pub fn import_image(&self, alias: &str) {
        let images: Value =
            serde_json::from_str(&self.incus_ok(&["image", "list", "--format", "json"])).unwrap();
        if let Some(fingerprint) = images
            .as_array()
            .and_then(|a| a.first())
            .and_then(|i| i["fingerprint"].as_str())
        {
            self.incus_ok(&["image", "alias", "create", alias, fingerprint]);
            return;
        }
        let dir = container_image_dir();
        self.incus_ok(&[
            "image",
            "import",
            dir.join("metadata.tar.xz").to_str().unwrap(),
            dir.join("rootfs.squashfs").to_str().unwrap(),
            "--alias",
            alias,
        ]);
    }

    /// Every instance with its config (`incus list --format json`).
    pub fn instances(&self) -> Vec<Value> {
        let text = self.incus_ok(&["list", "--format", "json"]);
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn instance(&self, name: &str) -> Option<Value> {
        self.instances().into_iter().find(|i| i["name"] == name)
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        for instance in self.instances() {
            if let Some(name) = instance["name"].as_str() {
                let _ = self.incus(&["delete", "--force", name]);
            }
        }
        let images: Value = serde_json::from_str(&String::from_utf8_lossy(
            &self.incus(&["image", "list", "--format", "json"]).stdout,
        ))
        .unwrap_or(Value::Null);
        for image in images.as_array().into_iter().flatten() {
            if let Some(fingerprint) = image["fingerprint"].as_str() {
                let _ = self.incus(&["image", "delete", fingerprint]);
            }
        }
        for profile in [TEST_PROFILE, "pika-test-2"] {
            let _ = self.incus(&["profile", "delete", profile]);
        }
        let _ = run(Command::new("incus").args(["project", "delete", &self.name]));
    }
}

/// A running `pika-server` process (killed on drop) with its own database and tokens file.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    stderr_log: PathBuf,
}

/// How to start a server: the env beyond the defaults the harness sets.
pub struct ServerSetup<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    pub project: Option<&'a str>,
    pub env: Vec<(String, String)>,
}

const PIKA_ENV: &[&str] = &[
    "PIKA_AGENT_INCUS_ENDPOINT",
    "PIKA_AGENT_INCUS_PROJECT",
    "PIKA_AGENT_INCUS_PROFILE",
    "PIKA_AGENT_INCUS_STORAGE_POOL",
    "PIKA_AGENT_INCUS_GUEST_ROLE",
    "PIKA_AGENT_INCUS_IMAGE_ALIAS",
    "PIKA_AGENT_INCUS_INSECURE_TLS",
    "PIKA_AGENT_INCUS_CLIENT_CERT_PATH",
    "PIKA_AGENT_INCUS_CLIENT_KEY_PATH",
    "PIKA_AGENT_INCUS_SERVER_CERT_PATH",
    "PIKA_SERVER_LISTEN",
    "PIKA_SERVER_DB",
    "PIKA_SERVER_TOKENS_FILE",
];

/// The command of `pika-server` with the harness environment for `setup`.
pub fn server_command(setup: &ServerSetup<'_>) -> Command {
    let mut command = Command::new(setup.bin);
    for var in PIKA_ENV {
        command.env_remove(var);
    }
    command
        .env("PIKA_SERVER_LISTEN", "127.0.0.1:0")
        .env("PIKA_SERVER_DB", setup.dir.join("agents.db"))
        .env("PIKA_SERVER_TOKENS_FILE", setup.dir.join("tokens"))
        .env("INCUS_SOCKET", incus_socket())
        .env("PIKA_AGENT_INCUS_PROFILE", TEST_PROFILE)
        .env("PIKA_AGENT_INCUS_STORAGE_POOL", storage_pool())
        .env("RUST_LOG", "info,pika_incus=debug,pika_server=debug");
    if let Some(project) = setup.project {
        command.env("PIKA_AGENT_INCUS_PROJECT", project);
    }
    for (key, value) in &setup.env {
        command.env(key, value);
    }
    command
}

impl Server {
    pub fn start(setup: ServerSetup<'_>) -> Server {
        let stderr_log = setup.dir.join(format!("server-{}.log", unique("log")));
        let stderr = std::fs::File::create(&stderr_log).unwrap();
        let mut child = server_command(&setup)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {}: {err}", setup.bin.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("pika-server listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        // Startup reconciliation may wait for Incus operations a killed server left running
        // (bounded by the operation timeout, 300 s).
        let url = match rx.recv_timeout(Duration::from_secs(330)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "pika-server did not become ready: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        Server {
            child,
            url,
            dir: setup.dir.to_path_buf(),
            bin: setup.bin.to_path_buf(),
            stderr_log,
        }
    }

    /// `pika-server token add OWNER` against this server's tokens file; returns the token.
    pub fn add_token(&self, owner: &str) -> String {
        add_token(&self.bin, &self.dir, owner)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGKILL, like a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit status once the process is gone (bounded wait).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pika-server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn add_token(bin: &Path, dir: &Path, owner: &str) -> String {
    let out = run_ok(
        Command::new(bin)
            .args(["token", "add", owner])
            .env("PIKA_SERVER_TOKENS_FILE", dir.join("tokens")),
    );
    let token = out.trim().to_owned();
    assert!(!token.is_empty(), "token add printed nothing");
    token
}

/// `user.pika.*` keys of an instance (from `incus list --format json`).
pub fn pika_keys(instance: &Value) -> Vec<(String, String)> {
    instance["config"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(pika_server::incus_keys::PIKA_KEY_PREFIX))
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect()
}
