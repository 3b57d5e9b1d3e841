//! The Rust drift guard: src/generated.rs, nix/incus/roles.nix and scripts/lib/roles.sh must carry
//! the sha256 of the roles.toml they were generated from, or the build fails naming the stale
//! files and the command that regenerates them (`pika-roles check` compares whole contents).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo_root = crate_dir.join("../..");
    // Listing inputs ourselves replaces cargo's "rerun on any file change in the package", so a
    // no-op build reruns nothing.
    let inputs =
        std::iter::once(pika_role_spec::MANIFEST_FILE).chain(pika_role_spec::GENERATED_FILES);
    for input in inputs {
        println!("cargo:rerun-if-changed={}", repo_root.join(input).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(stale) = pika_role_spec::check_generated(&repo_root) {
        eprintln!("error: roles.toml changed since its outputs were generated:\n{stale}");
        std::process::exit(1);
    }
}
