//! The Incus objects this client reads and the requests it sends. Only the fields Pika uses are
//! typed; unknown fields are ignored, missing ones take their defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api;

/// A config map (`limits.cpu`, `user.pika.*`, ...).
pub type Config = BTreeMap<String, String>;

/// Devices by name, each a map of its settings (`type: disk`, `path: /`, `pool: default`).
pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

/// `GET /1.0`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub api_version: String,
    pub api_extensions: Vec<String>,
    /// `trusted` or `untrusted`: how the server sees this client.
    pub auth: String,
    pub config: BTreeMap<String, serde_json::Value>,
    pub environment: ServerEnvironment,
}

impl ServerInfo {
    /// Whether the server has the API extension `name`.
    pub fn has_extension(&self, name: &str) -> bool {
        self.api_extensions
            .iter()
            .any(|extension| extension == name)
    }

    /// A server config value as a string (`core.https_address`), if set.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(|value| value.as_str())
    }
}

/// The `environment` of [`ServerInfo`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    /// The server certificate (PEM): pin it in [`crate::HttpsConfig::server_cert_pem`].
    pub certificate: String,
    pub certificate_fingerprint: String,
    pub server_name: String,
    pub server_version: String,
    pub server_clustered: bool,
    pub project: String,
    pub addresses: Vec<String>,
}

/// `GET /1.0/projects/<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub config: Config,
    pub used_by: Vec<String>,
}

/// `POST /1.0/projects`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectCreate {
    pub name: String,
    pub description: String,
    /// Empty means Incus's defaults (`features.images`, `features.profiles`, ... all true; the new
    /// project then has its own, empty `default` profile without a root disk).
    pub config: Config,
}

impl ProjectCreate {
    pub fn new(name: impl Into<String>) -> Self {
        ProjectCreate {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}

/// `GET /1.0/profiles/<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub config: Config,
    pub devices: Devices,
    pub used_by: Vec<String>,
}

/// `GET /1.0/storage-pools/<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoragePool {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub status: String,
    pub config: Config,
    pub used_by: Vec<String>,
}

/// An entry of `GET /1.0/cluster/members?recursion=1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    pub server_name: String,
    pub url: String,
    /// `Online`, `Offline`, `Evacuated`, ...
    pub status: String,
    /// Why, in Incus's words ("No heartbeat for 21s ...").
    pub message: String,
    pub roles: Vec<String>,
    /// The cluster groups the member belongs to.
    pub groups: Vec<String>,
}

impl ClusterMember {
    /// Whether the member answers heartbeats (so its instances can be reached).
    pub fn is_online(&self) -> bool {
        self.status == api::MEMBER_ONLINE
    }
}

/// `GET /1.0/cluster/groups/<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterGroup {
    pub name: String,
    pub description: String,
    /// Names of the members in the group.
    pub members: Vec<String>,
}

/// `GET /1.0/images/aliases/<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageAlias {
    pub name: String,
    pub description: String,
    /// The fingerprint of the image the alias points at.
    pub target: String,
    #[serde(rename = "type")]
    pub image_type: String,
}

impl ImageAlias {
    /// The type of instance the image behind the alias makes (Incus cannot create a container
    /// from a VM image or the reverse).
    pub fn instance_type(&self) -> InstanceType {
        if self.image_type == InstanceType::VirtualMachine.as_str() {
            InstanceType::VirtualMachine
        } else {
            InstanceType::Container
        }
    }
}

/// `GET /1.0/images/<fingerprint>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Image {
    pub fingerprint: String,
    pub filename: String,
    pub size: u64,
    pub architecture: String,
    #[serde(rename = "type")]
    pub image_type: String,
    pub public: bool,
    pub aliases: Vec<ImageAliasRef>,
    pub properties: Config,
    pub created_at: String,
    pub uploaded_at: String,
}

/// One entry of [`Image::aliases`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageAliasRef {
    pub name: String,
    pub description: String,
}

/// A split image on disk: a metadata tarball plus a rootfs (container: squashfs or tarball) or a
/// disk (virtual machine: qcow2). See [`crate::ProjectClient::import_image`].
#[derive(Debug, Clone)]
pub struct ImageImport {
    pub metadata: std::path::PathBuf,
    pub rootfs: std::path::PathBuf,
    pub image_type: InstanceType,
    /// Aliases created (in order) once the image is in; an existing alias is a conflict.
    pub aliases: Vec<String>,
    /// Aliases Incus creates inside the upload itself (`X-Incus-aliases`), so the image never
    /// exists without them. Incus 6.0 keeps the image when one of them already exists (the
    /// operation fails, the image stays unaliased): use names nobody else can be using.
    pub upload_aliases: Vec<String>,
    pub properties: Config,
    pub public: bool,
}

