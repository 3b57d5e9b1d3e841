//! An agent's OpenClaw gateway: its configuration (`openclaw.json`, built from one typed struct),
//! its token, the operator's model-provider environment, its Incus proxy device, the delivery
//! into the guest and the wait for its health.
//!
//! Secrets here (the token, the model keys) are never logged and never in an error text: the
//! types holding them print `<redacted>` in `Debug`, and every error names a file and line, a
//! key, or an instance, never a value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pika_guest_launch::GuestFile;
use pika_incus::ProjectClient;
use pika_managed_agent_contract::IncusGuestRole;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the gateway reads its configuration in the guest: `OPENCLAW_CONFIG_PATH` of the
/// managed-openclaw unit (`nix/incus/roles/managed-openclaw.nix`, `pika.managedAgent.configFile`).
pub const CONFIG_PATH: &str = "/var/lib/openclaw/openclaw.json";

/// Name of the Incus proxy device that exposes an agent's gateway on the host.
pub const PROXY_DEVICE: &str = "gateway";

/// Bytes of randomness in a gateway token (256 bits, hex-encoded: 64 characters).
pub const TOKEN_BYTES: usize = 32;

/// How a role's service is reached: the guest port its gateway listens on (loopback) and the
/// user it runs as. Both from roles.toml (`service-port`, `[roles.<id>.user]`); its health is the
/// role's `readiness`, probed through the agent's proxy device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayRole {
    pub service_port: u16,
    pub uid: u32,
    pub gid: u32,
}

impl GatewayRole {
    /// The gateway facts of `role`, when it has a service port (and then the user it runs as;
    /// a role without a user gets root's).
    pub fn of(role: IncusGuestRole) -> Option<GatewayRole> {
        let service_port = role.service_port()?;
        let (uid, gid) = role.user().map_or((0, 0), |user| (user.uid, user.gid));
        Some(GatewayRole {
            service_port,
            uid,
            gid,
        })
    }
}

/// A per-agent gateway token: 256 random bits from the operating system's CSPRNG (through
/// `rand`'s thread-local ChaCha generator, seeded and reseeded from it). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayToken(String);

impl GatewayToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        GatewayToken(hex::encode(bytes))
    }

    /// The token itself: only for the owner's one response, the guest's configuration file, and
    /// the server's own probe of the gateway ([`wait_token_taken`]).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 (hex) of the token: what the database keeps. A fast hash suffices because the
    /// token is 256 random bits, so it cannot be guessed from its hash.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

impl Serialize for GatewayToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The operator's model-provider environment (API keys), delivered as `env.vars` of
/// `openclaw.json`: the gateway applies those to its process environment where it lacks them
/// (OpenClaw docs `help/environment.md`: "Config `env` block ... applied only if missing"), and
/// its providers read their keys from there. `Debug` shows the keys' names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ModelEnv(BTreeMap<String, String>);

impl fmt::Debug for ModelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Serialize for ModelEnv {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A model environment file that cannot be used: names the file and line, never a value.
#[derive(Debug, thiserror::Error)]
#[error("model environment file {path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ModelEnvError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ModelEnv {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Reads `path` (`--model-env-file`); `None` is an empty environment.
    pub fn load(path: Option<&Path>) -> Result<ModelEnv, ModelEnvError> {
        let Some(path) = path else {
            return Ok(ModelEnv::default());
        };
        let text = std::fs::read_to_string(path).map_err(|err| ModelEnvError {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot be read: {}", err.kind()),
        })?;
        ModelEnv::parse(path, &text)
    }

