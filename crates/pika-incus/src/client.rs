//! The connection ([`IncusClient`]): transports, the request/response cycle, error mapping,
//! operation waits and the server-wide calls. Project-scoped calls live in [`crate::project`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use pika_runtime::error_chain;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api;
use crate::error::{Error, Result};
use crate::tls;
use crate::transport::Transport;
use crate::types::{
    CertificateAdd, ClusterGroup, ClusterMember, Config, Operation, Project, ProjectCreate,
    ServerInfo, StoragePool,
};

/// Default bound of one HTTP request (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound of a background operation (create, start, stop, delete, exec, import).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// How to reach an Incus server over HTTPS (a remote host or a cluster member, port 8443).
///
/// The client certificate must be trusted by the server (`incus config trust add-certificate`, or
/// [`IncusClient::add_certificate`] over the unix socket). The server is verified against
/// `server_cert_pem` when given (compared byte for byte, whatever name it carries), else against
/// the system roots. `insecure_tls` skips server verification and must be set on purpose.
#[derive(Clone, Default)]
pub struct HttpsConfig {
    /// `https://host:8443` (a path, if any, is ignored).
    pub endpoint: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// The server certificate to pin: `environment.certificate` of `GET /1.0`, or the server's
    /// `server.crt` (a cluster's `cluster.crt`).
    pub server_cert_pem: Option<String>,
    /// Accept any server certificate. Never the default.
    pub insecure_tls: bool,
}

impl fmt::Debug for HttpsConfig {
    /// Names the endpoint and the trust mode; no certificate or key text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("endpoint", &self.endpoint)
            .field(
                "client_cert_pem",
                &format_args!("<{} bytes>", self.client_cert_pem.len()),
            )
            .field("client_key_pem", &format_args!("<redacted>"))
            .field(
                "server_cert_pem",
                &self
                    .server_cert_pem
                    .as_ref()
                    .map(|_| format_args!("<pinned>")),
            )
            .field("insecure_tls", &self.insecure_tls)
            .finish()
    }
}

/// A connection to one Incus server. Cheap to clone (one shared connection pool).
///
/// Server-wide calls (server info, projects, storage pools, certificates, operations) are methods
/// here; everything inside a project (images, aliases, profiles, instances, exec, files) is on the
/// [`ProjectClient`](crate::ProjectClient) returned by [`IncusClient::in_project`], so no call
/// can forget its project.
#[derive(Clone)]
pub struct IncusClient {
    transport: Transport,
}

impl fmt::Debug for IncusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncusClient")
            .field("endpoint", &self.transport.endpoint())
            .field("timeout", &self.transport.timeout)
            .field("operation_timeout", &self.transport.operation_timeout)
            .finish()
    }
}

