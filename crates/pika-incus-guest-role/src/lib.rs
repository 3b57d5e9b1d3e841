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

mod generated {
    include!(concat!(env!("OUT_DIR"), "/incus_guest_role.rs"));
}

pub use generated::{IncusGuestRole, ParseIncusGuestRoleError};
