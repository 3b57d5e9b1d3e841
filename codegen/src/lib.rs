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

use std::fmt::{self, Write as _};
use std::path::{Component, Path, PathBuf};

use askama::Template;
use pika_role_spec::{
    NIX_REGISTRY_PATH, REGENERATE_COMMAND, RUST_TABLE_PATH, Registry, RoleSpec, SHA256_LINE,
    SHELL_TABLE_PATH, upper_camel,
};
use serde_json::Value;

pub use pika_role_spec::{self as spec, Diagnostics, MANIFEST_FILE};
pub use sync::{FileState, Mode, sync_outputs};

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
    // The Rust table and the two text outputs share nothing: render them side by side.
    let ((nix, shell), rust) = std::thread::scope(|s| {
        let rust = s.spawn(|| render_rust(registry));
        let texts = render_nix_and_shell(registry);
        (
            texts,
            rust.join().expect("rendering the Rust table panicked"),
        )
    });
    vec![
        output(NIX_REGISTRY_PATH, nix),
        output(SHELL_TABLE_PATH, shell),
        output(RUST_TABLE_PATH, rust),
    ]
}

/// A skeleton filled in, into one allocation of `size` (untouched capacity costs nothing).
fn fill(template: &impl Template, size: usize) -> String {
    let mut out = String::with_capacity(size);
    template
        .render_into(&mut out)
        .expect("rendering a template into a String cannot fail");
    out.push('\n');
    out
}

/// The entries of the Rust spec table, written role by role straight into the output.
struct Specs<'a>(&'a [RoleSpec]);

impl fmt::Display for Specs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut debug, mut item) = (String::new(), String::new());
        for spec in self.0 {
            debug.clear();
            write!(debug, "{spec:#?}")?;
            item.clear();
            item.push_str("\n    ");
            rust_literal(&mut item, &debug);
            item.push(',');
            f.write_str(&item)?;
        }
        Ok(())
    }
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
    roles: String,
}

pub fn render_nix(registry: &Registry) -> String {
    render_nix_and_shell(registry).0
}

pub fn render_shell(registry: &Registry) -> String {
    render_nix_and_shell(registry).1
}

/// roles.nix and roles.sh, both from the one JSON serialisation of each spec.
pub fn render_nix_and_shell(registry: &Registry) -> (String, String) {
    let dir = Path::new(NIX_REGISTRY_PATH).parent().expect("has a parent");
    let mut names = Vec::new();
    let mut roles = String::with_capacity(registry.roles.len() * 1536);
    let mut tables: Vec<(String, String)> = Vec::new();
    for spec in &registry.roles {
        let json = to_json(spec);
        if names.is_empty() {
            // A role's bindings, sorted by Nix name: (name, roles.toml key); `modules` (path
            // literals) and `specialArgs` (an `inherit`) have no key of their own.
            names = (json.keys())
                .map(|key| {
                    let name = NIX_NAMES.iter().find(|(k, _)| k == key);
                    let name = name.map_or_else(|| camel(key), |(_, n)| (*n).into());
                    (name, Some(key.clone()))
                })
                .chain([("modules".into(), None), ("specialArgs".into(), None)])
                .collect();
            names.sort();
        }
        roles.push_str("\n    ");
        nix_string(&mut roles, spec.id);
        roles.push_str(" = {");
        for (name, key) in &names {
            roles.push_str("\n      ");
            roles.push_str(name);
            roles.push_str(" = ");
            match key {
                Some(key) => nix_value(&mut roles, &json[key], 6),
                None if name == "modules" => {
                    roles.push('[');
                    for (m, module) in spec.modules.iter().enumerate() {
                        roles.push_str(if m == 0 { "" } else { " " });
                        roles.push_str(&nix_path_literal(dir, module));
                    }
                    roles.push(']');
                }
                None if spec.special_args.is_empty() => roles.push_str("{}"),
                None => write!(roles, "{{inherit {};}}", spec.special_args.join(" ")).expect(WRITE),
            }
            roles.push(';');
        }
        roles.push_str("\n    };");
        let id = shell_quote(spec.id);
        for (i, (key, value)) in json.iter().filter(|(k, _)| *k != "id").enumerate() {
            if tables.len() <= i {
                let name = key.to_ascii_uppercase().replace('-', "_");
                tables.push((name, String::with_capacity(registry.roles.len() * 64)));
            }
            let out = &mut tables[i].1;
            out.push_str(if out.is_empty() { "[" } else { " [" });
            out.push_str(&id);
            out.push_str("]='");
            let start = out.len();
            write_text(out, spec, key, value, " ");
            if out[start..].contains('\'') {
                let text = out.split_off(start);
                out.push_str(&text.replace('\'', r"'\''"));
            }
            out.push('\'');
        }
    }
    let sha256_line = format!("{SHA256_LINE}{}", registry.manifest_sha256);
    let nix = NixTemplate {
        command: REGENERATE_COMMAND,
        sha256: &registry.manifest_sha256,
        sha256_line: sha256_line.clone(),
        args: registry.all_special_args(),
        roles,
    };
    let size = tables.iter().map(|(_, t)| t.len() + 64).sum::<usize>();
    let shell = ShellTemplate {
        command: REGENERATE_COMMAND,
        sha256_line,
        ids: registry.roles.iter().map(|r| shell_quote(r.id)).collect(),
        tables,
    };
    (
        fill(&nix, nix.roles.len() + 4096),
        fill(&shell, size + 4096),
    )
}

