//! Reading roles.toml into [`Registry`]: serde reads each role into a [`RoleSpec`] (types, unknown
//! keys, missing keys), then `validate` applies the value rules and the cross-role rules. Every
//! error is `roles.toml:LINE:COL: message` at the offending value.
//!
//! The text and every string in it are leaked once (`&'static str`), so the spec borrows them and
//! a build step or the codegen (short-lived processes) needs no second, owned model.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::Error as _;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::*;

/// The required runtime-contract keys and what each means: said when one is missing.
const REQUIRED_HELP: &[(&str, &str)] = &[
    (
        "runtime-mode",
        "how the guest runs: managed-service, one-shot or operator-sandbox",
    ),
    (
        "readiness",
        "when a launched guest counts as ready: booted, incus-agent, ssh, an absolute lifecycle file path or http://127.0.0.1:PORT/PATH",
    ),
    ("cpu", "the instance's limits.cpu, an integer >= 1"),
    (
        "memory-mib",
        "the instance's limits.memory in MiB, an integer >= 1",
    ),
    (
        "secure-boot",
        "whether the image is signed for Secure Boot; false makes launchers set security.secureboot=false on VMs",
    ),
];
const NO_ROLES: &str = "no roles defined: add at least one [roles.<id>] table";

/// One problem found in the manifest, with a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found in one pass, sorted by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// sha256 as lowercase hex (what Nix's `builtins.hashFile "sha256"` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let hex = digest
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    hex.map(char::from).collect()
}

/// All roles, sorted by ID, and the sha256 of the manifest text they were read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    pub roles: Vec<RoleSpec>,
    pub manifest_sha256: String,
}

impl Registry {
    /// Reads, parses and validates a manifest file; modules are resolved next to it.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = format!("cannot read manifest: {e}");
            Diagnostics(vec![Diagnostic {
                path: path.into(),
                line: 1,
                col: 1,
                message,
            }])
        })?;
        let root = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::parse(text, path, root)
    }

    /// Parses and validates manifest text; `path` names it in messages, modules must exist under
    /// `repo_root`. A manifest in the TOML subset of [`subset`] is read without positions; when
    /// that finds any problem, or the text is outside the subset, the full TOML parser reads it
    /// again and every problem is reported at its `LINE:COL`.
    pub fn parse(
        text: impl Into<String>,
        path: &Path,
        repo_root: &Path,
    ) -> Result<Self, Diagnostics> {
        Self::read(text.into(), path, repo_root, (true, true))
    }

    /// [`Registry::parse`] with one reader only, the subset's (no diagnostics: an empty error) or
    /// the full parser's. Tests check that both agree and which one reads what.
    #[doc(hidden)]
    pub fn parse_with(text: &str, repo_root: &Path, subset: bool) -> Result<Self, Diagnostics> {
        Self::read(
            text.into(),
            Path::new(MANIFEST_FILE),
            repo_root,
            (subset, !subset),
        )
    }

    fn read(
        text: String,
        path: &Path,
        repo_root: &Path,
        (subset_first, full): (bool, bool),
    ) -> Result<Self, Diagnostics> {
        let text: &'static str = text.leak();
        let mut cx = Cx {
            path,
            text,
            repo_root,
            errors: Vec::new(),
            modules: BTreeMap::new(),
        };
        let fast = (subset_first.then(|| subset(text)).flatten()).and_then(|root| cx.fast(root));
        let roles = match fast {
            Some(roles) => roles,
            None if !full => return Err(Diagnostics(Vec::new())),
            None => {
                cx.errors.clear();
                cx.located()?
            }
        };
        Ok(Registry {
            roles,
            manifest_sha256: sha256_hex(text.as_bytes()),
        })
    }

    pub fn get(&self, id: &str) -> Option<&RoleSpec> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// "a, b, c": the valid IDs, for error messages.
    pub fn valid_ids(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The union of all roles' special args, sorted: the formal arguments of roles.nix.
    pub fn all_special_args(&self) -> Vec<&'static str> {
        let set: BTreeSet<&str> = self
            .roles
            .iter()
            .flat_map(|r| r.special_args.iter().copied())
            .collect();
        set.into_iter().collect()
    }
}

