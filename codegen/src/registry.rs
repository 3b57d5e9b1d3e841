//! The validated role registry: what every generator renders from.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::contract::{
    self, ConfigValue, InstanceConfig, Mount, READINESS_KINDS, REQUIRED_CONTRACT_KEYS,
    RUNTIME_MODES, User,
};
use crate::diagnostic::{Diagnostic, Diagnostics, SourceMap};
use crate::digest;
use crate::manifest::{RawManifest, RawMount, RawRole, RawUser};

/// The manifest schema this generator understands.
pub const SCHEMA_VERSION: i64 = 2;
/// The previous schema: read only to say how to migrate (`pika-roles migrate`).
pub const PREVIOUS_SCHEMA_VERSION: i64 = 1;
/// Systems a role may target.
pub const SYSTEMS: &[&str] = &["x86_64-linux", "aarch64-linux"];
/// Incus instance types a role may use.
pub const INSTANCE_TYPES: &[&str] = &["virtual-machine", "container"];
/// Words that cannot be Nix identifiers (special-args become formal arguments).
const NIX_KEYWORDS: &[&str] = &[
    "assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with",
];
/// UpperCamelCase names that are Rust keywords and so cannot be enum variants.
const RUST_RESERVED_VARIANTS: &[&str] = &["Self"];

/// One guest role, validated. Field names serialize as in roles.toml.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Role {
    pub id: String,
    /// The Rust enum variant, the ID in UpperCamelCase.
    #[serde(skip)]
    pub variant_name: String,
    pub description: String,
    pub default_alias: String,
    pub package: String,
    pub legacy_packages: Vec<String>,
    pub image_name: String,
    pub variant: String,
    pub system: String,
    pub instance_type: String,
    pub disk_size_mib: u32,
    /// Repository-relative paths, as written in roles.toml.
    pub modules: Vec<String>,
    pub special_args: Vec<String>,
    pub runtime_mode: String,
    /// `booted`, `incus-agent`, `ssh`, an absolute lifecycle file path or
    /// `http://127.0.0.1:PORT/PATH`.
    pub readiness: String,
    pub cpu: u32,
    pub memory_mib: u32,
    pub secure_boot: bool,
    pub cluster_group: Option<String>,
    /// The guest TCP port of the role's service, exposed by launchers with a proxy device.
    pub service_port: Option<u16>,
    /// The unprivileged user the role's workload runs as.
    pub user: Option<User>,
    pub mounts: Vec<Mount>,
    pub instance_config: InstanceConfig,
    /// sha256 hex of Nix's `builtins.toJSON` of this role's table as `builtins.fromTOML` reads it.
    pub roles_digest: String,
}

/// Field names accepted by `pika-roles show --field`, as in roles.toml.
pub const FIELD_NAMES: &[&str] = &[
    "id",
    "description",
    "default-alias",
    "package",
    "legacy-packages",
    "image-name",
    "variant",
    "system",
    "instance-type",
    "disk-size-mib",
    "modules",
    "special-args",
    "runtime-mode",
    "readiness",
    "cpu",
    "memory-mib",
    "secure-boot",
    "cluster-group",
    "service-port",
    "user",
    "mounts",
    "instance-config",
    "roles-digest",
];

