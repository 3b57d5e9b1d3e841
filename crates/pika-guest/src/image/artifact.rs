//! A built image artifact (a directory: `metadata.tar.xz` plus `disk.qcow2` or `rootfs.squashfs`,
//! as the flake's image packages and the test images lay it out), verified before any import:
//! the payload is whole, the metadata tarball is one Incus reads the same way (see
//! [`metadata_tar`]), metadata.yaml parses, and its architecture fits the role's system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pika_incus::InstanceType;
use pika_incus_guest_role::IncusGuestRole;
use serde::Deserialize;

use super::integrity;
use super::metadata_tar::{self, METADATA_YAML};
use super::provenance::Provenance;

pub const METADATA_FILE: &str = "metadata.tar.xz";
pub const VM_DISK_FILE: &str = "disk.qcow2";
pub const CONTAINER_ROOTFS_FILE: &str = "rootfs.squashfs";

/// A verified artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub metadata_file: PathBuf,
    pub payload_file: PathBuf,
    pub image_type: InstanceType,
    pub metadata: Metadata,
    /// Set when the payload is not the role's instance type (imported anyway, as it says).
    pub note: Option<String>,
}

/// What metadata.yaml says (the fields pika-guest uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub architecture: String,
    pub properties: BTreeMap<String, String>,
}

impl Metadata {
    pub fn provenance(&self) -> Provenance {
        Provenance::from_properties(&self.properties)
    }
}

#[derive(Deserialize)]
struct RawMetadata {
    architecture: Option<serde_norway::Value>,
    #[serde(default)]
    properties: BTreeMap<String, serde_norway::Value>,
}

impl Artifact {
    /// Finds the files of `dir` for `role` and verifies them; every error names the file.
    pub fn open(dir: &Path, role: IncusGuestRole) -> Result<Artifact, String> {
        if !dir.is_dir() {
            return Err(format!(
                "artifact {} is not a directory (it needs {METADATA_FILE} plus {VM_DISK_FILE} or {CONTAINER_ROOTFS_FILE}; build it: scripts/incus-role-image.sh --role {role} build)",
                dir.display()
            ));
        }
        let metadata_file = dir.join(METADATA_FILE);
        if !metadata_file.is_file() {
            return Err(format!(
                "artifact {} has no {METADATA_FILE} (needs {METADATA_FILE} plus {VM_DISK_FILE} or {CONTAINER_ROOTFS_FILE}; build it: scripts/incus-role-image.sh --role {role} build)",
                dir.display()
            ));
        }
        let role_type = if role.instance_type() == InstanceType::Container.as_str() {
            InstanceType::Container
        } else {
            InstanceType::VirtualMachine
        };
        let file_of = |kind: InstanceType| match kind {
            InstanceType::Container => CONTAINER_ROOTFS_FILE,
            InstanceType::VirtualMachine => VM_DISK_FILE,
        };
        let other_type = match role_type {
            InstanceType::Container => InstanceType::VirtualMachine,
            InstanceType::VirtualMachine => InstanceType::Container,
        };
        let (image_type, note) = if dir.join(file_of(role_type)).is_file() {
            (role_type, None)
        } else if dir.join(file_of(other_type)).is_file() {
            let note = format!(
                "role {role} is a {role_type} role, but {} holds {}: importing that",
                dir.display(),
                file_of(other_type)
            );
            (other_type, Some(note))
        } else {
            return Err(format!(
                "artifact {} has neither {VM_DISK_FILE} (virtual machine) nor {CONTAINER_ROOTFS_FILE} (container)",
                dir.display()
            ));
        };
        let payload_file = dir.join(file_of(image_type));
        match image_type {
            InstanceType::Container => integrity::check_squashfs(&payload_file)?,
            InstanceType::VirtualMachine => integrity::check_qcow2(&payload_file)?,
        }
        let metadata = read_metadata(&metadata_file)?;
        check_architecture(&metadata, role, &metadata_file)?;
        let provenance = metadata.provenance();
        if let Some(other) = provenance.role.as_deref().filter(|r| *r != role.as_str()) {
            return Err(format!(
                "{}: the image was built for role {other} (pika.role), not {role}",
                metadata_file.display()
            ));
        }
        Ok(Artifact {
            metadata_file,
            payload_file,
            image_type,
            metadata,
            note,
        })
    }