/// The Rust drift guard of the build: every generated file must carry the sha256 of roles.toml
/// under `repo_root`. The error names each stale file and the command.
pub fn check_generated(repo_root: &Path) -> Result<(), String> {
    let manifest = std::fs::read(repo_root.join(MANIFEST_FILE))
        .map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    let wanted = format!("{SHA256_LINE}{}", sha256_hex(&manifest));
    let stale: Vec<String> = GENERATED_FILES
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(repo_root.join(file)).unwrap_or_default();
            !text.lines().take(4).any(|line| line.ends_with(&wanted))
        })
        .map(|file| format!("{file} is stale: run `{REGENERATE_COMMAND}`"))
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(stale.join("\n"))
    }
}

/// Every string of the document as `&'static str` (escaped strings are owned by the parser).
fn leak_strings(value: &mut DeValue<'static>) {
    match value {
        DeValue::String(s) => {
            if let Cow::Owned(owned) = s {
                *s = Cow::Borrowed(std::mem::take(owned).leak());
            }
        }
        DeValue::Array(items) => items
            .iter_mut()
            .for_each(|item| leak_strings(item.get_mut())),
        DeValue::Table(table) => {
            *table = std::mem::take(table)
                .into_iter()
                .map(|(key, mut value)| {
                    leak_strings(value.get_mut());
                    let span = key.span();
                    (
                        Spanned::new(
                            span,
                            Cow::Borrowed(key.into_inner().into_owned().leak() as &str),
                        ),
                        value,
                    )
                })
                .collect();
        }
        _ => {}
    }
}

/// Where a validation problem is: a key path inside the role's table, at the key or its value.
type At<'a> = (&'a [&'a str], bool);
const KEY: bool = true;
const VALUE: bool = false;

struct Cx<'a> {
    path: &'a Path,
    text: &'static str,
    repo_root: &'a Path,
    errors: Vec<Diagnostic>,
    /// Module paths already checked (roles often share modules): one filesystem lookup each.
    modules: BTreeMap<&'static str, Result<(), String>>,
}

