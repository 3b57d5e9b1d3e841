//! `image rollback`: move the alias to an earlier image in one request. Without `--to`, the image
//! of the version before the one the alias serves; `--to` picks a kept version by the prefix of
//! its fingerprint or of its `pika.source-rev`.

use super::import::{AliasMove, point_alias};
use super::provenance::Provenance;
use super::versions::{AliasState, Version};
use pika_incus::ProjectClient;

/// Shortest prefix `--to` accepts, so a typo does not match by accident.
const MIN_PREFIX: usize = 4;

pub async fn rollback(
    project: &ProjectClient,
    host: &str,
    alias: &str,
    to: Option<&str>,
) -> Result<AliasMove, String> {
    let state = AliasState::read(project, alias).await?;
    let choice = match to {
        Some(wanted) => pick(&state, wanted, alias)?,
        None => previous_version(&state, alias)?,
    };
    if state.current.as_deref() != Some(choice.fingerprint.as_str()) {
        point_alias(project, alias, &choice.fingerprint, state.current.is_some()).await?;
    }
    let provenance = state
        .images
        .get(&choice.fingerprint)
        .map(|image| Provenance::from_properties(&image.properties))
        .unwrap_or_default();
    Ok(AliasMove::new(
        project,
        host,
        alias,
        state.current.clone(),
        choice.fingerprint.clone(),
        choice.alias.clone(),
        provenance,
    ))
}

fn previous_version<'a>(state: &'a AliasState, alias: &str) -> Result<&'a Version, String> {
    let current = state.current.as_deref();
    // Versions older than the newest one of the current image; all of them if it has none.
    let position = current
        .and_then(|fp| state.versions.iter().rposition(|v| v.fingerprint == fp))
        .unwrap_or(state.versions.len());
    state.versions[..position]
        .iter()
        .rev()
        .find(|v| Some(v.fingerprint.as_str()) != current)
        .ok_or_else(|| {
            format!(
                "alias {alias} has no earlier image to roll back to (kept versions: {})",
                list(state)
            )
        })
}

fn pick<'a>(state: &'a AliasState, wanted: &str, alias: &str) -> Result<&'a Version, String> {
    let wanted = wanted.trim();
    if wanted.len() < MIN_PREFIX {
        return Err(format!(
            "--to '{wanted}': give at least {MIN_PREFIX} characters of a fingerprint or source rev"
        ));
    }
    let rev_of = |v: &Version| {
        state
            .images
            .get(&v.fingerprint)
            .and_then(|i| Provenance::from_properties(&i.properties).source_rev)
    };
    let mut matches: Vec<&Version> = state
        .versions
        .iter()
        .rev()
        .filter(|v| {
            v.fingerprint.starts_with(wanted)
                || rev_of(v).is_some_and(|rev| rev.starts_with(wanted))
        })
        .collect();
    // One image may have several versions: the newest stands for it.
    let mut seen = std::collections::BTreeSet::new();
    matches.retain(|v| seen.insert(v.fingerprint.clone()));
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "--to '{wanted}' matches no kept version of alias {alias} (kept: {})",
            list(state)
        )),
        many => Err(format!(
            "--to '{wanted}' matches {} images of alias {alias}: {}; give more characters",
            many.len(),
            many.iter()
                .map(|v| v.fingerprint.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn list(state: &AliasState) -> String {
    if state.versions.is_empty() {
        return "none".into();
    }
    state
        .versions
        .iter()
        .map(|v| {
            let rev = state
                .images
                .get(&v.fingerprint)
                .and_then(|i| Provenance::from_properties(&i.properties).source_rev)
                .unwrap_or_else(|| "-".into());
            format!(
                "{} (image {}, rev {rev})",
                v.alias,
                &v.fingerprint[..v.fingerprint.len().min(12)]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
