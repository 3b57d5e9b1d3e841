//! `pika-roles-codegen`: renders the registry of `pika-role-spec` into the three checked-in
//! outputs with askama templates for their skeletons:
//!
//! * `nix/incus/roles.nix`: the Nix registry, a function of the roles' special args;
//! * `scripts/lib/roles.sh`: a sourceable shell table;
//! * `crates/pika-incus-guest-role/src/generated.rs`: `IncusGuestRole` and its static spec table.
//!
//! Roles.nix and roles.sh come from one serialisation of each spec (serde's JSON value, the same
//! `pika-roles show --json` prints): roles.nix spells keys in camelCase, roles.sh has one array
//! per key. The Rust table is each spec's `Debug` form, which is Rust syntax for these types.
//! Nothing links this crate at run time.

mod sync;

use std::path::{Component, Path, PathBuf};

use askama::Template;
use pika_role_spec::{
    NIX_REGISTRY_PATH, REGENERATE_COMMAND, RUST_TABLE_PATH, Registry, RoleSpec, SHA256_LINE,
    SHELL_TABLE_PATH, upper_camel,
};
use serde_json::Value;

pub use pika_role_spec::{self as spec, Diagnostics, MANIFEST_FILE};
pub use sync::{FileState, FileStatus, Mode, SyncError, is_fresh, sync_outputs};

/// One rendered output: where it goes (relative to the repository root) and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub path: PathBuf,
    pub contents: String,
}

/// roles.nix attribute names that predate the spec and stay (Nix code reads them): roles.toml key
/// -> name. Every other key is its camelCase.
const NIX_NAMES: &[(&str, &str)] = &[
    ("package", "packageAttr"),
    ("legacy-packages", "legacyPackageAttrs"),
    ("disk-size-mib", "diskSize"),
    ("modules", "modulePaths"),
    ("special-args", "specialArgNames"),
];

/// The three generated files of a registry.
pub fn outputs(registry: &Registry) -> Vec<Output> {
    let output = |path: &str, contents| Output {
        path: path.into(),
        contents,
    };
    vec![
        output(NIX_REGISTRY_PATH, render_nix(registry)),
        output(SHELL_TABLE_PATH, render_shell(registry)),
        output(RUST_TABLE_PATH, render_rust(registry)),
    ]
}

/// The one serialisation every text output and `pika-roles show` read.
pub fn to_json(spec: &RoleSpec) -> serde_json::Map<String, Value> {
    match serde_json::to_value(spec).expect("a spec serialises") {
        Value::Object(map) => map,
        _ => unreachable!("a struct serialises to an object"),
    }
}

#[derive(Template)]
#[template(path = "roles.nix")]
struct NixTemplate<'a> {
    command: &'a str,
    sha256: &'a str,
    sha256_line: String,
    args: Vec<&'a str>,
    roles: Vec<(String, String)>,
}

pub fn render_nix(registry: &Registry) -> String {
    let dir = Path::new(NIX_REGISTRY_PATH).parent().expect("has a parent");
    let roles = registry.roles.iter().map(|spec| {
        let mut fields: Vec<(String, String)> = to_json(spec)
            .iter()
            .map(|(key, value)| {
                let name = NIX_NAMES
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| camel(key), |(_, n)| (*n).into());
                (name, nix_value(value, 6))
            })
            .collect();
        let paths = spec.modules.iter().map(|m| nix_path_literal(dir, m));
        fields.push((
            "modules".into(),
            format!("[{}]", paths.collect::<Vec<_>>().join(" ")),
        ));
        let inherit = match spec.special_args {
            [] => "{}".into(),
            args => format!("{{inherit {};}}", args.join(" ")),
        };
        fields.push(("specialArgs".into(), inherit));
        fields.sort();
        (nix_string(spec.id), nix_attrs(fields, 4))
    });
    let template = NixTemplate {
        command: REGENERATE_COMMAND,
        sha256: &registry.manifest_sha256,
        sha256_line: format!("{SHA256_LINE}{}", registry.manifest_sha256),
        args: registry.all_special_args(),
        roles: roles.collect(),
    };
    template.render().expect("rendering roles.nix cannot fail") + "\n"
}

/// `disk-size-mib` -> `diskSizeMib`; keys that are not kebab-case words (instance config keys)
/// are quoted as they are.
fn camel(key: &str) -> String {
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return nix_string(key);
    }
    let camel = upper_camel(key);
    camel[..1].to_ascii_lowercase() + &camel[1..]
}

/// A JSON value as Nix, laid out as alejandra formats it: lists of scalars and sets of one scalar
/// binding inline, everything else one item per line.
fn nix_value(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => nix_string(s),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            let items: Vec<String> = items.iter().map(|v| nix_value(v, indent)).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Array(items) => {
            let pad = " ".repeat(indent + 2);
            let items: String = items
                .iter()
                .map(|v| format!("{pad}{}\n", nix_value(v, indent + 2)))
                .collect();
            format!("[\n{items}{}]", " ".repeat(indent))
        }
        Value::Object(map) => nix_attrs(
            map.iter()
                .map(|(k, v)| (camel(k), nix_value(v, indent + 2)))
                .collect(),
            indent,
        ),
    }
}

