//! Malformed manifests: each case must fail with `PATH:LINE:COL: message` pointing at the bad value,
//! exit 1 (an invalid manifest), and leave every file of the checkout exactly as it was.

mod common;

use std::path::Path;

use common::{fixture_copy, pika_roles, snapshot, stderr};
use pika_role_spec::line_col;

/// One broken manifest: `replace` turns the fixture into it; `at` is a unique snippet of the
/// broken text with `@@` where the error must point; `message` must appear in the error.
struct Case {
    name: &'static str,
    replace: &'static [(&'static str, &'static str)],
    at: &'static str,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "uppercase id",
        replace: &[("[roles.alpha]", "[roles.Alpha]")],
        at: "[roles.@@Alpha]",
        message: "must be lowercase kebab-case",
    },
    Case {
        name: "underscore id",
        replace: &[("[roles.alpha]", "[roles.al_pha]")],
        at: "[roles.@@al_pha]",
        message: "must be lowercase kebab-case",
    },
    Case {
        name: "double dash id",
        replace: &[("[roles.alpha]", "[roles.al--pha]")],
        at: "[roles.@@al--pha]",
        message: "must be lowercase kebab-case",
    },
    Case {
        name: "rust keyword variant",
        replace: &[("[roles.alpha]", "[roles.self]")],
        at: "[roles.@@self]",
        message: "Rust keyword `Self`",
    },
    Case {
        name: "variant collision",
        replace: &[
            ("[roles.alpha]", "[roles.x-2a]"),
            ("[roles.beta]", "[roles.x2a]"),
            ("[[roles.beta.mounts]]", "[[roles.x2a.mounts]]"),
            ("[[roles.beta.mounts]]", "[[roles.x2a.mounts]]"),
            (
                "[roles.beta.instance-config]",
                "[roles.x2a.instance-config]",
            ),
        ],
        at: "[roles.@@x2a]",
        message: "both become the Rust variant `X2a`",
    },
    Case {
        name: "unknown role key",
        replace: &[(
            "variant = \"alpha-variant\"",
            "variant = \"alpha-variant\"\ncolour = \"red\"",
        )],
        at: "@@colour = ",
        message: "unknown field `colour`",
    },
    Case {
        name: "unknown top-level key",
        replace: &[("schema = 2", "schema = 2\nextra = true")],
        at: "@@extra = true",
        message: "unknown field `extra`",
    },
    Case {
        name: "unsupported schema",
        replace: &[("schema = 2", "schema = 7")],
        at: "schema = @@7",
        message: "unsupported schema 7",
    },
    Case {
        name: "missing package",
        replace: &[("package = \"beta-image\"\n", "")],
        at: "@@[roles.beta]",
        message: "missing field `package`",
    },
    Case {
        name: "alias with space",
        replace: &[("\"alpha/dev\"", "\"alpha dev\"")],
        at: "default-alias = @@\"alpha dev\"",
        message: "invalid alias `alpha dev`",
    },
    Case {
        name: "alias with colon",
        replace: &[("\"alpha/dev\"", "\"remote:alpha\"")],
        at: "default-alias = @@\"remote:alpha\"",
        message: "invalid alias `remote:alpha`",
    },
    Case {
        name: "alias with empty segment",
        replace: &[("\"alpha/dev\"", "\"alpha//dev\"")],
        at: "@@\"alpha//dev\"",
        message: "single `/`",
    },
    Case {
        name: "alias starting with dash",
        replace: &[("\"alpha/dev\"", "\"-alpha\"")],
        at: "@@\"-alpha\"",
        message: "must start with a letter or digit",
    },
    Case {
        name: "duplicate alias",
        replace: &[("\"beta/dev\"", "\"alpha/dev\"")],
        at: "Beta role\"\ndefault-alias = @@\"alpha/dev\"",
        message: "already the default alias of role `alpha`",
    },
    Case {
        name: "package not a nix name",
        replace: &[("\"alpha-image\"", "\"9alpha\"")],
        at: "@@\"9alpha\"",
        message: "is not a Nix attribute name",
    },
    Case {
        name: "duplicate package",
        replace: &[("\"beta-image\"", "\"alpha-image\"")],
        at: "beta/dev\"\npackage = @@\"alpha-image\"",
        message: "already used by role `alpha`",
    },
    Case {
        name: "legacy shadows canonical",
        replace: &[(
            "legacy-packages = []",
            "legacy-packages = [\"alpha-image\"]",
        )],
        at: "legacy-packages = [@@\"alpha-image\"]",
        message: "already used by role `alpha`",
    },
    Case {
        name: "legacy with space",
        replace: &[("\"alpha-legacy\"", "\"alpha legacy\"")],
        at: "@@\"alpha legacy\"",
        message: "is not a Nix attribute name",
    },
    Case {
        name: "bad system",
        replace: &[("\"aarch64-linux\"", "\"riscv64-linux\"")],
        at: "@@\"riscv64-linux\"",
        message: "system `riscv64-linux` is not one of: x86_64-linux, aarch64-linux",
    },
    Case {
        name: "bad instance type",
        replace: &[("\"container\"", "\"vm\"")],
        at: "@@\"vm\"",
        message: "instance-type `vm` is not one of: virtual-machine, container",
    },
    Case {
        name: "zero disk",
        replace: &[("disk-size-mib = 1024", "disk-size-mib = 0")],
        at: "disk-size-mib = @@0",
        message: "disk-size-mib must be an integer between 1 and",
    },
    Case {
        name: "negative disk",
        replace: &[("disk-size-mib = 1024", "disk-size-mib = -5")],
        at: "disk-size-mib = @@-5",
        message: "got -5",
    },
    Case {
        name: "disk beyond u32",
        replace: &[("disk-size-mib = 1024", "disk-size-mib = 5000000000")],
        at: "disk-size-mib = @@5000000000",
        message: "got 5000000000",
    },
    Case {
        name: "disk as string",
        replace: &[("disk-size-mib = 1024", "disk-size-mib = \"big\"")],
        at: "disk-size-mib = @@\"big\"",
        message: "invalid type: string \"big\"",
    },
    Case {
        name: "missing module",
        replace: &[("\"nix/alpha.nix\"", "\"nix/missing.nix\"")],
        at: "@@\"nix/missing.nix\"",
        message: "does not exist",
    },
    Case {
        name: "absolute module",
        replace: &[("\"nix/alpha.nix\"", "\"/etc/alpha.nix\"")],
        at: "@@\"/etc/alpha.nix\"",
        message: "must be relative",
    },
    Case {
        name: "escaping module",
        replace: &[("\"nix/alpha.nix\"", "\"../alpha.nix\"")],
        at: "@@\"../alpha.nix\"",
        message: "must stay inside the repository",
    },
    Case {
        name: "no modules",
        replace: &[("modules = [\"nix/beta.nix\"]", "modules = []")],
        at: "modules = @@[]",
        message: "at least one NixOS module",
    },
    Case {
        name: "special arg not identifier",
        replace: &[("[\"alphaPkg\"]", "[\"9pkg\"]")],
        at: "@@\"9pkg\"",
        message: "special arg `9pkg` is not a Nix identifier",
    },
    Case {
        name: "special arg keyword",
        replace: &[("[\"alphaPkg\"]", "[\"let\"]")],
        at: "@@\"let\"",
        message: "special arg `let` is not a Nix identifier",
    },
    Case {
        name: "duplicate special arg",
        replace: &[("[\"alphaPkg\", \"betaPkg\"]", "[\"betaPkg\", \"betaPkg\"]")],
        at: "[\"betaPkg\", @@\"betaPkg\"]",
        message: "listed twice",
    },
    Case {
        name: "image name with dot start",
        replace: &[("\"alpha-img\"", "\".alpha\"")],
        at: "@@\".alpha\"",
        message: "image-name `.alpha` is not safe in a Nix store name",
    },
    Case {
        name: "variant with slash",
        replace: &[("\"beta-variant\"", "\"beta/variant\"")],
        at: "@@\"beta/variant\"",
        message: "variant `beta/variant` is not safe",
    },
    Case {
        name: "empty description",
        replace: &[("\"Beta role\"", "\"  \"")],
        at: "description = @@\"  \"",
        message: "description must not be empty",
    },
    Case {
        name: "toml syntax error",
        replace: &[("\"Beta role\"", "\"Beta role")],
        at: "description = \"Beta role@@",
        message: "",
    },
    // Schema 2: the runtime contract.
    Case {
        name: "bad runtime mode",
        replace: &[("runtime-mode = \"one-shot\"", "runtime-mode = \"daemon\"")],
        at: "runtime-mode = @@\"daemon\"",
        message: "runtime-mode `daemon` is not one of: managed-service, one-shot, operator-sandbox",
    },
    Case {
        name: "missing runtime mode",
        replace: &[("runtime-mode = \"operator-sandbox\"\n", "")],
        at: "@@[roles.alpha]",
        message: "missing field `runtime-mode` (how the guest runs: managed-service, one-shot or operator-sandbox)",
    },
    Case {
        name: "missing secure boot",
        replace: &[("secure-boot = true\n", "")],
        at: "@@[roles.beta]",
        message: "missing field `secure-boot` (whether the image is signed for Secure Boot",
    },
    Case {
        name: "bad readiness word",
        replace: &[("readiness = \"ssh\"", "readiness = \"http\"")],
        at: "readiness = @@\"http\"",
        message: "readiness `http` is not one of: booted, incus-agent, ssh, an absolute lifecycle file path, or http://127.0.0.1:PORT/PATH",
    },
    Case {
        name: "relative readiness file",
        replace: &[("\"/run/beta/ready\"", "\"run/beta/ready\"")],
        at: "@@\"run/beta/ready\"",
        message: "readiness `run/beta/ready` is not one of",
    },
    Case {
        name: "readiness file escaping",
        replace: &[("\"/run/beta/ready\"", "\"/run/../etc/ready\"")],
        at: "@@\"/run/../etc/ready\"",
        message: "readiness lifecycle file `/run/../etc/ready` must be normalised (no `.` or `..` segments)",
    },
    Case {
        name: "readiness file with shell characters",
        replace: &[("\"/run/beta/ready\"", "\"/run/$(reboot)\"")],
        at: "@@\"/run/$(reboot)\"",
        message: "may only contain [A-Za-z0-9/._+-]",
    },
    Case {
        name: "http readiness to another host",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://10.0.0.2:18789/healthz\"",
        )],
        at: "readiness = @@\"http://10.0.0.2:18789/healthz\"",
        message: "readiness URL `http://10.0.0.2:18789/healthz` must probe host 127.0.0.1 (the guest's own loopback), not `10.0.0.2`",
    },
    Case {
        name: "http readiness to localhost",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://localhost:18789/healthz\"",
        )],
        at: "readiness = @@\"http://localhost:18789/healthz\"",
        message: "must probe host 127.0.0.1",
    },
    Case {
        name: "https readiness",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"https://127.0.0.1:18789/healthz\"",
        )],
        at: "readiness = @@\"https://127.0.0.1:18789/healthz\"",
        message: "must start with `http://`",
    },
    Case {
        name: "http readiness without port",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1/healthz\"",
        )],
        at: "readiness = @@\"http://127.0.0.1/healthz\"",
        message: "must name the port: http://127.0.0.1:PORT/PATH",
    },
    Case {
        name: "http readiness port zero",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:0/healthz\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:0/healthz\"",
        message: "port `0` must be an integer between 1 and 65535",
    },
    Case {
        name: "http readiness port beyond u16",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:65536/healthz\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:65536/healthz\"",
        message: "port `65536` must be an integer between 1 and 65535",
    },
    Case {
        name: "http readiness without path",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:18789\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:18789\"",
        message: "must name an absolute path after the port",
    },
    Case {
        name: "http readiness with query",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:18789/healthz?full=1\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:18789/healthz?full=1\"",
        message: "must not carry a query",
    },
    Case {
        name: "http readiness with fragment",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:18789/healthz#x\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:18789/healthz#x\"",
        message: "must not carry a fragment",
    },
    Case {
        name: "http readiness with userinfo",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://admin:pw@127.0.0.1:18789/healthz\"",
        )],
        at: "readiness = @@\"http://admin:pw@127.0.0.1:18789/healthz\"",
        message: "must not carry userinfo",
    },
    Case {
        name: "http readiness path with space",
        replace: &[(
            "readiness = \"http://127.0.0.1:18789/healthz\"",
            "readiness = \"http://127.0.0.1:18789/health z\"",
        )],
        at: "readiness = @@\"http://127.0.0.1:18789/health z\"",
        message: "path may only contain RFC 3986 path characters",
    },
    Case {
        name: "service port zero",
        replace: &[("service-port = 18789", "service-port = 0")],
        at: "service-port = @@0",
        message: "service-port must be an integer between 1 and 65535, got 0",
    },
    Case {
        name: "service port beyond u16",
        replace: &[("service-port = 18789", "service-port = 65536")],
        at: "service-port = @@65536",
        message: "service-port must be an integer between 1 and 65535, got 65536",
    },
    Case {
        name: "service port as string",
        replace: &[("service-port = 18789", "service-port = \"18789\"")],
        at: "service-port = @@\"18789\"",
        message: "invalid type: string \"18789\", expected i64",
    },
    Case {
        name: "user named root",
        replace: &[("name = \"delta\"", "name = \"root\"")],
        at: "name = @@\"root\"",
        message: "user name `root` must not be `root` (the role's user is unprivileged)",
    },
    Case {
        name: "user name uppercase",
        replace: &[("name = \"delta\"", "name = \"Delta\"")],
        at: "name = @@\"Delta\"",
        message: "user name `Delta` must match ^[a-z_][a-z0-9_-]*$",
    },
    Case {
        name: "user name starting with digit",
        replace: &[("name = \"delta\"", "name = \"1delta\"")],
        at: "name = @@\"1delta\"",
        message: "user name `1delta` must match ^[a-z_][a-z0-9_-]*$",
    },
    Case {
        name: "user group with dot",
        replace: &[("group = \"users\"", "group = \"us.ers\"")],
        at: "group = @@\"us.ers\"",
        message: "user group `us.ers` must match ^[a-z_][a-z0-9_-]*$",
    },
    Case {
        name: "user uid zero",
        replace: &[("uid = 1001", "uid = 0")],
        at: "uid = @@0",
        message: "user uid must be an integer between 1 and 4294967294 (0 is root), got 0",
    },
    Case {
        name: "user uid nobody",
        replace: &[("uid = 1001", "uid = 65534")],
        at: "uid = @@65534",
        message: "user uid must not be 65534 (nobody/nogroup)",
    },
    Case {
        name: "user uid beyond u32",
        replace: &[("uid = 1001", "uid = 4294967296")],
        at: "uid = @@4294967296",
        message: "user uid must be an integer between 1 and 4294967294 (0 is root), got 4294967296",
    },
    Case {
        name: "user gid negative",
        replace: &[("gid = 100", "gid = -1")],
        at: "gid = @@-1",
        message: "user gid must be an integer between 1 and 4294967294 (0 is root), got -1",
    },
    Case {
        name: "user gid nogroup",
        replace: &[("gid = 100", "gid = 65534")],
        at: "gid = @@65534",
        message: "user gid must not be 65534 (nobody/nogroup)",
    },
    Case {
        name: "user without gid",
        replace: &[("gid = 100\n", "")],
        at: "@@[roles.delta.user]",
        message: "missing field `gid`",
    },
    Case {
        name: "unknown user key",
        replace: &[("gid = 100", "gid = 100\nshell = \"/bin/sh\"")],
        at: "@@shell = \"/bin/sh\"",
        message: "unknown field `shell`, expected one of `name`, `uid`, `group`, `gid`",
    },
    Case {
        name: "optional as string",
        replace: &[("optional = true", "optional = \"yes\"")],
        at: "optional = @@\"yes\"",
        message: "invalid type: string \"yes\", expected a boolean",
    },
    Case {
        name: "zero cpu",
        replace: &[("cpu = 4", "cpu = 0")],
        at: "cpu = @@0",
        message: "cpu must be an integer between 1 and 4294967295, got 0",
    },
    Case {
        name: "cpu beyond u32",
        replace: &[("cpu = 4", "cpu = 4294967296")],
        at: "cpu = @@4294967296",
        message: "cpu must be an integer between 1 and 4294967295, got 4294967296",
    },
    Case {
        name: "cpu as string",
        replace: &[("cpu = 4", "cpu = \"4\"")],
        at: "cpu = @@\"4\"",
        message: "invalid type: string \"4\", expected i64",
    },
    Case {
        name: "negative memory",
        replace: &[("memory-mib = 512", "memory-mib = -1")],
        at: "memory-mib = @@-1",
        message: "memory-mib must be an integer between 1 and 4294967295, got -1",
    },
    Case {
        name: "secure boot as string",
        replace: &[("secure-boot = true", "secure-boot = \"no\"")],
        at: "secure-boot = @@\"no\"",
        message: "invalid type: string \"no\", expected a boolean",
    },
    Case {
        name: "cluster group with space",
        replace: &[("\"ci-hosts\"", "\"ci hosts\"")],
        at: "@@\"ci hosts\"",
        message: "cluster-group `ci hosts` may only contain [A-Za-z0-9-]",
    },
    Case {
        name: "mount name with slash",
        replace: &[("name = \"snapshot\"", "name = \"snap/shot\"")],
        at: "name = @@\"snap/shot\"",
        message: "mount name `snap/shot` may only contain [A-Za-z0-9._-]",
    },
    Case {
        name: "mount named root",
        replace: &[("name = \"cache\"", "name = \"root\"")],
        at: "name = @@\"root\"",
        message: "mount name `root` is the instance's root disk device",
    },
    Case {
        name: "duplicate mount name",
        replace: &[("name = \"cache\"", "name = \"snapshot\"")],
        at: "/workspace/snapshot\"\nread-only = true\n\n[[roles.beta.mounts]]\nname = @@\"snapshot\"",
        message: "mount name `snapshot` is used twice in this role",
    },
    Case {
        name: "relative mount path",
        replace: &[("\"/var/cache/beta\"", "\"var/cache/beta\"")],
        at: "@@\"var/cache/beta\"",
        message: "mount path `var/cache/beta` must be absolute",
    },
    Case {
        name: "mount path with dot dot",
        replace: &[("\"/var/cache/beta\"", "\"/var/../beta\"")],
        at: "@@\"/var/../beta\"",
        message: "mount path `/var/../beta` must be normalised",
    },
    Case {
        name: "duplicate mount path",
        replace: &[("\"/var/cache/beta\"", "\"/workspace/snapshot\"")],
        at: "name = \"cache\"\npath = @@\"/workspace/snapshot\"",
        message: "mount path `/workspace/snapshot` is used twice in this role",
    },
    Case {
        name: "unknown mount key",
        replace: &[("read-only = false", "read-only = false\nmode = \"rw\"")],
        at: "@@mode = \"rw\"",
        message: "unknown field `mode`, expected one of `name`, `path`, `read-only`, `optional`",
    },
    Case {
        name: "mount without read-only",
        replace: &[("read-only = false\n", "")],
        at: "@@[[roles.beta.mounts]]\nname = \"cache\"",
        message: "missing field `read-only`",
    },
    Case {
        name: "raw instance config",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"raw.lxc\" = \"lxc.aa_profile=unconfined\"",
        )],
        at: "@@\"raw.lxc\"",
        message: "instance-config `raw.lxc` is refused: `raw.*` keys bypass Incus's own validation",
    },
    Case {
        name: "reserved pika key",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"user.pika.guest_role\" = \"x\"",
        )],
        at: "@@\"user.pika.guest_role\"",
        message: "`user.pika.*` is reserved for Pika's own labels",
    },
    Case {
        name: "contract key in instance config",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"limits.memory\" = \"1GiB\"",
        )],
        at: "@@\"limits.memory\"",
        message: "instance-config `limits.memory` is refused: the role's `memory-mib` key sets it",
    },
    Case {
        name: "secure boot in instance config",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"security.secureboot\" = \"false\"",
        )],
        at: "@@\"security.secureboot\"",
        message: "the role's `secure-boot` key sets it",
    },
    Case {
        name: "privileged without reason",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"security.privileged\" = \"true\"",
        )],
        at: "@@\"security.privileged\"",
        message: "instance-config `security.privileged` weakens isolation: write it as `{ value = \"...\", reason = \"why this role needs it\" }`",
    },
    Case {
        name: "empty reason",
        replace: &[("reason = \"beta runs containers inside\"", "reason = \" \"")],
        at: "\"security.nesting\" = @@{ value",
        message: "instance-config `security.nesting` reason must not be empty",
    },
    Case {
        name: "unknown key in explained value",
        replace: &[(
            "reason = \"beta runs containers inside\"",
            "reason = \"x\", why = \"y\"",
        )],
        at: "\"security.nesting\" = @@{ value",
        message: "instance-config `security.nesting` must be a string or { value = \"...\", reason = \"...\" }: unknown key `why`",
    },
    Case {
        name: "instance config not a string",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"boot.autostart\" = false",
        )],
        at: "\"boot.autostart\" = @@false",
        message: "instance-config `boot.autostart` must be a string or { value = \"...\", reason = \"...\" }, got a boolean",
    },
    Case {
        name: "instance config key without namespace",
        replace: &[("\"boot.autostart\" = \"false\"", "outPath = \"x\"")],
        at: "@@outPath = \"x\"",
        message: "instance-config key `outPath` is not an Incus instance key",
    },
    Case {
        name: "instance config value with space",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"environment.GREETING\" = \"hello world\"",
        )],
        at: "\"environment.GREETING\" = @@\"hello world\"",
        message: "instance-config `environment.GREETING` value must be non-empty and hold no whitespace",
    },
    Case {
        name: "instance config value with a control character",
        replace: &[(
            "\"boot.autostart\" = \"false\"",
            "\"boot.autostart\" = \"fa\\u0001lse\"",
        )],
        at: "\"boot.autostart\" = @@\"fa",
        message: "instance-config `boot.autostart` value contains the control character U+0001",
    },
    Case {
        name: "description with a control character",
        replace: &[("\"Beta role\"", "\"Beta\\brole\"")],
        at: "description = @@\"Beta\\brole\"",
        message: "description contains the control character U+0008; only tab and newline are allowed",
    },
    Case {
        name: "schema 1",
        replace: &[("schema = 2", "schema = 1")],
        at: "schema = @@1",
        message: "schema 1 manifest: schema 2 adds the per-role keys runtime-mode, readiness, cpu, memory-mib, secure-boot (required) and cluster-group, service-port, user, mounts, instance-config (optional); add the required ones to every role",
    },
];

