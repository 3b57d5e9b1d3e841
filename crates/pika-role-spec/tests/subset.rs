//! `Registry::parse` reads manifests written in a TOML subset with its own small reader (fast, no
//! positions) and falls back to the full TOML parser for anything else or any problem. Both
//! readers must agree: the subset's reads these manifests into the same registry as the full
//! parser, leaves the others to it, and refuses what TOML forbids.

use std::path::{Path, PathBuf};

use pika_role_spec::Registry;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../codegen/tests/fixtures")
}

fn fixture() -> String {
    std::fs::read_to_string(fixtures().join("roles.toml")).unwrap()
}

/// The codegen fixture without escapes, so that all of it is in the subset.
fn plain_fixture() -> String {
    let text = fixture();
    let start = text.find("description = \"Alpha").unwrap();
    let end = text.find("default-alias = \"alpha/dev\"").unwrap();
    let literal = "'Alpha \"quoted\" ${notInterpolated} a \\ backslash, ünïcödé ☃'";
    format!(
        "{}description = {literal}\n{}",
        &text[..start],
        &text[end..]
    )
}

fn read(text: &str, subset: bool) -> Result<Registry, String> {
    Registry::parse_with(text, &fixtures(), subset).map_err(|e| e.to_string())
}

#[test]
fn the_subset_reads_what_the_full_parser_reads() {
    let plain = plain_fixture();
    let user = "[roles.delta.user]\nname = \"delta\"\nuid = 1001\ngroup = \"users\"\ngid = 100\n";
    let inline_user = "user = { name = \"delta\", uid = 1001, group = \"users\", gid = 100 }\n";
    let subset = [
        plain.clone(),
        plain.replace('\n', "\r\n"),
        plain
            .replace("\ncpu = ", "\n# a comment\n  cpu   =   ")
            .replace("secure-boot = false\n", "secure-boot = false # trailing\n"),
        plain.replace("\"virtual-machine\"", "'virtual-machine'"),
        plain.replace(
            "modules = [\"nix/beta.nix\"]",
            "modules = [\n  # the one module\n  \"nix/beta.nix\",\n]",
        ),
        plain.replace(user, "").replace(
            "service-port = 18789\n",
            &format!("service-port = 18789\n{inline_user}"),
        ),
        plain.replace("[roles.alpha]", "[ roles . \"alpha\" ]"),
    ];
    for (i, text) in subset.iter().enumerate() {
        let full = read(text, false).unwrap_or_else(|e| panic!("subset case {i}: {e}"));
        assert_eq!(read(text, true), Ok(full), "subset case {i}:\n{text}");
    }
    // Outside the subset: escapes, a role continued after another began, a multi-line string.
    let continued = format!(
        "[roles.beta.user]\nname = \"beta\"\nuid = 1002\ngroup = \"users\"\ngid = 100\n\n{user}"
    );
    for (i, text) in [
        fixture(),
        plain.replace("\"Beta role\"", r#""Beta \\ role""#),
        plain.replace(user, &continued),
        plain.replace("\"Beta role\"", "\"\"\"Beta role\"\"\""),
    ]
    .iter()
    .enumerate()
    {
        let full = read(text, false).unwrap_or_else(|e| panic!("full case {i}: {e}"));
        assert!(
            read(text, true).is_err(),
            "full case {i} is outside the subset"
        );
        let parsed = Registry::parse(text.as_str(), Path::new("roles.toml"), &fixtures());
        assert_eq!(parsed.map_err(|e| e.to_string()), Ok(full), "full case {i}");
    }
}

#[test]
fn what_toml_or_the_manifest_forbids_stays_refused() {
    let plain = plain_fixture();
    let autostart = "\"boot.autostart\" = \"false\"\n";
    for (name, text) in [
        ("no schema", plain.replace("schema = 2\n", "")),
        ("a key twice", plain.replace("cpu = 4\n", "cpu = 4\ncpu = 4\n")),
        ("a map key twice", plain.replace(autostart, &format!("{autostart}{autostart}"))),
        (
            "a table twice",
            plain.replace("[roles.delta.user]", "[roles.delta]\n[roles.delta.user]"),
        ),
        ("a role twice", plain.clone() + "\n[roles.alpha]\n"),
        (
            "an inline table extended",
            plain.replace(
                "cluster-group = \"ci-hosts\"\n",
                "cluster-group = \"ci-hosts\"\nuser = { name = \"b\", uid = 5, group = \"g\", gid = 5 }\n\n[roles.beta.user]\ngid = 6\n",
            ),
        ),
        (
            "an array of tables after an array",
            plain.replace("legacy-packages = []", "legacy-packages = []\nmounts = []"),
        ),
        ("a leading zero", plain.replace("cpu = 4", "cpu = 04")),
        ("a control character", plain.replace("Beta role", "Beta\u{1}role")),
        ("a bare carriage return", plain.replace("cpu = 4\n", "cpu = 4\r")),
    ] {
        assert!(read(&text, true).is_err(), "{name}: the subset reader accepts it");
        assert!(read(&text, false).is_err(), "{name}: the full parser accepts it");
    }
}
