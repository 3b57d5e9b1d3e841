//! Every Incus-specific string of the server: the `user.pika.*` config keys it writes on instances,
//! the instance name scheme, and the environment variables that configure the Incus side.
//!
//! Nothing else in the server spells one of these, so what the server marks on an instance (and what
//! reconcile trusts) is read here.

/// Config key holding the agent ID (the primary key of the server's row).
pub const AGENT_ID_KEY: &str = "user.pika.agent_id";
/// Config key holding the ID of the server that made the instance: reconcile only ever touches
/// instances carrying its own ID.
pub const SERVER_ID_KEY: &str = "user.pika.server_id";
/// Config key holding the owner the agent belongs to.
pub const OWNER_KEY: &str = "user.pika.owner";
/// Config key holding the guest role, set only when the instance runs the role's default image.
pub const GUEST_ROLE_KEY: &str = pika_incus_guest_role::GUEST_ROLE_CONFIG_KEY;
/// Config key marking an unclaimed warm-pool guest (its value: the guest role); removed when an
/// agent claims the guest.
pub const POOL_KEY: &str = "user.pika.pool";
/// Prefix of every key the server owns; request data can never set keys under it.
pub const PIKA_KEY_PREFIX: &str = "user.pika.";

/// Instance names are `pika-agent-<id>` (a reprovisioned agent's: `pika-agent-<id>-<suffix>`).
pub const INSTANCE_NAME_PREFIX: &str = "pika-agent-";

/// Name of the root disk device the server adds (on the resolved storage pool).
pub const ROOT_DEVICE: &str = "root";

/// The Incus instance name of an agent.
pub fn instance_name(agent_id: &str) -> String {
    format!("{INSTANCE_NAME_PREFIX}{agent_id}")
}

/// The name of an agent's replacement instance (made by reprovision before the old one goes).
pub fn replacement_instance_name(agent_id: &str, suffix: &str) -> String {
    format!("{INSTANCE_NAME_PREFIX}{agent_id}-{suffix}")
}

/// The name of a warm-pool guest (`pika-agent-pool-<suffix>`; agent IDs are hex, so no agent's
/// own name is ever one); an agent that claims it keeps the name.
pub fn pool_instance_name(suffix: &str) -> String {
    format!("{INSTANCE_NAME_PREFIX}pool-{suffix}")
}

/// Environment variables of the Incus defaults (`PIKA_AGENT_INCUS_*`).
pub mod env {
    pub const ENDPOINT: &str = "PIKA_AGENT_INCUS_ENDPOINT";
    pub const PROJECT: &str = "PIKA_AGENT_INCUS_PROJECT";
    pub const PROFILE: &str = "PIKA_AGENT_INCUS_PROFILE";
    pub const STORAGE_POOL: &str = "PIKA_AGENT_INCUS_STORAGE_POOL";
    pub const GUEST_ROLE: &str = "PIKA_AGENT_INCUS_GUEST_ROLE";
    pub const IMAGE_ALIAS: &str = "PIKA_AGENT_INCUS_IMAGE_ALIAS";
    pub const INSECURE_TLS: &str = "PIKA_AGENT_INCUS_INSECURE_TLS";
    pub const CLIENT_CERT_PATH: &str = "PIKA_AGENT_INCUS_CLIENT_CERT_PATH";
    pub const CLIENT_KEY_PATH: &str = "PIKA_AGENT_INCUS_CLIENT_KEY_PATH";
    pub const SERVER_CERT_PATH: &str = "PIKA_AGENT_INCUS_SERVER_CERT_PATH";
    pub const ALLOWED_ENDPOINTS: &str = "PIKA_AGENT_INCUS_ALLOWED_ENDPOINTS";
    pub const INSECURE_TLS_ENDPOINTS: &str = "PIKA_AGENT_INCUS_INSECURE_TLS_ENDPOINTS";
    pub const ALLOWED_PROJECTS: &str = "PIKA_AGENT_INCUS_ALLOWED_PROJECTS";
    pub const ALLOWED_PROFILES: &str = "PIKA_AGENT_INCUS_ALLOWED_PROFILES";
    pub const ALLOWED_STORAGE_POOLS: &str = "PIKA_AGENT_INCUS_ALLOWED_STORAGE_POOLS";
    pub const ALLOWED_IMAGE_ALIASES: &str = "PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES";
    pub const CLUSTER_GROUP: &str = "PIKA_AGENT_INCUS_CLUSTER_GROUP";
    pub const MEMBER_CHECK_SECS: &str = "PIKA_AGENT_INCUS_MEMBER_CHECK_SECS";
    /// Local socket used when no endpoint is set (defaults to the standard incusd socket).
    pub const SOCKET: &str = "INCUS_SOCKET";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys_share_the_reserved_prefix() {
        for key in [
            AGENT_ID_KEY,
            SERVER_ID_KEY,
            OWNER_KEY,
            GUEST_ROLE_KEY,
            POOL_KEY,
        ] {
            assert!(key.starts_with(PIKA_KEY_PREFIX), "{key}");
        }
        assert_eq!(instance_name("abc"), "pika-agent-abc");
    }
}
