//! Renders the registry into the three generated outputs with askama templates.
//!
//! Values are escaped here, on purpose, for the language they land in (the templates use the
//! plain-text escaper): Nix strings escape `"`, `\` and `${`; shell values are single-quoted;
//! Rust strings use Rust's own literal escaping.

use std::path::{Component, Path, PathBuf};

use askama::Template;

use crate::contract::{Mount, User, parse_http_readiness};
use crate::registry::{Registry, Role, upper_camel};

/// The command that regenerates every output, named in each header.
pub const REGENERATE_COMMAND: &str = "cargo run -p pika-roles-codegen -- generate";
/// Repository-relative path of the generated Nix registry.
pub const NIX_REGISTRY_PATH: &str = "nix/incus/roles.nix";
/// Repository-relative path of the generated shell role table.
pub const SHELL_TABLE_PATH: &str = "scripts/lib/roles.sh";
/// File name of the generated Rust source (written into OUT_DIR by build.rs).
pub const RUST_FILE_NAME: &str = "incus_guest_role.rs";

/// One rendered output: where it goes (relative to the repository root) and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub path: PathBuf,
    pub contents: String,
}

/// The checked-in outputs: the Nix registry and the shell table.
pub fn checked_in_outputs(registry: &Registry) -> Vec<Output> {
    vec![
        Output {
            path: NIX_REGISTRY_PATH.into(),
            contents: render_nix(registry),
        },
        Output {
            path: SHELL_TABLE_PATH.into(),
            contents: render_shell(registry),
        },
    ]
}

#[derive(Template)]
#[template(path = "roles.nix")]
struct NixTemplate<'a> {
    command: &'a str,
    args: Vec<String>,
    roles: Vec<NixRole>,
}

struct NixRole {
    key: String,
    fields: Vec<(&'static str, String)>,
}

pub fn render_nix(registry: &Registry) -> String {
    let nix_dir = Path::new(NIX_REGISTRY_PATH)
        .parent()
        .expect("registry path has a parent");
    let roles = registry
        .roles
        .iter()
        .map(|r| NixRole {
            key: nix_string(&r.id),
            fields: vec![
                ("id", nix_string(&r.id)),
                ("system", nix_string(&r.system)),
                ("packageAttr", nix_string(&r.package)),
                (
                    "legacyPackageAttrs",
                    nix_list(r.legacy_packages.iter().map(|s| nix_string(s))),
                ),
                ("defaultAlias", nix_string(&r.default_alias)),
                ("imageName", nix_string(&r.image_name)),
                ("variant", nix_string(&r.variant)),
                ("instanceType", nix_string(&r.instance_type)),
                ("diskSize", r.disk_size_mib.to_string()),
                ("description", nix_string(&r.description)),
                (
                    "modules",
                    nix_list(r.modules.iter().map(|m| nix_path_literal(nix_dir, m))),
                ),
                (
                    "modulePaths",
                    nix_list(r.modules.iter().map(|s| nix_string(s))),
                ),
                (
                    "specialArgNames",
                    nix_list(r.special_args.iter().map(|s| nix_string(s))),
                ),
                ("specialArgs", nix_inherit_set(&r.special_args)),
                ("runtimeMode", nix_string(&r.runtime_mode)),
                ("readiness", nix_string(&r.readiness)),
                ("cpu", r.cpu.to_string()),
                ("memoryMib", r.memory_mib.to_string()),
                ("secureBoot", r.secure_boot.to_string()),
                (
                    "clusterGroup",
                    r.cluster_group.as_deref().map_or("null".into(), nix_string),
                ),
                (
                    "servicePort",
                    r.service_port.map_or("null".into(), |p| p.to_string()),
                ),
                ("user", r.user.as_ref().map_or("null".into(), nix_user)),
                ("mounts", nix_mounts(&r.mounts)),
                (
                    "instanceConfig",
                    nix_attrs(
                        FIELD_INDENT,
                        r.instance_config
                            .iter()
                            .map(|(k, v)| (nix_string(k), nix_string(v.value())))
                            .collect(),
                    ),
                ),
                ("rolesDigest", nix_string(&r.roles_digest)),
            ],
        })
        .collect();
    NixTemplate {
        command: REGENERATE_COMMAND,
        args: registry.all_special_args(),
        roles,
    }
    .render()
    .expect("rendering roles.nix cannot fail")
        + "\n"
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

fn nix_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    format!("[{}]", items.join(" "))
}

/// Indentation of a role's attributes in roles.nix (the template's), so nested values can be laid
/// out the way alejandra formats them (the generated file passes `alejandra --check`).
const FIELD_INDENT: usize = 4;

/// An attribute set: inline with at most one binding, one binding per line otherwise (alejandra).
fn nix_attrs(indent: usize, entries: Vec<(String, String)>) -> String {
    if entries.len() <= 1 {
        let body: String = entries.iter().map(|(k, v)| format!("{k} = {v};")).collect();
        return format!("{{{body}}}");
    }
    let inner = " ".repeat(indent + 2);
    let body: String = entries
        .iter()
        .map(|(k, v)| format!("{inner}{k} = {v};\n"))
        .collect();
    format!("{{\n{body}{}}}", " ".repeat(indent))
}

/// The role's user: four bindings, one per line (alejandra).
fn nix_user(user: &User) -> String {
    nix_attrs(
        FIELD_INDENT,
        vec![
            ("name".into(), nix_string(&user.name)),
            ("uid".into(), user.uid.to_string()),
            ("group".into(), nix_string(&user.group)),
            ("gid".into(), user.gid.to_string()),
        ],
    )
}

/// The mounts list: each mount an attribute set of four bindings, so one per line (alejandra).
fn nix_mounts(mounts: &[Mount]) -> String {
    if mounts.is_empty() {
        return "[]".into();
    }
    let inner = " ".repeat(FIELD_INDENT + 2);
    let items: String = mounts
        .iter()
        .map(|m| {
            let attrs = nix_attrs(
                FIELD_INDENT + 2,
                vec![
                    ("name".into(), nix_string(&m.name)),
                    ("path".into(), nix_string(&m.path)),
                    ("readOnly".into(), m.read_only.to_string()),
                    ("optional".into(), m.optional.to_string()),
                ],
            );
            format!("{inner}{attrs}\n")
        })
        .collect();
    format!("[\n{items}{}]", " ".repeat(FIELD_INDENT))
}

fn nix_inherit_set(names: &[String]) -> String {
    if names.is_empty() {
        "{}".into()
    } else {
        format!("{{inherit {};}}", names.join(" "))
    }
}

/// A Nix path literal for a repository-relative module, relative to the directory of roles.nix.
/// Validation guarantees the characters are path-literal safe and there are no `..` components.
fn nix_path_literal(from_dir: &Path, module: &str) -> String {
    let from: Vec<Component> = from_dir.components().collect();
    let to: Vec<Component> = Path::new(module).components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = String::new();
    if common == from.len() {
        rel.push('.');
    } else {
        rel.push_str(&vec![".."; from.len() - common].join("/"));
    }
    for c in &to[common..] {
        rel.push('/');
        rel.push_str(&c.as_os_str().to_string_lossy());
    }
    rel
}

#[derive(Template)]
#[template(path = "roles.sh")]
struct ShellTemplate<'a> {
    command: &'a str,
    ids: Vec<String>,
    tables: Vec<ShellTable>,
}

