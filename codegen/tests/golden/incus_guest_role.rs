// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: cargo run -p pika-roles-codegen -- generate
// roles.toml sha256: 368ab9062f643546dfa64b8f5d1832621a850dffeec08f876be97d2959e0e624

#[allow(unused_imports)]
use pika_role_spec::{
    InstanceConfig, InstanceType::*, Readiness::*, RoleMount, RoleSpec, RoleUser, RuntimeMode::*,
    System::*,
};

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
    /// Alpha "quoted" ${notInterpolated} it's a \ backslash, [brackets], ünïcödé ☃
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
}

/// The spec of each role of `IncusGuestRole::ALL`, in that order (read by `IncusGuestRole::spec`).
pub(crate) static SPECS: [RoleSpec; 3] = [
    RoleSpec {
        id: "alpha",
        description: "Alpha \"quoted\" ${notInterpolated} it's a \\ backslash, [brackets], ünïcödé ☃",
        default_alias: "alpha/dev",
        package: "alpha-image",
        legacy_packages: &[
            "alpha-legacy",
        ],
        image_name: "alpha-img",
        variant: "alpha-variant",
        system: X86_64Linux,
        instance_type: Container,
        disk_size_mib: 1024,
        modules: &[
            "nix/alpha.nix",
        ],
        special_args: &[
            "alphaPkg",
        ],
        runtime_mode: OperatorSandbox,
        readiness: Ssh,
        cpu: 1,
        memory_mib: 512,
        secure_boot: false,
        cluster_group: None,
        service_port: None,
        user: None,
        mounts: &[],
        instance_config: InstanceConfig {
            values: &[],
            reasons: &[],
        },
        roles_digest: "111f9f74a41ca8c107e96ee53658d560ada9b47db2a1d37f0832cde47f7d12f8",
    },
    RoleSpec {
        id: "beta",
        description: "Beta role",
        default_alias: "beta/dev",
        package: "beta-image",
        legacy_packages: &[],
        image_name: "beta-img",
        variant: "beta-variant",
        system: Aarch64Linux,
        instance_type: VirtualMachine,
        disk_size_mib: 2048,
        modules: &[
            "nix/beta.nix",
        ],
        special_args: &[
            "alphaPkg",
            "betaPkg",
        ],
        runtime_mode: OneShot,
        readiness: LifecycleFile(
            "/run/beta/ready",
        ),
        cpu: 4,
        memory_mib: 8192,
        secure_boot: true,
        cluster_group: Some(
            "ci-hosts",
        ),
        service_port: None,
        user: None,
        mounts: &[
            RoleMount {
                name: "snapshot",
                path: "/workspace/snapshot",
                read_only: true,
                optional: false,
            },
            RoleMount {
                name: "cache",
                path: "/var/cache/beta",
                read_only: false,
                optional: false,
            },
        ],
        instance_config: InstanceConfig {
            values: &[
                (
                    "boot.autostart",
                    "false",
                ),
                (
                    "security.nesting",
                    "true",
                ),
            ],
            reasons: &[
                (
                    "security.nesting",
                    "beta runs containers inside",
                ),
            ],
        },
        roles_digest: "8e2d20ec01e94435d84768526d6b59f05a55d9067b797dc73c2b986b161dfe52",
    },
    RoleSpec {
        id: "delta",
        description: "Delta service role",
        default_alias: "delta/dev",
        package: "delta-image",
        legacy_packages: &[],
        image_name: "delta-img",
        variant: "delta-variant",
        system: X86_64Linux,
        instance_type: VirtualMachine,
        disk_size_mib: 4096,
        modules: &[
            "nix/alpha.nix",
        ],
        special_args: &[],
        runtime_mode: ManagedService,
        readiness: Http {
            port: 18789,
            path: "/healthz",
        },
        cpu: 2,
        memory_mib: 2048,
        secure_boot: false,
        cluster_group: None,
        service_port: Some(
            18789,
        ),
        user: Some(
            RoleUser {
                name: "delta",
                uid: 1001,
                group: "users",
                gid: 100,
            },
        ),
        mounts: &[
            RoleMount {
                name: "state",
                path: "/var/lib/delta",
                read_only: false,
                optional: false,
            },
            RoleMount {
                name: "cargo-home",
                path: "/var/cache/cargo",
                read_only: false,
                optional: true,
            },
        ],
        instance_config: InstanceConfig {
            values: &[],
            reasons: &[],
        },
        roles_digest: "c0b2a98871f78ca76d4704b56423c4da72b7d38044ead1f57b271fc8ac998b17",
    },
];
