//! Generates `IncusGuestRole` from the workspace roles.toml into OUT_DIR, and refreshes the
//! checked-in Nix and shell outputs when they are stale (failing when they cannot be written).

use std::path::{Path, PathBuf};

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo_root = crate_dir.join("../..");
    let manifest = repo_root.join(pika_roles_codegen::MANIFEST_FILE);

    // Listing inputs ourselves replaces cargo's "rerun on any file change in the package", so a
    // no-op build reruns nothing. Changes to the codegen library itself rebuild this script anyway.
    for input in [
        manifest.clone(),
        repo_root.join("codegen/templates"),
        repo_root.join("codegen/askama.toml"),
        crate_dir.join("build.rs"),
    ] {
        println!("cargo:rerun-if-changed={}", input.display());
    }

    let registry = pika_roles_codegen::Registry::load(&manifest).unwrap_or_else(|errors| {
        fail(&format!("{errors}"));
    });

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    write_if_changed(
        &out_dir.join(pika_roles_codegen::RUST_FILE_NAME),
        &pika_roles_codegen::render_rust(&registry),
    );

    let outputs = pika_roles_codegen::checked_in_outputs(&registry);
    if let Err(e) =
        pika_roles_codegen::sync_outputs(&repo_root, &outputs, pika_roles_codegen::Mode::Write)
    {
        fail(&e.to_string());
    }
}

fn write_if_changed(path: &Path, contents: &str) {
    if !pika_roles_codegen::is_fresh(path, contents) {
        std::fs::write(path, contents)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
