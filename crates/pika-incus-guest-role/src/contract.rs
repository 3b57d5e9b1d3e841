//! The one place launchers take a role's Incus instance config and devices from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{IncusGuestRole, RoleMount};

/// A mount source the launcher got wrong; nothing was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSourceError {
    /// The role declares this mount and no host directory was given for it.
    Missing {
        role: IncusGuestRole,
        mount: &'static str,
    },
    /// A host directory was given for a name the role does not declare.
    Unknown {
        role: IncusGuestRole,
        name: String,
        /// The role's mount names, comma separated (may be empty).
        valid: String,
    },
    /// Incus needs an absolute host path.
    Relative {
        mount: &'static str,
        source: PathBuf,
    },
}

impl fmt::Display for MountSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountSourceError::Missing { role, mount } => write!(
                f,
                "role `{role}` mounts `{mount}` but no host directory was given for it"
            ),
            MountSourceError::Unknown { role, name, valid } if valid.is_empty() => write!(
                f,
                "role `{role}` has no mount `{name}`; it declares no mounts"
            ),
            MountSourceError::Unknown { role, name, valid } => write!(
                f,
                "role `{role}` has no mount `{name}`; its mounts: {valid}"
            ),
            MountSourceError::Relative { mount, source } => write!(
                f,
                "the host directory for mount `{mount}` must be an absolute path, got `{}`",
                source.display()
            ),
        }
    }
}

impl std::error::Error for MountSourceError {}

/// Incus devices by name, each a map of its settings (the shape of the Incus API's `devices`).
pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

impl IncusGuestRole {
    /// The Incus instance config for a new instance of this role, sorted by key: `limits.cpu`,
    /// `limits.memory` (`<n>MiB`), `security.secureboot=false` for a virtual machine whose image is
    /// not signed for Secure Boot, then the role's `instance_config()`. Validation keeps the
    /// role's instance-config from naming the keys set here.
    pub fn launch_config(self) -> Vec<(String, String)> {
        launch_config_of(&LaunchFacts {
            cpu: self.cpu(),
            memory_mib: self.memory_mib(),
            instance_type: self.instance_type(),
            secure_boot: self.secure_boot(),
            instance_config: self.instance_config(),
        })
    }

    /// The role's mounts as Incus disk devices, given the host directory for each mount name:
    /// `type=disk`, `source`, `path`, and `readonly=true` for read-only mounts. Every declared mount
    /// needs a source and every source a declared mount, so a typo is an error, not a silent skip.
    pub fn mount_devices(
        self,
        sources: &BTreeMap<String, PathBuf>,
    ) -> Result<Devices, MountSourceError> {
        mount_devices_of(self, self.mounts(), sources)
    }
}

/// The role facts `launch_config` reads (separate so every combination can be tested).
struct LaunchFacts<'a> {
    cpu: u32,
    memory_mib: u32,
    instance_type: &'a str,
    secure_boot: bool,
    instance_config: &'a [(&'a str, &'a str)],
}

fn launch_config_of(facts: &LaunchFacts<'_>) -> Vec<(String, String)> {
    let mut config = BTreeMap::new();
    config.insert("limits.cpu".to_owned(), facts.cpu.to_string());
    config.insert(
        "limits.memory".to_owned(),
        format!("{}MiB", facts.memory_mib),
    );
    if facts.instance_type == "virtual-machine" && !facts.secure_boot {
        config.insert("security.secureboot".to_owned(), "false".to_owned());
    }
    for (key, value) in facts.instance_config {
        config.insert((*key).to_owned(), (*value).to_owned());
    }
    config.into_iter().collect()
}

fn mount_devices_of(
    role: IncusGuestRole,
    mounts: &[RoleMount],
    sources: &BTreeMap<String, PathBuf>,
) -> Result<Devices, MountSourceError> {
    if let Some(name) = sources
        .keys()
        .find(|name| !mounts.iter().any(|m| m.name == name.as_str()))
    {
        return Err(MountSourceError::Unknown {
            role,
            name: name.clone(),
            valid: mounts.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        });
    }
    let mut devices = Devices::new();
    for mount in mounts {
        let Some(source) = sources.get(mount.name) else {
            if mount.optional {
                continue;
            }
            return Err(MountSourceError::Missing {
                role,
                mount: mount.name,
            });
        };
        devices.insert(mount.name.to_owned(), disk_device(mount, source)?);
    }
    Ok(devices)
}