impl Cx<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        let (line, col) = line_col(self.text, span.start);
        self.errors.push(Diagnostic {
            path: self.path.into(),
            line,
            col,
            message,
        });
    }

    fn fail(&mut self, span: Range<usize>, message: String) -> Diagnostics {
        self.error(span, message);
        self.finish()
    }

    fn finish(&mut self) -> Diagnostics {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by_key(|d| (d.line, d.col));
        errors.dedup();
        Diagnostics(errors)
    }

    fn schema(&mut self, schema: Option<i64>, span: Range<usize>) {
        match schema {
            Some(SCHEMA_VERSION) => {}
            Some(1) => {
                let required: Vec<&str> = REQUIRED_HELP.iter().map(|(k, _)| *k).collect();
                self.error(span, format!(
                    "schema 1 manifest: schema {SCHEMA_VERSION} adds the per-role keys {} (required) and cluster-group, service-port, user, mounts, instance-config (optional); add the required ones to every role (README, \"The runtime contract\") and set schema = {SCHEMA_VERSION}",
                    required.join(", ")
                ));
            }
            Some(n) => self.error(
                span,
                format!("unsupported schema {n}; this generator reads schema = {SCHEMA_VERSION}"),
            ),
            None => self.error(span, format!("schema must be the integer {SCHEMA_VERSION}")),
        }
    }

    /// The roles of a manifest in the subset, or `None` at the first problem of any kind.
    fn fast(&mut self, root: Vec<(&'static str, Sub)>) -> Option<Vec<RoleSpec>> {
        let mut roles = Vec::new();
        if root.len() != 2 {
            return None;
        }
        for (key, value) in root {
            match (key, value) {
                ("schema", Sub::Int(SCHEMA_VERSION)) => {}
                ("roles", Sub::Table(table, _)) if !table.is_empty() => {
                    for (id, role) in table {
                        let mut spec = RoleSpec::deserialize(role).ok()?;
                        spec.id = id;
                        self.check(&spec, &|_| 0..0);
                        roles.push(spec);
                    }
                }
                _ => return None,
            }
        }
        self.unique(&roles, &|_, _| 0..0);
        (self.errors.is_empty() && !roles.is_empty()).then(|| digests(roles))
    }

    /// The roles of any manifest, or every problem at its position.
    fn located(&mut self) -> Result<Vec<RoleSpec>, Diagnostics> {
        let mut root = match DeTable::parse(self.text) {
            Ok(root) => DeValue::Table(root.into_inner()),
            Err(e) => return Err(self.fail(e.span().unwrap_or(0..0), e.message().trim().into())),
        };
        leak_strings(&mut root);
        let DeValue::Table(root) = root else {
            unreachable!("parsed as a table")
        };
        let mut roles = Vec::new();
        let mut spans = Vec::new();
        for (key, value) in &root {
            match (key.get_ref().as_ref(), value.get_ref()) {
                ("schema", DeValue::Integer(n)) => self.schema(
                    i64::from_str_radix(n.as_str(), n.radix()).ok(),
                    value.span(),
                ),
                ("roles", DeValue::Table(table)) if !table.is_empty() => {
                    for (id, role) in table {
                        if let Some(spec) = self.role(id, role) {
                            roles.push(spec);
                            spans.push((id.span(), role));
                        }
                    }
                }
                ("roles", _) => self.error(value.span(), NO_ROLES.into()),
                ("schema", _) => self.error(
                    value.span(),
                    format!("schema must be the integer {SCHEMA_VERSION}"),
                ),
                (other, _) => self.error(
                    key.span(),
                    format!("unknown field `{other}`, expected `schema` or `roles`"),
                ),
            }
        }
        if !root.contains_key("schema") {
            self.error(
                0..0,
                format!("missing field `schema` (add `schema = {SCHEMA_VERSION}`)"),
            );
        }
        if !root.contains_key("roles") {
            self.error(0..0, NO_ROLES.into());
        }
        self.unique(&roles, &|i, at| match at {
            (&[], _) => spans[i].0.clone(),
            at => span_at(spans[i].1, at),
        });
        if self.errors.is_empty() {
            Ok(digests(roles))
        } else {
            Err(self.finish())
        }
    }

    /// One role: serde reads the typed spec (stopping at its first error), then the value rules.
    fn role(
        &mut self,
        id: &Spanned<Cow<'static, str>>,
        table: &Spanned<DeValue<'static>>,
    ) -> Option<RoleSpec> {
        let mut spec = match RoleSpec::deserialize(ValueDeserializer::from(table.clone())) {
            Ok(spec) => spec,
            Err(e) => {
                let span = e.span().unwrap_or_else(|| table.span());
                let mut message = e
                    .message()
                    .trim()
                    .replace("{key}", key_at(table, &span).unwrap_or("value"));
                if let Some((_, help)) = REQUIRED_HELP
                    .iter()
                    .find(|(k, _)| message == format!("missing field `{k}`"))
                {
                    message = format!("{message} ({help})");
                }
                self.error(span, message);
                return None;
            }
        };
        let Cow::Borrowed(id_str) = id.get_ref() else {
            unreachable!("keys are leaked")
        };
        spec.id = id_str;
        let before = self.errors.len();
        self.check(&spec, &|at| match at {
            (&[], _) => id.span(),
            at => span_at(table, at),
        });
        (self.errors.len() == before).then_some(spec)
    }

    /// The rules of one role; `locate` finds a key path in its table (the empty path: its ID).
    fn check(&mut self, spec: &RoleSpec, locate: &dyn Fn(At<'_>) -> Range<usize>) {
        let mut problems = Vec::new();
        validate(spec, &mut |at: At<'_>, message: String| {
            problems.push((locate(at), message))
        });
        if !is_kebab_id(spec.id) {
            problems.push((
                locate((&[], KEY)),
                format!(
                    "role ID `{}` must be lowercase kebab-case ([a-z][a-z0-9]*(-[a-z0-9]+)*)",
                    spec.id
                ),
            ));
        } else if upper_camel(spec.id) == "Self" {
            problems.push((
                locate((&[], KEY)),
                format!("role ID `{}` becomes the Rust keyword `Self`", spec.id),
            ));
        }
        for (i, module) in spec.modules.iter().enumerate() {
            let root = self.repo_root;
            let result = self
                .modules
                .entry(module)
                .or_insert_with(|| check_module_path(root, module))
                .clone();
            if let Err(why) = result {
                problems.push((
                    locate((&["modules", &i.to_string()], VALUE)),
                    format!("module `{module}` {why}"),
                ));
            }
        }
        for (span, message) in problems {
            self.error(span, message);
        }
    }

    /// Variant names, aliases and package names are unique across roles; `locate` is `check`'s,
    /// by role index.
    fn unique(&mut self, roles: &[RoleSpec], locate: &dyn Fn(usize, At<'_>) -> Range<usize>) {
        let mut seen: HashMap<(u8, Cow<'static, str>), &str> = HashMap::new();
        for (r, role) in roles.iter().enumerate() {
            let id = role.id;
            let own = [
                (0, upper_camel(id).into(), None),
                (1, role.default_alias.into(), None),
            ];
            let legacy = role.legacy_packages.iter().enumerate();
            let packages = legacy.map(|(i, p)| (2, Cow::from(*p), Some(i.to_string())));
            let claims = own
                .into_iter()
                .chain([(2, role.package.into(), None)])
                .chain(packages);
            for (kind, name, index) in claims {
                let Some(other) = seen.insert((kind, name.clone()), id) else {
                    continue;
                };
                let legacy_path = index.as_deref().map(|i| ["legacy-packages", i]);
                let (at, message): (At<'_>, String) = match (kind, &legacy_path) {
                    (0, _) => (
                        (&[], KEY),
                        format!(
                            "role `{id}` and role `{other}` both become the Rust variant `{name}`"
                        ),
                    ),
                    (1, _) => (
                        (&["default-alias"], VALUE),
                        format!("alias `{name}` is already the default alias of role `{other}`"),
                    ),
                    (_, i) => {
                        let path: &[&str] = match i {
                            Some(path) => path,
                            None => &["package"],
                        };
                        (
                            (path, VALUE),
                            format!(
                                "package name `{name}` is already used by role `{other}` (canonical and legacy package names share one namespace)"
                            ),
                        )
                    }
                };
                self.error(locate(r, at), message);
            }
        }
    }
}

/// Each role with its digest: the sha256 of its canonical form, the spec's JSON and the
/// instance-config reasons it leaves out.
fn digests(mut roles: Vec<RoleSpec>) -> Vec<RoleSpec> {
    let digest_all = |chunk: &mut [RoleSpec]| {
        let mut canonical = Vec::with_capacity(4096);
        for spec in chunk {
            canonical.clear();
            serde_json::to_writer(&mut canonical, &(&*spec, spec.instance_config.reasons))
                .expect("a spec serialises to JSON");
            spec.roles_digest = sha256_hex(&canonical).leak();
        }
    };
    // Two halves side by side: a large registry's digests are a good part of its load time.
    let half = roles.len() / 2;
    let (first, second) = roles.split_at_mut(half);
    std::thread::scope(|s| {
        s.spawn(|| digest_all(first));
        digest_all(second);
    });
    roles
}

/// The value rules of one role (types, unknown and missing keys are serde's).
fn validate(spec: &RoleSpec, err: &mut dyn FnMut(At<'_>, String)) {
    let mut at = |path: &[&str], message: String| err((path, VALUE), message);
    match check_text(spec.description) {
        _ if spec.description.trim().is_empty() => {
            at(&["description"], "description must not be empty".into());
        }
        Err(why) => at(&["description"], format!("description {why}")),
        Ok(()) => {}
    }
    if let Err(why) = check_alias(spec.default_alias) {
        let alias = spec.default_alias;
        at(
            &["default-alias"],
            format!("invalid alias `{alias}`: {why}"),
        );
    }
    let legacy = spec.legacy_packages.iter().enumerate();
    let packages = std::iter::once((None, spec.package)).chain(legacy.map(|(i, p)| (Some(i), *p)));
    for (i, name) in packages.filter(|(_, name)| !is_nix_attr_name(name)) {
        let index = i.map(|i| i.to_string()).unwrap_or_default();
        let path: &[&str] = if i.is_some() {
            &["legacy-packages", &index]
        } else {
            &["package"]
        };
        let rule = "is not a Nix attribute name ([A-Za-z_][A-Za-z0-9_'-]*)";
        at(path, format!("package name `{name}` {rule}"));
    }
    for (key, value) in [("image-name", spec.image_name), ("variant", spec.variant)] {
        if !is_store_name(value) {
            let rule = "is not safe in a Nix store name ([A-Za-z0-9+._?=-], not starting with `.`)";
            at(&[key], format!("{key} `{value}` {rule}"));
        }
    }
    if spec.modules.is_empty() {
        at(
            &["modules"],
            "modules must list at least one NixOS module".into(),
        );
    }
    for (i, arg) in spec.special_args.iter().enumerate() {
        let why = match () {
            _ if !is_nix_identifier(arg) => "is not a Nix identifier",
            _ if spec.special_args[..i].contains(arg) => "is listed twice in this role",
            _ => continue,
        };
        at(
            &["special-args", &i.to_string()],
            format!("special arg `{arg}` {why}"),
        );
    }
    if let Some(group) = spec.cluster_group
        && let Err(why) = check_cluster_group(group)
    {
        at(&["cluster-group"], format!("cluster-group `{group}` {why}"));
    }
    for (key, name) in spec
        .user
        .iter()
        .flat_map(|u| [("name", u.name), ("group", u.group)])
    {
        if let Err(why) = check_posix_name(name) {
            at(&["user", key], format!("user {key} `{name}` {why}"));
        }
    }
    for (i, mount) in spec.mounts.iter().enumerate() {
        let (i, earlier) = (i.to_string(), &spec.mounts[..i]);
        let once = |twice: bool| {
            if twice {
                Err("is used twice in this role")
            } else {
                Ok(())
            }
        };
        let name = check_device_name(mount.name)
            .and_then(|()| once(earlier.iter().any(|m| m.name == mount.name)));
        if let Err(why) = name {
            at(
                &["mounts", &i, "name"],
                format!("mount name `{}` {why}", mount.name),
            );
        }
        let path = check_guest_path(mount.path)
            .and_then(|()| once(earlier.iter().any(|m| m.path == mount.path)));
        if let Err(why) = path {
            at(
                &["mounts", &i, "path"],
                format!("mount path `{}` {why}", mount.path),
            );
        }
    }
    for &(key, value) in spec.instance_config.values {
        let reason = spec.instance_config.reason(key);
        let reason_problem = |r: &str| match r.trim() {
            "" => Some("must not be empty".to_owned()),
            _ => check_text(r).err(),
        };
        let (place, message) = if let Err(why) = check_config_key_shape(key) {
            (KEY, format!("instance-config key `{key}` {why}"))
        } else if let Some(why) = refused_config_key(key, reason.is_some()) {
            (KEY, why)
        } else if value.is_empty() || value.chars().any(char::is_whitespace) {
            (
                VALUE,
                format!(
                    "instance-config `{key}` value must be non-empty and hold no whitespace (roles.sh lists `key=value` pairs separated by spaces)"
                ),
            )
        } else if let Err(why) = check_text(value) {
            (VALUE, format!("instance-config `{key}` value {why}"))
        } else if let Some(why) = reason.and_then(reason_problem) {
            (VALUE, format!("instance-config `{key}` reason {why}"))
        } else {
            continue;
        };
        err((&["instance-config", key], place), message);
    }
}

/// The span of the key or value at `path` inside a role's table (the nearest existing one).
fn span_at(table: &Spanned<DeValue<'static>>, (path, key): At<'_>) -> Range<usize> {
    let mut here = table;
    let mut span = table.span();
    for segment in path {
        let next = match here.get_ref() {
            DeValue::Table(t) => t.get_key_value(*segment).map(|(k, v)| (k.span(), v)),
            DeValue::Array(a) => segment
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((key_span, value)) = next else { break };
        (span, here) = (if key { key_span } else { value.span() }, value);
    }
    span
}

/// The key whose value sits at `span`, for messages that say `{key}`.
fn key_at<'t>(value: &'t Spanned<DeValue<'static>>, span: &Range<usize>) -> Option<&'t str> {
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            if v.span() == *span {
                Some(k.get_ref().as_ref())
            } else {
                key_at(v, span)
            }
        }),
        DeValue::Array(a) => a.iter().find_map(|v| key_at(v, span)),
        _ => None,
    }
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
    let full = repo_root.join(path);
    if !full.is_file() {
        return Err(format!("does not exist (looked for {})", full.display()));
    }
    Ok(())
}

// serde helpers named by `#[serde(deserialize_with)]` in spec.rs. A message may say `{key}`: the
// key of the offending value is put there.

pub(crate) fn leak<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<&'static [T], D::Error> {
    Ok(Vec::<T>::deserialize(d)?.leak())
}