    /// Parses systemd `EnvironmentFile=` lines: `KEY=VALUE`, optionally `export KEY=VALUE`,
    /// the value optionally in matching single or double quotes; blank lines and lines starting
    /// with `#` or `;` are skipped. Keys are `[A-Za-z_][A-Za-z0-9_]*`, each at most once, and
    /// not `OPENCLAW_*` (the gateway's own controls: the server sets those, the operator's file
    /// holds provider settings only).
    pub fn parse(path: &Path, text: &str) -> Result<ModelEnv, ModelEnvError> {
        let mut vars = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let fail = |message: String| ModelEnvError {
                path: path.display().to_string(),
                line: Some(index + 1),
                message,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let Some((key, value)) = line.split_once('=') else {
                return Err(fail("expected KEY=VALUE".into()));
            };
            let key = key.trim();
            let valid_key = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_key {
                return Err(fail(
                    "the key must be [A-Za-z_][A-Za-z0-9_]* (the value is not shown)".into(),
                ));
            }
            if key.to_ascii_uppercase().starts_with("OPENCLAW_") {
                return Err(fail(format!(
                    "{key} is one of the gateway's own controls, which pika-server sets; the file holds model-provider settings only"
                )));
            }
            let value = value.trim();
            let value = match (value.chars().next(), value.chars().last()) {
                (Some(q @ ('"' | '\'')), Some(end)) if value.len() >= 2 && end == q => {
                    &value[1..value.len() - 1]
                }
                (Some('"' | '\''), _) => {
                    return Err(fail(format!("the value of {key} has an unclosed quote")));
                }
                _ => value,
            };
            if value.chars().any(char::is_control) {
                return Err(fail(format!(
                    "the value of {key} holds a control character"
                )));
            }
            if vars.insert(key.to_owned(), value.to_owned()).is_some() {
                return Err(fail(format!("{key} is set twice")));
            }
        }
        Ok(ModelEnv(vars))
    }
}

/// `openclaw.json` as pika-server writes it: the smallest configuration the gateway starts
/// with (gateway mode, port, loopback bind, token auth), plus the operator's model environment.
/// Field names are OpenClaw's (camelCase); OpenClaw refuses unknown keys, so nothing else is here.
#[derive(Clone, Debug, Serialize)]
pub struct OpenclawConfig {
    pub gateway: GatewaySection,
    #[serde(skip_serializing_if = "EnvSection::is_empty")]
    pub env: EnvSection,
}

#[derive(Clone, Debug, Serialize)]
pub struct GatewaySection {
    pub mode: GatewayMode,
    pub port: u16,
    pub bind: GatewayBind,
    pub auth: GatewayAuth,
}

/// `gateway.mode`: the gateway runs here (not a client of a remote one).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayMode {
    Local,
}

/// `gateway.bind`: loopback only; the owner reaches it through the agent's proxy device.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayBind {
    Loopback,
}

#[derive(Clone, Debug, Serialize)]
pub struct GatewayAuth {
    pub mode: AuthMode,
    pub token: GatewayToken,
}

/// `gateway.auth.mode`: a shared bearer token.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Token,
}

/// `env`: `vars` are applied to the gateway's environment where it lacks them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnvSection {
    pub vars: ModelEnv,
}

impl EnvSection {
    fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl OpenclawConfig {
    pub fn new(role: &GatewayRole, token: GatewayToken, model_env: ModelEnv) -> Self {
        OpenclawConfig {
            gateway: GatewaySection {
                mode: GatewayMode::Local,
                port: role.service_port,
                bind: GatewayBind::Loopback,
                auth: GatewayAuth {
                    mode: AuthMode::Token,
                    token,
                },
            },
            env: EnvSection { vars: model_env },
        }
    }

    /// The file as delivered: mode 0600, owned by the role's user, in a 0700 directory of its own.
    pub fn guest_file(&self, role: &GatewayRole) -> GuestFile {
        let mut contents = serde_json::to_vec_pretty(self).expect("the config serializes");
        contents.push(b'\n');
        GuestFile {
            path: CONFIG_PATH.to_owned(),
            contents,
            mode: 0o600,
            dir_mode: 0o700,
            uid: role.uid,
            gid: role.gid,
        }
    }
}

/// The Incus proxy device of an agent: listens on the host at `listen`, connects to the gateway
/// on the guest's loopback. Non-NAT mode (`bind=host`, Incus's forkproxy connects inside the
/// container's network namespace), which Incus offers for containers only; see the README for VMs.
pub fn proxy_device(listen: SocketAddr, role: &GatewayRole) -> [(&'static str, String); 4] {
    [
        ("type", "proxy".to_owned()),
        ("listen", format!("tcp:{listen}")),
        ("connect", format!("tcp:127.0.0.1:{}", role.service_port)),
        ("bind", "host".to_owned()),
    ]
}

/// The instance devices that hold only the agent's proxy device ([`proxy_device`]) under
/// [`PROXY_DEVICE`], as Incus takes them.
pub fn proxy_devices(listen: SocketAddr, role: &GatewayRole) -> pika_incus::Devices {
    let device = proxy_device(listen, role).map(|(key, value)| (key.to_owned(), value));
    [(PROXY_DEVICE.to_owned(), device.into())].into()
}

/// Where the server probes a proxy listening on `listen`: the address itself, or loopback when
/// the device listens on every address.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        let loopback = match listen {
            SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, listen.port())
    } else {
        listen
    }
}

