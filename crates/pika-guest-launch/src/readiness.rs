//! Waiting until a launched guest is ready, the way its role says (`readiness` in roles.toml).
//!
//! | readiness          | ready when                                                                 |
//! |--------------------|----------------------------------------------------------------------------|
//! | `booted`           | Incus reports the instance `Running`                                       |
//! | `incus-agent`      | running, and a command runs in it (`true` through Incus exec: for a VM that is the incus-agent answering) |
//! | `ssh`              | running, and TCP port 22 accepts a connection on one of the instance's global addresses (`state.network`) |
//! | `/a/lifecycle/file`| running, and the file exists in the guest (read through the Incus files API) |
//! | `http://127.0.0.1:PORT/PATH` | running, and `GET` of that URL answers 2xx *inside* the guest: [`HTTP_PROBE_SCRIPT`] run through Incus exec |
//!
//! The http probe runs in the guest, so it reaches the guest's own loopback and nothing else: the
//! launcher never connects to the guest's address. It uses `curl` when the guest has it (NixOS
//! always does; only 2xx counts, redirects are not followed), else `wget` (busybox or GNU; it
//! fails on 4xx/5xx and follows redirects, so a redirect to a 2xx counts; bounded by `timeout`,
//! not `wget -T`, which crashes Debian's static busybox 1.35). A guest with neither
//! never becomes ready, and the timeout error says so. The URL is passed as an argument, never
//! spliced into the script.
//!
//! The ssh probe connects only to addresses Incus reports with scope `global` on a non-loopback
//! interface: never to loopback, never to link-local addresses, so a guest cannot point the
//! launcher at the launcher's own host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pika_incus::{ExecRequest, InstanceState, ProjectClient};
use pika_incus_guest_role::Readiness;
use tokio::time::Instant;

/// The port the `ssh` readiness probes.
pub const SSH_PORT: u16 = 22;
/// How long the launchers wait for readiness unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// First pause between probes; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);
/// Pause between probes through the instance's own proxy device: such a probe is one connection
/// on this host, so it can run often, and a ready service is seen within this much.
const VIA_POLL: Duration = Duration::from_millis(50);
/// How often the wait through a proxy device asks Incus whether the instance still runs.
const VIA_STATE_EVERY: Duration = Duration::from_secs(1);
/// Bound of one probe (an exec, a file read, a TCP connect).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound of one HTTP request inside the guest, in seconds (below [`PROBE_TIMEOUT`]).
const HTTP_REQUEST_SECONDS: &str = "3";

/// The `http` readiness probe, run as `sh -c HTTP_PROBE_SCRIPT sh URL SECONDS` in the guest:
/// exit 0 when the URL answers 2xx, else non-zero with the reason on stderr.
pub const HTTP_PROBE_SCRIPT: &str = r#"url=$1 secs=$2
if command -v curl >/dev/null 2>&1; then
  code=$(curl -sS -o /dev/null --max-time "$secs" -w '%{http_code}' "$url") || exit 1
  case $code in
    2??) exit 0 ;;
    *) echo "$url answered HTTP $code" >&2; exit 1 ;;
  esac
elif command -v wget >/dev/null 2>&1; then
  if command -v timeout >/dev/null 2>&1; then
    exec timeout "$secs" wget -q -O /dev/null "$url"
  fi
  exec wget -q -O /dev/null "$url"
else
  echo "the guest has neither curl nor wget to probe $url" >&2
  exit 127
fi
"#;

/// The readiness kind as roles.toml spells it (`lifecycle file /run/x` for a path).
pub fn describe(readiness: Readiness) -> String {
    match readiness {
        Readiness::Booted => "booted".to_owned(),
        Readiness::IncusAgent => "incus-agent".to_owned(),
        Readiness::Ssh => "ssh".to_owned(),
        Readiness::LifecycleFile(path) => format!("lifecycle file {path}"),
        Readiness::Http { .. } => format!("http {readiness}"),
    }
}

/// What the wait found out about a ready guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// For `ssh` readiness: the address whose port 22 answered.
    pub ssh_address: Option<SocketAddr>,
}