fn int_in<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(
    d: D,
    high: i64,
) -> Result<T, D::Error> {
    let n = i64::deserialize(d)?;
    match T::try_from(n) {
        Ok(v) if (1..=high).contains(&n) => Ok(v),
        _ => Err(D::Error::custom(format!(
            "{{key}} must be an integer between 1 and {high}, got {n}"
        ))),
    }
}

pub(crate) fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, u32::MAX.into())
}

pub(crate) fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    int_in(d, u16::MAX.into()).map(Some)
}

pub(crate) fn posix_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    check_posix_id(n).map_err(|why| D::Error::custom(format!("user {{key}} {why}")))
}

impl<'de: 'static> Deserialize<'de> for Readiness {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Readiness::parse(<&'static str>::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A map of key to a string or `{ value, reason }`, sorted by key.
impl<'de: 'static> Deserialize<'de> for InstanceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<&'static str, Entry>::deserialize(d)?;
        let values = map
            .iter()
            .map(|(k, e)| (*k, e.0))
            .collect::<Vec<_>>()
            .leak();
        let reasons = map
            .iter()
            .filter_map(|(k, e)| Some((*k, e.1?)))
            .collect::<Vec<_>>()
            .leak();
        Ok(InstanceConfig { values, reasons })
    }
}

/// One instance-config value: the value and, when written as `{ value, reason }`, the reason.
struct Entry(&'static str, Option<&'static str>);

