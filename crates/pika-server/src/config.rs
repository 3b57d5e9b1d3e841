//! Every setting of `pika-server`, declared once: a flag and an environment variable each, with its
//! default shown by `--help`, and one way of reporting an invalid value (clap's, naming the flag or
//! variable and what would be valid).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use clap::builder::BoolishValueParser;
use pika_managed_agent_contract::{IncusGuestRole, IncusProvisionParams};

use crate::endpoint::Endpoint;
use crate::incus::TlsFiles;
use crate::incus_keys::env;
use crate::policy::Policy;

/// Listen address unless `PIKA_SERVER_LISTEN` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// State directory unless `PIKA_SERVER_STATE_DIR` says otherwise (the NixOS module's StateDirectory).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pika-server";
/// File name of the database inside the state directory.
pub const DB_FILE_NAME: &str = "pika-server.db";
/// File name of the tokens file inside the state directory.
pub const TOKENS_FILE_NAME: &str = "tokens";
/// Seconds between checks of the cluster members unless `PIKA_AGENT_INCUS_MEMBER_CHECK_SECS` says
/// otherwise.
pub const DEFAULT_MEMBER_CHECK_SECS: u64 = 5;
/// The local incusd socket unless `INCUS_SOCKET` says otherwise.
pub const DEFAULT_INCUS_SOCKET: &str = pika_incus::api::DEFAULT_UNIX_SOCKET;

pub const ENV_LISTEN: &str = "PIKA_SERVER_LISTEN";
pub const ENV_STATE_DIR: &str = "PIKA_SERVER_STATE_DIR";
pub const ENV_DB: &str = "PIKA_SERVER_DB";
pub const ENV_TOKENS_FILE: &str = "PIKA_SERVER_TOKENS_FILE";
pub const ENV_GATEWAY_ADDRESS: &str = "PIKA_AGENT_GATEWAY_LISTEN_ADDRESS";
pub const ENV_GATEWAY_PORTS: &str = "PIKA_AGENT_GATEWAY_PORTS";
pub const ENV_MODEL_ENV_FILE: &str = "PIKA_AGENT_MODEL_ENV_FILE";

/// Host address the agents' gateway proxy devices listen on unless
/// `PIKA_AGENT_GATEWAY_LISTEN_ADDRESS` says otherwise: loopback, so only this host reaches them.
pub const DEFAULT_GATEWAY_ADDRESS: &str = "127.0.0.1";
/// Host ports the gateway proxy devices take, one per agent, unless `PIKA_AGENT_GATEWAY_PORTS`
/// says otherwise.
pub const DEFAULT_GATEWAY_PORTS: &str = "18800-18999";

/// Where the server keeps its files.
#[derive(Args, Clone, Debug)]
pub struct StateSettings {
    /// State directory: holds the database and, unless set apart, the tokens file.
    #[arg(long, env = ENV_STATE_DIR, default_value = DEFAULT_STATE_DIR, value_parser = absolute_path)]
    pub state_dir: PathBuf,
    /// SQLite database (its -wal/-shm files sit next to it) [default: STATE_DIR/pika-server.db].
    #[arg(long, env = ENV_DB, value_parser = absolute_path)]
    pub db: Option<PathBuf>,
    /// Tokens file, lines `OWNER SHA256(token)` [default: STATE_DIR/tokens].
    #[arg(long, env = ENV_TOKENS_FILE, value_parser = absolute_path)]
    pub tokens_file: Option<PathBuf>,
}

impl StateSettings {
    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| self.state_dir.join(DB_FILE_NAME))
    }

    pub fn tokens_path(&self) -> PathBuf {
        self.tokens_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join(TOKENS_FILE_NAME))
    }
}

/// Everything `pika-server serve` reads.
#[derive(Args, Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (HOST:PORT); the server prints `pika-server listening on http://ADDR`
    /// once requests are accepted.
    #[arg(long, env = ENV_LISTEN, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub state: StateSettings,
    /// The local incusd socket (used when no endpoint is named).
    #[arg(long, env = env::SOCKET, default_value = DEFAULT_INCUS_SOCKET)]
    pub incus_socket: PathBuf,
    #[command(flatten)]
    pub incus: IncusSettings,
    #[command(flatten)]
    pub gateway: GatewaySettings,
    #[command(flatten)]
    pub pool: PoolSettings,
}