impl Role {
    /// The values of one field, one entry per list item (scalars give one entry).
    pub fn field(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_owned()]);
        match name {
            "id" => one(&self.id),
            "description" => one(&self.description),
            "default-alias" => one(&self.default_alias),
            "package" => one(&self.package),
            "legacy-packages" => Some(self.legacy_packages.clone()),
            "image-name" => one(&self.image_name),
            "variant" => one(&self.variant),
            "system" => one(&self.system),
            "instance-type" => one(&self.instance_type),
            "disk-size-mib" => Some(vec![self.disk_size_mib.to_string()]),
            "modules" => Some(self.modules.clone()),
            "special-args" => Some(self.special_args.clone()),
            "runtime-mode" => one(&self.runtime_mode),
            "readiness" => one(&self.readiness),
            "cpu" => Some(vec![self.cpu.to_string()]),
            "memory-mib" => Some(vec![self.memory_mib.to_string()]),
            "secure-boot" => Some(vec![self.secure_boot.to_string()]),
            "cluster-group" => Some(self.cluster_group.iter().cloned().collect()),
            "service-port" => Some(self.service_port.iter().map(u16::to_string).collect()),
            "user" => Some(self.user.iter().map(User::spec).collect()),
            "mounts" => Some(self.mounts.iter().map(Mount::spec).collect()),
            "instance-config" => Some(self.instance_config_pairs()),
            "roles-digest" => one(&self.roles_digest),
            _ => None,
        }
    }

    /// `key=value` for each instance-config entry, sorted by key.
    pub fn instance_config_pairs(&self) -> Vec<String> {
        self.instance_config
            .iter()
            .map(|(k, v)| format!("{k}={}", v.value()))
            .collect()
    }
}

/// All roles, sorted by ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    pub roles: Vec<Role>,
}

impl Registry {
    /// Parses and validates manifest text. `path` is used in messages; `repo_root` is where module
    /// paths must exist.
    pub fn parse(text: &str, path: &Path, repo_root: &Path) -> Result<Self, Diagnostics> {
        let map = SourceMap::new(path, text);
        let at_error = |e: toml::de::Error| {
            let span = e.span().unwrap_or(0..0);
            Diagnostics(vec![map.at(&span, e.message().trim().to_owned())])
        };
        // One parse: the digests read the document tree, then serde consumes it.
        let root = toml::de::DeTable::parse(text).map_err(at_error)?;
        let digests = digest::role_digests_of(root.get_ref());
        let raw = RawManifest::deserialize(toml::de::Deserializer::from(root)).map_err(at_error)?;
        let mut registry = Validator {
            map: &map,
            repo_root,
            errors: Vec::new(),
            modules_checked: BTreeMap::new(),
        }
        .run(raw)?;
        for role in &mut registry.roles {
            let digest = digests
                .get(&role.id)
                .cloned()
                .unwrap_or_else(|| Err("the role's table was not found".into()));
            role.roles_digest = digest.map_err(|why| {
                Diagnostics(vec![map.at(
                    &(0..0),
                    format!(
                        "cannot compute the roles digest of role `{}`: {why}",
                        role.id
                    ),
                )])
            })?;
        }
        Ok(registry)
    }

    /// Reads, parses and validates a manifest file; modules are resolved next to it.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                path: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read manifest: {e}"),
            }])
        })?;
        Self::parse(&text, path, &repo_root_of(path))
    }

    pub fn get(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// "a, b, c": the valid IDs, for error messages.
    pub fn valid_ids(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The union of all roles' special args, sorted: the formal arguments of roles.nix.
    pub fn all_special_args(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.roles.iter().flat_map(|r| &r.special_args).collect();
        set.into_iter().cloned().collect()
    }
}

/// The directory holding the manifest; generated paths and module paths are relative to it.
pub fn repo_root_of(manifest: &Path) -> std::path::PathBuf {
    match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => ".".into(),
    }
}

