//! Retention: an alias keeps the image it serves plus its newest versions, `keep` images in all;
//! older version aliases are dropped, and an image is deleted only when no alias and no instance
//! (`volatile.base_image`) uses it any more. Besides images whose versions it dropped, it deletes
//! unaliased leftovers that carry this role's provenance (an import killed before Incus made its
//! version alias); images of unknown origin without an alias are left alone.

use std::collections::BTreeSet;

use pika_incus::ProjectClient;
use serde::Serialize;

use super::provenance::Provenance;
use super::versions::AliasState;

const BASE_IMAGE_KEY: &str = "volatile.base_image";

#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    /// Version aliases removed.
    pub versions: Vec<String>,
    /// Images deleted.
    pub images: Vec<String>,
    /// Images left because an instance uses them.
    pub in_use: Vec<String>,
}

/// What retention keeps of an alias: `keep` images in all; leftovers it may delete are `role`'s.
#[derive(Debug, Clone, Copy)]
pub struct Keep<'a> {
    pub images: usize,
    pub role: &'a str,
}

pub async fn apply(project: &ProjectClient, alias: &str, keep: Keep<'_>) -> Result<Pruned, String> {
    let Keep { images: keep, role } = keep;
    let state = AliasState::read(project, alias).await?;
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    if let Some(current) = &state.current {
        kept.insert(current);
    }
    for version in state.versions.iter().rev() {
        if kept.len() >= keep {
            break;
        }
        kept.insert(&version.fingerprint);
    }
    let mut pruned = Pruned::default();
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for version in state
        .versions
        .iter()
        .filter(|v| !kept.contains(v.fingerprint.as_str()))
    {
        match project.delete_image_alias(&version.alias).await {
            Ok(()) => pruned.versions.push(version.alias.clone()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
        candidates.insert(version.fingerprint.clone());
    }
    // Leftovers of this role that no alias names.
    let aliased: BTreeSet<&str> = state.all_aliases.values().map(String::as_str).collect();
    for (fingerprint, image) in &state.images {
        let ours = Provenance::from_properties(&image.properties)
            .role
            .as_deref()
            == Some(role);
        if ours && !aliased.contains(fingerprint.as_str()) {
            candidates.insert(fingerprint.clone());
        }
    }
    if candidates.is_empty() {
        return Ok(pruned);
    }
    // Decide on fresh facts: another import may have aliased a candidate meanwhile.
    let fresh = AliasState::read(project, alias).await?;
    let aliased: BTreeSet<&str> = fresh.all_aliases.values().map(String::as_str).collect();
    let instances = project.list_instances().await.map_err(|e| e.to_string())?;
    let used: BTreeSet<&str> = instances
        .iter()
        .filter_map(|i| i.config.get(BASE_IMAGE_KEY).map(String::as_str))
        .collect();
    for fingerprint in candidates {
        if aliased.contains(fingerprint.as_str()) || !fresh.images.contains_key(&fingerprint) {
            continue;
        }
        if used.contains(fingerprint.as_str()) {
            pruned.in_use.push(fingerprint);
            continue;
        }
        match project.delete_image(&fingerprint).await {
            Ok(()) => pruned.images.push(fingerprint),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(pruned)
}
