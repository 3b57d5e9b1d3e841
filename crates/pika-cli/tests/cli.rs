//! End-to-end tests of the `pika` binary against a real `pika-server` and the real incusd.

use std::process::{Command, Output};

use pika_managed_agent_contract::{AgentList, AgentRecord, AgentState, ApiError, IncusGuestRole};
use pika_server::incus_keys::GUEST_ROLE_KEY;
use pika_test_support::run;
use pika_test_support::server::{self, Server, pika_keys};

const PIKA: &str = env!("CARGO_BIN_EXE_pika");
const MANAGED: IncusGuestRole = IncusGuestRole::ManagedOpenclaw;

fn pika(server: &Server, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(PIKA);
    command
        .args(args)
        .env("PIKA_SERVER_URL", &server.url)
        .env_remove("PIKA_SERVER_TOKEN");
    if let Some(token) = token {
        command.env("PIKA_SERVER_TOKEN", token);
    }
    run(&mut command)
}

fn json_ok<T: serde::de::DeserializeOwned>(output: &Output) -> T {
    assert!(
        output.status.success(),
        "pika failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut value: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    pika_test_support::server::take_gateway_token(&mut value);
    serde_json::from_value(value).expect("the expected JSON")
}

#[test]
fn help_and_usage_errors_need_no_server() {
    let output = run(Command::new(PIKA).args(["agent", "--help"]));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["provision", "list", "show", "reprovision", "delete"] {
        assert!(help.contains(command), "{help}");
    }
    let output = run(Command::new(PIKA)
        .args(["agent", "list"])
        .env_remove("PIKA_SERVER_TOKEN"));
    assert_eq!(
        output.status.code(),
        Some(2),
        "missing token is a usage error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("PIKA_SERVER_TOKEN"));
    let output = run(Command::new(PIKA).args(["agent", "provision", "--guest-role", "bogus"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for role in IncusGuestRole::ALL {
        assert!(stderr.contains(role.as_str()), "{stderr}");
    }
}

#[test]
fn a_malformed_server_url_is_a_usage_error() {
    for url in [
        "http//127.0.0.1:8080",
        "ftp://127.0.0.1",
        "http://",
        "http://[::1",
    ] {
        let output = run(Command::new(PIKA)
            .args(["agent", "list", "--server", url])
            .env("PIKA_SERVER_TOKEN", "t"));
        assert_eq!(output.status.code(), Some(2), "{url}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("PIKA_SERVER_URL"),
            "{url}"
        );
    }
}

#[test]
fn a_stalled_server_times_out() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(stream);
    });
    let output = run(Command::new(PIKA)
        .args(["agent", "list", "--timeout", "1s", "--server", &url])
        .env("PIKA_SERVER_TOKEN", "t"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no answer within 1s"), "{stderr}");
    held.join().unwrap();
}

#[test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
fn cli_drives_the_agent_lifecycle() {
    let project = server::project("cli");
    project.incus_ok(&["profile", "create", "pika-test-2"]);
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(
        dir.path(),
        &project,
        &[("PIKA_AGENT_INCUS_ALLOWED_PROFILES", "pika-test-2")],
    );
    let alice = server.add_token("alice");
    let bob = server.add_token("bob");

    // IDs are one path segment: this one cannot climb to another endpoint (with the token).
    let output = pika(&server, Some(&alice), &["agent", "show", "../../healthz"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("agent \"../../healthz\" not found") && stderr.contains("HTTP 404"),
        "{stderr}"
    );

    // Provision with the default alias: the role is materialized on the record and the instance.
    let record: AgentRecord = json_ok(&pika(
        &server,
        Some(&alice),
        &["agent", "provision", "--name", "cli-one", "--json"],
    ));
    assert_eq!(record.state, AgentState::Running);
    assert_eq!(record.incus.guest_role, Some(MANAGED));
    assert_eq!(record.name.as_deref(), Some("cli-one"));
    let instance = project.instance(&record.instance_name).expect("instance");
    assert!(
        pika_keys(&instance).contains(&(GUEST_ROLE_KEY.to_owned(), MANAGED.as_str().to_owned()))
    );

    // Table output names the agent; --json list is the API's list.
    let table = pika(&server, Some(&alice), &["agent", "list"]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains(&record.id) && table.contains(MANAGED.as_str()),
        "{table}"
    );
    let list: AgentList = json_ok(&pika(&server, Some(&alice), &["agent", "list", "--json"]));
    assert_eq!(list.agents, vec![record.clone()]);
    let bobs: AgentList = json_ok(&pika(&server, Some(&bob), &["agent", "list", "--json"]));
    assert!(bobs.agents.is_empty());
    let output = pika(&server, Some(&bob), &["agent", "show", &record.id]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "another owner's agent is not found"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"));

    // Another role: the server refuses (400), nothing is created.
    if let Some(other) = IncusGuestRole::ALL.iter().find(|r| **r != MANAGED) {
        let output = pika(
            &server,
            Some(&alice),
            &[
                "agent",
                "provision",
                "--guest-role",
                other.as_str(),
                "--json",
            ],
        );
        assert_eq!(output.status.code(), Some(1));
        let error: ApiError = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            error.error,
            format!("managed runtime currently only supports incus.guest_role = {MANAGED}")
        );
        assert!(String::from_utf8_lossy(&output.stderr).contains("HTTP 400"));
        assert_eq!(project.instances().len(), 1);
    }

    // Reprovision with a new profile keeps the rest.
    let again: AgentRecord = json_ok(&pika(
        &server,
        Some(&alice),
        &[
            "agent",
            "reprovision",
            &record.id,
            "--profile",
            "pika-test-2",
            "--json",
        ],
    ));
    assert_eq!(again.incus.profile.as_deref(), Some("pika-test-2"));
    assert_eq!(again.incus.image_alias, record.incus.image_alias);
    assert_eq!(again.incus.guest_role, Some(MANAGED));
    let shown = pika(&server, Some(&alice), &["agent", "show", &again.id]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("pika-test-2"));

    // Delete removes the instance.
    let output = pika(&server, Some(&alice), &["agent", "delete", &record.id]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(project.instance(&again.instance_name).is_none());
    assert!(project.instances().is_empty());
    let list: AgentList = json_ok(&pika(&server, Some(&alice), &["agent", "list", "--json"]));
    assert!(list.agents.is_empty());

    // A wrong token is refused.
    let output = pika(&server, Some("pika_wrong"), &["agent", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HTTP 401"));
}
