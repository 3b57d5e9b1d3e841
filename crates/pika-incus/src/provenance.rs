//! Provenance of a Pika role image: the `pika.*` properties its metadata.yaml carries (the Nix image
//! builder and scripts/lib/test-image.sh write them), which Incus keeps as image properties. Read
//! by `pika-guest image status`, pika-server's health details and pikaci's run records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The image property keys.
pub const ROLE_KEY: &str = "pika.role";
pub const SOURCE_REV_KEY: &str = "pika.source-rev";
pub const ROLES_DIGEST_KEY: &str = "pika.roles-digest";
pub const BUILT_FROM_KEY: &str = "pika.built-from";
/// Images pulled from a simplestreams server get only the index's properties; `image publish`
/// writes the provenance into the version's label, which Incus keeps as this property.
pub const LABEL_KEY: &str = "label";
/// What a build without a known revision records as its source rev.
pub const UNKNOWN_REV: &str = "unknown";

/// Who built an image from what. Every field is optional: a hand-made image has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProvenance {
    #[serde(rename = "role")]
    pub role: Option<String>,
    #[serde(rename = "source-rev")]
    pub source_rev: Option<String>,
    #[serde(rename = "roles-digest")]
    pub roles_digest: Option<String>,
    #[serde(rename = "built-from")]
    pub built_from: Option<String>,
}

impl ImageProvenance {
    /// From image properties: the `pika.*` keys, else the `key=value` words of `label`.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> ImageProvenance {
        let from_label: BTreeMap<String, String> = properties
            .get(LABEL_KEY)
            .map(|label| {
                label
                    .split_whitespace()
                    .filter_map(|word| word.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let get = |key: &str| {
            properties
                .get(key)
                .or_else(|| from_label.get(key))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ImageProvenance {
            role: get(ROLE_KEY),
            source_rev: get(SOURCE_REV_KEY),
            roles_digest: get(ROLES_DIGEST_KEY),
            built_from: get(BUILT_FROM_KEY),
        }
    }

    /// What a build of `source_rev` records for `role`, whose registry digest is `roles_digest`
    /// (the output path is known only to the build itself).
    pub fn built(role: &str, source_rev: &str, roles_digest: &str) -> ImageProvenance {
        ImageProvenance {
            role: Some(role.to_string()),
            source_rev: Some(source_rev.to_string()),
            roles_digest: Some(roles_digest.to_string()),
            built_from: None,
        }
    }

    /// Rev and digest known: the image can be compared with an expectation.
    pub fn is_known(&self) -> bool {
        self.source_rev
            .as_deref()
            .is_some_and(|rev| rev != UNKNOWN_REV)
            && self.roles_digest.is_some()
    }

    /// The label `image publish` gives a simplestreams version (`pika.role=... pika.source-rev=...`).
    pub fn label(&self) -> String {
        [
            (ROLE_KEY, &self.role),
            (SOURCE_REV_KEY, &self.source_rev),
            (ROLES_DIGEST_KEY, &self.roles_digest),
            (BUILT_FROM_KEY, &self.built_from),
        ]
        .iter()
        .filter_map(|(key, value)| {
            value
                .as_ref()
                .map(|v| format!("{key}={}", v.replace(char::is_whitespace, "_")))
        })
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// The label, or `no provenance` for an image that carries none (imported by hand).
    pub fn describe(&self) -> String {
        let label = self.label();
        if label.is_empty() {
            "no provenance".into()
        } else {
            label
        }
    }

    /// `rev 1a2b3c4d5e6f digest 0a1b2c3d4e5f` for tables.
    pub fn short(&self) -> String {
        if self.source_rev.is_none() && self.roles_digest.is_none() {
            return "-".into();
        }
        let cut = |v: &Option<String>| {
            v.as_deref()
                .map_or("-".to_string(), |v| v.chars().take(12).collect())
        };
        format!(
            "rev {} digest {}",
            cut(&self.source_rev),
            cut(&self.roles_digest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_read_and_blank_ones_ignored() {
        let properties = BTreeMap::from([
            (ROLE_KEY.to_string(), "r".to_string()),
            (SOURCE_REV_KEY.to_string(), " ".to_string()),
            (ROLES_DIGEST_KEY.to_string(), "d".to_string()),
        ]);
        let p = ImageProvenance::from_properties(&properties);
        assert_eq!(p.role.as_deref(), Some("r"));
        assert_eq!(p.source_rev, None);
        assert!(!p.is_known());
    }

    #[test]
    fn label_round_trips() {
        let p = ImageProvenance {
            built_from: Some("/nix/store/abc-image".into()),
            ..ImageProvenance::built("r", "a1", "d1")
        };
        let properties = BTreeMap::from([(LABEL_KEY.to_string(), p.label())]);
        assert_eq!(ImageProvenance::from_properties(&properties), p);
    }
}