/// How owners reach their agents' gateways, and what the operator gives every gateway.
#[derive(Args, Clone, Debug)]
pub struct GatewaySettings {
    /// Host address each agent's Incus proxy device listens on (an IP of the Incus host; the
    /// server probes the gateway's health through it, so with a remote Incus endpoint it must be
    /// reachable from this server).
    #[arg(long = "gateway-listen-address", env = ENV_GATEWAY_ADDRESS, default_value = DEFAULT_GATEWAY_ADDRESS)]
    pub listen_address: std::net::IpAddr,
    /// Host ports for the agents' proxy devices (FIRST-LAST): each agent holds one while it
    /// exists; when all are taken a create answers 503 and creates nothing.
    #[arg(long = "gateway-ports", env = ENV_GATEWAY_PORTS, default_value = DEFAULT_GATEWAY_PORTS, value_parser = parse_port_range)]
    pub ports: PortRange,
    /// File of the model providers' environment (`KEY=VALUE` lines, e.g. `ANTHROPIC_API_KEY=...`)
    /// delivered into every agent's gateway configuration; read again at every delivery. Only
    /// the operator sets it, never a request.
    #[arg(long = "model-env-file", env = ENV_MODEL_ENV_FILE, value_parser = absolute_path)]
    pub model_env_file: Option<PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen_address: DEFAULT_GATEWAY_ADDRESS.parse().expect("a valid default"),
            ports: parse_port_range(DEFAULT_GATEWAY_PORTS).expect("a valid default"),
            model_env_file: None,
        }
    }
}

/// An inclusive range of TCP ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

fn parse_port_range(value: &str) -> Result<PortRange, String> {
    let value = value.trim();
    let (first, last) = value.split_once('-').unwrap_or((value, value));
    let port = |text: &str| match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "{value:?} is not a port range: give FIRST-LAST with ports 1-65535"
        )),
    };
    let (first, last) = (port(first)?, port(last)?);
    if first > last {
        return Err(format!("{value:?}: the first port is above the last"));
    }
    Ok(PortRange { first, last })
}

