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
}
