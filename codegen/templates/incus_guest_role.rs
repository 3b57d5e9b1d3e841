// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: {{ command }}

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
{%- for role in roles %}
    /// {{ role.doc }}
    #[serde(rename = {{ role.id }})]
    {{ role.variant }},
{%- endfor %}
}

impl IncusGuestRole {
    /// Every role, sorted by ID.
    pub const ALL: &'static [IncusGuestRole] = &[
{%- for role in roles %}
        IncusGuestRole::{{ role.variant }},
{%- endfor %}
    ];

    /// The valid role IDs, comma separated, for error messages.
    pub const VALID_IDS: &'static str = {{ valid_ids }};

    /// The role ID, as in roles.toml.
    pub const fn as_str(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.id }},
{%- endfor %}
        }
    }

    /// The Incus image alias the role's image is published under.
    pub const fn default_image_alias(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.default_alias }},
{%- endfor %}
        }
    }

    /// The flake package attribute that builds the role's image.
    pub const fn flake_package_attr(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.package }},
{%- endfor %}
        }
    }

    /// Older package attributes kept as aliases of the canonical one.
    pub const fn legacy_package_attrs(self) -> &'static [&'static str] {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.legacy_packages }},
{%- endfor %}
        }
    }

    /// The Nix image name.
    pub const fn image_name(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.image_name }},
{%- endfor %}
        }
    }

    /// The image variant recorded in the Incus image properties.
    pub const fn variant(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.variant_str }},
{%- endfor %}
        }
    }

    /// The Nix system the image is built for.
    pub const fn system(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.system }},
{%- endfor %}
        }
    }

    /// The Incus instance type: "virtual-machine" or "container".
    pub const fn instance_type(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.instance_type }},
{%- endfor %}
        }
    }

    /// The image's disk size in MiB.
    pub const fn disk_size_mib(self) -> u32 {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.disk_size_mib }},
{%- endfor %}
        }
    }

    /// The human description of the role's image.
    pub const fn description(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.description }},
{%- endfor %}
        }
    }

    /// How the role's guests run.
    pub const fn runtime_mode(self) -> RuntimeMode {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.runtime_mode }},
{%- endfor %}
        }
    }

    /// When a launched guest counts as ready.
    pub const fn readiness(self) -> Readiness {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.readiness }},
{%- endfor %}
        }
    }

    /// The instance's `limits.cpu`.
    pub const fn cpu(self) -> u32 {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.cpu }},
{%- endfor %}
        }
    }

    /// The instance's `limits.memory`, in MiB.
    pub const fn memory_mib(self) -> u32 {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.memory_mib }},
{%- endfor %}
        }
    }

    /// Whether the role's image is signed for Secure Boot (false: VMs need `security.secureboot=false`).
    pub const fn secure_boot(self) -> bool {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.secure_boot }},
{%- endfor %}
        }
    }

    /// The Incus cluster group the role's instances are placed in, if any.
    pub const fn cluster_group(self) -> Option<&'static str> {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.cluster_group }},
{%- endfor %}
        }
    }

    /// The guest TCP port of the role's service, which launchers expose with an Incus proxy device.
    pub const fn service_port(self) -> Option<u16> {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.service_port }},
{%- endfor %}
        }
    }

    /// The unprivileged user the role's workload runs as, if the role names one.
    pub const fn user(self) -> Option<&'static RoleUser> {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.user }},
{%- endfor %}
        }
    }

    /// Host directories the launcher attaches, by Incus device name (see `mount_devices`).
    pub const fn mounts(self) -> &'static [RoleMount] {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.mounts }},
{%- endfor %}
        }
    }

    /// Extra Incus instance config, sorted by key (see `launch_config` for the whole config).
    pub const fn instance_config(self) -> &'static [(&'static str, &'static str)] {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.instance_config }},
{%- endfor %}
        }
    }

    /// sha256 of Nix's `builtins.toJSON` of the role's roles.toml table: changes when (only) this role's table changes.
    pub const fn roles_digest(self) -> &'static str {
        match self {
{%- for role in roles %}
            IncusGuestRole::{{ role.variant }} => {{ role.roles_digest }},
{%- endfor %}
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
{%- for role in roles %}
            {{ role.id }} => Ok(IncusGuestRole::{{ role.variant }}),
{%- endfor %}
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