/// The Incus side: the defaults every agent gets and what a request may name beyond them.
#[derive(Args, Clone, Debug, Default)]
pub struct IncusSettings {
    /// Incus HTTPS endpoint (https://HOST[:PORT], port 8443 by default) [default: the local socket].
    #[arg(long = "incus-endpoint", env = env::ENDPOINT)]
    pub endpoint: Option<Endpoint>,
    /// Incus project of the agents (required unless every request names an allowed one).
    #[arg(long = "incus-project", env = env::PROJECT)]
    pub project: Option<String>,
    /// Incus profile of the agents.
    #[arg(long = "incus-profile", env = env::PROFILE)]
    pub profile: Option<String>,
    /// Storage pool of the agents' root disks.
    #[arg(long = "incus-storage-pool", env = env::STORAGE_POOL)]
    pub storage_pool: Option<String>,
    /// Guest role the server provisions [default: the one role it serves].
    #[arg(long = "incus-guest-role", env = env::GUEST_ROLE, value_parser = parse_role)]
    pub guest_role: Option<IncusGuestRole>,
    /// Image alias of new agents [default: the guest role's default alias].
    #[arg(long = "incus-image-alias", env = env::IMAGE_ALIAS)]
    pub image_alias: Option<String>,
    /// Skip verification of the configured endpoint's certificate (development only).
    #[arg(
        long = "incus-insecure-tls",
        env = env::INSECURE_TLS,
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub insecure_tls: bool,
    /// TLS client certificate presented to HTTPS endpoints.
    #[arg(long = "incus-client-cert-path", env = env::CLIENT_CERT_PATH)]
    pub client_cert_path: Option<PathBuf>,
    /// TLS client key presented to HTTPS endpoints.
    #[arg(long = "incus-client-key-path", env = env::CLIENT_KEY_PATH)]
    pub client_key_path: Option<PathBuf>,
    /// Pinned Incus server certificate.
    #[arg(long = "incus-server-cert-path", env = env::SERVER_CERT_PATH)]
    pub server_cert_path: Option<PathBuf>,
    /// Further endpoints a request may name (comma-separated, exact URLs, no wildcards).
    #[arg(long = "incus-allowed-endpoints", env = env::ALLOWED_ENDPOINTS, value_delimiter = ',')]
    pub allowed_endpoints: Vec<Endpoint>,
    /// Endpoints a request may use with insecure_tls (comma-separated; each must be allowed).
    #[arg(long = "incus-insecure-tls-endpoints", env = env::INSECURE_TLS_ENDPOINTS, value_delimiter = ',')]
    pub insecure_tls_endpoints: Vec<Endpoint>,
    /// Further projects a request may name (comma-separated).
    #[arg(long = "incus-allowed-projects", env = env::ALLOWED_PROJECTS, value_delimiter = ',', value_parser = allow_list_name)]
    pub allowed_projects: Vec<String>,
    /// Further profiles a request may name (comma-separated).
    #[arg(long = "incus-allowed-profiles", env = env::ALLOWED_PROFILES, value_delimiter = ',', value_parser = allow_list_name)]
    pub allowed_profiles: Vec<String>,
    /// Further storage pools a request may name (comma-separated).
    #[arg(long = "incus-allowed-storage-pools", env = env::ALLOWED_STORAGE_POOLS, value_delimiter = ',', value_parser = allow_list_name)]
    pub allowed_storage_pools: Vec<String>,
    /// Further image aliases a request may name (comma-separated).
    #[arg(long = "incus-allowed-image-aliases", env = env::ALLOWED_IMAGE_ALIASES, value_delimiter = ',', value_parser = allow_list_name)]
    pub allowed_image_aliases: Vec<String>,
    /// Incus cluster group new agents are placed in, overriding the guest role's `cluster-group`
    /// [default: the role's, else anywhere the Incus scheduler picks]. Used only when the
    /// endpoint is a cluster.
    #[arg(long = "incus-cluster-group", env = env::CLUSTER_GROUP, value_parser = allow_list_name)]
    pub cluster_group: Option<String>,
    /// Seconds between checks of the agents' instances and the cluster members: an agent whose
    /// instance vanished becomes `lost`; agents on an offline member become `unreachable`, and
    /// `running` again when it is back (0: never check).
    #[arg(long = "incus-member-check-secs", env = env::MEMBER_CHECK_SECS, default_value_t = DEFAULT_MEMBER_CHECK_SECS)]
    pub member_check_secs: u64,
}

impl IncusSettings {
    /// The defaults as provisioning parameters (what a request without `incus` gets).
    pub fn defaults(&self) -> IncusProvisionParams {
        let blank_is_unset = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        IncusProvisionParams {
            guest_role: self.guest_role,
            endpoint: self.endpoint.as_ref().map(Endpoint::to_string),
            project: blank_is_unset(&self.project),
            profile: blank_is_unset(&self.profile),
            storage_pool: blank_is_unset(&self.storage_pool),
            image_alias: blank_is_unset(&self.image_alias),
            insecure_tls: Some(self.insecure_tls),
        }
    }

    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            client_cert: self.client_cert_path.clone(),
            client_key: self.client_key_path.clone(),
            server_cert: self.server_cert_path.clone(),
        }
    }

    /// What requests may name: each configured default plus its allow-list.
    pub fn policy(&self) -> Policy {
        let mut endpoints = BTreeSet::from([self.endpoint.clone()]);
        endpoints.extend(self.allowed_endpoints.iter().cloned().map(Some));
        let mut insecure: BTreeSet<Endpoint> =
            self.insecure_tls_endpoints.iter().cloned().collect();
        if self.insecure_tls
            && let Some(endpoint) = &self.endpoint
        {
            insecure.insert(endpoint.clone());
        }
        let role = self.guest_role.unwrap_or(crate::params::MANAGED_ROLE);
        let default_alias =
            (self.image_alias.clone()).or_else(|| Some(role.default_image_alias().to_owned()));
        let with_default = |default: &Option<String>, extra: &[String]| -> BTreeSet<String> {
            let default = default.iter().map(|v| v.trim().to_owned());
            let default = default.filter(|v| !v.is_empty());
            default.chain(extra.iter().cloned()).collect()
        };
        Policy {
            endpoints,
            insecure,
            projects: with_default(&self.project, &self.allowed_projects),
            profiles: with_default(&self.profile, &self.allowed_profiles),
            storage_pools: with_default(&self.storage_pool, &self.allowed_storage_pools),
            image_aliases: with_default(&default_alias, &self.allowed_image_aliases),
        }
    }
}