/// Drops the roles tables: the manifest has no role at all.
fn without_roles(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.starts_with("[roles."))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `text` as the manifest of a fixture copy with sentinel outputs, runs `generate`, and
/// checks the exit code, the `PATH:LINE:COL: message` line and that no file changed.
fn assert_rejected(name: &str, text: &str, line: usize, col: usize, message: &str) {
    let dir = fixture_copy();
    let manifest = dir.path().join("roles.toml");
    std::fs::write(&manifest, text).unwrap();
    for output in [
        pika_role_spec::NIX_REGISTRY_PATH,
        pika_role_spec::SHELL_TABLE_PATH,
    ] {
        let path = dir.path().join(output);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "sentinel: must not change\n").unwrap();
    }
    let before = snapshot(dir.path());
    let out = pika_roles(&["--manifest", manifest.to_str().unwrap(), "generate"]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: exit code; stderr:\n{err}"
    );
    let expected = format!("{}:{line}:{col}: ", manifest.display());
    let hit = err
        .lines()
        .find(|l| l.starts_with(&expected))
        .unwrap_or_else(|| panic!("{name}: no line starting with {expected:?} in:\n{err}"));
    assert!(hit.contains(message), "{name}: {hit:?} lacks {message:?}");
    assert_eq!(snapshot(dir.path()), before, "{name}: files changed");
}

