//! The codegen's golden Rust output (codegen/tests/golden, rendered from the codegen's fixture
//! roles, which use every optional key the real roles.toml may not use yet: http readiness,
//! service-port, user, optional mounts) compiled against this crate's real contract types, so a
//! generated accessor that does not compile is caught before a real role needs it.

mod golden {
    #![allow(dead_code)]
    use pika_incus_guest_role::{Readiness, RoleMount, RoleUser, RuntimeMode};
    include!("../../../codegen/tests/golden/incus_guest_role.rs");
}

use golden::IncusGuestRole;
use pika_incus_guest_role::{Readiness, RoleMount, RoleUser};

#[test]
fn the_fixture_role_with_every_optional_key_compiles_and_reads_back() {
    let delta: IncusGuestRole = "delta".parse().unwrap();
    assert_eq!(
        delta.readiness(),
        Readiness::Http {
            port: 18789,
            path: "/healthz"
        }
    );
    assert_eq!(
        delta.readiness().to_string(),
        "http://127.0.0.1:18789/healthz"
    );
    assert_eq!(delta.service_port(), Some(18789));
    assert_eq!(
        delta.user(),
        Some(&RoleUser {
            name: "delta",
            uid: 1001,
            group: "users",
            gid: 100
        })
    );
    assert_eq!(
        delta.mounts()[1],
        RoleMount {
            name: "cargo-home",
            path: "/var/cache/cargo",
            read_only: false,
            optional: true
        }
    );
    assert!(!delta.mounts()[0].optional);
    let alpha: IncusGuestRole = "alpha".parse().unwrap();
    assert_eq!((alpha.service_port(), alpha.user()), (None, None));
    // The accessors are const fns, usable in const context.
    const PORT: Option<u16> = IncusGuestRole::Delta.service_port();
    const USER: Option<&RoleUser> = IncusGuestRole::Delta.user();
    assert_eq!(PORT, Some(18789));
    assert_eq!(USER.map(|u| u.uid), Some(1001));
}