impl IncusClient {
    /// A client for the local unix socket (see [`api::DEFAULT_UNIX_SOCKET`]). Nothing is dialled
    /// yet: a missing socket shows as [`Error::Transport`] naming the path on the first call.
    pub fn unix(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let endpoint = format!("unix:{}", path.display());
        // No idle connections: incusd (6.0) peeks at the first byte of every new connection to
        // its unix socket inside its accept loop, so a connection that is opened and left unused
        // stalls every later one (LXC's start/stop hooks included: starts then hang and fail).
        // hyper's pool makes such connections when a new connection races a returning idle one.
        // Connecting to a local socket is cheap; a stalled daemon is not.
        let http = reqwest::Client::builder()
            .unix_socket(path)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| {
                Error::config(
                    &endpoint,
                    format!("cannot set up the HTTP client: {}", error_chain(&e)),
                )
            })?;
        Ok(Self::new(http, api::UNIX_BASE_URL, endpoint))
    }

    /// A client for an HTTPS endpoint with a TLS client certificate; see [`HttpsConfig`].
    pub fn https(config: HttpsConfig) -> Result<Self> {
        let what = config.endpoint.as_str();
        let url =
            url::Url::parse(what).map_err(|e| Error::config(what, format!("not a URL: {e}")))?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(Error::config(
                what,
                "the endpoint must be https://host[:port]",
            ));
        }
        let base = url.origin().ascii_serialization();
        let builder = reqwest::Client::builder().connect_timeout(DEFAULT_TIMEOUT);
        let client_certs = tls::certs_from_pem(
            &format!("{what} client certificate"),
            &config.client_cert_pem,
        )?;
        let client_key = tls::key_from_pem(&format!("{what} client key"), &config.client_key_pem)?;
        let trust = match (&config.server_cert_pem, config.insecure_tls) {
            (Some(_), true) => {
                return Err(Error::config(
                    what,
                    "server_cert_pem and insecure_tls exclude each other",
                ));
            }
            (Some(pem), false) => {
                let mut certs =
                    tls::certs_from_pem(&format!("{what} pinned server certificate"), pem)?;
                Some(tls::ServerTrust::Pinned(certs.swap_remove(0)))
            }
            (None, true) => Some(tls::ServerTrust::Any),
            (None, false) => None,
        };
        let builder = match trust {
            Some(trust) => builder.tls_backend_preconfigured(tls::client_config(
                what,
                trust,
                (client_certs, client_key),
            )?),
            None => {
                // System roots: reqwest's own rustls setup, with our identity.
                let pem = format!(
                    "{}\n{}",
                    config.client_key_pem.trim(),
                    config.client_cert_pem.trim()
                );
                let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                    Error::config(
                        what,
                        format!("client certificate and key: {}", error_chain(&e)),
                    )
                })?;
                builder.identity(identity)
            }
        };
        let http = builder.build().map_err(|e| {
            Error::config(
                what,
                format!("cannot set up the HTTP client: {}", error_chain(&e)),
            )
        })?;
        Ok(Self::new(http, &base, base.clone()))
    }

    fn new(http: reqwest::Client, base: &str, endpoint: String) -> Self {
        IncusClient {
            transport: Transport::new(
                http,
                base,
                endpoint,
                DEFAULT_TIMEOUT,
                DEFAULT_OPERATION_TIMEOUT,
            ),
        }
    }

    /// Bound of one HTTP request (default [`DEFAULT_TIMEOUT`]); past it a call fails with
    /// [`Error::Timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.transport.timeout = timeout;
        self
    }

    /// Bound of the background operations the calls wait for (default
    /// [`DEFAULT_OPERATION_TIMEOUT`]); image uploads use it for the upload too.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.transport.operation_timeout = timeout;
        self
    }

    /// `unix:/path/to/socket` or `https://host:port`: what errors name.
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    /// True for a client of a local unix socket: the server shares this host's filesystem, so a
    /// host directory can be handed to it (disk devices); false for an HTTPS endpoint.
    pub fn is_local(&self) -> bool {
        self.transport.endpoint().starts_with("unix:")
    }

    pub fn timeout(&self) -> Duration {
        self.transport.timeout
    }

    pub fn operation_timeout(&self) -> Duration {
        self.transport.operation_timeout
    }

    /// The request cycle, for the project calls.
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    // ---- server-wide calls -------------------------------------------------------------------

    /// `GET /1.0`: version, extensions, whether this client is trusted, the server certificate.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        self.transport.get_json("server", api::SERVER, &[]).await
    }

    /// `PATCH /1.0`: sets the given server config keys; an empty value unsets a key.
    pub async fn update_server_config(&self, config: &Config) -> Result<()> {
        let request = self
            .transport
            .request(Method::PATCH, api::SERVER, &[])
            .json(&json!({ "config": config }));
        self.transport
            .expect_sync::<Value>("server config", request)
            .await
            .map(drop)
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        self.transport
            .get_json("projects", api::PROJECTS, &[(api::Q_RECURSION, "1")])
            .await
    }

    pub async fn get_project(&self, name: &str) -> Result<Project> {
        self.transport
            .get_json(
                &format!("project {name}"),
                &api::item(api::PROJECTS, name),
                &[],
            )
            .await
    }

    pub async fn create_project(&self, project: &ProjectCreate) -> Result<()> {
        let request = self
            .transport
            .request(Method::POST, api::PROJECTS, &[])
            .json(project);
        self.transport
            .expect_sync::<Value>(&format!("project {}", project.name), request)
            .await
            .map(drop)
    }

    /// Deletes an empty project (Incus refuses while instances, images or profiles remain).
    pub async fn delete_project(&self, name: &str) -> Result<()> {
        let what = format!("project {name}");
        let request = self
            .transport
            .request(Method::DELETE, &api::item(api::PROJECTS, name), &[]);
        self.transport
            .expect_sync::<Value>(&what, request)
            .await
            .map(drop)
    }

    /// The members of the cluster with their status; `Ok(vec![])` from a server that is not
    /// clustered (it has no members, only itself).
    pub async fn cluster_members(&self) -> Result<Vec<ClusterMember>> {
        if !self.server_info().await?.environment.server_clustered {
            return Ok(Vec::new());
        }
        self.transport
            .get_json(
                "cluster members",
                api::CLUSTER_MEMBERS,
                &[(api::Q_RECURSION, "1")],
            )
            .await
    }

    /// `GET /1.0/cluster/groups/<name>` (NotFound when there is no such group).
    pub async fn get_cluster_group(&self, name: &str) -> Result<ClusterGroup> {
        self.transport
            .get_json(
                &format!("cluster group {name}"),
                &api::item(api::CLUSTER_GROUPS, name),
                &[],
            )
            .await
    }

    pub async fn get_storage_pool(&self, name: &str) -> Result<StoragePool> {
        self.transport
            .get_json(
                &format!("storage pool {name}"),
                &api::item(api::STORAGE_POOLS, name),
                &[],
            )
            .await
    }

    /// `POST /1.0/certificates`: trusts a client certificate. Returns its fingerprint (SHA-256 of
    /// the DER), the name [`IncusClient::delete_certificate`] takes.
    pub async fn add_certificate(&self, certificate: &CertificateAdd) -> Result<String> {
        let what = format!("certificate {}", certificate.name);
        let der = tls::certs_from_pem(&what, &certificate.certificate_pem)?.swap_remove(0);
        let fingerprint = tls::fingerprint(&der);
        let body = json!({
            "name": certificate.name,
            "type": "client",
            "certificate": base64_der(&certificate.certificate_pem),
            "restricted": certificate.restricted,
            "projects": certificate.projects,
        });
        let request = self
            .transport
            .request(Method::POST, api::CERTIFICATES, &[])
            .json(&body);
        self.transport.expect_sync::<Value>(&what, request).await?;
        Ok(fingerprint)
    }

    pub async fn delete_certificate(&self, fingerprint: &str) -> Result<()> {
        let what = format!("certificate {fingerprint}");
        let request = self.transport.request(
            Method::DELETE,
            &api::item(api::CERTIFICATES, fingerprint),
            &[],
        );
        self.transport
            .expect_sync::<Value>(&what, request)
            .await
            .map(drop)
    }

    /// Waits up to `timeout` for operation `operation` (an ID or `/1.0/operations/<id>`) to end.
    /// Success returns the finished operation; failure is [`Error::OperationFailed`] with Incus's
    /// message; still running after `timeout` is [`Error::Timeout`].
    pub async fn wait_operation(&self, operation: &str, timeout: Duration) -> Result<Operation> {
        let id = api::operation_id(operation);
        self.transport
            .wait(&format!("operation {id}"), id, None, timeout)
            .await
    }
}

/// The base64 body of a PEM certificate (what `POST /1.0/certificates` takes).
fn base64_der(pem: &str) -> String {
    pem.lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .map(str::trim)
        .collect()
}