struct Validator<'a> {
    map: &'a SourceMap<'a>,
    repo_root: &'a Path,
    errors: Vec<Diagnostic>,
    /// Module paths already checked (roles often share modules): one filesystem lookup each.
    modules_checked: BTreeMap<String, Result<(), String>>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(self.map.at(&at.span(), message));
    }

    fn run(mut self, raw: RawManifest) -> Result<Registry, Diagnostics> {
        let schema = *raw.schema.get_ref();
        if schema == PREVIOUS_SCHEMA_VERSION {
            let required: Vec<&str> = REQUIRED_CONTRACT_KEYS.iter().map(|(k, _, _)| *k).collect();
            self.error(
                &raw.schema,
                format!(
                    "schema {schema} manifest: schema {SCHEMA_VERSION} adds the per-role keys {} (required) and cluster-group, mounts, instance-config (optional); run `pika-roles migrate` to add them with explicit values, then review them",
                    required.join(", ")
                ),
            );
        } else if schema != SCHEMA_VERSION {
            self.error(
                &raw.schema,
                format!(
                    "unsupported schema {schema}; this generator reads schema = {SCHEMA_VERSION} (and migrates schema = {PREVIOUS_SCHEMA_VERSION})"
                ),
            );
        }
        let roles_table = match raw.roles {
            Some(t) if !t.get_ref().is_empty() => t,
            Some(t) => {
                self.error(&t, "no roles defined: add at least one [roles.<id>] table");
                return Err(self.finish());
            }
            None => {
                self.errors.push(self.map.at(
                    &(0..0),
                    "no roles defined: add at least one [roles.<id>] table",
                ));
                return Err(self.finish());
            }
        };

        // The table is a BTreeMap keyed by ID, so roles come out sorted by ID.
        let mut roles = Vec::new();
        for (id, role) in roles_table.into_inner() {
            if let Some(role) = self.role(id, role) {
                roles.push(role);
            }
        }
        self.check_unique(&roles);
        if self.errors.is_empty() {
            Ok(Registry {
                roles: roles.into_iter().map(|(r, _)| r).collect(),
            })
        } else {
            Err(self.finish())
        }
    }

    fn finish(mut self) -> Diagnostics {
        self.errors.sort_by_key(|d| (d.line, d.col));
        self.errors.dedup();
        Diagnostics(self.errors)
    }

    /// Validates one role's own fields; returns it with the spans needed for cross-role checks.
    fn role(&mut self, id: Spanned<String>, raw: Spanned<RawRole>) -> Option<(Role, RoleSpans)> {
        let before = self.errors.len();
        let role_span = raw.span();
        let raw = raw.into_inner();
        if !is_kebab_id(id.get_ref()) {
            self.error(
                &id,
                format!(
                    "role ID `{}` must be lowercase kebab-case ([a-z][a-z0-9]*(-[a-z0-9]+)*)",
                    id.get_ref()
                ),
            );
        }
        let variant_name = upper_camel(id.get_ref());
        if RUST_RESERVED_VARIANTS.contains(&variant_name.as_str()) {
            self.error(
                &id,
                format!(
                    "role ID `{}` becomes the Rust keyword `{variant_name}`",
                    id.get_ref()
                ),
            );
        }
        if raw.description.get_ref().trim().is_empty() {
            self.error(&raw.description, "description must not be empty");
        } else if let Err(why) = contract::check_text(raw.description.get_ref()) {
            self.error(&raw.description, format!("description {why}"));
        }
        if let Err(why) = check_alias(raw.default_alias.get_ref()) {
            self.error(
                &raw.default_alias,
                format!("invalid alias `{}`: {why}", raw.default_alias.get_ref()),
            );
        }
        for name in std::iter::once(&raw.package).chain(&raw.legacy_packages) {
            if !is_nix_attr_name(name.get_ref()) {
                self.error(
                    name,
                    format!(
                        "package name `{}` is not a Nix attribute name ([A-Za-z_][A-Za-z0-9_'-]*)",
                        name.get_ref()
                    ),
                );
            }
        }
        for (what, value) in [("image-name", &raw.image_name), ("variant", &raw.variant)] {
            if !is_store_name(value.get_ref()) {
                self.error(
                    value,
                    format!(
                        "{what} `{}` is not safe in a Nix store name ([A-Za-z0-9+._?=-], not starting with `.`)",
                        value.get_ref()
                    ),
                );
            }
        }
        self.one_of(&raw.system, "system", SYSTEMS);
        self.one_of(&raw.instance_type, "instance-type", INSTANCE_TYPES);
        let disk_size_mib = self.positive_u32(&raw.disk_size_mib, "disk-size-mib");
        if raw.modules.get_ref().is_empty() {
            self.error(&raw.modules, "modules must list at least one NixOS module");
        }
        for module in raw.modules.get_ref() {
            let checked = match self.modules_checked.get(module.get_ref()) {
                Some(result) => result.clone(),
                None => {
                    let result = check_module_path(self.repo_root, module.get_ref());
                    self.modules_checked
                        .insert(module.get_ref().clone(), result.clone());
                    result
                }
            };
            if let Err(why) = checked {
                self.error(module, format!("module `{}` {why}", module.get_ref()));
            }
        }
        let mut seen = BTreeSet::new();
        for arg in &raw.special_args {
            if !is_nix_identifier(arg.get_ref()) {
                self.error(
                    arg,
                    format!("special arg `{}` is not a Nix identifier", arg.get_ref()),
                );
            } else if !seen.insert(arg.get_ref().clone()) {
                self.error(
                    arg,
                    format!(
                        "special arg `{}` is listed twice in this role",
                        arg.get_ref()
                    ),
                );
            }
        }
        let contract = self.contract(&role_span, &raw);
        if self.errors.len() != before {
            return None;
        }
        let contract = contract?;
        let spans = RoleSpans {
            id: id.span(),
            alias: raw.default_alias.span(),
            packages: std::iter::once(&raw.package)
                .chain(&raw.legacy_packages)
                .map(|p| (p.get_ref().clone(), p.span()))
                .collect(),
        };
        let role = Role {
            id: id.into_inner(),
            variant_name,
            description: raw.description.into_inner(),
            default_alias: raw.default_alias.into_inner(),
            package: raw.package.into_inner(),
            legacy_packages: raw
                .legacy_packages
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            image_name: raw.image_name.into_inner(),
            variant: raw.variant.into_inner(),
            system: raw.system.into_inner(),
            instance_type: raw.instance_type.into_inner(),
            disk_size_mib,
            modules: raw
                .modules
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            special_args: raw
                .special_args
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            runtime_mode: contract.runtime_mode,
            readiness: contract.readiness,
            cpu: contract.cpu,
            memory_mib: contract.memory_mib,
            secure_boot: contract.secure_boot,
            cluster_group: contract.cluster_group,
            service_port: contract.service_port,
            user: contract.user,
            mounts: contract.mounts,
            instance_config: contract.instance_config,
            // Filled in by `Registry::parse` from the role's table once everything is valid.
            roles_digest: String::new(),
        };
        Some((role, spans))
    }

    /// An integer between 1 and u32::MAX, or an error at it (and 0).
    fn positive_u32(&mut self, value: &Spanned<i64>, what: &str) -> u32 {
        let n = *value.get_ref();
        match u32::try_from(n) {
            Ok(v) if v > 0 => v,
            _ => {
                self.error(
                    value,
                    format!(
                        "{what} must be an integer between 1 and {}, got {n}",
                        u32::MAX
                    ),
                );
                0
            }
        }
    }

    /// The schema-2 runtime contract of one role; `None` when a required key is missing (each
    /// missing key is reported at the role's table with its meaning).
    fn contract(&mut self, role_span: &Range<usize>, raw: &RawRole) -> Option<Contract> {
        let mut complete = true;
        let present = raw.present_contract_keys();
        for ((key, meaning, _), present) in REQUIRED_CONTRACT_KEYS.iter().zip(present) {
            if !present {
                complete = false;
                self.errors.push(
                    self.map
                        .at(role_span, format!("missing field `{key}` ({meaning})")),
                );
            }
        }
        if let Some(mode) = &raw.runtime_mode {
            self.one_of(mode, "runtime-mode", RUNTIME_MODES);
        }
        if let Some(readiness) = &raw.readiness {
            self.readiness(readiness);
        }
        let cpu = raw.cpu.as_ref().map(|v| self.positive_u32(v, "cpu"));
        let memory_mib = raw
            .memory_mib
            .as_ref()
            .map(|v| self.positive_u32(v, "memory-mib"));
        if let Some(group) = &raw.cluster_group
            && let Err(why) = contract::check_cluster_group(group.get_ref())
        {
            self.error(group, format!("cluster-group `{}` {why}", group.get_ref()));
        }
        let service_port =
            raw.service_port
                .as_ref()
                .and_then(|port| match u16::try_from(*port.get_ref()) {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        self.error(
                            port,
                            format!(
                                "service-port must be an integer between 1 and 65535, got {}",
                                port.get_ref()
                            ),
                        );
                        None
                    }
                });
        let user = raw.user.as_ref().and_then(|user| self.user(user.get_ref()));
        let mounts = self.mounts(&raw.mounts);
        let instance_config = self.instance_config(&raw.instance_config);
        if !complete {
            return None;
        }
        Some(Contract {
            runtime_mode: raw.runtime_mode.as_ref()?.get_ref().clone(),
            readiness: raw.readiness.as_ref()?.get_ref().clone(),
            cpu: cpu?,
            memory_mib: memory_mib?,
            secure_boot: *raw.secure_boot.as_ref()?.get_ref(),
            cluster_group: raw.cluster_group.as_ref().map(|g| g.get_ref().clone()),
            service_port,
            user,
            mounts,
            instance_config,
        })
    }

    fn readiness(&mut self, value: &Spanned<String>) {
        let readiness = value.get_ref();
        if READINESS_KINDS.contains(&readiness.as_str()) {
            return;
        }
        if readiness.contains("://") {
            if let Err(why) = contract::parse_http_readiness(readiness) {
                self.error(value, format!("readiness URL `{readiness}` {why}"));
            }
        } else if readiness.starts_with('/') {
            if let Err(why) = contract::check_guest_path(readiness) {
                self.error(
                    value,
                    format!("readiness lifecycle file `{readiness}` {why}"),
                );
            }
        } else {
            self.error(
                value,
                format!(
                    "readiness `{readiness}` is not one of: {}, an absolute lifecycle file path, or http://127.0.0.1:PORT/PATH",
                    READINESS_KINDS.join(", ")
                ),
            );
        }
    }

    fn mounts(&mut self, raw: &[Spanned<RawMount>]) -> Vec<Mount> {
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut mounts = Vec::new();
        for mount in raw {
            let RawMount {
                name,
                path,
                read_only,
                optional,
            } = mount.get_ref();
            if let Err(why) = contract::check_device_name(name.get_ref()) {
                self.error(name, format!("mount name `{}` {why}", name.get_ref()));
            } else if !names.insert(name.get_ref().as_str()) {
                self.error(
                    name,
                    format!("mount name `{}` is used twice in this role", name.get_ref()),
                );
            }
            if let Err(why) = contract::check_guest_path(path.get_ref()) {
                self.error(path, format!("mount path `{}` {why}", path.get_ref()));
            } else if !paths.insert(path.get_ref().as_str()) {
                self.error(
                    path,
                    format!("mount path `{}` is used twice in this role", path.get_ref()),
                );
            }
            mounts.push(Mount {
                name: name.get_ref().clone(),
                path: path.get_ref().clone(),
                read_only: *read_only.get_ref(),
                optional: optional.as_ref().is_some_and(|o| *o.get_ref()),
            });
        }
        mounts
    }

    /// The role's user: POSIX names other than `root`, ids 1..u32::MAX other than 65534.
    fn user(&mut self, raw: &RawUser) -> Option<User> {
        let before = self.errors.len();
        for (what, name) in [("user name", &raw.name), ("user group", &raw.group)] {
            if let Err(why) = contract::check_posix_name(name.get_ref()) {
                self.error(name, format!("{what} `{}` {why}", name.get_ref()));
            }
        }
        let mut id =
            |what: &str, value: &Spanned<i64>| match contract::check_posix_id(*value.get_ref()) {
                Ok(v) => v,
                Err(why) => {
                    self.error(value, format!("{what} {why}"));
                    0
                }
            };
        let uid = id("user uid", &raw.uid);
        let gid = id("user gid", &raw.gid);
        (self.errors.len() == before).then(|| User {
            name: raw.name.get_ref().clone(),
            uid,
            group: raw.group.get_ref().clone(),
            gid,
        })
    }

    fn instance_config(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    ) -> InstanceConfig {
        let mut config = InstanceConfig::new();
        for (key, value) in raw {
            let name = key.get_ref();
            if let Err(why) = contract::check_config_key_shape(name) {
                self.error(key, format!("instance-config key `{name}` {why}"));
                continue;
            }
            let Some(parsed) = self.config_value(name, value) else {
                continue;
            };
            let explained = matches!(parsed, ConfigValue::Explained { .. });
            if let Some(why) = contract::refused_config_key(name, explained) {
                self.error(key, why);
                continue;
            }
            if parsed.value().is_empty() || parsed.value().chars().any(char::is_whitespace) {
                self.error(
                    value,
                    format!(
                        "instance-config `{name}` value must be non-empty and hold no whitespace (roles.sh lists `key=value` pairs separated by spaces)"
                    ),
                );
                continue;
            }
            if let Err(why) = contract::check_text(parsed.value()) {
                self.error(value, format!("instance-config `{name}` value {why}"));
                continue;
            }
            if let ConfigValue::Explained { reason, .. } = &parsed {
                let problem = if reason.trim().is_empty() {
                    Some("must not be empty".to_owned())
                } else {
                    contract::check_text(reason).err()
                };
                if let Some(why) = problem {
                    self.error(value, format!("instance-config `{name}` reason {why}"));
                    continue;
                }
            }
            config.insert(name.clone(), parsed);
        }
        config
    }

    /// A string, or a table of exactly `value` and `reason` strings.
    fn config_value(&mut self, name: &str, value: &Spanned<toml::Value>) -> Option<ConfigValue> {
        let shape = format!(
            "instance-config `{name}` must be a string or {{ value = \"...\", reason = \"...\" }}"
        );
        match value.get_ref() {
            toml::Value::String(s) => Some(ConfigValue::Plain(s.clone())),
            toml::Value::Table(table) => {
                if let Some(unknown) = table
                    .keys()
                    .find(|k| !matches!(k.as_str(), "value" | "reason"))
                {
                    self.error(value, format!("{shape}: unknown key `{unknown}`"));
                    return None;
                }
                match (table.get("value"), table.get("reason")) {
                    (Some(toml::Value::String(v)), Some(toml::Value::String(r))) => {
                        Some(ConfigValue::Explained {
                            value: v.clone(),
                            reason: r.clone(),
                        })
                    }
                    _ => {
                        self.error(value, format!("{shape}: both must be strings"));
                        None
                    }
                }
            }
            other => {
                self.error(value, format!("{shape}, got a {}", other.type_str()));
                None
            }
        }
    }

    fn one_of(&mut self, value: &Spanned<String>, what: &str, valid: &[&str]) {
        if !valid.contains(&value.get_ref().as_str()) {
            self.error(
                value,
                format!(
                    "{what} `{}` is not one of: {}",
                    value.get_ref(),
                    valid.join(", ")
                ),
            );
        }
    }

    /// Variant names, aliases and package names must be unique across roles.
    fn check_unique(&mut self, roles: &[(Role, RoleSpans)]) {
        let mut variants: BTreeMap<&str, &str> = BTreeMap::new();
        let mut aliases: BTreeMap<&str, &str> = BTreeMap::new();
        let mut packages: BTreeMap<String, &str> = BTreeMap::new();
        for (role, spans) in roles {
            if let Some(other) = variants.insert(&role.variant_name, &role.id) {
                let msg = format!(
                    "role `{}` and role `{other}` both become the Rust variant `{}`",
                    role.id, role.variant_name
                );
                self.errors.push(self.map.at(&spans.id, msg));
            }
            if let Some(other) = aliases.insert(&role.default_alias, &role.id) {
                let msg = format!(
                    "alias `{}` is already the default alias of role `{other}`",
                    role.default_alias
                );
                self.errors.push(self.map.at(&spans.alias, msg));
            }
            for (name, span) in &spans.packages {
                if let Some(other) = packages.insert(name.clone(), &role.id) {
                    let msg = format!(
                        "package name `{name}` is already used by role `{other}` (canonical and legacy package names share one namespace)"
                    );
                    self.errors.push(self.map.at(span, msg));
                }
            }
        }
    }
}

