//! `image publish` and rollback of a published tree: a simplestreams image server tree (the format
//! images.linuxcontainers.org serves), edited with Incus's own `incus-simplestreams`. Hosts add
//! the tree's HTTPS URL once as a remote and follow new versions through image auto-update.
//!
//! A simplestreams version is named by the minute of metadata.yaml's `creation_date`, and the Nix
//! builds fix that date for reproducibility, so publishing copies the metadata with the date moved
//! past the newest published version; properties (the provenance among them) stay as built.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use super::artifact::{Artifact, METADATA_FILE};
use super::metadata_tar;
use super::provenance::Provenance;

/// The properties incus-simplestreams needs in metadata.yaml.
const REQUIRED_PROPERTIES: &[&str] = &["os", "release", "variant", "architecture"];

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub tree: PathBuf,
    pub alias: String,
    /// The published version (simplestreams serial) and its fingerprint.
    pub version: String,
    pub fingerprint: String,
    pub provenance: Provenance,
    /// Versions of the alias now in the tree, oldest first.
    pub versions: Vec<String>,
}

/// One entry of `incus-simplestreams list --format json`.
#[derive(Debug, Clone, Deserialize)]
struct Listed {
    fingerprint: String,
    #[serde(default)]
    properties: Option<std::collections::BTreeMap<String, String>>,
}

fn tool() -> String {
    std::env::var("PIKA_INCUS_SIMPLESTREAMS").unwrap_or_else(|_| "incus-simplestreams".into())
}

fn run(tree: &Path, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let output = Command::new(tool())
        .current_dir(tree)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {} (Debian package incus-extra): {e}", tool()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {} in {} failed: {}",
            tool(),
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            tree.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The published versions of `alias`, oldest first (by serial). `incus-simplestreams list` names
/// the aliases on a product's newest version only, so the product comes from the index.
fn versions(tree: &Path, alias: &str) -> Result<Vec<Listed>, String> {
    let index = tree.join("streams/v1/images.json");
    if !index.is_file() {
        return Ok(Vec::new());
    }
    let products = products_with_alias(&index, alias)?;
    let text = run(
        tree,
        &["list".as_ref(), "--format".as_ref(), "json".as_ref()],
    )?;
    let all: Vec<Listed> = serde_json::from_str(&text)
        .map_err(|e| format!("unexpected incus-simplestreams list output: {e}"))?;
    let mut mine: Vec<Listed> = all
        .into_iter()
        .filter(|l| products.contains(&product_of(l)))
        .collect();
    mine.sort_by(|a, b| serial(a).cmp(serial(b)));
    Ok(mine)
}

/// `[os, release, variant, architecture]` of the products of the index that carry `alias`.
fn products_with_alias(index: &Path, alias: &str) -> Result<Vec<[String; 4]>, String> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| format!("cannot read {}: {e}", index.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let field = |product: &serde_json::Value, key: &str| {
        product
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(value
        .get("products")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|products| products.values())
        .filter(|product| field(product, "aliases").split(',').any(|a| a == alias))
        .map(|product| ["os", "release", "variant", "arch"].map(|key| field(product, key)))
        .collect())
}

fn product_of(listed: &Listed) -> [String; 4] {
    ["os", "release", "variant", "architecture"].map(|key| {
        listed
            .properties
            .as_ref()
            .and_then(|p| p.get(key))
            .cloned()
            .unwrap_or_default()
    })
}

fn serial(listed: &Listed) -> &str {
    listed
        .properties
        .as_ref()
        .and_then(|p| p.get("serial"))
        .map_or("", String::as_str)
}

pub fn publish(artifact: &Artifact, tree: &Path, alias: &str) -> Result<PublishReport, String> {
    let missing: Vec<&str> = REQUIRED_PROPERTIES
        .iter()
        .copied()
        .filter(|key| !artifact.metadata.properties.contains_key(*key))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: metadata.yaml properties lack {} (incus-simplestreams needs {})",
            artifact.metadata_file.display(),
            missing.join(", "),
            REQUIRED_PROPERTIES.join(", ")
        ));
    }
    let provenance = artifact.metadata.provenance();
    if !provenance.is_known() {
        return Err(format!(
            "{}: the image has no provenance (pika.source-rev, pika.roles-digest); publish only images built by the flake",
            artifact.metadata_file.display()
        ));
    }
    std::fs::create_dir_all(tree).map_err(|e| format!("cannot create {}: {e}", tree.display()))?;
    check_no_symlinks(tree)?;
    let before = versions(tree, alias)?;
    let date = next_creation_date(before.last().map(serial))?;
    let scratch = tempfile_dir(tree)?;
    let result = (|| {
        let metadata = scratch.join(METADATA_FILE);
        rewrite_creation_date(&artifact.metadata_file, &metadata, date)?;
        run(
            tree,
            &[
                "add".as_ref(),
                "--no-default-alias".as_ref(),
                "--alias".as_ref(),
                alias.as_ref(),
                metadata.as_os_str(),
                artifact.payload_file.as_os_str(),
            ],
        )
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    let after = versions(tree, alias)?;
    let newest = after.last().ok_or_else(|| {
        format!("incus-simplestreams lists no version of {alias} after adding one")
    })?;
    label_version(tree, alias, serial(newest), &provenance.label())?;
    Ok(PublishReport {
        tree: tree.to_path_buf(),
        alias: alias.to_string(),
        version: serial(newest).to_string(),
        fingerprint: newest.fingerprint.clone(),
        provenance,
        versions: after.iter().map(|l| serial(l).to_string()).collect(),
    })
}

#[derive(Debug, Serialize)]
pub struct WithdrawReport {
    pub tree: PathBuf,
    pub alias: String,
    pub withdrawn: String,
    pub withdrawn_fingerprint: String,
    pub serving: String,
    pub serving_fingerprint: String,
}

/// Rollback on a published tree: withdraws the newest version of `alias`; refuses to withdraw
/// the last one (the alias would go missing).
pub fn withdraw_newest(tree: &Path, alias: &str) -> Result<WithdrawReport, String> {
    check_no_symlinks(tree)?;
    let listed = versions(tree, alias)?;
    let [.., previous, newest] = listed.as_slice() else {
        return Err(format!(
            "{}: alias {alias} has {} published version(s); rollback needs an earlier one to fall back to",
            tree.display(),
            listed.len()
        ));
    };
    run(tree, &["remove".as_ref(), newest.fingerprint.as_ref()])?;
    Ok(WithdrawReport {
        tree: tree.to_path_buf(),
        alias: alias.to_string(),
        withdrawn: serial(newest).to_string(),
        withdrawn_fingerprint: newest.fingerprint.clone(),
        serving: serial(previous).to_string(),
        serving_fingerprint: previous.fingerprint.clone(),
    })
}

/// Sets the label of version `serial` of the product that carries `alias`: the only per-version
/// field Incus turns into an image property, so pulled images keep their provenance.
fn label_version(tree: &Path, alias: &str, serial: &str, label: &str) -> Result<(), String> {
    let path = tree.join("streams/v1/images.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let products = index
        .get_mut("products")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| format!("{}: no products", path.display()))?;
    let version = products
        .values_mut()
        .filter(|product| {
            product
                .get("aliases")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|aliases| aliases.split(',').any(|a| a == alias))
        })
        .find_map(|product| product.get_mut("versions")?.get_mut(serial))
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| format!("{}: no version {serial} of {alias}", path.display()))?;
    version.insert("label".into(), label.into());
    let text = serde_json::to_string(&index).map_err(|e| e.to_string())?;
    // Write whole or not at all: hosts may be fetching the index right now.
    let partial = path.with_extension("json.partial");
    // A new file (create_new follows no symlink); the rename replaces the index entry itself.
    let _ = std::fs::remove_file(&partial);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Refuses a tree holding anything but directories and plain files: publish and