struct ShellTable {
    name: &'static str,
    entries: Vec<(String, String)>,
}

pub fn render_shell(registry: &Registry) -> String {
    let ids: Vec<String> = registry.roles.iter().map(|r| shell_quote(&r.id)).collect();
    let table = |name: &'static str, value: fn(&Role) -> String| ShellTable {
        name,
        entries: registry
            .roles
            .iter()
            .zip(&ids)
            .map(|(r, id)| (id.clone(), shell_quote(&value(r))))
            .collect(),
    };
    ShellTemplate {
        command: REGENERATE_COMMAND,
        ids: ids.clone(),
        tables: vec![
            table("PIKA_ROLE_DEFAULT_ALIAS", |r| r.default_alias.clone()),
            table("PIKA_ROLE_PACKAGE", |r| r.package.clone()),
            table("PIKA_ROLE_LEGACY_PACKAGES", |r| r.legacy_packages.join(" ")),
            table("PIKA_ROLE_SYSTEM", |r| r.system.clone()),
            table("PIKA_ROLE_INSTANCE_TYPE", |r| r.instance_type.clone()),
            table("PIKA_ROLE_IMAGE_NAME", |r| r.image_name.clone()),
            table("PIKA_ROLE_VARIANT", |r| r.variant.clone()),
            table("PIKA_ROLE_DISK_SIZE_MIB", |r| r.disk_size_mib.to_string()),
            table("PIKA_ROLE_DESCRIPTION", |r| r.description.clone()),
            table("PIKA_ROLE_RUNTIME_MODE", |r| r.runtime_mode.clone()),
            table("PIKA_ROLE_READINESS", |r| r.readiness.clone()),
            table("PIKA_ROLE_CPU", |r| r.cpu.to_string()),
            table("PIKA_ROLE_MEMORY_MIB", |r| r.memory_mib.to_string()),
            table("PIKA_ROLE_SECURE_BOOT", |r| r.secure_boot.to_string()),
            table("PIKA_ROLE_CLUSTER_GROUP", |r| {
                r.cluster_group.clone().unwrap_or_default()
            }),
            table("PIKA_ROLE_SERVICE_PORT", |r| {
                r.service_port.map(|p| p.to_string()).unwrap_or_default()
            }),
            table("PIKA_ROLE_USER", |r| {
                r.user.as_ref().map(User::spec).unwrap_or_default()
            }),
            table("PIKA_ROLE_MOUNTS", |r| {
                r.mounts
                    .iter()
                    .map(Mount::spec)
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            table("PIKA_ROLE_INSTANCE_CONFIG", |r| {
                r.instance_config_pairs().join(" ")
            }),
            table("PIKA_ROLE_ROLES_DIGEST", |r| r.roles_digest.clone()),
        ],
    }
    .render()
    .expect("rendering roles.sh cannot fail")
        + "\n"
}

/// A single-quoted shell word: nothing inside is special except `'`, spelled `'\''`.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for (i, part) in s.split('\'').enumerate() {
        if i > 0 {
            out.push_str(r"'\''");
        }
        out.push_str(part);
    }
    out.push('\'');
    out
}

