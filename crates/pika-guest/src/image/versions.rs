//! The versions of an alias: one extra alias per import, `<alias>/v<UTC time>-<random>`, so the
//! images an alias served before stay reachable (rollback) until retention drops them. The name
//! sorts by import time and is unique, so Incus can create it inside the upload itself.

use std::collections::BTreeMap;

use pika_incus::{Image, ImageAlias, ProjectClient};
use time::OffsetDateTime;
use time::macros::format_description;

/// One version alias and the image it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub alias: String,
    pub fingerprint: String,
}

/// The alias, its versions (oldest first) and the images involved, read in one pass.
#[derive(Debug, Clone, Default)]
pub struct AliasState {
    /// Fingerprint the alias points at; `None` when the alias is missing.
    pub current: Option<String>,
    pub versions: Vec<Version>,
    /// Every alias of the project by name -> target.
    pub all_aliases: BTreeMap<String, String>,
    /// Every image of the project by fingerprint.
    pub images: BTreeMap<String, Image>,
}

/// A fresh version alias name for `alias`.
pub fn new_version_name(alias: &str) -> String {
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(format_description!(
            "[year][month][day]-[hour][minute][second].[subsecond digits:3]"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    format!("{alias}/v{stamp}-{:04x}", rand::random::<u16>())
}

/// Whether `name` is a version alias of `alias` (exactly the shape `new_version_name` makes).
pub fn is_version_of(name: &str, alias: &str) -> bool {
    let Some(rest) = name.strip_prefix(alias).and_then(|r| r.strip_prefix("/v")) else {
        return false;
    };
    let bytes = rest.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    bytes.len() == 24
        && digits(0..8)
        && bytes[8] == b'-'
        && digits(9..15)
        && bytes[15] == b'.'
        && digits(16..19)
        && bytes[19] == b'-'
        && bytes[20..].iter().all(|b| b.is_ascii_hexdigit())
}

impl AliasState {
    pub async fn read(project: &ProjectClient, alias: &str) -> Result<AliasState, String> {
        let aliases: Vec<ImageAlias> = project
            .list_image_aliases()
            .await
            .map_err(|e| e.to_string())?;
        let images = project.list_images().await.map_err(|e| e.to_string())?;
        let all_aliases: BTreeMap<String, String> =
            aliases.into_iter().map(|a| (a.name, a.target)).collect();
        let mut versions: Vec<Version> = all_aliases
            .iter()
            .filter(|(name, _)| is_version_of(name, alias))
            .map(|(name, target)| Version {
                alias: name.clone(),
                fingerprint: target.clone(),
            })
            .collect();
        versions.sort_by(|a, b| a.alias.cmp(&b.alias));
        Ok(AliasState {
            current: all_aliases.get(alias).cloned(),
            versions,
            all_aliases,
            images: images
                .into_iter()
                .map(|i| (i.fingerprint.clone(), i))
                .collect(),
        })
    }

    /// The newest version alias of image `fingerprint`, if any.
    pub fn version_of(&self, fingerprint: &str) -> Option<&Version> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.fingerprint == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_round_trip_and_sort_by_time() {
        let first = new_version_name("pika-agent/dev");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_version_name("pika-agent/dev");
        assert!(is_version_of(&first, "pika-agent/dev"), "{first}");
        assert!(first < second, "{first} !< {second}");
        assert!(pika_role_spec::check_alias(&first).is_ok());
        assert!(!is_version_of(&first, "pika-agent"));
        assert!(!is_version_of("pika-agent/dev/ct", "pika-agent/dev"));
        assert!(!is_version_of("pika-agent/dev-ct", "pika-agent/dev"));
        assert!(!is_version_of(&format!("{first}x"), "pika-agent/dev"));
    }
}
