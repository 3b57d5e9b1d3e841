// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: cargo run -p pika-roles-codegen -- generate

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
    /// Alpha "quoted" ${notInterpolated} it's a \ backslash
    #[serde(rename = "alpha")]
    Alpha,
    /// Beta role
    #[serde(rename = "beta")]
    Beta,
}

impl IncusGuestRole {
    /// Every role, sorted by ID.
    pub const ALL: &'static [IncusGuestRole] = &[
        IncusGuestRole::Alpha,
        IncusGuestRole::Beta,
    ];

    /// The valid role IDs, comma separated, for error messages.
    pub const VALID_IDS: &'static str = "alpha, beta";

    /// The role ID, as in roles.toml.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha",
            IncusGuestRole::Beta => "beta",
        }
    }

    /// The Incus image alias the role's image is published under.
    pub const fn default_image_alias(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha/dev",
            IncusGuestRole::Beta => "beta/dev",
        }
    }

    /// The flake package attribute that builds the role's image.
    pub const fn flake_package_attr(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-image",
            IncusGuestRole::Beta => "beta-image",
        }
    }

    /// Older package attributes kept as aliases of the canonical one.
    pub const fn legacy_package_attrs(self) -> &'static [&'static str] {
        match self {
            IncusGuestRole::Alpha => &["alpha-legacy"],
            IncusGuestRole::Beta => &[],
        }
    }

    /// The Nix image name.
    pub const fn image_name(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-img",
            IncusGuestRole::Beta => "beta-img",
        }
    }

    /// The image variant recorded in the Incus image properties.
    pub const fn variant(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "alpha-variant",
            IncusGuestRole::Beta => "beta-variant",
        }
    }

    /// The Nix system the image is built for.
    pub const fn system(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "x86_64-linux",
            IncusGuestRole::Beta => "aarch64-linux",
        }
    }

    /// The Incus instance type: "virtual-machine" or "container".
    pub const fn instance_type(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "container",
            IncusGuestRole::Beta => "virtual-machine",
        }
    }

    /// The image's disk size in MiB.
    pub const fn disk_size_mib(self) -> u32 {
        match self {
            IncusGuestRole::Alpha => 1024,
            IncusGuestRole::Beta => 2048,
        }
    }

    /// The human description of the role's image.
    pub const fn description(self) -> &'static str {
        match self {
            IncusGuestRole::Alpha => "Alpha \"quoted\" ${notInterpolated} it's a \\ backslash",
            IncusGuestRole::Beta => "Beta role",
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
