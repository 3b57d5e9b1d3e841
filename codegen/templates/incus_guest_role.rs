// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: {{ command }}
// {{ sha256_line }}

#[allow(unused_imports)]
use pika_role_spec::{
    InstanceConfig, InstanceType::*, Readiness::*, RoleMount, RoleSpec, RoleUser, RuntimeMode::*,
    System::*,
};

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
{%- for (variant, id, doc) in roles %}
    /// {{ doc }}
    #[serde(rename = {{ id }})]
    {{ variant }},
{%- endfor %}
}

impl IncusGuestRole {
    /// Every role, sorted by ID.
    pub const ALL: &'static [IncusGuestRole] = &[
{%- for (variant, _, _) in roles %}
        IncusGuestRole::{{ variant }},
{%- endfor %}
    ];

    /// The valid role IDs, comma separated, for error messages.
    pub const VALID_IDS: &'static str = {{ valid_ids }};
}

/// The spec of each role of `IncusGuestRole::ALL`, in that order (read by `IncusGuestRole::spec`).
pub(crate) static SPECS: [RoleSpec; {{ roles.len() }}] = [{{ specs }}
];
