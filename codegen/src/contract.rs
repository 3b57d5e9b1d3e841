//! The runtime contract of a role (schema 2): how its guests run, when they count as ready, their
//! limits, mounts and extra Incus instance config. The value types and the rules for each value;
//! `registry.rs` applies them with positions.

use std::collections::BTreeMap;

use serde::Serialize;

/// `runtime-mode` values.
pub const RUNTIME_MODES: &[&str] = &["managed-service", "one-shot", "operator-sandbox"];
/// `readiness` values besides an absolute lifecycle file path.
pub const READINESS_KINDS: &[&str] = &["booted", "incus-agent", "ssh"];

/// The schema-2 keys a schema-1 role lacks, each with its meaning and the value `pika-roles migrate`
/// writes (Incus's own defaults and what launchers did before schema 2: nothing waited for more
/// than a started instance, nothing set limits, no image was signed).
pub const REQUIRED_CONTRACT_KEYS: &[(&str, &str, &str)] = &[
    (
        "runtime-mode",
        "how the guest runs: managed-service, one-shot or operator-sandbox",
        "\"managed-service\"",
    ),
    (
        "readiness",
        "when a launched guest counts as ready: booted, incus-agent, ssh, an absolute lifecycle file path or http://127.0.0.1:PORT/PATH",
        "\"booted\"",
    ),
    ("cpu", "the instance's limits.cpu, an integer >= 1", "1"),
    (
        "memory-mib",
        "the instance's limits.memory in MiB, an integer >= 1",
        "1024",
    ),
    (
        "secure-boot",
        "whether the image is signed for Secure Boot; false makes launchers set security.secureboot=false on VMs",
        "false",
    ),
];

/// Instance config keys the contract sets itself: one way to say each thing.
const CONTRACT_KEYS: &[(&str, &str)] = &[
    ("limits.cpu", "cpu"),
    ("limits.memory", "memory-mib"),
    ("security.secureboot", "secure-boot"),
];
/// Keys that weaken isolation: accepted only with a `reason`.
const NEEDS_REASON: &[&str] = &["security.privileged", "security.nesting"];

/// One mount: a host directory the launcher supplies, shown at `path` in the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mount {
    /// The Incus device name.
    pub name: String,
    /// Absolute, normalised guest path.
    pub path: String,
    pub read_only: bool,
    /// Attached only when the launcher has a source for it (roles.toml `optional`, default false).
    pub optional: bool,
}

impl Mount {
    /// `name:path:ro` or `name:path:rw`, with `:optional` appended for an optional mount, as in
    /// roles.sh.
    pub fn spec(&self) -> String {
        let mode = if self.read_only { "ro" } else { "rw" };
        let optional = if self.optional { ":optional" } else { "" };
        format!("{}:{}:{mode}{optional}", self.name, self.path)
    }
}

/// The unprivileged user a role's workload runs as (roles.toml `[roles.<id>.user]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

impl User {
    /// `name:uid:group:gid`, as in roles.sh.
    pub fn spec(&self) -> String {
        format!("{}:{}:{}:{}", self.name, self.uid, self.group, self.gid)
    }
}

/// The only host an `http://` readiness may name: the guest's own loopback.
pub const HTTP_READINESS_HOST: &str = "127.0.0.1";

/// An `http://127.0.0.1:PORT/PATH` readiness: the port and the absolute path. Only the guest's own
/// IPv4 loopback, an explicit port 1..=65535, and an absolute path of RFC 3986 path characters
/// (`%` only as `%XX`); no userinfo, query or fragment.
pub fn parse_http_readiness(url: &str) -> Result<(u16, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(
            "must start with `http://` (only plain http to the guest's loopback is probed)".into(),
        );
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("must not carry userinfo (`user@`)".into());
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!(
            "must name the port: http://{HTTP_READINESS_HOST}:PORT/PATH"
        ));
    };
    if host != HTTP_READINESS_HOST {
        return Err(format!(
            "must probe host {HTTP_READINESS_HOST} (the guest's own loopback), not `{host}`"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => {
            return Err(format!(
                "port `{port}` must be an integer between 1 and 65535"
            ));
        }
    };
    if path.is_empty() {
        return Err("must name an absolute path after the port (e.g. `/healthz`)".into());
    }
    if path.contains('?') {
        return Err("must not carry a query (`?`)".into());
    }
    if path.contains('#') {
        return Err("must not carry a fragment (`#`)".into());
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok && !escape {
            return Err(
                "path may only contain RFC 3986 path characters ([A-Za-z0-9/._~!$&'()*+,;=:@-], `%` as `%XX`)"
                    .into(),
            );
        }
    }
    Ok((port, path.to_owned()))
}

/// A POSIX user or group name for a role's user: `^[a-z_][a-z0-9_-]*$`, at most 32 characters
/// (useradd's limit), and not `root`.
pub fn check_posix_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    {
        return Err("must match ^[a-z_][a-z0-9_-]*$");
    }
    if name == "root" {
        return Err("must not be `root` (the role's user is unprivileged)");
    }
    Ok(())
}

