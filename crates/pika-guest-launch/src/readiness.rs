//! Waiting until a launched guest is ready, the way its role says (`readiness` in roles.toml).
//!
//! | readiness          | ready when                                                                 |
//! |--------------------|----------------------------------------------------------------------------|
//! | `booted`           | Incus reports the instance `Running`                                       |
//! | `incus-agent`      | running, and a command runs in it (`true` through Incus exec: for a VM that is the incus-agent answering) |
//! | `ssh`              | running, and TCP port 22 accepts a connection on one of the instance's global addresses (`state.network`) |
//! | `/a/lifecycle/file`| running, and the file exists in the guest (read through the Incus files API) |
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
/// Bound of one probe (an exec, a file read, a TCP connect).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The readiness kind as roles.toml spells it (`lifecycle file /run/x` for a path).
pub fn describe(readiness: Readiness) -> String {
    match readiness {
        Readiness::Booted => "booted".to_owned(),
        Readiness::IncusAgent => "incus-agent".to_owned(),
        Readiness::Ssh => "ssh".to_owned(),
        Readiness::LifecycleFile(path) => format!("lifecycle file {path}"),
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

/// Polls `instance` until it is ready by `readiness`, at most `timeout`.
pub async fn wait_ready(
    project: &ProjectClient,
    instance: &str,
    readiness: Readiness,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    let mut last = "no probe ran yet".to_owned();
    loop {
        let probe = tokio::time::timeout_at(deadline, probe(project, instance, readiness)).await;
        match probe {
            Ok(Probe::Ready(ready)) => return Ok(ready),
            Ok(Probe::Gone(reason)) => {
                return Err(NotReady::Gone {
                    readiness: describe(readiness),
                    reason,
                });
            }
            Ok(Probe::NotYet(detail)) => last = detail,
            Err(_) => {}
        }
        if Instant::now() + pause >= deadline {
            return Err(NotReady::TimedOut {
                readiness: describe(readiness),
                timeout,
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

enum Probe {
    Ready(Ready),
    NotYet(String),
    Gone(String),
}

async fn probe(project: &ProjectClient, instance: &str, readiness: Readiness) -> Probe {
    let state = match project.instance_state(instance).await {
        Ok(state) => state,
        Err(e) if e.is_not_found() => return Probe::Gone(format!("the instance is gone: {e}")),
        Err(e) => return Probe::NotYet(e.to_string()),
    };
    match state.status.as_str() {
        "Running" => {}
        "Stopped" | "Error" => {
            return Probe::Gone(format!("the instance is {}", state.status));
        }
        other => return Probe::NotYet(format!("the instance is {other}")),
    }
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

    #[test]
    fn readiness_kinds_read_as_in_roles_toml() {
        assert_eq!(describe(Readiness::Booted), "booted");
        assert_eq!(describe(Readiness::IncusAgent), "incus-agent");
        assert_eq!(describe(Readiness::Ssh), "ssh");
        assert_eq!(
            describe(Readiness::LifecycleFile("/run/ready")),
            "lifecycle file /run/ready"
        );
    }
}
