//! Generates `IncusGuestRole` from the workspace roles.toml into OUT_DIR, and refreshes the
//! checked-in Nix and shell outputs when they are stale or were edited by hand (failing when they
//! cannot be written).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo_root = crate_dir.join("../..");
    let manifest = repo_root.join(pika_roles_codegen::MANIFEST_FILE);

    // Listing inputs ourselves replaces cargo's "rerun on any file change in the package", so a
    // no-op build reruns nothing. Changes to the codegen library itself rebuild this script anyway.
    // The checked-in outputs are listed too, so a hand edit to one is undone by the next build,
    // and every module file roles.toml names, so a deleted module fails the next build.
    let mut watched = vec![
        manifest.clone(),
        repo_root.join("codegen/templates"),
        repo_root.join("codegen/askama.toml"),
        crate_dir.join("build.rs"),
    ];
    watched.extend(
        [
            pika_roles_codegen::NIX_REGISTRY_PATH,
            pika_roles_codegen::SHELL_TABLE_PATH,
        ]
        .map(|path| repo_root.join(path)),
    );
    let loaded = pika_roles_codegen::Registry::load(&manifest);
    if let Ok(registry) = &loaded {
        let modules: std::collections::BTreeSet<&String> =
            registry.roles.iter().flat_map(|r| &r.modules).collect();
        watched.extend(modules.into_iter().map(|m| repo_root.join(m)));
    }
    for input in &watched {
        println!("cargo:rerun-if-changed={}", input.display());
    }

    let registry = loaded.unwrap_or_else(|errors| {
        fail(&format!("{errors}"));
    });

    // The enum goes to OUT_DIR through the same write-if-changed path as the checked-in files.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let generated_enum = pika_roles_codegen::Output {
        path: pika_roles_codegen::RUST_FILE_NAME.into(),
        contents: pika_roles_codegen::render_rust(&registry),
    };
    if let Err(e) = pika_roles_codegen::sync_outputs(
        &out_dir,
        &[generated_enum],
        pika_roles_codegen::Mode::Write,
    ) {
        fail(&format!(
            "cannot write the generated enum into OUT_DIR: {e}"
        ));
    }

    let outputs = pika_roles_codegen::checked_in_outputs(&registry);
    if let Err(e) =
        pika_roles_codegen::sync_outputs(&repo_root, &outputs, pika_roles_codegen::Mode::Write)
    {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
