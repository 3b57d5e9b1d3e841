//! `IncusGuestRole`: Pika's Incus guest roles, generated from the workspace `roles.toml` by
//! `pika-roles generate` into `src/generated.rs` (the enum and one static table of
//! [`RoleSpec`]s). Edit roles.toml, not this crate; the build fails while the table is stale.
//!
//! ```
//! use pika_incus_guest_role::IncusGuestRole;
//!
//! let role: IncusGuestRole = " managed-openclaw ".parse().unwrap();
//! assert_eq!(role, IncusGuestRole::ManagedOpenclaw);
//! assert!(role.uses_default_image_alias(role.default_image_alias()));
//! assert_eq!(role.spec().default_alias, role.default_image_alias());
//! assert!("no-such-role".parse::<IncusGuestRole>().is_err());
//! ```

mod contract;
#[rustfmt::skip]
mod generated;

pub use contract::{Devices, MountSourceError};
pub use generated::IncusGuestRole;
pub use pika_role_spec::{
    InstanceConfig, InstanceType, Readiness, RoleMount, RoleSpec, RoleUser, RuntimeMode, System,
};

/// The Incus instance config key that labels an instance with its guest role. It is set only when
/// the instance runs the role's default image (see `IncusGuestRole::uses_default_image_alias`), and
/// both the agent server and the CI executor write it, so it lives here, next to the role.
pub const GUEST_ROLE_CONFIG_KEY: &str = "user.pika.guest_role";

/// Every accessor reads the role's one [`RoleSpec`]; the field docs say what each key means.
impl IncusGuestRole {
    /// The role's spec: every key of its roles.toml table.
    pub const fn spec(self) -> &'static RoleSpec {
        &generated::SPECS[self as usize]
    }

    /// The role ID, as in roles.toml.
    pub const fn as_str(self) -> &'static str {
        self.spec().id
    }

    /// The Incus image alias the role's image is published under.
    pub const fn default_image_alias(self) -> &'static str {
        self.spec().default_alias
    }

    /// The flake package attribute that builds the role's image.
    pub const fn flake_package_attr(self) -> &'static str {
        self.spec().package
    }

    /// Older package attributes kept as aliases of the canonical one.
    pub const fn legacy_package_attrs(self) -> &'static [&'static str] {
        self.spec().legacy_packages
    }

    pub const fn image_name(self) -> &'static str {
        self.spec().image_name
    }

    pub const fn variant(self) -> &'static str {
        self.spec().variant
    }

    /// The Nix system the image is built for.
    pub const fn system(self) -> &'static str {
        self.spec().system.as_str()
    }

    /// The Incus instance type: "virtual-machine" or "container".
    pub const fn instance_type(self) -> &'static str {
        self.spec().instance_type.as_str()
    }

    pub const fn disk_size_mib(self) -> u32 {
        self.spec().disk_size_mib
    }

    pub const fn description(self) -> &'static str {
        self.spec().description
    }

    pub const fn runtime_mode(self) -> RuntimeMode {
        self.spec().runtime_mode
    }

    pub const fn readiness(self) -> Readiness {
        self.spec().readiness
    }

    pub const fn cpu(self) -> u32 {
        self.spec().cpu
    }

    pub const fn memory_mib(self) -> u32 {
        self.spec().memory_mib
    }

    pub const fn secure_boot(self) -> bool {
        self.spec().secure_boot
    }

    pub const fn cluster_group(self) -> Option<&'static str> {
        self.spec().cluster_group
    }

    pub const fn service_port(self) -> Option<u16> {
        self.spec().service_port
    }

    pub const fn user(self) -> Option<&'static RoleUser> {
        self.spec().user.as_ref()
    }

    /// Host directories the launcher attaches, by Incus device name (see `mount_devices`).
    pub const fn mounts(self) -> &'static [RoleMount] {
        self.spec().mounts
    }

    /// Extra Incus instance config, sorted by key (see `launch_config` for the whole config).
    pub const fn instance_config(self) -> &'static [(&'static str, &'static str)] {
        self.spec().instance_config.values
    }

    pub const fn roles_digest(self) -> &'static str {
        self.spec().roles_digest
    }

    /// The valid role IDs, comma separated, for error messages.
    pub fn valid_ids() -> String {
        Self::VALID_IDS.to_owned()
    }

    /// True only when `alias`, trimmed, is this role's default image alias: a custom alias must
    /// not be attributed to the role.
    pub fn uses_default_image_alias(self, alias: &str) -> bool {
        alias.trim() == self.default_image_alias()
    }
}

impl std::fmt::Display for IncusGuestRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IncusGuestRole {
    type Err = ParseIncusGuestRoleError;

    /// Strict: surrounding whitespace is trimmed; anything but an exact role ID is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == id)
            .ok_or_else(|| ParseIncusGuestRoleError {
                input: s.to_owned(),
            })
    }
}

/// An input that is not a role ID; its message lists every valid ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIncusGuestRoleError {
    input: String,
}

impl ParseIncusGuestRoleError {
    /// The rejected input, as given.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl std::fmt::Display for ParseIncusGuestRoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = self.input.trim();
        if input.is_empty() {
            write!(
                f,
                "empty Incus guest role; valid roles: {}",
                IncusGuestRole::VALID_IDS
            )
        } else {
            write!(
                f,
                "unknown Incus guest role `{input}`; valid roles: {}",
                IncusGuestRole::VALID_IDS
            )
        }
    }
}

impl std::error::Error for ParseIncusGuestRoleError {}