fn nix_attrs(entries: Vec<(String, String)>, indent: usize) -> String {
    match entries.as_slice() {
        [] => "{}".into(),
        [(k, v)] if !v.contains('\n') => format!("{{{k} = {v};}}"),
        _ => {
            let pad = " ".repeat(indent + 2);
            let body: String = entries
                .iter()
                .map(|(k, v)| format!("{pad}{k} = {v};\n"))
                .collect();
            format!("{{\n{body}{}}}", " ".repeat(indent))
        }
    }
}

/// A Nix string literal: `"`, `\` and `${` escaped, control characters spelled out.
pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Nix path literal for a repository-relative module, relative to the directory of roles.nix.
/// Validation guarantees the characters are path-literal safe and there are no `..` components.
pub fn nix_path_literal(from_dir: &Path, module: &str) -> String {
    let from: Vec<Component> = from_dir.components().collect();
    let to: Vec<Component> = Path::new(module).components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = if common == from.len() {
        ".".to_owned()
    } else {
        vec![".."; from.len() - common].join("/")
    };
    for c in &to[common..] {
        rel.push('/');
        rel.push_str(&c.as_os_str().to_string_lossy());
    }
    rel
}

/// The text form of one key of a spec (roles.sh, `pika-roles show`), one entry per list item:
/// scalars as they are, null as nothing, the user and mounts in their `Display` form
/// (`name:uid:group:gid`, `name:path:ro|rw[:optional]`), instance config as `key=value`.
pub fn text_items(spec: &RoleSpec, key: &str, value: &Value) -> Vec<String> {
    let one = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match (key, value) {
        ("user", _) => spec.user.iter().map(ToString::to_string).collect(),
        ("mounts", _) => spec.mounts.iter().map(ToString::to_string).collect(),
        ("instance-config", _) => (spec.instance_config.values.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        (_, Value::Null) => Vec::new(),
        (_, Value::Array(items)) => items.iter().map(one).collect(),
        (_, other) => vec![one(other)],
    }
}

#[derive(Template)]
#[template(path = "roles.sh")]
struct ShellTemplate<'a> {
    command: &'a str,
    sha256_line: String,
    ids: Vec<String>,
    tables: Vec<(String, Vec<(String, String)>)>,
}

pub fn render_shell(registry: &Registry) -> String {
    let ids: Vec<String> = registry.roles.iter().map(|r| shell_quote(r.id)).collect();
    let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (spec, id) in registry.roles.iter().zip(&ids) {
        for (i, (key, value)) in to_json(spec).iter().filter(|(k, _)| *k != "id").enumerate() {
            if tables.len() <= i {
                tables.push((key.to_ascii_uppercase().replace('-', "_"), Vec::new()));
            }
            tables[i].1.push((
                id.clone(),
                shell_quote(&text_items(spec, key, value).join(" ")),
            ));
        }
    }
    let template = ShellTemplate {
        command: REGENERATE_COMMAND,
        sha256_line: format!("{SHA256_LINE}{}", registry.manifest_sha256),
        ids,
        tables,
    };
    template.render().expect("rendering roles.sh cannot fail") + "\n"
}

/// A single-quoted shell word: nothing inside is special except `'`, spelled `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[derive(Template)]
#[template(path = "incus_guest_role.rs")]
struct RustTemplate<'a> {
    command: &'a str,
    sha256_line: String,
    /// Variant, ID literal, doc line, spec expression.
    roles: Vec<(String, String, String, String)>,
    valid_ids: String,
}

/// The Rust source of `IncusGuestRole` and its spec table.
pub fn render_rust(registry: &Registry) -> String {
    let roles = registry.roles.iter().map(|r| {
        let doc = r.description.replace(['\n', '\r'], " ");
        (
            upper_camel(r.id),
            format!("{:?}", r.id),
            doc,
            rust_literal(r),
        )
    });
    let template = RustTemplate {
        command: REGENERATE_COMMAND,
        sha256_line: format!("{SHA256_LINE}{}", registry.manifest_sha256),
        roles: roles.collect(),
        valid_ids: format!("{:?}", registry.valid_ids()),
    };
    template
        .render()
        .expect("rendering the Rust table cannot fail")
        + "\n"
}

/// A spec as a Rust expression: its `Debug` form (struct and enum syntax, string literals), with
/// each slice borrowed (`&[..]`) and indented to sit in the table.
fn rust_literal(spec: &RoleSpec) -> String {
    let debug = format!("{spec:#?}");
    let mut out = String::with_capacity(debug.len() * 2);
    let (mut in_string, mut escaped) = (false, false);
    for c in debug.chars() {
        match c {
            '[' if !in_string => out.push_str("&["),
            // Debug escapes newlines inside strings, so every newline is layout.
            '\n' => out.push_str("\n    "),
            _ => {
                in_string ^= c == '"' && !escaped;
                out.push(c);
            }
        }
        escaped = in_string && c == '\\' && !escaped;
    }
    out
}