fn disk_device(
    mount: &RoleMount,
    source: &Path,
) -> Result<BTreeMap<String, String>, MountSourceError> {
    if !source.is_absolute() {
        return Err(MountSourceError::Relative {
            mount: mount.name,
            source: source.to_path_buf(),
        });
    }
    let mut device = BTreeMap::from([
        ("type".to_owned(), "disk".to_owned()),
        ("source".to_owned(), source.display().to_string()),
        ("path".to_owned(), mount.path.to_owned()),
    ]);
    if mount.read_only {
        device.insert("readonly".to_owned(), "true".to_owned());
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(instance_type: &'a str, secure_boot: bool) -> LaunchFacts<'a> {
        LaunchFacts {
            cpu: 3,
            memory_mib: 1536,
            instance_type,
            secure_boot,
            instance_config: &[("boot.autostart", "false"), ("a.first", "1")],
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_vm_without_secure_boot_turns_it_off_sorted_with_limits() {
        assert_eq!(
            launch_config_of(&facts("virtual-machine", false)),
            pairs(&[
                ("a.first", "1"),
                ("boot.autostart", "false"),
                ("limits.cpu", "3"),
                ("limits.memory", "1536MiB"),
                ("security.secureboot", "false"),
            ])
        );
    }

    #[test]
    fn a_signed_vm_and_any_container_leave_secure_boot_alone() {
        for (instance_type, secure_boot) in [
            ("virtual-machine", true),
            ("container", false),
            ("container", true),
        ] {
            let config = launch_config_of(&facts(instance_type, secure_boot));
            assert!(
                config.iter().all(|(k, _)| k != "security.secureboot"),
                "{instance_type} secure_boot={secure_boot}: {config:?}"
            );
            assert!(config.contains(&("limits.memory".into(), "1536MiB".into())));
        }
    }

    const MOUNTS: &[RoleMount] = &[
        RoleMount {
            name: "snapshot",
            path: "/workspace/snapshot",
            read_only: true,
            optional: false,
        },
        RoleMount {
            name: "cache",
            path: "/var/cache/x",
            read_only: false,
            optional: false,
        },
    ];

    fn sources(list: &[(&str, &str)]) -> BTreeMap<String, PathBuf> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), PathBuf::from(v)))
            .collect()
    }

    #[test]
    fn mounts_become_disk_devices_readonly_only_when_read_only() {
        let role = IncusGuestRole::ALL[0];
        let devices = mount_devices_of(
            role,
            MOUNTS,
            &sources(&[("snapshot", "/srv/snap"), ("cache", "/srv/cache")]),
        )
        .unwrap();
        let device = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            devices,
            Devices::from([
                (
                    "snapshot".to_owned(),
                    device(&[
                        ("type", "disk"),
                        ("source", "/srv/snap"),
                        ("path", "/workspace/snapshot"),
                        ("readonly", "true"),
                    ])
                ),
                (
                    "cache".to_owned(),
                    device(&[
                        ("type", "disk"),
                        ("source", "/srv/cache"),
                        ("path", "/var/cache/x"),
                    ])
                ),
            ])
        );
    }

    #[test]
    fn missing_unknown_and_relative_sources_are_errors_naming_the_mount() {
        let role = IncusGuestRole::ALL[0];
        let err =
            mount_devices_of(role, MOUNTS, &sources(&[("snapshot", "/srv/snap")])).unwrap_err();
        assert_eq!(
            err,
            MountSourceError::Missing {
                role,
                mount: "cache"
            }
        );
        assert!(err.to_string().contains("mounts `cache`"), "{err}");

        let err = mount_devices_of(
            role,
            MOUNTS,
            &sources(&[("snapshot", "/a"), ("cache", "/b"), ("snapshoot", "/c")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("role `{role}` has no mount `snapshoot`; its mounts: snapshot, cache")
        );
        let err = mount_devices_of(role, &[], &sources(&[("x", "/a")])).unwrap_err();
        assert!(err.to_string().ends_with("it declares no mounts"), "{err}");

        let err = mount_devices_of(
            role,
            MOUNTS,
            &sources(&[("snapshot", "rel/dir"), ("cache", "/b")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("absolute path, got `rel/dir`"),
            "{err}"
        );
    }
}
