//! A real `pika-server` process for the pika-server and pika-cli tests, and the Incus project it
//! provisions into.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pika_incus_guest_role::{GUEST_ROLE_CONFIG_KEY, IncusGuestRole};
use serde_json::Value;

use crate::process::run_ok;
use crate::project::{TestProject, storage_pool, unique};

/// The profile every server test project gets (the default profile of a new project has no root
/// disk; the server adds the root disk itself).
pub const TEST_PROFILE: &str = "pika-test";

/// A [`TestProject`] with [`TEST_PROFILE`] and the busybox test image under the managed-openclaw
/// default alias.
pub fn project(tag: &str) -> TestProject {
    let project = TestProject::new(tag);
    project.create_profile(TEST_PROFILE, None);
    project.import_image(IncusGuestRole::ManagedOpenclaw.default_image_alias());
    project
}

pub fn incus_socket() -> String {
    std::env::var("INCUS_SOCKET").unwrap_or_else(|_| "/var/lib/incus/unix.socket".into())
}

/// A running `pika-server` process (killed on drop) with its own database and tokens file.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    stderr_log: PathBuf,
    /// The server's gateway ports, when the harness picked them (not given in `env`).
    pub gateway_ports: Option<GatewayPorts>,
}

/// How to start a server: the env beyond the defaults the harness sets.
pub struct ServerSetup<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    pub project: Option<&'a str>,
    pub env: Vec<(String, String)>,
}

impl<'a> ServerSetup<'a> {
    /// `bin` on `project`, its database and tokens in `dir`, with `env` beyond the defaults.
    pub fn new(
        bin: &'a Path,
        dir: &'a Path,
        project: &'a TestProject,
        env: &[(&str, &str)],
    ) -> Self {
        ServerSetup {
            bin,
            dir,
            project: Some(&project.name),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
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
    "PIKA_SERVER_STATE_DIR",
    "PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS",
    "PIKA_AGENT_INCUS_INSECURE_TLS_ENDPOINTS",
    "PIKA_AGENT_INCUS_ALLOWED_PROJECTS",
    "PIKA_AGENT_INCUS_ALLOWED_PROFILES",
    "PIKA_AGENT_INCUS_ALLOWED_STORAGE_POOLS",
    "PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES",
    "PIKA_AGENT_GATEWAY_LISTEN_ADDRESS",
    "PIKA_AGENT_GATEWAY_PORTS",
    "PIKA_AGENT_MODEL_ENV_FILE",
    "PIKA_AGENT_POOL_SIZE",
];

/// Host ports per block of [`GatewayPorts`].
pub const GATEWAY_BLOCK: u16 = 128;
/// Blocks lie in 20000-32767, below Linux's ephemeral ports (32768-60999).
const GATEWAY_FIRST: u16 = 20000;
const GATEWAY_BLOCKS: u16 = 99;

/// A block of host ports for one test server's gateway proxy devices, held (by a lock file in
/// the temporary directory) while this value lives, so concurrent test servers, in this process
/// or another, never pick the same ports. Keep it across a restart to keep the server's range.
pub struct GatewayPorts {
    pub first: u16,
    pub last: u16,
    _lock: std::fs::File,
}

impl GatewayPorts {
    pub fn acquire() -> GatewayPorts {
        let dir = std::env::temp_dir().join("pika-test-gateway-ports");
        std::fs::create_dir_all(&dir).expect("the lock directory");
        let start = u16::try_from(std::process::id() % u32::from(GATEWAY_BLOCKS)).unwrap_or(0);
        for offset in 0..GATEWAY_BLOCKS {
            let block = (start + offset) % GATEWAY_BLOCKS;
            let first = GATEWAY_FIRST + block * GATEWAY_BLOCK;
            let last = first + GATEWAY_BLOCK - 1;
            let file =
                std::fs::File::create(dir.join(format!("{first}.lock"))).expect("a lock file");
            if file.try_lock().is_err() {
                continue;
            }
            // Something outside the tests may hold one of its ports.
            if (first..=last).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
                return GatewayPorts {
                    first,
                    last,
                    _lock: file,
                };
            }
        }
        panic!("no free block of gateway ports in {GATEWAY_FIRST}..");
    }

    /// `FIRST-LAST`, the value of `PIKA_AGENT_GATEWAY_PORTS`.
    pub fn range(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }
}

/// The command of `pika-server` with the harness environment for `setup`.
pub fn server_command(setup: &ServerSetup<'_>) -> Command {
    let mut command = Command::new(setup.bin);
    for var in PIKA_ENV {
        command.env_remove(var);
    }
    command
        .env("PIKA_SERVER_LISTEN", "127.0.0.1:0")
        .env("PIKA_SERVER_STATE_DIR", setup.dir)
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
    pub fn start(mut setup: ServerSetup<'_>) -> Server {
        let gateway_ports = if setup
            .env
            .iter()
            .any(|(k, _)| k == "PIKA_AGENT_GATEWAY_PORTS")
        {
            None
        } else {
            let ports = GatewayPorts::acquire();
            setup
                .env
                .push(("PIKA_AGENT_GATEWAY_PORTS".into(), ports.range()));
            Some(ports)
        };
        let stderr_log = setup.dir.join(format!("server-{}.log", unique("log")));
        let stderr = std::fs::File::create(&stderr_log).expect("the server log file");
        let mut child = server_command(&setup)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {}: {err}", setup.bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
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
            gateway_ports,
        }
    }

    /// `pika-server token add OWNER` against this server's tokens file; returns the token.
    pub fn add_token(&self, owner: &str) -> String {
        add_token(&self.bin, &self.dir, owner)
    }

    /// `pika-server token add --admin OWNER`: a token that sees the health details.
    pub fn add_admin_token(&self, owner: &str) -> String {
        let out = run_ok(
            Command::new(&self.bin)
                .args(["token", "add", "--admin", owner])
                .env("PIKA_SERVER_TOKENS_FILE", self.dir.join("tokens")),
        );
        out.trim().to_owned()
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
            if let Some(status) = self.child.try_wait().expect("waiting for pika-server") {
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

/// The workspace's own `pika-server` ([`crate::cargo_bin`]) started on `project`, its database
/// and tokens in `dir`, with `env` beyond the defaults (for the tests and benchmarks of other
/// crates; pika-server's own tests run their `CARGO_BIN_EXE`).
pub fn start(dir: &Path, project: &TestProject, env: &[(&str, &str)]) -> Server {
    let bin = crate::cargo_bin("pika-server", "pika-server");
    Server::start(ServerSetup::new(&bin, dir, project, env))
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

/// `user.pika.*` keys of an instance (from `incus list --format json`): the namespace of the
/// guest role label, which every Pika key shares.
pub fn pika_keys(instance: &Value) -> Vec<(String, String)> {
    let prefix = GUEST_ROLE_CONFIG_KEY
        .rsplit_once('.')
        .map_or(GUEST_ROLE_CONFIG_KEY, |(namespace, _)| namespace);
    instance["config"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| {
            key.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Removes the `gateway_token` a create, reprovision or rotate response carries (checking it is
/// 64 hex characters) and returns it, so no test prints a token in an assertion message.
pub fn take_gateway_token(value: &mut Value) -> Option<String> {
    let token = value.as_object_mut()?.remove("gateway_token")?;
    let token = token
        .as_str()
        .expect("gateway_token is a string")
        .to_owned();
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "gateway_token is not 256 bits in hex (length {})",
        token.len()
    );
    Some(token)
}