const WRITE: &str = "writing to a String cannot fail";

/// `disk-size-mib` -> `diskSizeMib`; keys that are not kebab-case words (instance config keys)
/// are quoted as they are.
fn camel(key: &str) -> String {
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        let mut quoted = String::new();
        nix_string(&mut quoted, key);
        return quoted;
    }
    let camel = upper_camel(key);
    camel[..1].to_ascii_lowercase() + &camel[1..]
}

/// Whether alejandra keeps a value on one line: scalars, lists of scalars, sets of at most one
/// such binding.
fn one_line(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|v| !v.is_array() && !v.is_object()),
        Value::Object(map) => map.len() < 2 && map.values().all(one_line),
        _ => true,
    }
}

/// A JSON value as Nix, laid out as alejandra formats it: what [`one_line`] allows inline,
/// everything else one item per line.
fn nix_value(out: &mut String, value: &Value, indent: usize) {
    let inline = one_line(value);
    let pad = |out: &mut String, n: usize| {
        out.push('\n');
        (0..n).for_each(|_| out.push(' '));
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => write!(out, "{b}").expect(WRITE),
        Value::Number(n) => write!(out, "{n}").expect(WRITE),
        Value::String(s) => nix_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                match inline {
                    true if i > 0 => out.push(' '),
                    true => {}
                    false => pad(out, indent + 2),
                }
                nix_value(out, item, indent + 2);
            }
            if !inline {
                pad(out, indent);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (key, item) in map {
                if !inline {
                    pad(out, indent + 2);
                }
                write!(out, "{} = ", camel(key)).expect(WRITE);
                nix_value(out, item, indent + 2);
                out.push(';');
            }
            if !inline {
                pad(out, indent);
            }
            out.push('}');
        }
    }
}

/// A Nix string literal: `"`, `\` and `${` escaped, control characters spelled out.
pub fn nix_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, c) in s.bytes().enumerate() {
        let escaped = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'$' if s.as_bytes().get(i + 1) == Some(&b'{') => "\\$",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        out.push_str(escaped);
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
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

/// The text form of one key of a spec (roles.sh, `pika-roles show`), the items separated by
/// `sep`: scalars as they are, null as nothing, the user and mounts in their `Display` form
/// (`name:uid:group:gid`, `name:path:ro|rw[:optional]`), instance config as `key=value`.
pub fn write_text(out: &mut String, spec: &RoleSpec, key: &str, value: &Value, sep: &str) {
    let mut first = true;
    let mut item = |out: &mut String, args: fmt::Arguments| {
        out.push_str(if first { "" } else { sep });
        first = false;
        out.write_fmt(args).expect(WRITE);
    };
    match (key, value) {
        ("user", _) => spec
            .user
            .iter()
            .for_each(|u| item(out, format_args!("{u}"))),
        ("mounts", _) => spec
            .mounts
            .iter()
            .for_each(|m| item(out, format_args!("{m}"))),
        ("instance-config", _) => (spec.instance_config.values.iter())
            .for_each(|(k, v)| item(out, format_args!("{k}={v}"))),
        (_, Value::Null) => {}
        (_, Value::String(s)) => item(out, format_args!("{s}")),
        (_, Value::Array(items)) => items.iter().for_each(|v| match v {
            Value::String(s) => item(out, format_args!("{s}")),
            v => item(out, format_args!("{v}")),
        }),
        (_, other) => item(out, format_args!("{other}")),
    }
}

#[derive(Template)]
#[template(path = "roles.sh")]
struct ShellTemplate<'a> {
    command: &'a str,
    sha256_line: String,
    ids: Vec<String>,
    /// Array name and its `[id]=value ...` entries.
    tables: Vec<(String, String)>,
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
    /// Variant, ID literal, doc line.
    roles: Vec<(String, String, String)>,
    specs: Specs<'a>,
    valid_ids: String,
}

/// The Rust source of `IncusGuestRole` and its spec table.
pub fn render_rust(registry: &Registry) -> String {
    let roles = registry.roles.iter().map(|r| {
        let doc = r.description.replace(['\n', '\r'], " ");
        (upper_camel(r.id), format!("{:?}", r.id), doc)
    });
    let template = RustTemplate {
        command: REGENERATE_COMMAND,
        sha256_line: format!("{SHA256_LINE}{}", registry.manifest_sha256),
        roles: roles.collect(),
        specs: Specs(&registry.roles),
        valid_ids: format!("{:?}", registry.valid_ids()),
    };
    fill(&template, 4096 + registry.roles.len() * 3072)
}

/// A spec's `{:#?}` form as a Rust expression of the table: every slice borrowed (`&[..]`) and
/// every line indented one level. Debug escapes quotes and line breaks inside strings, so a bare
/// `"` opens or closes one and a line break is always layout.
fn rust_literal(out: &mut String, debug: &str) {
    let b = debug.as_bytes();
    let (mut in_string, mut run, mut i) = (false, 0, 0);
    while i < b.len() {
        match b[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'[' if !in_string => {
                out.push_str(&debug[run..i]);
                out.push('&');
                run = i;
            }
            b'\n' => {
                out.push_str(&debug[run..=i]);
                out.push_str("    ");
                run = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&debug[run..]);
}
