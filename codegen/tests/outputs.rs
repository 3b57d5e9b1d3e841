//! The rendered outputs: golden files, byte stability, escaping checked by the real interpreters,
//! `check` finding stale files, and adding a role through roles.toml alone.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixture_copy, fixtures, pika_roles, repo_root, stderr, stdout};
use pika_role_spec::{NIX_REGISTRY_PATH, RUST_TABLE_PATH, Registry, SHELL_TABLE_PATH};
use pika_roles_codegen::{render_nix, render_rust, render_shell};

const AWKWARD: &str =
    r#"Alpha "quoted" ${notInterpolated} it's a \ backslash, [brackets], ünïcödé ☃"#;

fn fixture_registry() -> Registry {
    Registry::load(&fixtures().join("roles.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// Compares with the golden file; `UPDATE_GOLDEN=1` rewrites it instead.
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn golden_outputs() {
    let registry = fixture_registry();
    assert_golden("roles.nix", &render_nix(&registry));
    assert_golden("roles.sh", &render_shell(&registry));
    assert_golden("incus_guest_role.rs", &render_rust(&registry));
}

#[test]
fn outputs_are_byte_stable_and_sorted() {
    let a = fixture_registry();
    let b = fixture_registry();
    assert_eq!(render_nix(&a), render_nix(&b));
    assert_eq!(render_shell(&a), render_shell(&b));
    assert_eq!(render_rust(&a), render_rust(&b));
    // Roles come out sorted by ID whatever order roles.toml lists them in.
    let dir = fixture_copy();
    let text = std::fs::read_to_string(dir.path().join("roles.toml")).unwrap();
    let (head, beta) = text.split_at(text.find("[roles.beta]").unwrap());
    let (preamble, alpha) = head.split_at(head.find("[roles.alpha]").unwrap());
    std::fs::write(
        dir.path().join("roles.toml"),
        format!("{preamble}{beta}\n{alpha}"),
    )
    .unwrap();
    let swapped = Registry::load(&dir.path().join("roles.toml")).unwrap();
    // Only the hash of the (different) text moves; every role and its digest stay.
    let unhashed = |r: &Registry| render_nix(r).replace(&r.manifest_sha256, "");
    assert_eq!(unhashed(&swapped), unhashed(&a));
    assert_eq!(swapped.roles, a.roles);
}

#[test]
fn every_output_carries_the_generated_header() {
    let registry = fixture_registry();
    for out in [
        render_nix(&registry),
        render_shell(&registry),
        render_rust(&registry),
    ] {
        let head: String = out.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(
            head.contains("Generated from roles.toml by `pika-roles generate`; do not edit."),
            "{head}"
        );
        assert!(head.contains(pika_role_spec::REGENERATE_COMMAND), "{head}");
    }
}

#[test]
fn shell_table_keeps_awkward_text_intact() {
    let dir = fixture_copy();
    let table = dir.path().join("roles.sh");
    std::fs::write(&table, render_shell(&fixture_registry())).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1"; printf '%s\n' "${PIKA_ROLE_IDS[*]}" "${PIKA_ROLE_DESCRIPTION[alpha]}" "${PIKA_ROLE_DEFAULT_ALIAS[beta]}""#)
        .arg("bash")
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("alpha beta delta\n{AWKWARD}\nbeta/dev\n")
    );
}

#[test]
fn shell_table_carries_service_port_user_and_optional_mounts() {
    let dir = fixture_copy();
    let table = dir.path().join("roles.sh");
    std::fs::write(&table, render_shell(&fixture_registry())).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1"; for r in alpha delta; do printf '%s|%s|%s|%s\n' "${PIKA_ROLE_SERVICE_PORT[$r]}" "${PIKA_ROLE_USER[$r]}" "${PIKA_ROLE_MOUNTS[$r]}" "${PIKA_ROLE_READINESS[$r]}"; done"#)
        .arg("bash")
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "|||ssh\n18789|delta:1001:users:100|state:/var/lib/delta:rw cargo-home:/var/cache/cargo:rw:optional|http://127.0.0.1:18789/healthz\n"
    );
}

#[test]
#[ignore = "needs nix-instantiate: run scripts/test.sh"]
fn nix_registry_keeps_awkward_text_intact_and_takes_the_union_of_special_args() {
    let dir = fixture_copy();
    let registry_file = dir.path().join("roles.nix");
    std::fs::write(&registry_file, render_nix(&fixture_registry())).unwrap();
    let expr = format!(
        "let f = import {}; r = (f {{ alphaPkg = 1; betaPkg = 2; }}).roles; in {{ args = builtins.attrNames (builtins.functionArgs f); d = r.alpha.description; s = r.beta.specialArgs; ids = builtins.attrNames r; }}",
        registry_file.display()
    );
    let json = nix_eval_json(&expr);
    assert_eq!(json["d"], AWKWARD);
    assert_eq!(json["args"], serde_json::json!(["alphaPkg", "betaPkg"]));
    assert_eq!(json["s"], serde_json::json!({"alphaPkg": 1, "betaPkg": 2}));
    assert_eq!(json["ids"], serde_json::json!(["alpha", "beta", "delta"]));
}

#[test]
#[ignore = "needs nix-instantiate: run scripts/test.sh"]
fn checked_in_roles_nix_parses_and_evaluates_with_dummy_special_args() {
    let root = repo_root();
    let path = root.join(NIX_REGISTRY_PATH);
    let parse = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(&path)
        .output()
        .unwrap();
    assert!(parse.status.success(), "{}", stderr(&parse));
    let registry = Registry::load(&root.join("roles.toml")).unwrap();
    let args: Vec<String> = registry
        .all_special_args()
        .iter()
        .map(|a| format!("{a} = \"dummy-{a}\";"))
        .collect();
    let expr = format!(
        "builtins.mapAttrs (id: r: {{ inherit (r) id defaultAlias packageAttr legacyPackageAttrs diskSize system instanceType; modules = map toString r.modules; }}) (import {} {{ {} }}).roles",
        path.display(),
        args.join(" ")
    );
    let json = nix_eval_json(&expr);
    for role in &registry.roles {
        let r = &json[role.id];
        assert_eq!(r["id"], role.id);
        assert_eq!(r["defaultAlias"], role.default_alias);
        assert_eq!(r["packageAttr"], role.package);
        assert_eq!(
            r["legacyPackageAttrs"],
            serde_json::json!(role.legacy_packages)
        );
        assert_eq!(r["diskSize"], role.disk_size_mib);
        for (module, resolved) in role.modules.iter().zip(r["modules"].as_array().unwrap()) {
            let resolved = resolved.as_str().unwrap();
            assert!(resolved.ends_with(module), "{resolved} vs {module}");
            assert!(Path::new(resolved).is_file(), "{resolved} must exist");
        }
    }
    assert_eq!(json.as_object().unwrap().len(), registry.roles.len());
}

fn nix_eval_json(expr: &str) -> serde_json::Value {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .env("NIX_CONFIG", "build-users-group =")
        .output()
        .expect("nix-instantiate runs");
    assert!(
        out.status.success(),
        "nix-instantiate failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_names_a_stale_file_and_generate_fixes_it() {
    let dir = fixture_copy();
    let manifest = dir.path().join("roles.toml");
    let m = manifest.to_str().unwrap();
    let out = pika_roles(&["--manifest", m, "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("alpha/dev"),
        "generate prints the role table"
    );
    assert!(pika_roles(&["--manifest", m, "check"]).status.success());

    let nix = dir.path().join(NIX_REGISTRY_PATH);
    let fresh = std::fs::read_to_string(&nix).unwrap();
    std::fs::write(&nix, fresh.replace("alpha/dev", "alpha/old")).unwrap();
    let out = pika_roles(&["--manifest", m, "check"]);
    assert_eq!(out.status.code(), Some(3), "stale outputs exit 3");
    let err = stderr(&out);
    assert!(err.contains(&format!("stale: {}", nix.display())), "{err}");
    assert!(err.contains(pika_role_spec::REGENERATE_COMMAND), "{err}");
    assert!(
        !err.contains(SHELL_TABLE_PATH),
        "only the stale file is named: {err}"
    );

    // A second generate rewrites only the stale file, and leaves the fresh one untouched.
    let sh = dir.path().join(SHELL_TABLE_PATH);
    let sh_mtime = std::fs::metadata(&sh).unwrap().modified().unwrap();
    let out = pika_roles(&["--manifest", m, "generate"]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&nix).unwrap(), fresh);
    assert_eq!(
        std::fs::metadata(&sh).unwrap().modified().unwrap(),
        sh_mtime
    );
    assert!(pika_roles(&["--manifest", m, "check"]).status.success());
}

#[test]
fn adding_a_role_to_roles_toml_reaches_all_three_outputs() {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::load(&root.join("roles.toml")).unwrap();
    for module in registry.roles.iter().flat_map(|r| r.modules) {
        let target = dir.path().join(module);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(root.join(module), target).unwrap();
    }
    let fixtures = root.join("tests/fixtures");
    std::fs::copy(
        fixtures.join("test-extra-arm.nix"),
        dir.path().join("nix/incus/roles/test-extra-arm.nix"),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(root.join("roles.toml")).unwrap();
    text.push_str(&std::fs::read_to_string(fixtures.join("extra-role.toml")).unwrap());
    let manifest = dir.path().join("roles.toml");
    std::fs::write(&manifest, text).unwrap();
    let out = pika_roles(&["--manifest", manifest.to_str().unwrap(), "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let nix = std::fs::read_to_string(dir.path().join(NIX_REGISTRY_PATH)).unwrap();
    assert!(nix.contains("\"test-extra-arm\" = {"), "{nix}");
    assert!(nix.contains("packageAttr = \"test-extra-arm-image\";"));
    assert!(nix.contains("modules = [./roles/test-extra-arm.nix];"));
    assert!(
        nix.contains("  testExtraPayloadPkg,\n"),
        "the new special arg becomes a formal argument"
    );
    let sh = std::fs::read_to_string(dir.path().join(SHELL_TABLE_PATH)).unwrap();
    assert!(sh.contains("['test-extra-arm']='pika-test/arm'"));
    assert!(sh.contains("['test-extra-container']='test-extra-old-image'"));
    let rust = std::fs::read_to_string(dir.path().join(RUST_TABLE_PATH)).unwrap();
    assert_eq!(rust, render_rust(&Registry::load(&manifest).unwrap()));
    assert!(rust.contains("TestExtraArm,"));
    assert!(rust.contains("default_alias: \"pika-test/arm\","));

    let out = pika_roles(&[
        "--manifest",
        manifest.to_str().unwrap(),
        "show",
        "test-extra-arm",
        "--field",
        "default-alias",
    ]);
    assert_eq!(stdout(&out), "pika-test/arm\n");
}

#[test]
fn cli_show_list_and_usage_errors() {
    let m = fixtures().join("roles.toml");
    let m = m.to_str().unwrap();
    let out = pika_roles(&["--manifest", m, "show", "beta", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["default-alias"], "beta/dev");
    assert_eq!(json["disk-size-mib"], 2048);

    // The schema-2 keys, under their roles.toml names.
    assert_eq!(json["runtime-mode"], "one-shot");
    assert_eq!(json["readiness"], "/run/beta/ready");
    assert_eq!(json["cpu"], 4);
    assert_eq!(json["memory-mib"], 8192);
    assert_eq!(json["secure-boot"], true);
    assert_eq!(json["cluster-group"], "ci-hosts");
    assert_eq!(
        json["mounts"],
        serde_json::json!([
            {"name": "snapshot", "path": "/workspace/snapshot", "read-only": true, "optional": false},
            {"name": "cache", "path": "/var/cache/beta", "read-only": false, "optional": false},
        ])
    );
    assert_eq!(
        json["instance-config"],
        serde_json::json!({
            "boot.autostart": "false",
            "security.nesting": {"value": "true", "reason": "beta runs containers inside"},
        })
    );
    let digest = json["roles-digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{digest}");
    let alpha = pika_roles(&["--manifest", m, "show", "alpha", "--json"]);
    let alpha: serde_json::Value = serde_json::from_slice(&alpha.stdout).unwrap();
    assert_eq!(alpha["cluster-group"], serde_json::Value::Null);
    assert_eq!(alpha["mounts"], serde_json::json!([]));
    assert_eq!(alpha["instance-config"], serde_json::json!({}));
    assert_eq!(alpha["service-port"], serde_json::Value::Null);
    assert_eq!(alpha["user"], serde_json::Value::Null);
    let delta = pika_roles(&["--manifest", m, "show", "delta", "--json"]);
    let delta: serde_json::Value = serde_json::from_slice(&delta.stdout).unwrap();
    assert_eq!(delta["readiness"], "http://127.0.0.1:18789/healthz");
    assert_eq!(delta["service-port"], 18789);
    assert_eq!(
        delta["user"],
        serde_json::json!({"name": "delta", "uid": 1001, "group": "users", "gid": 100})
    );
    assert_eq!(delta["mounts"][1]["optional"], true);

    for (role, field, want) in [
        ("beta", "cpu", "4\n"),
        ("beta", "memory-mib", "8192\n"),
        ("beta", "secure-boot", "true\n"),
        ("beta", "runtime-mode", "one-shot\n"),
        ("beta", "readiness", "/run/beta/ready\n"),
        ("beta", "cluster-group", "ci-hosts\n"),
        ("alpha", "cluster-group", ""),
        ("alpha", "service-port", ""),
        ("alpha", "user", ""),
        ("delta", "service-port", "18789\n"),
        ("delta", "user", "delta:1001:users:100\n"),
        ("delta", "readiness", "http://127.0.0.1:18789/healthz\n"),
        (
            "delta",
            "mounts",
            "state:/var/lib/delta:rw\ncargo-home:/var/cache/cargo:rw:optional\n",
        ),
        (
            "beta",
            "mounts",
            "snapshot:/workspace/snapshot:ro\ncache:/var/cache/beta:rw\n",
        ),
        (
            "beta",
            "instance-config",
            "boot.autostart=false\nsecurity.nesting=true\n",
        ),
    ] {
        let out = pika_roles(&["--manifest", m, "show", role, "--field", field]);
        assert!(out.status.success(), "{field}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{role} --field {field}");
    }
    let out = pika_roles(&["--manifest", m, "show", "beta", "--field", "roles-digest"]);
    assert_eq!(stdout(&out), format!("{digest}\n"));

    // The plain view lists every field once, without trailing blanks for empty ones.
    let out = pika_roles(&["--manifest", m, "show", "alpha"]);
    let text = stdout(&out);
    let fields = pika_roles_codegen::to_json(fixture_registry().get("alpha").unwrap());
    for name in fields.keys() {
        assert_eq!(
            text.lines()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count(),
            1,
            "{name}: {text}"
        );
    }
    assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");

    let out = pika_roles(&["--manifest", m, "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta", "delta"]);

    let out = pika_roles(&["--manifest", m, "show", "gamma"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown role `gamma`; valid roles: alpha, beta, delta"),
        "{}",
        stderr(&out)
    );

    let out = pika_roles(&["--manifest", m, "show", "alpha", "--field", "colour"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("default-alias"),
        "lists the valid fields: {}",
        stderr(&out)
    );

    assert_eq!(pika_roles(&["frobnicate"]).status.code(), Some(2));
    for args in [
        &["--help"][..],
        &["generate", "--help"],
        &["show", "--help"],
    ] {
        let out = pika_roles(args);
        assert!(out.status.success());
        assert!(stdout(&out).contains("Usage"));
    }
}

#[test]
fn missing_manifest_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pika-roles"))
        .arg("list")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no roles.toml found"));
}

#[test]
fn an_unwritable_stale_output_fails_naming_it_and_the_command_and_changes_nothing() {
    let dir = fixture_copy();
    let registry = fixture_registry();
    // scripts/lib is a plain file, so scripts/lib/roles.sh cannot be written (root ignores
    // permission bits, so a read-only directory would not stop this test's writes).
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/lib"), "not a directory\n").unwrap();
    std::fs::create_dir_all(dir.path().join("nix/incus")).unwrap();
    std::fs::write(dir.path().join(NIX_REGISTRY_PATH), "stale\n").unwrap();
    let before = common::snapshot(dir.path());
    let err = pika_roles_codegen::sync_outputs(
        dir.path(),
        &pika_roles_codegen::outputs(&registry),
        pika_roles_codegen::Mode::Write,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{SHELL_TABLE_PATH} is stale and cannot be written"
        )),
        "{message}"
    );
    assert!(
        message.contains(pika_role_spec::REGENERATE_COMMAND),
        "{message}"
    );
    assert_eq!(
        common::snapshot(dir.path()),
        before,
        "the other stale file was not replaced either"
    );
    // The CLI says so with its own exit code, and still changes nothing.
    let m = dir.path().join("roles.toml");
    let out = pika_roles(&["--manifest", m.to_str().unwrap(), "generate"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("is stale and cannot be written"));
    assert_eq!(common::snapshot(dir.path()), before);
}

#[test]
fn help_documents_every_exit_code() {
    let out = pika_roles(&["--help"]);
    let help = stdout(&out);
    for line in [
        "0  success",
        "1  roles.toml cannot be read or is invalid",
        "2  usage error",
        "3  check: a generated file is stale",
        "4  a file cannot be written",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
}

#[test]
fn a_change_to_one_role_changes_only_its_digest() {
    let digests = |text: &str| -> Vec<(String, String)> {
        let dir = fixture_copy();
        let manifest = dir.path().join("roles.toml");
        std::fs::write(&manifest, text).unwrap();
        Registry::load(&manifest)
            .unwrap_or_else(|e| panic!("{e}"))
            .roles
            .into_iter()
            .map(|r| (r.id.to_owned(), r.roles_digest.to_owned()))
            .collect()
    };
    let fixture = std::fs::read_to_string(fixtures().join("roles.toml")).unwrap();
    let before = digests(&fixture);
    assert_ne!(before[0].1, before[1].1);

    // Only beta's reason changes (a value no generated field carries).
    let edited = fixture.replacen("beta runs containers inside", "beta nests", 1);
    let after = digests(&edited);
    assert_eq!(after[0], before[0], "alpha's digest must not move");
    assert_ne!(after[1].1, before[1].1, "beta's digest must move");

    // Layout, comments and key order inside a table do not change any digest.
    let relaid = fixture.replacen("cpu = 4\n", "", 1).replacen(
        "[roles.beta]\n",
        "[roles.beta]\n# a comment\ncpu   =   4\n",
        1,
    );
    assert_eq!(digests(&relaid), before);
}

#[test]
#[ignore = "needs nix-instantiate: run scripts/test.sh"]
fn registry_nix_refuses_a_roles_nix_generated_from_another_roles_toml() {
    let dir = fixture_copy();
    let m = dir.path().join("roles.toml");
    let out = pika_roles(&["--manifest", m.to_str().unwrap(), "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::copy(
        repo_root().join("nix/incus/registry.nix"),
        dir.path().join("nix/incus/registry.nix"),
    )
    .unwrap();
    let eval = |dir: &Path| {
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr"])
            .arg(format!(
                "builtins.mapAttrs (_: r: r.rolesDigest) (import {}/nix/incus/registry.nix {{ repoRoot = {}; }}).registry",
                dir.display(),
                dir.display()
            ))
            .env("NIX_CONFIG", "build-users-group =")
            .output()
            .unwrap()
    };
    let fresh = eval(dir.path());
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let json: serde_json::Value = serde_json::from_slice(&fresh.stdout).unwrap();
    for role in &fixture_registry().roles {
        assert_eq!(json[role.id], role.roles_digest);
    }
    // Only beta's reason changes (a value no generated field carries), roles.nix is not
    // regenerated: the sha256 roles.nix carries no longer matches.
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replacen("beta runs containers inside", "beta nests", 1),
    )
    .unwrap();
    let stale = eval(dir.path());
    assert!(
        !stale.status.success(),
        "a stale roles.nix must not evaluate"
    );
    let err = stderr(&stale);
    assert!(
        err.contains(
            "nix/incus/roles.nix is stale: run `cargo run -p pika-roles-codegen -- generate`"
        ),
        "{err}"
    );
    let now = pika_role_spec::sha256_hex(&std::fs::read(&m).unwrap());
    assert!(
        err.contains(&format!("roles.toml has sha256 {now}")),
        "{err}"
    );
}

/// Every checked-in generated file is marked `linguist-generated`, and the `cargo roles` alias
/// runs this binary.
#[test]
fn generated_files_are_marked_and_the_cargo_alias_names_pika_roles() {
    let attributes = std::fs::read_to_string(repo_root().join(".gitattributes")).unwrap();
    for path in [
        NIX_REGISTRY_PATH,
        SHELL_TABLE_PATH,
        RUST_TABLE_PATH,
        "codegen/tests/golden/**",
    ] {
        assert!(
            attributes
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [path, "linguist-generated"]),
            "{path} is not marked linguist-generated:\n{attributes}"
        );
    }
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo_root().join(".cargo/config.toml")).unwrap())
            .unwrap();
    assert_eq!(
        config["alias"]["roles"].as_str(),
        Some("run -q -p pika-roles-codegen --")
    );
}
