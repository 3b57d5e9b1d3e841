//! The roles digest: sha256 (hex) of the JSON that Nix's `builtins.toJSON` prints for one role's
//! table as `builtins.fromTOML` reads it. Nix recomputes it with `builtins.hashString` (see
//! nix/incus/registry.nix), so an image built by Nix and a registry built by cargo agree on it, and
//! a change to one role's table changes only that role's digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The digest of every role of the manifest text, by role ID.
pub fn role_digests(text: &str) -> Result<BTreeMap<String, String>, String> {
    let manifest: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let Some(toml::Value::Table(roles)) = manifest.get("roles") else {
        return Ok(BTreeMap::new());
    };
    roles
        .iter()
        .map(|(id, table)| Ok((id.clone(), role_digest(table)?)))
        .collect()
}

/// sha256 hex of `nix_json(table)`.
pub fn role_digest(table: &toml::Value) -> Result<String, String> {
    let hash = Sha256::digest(nix_json(table)?.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in hash {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// The JSON Nix's `builtins.toJSON` prints for a value `builtins.fromTOML` produced: no whitespace,
/// attribute names sorted by bytes. Floats and dates are refused: no role key holds one, and their
/// printing differs between Nix versions.
pub fn nix_json(value: &toml::Value) -> Result<String, String> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &toml::Value) -> Result<(), String> {
    match value {
        toml::Value::String(s) => write_string(out, s),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, &table[key.as_str()])?;
            }
            out.push('}');
        }
        other => {
            return Err(format!(
                "a {} has no stable JSON form in Nix",
                other.type_str()
            ));
        }
    }
    Ok(())
}

/// Nix's string escaping in `builtins.toJSON`: `"` and `\` escaped, newline, return and tab by
/// name, other control characters below 0x20 as `\u00xx`; everything else (UTF-8) as is.
/// Validation keeps control characters other than tab and newline out of roles.toml, because
/// newer Nix versions spell backspace and form feed as `\b` and `\f`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compact_sorted_and_nix_escaped() {
        let value: toml::Value = toml::from_str(
            "b = 1\na = [\"x\\\"y\\\\z\\n\\t\", true]\n\"A\" = { \"z\" = \"ü ${x}\" }\n",
        )
        .unwrap();
        assert_eq!(
            nix_json(&value).unwrap(),
            r#"{"A":{"z":"ü ${x}"},"a":["x\"y\\z\n\t",true],"b":1}"#
        );
    }

    #[test]
    fn floats_are_refused() {
        let value: toml::Value = toml::from_str("a = 1.5").unwrap();
        assert!(nix_json(&value).is_err());
    }
}
