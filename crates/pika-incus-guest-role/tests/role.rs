//! The generated enum against the registry it was generated from: table-driven over every role in
//! roles.toml, plus pin tests for the deployed contracts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pika_incus_guest_role::{IncusGuestRole, Readiness, RoleMount, RoleUser, RuntimeMode};
use pika_role_spec::Registry;

fn registry() -> Registry {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../roles.toml");
    Registry::load(&manifest).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_registry_role_has_a_variant_with_the_same_facts() {
    let registry = registry();
    assert_eq!(IncusGuestRole::ALL.len(), registry.roles.len());
    for spec in &registry.roles {
        let role = IncusGuestRole::from_str(spec.id).expect("role parses");
        // Every accessor reads the one table: the spec is the registry's, field for field.
        assert_eq!(role.spec(), spec);
        assert_eq!(role.as_str(), spec.id);
        assert_eq!(role.default_image_alias(), spec.default_alias);
        assert_eq!(role.flake_package_attr(), spec.package);
        assert_eq!(role.legacy_package_attrs(), spec.legacy_packages);
        assert_eq!(role.image_name(), spec.image_name);
        assert_eq!(role.variant(), spec.variant);
        assert_eq!(role.system(), spec.system.as_str());
        assert_eq!(role.instance_type(), spec.instance_type.as_str());
        assert_eq!(role.disk_size_mib(), spec.disk_size_mib);
        assert_eq!(role.description(), spec.description);
        assert_eq!(format!("{role:?}"), pika_role_spec::upper_camel(spec.id));
        assert_eq!(role.runtime_mode(), spec.runtime_mode);
        assert_eq!(role.readiness(), spec.readiness);
        assert_eq!(role.cpu(), spec.cpu);
        assert_eq!(role.memory_mib(), spec.memory_mib);
        assert_eq!(role.secure_boot(), spec.secure_boot);
        assert_eq!(role.cluster_group(), spec.cluster_group);
        assert_eq!(role.service_port(), spec.service_port);
        assert_eq!(role.user(), spec.user.as_ref());
        assert_eq!(role.mounts(), spec.mounts);
        assert_eq!(role.instance_config(), spec.instance_config.values);
        assert_eq!(role.roles_digest(), spec.roles_digest);
    }
}

/// The readiness variant matches the roles.toml spelling: a path is a lifecycle file, a URL is
/// `Http`, every other value its named kind.
#[test]
fn readiness_kind_follows_the_spelling() {
    for &role in IncusGuestRole::ALL {
        let readiness = role.readiness();
        assert_eq!(
            matches!(readiness, Readiness::LifecycleFile(_)),
            readiness.as_str().starts_with('/'),
            "{role}: {readiness:?}"
        );
        assert_eq!(
            matches!(readiness, Readiness::Http { .. }),
            readiness.as_str().starts_with("http://"),
            "{role}: {readiness:?}"
        );
    }
}

/// launch_config for every role: limits from the role, Secure Boot off exactly for unsigned VMs,
/// the role's own instance config, sorted.
#[test]
fn launch_config_applies_every_role_contract() {
    for &role in IncusGuestRole::ALL {
        let config = role.launch_config();
        let get = |key: &str| {
            config
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let cpu = role.cpu().to_string();
        let memory = format!("{}MiB", role.memory_mib());
        assert_eq!(get("limits.cpu"), Some(cpu.as_str()), "{role}");
        assert_eq!(get("limits.memory"), Some(memory.as_str()), "{role}");
        let unsigned_vm = role.instance_type() == "virtual-machine" && !role.secure_boot();
        assert_eq!(
            get("security.secureboot"),
            unsigned_vm.then_some("false"),
            "{role}"
        );
        for (key, value) in role.instance_config() {
            assert_eq!(get(key), Some(*value), "{role}: {key}");
        }
        let keys: Vec<&String> = config.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted, "{role}: sorted and unique");
    }
}

#[test]
fn mount_devices_cover_every_declared_mount() {
    for &role in IncusGuestRole::ALL {
        let sources: BTreeMap<String, PathBuf> = role
            .mounts()
            .iter()
            .map(|m| (m.name.to_owned(), PathBuf::from("/srv").join(m.name)))
            .collect();
        let devices = role
            .mount_devices(&sources)
            .expect("every mount has a source");
        assert_eq!(devices.len(), role.mounts().len(), "{role}");
        for mount in role.mounts() {
            let device = &devices[mount.name];
            assert_eq!(device["type"], "disk");
            assert_eq!(device["path"], mount.path);
            assert_eq!(
                device.get("readonly").map(String::as_str),
                mount.read_only.then_some("true")
            );
        }
    }
}

#[test]
fn all_is_sorted_and_unique() {
    let ids: Vec<&str> = IncusGuestRole::ALL.iter().map(|r| r.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
}

#[test]
fn serde_round_trips_every_role_as_its_id() {
    for &role in IncusGuestRole::ALL {
        let json = serde_json::to_string(&role).unwrap();
        assert_eq!(json, format!("\"{}\"", role.as_str()));
        let back: IncusGuestRole = serde_json::from_str(&json).unwrap();
        assert_eq!(back, role);
    }
    assert!(serde_json::from_str::<IncusGuestRole>("\"no-such-role\"").is_err());
}

#[test]
fn display_and_from_str_agree() {
    for &role in IncusGuestRole::ALL {
        assert_eq!(role.to_string(), role.as_str());
        assert_eq!(role.to_string().parse::<IncusGuestRole>(), Ok(role));
    }
}

#[test]
fn from_str_trims_surrounding_whitespace() {
    for &role in IncusGuestRole::ALL {
        for input in [
            format!(" {role}"),
            format!("{role} "),
            format!("\t{role}\n"),
        ] {
            assert_eq!(input.parse::<IncusGuestRole>(), Ok(role), "{input:?}");
        }
    }
}

#[test]
fn from_str_rejects_unknown_empty_and_near_misses_listing_every_id() {
    let first = IncusGuestRole::ALL[0].as_str();
    let near_misses = [
        String::new(),
        "   ".into(),
        "nope".into(),
        first.to_uppercase(),
        format!("{first}x"),
        first.replace('-', "_"),
        format!("{first} {first}"),
    ];
    for input in near_misses {
        let err = input
            .parse::<IncusGuestRole>()
            .expect_err(&format!("{input:?} must be rejected"));
        assert_eq!(err.input(), input);
        let message = err.to_string();
        for role in IncusGuestRole::ALL {
            assert!(message.contains(role.as_str()), "{message} lacks {role}");
        }
        assert!(message.contains(&IncusGuestRole::valid_ids()));
    }
}

#[test]
fn uses_default_image_alias_only_for_the_trimmed_default() {
    for &role in IncusGuestRole::ALL {
        let alias = role.default_image_alias();
        assert!(role.uses_default_image_alias(alias));
        assert!(role.uses_default_image_alias(&format!("  {alias}\n")));
        assert!(!role.uses_default_image_alias(&format!("{alias}-custom")));
        assert!(!role.uses_default_image_alias(""));
        for &other in IncusGuestRole::ALL {
            if other != role {
                assert!(!role.uses_default_image_alias(other.default_image_alias()));
            }
        }
    }
}

#[test]
fn const_fns_work_in_const_context() {
    const ALIAS: &str = IncusGuestRole::ALL[0].default_image_alias();
    const DISK: u32 = IncusGuestRole::ALL[0].disk_size_mib();
    assert_eq!(ALIAS, IncusGuestRole::ALL[0].default_image_alias());
    assert_eq!(DISK, IncusGuestRole::ALL[0].disk_size_mib());
}

/// Deliberate pins: these aliases and package names are deployed on hosts and must not drift.
#[test]
fn pin_deployed_managed_openclaw_contract() {
    let role: IncusGuestRole = "managed-openclaw".parse().unwrap();
    assert_eq!(role, IncusGuestRole::ManagedOpenclaw);
    assert_eq!(role.default_image_alias(), "pika-agent/dev");
    assert_eq!(role.flake_package_attr(), "managed-openclaw-incus-image");
    assert_eq!(role.legacy_package_attrs(), &["pika-agent-incus-dev-image"]);
    // Schema 2 runtime contract, pinned on purpose (README, "The runtime contract (schema 2)").
    assert_eq!(role.runtime_mode(), RuntimeMode::ManagedService);
    // The gateway's own health, probed inside the guest (issue 19).
    assert_eq!(
        role.readiness(),
        Readiness::Http {
            port: 18789,
            path: "/health"
        }
    );
    assert_eq!(role.service_port(), Some(18789));
    assert_eq!(
        role.user(),
        Some(&RoleUser {
            name: "openclaw",
            uid: 2000,
            group: "openclaw",
            gid: 2000
        })
    );
    assert_eq!((role.cpu(), role.memory_mib()), (2, 4096));
    assert!(!role.secure_boot());
    assert_eq!(role.cluster_group(), None);
    assert_eq!(role.mounts(), &[]);
    assert_eq!(role.instance_config(), &[]);
}

#[test]
fn pin_deployed_pikaci_runner_contract() {
    let role: IncusGuestRole = "pikaci-runner".parse().unwrap();
    assert_eq!(role, IncusGuestRole::PikaciRunner);
    assert_eq!(role.default_image_alias(), "pikaci/dev");
    assert_eq!(role.flake_package_attr(), "pikaci-runner-incus-image");
    assert_eq!(role.legacy_package_attrs(), &["pikaci-incus-dev-image"]);
    assert_eq!(role.runtime_mode(), RuntimeMode::OneShot);
    assert_eq!(role.readiness(), Readiness::IncusAgent);
    assert_eq!((role.cpu(), role.memory_mib()), (2, 4096));
    assert!(!role.secure_boot());
    assert_eq!(role.cluster_group(), None);
    assert_eq!(
        role.mounts(),
        &[
            RoleMount {
                name: "snapshot",
                path: "/workspace/snapshot",
                read_only: true,
                optional: false
            },
            RoleMount {
                name: "cargo-home",
                path: "/cargo-home",
                read_only: false,
                optional: true
            },
            RoleMount {
                name: "cargo-target",
                path: "/cargo-target",
                read_only: false,
                optional: true
            }
        ]
    );
    assert_eq!(
        role.user(),
        Some(&RoleUser {
            name: "pikaci",
            uid: 1000,
            group: "users",
            gid: 100
        })
    );
    assert_eq!(role.instance_config(), &[]);
    assert_eq!(
        role.launch_config(),
        [
            ("limits.cpu", "2"),
            ("limits.memory", "4096MiB"),
            ("security.secureboot", "false")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

/// The Nix side of the launch config (nix/incus/launch-config.nix, used by the flake's boot tests)
/// gives every role the same keys and values as `launch_config`.
#[test]
#[ignore = "needs nix-instantiate: run scripts/test.sh"]
fn nix_launch_config_is_the_rust_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("repository root");
    for role in IncusGuestRole::ALL {
        let expr = format!(
            "import {root}/nix/incus/launch-config.nix (import {root}/nix/incus/registry.nix {{ repoRoot = {root}; }}).registry.\"{id}\"",
            root = root.display(),
            id = role.as_str(),
        );
        let out = std::process::Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "-E", &expr])
            .output()
            .expect("nix-instantiate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nix: BTreeMap<String, String> =
            serde_json::from_slice(&out.stdout).expect("an attribute set of strings");
        let rust: BTreeMap<String, String> = role.launch_config().into_iter().collect();
        assert_eq!(nix, rust, "role {role}");
    }
}
