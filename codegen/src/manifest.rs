//! The raw shape of roles.toml, as serde reads it: unknown keys are rejected and every value keeps
//! its span so validation can point at it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub schema: Spanned<i64>,
    #[serde(default)]
    pub roles: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawRole>>>>,
}

/// One `[roles.<id>]` table. The schema-2 keys are optional here so that a schema-1 manifest
/// still parses and validation can name every missing key with its meaning (and `migrate` can add
/// them); validation makes the required ones required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawRole {
    pub description: Spanned<String>,
    pub default_alias: Spanned<String>,
    pub package: Spanned<String>,
    #[serde(default)]
    pub legacy_packages: Vec<Spanned<String>>,
    pub image_name: Spanned<String>,
    pub variant: Spanned<String>,
    pub system: Spanned<String>,
    pub instance_type: Spanned<String>,
    pub disk_size_mib: Spanned<i64>,
    pub modules: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub special_args: Vec<Spanned<String>>,
    // Schema 2: the runtime contract.
    pub runtime_mode: Option<Spanned<String>>,
    pub readiness: Option<Spanned<String>>,
    pub cpu: Option<Spanned<i64>>,
    pub memory_mib: Option<Spanned<i64>>,
    pub secure_boot: Option<Spanned<bool>>,
    pub cluster_group: Option<Spanned<String>>,
    pub service_port: Option<Spanned<i64>>,
    pub user: Option<Spanned<RawUser>>,
    #[serde(default)]
    pub mounts: Vec<Spanned<RawMount>>,
    /// Values are a string or `{ value, reason }`; checked by hand (serde's untagged enums lose
    /// spans and give vague errors).
    #[serde(default)]
    pub instance_config: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

impl RawRole {
    /// Which of `contract::REQUIRED_CONTRACT_KEYS` the role has, in that order.
    pub fn present_contract_keys(&self) -> [bool; 5] {
        [
            self.runtime_mode.is_some(),
            self.readiness.is_some(),
            self.cpu.is_some(),
            self.memory_mib.is_some(),
            self.secure_boot.is_some(),
        ]
    }
}

/// One `[[roles.<id>.mounts]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMount {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    pub read_only: Spanned<bool>,
    pub optional: Option<Spanned<bool>>,
}

/// The `[roles.<id>.user]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: Spanned<String>,
    pub uid: Spanned<i64>,
    pub group: Spanned<String>,
    pub gid: Spanned<i64>,
}