/// The id `nobody`/`nogroup` hold: a role's own user must not share it.
pub const NOBODY_ID: u32 = 65534;

/// A uid or gid for a role's user: 1 to 4294967294 (0 is root, 4294967295 is `(uid_t)-1`), not
/// 65534 (`nobody`/`nogroup`).
pub fn check_posix_id(id: i64) -> Result<u32, String> {
    match u32::try_from(id) {
        Ok(NOBODY_ID) => Err(format!("must not be {NOBODY_ID} (nobody/nogroup)")),
        Ok(v) if v > 0 && v < u32::MAX => Ok(v),
        _ => Err(format!(
            "must be an integer between 1 and {} (0 is root), got {id}",
            u32::MAX - 1
        )),
    }
}

/// An `instance-config` value as written: a plain string or one with the reason it is needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Plain(String),
    Explained { value: String, reason: String },
}

impl ConfigValue {
    pub fn value(&self) -> &str {
        match self {
            ConfigValue::Plain(value) | ConfigValue::Explained { value, .. } => value,
        }
    }
}

/// Extra Incus instance config, sorted by key.
pub type InstanceConfig = BTreeMap<String, ConfigValue>;

/// A guest path: absolute, normalised (no `.`, `..`, empty or trailing segments), not `/`, and made
/// of characters that are safe unquoted in shell, Nix and Incus device settings.
pub fn check_guest_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must be absolute");
    }
    if path == "/" {
        return Err("must not be `/` itself");
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err("must be normalised (no `//` and no trailing `/`)"),
            "." | ".." => return Err("must be normalised (no `.` or `..` segments)"),
            _ => {}
        }
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))
    {
        return Err("may only contain [A-Za-z0-9/._+-]");
    }
    Ok(())
}

/// An Incus device name we accept: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit,
/// and not `root` (the instance's root disk comes from its profile).
pub fn check_device_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may only contain [A-Za-z0-9._-]");
    }
    if name == "root" {
        return Err("is the instance's root disk device");
    }
    Ok(())
}

/// An Incus cluster group name: 1 to 63 of `[A-Za-z0-9-]`, starting with a letter, not ending in `-`.
pub fn check_cluster_group(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || name.ends_with('-') {
        return Err("must start with a letter and not end with `-`");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("may only contain [A-Za-z0-9-]");
    }
    Ok(())
}

/// The shape of an Incus instance config key (`namespace.rest`): every Incus key has a namespace,
/// which also keeps Nix's special attribute names (`outPath`, `__toString`) out.
pub fn check_config_key_shape(key: &str) -> Result<(), &'static str> {
    let Some((namespace, rest)) = key.split_once('.') else {
        return Err("is not an Incus instance key (`namespace.name`, e.g. `boot.autostart`)");
    };
    let namespace_ok = namespace.starts_with(|c: char| c.is_ascii_lowercase())
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let rest_ok = !rest.is_empty()
        && !rest.starts_with('.')
        && !rest.ends_with('.')
        && !rest.contains("..")
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if namespace_ok && rest_ok {
        Ok(())
    } else {
        Err("is not an Incus instance key (`namespace.name` of [a-z0-9-] then [A-Za-z0-9._-])")
    }
}