impl ImageImport {
    /// A container image from `metadata` + `rootfs`.
    pub fn container(
        metadata: impl Into<std::path::PathBuf>,
        rootfs: impl Into<std::path::PathBuf>,
    ) -> Self {
        ImageImport {
            metadata: metadata.into(),
            rootfs: rootfs.into(),
            image_type: InstanceType::Container,
            aliases: Vec::new(),
            upload_aliases: Vec::new(),
            properties: Config::new(),
            public: false,
        }
    }

    /// A virtual-machine image from `metadata` + `disk` (qcow2).
    pub fn virtual_machine(
        metadata: impl Into<std::path::PathBuf>,
        disk: impl Into<std::path::PathBuf>,
    ) -> Self {
        ImageImport {
            image_type: InstanceType::VirtualMachine,
            ..ImageImport::container(metadata, disk)
        }
    }

    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// An alias created as part of the upload; see [`ImageImport::upload_aliases`].
    pub fn upload_alias(mut self, alias: impl Into<String>) -> Self {
        self.upload_aliases.push(alias.into());
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

/// Container or virtual machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceType {
    #[default]
    #[serde(rename = "container")]
    Container,
    #[serde(rename = "virtual-machine")]
    VirtualMachine,
}

impl InstanceType {
    /// The Incus spelling (`container`, `virtual-machine`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceType::Container => "container",
            InstanceType::VirtualMachine => "virtual-machine",
        }
    }
}

impl std::fmt::Display for InstanceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /1.0/instances` from an image alias. Build with [`InstanceCreate::from_alias`].
#[derive(Debug, Clone)]
pub struct InstanceCreate {
    pub name: String,
    /// The image alias in the same project.
    pub alias: String,
    pub instance_type: InstanceType,
    /// `None`: Incus's default (`["default"]`); `Some(vec![])`: no profiles at all.
    pub profiles: Option<Vec<String>>,
    pub config: Config,
    pub devices: Devices,
    /// Cluster member to place the instance on (`?target=`).
    pub target: Option<String>,
    pub description: String,
    pub ephemeral: bool,
    /// Start it as part of the create operation.
    pub start: bool,
}

impl InstanceCreate {
    /// A container `name` from the image behind `alias`, default profiles, not started.
    pub fn from_alias(name: impl Into<String>, alias: impl Into<String>) -> Self {
        InstanceCreate {
            name: name.into(),
            alias: alias.into(),
            instance_type: InstanceType::Container,
            profiles: None,
            config: Config::new(),
            devices: Devices::new(),
            target: None,
            description: String::new(),
            ephemeral: false,
            start: false,
        }
    }

    pub fn instance_type(mut self, instance_type: InstanceType) -> Self {
        self.instance_type = instance_type;
        self
    }

    pub fn profiles<I, S>(mut self, profiles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.profiles = Some(profiles.into_iter().map(Into::into).collect());
        self
    }

    /// Sets one config key as given (`limits.memory`).
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Sets `user.<name>` (`user_config("pika.guest_role", ..)` sets `user.pika.guest_role`).
    pub fn user_config(mut self, name: &str, value: impl Into<String>) -> Self {
        self.config.insert(api::user_key(name), value.into());
        self
    }

    pub fn device<I, K, V>(mut self, name: impl Into<String>, settings: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let settings = settings
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.devices.insert(name.into(), settings);
        self
    }

    pub fn target(mut self, member: impl Into<String>) -> Self {
        self.target = Some(member.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.ephemeral = ephemeral;
        self
    }

    pub fn start(mut self, start: bool) -> Self {
        self.start = start;
        self
    }
}

/// `null` as the type's default: a cluster lists an instance of an offline member with its
/// name, location and status `Error`, and `null` for everything it could not ask that member.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `GET /1.0/instances/<name>` (and the entries of a recursive list).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub name: String,
    pub project: String,
    pub description: String,
    /// `Running`, `Stopped`, ... (`Error` for an instance of an offline cluster member).
    pub status: String,
    pub status_code: i64,
    #[serde(rename = "type")]
    pub instance_type: InstanceType,
    pub architecture: String,
    #[serde(deserialize_with = "null_as_default")]
    pub profiles: Vec<String>,
    /// The instance's own config (not the profiles').
    #[serde(deserialize_with = "null_as_default")]
    pub config: Config,
    #[serde(deserialize_with = "null_as_default")]
    pub devices: Devices,
    #[serde(deserialize_with = "null_as_default")]
    pub expanded_config: Config,
    #[serde(deserialize_with = "null_as_default")]
    pub expanded_devices: Devices,
    pub ephemeral: bool,
    /// Cluster member the instance lives on.
    pub location: String,
    pub created_at: String,
}

impl Instance {
    /// The value of `user.<name>` in the instance's own config.
    pub fn user_config(&self, name: &str) -> Option<&str> {
        self.config.get(&api::user_key(name)).map(String::as_str)
    }

    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }
}

/// `GET /1.0/instances/<name>/state`. `network`, `memory`, `disk` are left as JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    pub status: String,
    pub status_code: i64,
    pub pid: i64,
    pub processes: i64,
    pub network: Option<serde_json::Value>,
    pub memory: Option<serde_json::Value>,
    pub disk: Option<serde_json::Value>,
}

impl InstanceState {
    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }
}

/// A command run in an instance with its output recorded (no websocket).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub environment: Config,
    pub cwd: Option<String>,
    pub user: Option<u32>,
    pub group: Option<u32>,
    /// How long to wait for the command; the client's operation timeout when `None`.
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            command: command.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.insert(key.into(), value.into());
        self
    }

    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some(uid);
        self.group = Some(gid);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a command run by [`crate::ProjectClient::exec`] left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Owner and mode of a pushed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o644`).
    pub mode: u32,
}