/// The guest did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The deadline passed; `last` says what the last probe saw.
    #[error("not ready ({readiness}) within {}s: {last}", timeout.as_secs())]
    TimedOut {
        readiness: String,
        timeout: Duration,
        last: String,
    },
    /// The instance stopped or vanished: waiting longer cannot help.
    #[error("will not become ready ({readiness}): {reason}")]
    Gone { readiness: String, reason: String },
}

impl NotReady {
    fn timed_out(readiness: Readiness, timeout: Duration, last: String) -> Self {
        NotReady::TimedOut {
            readiness: describe(readiness),
            timeout,
            last,
        }
    }

    fn gone(readiness: Readiness, reason: String) -> Self {
        NotReady::Gone {
            readiness: describe(readiness),
            reason,
        }
    }
}

/// Polls `instance` until it is ready by `readiness`, at most `timeout`.
pub async fn wait_ready(
    project: &ProjectClient,
    instance: &str,
    readiness: Readiness,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    wait_ready_via(project, instance, readiness, None, timeout).await
}

/// [`wait_ready`], with the host address of the instance's own proxy device to the role's
/// service port: an HTTP readiness (`http://127.0.0.1:PORT/PATH`, inside the guest) is probed
/// through it, never at the guest's own address.
pub async fn wait_ready_via(
    project: &ProjectClient,
    instance: &str,
    readiness: Readiness,
    via: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    let deadline = Instant::now() + timeout;
    if let (Readiness::Http { path, .. }, Some(via)) = (readiness, via) {
        return wait_through_proxy(project, instance, readiness, path, via, timeout).await;
    }
    let mut pause = FIRST_POLL;
    let mut last = "no probe ran yet".to_owned();
    loop {
        let probe = tokio::time::timeout_at(deadline, probe(project, instance, readiness)).await;
        match probe {
            Ok(Probe::Ready(ready)) => return Ok(ready),
            Ok(Probe::Gone(reason)) => {
                return Err(NotReady::gone(readiness, reason));
            }
            Ok(Probe::NotYet(detail)) => last = detail,
            Err(_) => {}
        }
        if Instant::now() + pause >= deadline {
            return Err(NotReady::timed_out(readiness, timeout, last));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// The http readiness through the instance's own proxy device (`via`): the instance is checked
/// to run first and then every [`VIA_STATE_EVERY`] (a stopped or vanished one fails at once), and
/// `GET path` at `via` is tried every [`VIA_POLL`] until it answers 2xx.
async fn wait_through_proxy(
    project: &ProjectClient,
    instance: &str,
    readiness: Readiness,
    path: &str,
    via: SocketAddr,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    let deadline = Instant::now() + timeout;
    let mut last = "no probe ran yet".to_owned();
    let mut state_checked: Option<Instant> = None;
    loop {
        if state_checked.is_none_or(|at| at.elapsed() >= VIA_STATE_EVERY) {
            let state = tokio::time::timeout_at(deadline, running(project, instance)).await;
            match state {
                Ok(Ok(_)) => state_checked = Some(Instant::now()),
                Ok(Err(NotRunning::Gone(reason))) => {
                    return Err(NotReady::gone(readiness, reason));
                }
                Ok(Err(NotRunning::NotYet(detail))) => last = detail,
                Err(_) => {}
            }
        }
        if state_checked.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            match crate::http_probe::get_ok(via, path, PROBE_TIMEOUT.min(left)).await {
                Ok(_) => return Ok(Ready::default()),
                Err(e) => last = format!("through the proxy device: {e}"),
            }
        }
        if Instant::now() + VIA_POLL >= deadline {
            return Err(NotReady::timed_out(readiness, timeout, last));
        }
        tokio::time::sleep(VIA_POLL).await;
    }
}

/// Why an instance is not running: for good (stopped, vanished), or not yet.
enum NotRunning {
    Gone(String),
    NotYet(String),
}

/// The instance's state when Incus reports it `Running`.
async fn running(project: &ProjectClient, instance: &str) -> Result<InstanceState, NotRunning> {
    let state = match project.instance_state(instance).await {
        Ok(state) => state,
        Err(e) if e.is_not_found() => {
            return Err(NotRunning::Gone(format!("the instance is gone: {e}")));
        }
        Err(e) => return Err(NotRunning::NotYet(e.to_string())),
    };
    match state.status.as_str() {
        "Running" => Ok(state),
        "Stopped" | "Error" => Err(NotRunning::Gone(format!(
            "the instance is {}",
            state.status
        ))),
        other => Err(NotRunning::NotYet(format!("the instance is {other}"))),
    }
}

enum Probe {
    Ready(Ready),
    NotYet(String),
    Gone(String),
}

async fn probe(project: &ProjectClient, instance: &str, readiness: Readiness) -> Probe {
    let state = match running(project, instance).await {
        Ok(state) => state,
        Err(NotRunning::Gone(reason)) => return Probe::Gone(reason),
        Err(NotRunning::NotYet(detail)) => return Probe::NotYet(detail),
    };
    match readiness {
        Readiness::Booted => Probe::Ready(Ready::default()),
        Readiness::IncusAgent => {
            let exec = ExecRequest::new(["true"]).timeout(PROBE_TIMEOUT);
            match project.exec(instance, &exec).await {
                Ok(out) if out.success() => Probe::Ready(Ready::default()),
                Ok(out) => Probe::NotYet(format!("`true` exited {} in the guest", out.exit_code)),
                Err(e) => Probe::NotYet(e.to_string()),
            }
        }
        Readiness::LifecycleFile(path) => match project.pull_file(instance, path).await {
            Ok(_) => Probe::Ready(Ready::default()),
            Err(e) => Probe::NotYet(e.to_string()),
        },
        Readiness::Ssh => probe_ssh(&state).await,
        // Inside the guest (through a proxy device, see `wait_through_proxy`).
        Readiness::Http { .. } => probe_http(project, instance, readiness).await,
    }
}

/// Runs [`HTTP_PROBE_SCRIPT`] in the guest for the readiness URL.
async fn probe_http(project: &ProjectClient, instance: &str, readiness: Readiness) -> Probe {
    let url = readiness.url().unwrap_or_default();
    let exec = ExecRequest::new([
        "sh",
        "-c",
        HTTP_PROBE_SCRIPT,
        "sh",
        &url,
        HTTP_REQUEST_SECONDS,
    ])
    .timeout(PROBE_TIMEOUT);
    match project.exec(instance, &exec).await {
        Ok(out) if out.success() => Probe::Ready(Ready::default()),
        Ok(out) => {
            let why = out.stderr_lossy();
            let why = why.trim();
            Probe::NotYet(if why.is_empty() {
                format!("GET {url} in the guest exited {}", out.exit_code)
            } else {
                format!("GET {url} in the guest exited {}: {why}", out.exit_code)
            })
        }
        Err(e) => Probe::NotYet(e.to_string()),
    }
}

async fn probe_ssh(state: &InstanceState) -> Probe {
    let addresses = global_addresses(state);
    if addresses.is_empty() {
        return Probe::NotYet("the instance has no global network address yet".to_owned());
    }
    let mut failures = Vec::new();
    for address in addresses {
        let target = SocketAddr::new(address, SSH_PORT);
        match tokio::time::timeout(SSH_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
            .await
        {
            Ok(Ok(_stream)) => {
                return Probe::Ready(Ready {
                    ssh_address: Some(target),
                });
            }
            Ok(Err(e)) => failures.push(format!("{target}: {e}")),
            Err(_) => failures.push(format!("{target}: no answer within 1s")),
        }
    }
    Probe::NotYet(format!("port {SSH_PORT} closed: {}", failures.join("; ")))
}

/// The instance's addresses with scope `global` on non-loopback interfaces, IPv4 first, in the
/// order Incus lists them (interfaces by name).
pub fn global_addresses(state: &InstanceState) -> Vec<IpAddr> {
    let Some(interfaces) = state.network.as_ref().and_then(|n| n.as_object()) else {
        return Vec::new();
    };
    let mut found: Vec<IpAddr> = interfaces
        .values()
        .filter(|iface| iface["type"].as_str() != Some("loopback"))
        .filter_map(|iface| iface["addresses"].as_array())
        .flatten()
        .filter(|addr| addr["scope"].as_str() == Some("global"))
        .filter_map(|addr| addr["address"].as_str()?.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast())
        .collect();
    found.sort_by_key(|ip| ip.is_ipv6());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(network: serde_json::Value) -> InstanceState {
        InstanceState {
            status: "Running".into(),
            network: Some(network),
            ..Default::default()
        }
    }

    #[test]
    fn only_global_addresses_of_non_loopback_interfaces_are_probed() {
        let state = state(serde_json::json!({
            "lo": { "type": "loopback", "addresses": [
                { "family": "inet", "address": "127.0.0.1", "scope": "local" },
                { "family": "inet6", "address": "::1", "scope": "local" } ] },
            "eth0": { "type": "broadcast", "addresses": [
                { "family": "inet6", "address": "fd42::2", "scope": "global" },
                { "family": "inet6", "address": "fe80::1", "scope": "link" },
                { "family": "inet", "address": "10.251.78.2", "scope": "global" } ] },
            // A guest claiming a loopback address as global is still not probed.
            "evil": { "type": "broadcast", "addresses": [
                { "family": "inet", "address": "127.0.0.2", "scope": "global" } ] }
        }));
        let found: Vec<String> = global_addresses(&state)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["10.251.78.2", "fd42::2"]);
    }

    #[test]
    fn no_network_means_no_address() {
        assert!(global_addresses(&InstanceState::default()).is_empty());
        assert!(global_addresses(&state(serde_json::json!({}))).is_empty());
    }

    /// Runs the http probe script with the host's `sh` and only `tools` on PATH.
    fn run_probe(tools: &[&str], url: &str) -> std::process::Output {
        let bin = tempfile::tempdir().unwrap();
        for tool in tools {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is not installed"));
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
        std::process::Command::new("/bin/sh")
            .args(["-c", HTTP_PROBE_SCRIPT, "sh", url, HTTP_REQUEST_SECONDS])
            .env("PATH", bin.path())
            .output()
            .unwrap()
    }

    #[test]
    fn the_http_probe_says_when_the_guest_has_neither_curl_nor_wget() {
        let out = run_probe(&[], "http://127.0.0.1:1/healthz");
        assert_eq!(out.status.code(), Some(127));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "the guest has neither curl nor wget to probe http://127.0.0.1:1/healthz\n"
        );
    }

    /// curl (as on NixOS): 2xx is ready; 404 and an unfollowed redirect are not; a closed port is not.
    #[tokio::test]
    #[ignore = "needs curl: run scripts/test.sh"]
    async fn the_http_probe_with_curl_counts_only_2xx() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if request.starts_with("GET /ok ") {
                    "200 OK"
                } else if request.starts_with("GET /moved ") {
                    "301 Moved Permanently\r\nLocation: /ok"
                } else {
                    "404 Not Found"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let probe = |path: &'static str| {
            let url = format!("http://127.0.0.1:{port}{path}");
            tokio::task::spawn_blocking(move || run_probe(&["curl"], &url))
        };
        assert!(probe("/ok").await.unwrap().status.success());
        for path in ["/missing", "/moved"] {
            let out = probe(path).await.unwrap();
            assert!(!out.status.success(), "{path}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("answered HTTP"),
                "{path}: {out:?}"
            );
        }
        let closed = run_probe(&["curl"], "http://127.0.0.1:1/ok");
        assert!(!closed.status.success());
    }

    #[test]
    fn readiness_kinds_read_as_in_roles_toml() {
        assert_eq!(describe(Readiness::Booted), "booted");
        assert_eq!(describe(Readiness::IncusAgent), "incus-agent");
        assert_eq!(describe(Readiness::Ssh), "ssh");
        assert_eq!(
            describe(Readiness::LifecycleFile("/run/ready")),
            "lifecycle file /run/ready"
        );
        assert_eq!(
            describe(Readiness::Http {
                port: 18789,
                path: "/healthz"
            }),
            "http http://127.0.0.1:18789/healthz"
        );
    }
}
