//! The generated enum against the registry it was generated from: table-driven over every role in
//! roles.toml, plus pin tests for the deployed contracts.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use pika_incus_guest_role::IncusGuestRole;
use pika_roles_codegen::Registry;

fn registry() -> Registry {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../roles.toml");
    Registry::load(&manifest).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_registry_role_has_a_variant_with_the_same_facts() {
    let registry = registry();
    assert_eq!(IncusGuestRole::ALL.len(), registry.roles.len());
    for spec in &registry.roles {
        let role = IncusGuestRole::from_str(&spec.id).expect("role parses");
        assert_eq!(role.as_str(), spec.id);
        assert_eq!(role.default_image_alias(), spec.default_alias);
        assert_eq!(role.flake_package_attr(), spec.package);
        assert_eq!(role.legacy_package_attrs(), spec.legacy_packages.as_slice());
        assert_eq!(role.image_name(), spec.image_name);
        assert_eq!(role.variant(), spec.variant);
        assert_eq!(role.system(), spec.system);
        assert_eq!(role.instance_type(), spec.instance_type);
        assert_eq!(role.disk_size_mib(), spec.disk_size_mib);
        assert_eq!(role.description(), spec.description);
        assert_eq!(format!("{role:?}"), spec.variant_name);
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
}

#[test]
fn pin_deployed_pikaci_runner_contract() {
    let role: IncusGuestRole = "pikaci-runner".parse().unwrap();
    assert_eq!(role, IncusGuestRole::PikaciRunner);
    assert_eq!(role.default_image_alias(), "pikaci/dev");
    assert_eq!(role.flake_package_attr(), "pikaci-runner-incus-image");
    assert_eq!(role.legacy_package_attrs(), &["pikaci-incus-dev-image"]);
}