pub(crate) fn parse_role(value: &str) -> Result<IncusGuestRole, String> {
    // The error text already lists the valid roles (from the registry).
    value.trim().parse().map_err(|err| format!("{err}"))
}

fn absolute_path(value: &str) -> Result<PathBuf, String> {
    let path = Path::new(value);
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(
            "expected an absolute path (a relative one would depend on the working directory)"
                .into(),
        )
    }
}

fn allow_list_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty entry in the list".into());
    }
    if value.contains('*') || value.contains('?') {
        return Err("wildcards are not supported: list each name".into());
    }
    crate::names::check_incus_name(value).map_err(|reason| reason.to_string())?;
    Ok(value.to_owned())
}

/// The warm pools' environment variable (`--pool-size`).
pub const ENV_POOL_SIZE: &str = "PIKA_AGENT_POOL_SIZE";

/// The largest pool of one role.
pub const MAX_POOL_SIZE: usize = 256;

/// The operator's warm pools.
#[derive(Args, Clone, Debug, Default)]
pub struct PoolSettings {
    /// Warm pool: how many launched, ready, unclaimed guests of a role the server keeps in its
    /// configured target (ROLE=N, comma-separated; a bare N means the configured guest role).
    /// Each member holds a gateway port. 0 or unset: no pool.
    #[arg(long = "pool-size", env = ENV_POOL_SIZE, value_delimiter = ',', value_parser = parse_pool_size)]
    pub sizes: Vec<PoolSize>,
}

/// One `ROLE=N` (or bare `N`) of `--pool-size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    pub role: Option<IncusGuestRole>,
    pub size: usize,
}

pub(crate) fn parse_pool_size(value: &str) -> Result<PoolSize, String> {
    let value = value.trim();
    let (role, size) = match value.split_once('=') {
        Some((role, size)) => (Some(parse_role(role)?), size),
        None => (None, value),
    };
    match size.trim().parse::<usize>() {
        Ok(size) if size <= MAX_POOL_SIZE => Ok(PoolSize { role, size }),
        _ => Err(format!(
            "{value:?} is not a pool size: give ROLE=N or N with N in 0..={MAX_POOL_SIZE}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServerConfig,
    }

    /// The error message of a command line the parser refuses.
    fn parse_err(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("pika-server").chain(args.iter().copied()))
            .map(|cli| cli.config)
    }

    #[test]
    fn defaults_are_absolute_and_lists_are_empty() {
        let config = parse(&[]).unwrap();
        assert_eq!(
            config.state.db_path(),
            Path::new(DEFAULT_STATE_DIR).join(DB_FILE_NAME)
        );
        assert!(config.state.tokens_path().is_absolute());
        assert!(config.incus.allowed_projects.is_empty());
        assert!(!config.incus.insecure_tls);
        assert_eq!(config.gateway.ports.to_string(), DEFAULT_GATEWAY_PORTS);
        assert!(config.gateway.listen_address.is_loopback());
        assert_eq!(
            parse(&["--gateway-ports", "9000"]).unwrap().gateway.ports,
            PortRange {
                first: 9000,
                last: 9000
            }
        );
    }

    #[test]
    fn invalid_values_name_the_flag_and_the_reason() {
        let err = parse_err(&["--db", "relative.db"]);
        assert!(
            err.contains("--db") && err.contains("absolute path"),
            "{err}"
        );
        let err = parse_err(&["--incus-insecure-tls", "maybe"]);
        assert!(err.contains("--incus-insecure-tls"), "{err}");
        let err = parse_err(&["--incus-allowed-projects", "a,*"]);
        assert!(err.contains("wildcards"), "{err}");
        let err = parse_err(&["--incus-guest-role", "nope"]);
        for role in IncusGuestRole::ALL {
            assert_eq!(err.matches(role.as_str()).count(), 1, "listed once: {err}");
        }
        for bad in ["0-10", "20-10", "x", "1-70000", ""] {
            let err = parse_err(&["--gateway-ports", bad]);
            assert!(err.contains("--gateway-ports"), "{err}");
        }
        let err = parse_err(&["--model-env-file", "keys.env"]);
        assert!(err.contains("absolute path"), "{err}");
        let err = parse_err(&["--gateway-listen-address", "localhost"]);
        assert!(err.contains("--gateway-listen-address"), "{err}");
        let err = parse_err(&["--incus-endpoint", "http://x"]);
        assert!(err.contains("https"), "{err}");
    }

    #[test]
    fn lists_split_on_commas() {
        let config = parse(&[
            "--incus-allowed-projects",
            "a, b",
            "--incus-allowed-endpoints",
            "https://Incus.Example,https://other:9443/",
        ])
        .unwrap();
        assert_eq!(config.incus.allowed_projects, ["a", "b"]);
        let endpoints: Vec<String> = config
            .incus
            .allowed_endpoints
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            endpoints,
            ["https://incus.example:8443", "https://other:9443"]
        );
    }
}