    /// sha256(metadata tarball || payload): the fingerprint Incus gives a split image.
    pub fn fingerprint(&self) -> Result<String, String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for path in [&self.metadata_file, &self.payload_file] {
            let mut file = std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            std::io::copy(&mut file, &mut hasher)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// The files of the image directory `dir` that exist (metadata plus whichever payload), what a
/// remote import ships; `None` when `dir` is not a directory. The remote side verifies them.
pub fn payload_files(dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    if !dir.is_dir() {
        return None;
    }
    let files: Vec<_> = [METADATA_FILE, VM_DISK_FILE, CONTAINER_ROOTFS_FILE]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect();
    Some(files)
}

/// The provenance an artifact's metadata promises (status needs only metadata.tar.xz of DIR).
pub fn expected_from_metadata(dir: &Path, role: IncusGuestRole) -> Result<Provenance, String> {
    let provenance = read_metadata(&dir.join(METADATA_FILE))?.provenance();
    match provenance.role.as_deref() {
        Some(r) if r != role.as_str() => Err(format!(
            "{}: the image was built for role {r} (pika.role), not {role}",
            dir.join(METADATA_FILE).display()
        )),
        _ => Ok(Provenance {
            role: Some(role.as_str().to_string()),
            ..provenance
        }),
    }
}

/// Reads metadata.yaml out of the xz tarball, verified as [`metadata_tar::read`] says (a cut or
/// corrupt tarball fails its xz check).
pub fn read_metadata(path: &Path) -> Result<Metadata, String> {
    let text = metadata_tar::read(path)?.yaml;
    parse_metadata(&text).map_err(|e| format!("{}: {METADATA_YAML}: {e}", path.display()))
}

fn parse_metadata(text: &str) -> Result<Metadata, String> {
    let raw: RawMetadata =
        serde_norway::from_str(text).map_err(|e| format!("does not parse: {e}"))?;
    let architecture = raw
        .architecture
        .as_ref()
        .and_then(scalar)
        .filter(|a| !a.is_empty())
        .ok_or("has no architecture")?;
    let mut properties = BTreeMap::new();
    for (key, value) in raw.properties {
        let value = scalar(&value).ok_or_else(|| format!("property {key} is not a plain value"))?;
        properties.insert(key, value);
    }
    Ok(Metadata {
        architecture,
        properties,
    })
}

/// A YAML scalar as text (`release: 24.05` is a number to YAML, a string to Incus).
fn scalar(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Incus architecture names of a Nix system (both spellings Incus accepts).
fn incus_architectures(system: &str) -> &'static [&'static str] {
    match system.split('-').next().unwrap_or_default() {
        "x86_64" => &["x86_64", "amd64"],
        "aarch64" => &["aarch64", "arm64"],
        _ => &[],
    }
}

fn check_architecture(
    metadata: &Metadata,
    role: IncusGuestRole,
    path: &Path,
) -> Result<(), String> {
    let accepted = incus_architectures(role.system());
    if accepted.contains(&metadata.architecture.as_str()) {
        return Ok(());
    }
    Err(format!(
        "{}: architecture {} does not match role {role}'s system {} (expected {})",
        path.display(),
        metadata.architecture,
        role.system(),
        accepted.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_scalars_and_refuses_nested_values() {
        let text = "architecture: x86_64\ncreation_date: 1\nproperties:\n  os: nixos\n  release: 24.05\n  pika.role: \"managed-openclaw\"\ntemplates: {}\n";
        let metadata = parse_metadata(text).unwrap();
        assert_eq!(metadata.architecture, "x86_64");
        assert_eq!(metadata.properties["release"], "24.05");
        assert_eq!(metadata.properties["pika.role"], "managed-openclaw");
        assert!(
            parse_metadata("properties:\n  os: x\n")
                .unwrap_err()
                .contains("no architecture")
        );
        assert!(
            parse_metadata("architecture: x86_64\nproperties:\n  os: [a, b]\n")
                .unwrap_err()
                .contains("property os")
        );
        assert!(
            parse_metadata("architecture: [\n")
                .unwrap_err()
                .contains("does not parse")
        );
    }

    #[test]
    fn architecture_follows_the_role_system() {
        for role in IncusGuestRole::ALL {
            let accepted = incus_architectures(role.system());
            assert!(
                !accepted.is_empty(),
                "{role}: system {} unmapped",
                role.system()
            );
            let good = Metadata {
                architecture: accepted[0].to_string(),
                ..Metadata::default()
            };
            check_architecture(&good, *role, Path::new("m")).unwrap();
            let bad = Metadata {
                architecture: "mips64".into(),
                ..Metadata::default()
            };
            let error = check_architecture(&bad, *role, Path::new("m")).unwrap_err();
            assert!(
                error.contains("mips64") && error.contains(role.system()),
                "{error}"
            );
        }
    }
}
