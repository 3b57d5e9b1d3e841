//! `pika-roles-codegen`: reads `roles.toml` (the one source of truth for Pika's Incus guest roles),
//! validates it and renders three outputs with askama templates:
//!
//! * `nix/incus/roles.nix`: the Nix registry, a function of the roles' special args;
//! * `scripts/lib/roles.sh`: a sourceable shell table;
//! * the Rust source of `IncusGuestRole`, written into `OUT_DIR` by a build script.
//!
//! A build script drives it like this (see `crates/pika-incus-guest-role/build.rs`):
//!
//! ```no_run
//! use std::path::Path;
//! let manifest = Path::new("../../roles.toml");
//! let registry = pika_roles_codegen::Registry::load(manifest).unwrap_or_else(|errors| {
//!     eprintln!("{errors}");
//!     std::process::exit(1);
//! });
//! let out_dir = std::env::var("OUT_DIR").unwrap();
//! std::fs::write(
//!     Path::new(&out_dir).join(pika_roles_codegen::RUST_FILE_NAME),
//!     pika_roles_codegen::render_rust(&registry),
//! )
//! .unwrap();
//! ```
//!
//! and the crate includes it inside a module:
//! `include!(concat!(env!("OUT_DIR"), "/incus_guest_role.rs"));`

mod contract;
mod diagnostic;
mod digest;
mod manifest;
mod migrate;
mod registry;
mod render;
mod sync;

pub use contract::{
    ConfigValue, HTTP_READINESS_HOST, InstanceConfig, Mount, NOBODY_ID, READINESS_KINDS,
    REQUIRED_CONTRACT_KEYS, RUNTIME_MODES, User, check_cluster_group, check_config_key_shape,
    check_device_name, check_guest_path, check_posix_id, check_posix_name, parse_http_readiness,
};
pub use diagnostic::{Diagnostic, Diagnostics, line_col};
pub use digest::{nix_json, role_digests};
pub use migrate::{MIGRATE_COMMENT, Migration, migrate};
pub use registry::{
    FIELD_NAMES, INSTANCE_TYPES, PREVIOUS_SCHEMA_VERSION, Registry, Role, SCHEMA_VERSION, SYSTEMS,
    check_alias, is_kebab_id, is_nix_attr_name, is_nix_identifier, is_store_name, repo_root_of,
    upper_camel,
};
pub use render::{
    NIX_REGISTRY_PATH, Output, REGENERATE_COMMAND, RUST_FILE_NAME, SHELL_TABLE_PATH,
    checked_in_outputs, nix_string, render_nix, render_rust, render_shell, shell_quote,
};
pub use sync::{FileState, FileStatus, Mode, SyncError, is_fresh, sync_outputs};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "roles.toml";

/// Finds roles.toml by walking up from `start`.
pub fn find_manifest(start: &std::path::Path) -> Option<std::path::PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(MANIFEST_FILE))
        .find(|candidate| candidate.is_file())
}
