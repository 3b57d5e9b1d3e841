// Generated from roles.toml by `pika-roles generate`; do not edit.
// Regenerate: cargo run -p pika-roles-codegen -- generate
// roles.toml sha256: 51253aa3e29ed791e2b10be4b70f492dc2da0c8f27eb1b511154477178299043

#[allow(unused_imports)]
use pika_role_spec::{
    InstanceConfig, InstanceType::*, Readiness::*, RoleMount, RoleSpec, RoleUser, RuntimeMode::*,
    System::*,
};

/// An Incus guest role of Pika, as defined in roles.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum IncusGuestRole {
    /// Pika managed OpenClaw Incus dev image
    #[serde(rename = "managed-openclaw")]
    ManagedOpenclaw,
    /// Pika operator sandbox: pi and opencode over SSH
    #[serde(rename = "pi-sandbox")]
    PiSandbox,
    /// Pika CI Incus dev image
    #[serde(rename = "pikaci-runner")]
    PikaciRunner,
}

impl IncusGuestRole {
    /// Every role, sorted by ID.
    pub const ALL: &'static [IncusGuestRole] = &[
        IncusGuestRole::ManagedOpenclaw,
        IncusGuestRole::PiSandbox,
        IncusGuestRole::PikaciRunner,
    ];

    /// The valid role IDs, comma separated, for error messages.
    pub const VALID_IDS: &'static str = "managed-openclaw, pi-sandbox, pikaci-runner";
}

/// The spec of each role of `IncusGuestRole::ALL`, in that order (read by `IncusGuestRole::spec`).
pub(crate) static SPECS: [RoleSpec; 3] = [
    RoleSpec {
        id: "managed-openclaw",
        description: "Pika managed OpenClaw Incus dev image",
        default_alias: "pika-agent/dev",
        package: "managed-openclaw-incus-image",
        legacy_packages: &[
            "pika-agent-incus-dev-image",
        ],
        image_name: "pika-agent-incus-dev",
        variant: "managed-openclaw-incus-dev",
        system: X86_64Linux,
        instance_type: VirtualMachine,
        disk_size_mib: 8192,
        modules: &[
            "nix/incus/roles/managed-openclaw.nix",
        ],
        special_args: &[
            "openclawGatewayPkg",
            "pikachatPkg",
        ],
        runtime_mode: ManagedService,
        readiness: Http {
            port: 18789,
            path: "/health",
        },
        cpu: 2,
        memory_mib: 4096,
        secure_boot: false,
        cluster_group: None,
        service_port: Some(
            18789,
        ),
        user: Some(
            RoleUser {
                name: "openclaw",
                uid: 2000,
                group: "openclaw",
                gid: 2000,
            },
        ),
        mounts: &[],
        instance_config: InstanceConfig {
            values: &[],
            reasons: &[],
        },
        roles_digest: "6fe419742bb0d641c206396c5864ff92621a171bb20710d4fc64f23a1e0098d3",
    },
    RoleSpec {
        id: "pi-sandbox",
        description: "Pika operator sandbox: pi and opencode over SSH",
        default_alias: "pi-sandbox/dev",
        package: "pi-sandbox-incus-image",
        legacy_packages: &[],
        image_name: "pi-sandbox-incus-dev",
        variant: "pi-sandbox-incus-dev",
        system: X86_64Linux,
        instance_type: VirtualMachine,
        disk_size_mib: 16384,
        modules: &[
            "nix/incus/roles/pi-sandbox.nix",
        ],
        special_args: &[],
        runtime_mode: OperatorSandbox,
        readiness: Ssh,
        cpu: 2,
        memory_mib: 4096,
        secure_boot: false,
        cluster_group: None,
        service_port: None,
        user: None,
        mounts: &[],
        instance_config: InstanceConfig {
            values: &[],
            reasons: &[],
        },
        roles_digest: "b4d7655c5a0c2ab4daf881d04ac49c471b1a1262bf4d8f99403479428cf2e67e",
    },
    RoleSpec {
        id: "pikaci-runner",
        description: "Pika CI Incus dev image",
        default_alias: "pikaci/dev",
        package: "pikaci-runner-incus-image",
        legacy_packages: &[
            "pikaci-incus-dev-image",
        ],
        image_name: "pikaci-incus-dev",
        variant: "pikaci-incus-dev",
        system: X86_64Linux,
        instance_type: VirtualMachine,
        disk_size_mib: 12288,
        modules: &[
            "nix/incus/roles/pikaci-runner.nix",
        ],
        special_args: &[],
        runtime_mode: OneShot,
        readiness: IncusAgent,
        cpu: 2,
        memory_mib: 4096,
        secure_boot: false,
        cluster_group: None,
        service_port: None,
        user: Some(
            RoleUser {
                name: "pikaci",
                uid: 1000,
                group: "users",
                gid: 100,
            },
        ),
        mounts: &[
            RoleMount {
                name: "snapshot",
                path: "/workspace/snapshot",
                read_only: true,
                optional: false,
            },
            RoleMount {
                name: "cargo-home",
                path: "/cargo-home",
                read_only: false,
                optional: true,
            },
            RoleMount {
                name: "cargo-target",
                path: "/cargo-target",
                read_only: false,
                optional: true,
            },
        ],
        instance_config: InstanceConfig {
            values: &[],
            reasons: &[],
        },
        roles_digest: "293334b5c3187b996a5d806e9cbc2c866a313e4232e5fe0e6ca84a3dd209b044",
    },
];
