//! Agents' gateways against the real incusd with the busybox stand-in (scripts/lib/test-image.sh:
//! once pika-server delivered openclaw.json, busybox httpd answers /health on the role's service
//! port in the guest): delivery, reach through the proxy device, tokens, ports, restart.

mod common;

use std::path::Path;

use common::{BIN, exchange, scratch};
use pika_managed_agent_contract::{
    AGENTS_PATH, agent_gateway_token_path, agent_path, agent_reprovision_path,
};
use pika_server::gateway::{CONFIG_PATH, PROXY_DEVICE};
use pika_test_support::TestProject;
use pika_test_support::server::{self, GatewayPorts, Server, ServerSetup};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn start(dir: &Path, project: &TestProject, ports: &str) -> Server {
    common::start(dir, project, &[("PIKA_AGENT_GATEWAY_PORTS", ports)])
}

async fn health(url: &str) -> Result<StatusCode, reqwest::Error> {
    reqwest::Client::new()
        .get(format!("{url}/health"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status())
}

fn guest_config(project: &TestProject, instance: &str) -> String {
    project.incus_ok(&["exec", instance, "--", "cat", CONFIG_PATH])
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Every secret must be absent from the server's log, its database files and the instance config.
fn assert_nowhere(secret: &str, server: &Server, project: &TestProject, dir: &Path) {
    assert!(
        !server.log().contains(secret),
        "a token is in the server log"
    );
    for file in ["agents.db", "agents.db-wal"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token is in {file} in clear"
        );
    }
    for instance in project.instance_names() {
        let shown = project.incus_ok(&["config", "show", &instance]);
        assert!(!shown.contains(secret), "a token is in `incus config show`");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_gateway_is_delivered_reached_rotated_kept_across_restart_and_freed() {
    let (project, dir) = scratch("gw-life");
    let block = GatewayPorts::acquire();
    // One port: the second agent finds the range full.
    let one_port = format!("{0}-{0}", block.first);
    let server = start(dir.path(), &project, &one_port);
    let alice = server.add_token("alice");

    let (status, record, token) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let token = token.expect("the create response carries the token once");
    let url = record["gateway_url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("http://127.0.0.1:{}", block.first));
    assert_eq!(record["state"], json!("running"));
    // `running` means the gateway answers through the proxy.
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
    let instance = record["instance_name"].as_str().unwrap().to_owned();
    let id = record["id"].clone();
    let device = &project.instance(&instance).unwrap()["devices"][PROXY_DEVICE];
    assert_eq!(device["type"], json!("proxy"));
    assert_eq!(device["connect"], json!("tcp:127.0.0.1:18789"));
    let stat = project.incus_ok(&[
        "exec",
        &instance,
        "--",
        "stat",
        "-c",
        "%a %u %g",
        CONFIG_PATH,
    ]);
    assert_eq!(
        stat.trim(),
        "600 2000 2000",
        "0600, owned by the role's user"
    );
    let config: Value = serde_json::from_str(&guest_config(&project, &instance)).unwrap();
    assert!(
        config["gateway"]["auth"]["token"] == json!(token),
        "the delivered token is the owner's"
    );
    assert_eq!(config["gateway"]["bind"], json!("loopback"));
    // Shown once: GET and list carry no token.
    let (_, shown, none) = exchange(
        &server,
        Method::GET,
        &agent_path(id.as_str().unwrap()),
        &alice,
    )
    .await;
    assert!(none.is_none());
    assert_eq!(shown, record);
    assert_nowhere(&token, &server, &project, dir.path());
    let stored = pika_server::store::Store::open(&dir.path().join("agents.db"))
        .unwrap()
        .gateway_token_sha256(id.as_str().unwrap())
        .unwrap();
    assert_eq!(stored, Some(sha256(&token)), "only the hash is stored");

    // The range is full: 503, no row, no instance.
    let (status, error, none) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["code"], json!("gateway-ports-exhausted"));
    assert!(none.is_none());
    assert_eq!(project.instance_names(), std::slice::from_ref(&instance));
    let (_, list, _) = exchange(&server, Method::GET, AGENTS_PATH, &alice).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);

    // Rotation: a new token is delivered; only its hash is stored.
    let (status, rotated, new_token) = exchange(
        &server,
        Method::POST,
        &agent_gateway_token_path(id.as_str().unwrap()),
        &alice,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_token = new_token.expect("the rotate response carries the new token");
    assert!(new_token != token, "a new token");
    let config: Value = serde_json::from_str(&guest_config(&project, &instance)).unwrap();
    assert!(
        config["gateway"]["auth"]["token"] == json!(new_token),
        "redelivered"
    );
    assert_eq!(rotated["gateway_url"], json!(url));
    // Another owner cannot rotate it.
    let bob = server.add_token("bob");
    let (status, _, none) = exchange(
        &server,
        Method::POST,
        &agent_gateway_token_path(id.as_str().unwrap()),
        &bob,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(none.is_none());

    // A restart keeps the port and the reach.
    assert!(server.terminate().success());
    let server = start(dir.path(), &project, &one_port);
    let (_, after, _) = exchange(
        &server,
        Method::GET,
        &agent_path(id.as_str().unwrap()),
        &alice,
    )
    .await;
    assert_eq!(after["gateway_url"], json!(url));
    assert_eq!(after["state"], json!("running"));
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
    assert_nowhere(&new_token, &server, &project, dir.path());
    assert_nowhere(&token, &server, &project, dir.path());

    // Delete closes the port and leaves no device, instance or row; the port is free again.
    let (status, _, _) = exchange(
        &server,
        Method::DELETE,
        &agent_path(id.as_str().unwrap()),
        &alice,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(health(&url).await.is_err(), "the port is closed");
    project.assert_no_instances();
    let (status, again, next) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(next.is_some());
    assert_eq!(
        again["gateway_url"],
        json!(url),
        "the freed port is taken again"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn ten_concurrent_agents_get_ten_ports_and_ten_tokens() {
    let (project, dir) = scratch("gw-ten");
    let block = GatewayPorts::acquire();
    let server = start(dir.path(), &project, &block.range());
    let alice = server.add_token("alice");
    let answers = futures_util::future::join_all(
        (0..10).map(|_| exchange(&server, Method::POST, AGENTS_PATH, &alice)),
    )
    .await;
    let mut urls = std::collections::BTreeSet::new();
    let mut tokens = std::collections::BTreeSet::new();
    for (status, record, token) in answers {
        assert_eq!(status, StatusCode::CREATED, "{record}");
        let url = record["gateway_url"].as_str().unwrap().to_owned();
        assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
        urls.insert(url);
        tokens.insert(token.expect("a token"));
    }
    assert_eq!((urls.len(), tokens.len()), (10, 10));
    for token in &tokens {
        assert!(
            !server.log().contains(token.as_str()),
            "a token is in the log"
        );
    }
}

/// The listen address of an instance's gateway proxy device, as Incus has it (`None`: no device).
fn device_listen(project: &TestProject, instance: &str) -> Option<String> {
    let instance = project.instance(instance)?;
    let device = &instance["devices"][PROXY_DEVICE];
    device["listen"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_port_another_program_holds_is_skipped_and_a_full_range_is_503() {
    let (project, dir) = scratch("gw-busy");
    let block = GatewayPorts::acquire();
    let (first, second) = (block.first, block.first + 1);
    let server = start(dir.path(), &project, &format!("{first}-{second}"));
    let alice = server.add_token("alice");
    // Another program listens on the lowest port of the range.
    let other = std::net::TcpListener::bind(("127.0.0.1", first)).unwrap();

    let (status, record, token) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert!(token.is_some());
    let url = format!("http://127.0.0.1:{second}");
    assert_eq!(
        record["gateway_url"],
        json!(url),
        "the busy port is skipped"
    );
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);

    // The other port is the agent's, the first still the other program's: a clear 503 that
    // writes no row and creates no instance.
    let (status, error, none) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["code"], json!("gateway-ports-exhausted"));
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("1 by agents, 1 in use by other programs"),
        "{message}"
    );
    assert!(none.is_none());
    assert_eq!(project.instance_names().len(), 1);
    let (_, list, _) = exchange(&server, Method::GET, AGENTS_PATH, &alice).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1, "{list}");

    // Once the other program lets go, the port is an agent's again.
    drop(other);
    let (status, record, _) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let url = format!("http://127.0.0.1:{first}");
    assert_eq!(record["gateway_url"], json!(url));
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn reprovision_keeps_the_port_and_reconcile_puts_a_removed_device_back() {
    let (project, dir) = scratch("gw-keep");
    let block = GatewayPorts::acquire();
    let server = start(dir.path(), &project, &block.range());
    let alice = server.add_token("alice");
    let (status, record, _) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let id = record["id"].as_str().unwrap().to_owned();
    let url = record["gateway_url"].as_str().unwrap().to_owned();
    let listen = format!("tcp:{}", url.trim_start_matches("http://"));

    // Reprovision: a new instance, the same port (and URL) once the old one is gone.
    let (status, again, token) =
        exchange(&server, Method::POST, &agent_reprovision_path(&id), &alice).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(token.is_some(), "a reprovision makes a new token");
    let instance = again["instance_name"].as_str().unwrap().to_owned();
    assert_ne!(json!(instance), record["instance_name"]);
    assert_eq!(again["gateway_url"], json!(url), "the agent keeps its port");
    assert_eq!(project.instance_names(), std::slice::from_ref(&instance));
    assert_eq!(device_listen(&project, &instance), Some(listen.clone()));
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
    let (_, shown, _) = exchange(&server, Method::GET, &agent_path(&id), &alice).await;
    assert_eq!(shown["gateway_url"], json!(url));

    // Someone removes the device while the server is down: the restart's reconcile puts it back.
    assert!(server.terminate().success());
    project.incus_ok(&["config", "device", "remove", &instance, PROXY_DEVICE]);
    assert!(health(&url).await.is_err(), "the device is gone");
    let server = start(dir.path(), &project, &block.range());
    assert_eq!(device_listen(&project, &instance), Some(listen));
    assert_eq!(health(&url).await.unwrap(), StatusCode::OK);
    let (_, after, _) = exchange(&server, Method::GET, &agent_path(&id), &alice).await;
    assert_eq!(after["gateway_url"], json!(url));
    assert_eq!(after["state"], json!("running"));
    assert!(
        server
            .log()
            .contains("gateway proxy device is missing or changed"),
        "reconcile says what it repaired"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_gateway_from_a_vm_image_is_refused_naming_why() {
    // Incus offers VMs only NAT-mode proxy devices, which cannot reach the gateway on the
    // guest's loopback: the request is refused before any row or instance.
    let project = TestProject::new("gw-vm");
    project.create_profile(server::TEST_PROFILE, None);
    let scratch = tempfile::tempdir().unwrap();
    let (metadata, disk) =
        pika_test_support::image::build_vm(&scratch.path().join("vm"), "pika vm", "gw-vm");
    project.incus_ok(&[
        "image",
        "import",
        &metadata.display().to_string(),
        &disk.display().to_string(),
        "--alias",
        pika_managed_agent_contract::IncusGuestRole::ManagedOpenclaw.default_image_alias(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let block = GatewayPorts::acquire();
    let server = start(dir.path(), &project, &block.range());
    let alice = server.add_token("alice");
    let (status, error, token) = exchange(&server, Method::POST, AGENTS_PATH, &alice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], json!("invalid"));
    assert_eq!(error["field"], json!("incus.image_alias"));
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("virtual machine") && message.contains("NAT-mode"),
        "{message}"
    );
    assert!(token.is_none());
    project.assert_no_instances();
    let (_, list, _) = exchange(&server, Method::GET, AGENTS_PATH, &alice).await;
    assert_eq!(list["agents"], json!([]), "no row");
}

/// `pika-server` with `env` on top of the harness's (no incusd needed: it stops before).
fn refused_start(dir: &Path, env: Vec<(String, String)>) -> (Option<i32>, String) {
    let mut command = server::server_command(&ServerSetup {
        bin: Path::new(BIN),
        dir,
        project: Some("pika-test-never-used"),
        env,
    });
    let output = command.output().expect("pika-server runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_gateway_settings_stop_the_server_naming_them_and_no_value() {
    // Port ranges: a usage error (2) naming the variable and the value.
    for bad in [
        "",
        "abc",
        "0-10",
        "10-5",
        "18800-70000",
        "18800-",
        "-18800",
        "1-2-3",
        "1.5",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = refused_start(
            dir.path(),
            vec![("PIKA_AGENT_GATEWAY_PORTS".into(), bad.into())],
        );
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("PIKA_AGENT_GATEWAY_PORTS") || stderr.contains("--gateway-ports"),
            "{bad:?} names the setting: {stderr}"
        );
        assert!(
            !dir.path().join("agents.db").exists(),
            "{bad:?}: nothing opened"
        );
    }
    // The model environment file: a relative path is a usage error; a file that is missing, not
    // a file, or holds a bad line stops the server naming the file (and line), never a value.
    let secret = "sk-ant-never-shown-4242";
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases = [
        (
            "relative path",
            "model.env".to_owned(),
            2,
            "PIKA_AGENT_MODEL_ENV_FILE",
        ),
        (
            "missing",
            dir.path().join("absent.env").display().to_string(),
            1,
            "cannot be read",
        ),
        (
            "a directory",
            dir.path().display().to_string(),
            1,
            "cannot be read",
        ),
        (
            "no equals sign",
            file("a.env", &format!("A=1\n{secret}\n")),
            1,
            "a.env:2: expected KEY=VALUE",
        ),
        (
            "bad key",
            file("b.env", &format!("9KEY={secret}\n")),
            1,
            "b.env:1: the key must be",
        ),
        (
            "a gateway control",
            file("c.env", &format!("OPENCLAW_GATEWAY_TOKEN={secret}\n")),
            1,
            "c.env:1: OPENCLAW_GATEWAY_TOKEN is one of the gateway's own controls",
        ),
        (
            "twice",
            file("d.env", &format!("A={secret}\nexport A={secret}\n")),
            1,
            "d.env:2: A is set twice",
        ),
        (
            "unclosed quote",
            file("e.env", &format!("A=\"{secret}\n")),
            1,
            "e.env:1: the value of A has an unclosed quote",
        ),
    ];
    for (what, path, want, says) in cases {
        let state = tempfile::tempdir().unwrap();
        let (code, stderr) = refused_start(
            state.path(),
            vec![("PIKA_AGENT_MODEL_ENV_FILE".into(), path)],
        );
        assert_eq!(code, Some(want), "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: says {says:?}: {stderr}");
        assert!(!stderr.contains(secret), "{what}: a value leaked");
        assert!(
            !state.path().join("agents.db").exists(),
            "{what}: nothing opened or created"
        );
    }
}
