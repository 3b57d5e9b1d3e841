//! The role spec and its value types. Field and variant names serialise as in roles.toml.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One guest role: every key of its `[roles.<id>]` table, typed. `id` and `roles_digest` are not
/// written in roles.toml: the table's key and the digest of the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "manifest", derive(Deserialize))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(skip_deserializing)]
    pub id: &'static str,
    pub description: &'static str,
    /// The Incus image alias the role's image is published under.
    pub default_alias: &'static str,
    /// The flake package attribute that builds the role's image.
    pub package: &'static str,
    /// Older package attributes kept as aliases of `package`.
    #[serde(default, deserialize_with = "crate::manifest::leak")]
    pub legacy_packages: &'static [&'static str],
    pub image_name: &'static str,
    /// The image variant recorded in the Incus image properties.
    pub variant: &'static str,
    pub system: System,
    pub instance_type: InstanceType,
    #[serde(deserialize_with = "crate::manifest::positive")]
    pub disk_size_mib: u32,
    /// Repository-relative NixOS module paths.
    #[serde(deserialize_with = "crate::manifest::leak")]
    pub modules: &'static [&'static str],
    /// Payload arguments the modules take (formal arguments of roles.nix).
    #[serde(default, deserialize_with = "crate::manifest::leak")]
    pub special_args: &'static [&'static str],
    pub runtime_mode: RuntimeMode,
    pub readiness: Readiness,
    /// The instance's `limits.cpu`.
    #[serde(deserialize_with = "crate::manifest::positive")]
    pub cpu: u32,
    /// The instance's `limits.memory`, in MiB.
    #[serde(deserialize_with = "crate::manifest::positive")]
    pub memory_mib: u32,
    /// Whether the image is signed for Secure Boot (false: VMs get `security.secureboot=false`).
    pub secure_boot: bool,
    /// The Incus cluster group the role's instances are placed in.
    #[serde(default)]
    pub cluster_group: Option<&'static str>,
    /// The guest TCP port of the role's service, exposed by launchers with an Incus proxy device.
    #[serde(default, deserialize_with = "crate::manifest::port")]
    pub service_port: Option<u16>,
    /// The unprivileged user the role's workload runs as.
    #[serde(default)]
    pub user: Option<RoleUser>,
    /// Host directories the launcher attaches, by Incus device name.
    #[serde(default, deserialize_with = "crate::manifest::leak")]
    pub mounts: &'static [RoleMount],
    /// Extra Incus instance config, sorted by key.
    #[serde(default)]
    pub instance_config: InstanceConfig,
    /// sha256 (hex) of the canonical JSON of the rest of the spec: changes when (only) this role
    /// changes. Images record it as provenance.
    #[serde(skip_deserializing)]
    pub roles_digest: &'static str,
}