/// A role's validated runtime contract.
struct Contract {
    runtime_mode: String,
    readiness: String,
    cpu: u32,
    memory_mib: u32,
    secure_boot: bool,
    cluster_group: Option<String>,
    service_port: Option<u16>,
    user: Option<User>,
    mounts: Vec<Mount>,
    instance_config: InstanceConfig,
}

struct RoleSpans {
    id: Range<usize>,
    alias: Range<usize>,
    packages: Vec<(String, Range<usize>)>,
}

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`
pub fn is_kebab_id(s: &str) -> bool {
    let mut parts = s.split('-');
    let first = parts.next().unwrap_or("");
    first.starts_with(|c: char| c.is_ascii_lowercase())
        && first
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && parts.all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// `managed-openclaw` -> `ManagedOpenclaw`.
pub fn upper_camel(id: &str) -> String {
    id.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Segments of `[A-Za-z0-9._-]` separated by single `/`, starting with a letter or digit.
pub fn check_alias(alias: &str) -> Result<(), &'static str> {
    if alias.is_empty() {
        return Err("it is empty");
    }
    if !alias.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit");
    }
    for segment in alias.split('/') {
        if segment.is_empty() {
            return Err("segments are separated by single `/` and may not be empty");
        }
        if segment == "." || segment == ".." {
            return Err("`.` and `..` segments are not allowed");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("only letters, digits, `.`, `_`, `-` and `/` are allowed");
        }
    }
    Ok(())
}

/// A Nix attribute name usable unquoted: `^[A-Za-z_][A-Za-z0-9_'-]*$`.
pub fn is_nix_attr_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
}