impl Default for FileMode {
    /// root:root 0644.
    fn default() -> Self {
        FileMode {
            uid: 0,
            gid: 0,
            mode: 0o644,
        }
    }
}

/// A background operation (`/1.0/operations/<id>`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    pub id: String,
    pub class: String,
    pub description: String,
    /// `Running`, `Success`, `Failure`, `Cancelled`, ...
    pub status: String,
    pub status_code: i64,
    pub metadata: Option<serde_json::Value>,
    pub err: String,
    pub may_cancel: bool,
    pub location: String,
    /// What the operation works on, by kind (`instances` -> `/1.0/instances/c1?project=p`).
    /// `None` when Incus sends `null`.
    pub resources: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl Operation {
    /// Whether the operation works on instance `name` (of any project: match the project too
    /// when it matters).
    pub fn touches_instance(&self, name: &str) -> bool {
        let instances = self.resources.as_ref().and_then(|r| r.get("instances"));
        instances.into_iter().flatten().any(|path| {
            let path = path.split('?').next().unwrap_or(path);
            path.rsplit('/').next() == Some(name)
        })
    }

    /// Finished, one way or the other (success 200, failure 400, cancelled 401).
    pub fn is_done(&self) -> bool {
        self.status_code >= 200
    }

    pub fn is_success(&self) -> bool {
        self.status_code == 200
    }
}

/// `POST /1.0/certificates`: trust a client certificate.
#[derive(Debug, Clone, Default)]
pub struct CertificateAdd {
    pub name: String,
    /// The client certificate (PEM).
    pub certificate_pem: String,
    /// Restrict the certificate to `projects`.
    pub restricted: bool,
    pub projects: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Incus 6.0 lists for an instance whose cluster member is offline.
    #[test]
    fn an_instance_of_an_offline_member_reads_with_empty_fields() {
        let listed = r#"{"architecture":"","config":null,"created_at":"0001-01-01T00:00:00Z",
            "description":"","devices":null,"ephemeral":false,"location":"node3",
            "name":"pika-agent-1","profiles":null,"project":"p","status":"Error",
            "status_code":112,"type":"container"}"#;
        let instance: Instance = serde_json::from_str(listed).unwrap();
        assert_eq!(instance.location, "node3");
        assert_eq!(instance.status, "Error");
        assert!(instance.config.is_empty() && instance.profiles.is_empty());
        assert!(!instance.is_running());
    }

    #[test]
    fn cluster_members_know_whether_they_are_online() {
        let listed = r#"[{"server_name":"node1","status":"Online","groups":["default"]},
            {"server_name":"node3","status":"Offline","message":"No heartbeat for 21s"}]"#;
        let members: Vec<ClusterMember> = serde_json::from_str(listed).unwrap();
        assert!(members[0].is_online());
        assert!(!members[1].is_online());
        assert_eq!(api::cluster_group_target("gpu"), "@gpu");
    }
}