/// Enums whose values are fixed words of roles.toml: `ALL`, `as_str`, `Display`, `FromStr` and
/// serde all use the one spelling, and an unknown word names the key and every valid word.
macro_rules! words {
    ($(#[$m:meta])* $name:ident, $key:literal { $($(#[$vm:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $word)] $variant,)+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The roles.toml spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let words: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{} `{s}` is not one of: {}", $key, words.join(", "))
                })
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

words!(
    /// How a role's guests run (roles.toml `runtime-mode`).
    RuntimeMode, "runtime-mode" {
        /// Provisioned and kept running by pika-server.
        ManagedService = "managed-service",
        /// Runs one job and is deleted (CI).
        OneShot = "one-shot",
        /// Launched by an operator and used interactively.
        OperatorSandbox = "operator-sandbox",
    }
);
words!(
    /// The Nix system a role's image is built for.
    System, "system" { X86_64Linux = "x86_64-linux", Aarch64Linux = "aarch64-linux", }
);
words!(
    /// The Incus instance type of a role.
    InstanceType, "instance-type" { VirtualMachine = "virtual-machine", Container = "container", }
);

/// When a launched guest counts as ready (roles.toml `readiness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Readiness {
    /// The instance is running.
    Booted,
    /// The Incus agent inside the guest answers (exec works).
    IncusAgent,
    /// The guest's SSH server accepts connections.
    Ssh,
    /// This absolute guest file exists (the guest's own lifecycle signal).
    LifecycleFile(&'static str),
    /// `GET http://127.0.0.1:{port}{path}` answers 2xx *inside* the guest (probed through Incus
    /// exec or the agent's own proxy device, never at the guest's address). roles.toml spells it
    /// `http://127.0.0.1:PORT/PATH`; `path` is absolute, without query or fragment.
    Http { port: u16, path: &'static str },
}

impl Readiness {
    /// The named kinds, as spelled in roles.toml.
    pub const KINDS: [(&'static str, Readiness); 3] = [
        ("booted", Readiness::Booted),
        ("incus-agent", Readiness::IncusAgent),
        ("ssh", Readiness::Ssh),
    ];

    /// The roles.toml spelling: the kind, the lifecycle file's path, or the URL (`Http` is the
    /// only one built at run time, hence the `Cow`).
    pub fn as_str(self) -> Cow<'static, str> {
        match self {
            Readiness::LifecycleFile(path) => Cow::Borrowed(path),
            Readiness::Http { .. } => Cow::Owned(self.url().unwrap_or_default()),
            kind => Cow::Borrowed(
                Self::KINDS
                    .iter()
                    .find(|(_, k)| *k == kind)
                    .map_or("", |k| k.0),
            ),
        }
    }

    /// For `Http`: the URL probed inside the guest, `http://127.0.0.1:PORT/PATH`.
    pub fn url(self) -> Option<String> {
        match self {
            Readiness::Http { port, path } => Some(format!(
                "http://{}:{port}{path}",
                crate::HTTP_READINESS_HOST
            )),
            _ => None,
        }
    }

    /// Reads the roles.toml spelling; the error names the value and what is accepted.
    pub fn parse(text: &'static str) -> Result<Self, String> {
        if let Some((_, kind)) = Self::KINDS.iter().find(|(word, _)| *word == text) {
            Ok(*kind)
        } else if text.contains("://") {
            let (port, path) = crate::parse_http_readiness(text)
                .map_err(|why| format!("readiness URL `{text}` {why}"))?;
            Ok(Readiness::Http { port, path })
        } else if text.starts_with('/') {
            crate::check_guest_path(text)
                .map_err(|why| format!("readiness lifecycle file `{text}` {why}"))?;
            Ok(Readiness::LifecycleFile(text))
        } else {
            Err(format!(
                "readiness `{text}` is not one of: booted, incus-agent, ssh, an absolute lifecycle file path, or http://{}:PORT/PATH",
                crate::HTTP_READINESS_HOST
            ))
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Serialized as its roles.toml spelling.
impl Serialize for Readiness {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_str())
    }
}

/// One mount of a role (roles.toml `[[roles.<id>.mounts]]`): the launcher supplies a host
/// directory for `name` and Incus shows it at `path` in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleMount {
    /// The Incus device name.
    pub name: &'static str,
    /// Absolute guest path.
    pub path: &'static str,
    pub read_only: bool,
    /// Attached only when the launcher has a source for it (e.g. a cargo cache); a required mount
    /// without a source is an error.
    #[serde(default)]
    pub optional: bool,
}

/// The text form (roles.sh, `pika-roles show`): `name:path:ro|rw`, then `:optional` if it is.
impl fmt::Display for RoleMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.read_only { "ro" } else { "rw" };
        write!(f, "{}:{}:{mode}", self.name, self.path)?;
        f.write_str(if self.optional { ":optional" } else { "" })
    }
}

/// The unprivileged user a role's workload runs as (roles.toml `[roles.<id>.user]`): never root
/// (uid/gid >= 1), never `nobody` (65534).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "manifest", derive(Deserialize))]
#[serde(deny_unknown_fields)]
pub struct RoleUser {
    pub name: &'static str,
    #[serde(deserialize_with = "crate::manifest::posix_id")]
    pub uid: u32,
    pub group: &'static str,
    #[serde(deserialize_with = "crate::manifest::posix_id")]
    pub gid: u32,
}

/// The text form (roles.sh, `pika-roles show`): `name:uid:group:gid`.
impl fmt::Display for RoleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.name, self.uid, self.group, self.gid)
    }
}

/// Extra Incus instance config (roles.toml `[roles.<id>.instance-config]`), sorted by key. A
/// value is a string, or `{ value, reason }` for keys that need a reason; `reasons` keeps those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceConfig {
    pub values: &'static [(&'static str, &'static str)],
    pub reasons: &'static [(&'static str, &'static str)],
}

impl InstanceConfig {
    pub fn reason(&self, key: &str) -> Option<&'static str> {
        self.reasons
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| *r)
    }
}

/// Serialized as the config it sets, `key = "value"` (roles.nix, roles.sh and
/// nix/incus/launch-config.nix read it so); the reasons are for reviewers of roles.toml and go
/// into the roles digest only.
impl Serialize for InstanceConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.values.iter().copied())
    }
}
