//! The drift verdict: the provenance an alias serves against the one expected (an artifact's, or
//! what this checkout would build).

use std::path::Path;
use std::process::Command;

pub use pika_incus::ImageProvenance as Provenance;
use pika_incus_guest_role::IncusGuestRole;
use serde::Serialize;

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
    Ok(Provenance::built(role.as_str(), rev, role.roles_digest()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_incus::provenance::UNKNOWN_REV;

    fn provenance(rev: &str, digest: &str) -> Provenance {
        Provenance::built("r", rev, digest)
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
}
