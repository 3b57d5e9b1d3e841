//! Provenance of a role image (the `pika.*` properties of its metadata.yaml, kept by Incus as
//! image properties) and the drift verdict that compares it with what is expected.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use pika_incus_guest_role::IncusGuestRole;
use serde::Serialize;

/// The image property keys. The Nix image builder and scripts/lib/test-image.sh write the same.
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    #[serde(rename = "role")]
    pub role: Option<String>,
    #[serde(rename = "source-rev")]
    pub source_rev: Option<String>,
    #[serde(rename = "roles-digest")]
    pub roles_digest: Option<String>,
    #[serde(rename = "built-from")]
    pub built_from: Option<String>,
}

impl Provenance {
    /// From image properties: the `pika.*` keys, else the `key=value` words of `label`.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Provenance {
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
        Provenance {
            role: get(ROLE_KEY),
            source_rev: get(SOURCE_REV_KEY),
            roles_digest: get(ROLES_DIGEST_KEY),
            built_from: get(BUILT_FROM_KEY),
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

/// The drift verdict of one alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Current,
    Stale,
    UnknownProvenance,
    Missing,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Current => "current",
            Verdict::Stale => "stale",
            Verdict::UnknownProvenance => "unknown-provenance",
            Verdict::Missing => "missing",
        }
    }
}

/// `serving` is the provenance of the image behind the alias (`None`: no alias).
pub fn verdict(serving: Option<&Provenance>, expected: &Provenance) -> Verdict {
    let Some(serving) = serving else {
        return Verdict::Missing;
    };
    if !serving.is_known() {
        return Verdict::UnknownProvenance;
    }
    let same = |a: &Option<String>, b: &Option<String>| a == b;
    // built-from is compared only when both sides know it (a checkout has no output path).
    let built_from_agrees = match (&serving.built_from, &expected.built_from) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if same(&serving.role, &expected.role)
        && same(&serving.source_rev, &expected.source_rev)
        && same(&serving.roles_digest, &expected.roles_digest)
        && built_from_agrees
    {
        Verdict::Current
    } else {
        Verdict::Stale
    }
}

/// What this checkout would build for `role`: the git revision of `repo` (`<rev>-dirty` when
/// tracked files changed, as a flake's dirtyRev) and the role's digest from the registry.
pub fn expected_from_checkout(role: IncusGuestRole, repo: &Path) -> Result<Provenance, String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))
    };
    let head = git(&["rev-parse", "--verify", "HEAD"])?;
    if !head.status.success() {
        return Err(format!(
            "cannot tell this checkout's revision ({} is not a git checkout with a commit): run inside the repository, or give --artifact DIR",
            repo.display()
        ));
    }
    let rev = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    let dirty = !status.status.success() || !status.stdout.is_empty();
    expected_for_rev(role, &if dirty { format!("{rev}-dirty") } else { rev })
}

/// What a build of `rev` would carry for `role` (its digest from this build's registry).
pub fn expected_for_rev(role: IncusGuestRole, rev: &str) -> Result<Provenance, String> {
    Ok(Provenance {
        role: Some(role.as_str().to_string()),
        source_rev: Some(rev.to_string()),
        roles_digest: Some(role_digest(role)?.to_string()),
        built_from: None,
    })
}

// TODO(schema 2): `role.roles_digest()` once the codegen lands it.
fn role_digest(role: IncusGuestRole) -> Result<&'static str, String> {
    Err(format!(
        "the roles digest of {role} is not known to this build; give --artifact DIR"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(rev: &str, digest: &str) -> Provenance {
        Provenance {
            role: Some("r".into()),
            source_rev: Some(rev.into()),
            roles_digest: Some(digest.into()),
            built_from: None,
        }
    }

    #[test]
    fn verdicts() {
        let expected = provenance("a", "d");
        assert_eq!(verdict(None, &expected), Verdict::Missing);
        assert_eq!(
            verdict(Some(&Provenance::default()), &expected),
            Verdict::UnknownProvenance
        );
        assert_eq!(
            verdict(Some(&provenance(UNKNOWN_REV, "d")), &expected),
            Verdict::UnknownProvenance
        );
        assert_eq!(
            verdict(Some(&provenance("a", "d")), &expected),
            Verdict::Current
        );
        assert_eq!(
            verdict(Some(&provenance("b", "d")), &expected),
            Verdict::Stale
        );
        assert_eq!(
            verdict(Some(&provenance("a", "e")), &expected),
            Verdict::Stale
        );
        let other_role = Provenance {
            role: Some("other".into()),
            ..provenance("a", "d")
        };
        assert_eq!(verdict(Some(&other_role), &expected), Verdict::Stale);
        let built = |path: &str| Provenance {
            built_from: Some(path.into()),
            ..provenance("a", "d")
        };
        assert_eq!(
            verdict(Some(&built("/nix/store/x")), &built("/nix/store/x")),
            Verdict::Current
        );
        assert_eq!(
            verdict(Some(&built("/nix/store/x")), &built("/nix/store/y")),
            Verdict::Stale
        );
        assert_eq!(
            verdict(Some(&built("/nix/store/x")), &expected),
            Verdict::Current
        );
    }

    #[test]
    fn properties_are_read_and_blank_ones_ignored() {
        let properties = BTreeMap::from([
            (ROLE_KEY.to_string(), "r".to_string()),
            (SOURCE_REV_KEY.to_string(), " ".to_string()),
            (ROLES_DIGEST_KEY.to_string(), "d".to_string()),
        ]);
        let p = Provenance::from_properties(&properties);
        assert_eq!(p.role.as_deref(), Some("r"));
        assert_eq!(p.source_rev, None);
        assert!(!p.is_known());
    }

    #[test]
    fn label_round_trips() {
        let p = Provenance {
            built_from: Some("/nix/store/abc-image".into()),
            ..provenance("a1", "d1")
        };
        let properties = BTreeMap::from([(LABEL_KEY.to_string(), p.label())]);
        assert_eq!(Provenance::from_properties(&properties), p);
    }
}
