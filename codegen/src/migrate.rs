//! `pika-roles migrate`: rewrites a schema-1 roles.toml as schema 2 by adding, per role, each
//! missing required key with an explicit value (see `REQUIRED_CONTRACT_KEYS`), keeping every other
//! byte (comments, layout, order). The result must validate, or nothing is returned.

use std::path::Path;

use crate::contract::REQUIRED_CONTRACT_KEYS;
use crate::diagnostic::{Diagnostics, SourceMap};
use crate::manifest::{RawManifest, RawRole};
use crate::registry::{PREVIOUS_SCHEMA_VERSION, Registry, SCHEMA_VERSION};

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migration {
    /// Already schema 2: nothing to do.
    AlreadyCurrent,
    /// The migrated text, and per role the keys that were added.
    Migrated {
        text: String,
        added: Vec<(String, Vec<&'static str>)>,
    },
}

/// The comment placed above the keys `migrate` adds.
pub const MIGRATE_COMMENT: &str =
    "# Added by `pika-roles migrate` (schema 1 -> 2): what launchers did before schema 2; review.";

/// Migrates manifest text; `path` and `repo_root` as for `Registry::parse`.
pub fn migrate(text: &str, path: &Path, repo_root: &Path) -> Result<Migration, Diagnostics> {
    let map = SourceMap::new(path, text);
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        Diagnostics(vec![map.at(&span, e.message().trim().to_owned())])
    })?;
    let schema = *raw.schema.get_ref();
    if schema == SCHEMA_VERSION {
        return Ok(Migration::AlreadyCurrent);
    }
    if schema != PREVIOUS_SCHEMA_VERSION {
        return Err(Diagnostics(vec![map.at(
            &raw.schema.span(),
            format!(
                "cannot migrate schema {schema}: `pika-roles migrate` upgrades schema = {PREVIOUS_SCHEMA_VERSION} to schema = {SCHEMA_VERSION}"
            ),
        )]));
    }

    // Every other problem is reported against the file as it is, before anything is added.
    if let Err(errors) = Registry::parse(text, path, repo_root) {
        let other: Vec<_> = errors
            .0
            .into_iter()
            .filter(|d| !is_migratable(&d.message))
            .collect();
        if !other.is_empty() {
            return Err(Diagnostics(other));
        }
    }

    // Insertions (byte offset, text), applied from the end so earlier offsets stay valid.
    let mut edits: Vec<(usize, usize, String)> = vec![(
        raw.schema.span().start,
        raw.schema.span().end,
        SCHEMA_VERSION.to_string(),
    )];
    let mut added = Vec::new();
    for (id, role) in raw.roles.map(|r| r.into_inner()).unwrap_or_default() {
        let role = role.into_inner();
        let missing: Vec<_> = REQUIRED_CONTRACT_KEYS
            .iter()
            .zip(role.present_contract_keys())
            .filter(|(_, present)| !present)
            .map(|(key, _)| *key)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let at = line_end_after(text, last_value_end(&role));
        let newline = if at == text.len() && !text.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        let mut block = format!("{newline}{MIGRATE_COMMENT}\n");
        for (key, _, value) in &missing {
            block.push_str(&format!("{key} = {value}\n"));
        }
        edits.push((at, at, block));
        added.push((
            id.into_inner(),
            missing.iter().map(|(key, _, _)| *key).collect(),
        ));
    }
    edits.sort_by_key(|(start, _, _)| *start);
    let mut migrated = text.to_owned();
    for (start, end, replacement) in edits.into_iter().rev() {
        migrated.replace_range(start..end, &replacement);
    }
    // The result must be a valid schema-2 manifest (it is, given the check above).
    Registry::parse(&migrated, path, repo_root)?;
    Ok(Migration::Migrated {
        text: migrated,
        added,
    })
}

/// Where the role's last schema-1 value ends.
fn last_value_end(role: &RawRole) -> usize {
    [
        role.description.span().end,
        role.default_alias.span().end,
        role.package.span().end,
        role.image_name.span().end,
        role.variant.span().end,
        role.system.span().end,
        role.instance_type.span().end,
        role.disk_size_mib.span().end,
        role.modules.span().end,
    ]
    .into_iter()
    .chain(role.legacy_packages.iter().map(|p| p.span().end))
    .chain(role.special_args.iter().map(|a| a.span().end))
    .max()
    .unwrap_or(0)
}

/// The offset just after the newline ending the line that holds `offset`, or the text's end.
fn line_end_after(text: &str, offset: usize) -> usize {
    text[offset..]
        .find('\n')
        .map_or(text.len(), |i| offset + i + 1)
}

/// The problems `migrate` fixes: the schema-1 notice and the missing schema-2 keys.
fn is_migratable(message: &str) -> bool {
    message.starts_with(&format!("schema {PREVIOUS_SCHEMA_VERSION} manifest:"))
        || REQUIRED_CONTRACT_KEYS
            .iter()
            .any(|(key, _, _)| message.starts_with(&format!("missing field `{key}` (")))
}
