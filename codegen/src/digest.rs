//! The roles digest: sha256 (hex) of the JSON that Nix's `builtins.toJSON` prints for one role's
//! table as `builtins.fromTOML` reads it. Nix recomputes it with `builtins.hashString` (see
//! nix/incus/registry.nix), so an image built by Nix and a registry built by cargo agree on it, and
//! a change to one role's table changes only that role's digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

/// The digest of every role of the manifest text, by role ID.
pub fn role_digests(text: &str) -> Result<BTreeMap<String, String>, String> {
    let root = DeTable::parse(text).map_err(|e| e.message().to_owned())?;
    role_digests_of(root.get_ref())
        .into_iter()
        .map(|(id, d)| Ok((id, d?)))
        .collect()
}

/// The digest of every role of an already parsed manifest (so `Registry::parse` reads the text
/// once), by role ID; a role whose table holds a value without a stable Nix JSON form gets an error.
pub(crate) fn role_digests_of(root: &DeTable<'_>) -> BTreeMap<String, Result<String, String>> {
    let roles = root
        .iter()
        .find(|(key, _)| key.get_ref() == "roles")
        .map(|(_, value)| value.get_ref());
    let Some(DeValue::Table(roles)) = roles else {
        return BTreeMap::new();
    };
    roles
        .iter()
        .map(|(id, table)| {
            let mut json = String::new();
            let digest = write_value(&mut json, table.get_ref()).map(|()| sha256_hex(&json));
            (id.get_ref().to_string(), digest)
        })
        .collect()
}

/// The JSON Nix's `builtins.toJSON` prints for a value `builtins.fromTOML` produced: no whitespace,
/// attribute names sorted by bytes. Floats and dates are refused: no role key holds one, and their
/// printing differs between Nix versions.
pub fn nix_json(text: &str) -> Result<String, String> {
    let root = DeTable::parse(text).map_err(|e| e.message().to_owned())?;
    let mut out = String::new();
    write_value(&mut out, &DeValue::Table(root.into_inner()))?;
    Ok(out)
}

fn sha256_hex(json: &str) -> String {
    let hash = Sha256::digest(json.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in hash {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn write_value(out: &mut String, value: &DeValue<'_>) -> Result<(), String> {
    match value {
        DeValue::String(s) => write_string(out, s),
        DeValue::Integer(i) => {
            let n = i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|e| format!("integer {}: {e}", i.as_str()))?;
            let _ = write!(out, "{n}");
        }
        DeValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        DeValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item.get_ref())?;
            }
            out.push(']');
        }
        DeValue::Table(table) => {
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.get_ref().as_bytes().cmp(b.get_ref().as_bytes()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key.get_ref());
                out.push(':');
                write_value(out, value.get_ref())?;
            }
            out.push('}');
        }
        DeValue::Float(_) => return Err("a float has no stable JSON form in Nix".into()),
        DeValue::Datetime(_) => return Err("a datetime has no JSON form in Nix".into()),
    }
    Ok(())
}

/// Nix's string escaping in `builtins.toJSON`: `"` and `\` escaped, newline, return and tab by
/// name, other control characters below 0x20 as `\u00xx`; everything else (UTF-8) as is.
/// Validation keeps control characters other than tab and newline out of roles.toml, because
/// newer Nix versions spell backspace and form feed as `\b` and `\f`.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Copy runs of plain characters at once; only the escaped ones go one by one.
    let mut plain_from = 0;
    for (i, byte) in s.bytes().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.push_str(&s[plain_from..i]);
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            other => {
                let _ = write!(out, "\\u{other:04x}");
            }
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compact_sorted_and_nix_escaped() {
        let text = "b = 0x1F\na = [\"x\\\"y\\\\z\\n\\t\", true]\n\"A\" = { \"z\" = \"ü ${x}\" }\n";
        assert_eq!(
            nix_json(text).unwrap(),
            r#"{"A":{"z":"ü ${x}"},"a":["x\"y\\z\n\t",true],"b":31}"#
        );
    }

    #[test]
    fn floats_and_dates_are_refused() {
        assert!(nix_json("a = 1.5").is_err());
        assert!(nix_json("a = 1979-05-27").is_err());
    }
}