/// The settings' policy: the defaults alone by default, each allow-list widening one field.
#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::params::ResolvedIncusParams;

    fn settings() -> IncusSettings {
        IncusSettings {
            project: Some("agents".into()),
            profile: Some("agent".into()),
            storage_pool: Some("default".into()),
            ..Default::default()
        }
    }

    fn resolved() -> ResolvedIncusParams {
        ResolvedIncusParams {
            guest_role: IncusGuestRole::ManagedOpenclaw,
            endpoint: None,
            project: "agents".into(),
            profile: "agent".into(),
            storage_pool: "default".into(),
            image_alias: IncusGuestRole::ManagedOpenclaw.default_image_alias().into(),
            insecure_tls: false,
        }
    }

    #[test]
    fn only_the_configured_values_pass_by_default() {
        let policy = settings().policy();
        assert_eq!(policy.check(&resolved()), Ok(()));
        for (field, change) in [
            (
                "project",
                Box::new(|p: &mut ResolvedIncusParams| p.project = "other".into())
                    as Box<dyn Fn(&mut ResolvedIncusParams)>,
            ),
            ("profile", Box::new(|p| p.profile = "privileged".into())),
            ("storage_pool", Box::new(|p| p.storage_pool = "host".into())),
            (
                "image_alias",
                Box::new(|p| p.image_alias = "any/image".into()),
            ),
            (
                "endpoint",
                Box::new(|p| p.endpoint = Some("https://10.0.0.1:8443".into())),
            ),
            ("insecure_tls", Box::new(|p| p.insecure_tls = true)),
        ] {
            let mut params = resolved();
            change(&mut params);
            assert_eq!(policy.check(&params).unwrap_err().field, field);
        }
    }

    #[test]
    fn allow_lists_widen_each_field_exactly() {
        let other: Endpoint = "https://other:8443".parse().unwrap();
        let policy = IncusSettings {
            allowed_projects: vec!["second".into()],
            allowed_endpoints: vec![other.clone()],
            insecure_tls_endpoints: vec![other.clone()],
            ..settings()
        }
        .policy();
        let mut params = resolved();
        params.project = "second".into();
        assert_eq!(policy.check(&params), Ok(()));
        params.endpoint = Some("https://OTHER".into());
        params.insecure_tls = true;
        assert_eq!(policy.check(&params), Ok(()), "normalised before comparing");
        params.project = "third".into();
        assert_eq!(policy.check(&params).unwrap_err().field, "project");
        assert!(policy.covers(Some("https://other:8443"), "second"));
        assert!(policy.covers(None, "agents"));
        assert!(!policy.covers(None, "third"));
    }
}