impl<'de: 'static> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let shape =
            "instance-config `{key}` must be a string or { value = \"...\", reason = \"...\" }";
        let error = |why: String| D::Error::custom(format!("{shape}{why}"));
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Entry(s.leak(), None)),
            toml::Value::Table(t) => {
                let unknown = t.keys().find(|k| !matches!(k.as_str(), "value" | "reason"));
                match (t.get("value"), t.get("reason"), unknown) {
                    (_, _, Some(unknown)) => Err(error(format!(": unknown key `{unknown}`"))),
                    (Some(toml::Value::String(v)), Some(toml::Value::String(r)), None) => {
                        Ok(Entry(v.clone().leak(), Some(r.clone().leak())))
                    }
                    _ => Err(error(": both must be strings".into())),
                }
            }
            other => Err(error(format!(", got a {}", other.type_str()))),
        }
    }
}

/// A value of the TOML subset of [`subset`]; strings borrow the manifest text.
#[derive(Debug)]
enum Sub {
    Str(&'static str),
    Int(i64),
    Bool(bool),
    /// `true`: an array of tables (`[[..]]`).
    Array(Vec<Sub>, bool),
    /// How the table was defined: [`IMPLICIT`] (by a longer header), [`HEADER`] or [`INLINE`].
    Table(Vec<(&'static str, Sub)>, u8),
}

const IMPLICIT: u8 = 0;
const HEADER: u8 = 1;
const INLINE: u8 = 2;
const ARRAY: u8 = 3;

type Table = Vec<(&'static str, Sub)>;

/// serde reads a spec from the subset as it does from the full parser's tree.
impl<'de> serde::Deserializer<'de> for Sub
where
    'static: 'de,
{
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        use serde::de::value::{MapDeserializer, SeqDeserializer};
        match self {
            Sub::Str(s) => v.visit_borrowed_str(s),
            Sub::Int(n) => v.visit_i64(n),
            Sub::Bool(b) => v.visit_bool(b),
            Sub::Array(items, _) => v.visit_seq(SeqDeserializer::new(items.into_iter())),
            Sub::Table(t, _) => v.visit_map(MapDeserializer::new(
                t.into_iter().map(|(k, v)| (Sub::Str(k), v)),
            )),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> serde::de::IntoDeserializer<'de, serde::de::value::Error> for Sub
where
    'static: 'de,
{
    type Deserializer = Sub;

    fn into_deserializer(self) -> Sub {
        self
    }
}

/// Reads the TOML subset roles.toml is written in, without positions: comments, `[a.b]` and
/// `[[a.b]]` headers, `key = value` lines, bare keys and quoted keys, strings without escapes or
/// line breaks, decimal integers, booleans, arrays and one-line inline tables. Anything else, and
/// what TOML forbids (a key or table defined twice), is `None`: the full parser then reads it.
/// So is a table continued after another one has begun. Tables come out sorted by key.
fn subset(text: &'static str) -> Option<Table> {
    let mut p = Subset {
        t: text,
        s: text.as_bytes(),
        i: 0,
    };
    let mut root = Table::new();
    let (mut path, mut array) = (Vec::new(), false);
    loop {
        let table = open(&mut root, &path, array)?;
        loop {
            p.blank();
            match p.s.get(p.i) {
                None => return sorted(&mut root).then_some(root),
                Some(b'[') => break,
                Some(_) => {}
            }
            let key = p.key()?;
            p.ws();
            p.eat(b'=')?;
            p.ws();
            table.push((key, p.value()?));
            p.end()?;
        }
        p.i += 1;
        array = p.eat(b'[').is_some();
        path = p.keys()?;
        p.eat(b']')?;
        if array {
            p.eat(b']')?;
        }
        p.end()?;
    }
}

/// Sorts every table by key; false if a key is defined twice.
fn sorted(table: &mut Table) -> bool {
    table.sort_by_key(|(k, _)| *k);
    let unique = table.windows(2).all(|w| w[0].0 != w[1].0);
    unique
        && table.iter_mut().all(|(_, v)| match v {
            Sub::Table(t, _) => sorted(t),
            Sub::Array(items, _) => items.iter_mut().all(|v| match v {
                Sub::Table(t, _) => sorted(t),
                _ => true,
            }),
            _ => true,
        })
}

/// The table a header names (`array`: `[[..]]`, a new element), creating it and its prefixes.
fn open<'t>(mut table: &'t mut Table, path: &[&'static str], array: bool) -> Option<&'t mut Table> {
    for (k, &key) in path.iter().enumerate() {
        let want = match (k + 1 == path.len(), array) {
            (false, _) => IMPLICIT,
            (true, false) => HEADER,
            (true, true) => ARRAY,
        };
        // Only the table's last key is looked up: a table that is continued after another one
        // becomes a second entry of the same key, which `sorted` refuses (the full parser reads
        // such a manifest).
        if table.last().is_none_or(|(k, _)| *k != key) {
            let fresh = match want {
                ARRAY => Sub::Array(Vec::new(), true),
                _ => Sub::Table(Vec::new(), IMPLICIT),
            };
            table.push((key, fresh));
        }
        let at = table.len() - 1;
        table = match (&mut table[at].1, want) {
            (Sub::Array(items, true), ARRAY) => {
                items.push(Sub::Table(Vec::new(), HEADER));
                match items.last_mut() {
                    Some(Sub::Table(t, _)) => t,
                    _ => return None,
                }
            }
            (Sub::Table(t, kind @ IMPLICIT), IMPLICIT | HEADER) => {
                *kind = want;
                t
            }
            (Sub::Table(t, HEADER), IMPLICIT) => t,
            _ => return None,
        };
    }
    Some(table)
}

struct Subset {
    t: &'static str,
    s: &'static [u8],
    i: usize,
}

impl Subset {
    fn skip(&mut self, set: fn(&u8) -> bool) {
        while self.s.get(self.i).is_some_and(set) {
            self.i += 1;
        }
    }

    fn ws(&mut self) {
        self.skip(|b| matches!(b, b' ' | b'\t'));
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    /// Blank lines and comments (and in arrays, line breaks).
    fn blank(&mut self) {
        loop {
            self.skip(|b| matches!(b, b' ' | b'\t' | b'\n'));
            match self.s.get(self.i) {
                Some(b'#') => self.comment(),
                Some(b'\r') if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        self.skip(|&b| b == b'\t' || b >= b' ' && b != 0x7f);
    }

    /// The end of a line: blanks, maybe a comment, then a line break or the end of the text.
    fn end(&mut self) -> Option<()> {
        self.ws();
        if self.s.get(self.i) == Some(&b'#') {
            self.comment();
        }
        match self.s.get(self.i) {
            None => Some(()),
            Some(b'\n') => self.eat(b'\n'),
            Some(b'\r') => self.eat(b'\r').and_then(|()| self.eat(b'\n')),
            Some(_) => None,
        }
    }

    fn key(&mut self) -> Option<&'static str> {
        let start = self.i;
        match self.s.get(self.i)? {
            b'"' | b'\'' => self.string(),
            _ => {
                self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
                (self.i > start).then(|| &self.t[start..self.i])
            }
        }
    }

    /// A dotted key (headers only).
    fn keys(&mut self) -> Option<Vec<&'static str>> {
        let mut keys = Vec::new();
        loop {
            self.ws();
            keys.push(self.key()?);
            self.ws();
            if self.eat(b'.').is_none() {
                return Some(keys);
            }
        }
    }

    /// A one-line string without escapes (basic) or literal.
    fn string(&mut self) -> Option<&'static str> {
        let quote = self.s[self.i];
        let start = self.i + 1;
        self.i = start;
        self.skip(match quote {
            b'"' => |&b| b != b'"' && b != b'\\' && (b == b'\t' || b >= b' ' && b != 0x7f),
            _ => |&b| b != b'\'' && (b == b'\t' || b >= b' ' && b != 0x7f),
        });
        self.eat(quote)?;
        // `"""` opens a multi-line string.
        if self.i == start + 1 && self.s.get(self.i) == Some(&quote) {
            return None;
        }
        Some(&self.t[start..self.i - 1])
    }

    fn value(&mut self) -> Option<Sub> {
        let start = self.i;
        Some(match self.s.get(self.i)? {
            b'"' | b'\'' => Sub::Str(self.string()?),
            b't' if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Sub::Bool(true)
            }
            b'f' if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Sub::Bool(false)
            }
            b'-' | b'0'..=b'9' => {
                self.eat(b'-');
                let digits = self.i;
                self.skip(u8::is_ascii_digit);
                if self.i == digits || self.s[digits] == b'0' && self.i > digits + 1 {
                    return None;
                }
                Sub::Int(self.t[start..self.i].parse().ok()?)
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.blank();
                    if self.eat(b']').is_some() {
                        break;
                    }
                    items.push(self.value()?);
                    self.blank();
                    if self.eat(b',').is_none() {
                        self.eat(b']')?;
                        break;
                    }
                }
                Sub::Array(items, false)
            }
            b'{' => {
                self.i += 1;
                let mut table = Table::new();
                self.ws();
                if self.eat(b'}').is_none() {
                    loop {
                        self.ws();
                        let key = self.key()?;
                        self.ws();
                        self.eat(b'=')?;
                        self.ws();
                        table.push((key, self.value()?));
                        self.ws();
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
                Sub::Table(table, INLINE)
            }
            _ => return None,
        })
    }
}
