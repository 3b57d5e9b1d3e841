//! The rules for single values of roles.toml. They know nothing of positions: `manifest.rs` applies
//! them and points at the value.

/// Words that cannot be Nix identifiers (special-args become formal arguments).
const NIX_KEYWORDS: &[&str] = &[
    "assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with",
];
/// Instance config keys the contract sets itself: one way to say each thing.
const CONTRACT_KEYS: &[(&str, &str)] = &[
    ("limits.cpu", "cpu"),
    ("limits.memory", "memory-mib"),
    ("security.secureboot", "secure-boot"),
];
/// Keys that weaken isolation: accepted only with a `reason`.
const NEEDS_REASON: &[&str] = &["security.privileged", "security.nesting"];
/// The only host an `http://` readiness may name: the guest's own loopback.
pub const HTTP_READINESS_HOST: &str = "127.0.0.1";
/// The id `nobody`/`nogroup` hold: a role's own user must not share it.
pub const NOBODY_ID: u32 = 65534;

/// Every character of `s` is an ASCII letter or digit or one of `extra`.
fn made_of(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`
pub fn is_kebab_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split('-').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// `managed-openclaw` -> `ManagedOpenclaw`.
pub fn upper_camel(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for part in id.split('-') {
        let mut chars = part.chars();
        out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        out.push_str(chars.as_str());
    }
    out
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
        match segment {
            "" => return Err("segments are separated by single `/` and may not be empty"),
            "." | ".." => return Err("`.` and `..` segments are not allowed"),
            _ if !made_of(segment, "._-") => {
                return Err("only letters, digits, `.`, `_`, `-` and `/` are allowed");
            }
            _ => {}
        }
    }
    Ok(())
}

/// A Nix attribute name usable unquoted: `^[A-Za-z_][A-Za-z0-9_'-]*$`.
pub fn is_nix_attr_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && made_of(s, "_'-")
}

/// A Nix identifier that is also not a keyword (it becomes a formal argument).
pub fn is_nix_identifier(s: &str) -> bool {
    is_nix_attr_name(s) && !NIX_KEYWORDS.contains(&s)
}

/// Safe in a Nix store path name: `[A-Za-z0-9+._?=-]+`, not starting with `.`.
pub fn is_store_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && made_of(s, "+._?=-")
}

/// A guest path: absolute, normalised (no `.`, `..`, empty or trailing segments), not `/`, and made
/// of characters that are safe unquoted in shell, Nix and Incus device settings.
pub fn check_guest_path(path: &str) -> Result<(), &'static str> {
    match path {
        _ if !path.starts_with('/') => return Err("must be absolute"),
        "/" => return Err("must not be `/` itself"),
        _ => {}
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err("must be normalised (no `//` and no trailing `/`)"),
            "." | ".." => return Err("must be normalised (no `.` or `..` segments)"),
            _ => {}
        }
    }
    if made_of(path, "/._-+") {
        Ok(())
    } else {
        Err("may only contain [A-Za-z0-9/._+-]")
    }
}

/// An Incus device name we accept: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit,
/// and not `root` (the instance's root disk comes from its profile).
pub fn check_device_name(name: &str) -> Result<(), &'static str> {
    match name {
        _ if name.is_empty() || name.len() > 64 => Err("must be 1 to 64 characters"),
        _ if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) => {
            Err("must start with a letter or digit")
        }
        _ if !made_of(name, "._-") => Err("may only contain [A-Za-z0-9._-]"),
        "root" => Err("is the instance's root disk device"),
        _ => Ok(()),
    }
}

/// An Incus cluster group name: 1 to 63 of `[A-Za-z0-9-]`, starting with a letter, not ending in `-`.
pub fn check_cluster_group(name: &str) -> Result<(), &'static str> {
    match name {
        _ if name.is_empty() || name.len() > 63 => Err("must be 1 to 63 characters"),
        _ if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || name.ends_with('-') => {
            Err("must start with a letter and not end with `-`")
        }
        _ if !made_of(name, "-") => Err("may only contain [A-Za-z0-9-]"),
        _ => Ok(()),
    }
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
    let rest_ok = rest.split('.').all(|s| !s.is_empty()) && made_of(rest, "._-");
    if namespace_ok && rest_ok {
        Ok(())
    } else {
        Err("is not an Incus instance key (`namespace.name` of [a-z0-9-] then [A-Za-z0-9._-])")
    }
}

/// Why a well-formed key is refused, or `None`. `explained` is whether it came with a reason.
pub fn refused_config_key(key: &str, explained: bool) -> Option<String> {
    let refused = |why: &str| Some(format!("instance-config `{key}` is refused: {why}"));
    if key.starts_with("raw.") {
        refused("`raw.*` keys bypass Incus's own validation")
    } else if key.starts_with("user.pika.") {
        refused("`user.pika.*` is reserved for Pika's own labels")
    } else if key.starts_with("volatile.") {
        refused("`volatile.*` is Incus's own state")
    } else if let Some((_, own)) = CONTRACT_KEYS.iter().find(|(k, _)| *k == key) {
        refused(&format!("the role's `{own}` key sets it"))
    } else if NEEDS_REASON.contains(&key) && !explained {
        Some(format!(
            "instance-config `{key}` weakens isolation: write it as `{{ value = \"...\", reason = \"why this role needs it\" }}`"
        ))
    } else {
        None
    }
}

/// Free text (description, reason) may hold any character but controls other than tab and newline:
/// Nix versions spell other control characters differently in `builtins.toJSON`, and NUL cannot
/// live in a Nix string at all.
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

/// An `http://127.0.0.1:PORT/PATH` readiness: the port and the absolute path. Only the guest's own
/// IPv4 loopback, an explicit port 1..=65535, and an absolute path of RFC 3986 path characters
/// (`%` only as `%XX`); no userinfo, query or fragment.
pub fn parse_http_readiness(url: &str) -> Result<(u16, &str), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(
            "must start with `http://` (only plain http to the guest's loopback is probed)".into(),
        );
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
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
    let escapes_ok = path
        .split('%')
        .skip(1)
        .all(|s| s.len() >= 2 && s.bytes().take(2).all(|b| b.is_ascii_hexdigit()));
    match () {
        _ if path.is_empty() => Err("must name an absolute path after the port (e.g. `/healthz`)".into()),
        _ if path.contains('?') => Err("must not carry a query (`?`)".into()),
        _ if path.contains('#') => Err("must not carry a fragment (`#`)".into()),
        _ if !made_of(path, "/-._~!$&'()*+,;=:@%") || !escapes_ok => Err(
            "path may only contain RFC 3986 path characters ([A-Za-z0-9/._~!$&'()*+,;=:@-], `%` as `%XX`)".into(),
        ),
        _ => Ok((port, path)),
    }
}

/// A POSIX user or group name for a role's user: `^[a-z_][a-z0-9_-]*$`, at most 32 characters
/// (useradd's limit), and not `root`.
pub fn check_posix_name(name: &str) -> Result<(), &'static str> {
    let shape = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    match name {
        _ if name.is_empty() || name.len() > 32 => Err("must be 1 to 32 characters"),
        _ if !shape => Err("must match ^[a-z_][a-z0-9_-]*$"),
        "root" => Err("must not be `root` (the role's user is unprivileged)"),
        _ => Ok(()),
    }
}

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
