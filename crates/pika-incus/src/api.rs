//! Every Incus-specific string of the crate: API paths, headers, config key prefixes, defaults.
//!
//! Nothing outside this module spells an Incus URL or header, so a change of the API (or a look at
//! what the client sends) starts here.

use std::collections::BTreeMap;

/// The socket a local `incusd` listens on unless told otherwise.
pub const DEFAULT_UNIX_SOCKET: &str = "/var/lib/incus/unix.socket";

/// The project every Incus server has.
pub const DEFAULT_PROJECT: &str = "default";

/// The prefix of free-form user config keys (`user.pika.guest_role`, ...).
pub const USER_CONFIG_PREFIX: &str = "user.";

/// `user.<name>`: the config key Incus keeps for us untouched.
pub fn user_key(name: &str) -> String {
    format!("{USER_CONFIG_PREFIX}{name}")
}

/// The `user.*` entries of a config map, with the prefix stripped, in key order.
pub fn user_config(config: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    config
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix(USER_CONFIG_PREFIX)?, value.as_str())))
}

/// Instance config keys Incus accepts only for virtual machines (a container create with one
/// fails with "Unknown configuration key"). Exact keys and `prefix.` families.
const VM_ONLY_CONFIG_KEYS: &[&str] = &[
    "security.secureboot",
    "security.csm",
    "security.sev",
    "security.sev.",
    "agent.nic_config",
    "boot.debug_edk2",
    "raw.qemu",
    "raw.qemu.",
];

/// Whether Incus knows `key` only for virtual machines (`security.secureboot`).
pub fn is_vm_only_config_key(key: &str) -> bool {
    VM_ONLY_CONFIG_KEYS
        .iter()
        .any(|known| key == *known || (known.ends_with('.') && key.starts_with(known)))
}

/// Base URL used over the unix socket (the host part is ignored by incusd).
pub(crate) const UNIX_BASE_URL: &str = "http://incus";

pub(crate) const SERVER: &str = "/1.0";
pub(crate) const CERTIFICATES: &str = "/1.0/certificates";
pub(crate) const PROJECTS: &str = "/1.0/projects";
pub(crate) const STORAGE_POOLS: &str = "/1.0/storage-pools";
pub(crate) const PROFILES: &str = "/1.0/profiles";
pub(crate) const IMAGES: &str = "/1.0/images";
pub(crate) const IMAGE_ALIASES: &str = "/1.0/images/aliases";
pub(crate) const INSTANCES: &str = "/1.0/instances";
pub(crate) const OPERATIONS: &str = "/1.0/operations";
pub(crate) const CLUSTER_MEMBERS: &str = "/1.0/cluster/members";
pub(crate) const CLUSTER_GROUPS: &str = "/1.0/cluster/groups";

/// A cluster member's `status` when it answers heartbeats.
pub const MEMBER_ONLINE: &str = "Online";

/// `?target=` value that lets the Incus scheduler place an instance inside cluster group `group`.
pub fn cluster_group_target(group: &str) -> String {
    format!("@{group}")
}

/// `/1.0/<collection>/<name>` with the name escaped as one path segment (aliases contain `/`).
pub(crate) fn item(collection: &str, name: &str) -> String {
    format!("{collection}/{}", segment(name))
}

/// `/1.0/instances/<name>/<sub>` (`state`, `exec`, `files`).
pub(crate) fn instance_sub(name: &str, sub: &str) -> String {
    format!("{INSTANCES}/{}/{sub}", segment(name))
}

/// `/1.0/operations/<id>/wait`.
pub(crate) fn operation_wait(id: &str) -> String {
    format!("{OPERATIONS}/{}/wait", segment(id))
}

/// The operation ID out of the `operation` field of an async response (`/1.0/operations/<id>`).
pub(crate) fn operation_id(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        // form encoding writes spaces as `+`, which a path reads literally.
        .replace('+', "%20")
}

/// Incus 6.0 reports some "already exists" cases without a 409: a duplicate instance name fails
/// its database insert (HTTP 500, `UNIQUE constraint failed`), a duplicate image fails its
/// operation (`... already exists`). These texts mark them.
const CONFLICT_MARKERS: &[&str] = &["UNIQUE constraint failed", "already exists"];

pub(crate) fn means_conflict(message: &str) -> bool {
    CONFLICT_MARKERS
        .iter()
        .any(|marker| message.contains(marker))
}

/// Query parameter names.
pub(crate) const Q_PROJECT: &str = "project";
pub(crate) const Q_RECURSION: &str = "recursion";
pub(crate) const Q_TARGET: &str = "target";
pub(crate) const Q_PATH: &str = "path";
pub(crate) const Q_TIMEOUT: &str = "timeout";

/// Headers of the file and image endpoints.
pub(crate) const H_UID: &str = "X-Incus-uid";
pub(crate) const H_GID: &str = "X-Incus-gid";
pub(crate) const H_MODE: &str = "X-Incus-mode";
pub(crate) const H_TYPE: &str = "X-Incus-type";
pub(crate) const H_WRITE: &str = "X-Incus-write";
pub(crate) const H_PUBLIC: &str = "X-Incus-public";
pub(crate) const H_FILENAME: &str = "X-Incus-filename";
pub(crate) const H_PROPERTIES: &str = "X-Incus-properties";
pub(crate) const H_ALIASES: &str = "X-Incus-aliases";

/// Multipart field names of a split image upload.
pub(crate) const PART_METADATA: &str = "metadata";
pub(crate) const PART_ROOTFS_CONTAINER: &str = "rootfs";
pub(crate) const PART_ROOTFS_VM: &str = "rootfs.img";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_are_one_segment() {
        assert_eq!(
            item(IMAGE_ALIASES, "pika-test/dev"),
            "/1.0/images/aliases/pika-test%2Fdev"
        );
        assert_eq!(item(INSTANCES, "a b"), "/1.0/instances/a%20b");
    }

    #[test]
    fn operation_ids() {
        assert_eq!(operation_id("/1.0/operations/abc-1"), "abc-1");
        assert_eq!(operation_id("/1.0/operations/abc-1?project=p"), "abc-1");
        assert_eq!(operation_id("abc-1"), "abc-1");
    }

    #[test]
    fn conflicts_told_by_text() {
        assert!(means_conflict(
            "Failed creating instance record: Add instance info to the database: Failed to create \"instances\" \
             entry: UNIQUE constraint failed: instances.project_id, instances.name"
        ));
        assert!(means_conflict("Image with same fingerprint already exists"));
        assert!(!means_conflict("Instance not found"));
    }

    #[test]
    fn vm_only_keys() {
        assert!(is_vm_only_config_key("security.secureboot"));
        assert!(is_vm_only_config_key("security.sev.policy.es"));
        assert!(!is_vm_only_config_key("security.secureboot.x"));
        assert!(!is_vm_only_config_key("limits.cpu"));
        assert!(!is_vm_only_config_key("security.privileged"));
    }

    #[test]
    fn user_keys() {
        let config = BTreeMap::from([
            (
                "user.pika.guest_role".to_string(),
                "pikaci-runner".to_string(),
            ),
            ("limits.cpu".to_string(), "2".to_string()),
        ]);
        assert_eq!(user_key("pika.guest_role"), "user.pika.guest_role");
        assert_eq!(
            user_config(&config).collect::<Vec<_>>(),
            [("pika.guest_role", "pikaci-runner")]
        );
    }
}
