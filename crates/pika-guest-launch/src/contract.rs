//! A role's contract on an Incus create request: the role's launch config (limits, Secure Boot,
//! instance config) and its mounts as disk devices, for host directories the launcher supplies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pika_incus::{InstanceCreate, InstanceType, ProjectClient, api};
use pika_incus_guest_role::{IncusGuestRole, MountSourceError};

/// The disk device setting that idmaps a container's view of a host directory.
const SHIFT: &str = "shift";

/// What the launcher gives each of a role's mounts, by mount name: `Some(host directory)` to attach
/// (`snapshot` -> `/var/tmp/run-1/snapshot`), or `None` when it fills the guest path another way
/// (jerichoci's upload to a remote Incus): then no device is attached.
pub type MountSources = BTreeMap<String, Option<PathBuf>>;

/// `create` with the role's launch config and mount devices added. Keys Incus knows only for VMs
/// (`security.secureboot`) are left out when `create` is a container: a container image standing
/// in for a VM role (as in the tests here) cannot carry them, and they mean nothing there.
/// Every mount of the role needs an entry in `sources`, and every entry a mount (see
/// `IncusGuestRole::mount_devices`).
pub fn apply_contract(
    mut create: InstanceCreate,
    role: IncusGuestRole,
    sources: &MountSources,
) -> Result<InstanceCreate, MountSourceError> {
    for (key, value) in role.launch_config() {
        if create.instance_type == InstanceType::Container && api::is_vm_only_config_key(&key) {
            continue;
        }
        create = create.config(key, value);
    }
    // The role checks the whole set (names, absolute paths); a mount the launcher fills another
    // way is checked with a placeholder and its device dropped.
    let checked: BTreeMap<String, PathBuf> = sources
        .iter()
        .map(|(name, dir)| (name.clone(), dir.clone().unwrap_or_else(|| "/".into())))
        .collect();
    let devices = role.mount_devices(&checked)?;
    for (name, mut settings) in devices {
        if sources.get(&name).is_some_and(Option::is_none) {
            continue;
        }
        if create.instance_type == InstanceType::Container {
            // An unprivileged container sees host files through its idmap: shifting (idmapped
            // mounts) shows them with their host owners instead of `nobody`, so a 0600 file the
            // launcher wrote stays readable by the guest's root.
            settings.insert(SHIFT.to_owned(), "true".to_owned());
        }
        create = create.device(name, settings);
    }
    Ok(create)
}

/// The instance type of the image behind `alias` (see [`pika_incus::ImageAlias::instance_type`]);
/// a missing alias fails here, before anything is created.
pub async fn image_type_of_alias(
    project: &ProjectClient,
    alias: &str,
) -> pika_incus::Result<InstanceType> {
    Ok(project.get_image_alias(alias).await?.instance_type())
}

fn is_root_disk(settings: &BTreeMap<String, String>) -> bool {
    settings.get("type").map(String::as_str) == Some("disk")
        && settings.get("path").map(String::as_str) == Some("/")
}

/// `create` with its root disk sized by the role's `disk-size-mib` (`size=<n>MiB`). A root disk
/// the create already has (pika-server names its pool) gets the size unless it sets one; otherwise
/// the root disk of its profiles (the last one that has one, as Incus expands them) is copied into
/// an instance device of the same name with the size added, pool and all. Without any root disk
/// the create is left as it is (Incus refuses it, naming the missing root disk).
///
/// Whether the size is enforced is the pool's business: zfs, btrfs, lvm and ceph enforce it; a
/// `dir` pool only for VMs (a raw disk file of that size) and, for containers, only on a backing
/// filesystem with project quotas (Incus skips the quota with a warning otherwise).
pub async fn size_root_disk(
    mut create: InstanceCreate,
    role: IncusGuestRole,
    project: &ProjectClient,
) -> pika_incus::Result<InstanceCreate> {
    let size = format!("{}MiB", role.disk_size_mib());
    if let Some(root) = create.devices.values_mut().find(|d| is_root_disk(d)) {
        root.entry("size".to_owned()).or_insert(size);
        return Ok(create);
    }
    let profiles = create
        .profiles
        .clone()
        .unwrap_or_else(|| vec!["default".to_owned()]);
    let mut root = None;
    for name in &profiles {
        let profile = project.get_profile(name).await?;
        if let Some((device, settings)) = profile.devices.into_iter().find(|(_, d)| is_root_disk(d))
        {
            root = Some((device, settings));
        }
    }
    if let Some((device, mut settings)) = root {
        settings.insert("size".to_owned(), size);
        create = create.device(device, settings);
    }
    Ok(create)
}
