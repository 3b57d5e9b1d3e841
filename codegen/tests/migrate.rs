//! Schema 1 -> 2: `pika-roles` refuses a schema-1 manifest naming each missing key and its meaning;
//! `pika-roles migrate` adds them with explicit values, keeping every other byte.

mod common;

use common::{fixture_copy, fixtures, pika_roles, snapshot, stderr};
use pika_roles_codegen::{
    MIGRATE_COMMENT, REQUIRED_CONTRACT_KEYS, Registry, SCHEMA_VERSION, line_col,
};

fn schema1_copy() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = fixture_copy();
    let text = std::fs::read_to_string(fixtures().join("roles-schema1.toml")).unwrap();
    let manifest = dir.path().join("roles.toml");
    std::fs::write(&manifest, &text).unwrap();
    (dir, manifest, text)
}

#[test]
fn a_schema1_manifest_is_refused_naming_each_missing_key_and_migrate() {
    let (dir, manifest, text) = schema1_copy();
    let m = manifest.to_str().unwrap();
    let before = snapshot(dir.path());
    let out = pika_roles(&["--manifest", m, "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let (line, col) = line_col(&text, text.find("schema = 1").unwrap() + "schema = ".len());
    assert!(
        err.contains(&format!(
            "{m}:{line}:{col}: schema 1 manifest: schema 2 adds the per-role keys runtime-mode, readiness, cpu, memory-mib, secure-boot (required)"
        )),
        "{err}"
    );
    assert!(err.contains("run `pika-roles migrate`"), "{err}");
    for header in ["[roles.alpha]", "[roles.beta]"] {
        let (line, col) = line_col(&text, text.find(header).unwrap());
        for (key, meaning, _) in REQUIRED_CONTRACT_KEYS {
            let want = format!("{m}:{line}:{col}: missing field `{key}` ({meaning})");
            assert!(err.contains(&want), "lacks {want:?}:\n{err}");
        }
    }
    assert_eq!(snapshot(dir.path()), before, "nothing written");
}

#[test]
fn migrate_adds_the_keys_keeps_every_other_byte_and_is_idempotent() {
    let (_dir, manifest, text) = schema1_copy();
    let m = manifest.to_str().unwrap();
    let out = pika_roles(&["--manifest", m, "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("role alpha: added runtime-mode, readiness, cpu, memory-mib, secure-boot"),
        "{err}"
    );
    let migrated = std::fs::read_to_string(&manifest).unwrap();

    // Removing what migrate added gives back the original, byte for byte.
    let mut block = format!("{MIGRATE_COMMENT}\n");
    for (key, _, value) in REQUIRED_CONTRACT_KEYS {
        block.push_str(&format!("{key} = {value}\n"));
    }
    assert_eq!(migrated.matches(&block).count(), 2, "{migrated}");
    assert_eq!(
        migrated.replace(&block, "").replacen(
            &format!("schema = {SCHEMA_VERSION}"),
            "schema = 1",
            1
        ),
        text
    );

    let registry = Registry::load(&manifest).unwrap_or_else(|e| panic!("{e}"));
    for role in &registry.roles {
        assert_eq!(
            (
                role.runtime_mode.as_str(),
                role.readiness.as_str(),
                role.cpu,
                role.memory_mib,
                role.secure_boot
            ),
            ("managed-service", "booted", 1, 1024, false),
            "{}",
            role.id
        );
        assert!(role.mounts.is_empty() && role.instance_config.is_empty());
    }
    let again = pika_roles(&["--manifest", m, "migrate"]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("already schema 2; nothing to migrate"));
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), migrated);
    assert!(
        pika_roles(&["--manifest", m, "generate"]).status.success(),
        "the migrated manifest generates"
    );
}

#[test]
fn migrate_handles_a_file_without_a_final_newline_and_partly_migrated_roles() {
    let (_dir, manifest, text) = schema1_copy();
    let text = text.trim_end().replacen(
        "disk-size-mib = 1024\n",
        "disk-size-mib = 1024\ncpu = 8\n",
        1,
    );
    std::fs::write(&manifest, &text).unwrap();
    let out = pika_roles(&["--manifest", manifest.to_str().unwrap(), "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("role alpha: added runtime-mode, readiness, memory-mib, secure-boot"),
        "{}",
        stderr(&out)
    );
    let registry = Registry::load(&manifest).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        registry.get("alpha").unwrap().cpu,
        8,
        "a present key is kept"
    );
    assert_eq!(registry.get("beta").unwrap().cpu, 1);
}

#[test]
fn migrate_refuses_an_unknown_schema_and_an_invalid_manifest_changing_nothing() {
    let (dir, manifest, text) = schema1_copy();
    let m = manifest.to_str().unwrap();
    for (broken, at, message) in [
        (
            text.replacen("schema = 1", "schema = 7", 1),
            "schema = @@7",
            "cannot migrate schema 7",
        ),
        (
            text.replacen("\"alpha/dev\"", "\"alpha dev\"", 1),
            "@@\"alpha dev\"",
            "invalid alias `alpha dev`",
        ),
        // After alpha, where migrate would insert lines: the position is still the file's own.
        (
            text.replacen("\"beta/dev\"", "\"beta dev\"", 1),
            "@@\"beta dev\"",
            "invalid alias `beta dev`",
        ),
    ] {
        std::fs::write(&manifest, &broken).unwrap();
        let before = snapshot(dir.path());
        let out = pika_roles(&["--manifest", m, "migrate"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let offset = broken.find(&at.replace("@@", "")).unwrap() + at.find("@@").unwrap();
        let (line, col) = line_col(&broken, offset);
        assert!(
            stderr(&out).contains(&format!("{m}:{line}:{col}: ")) && stderr(&out).contains(message),
            "{}",
            stderr(&out)
        );
        assert_eq!(snapshot(dir.path()), before, "nothing written");
    }
}
