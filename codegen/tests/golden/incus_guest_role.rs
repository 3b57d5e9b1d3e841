// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: cargo run -p pika-roles-codegen -- generate

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
    /// Alpha "quoted" ${notInterpolated} it's a \ backslash, ünïcödé ☃
    #[serde(rename = "alpha")]
    Alpha,
    /// Beta role
    #[serde(rename = "beta")]
    Beta,
    /// Delta service role
    #[serde(rename = "delta")]
    Delta,
}

impl IncusGuestRole {
    /// Every role, sorted by ID.
    pub const ALL: &'static [IncusGuestRole] = &[
        IncusGuestRole::Alpha,
        IncusGuestRole::Beta,
        IncusGuestRole::Delta,
    ];

    /// The valid role IDs, comma separated, for error messages.
    pub const VALID_IDS: &'static str = "alpha, beta, delta";

    /// The role ID, as in roles.toml.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha",
            IncusGuestRole::Beta => "beta",
            IncusGuestRole::Delta => "delta",
        }
    }

    /// The Incus image alias the role's image is published under.
    pub const fn default_image_alias(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha/dev",
            IncusGuestRole::Beta => "beta/dev",
            IncusGuestRole::Delta => "delta/dev",
        }
    }

    /// The flake package attribute that builds the role's image.
    pub const fn flake_package_attr(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-image",
            IncusGuestRole::Beta => "beta-image",
            IncusGuestRole::Delta => "delta-image",
        }
    }

    /// Older package attributes kept as aliases of the canonical one.
    pub const fn legacy_package_attrs(self) -> &'static [&'static str] {
        match self {
            IncusGuestRole::Alpha => &["alpha-legacy"],
            IncusGuestRole::Beta => &[],
            IncusGuestRole::Delta => &[],
        }
    }

    /// The Nix image name.
    pub const fn image_name(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-img",
            IncusGuestRole::Beta => "beta-img",
            IncusGuestRole::Delta => "delta-img",
        }
    }

    /// The image variant recorded in the Incus image properties.
    pub const fn variant(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-variant",
            IncusGuestRole::Beta => "beta-variant",
            IncusGuestRole::Delta => "delta-variant",
        }
    }

    /// The Nix system the image is built for.
    pub const fn system(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "x86_64-linux",
            IncusGuestRole::Beta => "aarch64-linux",
            IncusGuestRole::Delta => "x86_64-linux",
        }
    }

    /// The Incus instance type: "virtual-machine" or "container".
    pub const fn instance_type(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "container",
            IncusGuestRole::Beta => "virtual-machine",
            IncusGuestRole::Delta => "virtual-machine",
        }
    }

    /// The image's disk size in MiB.
    pub const fn disk_size_mib(self) -> u32 {
        match self {
            IncusGuestRole::Alpha => 1024,
            IncusGuestRole::Beta => 2048,
            IncusGuestRole::Delta => 4096,
        }
    }

    /// The human description of the role's image.
    pub const fn description(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "Alpha \"quoted\" ${notInterpolated} it's a \\ backslash, ünïcödé ☃",
            IncusGuestRole::Beta => "Beta role",
            IncusGuestRole::Delta => "Delta service role",
        }
    }

    /// How the role's guests run.
    pub const fn runtime_mode(self) -> RuntimeMode {
        match self {
            IncusGuestRole::Alpha => RuntimeMode::OperatorSandbox,
            IncusGuestRole::Beta => RuntimeMode::OneShot,
            IncusGuestRole::Delta => RuntimeMode::ManagedService,
        }
    }

    /// When a launched guest counts as ready.
    pub const fn readiness(self) -> Readiness {
        match self {
            IncusGuestRole::Alpha => Readiness::Ssh,
            IncusGuestRole::Beta => Readiness::LifecycleFile("/run/beta/ready"),
            IncusGuestRole::Delta => Readiness::Http { port: 18789, path: "/healthz" },
        }
    }

    /// The instance's `limits.cpu`.
    pub const fn cpu(self) -> u32 {
        match self {
            IncusGuestRole::Alpha => 1,
            IncusGuestRole::Beta => 4,
            IncusGuestRole::Delta => 2,
        }
    }

    /// The instance's `limits.memory`, in MiB.
    pub const fn memory_mib(self) -> u32 {
        match self {
            IncusGuestRole::Alpha => 512,
            IncusGuestRole::Beta => 8192,
            IncusGuestRole::Delta => 2048,
        }
    }

    /// Whether the role's image is signed for Secure Boot (false: VMs need `security.secureboot=false`).
    pub const fn secure_boot(self) -> bool {
        match self {
            IncusGuestRole::Alpha => false,
            IncusGuestRole::Beta => true,
            IncusGuestRole::Delta => false,
        }
    }

    /// The Incus cluster group the role's instances are placed in, if any.
    pub const fn cluster_group(self) -> Option<&'static str> {
        match self {
            IncusGuestRole::Alpha => None,
            IncusGuestRole::Beta => Some("ci-hosts"),
            IncusGuestRole::Delta => None,
        }
    }

    /// The guest TCP port of the role's service, which launchers expose with an Incus proxy device.
    pub const fn service_port(self) -> Option<u16> {
        match self {
            IncusGuestRole::Alpha => None,
            IncusGuestRole::Beta => None,
            IncusGuestRole::Delta => Some(18789),
        }
    }

    /// The unprivileged user the role's workload runs as, if the role names one.
    pub const fn user(self) -> Option<&'static RoleUser> {
        match self {
            IncusGuestRole::Alpha => None,
            IncusGuestRole::Beta => None,
            IncusGuestRole::Delta => Some(&RoleUser { name: "delta", uid: 1001, group: "users", gid: 100 }),
        }
    }

    /// Host directories the launcher attaches, by Incus device name (see `mount_devices`).
    pub const fn mounts(self) -> &'static [RoleMount] {
        match self {
            IncusGuestRole::Alpha => &[],
            IncusGuestRole::Beta => &[RoleMount { name: "snapshot", path: "/workspace/snapshot", read_only: true, optional: false }, RoleMount { name: "cache", path: "/var/cache/beta", read_only: false, optional: false }],
            IncusGuestRole::Delta => &[RoleMount { name: "state", path: "/var/lib/delta", read_only: false, optional: false }, RoleMount { name: "cargo-home", path: "/var/cache/cargo", read_only: false, optional: true }],
        }
    }

    /// Extra Incus instance config, sorted by key (see `launch_config` for the whole config).
    pub const fn instance_config(self) -> &'static [(&'static str, &'static str)] {
        match self {
            IncusGuestRole::Alpha => &[],
            IncusGuestRole::Beta => &[("boot.autostart", "false"), ("security.nesting", "true")],
            IncusGuestRole::Delta => &[],
        }
    }

    /// sha256 of Nix's `builtins.toJSON` of the role's roles.toml table: changes when (only) this role's table changes.
    pub const fn roles_digest(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "81140d759864c48366abf909d920531ae99f2476f679729566923ec2121fef0b",
            IncusGuestRole::Beta => "bf79e55d8dd5071a008049e49691afd8fca3abf275293a6d100d731032bd20c4",
            IncusGuestRole::Delta => "3bfdf9b5471491ea4eac5bf9d65454f8f823d8d0b1cfe620928df31932915745",
        }
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
        match s.trim() {
            "alpha" => Ok(IncusGuestRole::Alpha),
            "beta" => Ok(IncusGuestRole::Beta),
            "delta" => Ok(IncusGuestRole::Delta),
            _ => Err(ParseIncusGuestRoleError { input: s.to_owned() }),
        }
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
        if self.input.trim().is_empty() {
            write!(f, "empty Incus guest role; valid roles: {}", IncusGuestRole::VALID_IDS)
        } else {
            write!(
                f,
                "unknown Incus guest role `{}`; valid roles: {}",
                self.input.trim(),
                IncusGuestRole::VALID_IDS
            )
        }
    }
}

impl std::error::Error for ParseIncusGuestRoleError {}