/// `incus-simplestreams` write into it (as root, typically), and a symlink there (`streams/`,
/// `images/`, `streams/v1/index.json`) would send those writes outside the tree.
fn check_no_symlinks(tree: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(tree).map_err(|e| format!("cannot read {}: {e}", tree.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", tree.display()))?
            .path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(format!(
                "{} is a symlink{target}; publish writes only to plain files and directories of the tree: replace it with the real one",
                path.display()
            ));
        }
        if meta.is_dir() {
            check_no_symlinks(&path)?;
        } else if !meta.is_file() {
            return Err(format!(
                "{} is neither a plain file nor a directory; publish writes only to plain files and directories of the tree",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Now, or one minute past the newest published serial (`YYYYMMDDhhmm`, UTC), whichever is later.
fn next_creation_date(newest_serial: Option<&str>) -> Result<i64, String> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let Some(serial) = newest_serial.filter(|s| !s.is_empty()) else {
        return Ok(now);
    };
    let parsed = time::PrimitiveDateTime::parse(
        serial,
        format_description!("[year][month][day][hour][minute]"),
    )
    .map_err(|e| format!("cannot read the published serial {serial}: {e}"))?;
    Ok(now.max(parsed.assume_utc().unix_timestamp() + 60))
}

fn tempfile_dir(tree: &Path) -> Result<PathBuf, String> {
    let dir =
        std::env::temp_dir().join(format!("pika-guest-publish-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&dir)
        .map_err(|e| format!("cannot create a temp dir for {}: {e}", tree.display()))?;
    Ok(dir)
}

/// Copies the metadata tarball with metadata.yaml's `creation_date` set to `date`; the templates
/// stay as they are.
fn rewrite_creation_date(from: &Path, to: &Path, date: i64) -> Result<(), String> {
    let text = metadata_tar::read(from)?.yaml;
    let mut doc: serde_norway::Value = serde_norway::from_str(&text)
        .map_err(|e| format!("{}: metadata.yaml: {e}", from.display()))?;
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| format!("{}: metadata.yaml is not a mapping", from.display()))?;
    map.insert("creation_date".into(), date.into());
    let yaml = serde_norway::to_string(&doc).map_err(|e| e.to_string())?;
    metadata_tar::rewrite(from, to, &yaml, u64::try_from(date).unwrap_or_default())
}