#[test]
fn every_malformed_manifest_is_rejected_at_the_bad_value_and_writes_nothing() {
    let fixture = std::fs::read_to_string(common::fixtures().join("roles.toml")).unwrap();
    assert!(CASES.len() >= 20);
    for case in CASES {
        let mut text = fixture.clone();
        for (from, to) in case.replace {
            assert!(text.contains(from), "{}: fixture lacks {from:?}", case.name);
            text = text.replacen(from, to, 1);
        }
        let snippet = case.at.replace("@@", "");
        let offset_in_snippet = case.at.find("@@").expect("case marks a position");
        let starts: Vec<_> = text.match_indices(&snippet).collect();
        assert_eq!(
            starts.len(),
            1,
            "{}: `at` must be unique in the text",
            case.name
        );
        let (line, col) = line_col(&text, starts[0].0 + offset_in_snippet);
        assert_rejected(case.name, &text, line, col, case.message);
    }
}

#[test]
fn a_manifest_without_roles_is_rejected() {
    let fixture = std::fs::read_to_string(common::fixtures().join("roles.toml")).unwrap();
    assert_rejected(
        "no roles",
        &without_roles(&fixture),
        1,
        1,
        "no roles defined",
    );
    let empty_table = without_roles(&fixture) + "\n[roles]\n";
    let (line, col) = line_col(&empty_table, empty_table.find("[roles]").unwrap());
    let _ = (line, col);
    let out_dir = fixture_copy();
    let manifest = out_dir.path().join("roles.toml");
    std::fs::write(&manifest, &empty_table).unwrap();
    let err = pika_role_spec::Registry::load(Path::new(&manifest)).unwrap_err();
    assert!(err.to_string().contains("no roles defined"), "{err}");
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let fixture = std::fs::read_to_string(common::fixtures().join("roles.toml")).unwrap();
    let text = fixture
        .replacen("\"x86_64-linux\"", "\"bogus\"", 1)
        .replacen("\"beta/dev\"", "\"beta dev\"", 1);
    let dir = fixture_copy();
    let manifest = dir.path().join("roles.toml");
    std::fs::write(&manifest, text).unwrap();
    let err = pika_role_spec::Registry::load(&manifest).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(err.0[0].line < err.0[1].line);
    assert!(err.0[0].message.contains("system `bogus`"));
    assert!(err.0[1].message.contains("invalid alias `beta dev`"));
}