/// Whether another program on this host already listens on `listen` (so a proxy device could
/// not): binding it fails with `AddrInUse`. Asked only for ports no agent holds, and only when
/// Incus is the local socket (the devices listen on this host). The probe's socket is closed at
/// once; a program that takes the port right after still makes the device's bind fail, which
/// [`is_port_taken`] recognises.
pub fn port_in_use(listen: SocketAddr) -> bool {
    matches!(
        std::net::TcpListener::bind(listen),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// Whether Incus failed to start an instance (or update a device) because the proxy device's
/// host port is taken: forkproxy's `bind: address already in use`, or, when forkproxy's listener
/// process dies on that bind before it hands the socket over, `Failed to receive fd from listener
/// process` (seen under load, same cause). A wrong guess costs one retry on the next port.
pub fn is_port_taken(err: &pika_incus::Error) -> bool {
    let text = err.to_string();
    text.contains("address already in use")
        || text.contains("Failed to receive fd from listener process")
}

/// How the server probes an agent's gateway: through its proxy device when Incus is the local
/// socket (the device listens on this host); through Incus exec inside the guest (`None`) when
/// Incus is an HTTPS endpoint, whose host's listen address this server may not reach.
pub fn probe_via(project: &ProjectClient, listen: SocketAddr) -> Option<SocketAddr> {
    project.client().is_local().then(|| probe_address(listen))
}

/// Writes the configuration into a running guest (again: reprovision, rotation), retrying while
/// the guest's files API does not answer yet, until `timeout`.
pub async fn deliver(
    project: &ProjectClient,
    instance: &str,
    file: &GuestFile,
    timeout: Duration,
) -> Result<(), pika_incus::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    pika_guest_launch::push_until(project, instance, file, deadline).await
}

/// OpenClaw's token-checked endpoint: an empty body gets `401` for a token it does not take, and
/// `400 invalid_request` once past auth.
const AUTH_PROBE_PATH: &str = "/tools/invoke";
const AUTH_PROBE_INTERVAL: Duration = Duration::from_millis(100);
const AUTH_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until the gateway behind `via` takes `token`: OpenClaw reloads a changed
/// `gateway.auth.token` in place, seconds after the file changes, and refuses the new token until
/// then, while `/health` answers throughout. Without a probe address (an Incus endpoint whose
/// host this server may not reach) it returns at once: the token would otherwise have to travel
/// in an exec's command line, which Incus records.
pub async fn wait_token_taken(
    via: Option<SocketAddr>,
    token: &GatewayToken,
    timeout: Duration,
) -> Result<(), String> {
    let Some(via) = via else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let last = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = pika_guest_launch::http_probe::post_status(
            via,
            AUTH_PROBE_PATH,
            token.expose(),
            AUTH_PROBE_TIMEOUT.min(left),
        )
        .await;
        if matches!(answer, Ok(status) if status != 401) {
            return Ok(());
        }
        // Stop before a probe with no time left, so the error keeps the last real answer.
        if tokio::time::Instant::now() + AUTH_PROBE_INTERVAL >= deadline {
            break answer;
        }
        tokio::time::sleep(AUTH_PROBE_INTERVAL).await;
    };
    Err(match last {
        Ok(status) => format!(
            "the gateway still refuses the new token after {}s (POST http://{via}{AUTH_PROBE_PATH} answered {status})",
            timeout.as_secs()
        ),
        Err(err) => format!("the gateway did not take the new token: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: GatewayRole = GatewayRole {
        service_port: 18789,
        uid: 2000,
        gid: 2000,
    };

    fn parse(text: &str) -> Result<ModelEnv, ModelEnvError> {
        ModelEnv::parse(Path::new("/etc/pika/model.env"), text)
    }

    #[test]
    fn the_config_is_what_openclaw_starts_with() {
        let token = GatewayToken("t0k".into());
        let env = parse("ANTHROPIC_API_KEY=sk-ant-1\n").unwrap();
        let config = OpenclawConfig::new(&ROLE, token, env);
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "gateway": {
                    "mode": "local",
                    "port": 18789,
                    "bind": "loopback",
                    "auth": { "mode": "token", "token": "t0k" }
                },
                "env": { "vars": { "ANTHROPIC_API_KEY": "sk-ant-1" } }
            })
        );
        let bare = OpenclawConfig::new(&ROLE, GatewayToken("x".into()), ModelEnv::default());
        assert!(serde_json::to_value(&bare).unwrap().get("env").is_none());
        // Debug shows neither the token nor a key's value.
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("t0k") && !debug.contains("sk-ant-1"),
            "{debug}"
        );
        assert!(debug.contains("ANTHROPIC_API_KEY"), "{debug}");
        let file = config.guest_file(&ROLE);
        assert_eq!((file.mode, file.uid, file.gid), (0o600, 2000, 2000));
        assert!(!format!("{file:?}").contains("t0k"));
    }

    #[test]
    fn both_of_forkproxys_answers_to_a_taken_port_are_recognised() {
        let incus = |message: &str| pika_incus::Error::OperationFailed {
            what: "instance p/i".into(),
            message: message.into(),
        };
        assert!(is_port_taken(&incus(
            "Error occurred when starting proxy device: Error: Failed to listen on 127.0.0.1:20001: listen tcp 127.0.0.1:20001: bind: address already in use"
        )));
        assert!(is_port_taken(&incus(
            "Error occurred when starting proxy device: Error: Failed to receive fd from listener process"
        )));
        assert!(!is_port_taken(&incus("Failed to start device \"root\"")));
    }

    #[test]
    fn tokens_are_256_random_bits_and_stored_as_sha256() {
        let a = GatewayToken::generate();
        let b = GatewayToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 * TOKEN_BYTES);
        assert_eq!(a.sha256().len(), 64);
        assert_ne!(a.sha256(), a.expose());
        assert_eq!(
            GatewayToken("abc".into()).sha256(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn model_env_files_parse_like_systemd_and_errors_hide_values() {
        let env = parse(
            "# keys\n\nANTHROPIC_API_KEY=sk-1\nexport OPENAI_API_KEY=\"sk 2\"\n; c\nGROQ='g=3'\n",
        )
        .unwrap();
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            ["ANTHROPIC_API_KEY", "GROQ", "OPENAI_API_KEY"]
        );
        assert_eq!(env.0["OPENAI_API_KEY"], "sk 2");
        assert_eq!(env.0["GROQ"], "g=3");
        for (text, line, says) in [
            ("A=1\nno-equals-sk-secret\n", 2, "KEY=VALUE"),
            ("9KEY=sk-secret\n", 1, "the key must be"),
            ("A=1\nA=sk-secret\n", 2, "set twice"),
            (
                "OPENCLAW_GATEWAY_TOKEN=sk-secret\n",
                1,
                "gateway's own controls",
            ),
            ("A=\"sk-secret\n", 1, "unclosed quote"),
        ] {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert_eq!(err.line, Some(line), "{message}");
            assert!(message.contains(says), "{message}");
            assert!(message.contains("/etc/pika/model.env"), "{message}");
            assert!(!message.contains("sk-secret"), "a value leaked: {message}");
        }
        let err = ModelEnv::load(Some(Path::new("/nonexistent/model.env"))).unwrap_err();
        assert!(err.to_string().contains("cannot be read"), "{err}");
        assert!(ModelEnv::load(None).unwrap().is_empty());
    }

    #[test]
    fn the_proxy_listens_on_the_host_and_connects_to_guest_loopback() {
        let device = proxy_device("127.0.0.1:18800".parse().unwrap(), &ROLE);
        assert_eq!(
            device.map(|(k, v)| format!("{k}={v}")),
            [
                "type=proxy",
                "listen=tcp:127.0.0.1:18800",
                "connect=tcp:127.0.0.1:18789",
                "bind=host"
            ]
        );
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(port_in_use(taken.local_addr().unwrap()));
        let free = taken.local_addr().unwrap();
        drop(taken);
        assert!(!port_in_use(free));
        let v6 = proxy_device("[::1]:18800".parse().unwrap(), &ROLE);
        assert_eq!(v6[1].1, "tcp:[::1]:18800");
        assert_eq!(
            probe_address("0.0.0.0:18800".parse().unwrap()),
            "127.0.0.1:18800".parse().unwrap()
        );
    }
}
