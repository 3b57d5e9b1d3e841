//! `IncusGuestRole`: Pika's Incus guest roles, generated at build time from the workspace
//! `roles.toml` by `pika-roles-codegen` (see `build.rs`). Edit roles.toml, not this crate.
//!
//! ```
//! use pika_incus_guest_role::IncusGuestRole;
//!
//! let role: IncusGuestRole = " managed-openclaw ".parse().unwrap();
//! assert_eq!(role, IncusGuestRole::ManagedOpenclaw);
//! assert!(role.uses_default_image_alias(role.default_image_alias()));
//! assert!("no-such-role".parse::<IncusGuestRole>().is_err());
//! ```

mod contract;

mod generated {
    use crate::contract::{Readiness, RoleMount, RoleUser, RuntimeMode};
    include!(concat!(env!("OUT_DIR"), "/incus_guest_role.rs"));
}

pub use contract::{Devices, MountSourceError, Readiness, RoleMount, RoleUser, RuntimeMode};
pub use generated::{IncusGuestRole, ParseIncusGuestRoleError};

/// The Incus instance config key that labels an instance with its guest role. It is set only when
/// the instance runs the role's default image (see `IncusGuestRole::uses_default_image_alias`), and
/// both the agent server and the CI executor write it, so it lives here, next to the role.
pub const GUEST_ROLE_CONFIG_KEY: &str = "user.pika.guest_role";