/// A Nix identifier that is also not a keyword (it becomes a formal argument).
pub fn is_nix_identifier(s: &str) -> bool {
    is_nix_attr_name(s) && !NIX_KEYWORDS.contains(&s)
}

/// Safe in a Nix store path name: `[A-Za-z0-9+._?=-]+`, not starting with `.`.
pub fn is_store_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '?' | '=' | '-'))
}

/// Module paths are repository-relative files that exist and can be written as Nix path literals.
fn check_module_path(repo_root: &Path, module: &str) -> Result<(), String> {
    let path = Path::new(module);
    if module.is_empty() {
        return Err("is empty".into());
    }
    if path.is_absolute() {
        return Err("must be relative to the repository root, not absolute".into());
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err("must stay inside the repository (no `..` or `.` components)".into());
    }
    if !module
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/'))
    {
        return Err("may only contain [A-Za-z0-9._+-/] (it becomes a Nix path literal)".into());
    }
    if !repo_root.join(path).is_file() {
        return Err(format!(
            "does not exist (looked for {})",
            repo_root.join(path).display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_ids() {
        for ok in ["a", "managed-openclaw", "a1-b2", "x-2a"] {
            assert!(is_kebab_id(ok), "{ok}");
        }
        for bad in ["", "A", "1a", "a--b", "a-", "-a", "a_b", "Managed"] {
            assert!(!is_kebab_id(bad), "{bad}");
        }
    }

    #[test]
    fn camel_case() {
        assert_eq!(upper_camel("managed-openclaw"), "ManagedOpenclaw");
        assert_eq!(upper_camel("pikaci-runner"), "PikaciRunner");
        assert_eq!(upper_camel("x-2a"), upper_camel("x2a"));
    }

    #[test]
    fn aliases() {
        for ok in ["pika-agent/dev", "pikaci/dev", "a", "a.b_c-d/e1"] {
            assert!(check_alias(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a//b", "a/", "a b", "a:b", "a;b", "-a", "a/../b", "a\"b",
        ] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }
}
