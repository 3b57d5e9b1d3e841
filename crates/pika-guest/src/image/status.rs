//! `image status`: per role and host, what the alias serves, its provenance and the verdict.

use pika_incus::ProjectClient;
use serde::Serialize;

use super::provenance::{Provenance, Verdict, verdict};
use super::versions::AliasState;

#[derive(Debug, Serialize)]
pub struct StatusLine {
    pub role: String,
    pub host: String,
    pub project: String,
    pub alias: String,
    /// `None` when the alias is missing.
    pub fingerprint: Option<String>,
    pub provenance: Option<Provenance>,
    pub expected: Provenance,
    pub verdict: Verdict,
    /// Version aliases kept for rollback, oldest first.
    pub versions: Vec<String>,
}

pub async fn status(
    project: &ProjectClient,
    host: &str,
    role: &str,
    alias: &str,
    expected: Provenance,
) -> Result<StatusLine, String> {
    let state = AliasState::read(project, alias).await?;
    let provenance = state.current.as_ref().map(|fingerprint| {
        state
            .images
            .get(fingerprint)
            .map(|image| Provenance::from_properties(&image.properties))
            .unwrap_or_default()
    });
    Ok(StatusLine {
        role: role.to_string(),
        host: host.to_string(),
        project: project.name().to_string(),
        alias: alias.to_string(),
        verdict: verdict(provenance.as_ref(), &expected),
        fingerprint: state.current.clone(),
        provenance,
        expected,
        versions: state.versions.iter().map(|v| v.alias.clone()).collect(),
    })
}
