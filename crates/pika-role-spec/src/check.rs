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

/// The only host an `http://` readiness may name: the guest's own loopback.
pub const HTTP_READINESS_HOST: &str = "127.0.0.1";

/// An `http://127.0.0.1:PORT/PATH` readiness: the port and the absolute path. Only the guest's own
/// IPv4 loopback, an explicit port 1..=65535, and an absolute path of RFC 3986 path characters
/// (`%` only as `%XX`); no userinfo, query or fragment.
pub fn parse_http_readiness(url: &str) -> Result<(u16, &str), String> {
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
    Ok((port, path))
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
