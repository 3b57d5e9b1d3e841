//! `pika-guest` launch/list/delete: usage errors without Incus, and against the real incusd a
//! `pi-sandbox` guest (busybox stand-in) reaching its `ssh` readiness over a real TCP connection.
//!
//! The stand-in has no sshd, and containers here have no network (no bridge can be created), so
//! the test builds one: a veth pair with one end in a network namespace the test creates and the
//! other handed to the container as its `eth0` (a `physical` NIC of a test profile). pika-guest
//! runs inside that namespace (`ip netns exec`), so its probe connects to the guest's address over
//! the veth, never leaving the test's namespaces; the test then makes busybox `nc` listen on port
//! 22 in the guest. Nothing but that listener makes the guest ready.

use std::process::{Command, Output};

use pika_incus_guest_role::IncusGuestRole;

const BIN: &str = env!("CARGO_BIN_EXE_pika-guest");

fn pika_guest(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("pika-guest runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_usage_errors() {
    let out = pika_guest(&["--help"]);
    assert!(out.status.success());
    for command in ["launch", "list", "delete", "image"] {
        assert!(text(&out.stdout).contains(command), "{command}");
    }
    let out = pika_guest(&["launch", "--help"]);
    for flag in [
        "--role",
        "--ssh-key",
        "--project",
        "--json",
        "--endpoint",
        "--timeout",
    ] {
        assert!(
            text(&out.stdout).contains(flag),
            "launch --help shows {flag}"
        );
    }

    // An unknown role is a usage error listing every role of the registry.
    let out = pika_guest(&["launch", "--role", "no-such-role", "g1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no-such-role"), "{err}");
    for role in IncusGuestRole::ALL {
        assert!(err.contains(role.as_str()), "{err} lists {role}");
    }
    let out = pika_guest(&["list", "--role", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &["launch", "g1"][..],
        &["launch", "--role", IncusGuestRole::ALL[0].as_str()],
        &[
            "launch",
            "--role",
            IncusGuestRole::ALL[0].as_str(),
            "g1",
            "--mount",
            "nodir",
        ],
        &[
            "launch",
            "--role",
            IncusGuestRole::ALL[0].as_str(),
            "g1",
            "--timeout",
            "0",
        ],
        &["delete"],
        &["list", "--client-cert", "c.pem"],
    ] {
        let out = pika_guest(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_missing_socket_is_an_error_naming_it() {
    let out = pika_guest(&["list", "--socket", "/nonexistent/incus.sock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/incus.sock"),
        "{}",
        text(&out.stderr)
    );
}
