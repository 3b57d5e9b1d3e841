//! `pika-guest` launch/list/delete: usage errors without Incus, and against the real incusd a
//! `pi-sandbox` guest (busybox stand-in) reaching its `ssh` readiness over a real TCP connection.
//!
//! The stand-in has no sshd, and containers here have no network (no bridge can be created), so
//! the test builds one: a veth pair with one end in a network namespace the test creates and the
//! other handed to the container as its `eth0` (a `physical` NIC of a test profile). pika-guest
//! runs inside that namespace (`ip netns exec`), so its probe connects to the guest's address over
//! the veth, never leaving the test's namespaces; the test then makes busybox `nc` listen on port
//! 22 in the guest. Nothing but that listener makes the guest ready.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pika_incus_guest_role::{IncusGuestRole, Readiness};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pika-guest");

fn pika_guest(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("pika-guest runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_usage_errors() {
    let out = pika_guest(&["--help"]);
    assert!(out.status.success());
    for command in ["launch", "list", "delete", "image"] {
        assert!(text(&out.stdout).contains(command), "{command}");
    }
    let out = pika_guest(&["launch", "--help"]);
    for flag in [
        "--role",
        "--ssh-key",
        "--project",
        "--json",
        "--endpoint",
        "--timeout",
    ] {
        assert!(
            text(&out.stdout).contains(flag),
            "launch --help shows {flag}"
        );
    }

    // An unknown role is a usage error listing every role of the registry.
    let out = pika_guest(&["launch", "--role", "no-such-role", "g1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no-such-role"), "{err}");
    for role in IncusGuestRole::ALL {
        assert!(err.contains(role.as_str()), "{err} lists {role}");
    }
    let out = pika_guest(&["list", "--role", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &["launch", "g1"][..],
        &["launch", "--role", IncusGuestRole::ALL[0].as_str()],
        &[
            "launch",
            "--role",
            IncusGuestRole::ALL[0].as_str(),
            "g1",
            "--mount",
            "nodir",
        ],
        &[
            "launch",
            "--role",
            IncusGuestRole::ALL[0].as_str(),
            "g1",
            "--timeout",
            "0",
        ],
        &["delete"],
        &["list", "--client-cert", "c.pem"],
    ] {
        let out = pika_guest(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_missing_socket_is_an_error_naming_it() {
    let out = pika_guest(&["list", "--socket", "/nonexistent/incus.sock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/incus.sock"),
        "{}",
        text(&out.stderr)
    );
}

/// `incus ARGS...`, panicking with its stderr on failure; returns stdout.
fn incus(args: &[&str]) -> String {
    let out = Command::new("incus")
        .args(args)
        .output()
        .expect("incus runs");
    assert!(
        out.status.success(),
        "incus {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// A project with its own profile `net` (root disk + the guest end of a veth pair as `eth0`), the
/// busybox image under the role's alias, and the namespace holding the other end. All removed on
/// drop.
struct SshLab {
    project: String,
    netns: String,
    host_if: String,
    guest_if: String,
    /// The guest's address; the namespace end is `.1` of the same /24.
    guest_ip: String,
    _scratch: tempfile::TempDir,
}

impl SshLab {
    fn new(role: IncusGuestRole) -> Self {
        let prefix = pika_test_support::project_prefix();
        let id = std::process::id();
        let net = 16 + id % 200;
        let lab = SshLab {
            project: format!("{prefix}-guest-ssh-{id}"),
            netns: format!("{prefix}-guest-ssh-{id}"),
            // Interface names have at most 15 characters.
            host_if: format!("pkg{id}h"),
            guest_if: format!("pkg{id}g"),
            guest_ip: format!("10.251.{net}.2"),
            _scratch: tempfile::tempdir().unwrap(),
        };
        run("ip", &["netns", "add", &lab.netns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &lab.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &lab.guest_if,
            ],
        );
        run("ip", &["link", "set", &lab.host_if, "netns", &lab.netns]);
        let ns_addr = format!("10.251.{net}.1/24");
        run(
            "ip",
            &[
                "-n",
                &lab.netns,
                "addr",
                "add",
                &ns_addr,
                "dev",
                &lab.host_if,
            ],
        );
        run("ip", &["-n", &lab.netns, "link", "set", &lab.host_if, "up"]);
        run("ip", &["-n", &lab.netns, "link", "set", "lo", "up"]);

        incus(&["project", "create", &lab.project]);
        let flag = lab.flag();
        let pool = pika_test_support::storage_pool();
        incus(&["profile", "create", "net", &flag]);
        incus(&[
            "profile",
            "device",
            "add",
            "net",
            "root",
            "disk",
            "path=/",
            &format!("pool={pool}"),
            &flag,
        ]);
        let parent = format!("parent={}", lab.guest_if);
        incus(&[
            "profile",
            "device",
            "add",
            "net",
            "eth0",
            "nic",
            "nictype=physical",
            &parent,
            "name=eth0",
            &flag,
        ]);
        let [metadata, rootfs] = pika_test_support::image::shared_container().import_args();
        let alias = format!("--alias={}", role.default_image_alias());
        incus(&["image", "import", &metadata, &rootfs, &flag, &alias]);
        lab
    }

    fn flag(&self) -> String {
        format!("--project={}", self.project)
    }

    /// pika-guest inside the namespace.
    fn pika_guest(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, BIN]).args(args);
        command
    }

    fn status(&self, name: &str) -> Option<String> {
        let path = format!("/1.0/instances/{name}?project={}", self.project);
        let out = Command::new("incus")
            .args(["query", &path])
            .output()
            .unwrap();
        out.status.success().then(|| {
            let json: Value = serde_json::from_slice(&out.stdout).unwrap();
            json["status"].as_str().unwrap_or_default().to_owned()
        })
    }

    fn exec(&self, name: &str, script: &str) {
        incus(&["exec", name, &self.flag(), "--", "sh", "-c", script]);
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        let flag = self.flag();
        if let Ok(out) = Command::new("incus")
            .args(["list", "--format=csv", "--columns=n", &flag])
            .output()
        {
            for name in text(&out.stdout).lines().filter(|l| !l.is_empty()) {
                quiet("incus", &["delete", "--force", name, &flag]);
            }
        }
        if let Ok(out) = Command::new("incus")
            .args(["image", "list", "--format=csv", "--columns=F", &flag])
            .output()
        {
            for fp in text(&out.stdout).lines().filter(|l| !l.is_empty()) {
                quiet("incus", &["image", "delete", fp, &flag]);
            }
        }
        quiet("incus", &["profile", "delete", "net", &flag]);
        quiet("incus", &["project", "delete", &self.project]);
        // Deleting the namespace deletes its veth end and with it the pair.
        quiet("ip", &["netns", "delete", &self.netns]);
        quiet("ip", &["link", "delete", &self.guest_if]);
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
#[ignore = "needs a real incusd and root (network namespaces): run scripts/test.sh"]
fn pi_sandbox_launch_reaches_ssh_readiness_then_list_and_delete() {
    let role: IncusGuestRole = "pi-sandbox".parse().expect("roles.toml defines pi-sandbox");
    assert_eq!(role.readiness(), Readiness::Ssh);
    let lab = SshLab::new(role);
    let key = lab._scratch.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3Nza test@pika\n").unwrap();

    let mut launch = lab
        .pika_guest(&[
            "launch",
            "--role",
            role.as_str(),
            "sb1",
            "--ssh-key",
            key.to_str().unwrap(),
            "--project",
            &lab.project,
            "--profile",
            "net",
            "--timeout",
            "90",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The guest runs (the launch is waiting for it); give it its address.
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.status("sb1").as_deref() != Some("Running") {
        assert!(launch.try_wait().unwrap().is_none(), "launch ended early");
        assert!(Instant::now() < deadline, "sb1 never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.exec(
        "sb1",
        &format!(
            "ip addr add {}/24 dev eth0 && ip link set eth0 up",
            lab.guest_ip
        ),
    );
    // An address alone is not ssh: the launch keeps waiting while port 22 is closed.
    assert!(
        wait_exit(&mut launch, Duration::from_secs(3)).is_none(),
        "ready without port 22"
    );
    // The key was written before the wait.
    let keys = incus(&[
        "file",
        "pull",
        "sb1/root/.ssh/authorized_keys",
        "-",
        &lab.flag(),
    ]);
    assert_eq!(keys, "ssh-ed25519 AAAAC3Nza test@pika\n");

    lab.exec(
        "sb1",
        "(nc -l -p 22 -e echo SSH-2.0-stand-in </dev/null >/dev/null 2>&1 &)",
    );
    let status = wait_exit(&mut launch, Duration::from_secs(60)).expect("launch finished");
    let mut stdout = String::new();
    for line in BufReader::new(launch.stdout.take().unwrap()).lines() {
        stdout.push_str(&line.unwrap());
    }
    let mut stderr = String::new();
    for line in BufReader::new(launch.stderr.take().unwrap()).lines() {
        stderr.push_str(&line.unwrap());
    }
    assert!(status.success(), "{stderr}");
    let launched: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(launched["role"], role.as_str());
    assert_eq!(launched["readiness"], "ssh");
    assert_eq!(launched["ssh"], format!("ssh root@{}", lab.guest_ip));

    let list = lab
        .pika_guest(&["list", "--project", &lab.project, "--json"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", text(&list.stderr));
    let guests: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(guests[0]["name"], "sb1", "{guests}");
    assert_eq!(guests[0]["role"], role.as_str());
    assert_eq!(guests[0]["addresses"][0], lab.guest_ip.as_str());
    let other = IncusGuestRole::ALL.iter().find(|r| **r != role).unwrap();
    let list = lab
        .pika_guest(&[
            "list",
            "--project",
            &lab.project,
            "--role",
            other.as_str(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&list.stdout).unwrap(),
        serde_json::json!([])
    );

    // delete refuses what is not a guest, removes the guest, and then knows it is gone.
    incus(&[
        "init",
        role.default_image_alias(),
        "plain",
        &lab.flag(),
        "--profile=net",
    ]);
    let delete = |name: &str| -> (Option<i32>, String) {
        let out = lab
            .pika_guest(&["delete", name, "--project", &lab.project])
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let (code, stderr) = delete("plain");
    assert!(
        code == Some(1) && stderr.contains("not a Pika guest"),
        "{code:?}: {stderr}"
    );
    assert!(lab.status("plain").is_some());
    let (code, stderr) = delete("sb1");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lab.status("sb1"), None);
    let (code, stderr) = delete("sb1");
    assert!(
        code == Some(1) && stderr.contains("no guest sb1"),
        "{code:?}: {stderr}"
    );
}
