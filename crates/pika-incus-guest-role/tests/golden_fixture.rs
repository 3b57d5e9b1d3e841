//! The codegen's golden Rust output (codegen/tests/golden, rendered from the codegen's fixture
//! roles, which use every optional key the real roles.toml may not use yet: http readiness,
//! service-port, user, optional mounts) compiled against this crate's real spec types, so a
//! generated table that does not compile is caught before a real role needs it.

mod golden {
    #![allow(dead_code)]
    include!("../../../codegen/tests/golden/incus_guest_role.rs");
}

use golden::{IncusGuestRole, SPECS};
use pika_incus_guest_role::{Readiness, RoleMount, RoleSpec, RoleUser};

/// What `IncusGuestRole::spec` does for the real enum.
const fn spec(role: IncusGuestRole) -> &'static RoleSpec {
    &SPECS[role as usize]
}

#[test]
fn the_fixture_role_with_every_optional_key_compiles_and_reads_back() {
    let delta = spec(IncusGuestRole::Delta);
    assert_eq!(delta.id, "delta");
    assert_eq!(
        delta.readiness,
        Readiness::Http {
            port: 18789,
            path: "/healthz"
        }
    );
    assert_eq!(
        delta.readiness.to_string(),
        "http://127.0.0.1:18789/healthz"
    );
    assert_eq!(delta.service_port, Some(18789));
    assert_eq!(
        delta.user,
        Some(RoleUser {
            name: "delta",
            uid: 1001,
            group: "users",
            gid: 100
        })
    );
    assert_eq!(
        delta.mounts[1],
        RoleMount {
            name: "cargo-home",
            path: "/var/cache/cargo",
            read_only: false,
            optional: true
        }
    );
    assert!(!delta.mounts[0].optional);
    let alpha = spec(IncusGuestRole::Alpha);
    assert_eq!((alpha.service_port, alpha.user), (None, None));
    // The table is a plain static: usable in const context.
    const PORT: Option<u16> = spec(IncusGuestRole::Delta).service_port;
    assert_eq!(PORT, Some(18789));
}