#[derive(Template)]
#[template(path = "incus_guest_role.rs")]
struct RustTemplate<'a> {
    command: &'a str,
    roles: Vec<RustRole>,
    valid_ids: String,
}

struct RustRole {
    variant: String,
    doc: String,
    id: String,
    default_alias: String,
    package: String,
    legacy_packages: String,
    image_name: String,
    variant_str: String,
    system: String,
    instance_type: String,
    disk_size_mib: u32,
    description: String,
    runtime_mode: String,
    readiness: String,
    cpu: u32,
    memory_mib: u32,
    secure_boot: bool,
    cluster_group: String,
    service_port: String,
    user: String,
    mounts: String,
    instance_config: String,
    roles_digest: String,
}

/// The Rust source of `IncusGuestRole`, for `include!` from OUT_DIR.
pub fn render_rust(registry: &Registry) -> String {
    let lit = |s: &str| format!("{s:?}");
    let roles = registry
        .roles
        .iter()
        .map(|r| RustRole {
            variant: r.variant_name.clone(),
            doc: r.description.replace(['\n', '\r'], " "),
            id: lit(&r.id),
            default_alias: lit(&r.default_alias),
            package: lit(&r.package),
            legacy_packages: format!(
                "&[{}]",
                r.legacy_packages
                    .iter()
                    .map(|p| lit(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            image_name: lit(&r.image_name),
            variant_str: lit(&r.variant),
            system: lit(&r.system),
            instance_type: lit(&r.instance_type),
            disk_size_mib: r.disk_size_mib,
            description: lit(&r.description),
            runtime_mode: format!("RuntimeMode::{}", upper_camel(&r.runtime_mode)),
            readiness: match r.readiness.as_str() {
                path if path.starts_with('/') => format!("Readiness::LifecycleFile({})", lit(path)),
                url if url.contains("://") => {
                    let (port, path) =
                        parse_http_readiness(url).expect("validation checked the readiness URL");
                    format!("Readiness::Http {{ port: {port}, path: {} }}", lit(&path))
                }
                kind => format!("Readiness::{}", upper_camel(kind)),
            },
            cpu: r.cpu,
            memory_mib: r.memory_mib,
            secure_boot: r.secure_boot,
            cluster_group: r
                .cluster_group
                .as_deref()
                .map_or("None".into(), |g| format!("Some({})", lit(g))),
            service_port: r
                .service_port
                .map_or("None".into(), |p| format!("Some({p})")),
            user: r.user.as_ref().map_or("None".into(), |u| {
                format!(
                    "Some(&RoleUser {{ name: {}, uid: {}, group: {}, gid: {} }})",
                    lit(&u.name),
                    u.uid,
                    lit(&u.group),
                    u.gid
                )
            }),
            mounts: format!(
                "&[{}]",
                r.mounts
                    .iter()
                    .map(|m| format!(
                        "RoleMount {{ name: {}, path: {}, read_only: {}, optional: {} }}",
                        lit(&m.name),
                        lit(&m.path),
                        m.read_only,
                        m.optional
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            instance_config: format!(
                "&[{}]",
                r.instance_config
                    .iter()
                    .map(|(k, v)| format!("({}, {})", lit(k), lit(v.value())))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            roles_digest: lit(&r.roles_digest),
        })
        .collect();
    RustTemplate {
        command: REGENERATE_COMMAND,
        roles,
        valid_ids: lit(&registry.valid_ids()),
    }
    .render()
    .expect("rendering the Rust enum cannot fail")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_escape_interpolation_quotes_and_backslashes() {
        assert_eq!(nix_string(r#"a "b" \ ${c} $d"#), r#""a \"b\" \\ \${c} $d""#);
        assert_eq!(nix_string("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn shell_quote_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn module_paths_are_relative_to_nix_incus() {
        let dir = Path::new("nix/incus");
        assert_eq!(nix_path_literal(dir, "nix/incus/a.nix"), "./a.nix");
        assert_eq!(nix_path_literal(dir, "nix/other/b.nix"), "../other/b.nix");
        assert_eq!(nix_path_literal(dir, "c.nix"), "../../c.nix");
        assert_eq!(nix_path_literal(dir, "nix/incus/sub/d.nix"), "./sub/d.nix");
    }
}
