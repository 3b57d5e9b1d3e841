//! A role's contract on an Incus create request: the role's launch config (limits, Secure Boot,
//! instance config) and its mounts as disk devices, for host directories the launcher supplies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pika_incus::{InstanceCreate, InstanceType, ProjectClient, api};
use pika_incus_guest_role::IncusGuestRole;

/// The disk device setting that idmaps a container's view of a host directory.
const SHIFT: &str = "shift";

/// What the launcher gives each of a role's mounts, by mount name: `Some(host directory)` to attach
/// (`snapshot` -> `/var/tmp/run-1/snapshot`), or `None` when it fills the guest path another way
/// (jerichoci's upload to a remote Incus): then no device is attached.
pub type MountSources = BTreeMap<String, Option<PathBuf>>;

/// A create request the role's contract cannot be applied to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContractError {
    #[error(
        "role {role} declares the mount `{mount}` ({path}) but no host directory was given for it"
    )]
    MissingMountSource {
        role: IncusGuestRole,
        mount: String,
        path: String,
    },
    #[error("role {role} has no mount `{mount}`; its mounts: {valid}")]
    UnknownMount {
        role: IncusGuestRole,
        mount: String,
        valid: String,
    },
    #[error("the host directory for mount `{mount}` must be an absolute path, not {path:?}")]
    RelativeMountSource { mount: String, path: PathBuf },
}

/// `create` with the role's launch config and mount devices added. Keys Incus knows only for VMs
/// (`security.secureboot`) are left out when `create` is a container: a container image standing
/// in for a VM role (as in the tests here) cannot carry them, and they mean nothing there.
/// Every mount of the role needs a source in `sources`, and every source a mount.
pub fn apply_contract(
    mut create: InstanceCreate,
    role: IncusGuestRole,
    sources: &MountSources,
) -> Result<InstanceCreate, ContractError> {
    for (key, value) in role.launch_config() {
        if create.instance_type == InstanceType::Container && api::is_vm_only_config_key(&key) {
            continue;
        }
        create = create.config(key, value);
    }
    if let Some(unknown) = sources
        .keys()
        .find(|name| !role.mounts().iter().any(|m| m.name == name.as_str()))
    {
        return Err(ContractError::UnknownMount {
            role,
            mount: unknown.clone(),
            valid: mount_names(role),
        });
    }
    for mount in role.mounts() {
        let source = sources
            .get(mount.name)
            .ok_or_else(|| ContractError::MissingMountSource {
                role,
                mount: mount.name.to_owned(),
                path: mount.path.to_owned(),
            })?;
        if let Some(source) = source
            && !source.is_absolute()
        {
            return Err(ContractError::RelativeMountSource {
                mount: mount.name.to_owned(),
                path: source.clone(),
            });
        }
    }
    let sources: BTreeMap<&str, String> = sources
        .iter()
        .filter_map(|(name, dir)| Some((name.as_str(), dir.as_ref()?.display().to_string())))
        .collect();
    for (name, mut settings) in role.mount_devices(&sources) {
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

/// The role's mount names for messages (`none` when it has none).
pub fn mount_names(role: IncusGuestRole) -> String {
    let names: Vec<&str> = role.mounts().iter().map(|m| m.name).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The instance type of the image behind `alias` (see [`pika_incus::ImageAlias::instance_type`]);
/// a missing alias fails here, before anything is created.
pub async fn image_type_of_alias(
    project: &ProjectClient,
    alias: &str,
) -> pika_incus::Result<InstanceType> {
    Ok(project.get_image_alias(alias).await?.instance_type())
}
