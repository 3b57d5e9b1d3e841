//! The typed spec of a Pika Incus guest role: one [`RoleSpec`] per `[roles.<id>]` table of
//! roles.toml. The same struct is what serde reads from roles.toml (feature `manifest`), what every
//! generated output is serialised from, and what `IncusGuestRole::spec()` returns at run time from
//! one static table (all fields are `&'static`, so the table is a plain `static`).
//!
//! A new key is one field here plus its rule. An optional key, for example:
//!
//! ```text
//! /// The role's hostname prefix (roles.toml `hostname-prefix`, optional).
//! #[serde(default)]
//! pub hostname_prefix: Option<&'static str>,
//! ```
//!
//! plus, if the value has a rule, a few lines in `manifest.rs`'s `validate`: when `check_x(p)`
//! fails for `Some(p)`, report it with `at(&["hostname-prefix"], message)`.
//! JSON (`pika-roles show`), roles.nix (`hostnamePrefix`, null when unset), roles.sh
//! (`PIKA_ROLE_HOSTNAME_PREFIX`), the Rust table and the roles digest follow from the field.

mod check;
#[cfg(feature = "manifest")]
mod manifest;
mod spec;

pub use check::*;
#[cfg(feature = "manifest")]
pub use manifest::{Diagnostic, Diagnostics, Registry, check_generated, line_col, sha256_hex};
pub use spec::*;

/// The manifest's file name (at the repository root).
pub const MANIFEST_FILE: &str = "roles.toml";
/// The manifest schema this crate reads.
pub const SCHEMA_VERSION: i64 = 2;
/// The command that regenerates every output, named in headers and stale messages.
pub const REGENERATE_COMMAND: &str = "cargo run -p pika-roles-codegen -- generate";
/// The checked-in generated files, repository-relative. Each carries `roles.toml sha256: <hex>`
/// in its header: the build (Rust) and registry.nix (Nix) compare it with roles.toml.
pub const GENERATED_FILES: [&str; 3] = [NIX_REGISTRY_PATH, SHELL_TABLE_PATH, RUST_TABLE_PATH];
pub const NIX_REGISTRY_PATH: &str = "nix/incus/roles.nix";
pub const SHELL_TABLE_PATH: &str = "scripts/lib/roles.sh";
pub const RUST_TABLE_PATH: &str = "crates/pika-incus-guest-role/src/generated.rs";
/// The header line that carries the hash, after the comment marker.
pub const SHA256_LINE: &str = "roles.toml sha256: ";
