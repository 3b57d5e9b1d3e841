//! `image import`: verify the artifact, upload it with a fresh version alias created inside the
//! upload (the image is never unaliased), then move the alias in one request and apply retention.
//! The alias is created or retargeted, never deleted, so it is never missing.

use pika_incus::{ImageImport, InstanceType, ProjectClient};
use serde::Serialize;

use super::artifact::Artifact;
use super::provenance::Provenance;
use super::retention::{self, Keep, Pruned};
use super::versions::{AliasState, new_version_name};

/// What an alias serves after an import or a rollback, and what it served before.
#[derive(Debug, Serialize)]
pub struct AliasMove {
    pub alias: String,
    pub project: String,
    pub host: String,
    pub previous: Option<String>,
    pub fingerprint: String,
    pub version: String,
    pub provenance: Provenance,
}

impl AliasMove {
    pub fn new(
        project: &ProjectClient,
        host: &str,
        alias: &str,
        previous: Option<String>,
        fingerprint: String,
        version: String,
        provenance: Provenance,
    ) -> Self {
        AliasMove {
            alias: alias.to_string(),
            project: project.name().to_string(),
            host: host.to_string(),
            previous,
            fingerprint,
            version,
            provenance,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    #[serde(flatten)]
    pub serves: AliasMove,
    /// False when the alias already pointed at this image.
    pub moved: bool,
    pub already_present: bool,
    pub pruned: Pruned,
}

pub async fn import(
    project: &ProjectClient,
    host: &str,
    alias: &str,
    artifact: &Artifact,
    keep: Keep<'_>,
) -> Result<ImportReport, String> {
    let state = AliasState::read(project, alias).await?;
    let previous = state.current.clone();
    let unchanged = || {
        format!(
            "alias {alias} is unchanged ({})",
            previous.as_deref().unwrap_or("absent")
        )
    };
    // The image the alias serves now stays reachable as a version (e.g. one imported by hand).
    if let Some(old) = &previous
        && state.version_of(old).is_none()
    {
        project
            .create_image_alias(
                &new_version_name(alias),
                old,
                "kept by pika-guest: served before an import",
            )
            .await
            .map_err(|e| format!("{e}; {}", unchanged()))?;
    }

    let version = new_version_name(alias);
    let upload = match artifact.image_type {
        InstanceType::Container => {
            ImageImport::container(&artifact.metadata_file, &artifact.payload_file)
        }
        InstanceType::VirtualMachine => {
            ImageImport::virtual_machine(&artifact.metadata_file, &artifact.payload_file)
        }
    }
    .upload_alias(&version);
    let (fingerprint, already_present, version) = match project.import_image(&upload).await {
        Ok(image) => (image.fingerprint, false, version),
        Err(e) if e.is_conflict() => {
            // The identical image is already in the project: give it a version if it has none.
            let fingerprint = artifact.fingerprint()?;
            let state = AliasState::read(project, alias).await?;
            let version = match state.version_of(&fingerprint) {
                Some(existing) => existing.alias.clone(),
                None => {
                    project
                        .create_image_alias(&version, &fingerprint, "")
                        .await
                        .map_err(|e| format!("{e}; {}", unchanged()))?;
                    version
                }
            };
            (fingerprint, true, version)
        }
        Err(e) => {
            return Err(format!(
                "importing {} + {} into project {} on {host} failed; {}: {e}",
                artifact.metadata_file.display(),
                artifact.payload_file.display(),
                project.name(),
                unchanged()
            ));
        }
    };

    let moved = previous.as_deref() != Some(fingerprint.as_str());
    if moved {
        point_alias(project, alias, &fingerprint, previous.is_some()).await?;
    }
    let pruned = retention::apply(project, alias, keep).await?;
    Ok(ImportReport {
        serves: AliasMove::new(
            project,
            host,
            alias,
            previous,
            fingerprint,
            version,
            artifact.metadata.provenance(),
        ),
        moved,
        already_present,
        pruned,
    })
}

/// Points `alias` at `fingerprint` in one request: PATCH when it exists, else create (and PATCH
/// when a concurrent import created it first).
pub async fn point_alias(
    project: &ProjectClient,
    alias: &str,
    fingerprint: &str,
    exists: bool,
) -> Result<(), String> {
    if !exists {
        match project.create_image_alias(alias, fingerprint, "").await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    project
        .retarget_image_alias(alias, fingerprint)
        .await
        .map_err(|e| e.to_string())
}