/// Why a well-formed key is refused, or `None`. `explained` is whether it came with a reason.
pub fn refused_config_key(key: &str, explained: bool) -> Option<String> {
    if key.starts_with("raw.") {
        return Some(format!(
            "instance-config `{key}` is refused: `raw.*` keys bypass Incus's own validation"
        ));
    }
    if key.starts_with("user.pika.") {
        return Some(format!(
            "instance-config `{key}` is refused: `user.pika.*` is reserved for Pika's own labels"
        ));
    }
    if key.starts_with("volatile.") {
        return Some(format!(
            "instance-config `{key}` is refused: `volatile.*` is Incus's own state"
        ));
    }
    if let Some((_, own)) = CONTRACT_KEYS.iter().find(|(k, _)| *k == key) {
        return Some(format!(
            "instance-config `{key}` is refused: the role's `{own}` key sets it"
        ));
    }
    if NEEDS_REASON.contains(&key) && !explained {
        return Some(format!(
            "instance-config `{key}` weakens isolation: write it as `{{ value = \"...\", reason = \"why this role needs it\" }}`"
        ));
    }
    None
}

/// Free text (description, reason) may hold any character but controls other than tab and newline:
/// Nix versions spell other control characters differently in `builtins.toJSON`, which the roles
/// digest is computed from, and NUL cannot live in a Nix string at all.
pub fn check_text(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n'))
    {
        Some(c) => Err(format!(
            "contains the control character U+{:04X}; only tab and newline are allowed",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths() {
        for ok in ["/workspace/snapshot", "/run/pika/ready", "/a"] {
            assert_eq!(check_guest_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/", "relative", "/a/", "/a//b", "/a/../b", "/a/./b", "/a b", "/a:b", "/$x",
        ] {
            assert!(check_guest_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_readiness() {
        assert_eq!(
            parse_http_readiness("http://127.0.0.1:18789/healthz"),
            Ok((18789, "/healthz".into()))
        );
        assert_eq!(
            parse_http_readiness("http://127.0.0.1:1/"),
            Ok((1, "/".into()))
        );
        assert_eq!(
            parse_http_readiness("http://127.0.0.1:65535/a/b%2F;v=1"),
            Ok((65535, "/a/b%2F;v=1".into()))
        );
        for bad in [
            "https://127.0.0.1:1/",
            "http://localhost:1/",
            "http://10.0.0.1:1/",
            "http://[::1]:1/",
            "http://u@127.0.0.1:1/",
            "http://127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:65536/",
            "http://127.0.0.1:+80/",
            "http://127.0.0.1:80",
            "http://127.0.0.1:80/?x=1",
            "http://127.0.0.1:80/#x",
            "http://127.0.0.1:80/a b",
            "http://127.0.0.1:80/%zz",
            "http://127.0.0.1:80/a\"b",
        ] {
            assert!(parse_http_readiness(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn posix_names_and_ids() {
        for ok in ["openclaw", "pikaci", "_svc", "a-b_1", "users"] {
            assert_eq!(check_posix_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(33);
        for bad in ["", "root", "Pika", "1a", "-a", "a.b", "a b", long.as_str()] {
            assert!(check_posix_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_posix_id(1), Ok(1));
        assert_eq!(check_posix_id(1000), Ok(1000));
        assert_eq!(check_posix_id(4_294_967_294), Ok(4_294_967_294));
        for bad in [0, -1, 65534, 4_294_967_295, 4_294_967_296] {
            assert!(check_posix_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_names() {
        for ok in ["snapshot", "a.b_c-d", "x1"] {
            assert_eq!(check_device_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-a", "a/b", "a b", "root", long.as_str()] {
            assert!(check_device_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_keys() {
        for ok in [
            "boot.autostart",
            "security.syscalls.intercept.mknod",
            "environment.FOO_BAR",
        ] {
            assert_eq!(check_config_key_shape(ok), Ok(()), "{ok}");
        }
        for bad in [
            "outPath",
            "__toString",
            "Boot.x",
            "boot.",
            "boot..x",
            "a b.c",
            ".x",
        ] {
            assert!(check_config_key_shape(bad).is_err(), "{bad}");
        }
        assert!(refused_config_key("raw.lxc", true).is_some());
        assert!(refused_config_key("user.pika.x", true).is_some());
        assert!(refused_config_key("limits.cpu", true).is_some());
        assert!(refused_config_key("security.nesting", false).is_some());
        assert!(refused_config_key("security.nesting", true).is_none());
        assert!(refused_config_key("user.other", false).is_none());
    }

    #[test]
    fn text_allows_tab_newline_and_unicode_only() {
        assert!(check_text("a\tb\nc ü ${x} \"q\" \\").is_ok());
        for bad in ["\u{0}", "\u{8}", "\r", "\u{7f}", "\u{85}"] {
            assert!(check_text(bad).is_err(), "{bad:?}");
        }
    }
}
