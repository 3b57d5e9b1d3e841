//! Agents' gateways end to end with the REAL OpenClaw gateway: pika-server against the real
//! incusd, provisioning from the OpenClaw stand-in image (scripts/lib/test-image-openclaw.sh: npm
//! `openclaw` on npm Node, started as the managed-openclaw unit starts it; no network device).
//!
//! Each real gateway takes ~900 MB on the `dir` pool and a minute of CPU, so one test holds two
//! agents (two owners: the cross-token check needs two). Suite 60-openclaw runs it (it has the
//! image); suite 10-rust skips the `real_openclaw` tests. With `PIKA_TEST_SECRETS_OUT` set, every
//! secret the test sees is appended there, one a line, for the suite to grep its output for.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use pika_managed_agent_contract::{
    AGENTS_PATH, IncusGuestRole, agent_gateway_token_path, agent_path,
};
use pika_server::gateway::{CONFIG_PATH, PROXY_DEVICE};
use pika_test_support::TestProject;
use pika_test_support::server::{GatewayPorts, Server, TEST_PROFILE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// How long the real gateway may take to come back after a kill (5 s RestartSec plus a cold
/// start: 80 s measured on this machine under load). Not a timing goal: bench.sh has those.
const COME_BACK: Duration = Duration::from_secs(600);

/// A project with the OpenClaw stand-in under the managed-openclaw default alias.
fn openclaw_project(tag: &str) -> TestProject {
    let project = TestProject::new(tag);
    project.create_profile(TEST_PROFILE, None);
    project.import_container(
        pika_test_support::image::openclaw_container(),
        IncusGuestRole::ManagedOpenclaw.default_image_alias(),
    );
    project
}

fn start(dir: &Path, project: &TestProject, ports: &GatewayPorts) -> Server {
    let model_env = dir.join("model.env");
    common::start(
        dir,
        project,
        &[
            ("PIKA_AGENT_GATEWAY_PORTS", &ports.range()),
            ("PIKA_AGENT_MODEL_ENV_FILE", model_env.to_str().unwrap()),
        ],
    )
}

/// Appends `secret` to `$PIKA_TEST_SECRETS_OUT` (the suite greps the test's output for it).
fn record_secret(secret: &str) {
    if let Some(path) = std::env::var_os("PIKA_TEST_SECRETS_OUT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the secrets file");
        writeln!(file, "{secret}").expect("writing the secrets file");
    }
}

/// [`common::exchange`], recording the token.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
) -> (StatusCode, Value, Option<String>) {
    let (status, body, gateway_token) = common::exchange(server, method, path, token).await;
    if let Some(token) = &gateway_token {
        record_secret(token);
    }
    (status, body, gateway_token)
}

/// GET /health through the agent's proxy: (status, body), or the connection error.
async fn health(url: &str) -> Result<(StatusCode, String), reqwest::Error> {
    let response = reqwest::Client::new()
        .get(format!("{url}/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.text().await.unwrap_or_default()))
}

const LIVE: &str = r#"{"ok":true,"status":"live"}"#;

/// `POST /tools/invoke` with an empty JSON body through the proxy: (status, error message, error
/// type) of the gateway's answer.
async fn invoke(url: &str, token: &str) -> (StatusCode, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/tools/invoke"))
        .bearer_auth(token)
        .json(&json!({}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the gateway answers through its proxy");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let text = |key: &str| body["error"][key].as_str().unwrap_or_default().to_owned();
    (status, text("message"), text("type"))
}

/// The token passes the gateway's auth: the empty body is then `invalid_request`.
async fn assert_accepted(url: &str, token: &str, what: &str) {
    let (status, _, kind) = invoke(url, token).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{what}: the token should pass auth"
    );
}

/// The gateway refuses the token.
async fn assert_refused(url: &str, token: &str, what: &str) {
    let (status, message, _) = invoke(url, token).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "Unauthorized"),
        "{what}: the token should be refused"
    );
}

/// The PID of the gateway in the guest (its process title is `openclaw-gateway`), if it runs.
fn gateway_pid(project: &TestProject, instance: &str) -> Option<String> {
    let out = project.incus_ok(&[
        "exec",
        instance,
        "--",
        "sh",
        "-c",
        r#"for p in /proc/[0-9]*; do case "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" in openclaw-gateway*) echo "${p#/proc/}";; esac; done"#,
    ]);
    out.lines().next().map(str::to_owned)
}

/// Asserts that none of `secrets` is in the server's log, its database files, the instances'
/// expanded Incus config, or the gateway's own logs in the guests.
fn assert_nowhere(secrets: &[&str], server: &Server, project: &TestProject, dir: &Path) {
    let contains =
        |bytes: &[u8], secret: &str| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    let log = server.log();
    for (index, secret) in secrets.iter().enumerate() {
        assert!(
            !log.contains(secret),
            "secret #{index} is in the server log"
        );
        for file in ["agents.db", "agents.db-wal", "agents.db-shm"] {
            let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
            assert!(
                !contains(&bytes, secret),
                "secret #{index} is in {file} in clear"
            );
        }
    }
    for instance in project.instance_names() {
        let shown = project.incus_ok(&["config", "show", "--expanded", &instance]);
        let guest_logs = project.incus_ok(&[
            "exec",
            &instance,
            "--",
            "sh",
            "-c",
            "cat /var/log/openclaw-gateway.log /tmp/openclaw/*.log 2>/dev/null; true",
        ]);
        for (index, secret) in secrets.iter().enumerate() {
            assert!(
                !shown.contains(secret),
                "secret #{index} is in `incus config show {instance}`"
            );
            assert!(
                !guest_logs.contains(secret),
                "secret #{index} is in the gateway's log in {instance}"
            );
        }
    }
}

/// Polls `check` every second until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd and the OpenClaw stand-in image: suite 60-openclaw runs it"]
async fn real_openclaw_gateways_are_reached_authenticated_rotated_restarted_and_freed() {
    let project = openclaw_project("gw-real");
    let dir = tempfile::tempdir().unwrap();
    let model_key = format!(
        "sk-ant-pika-test-{}",
        hex::encode(rand::random::<[u8; 16]>())
    );
    record_secret(&model_key);
    std::fs::write(
        dir.path().join("model.env"),
        format!("# the operator's model providers\nANTHROPIC_API_KEY={model_key}\n"),
    )
    .unwrap();
    let ports = GatewayPorts::acquire();
    let server = start(dir.path(), &project, &ports);
    let alice = server.add_token("alice");
    let bob = server.add_token("bob");

    // Two agents of two owners, provisioned at once (each gateway takes a minute to start here).
    let ((status_a, a, token_a), (status_b, b, token_b)) = tokio::join!(
        call(&server, Method::POST, AGENTS_PATH, &alice),
        call(&server, Method::POST, AGENTS_PATH, &bob),
    );
    assert_eq!(status_a, StatusCode::CREATED, "{a}");
    assert_eq!(status_b, StatusCode::CREATED, "{b}");
    let (token_a, token_b) = (token_a.unwrap(), token_b.unwrap());
    let url_a = a["gateway_url"].as_str().unwrap().to_owned();
    let url_b = b["gateway_url"].as_str().unwrap().to_owned();
    let (id_a, id_b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let instance_a = a["instance_name"].as_str().unwrap().to_owned();
    assert_ne!(url_a, url_b);
    for (record, url) in [(&a, &url_a), (&b, &url_b)] {
        assert_eq!(record["state"], json!("running"));
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "a loopback proxy: {url}"
        );
        // The 201 came once the real gateway answered /health through this proxy.
        let (status, body) = health(url).await.expect("the proxy answers at once");
        assert_eq!((status, body.trim()), (StatusCode::OK, LIVE));
    }
    let device = &project.instance(&instance_a).unwrap()["devices"][PROXY_DEVICE];
    assert_eq!(device["listen"], json!(format!("tcp:{}", &url_a[7..])));
    // The delivered configuration carries the operator's model key (in the guest only).
    let config: Value =
        serde_json::from_str(&project.incus_ok(&["exec", &instance_a, "--", "cat", CONFIG_PATH]))
            .unwrap();
    assert!(
        config["env"]["vars"]["ANTHROPIC_API_KEY"] == json!(model_key),
        "the model key reaches the guest's openclaw.json"
    );

    // Auth by the real gateway: each agent's own token passes, a wrong one and the other
    // agent's are Unauthorized.
    assert_accepted(&url_a, &token_a, "alice's token on alice's agent").await;
    assert_accepted(&url_b, &token_b, "bob's token on bob's agent").await;
    assert_refused(&url_a, &"0".repeat(64), "a wrong token").await;
    assert_refused(&url_a, &token_b, "bob's token on alice's agent").await;
    assert_refused(&url_b, &token_a, "alice's token on bob's agent").await;

    // Rotation: the call returns with a new token once the gateway takes it (OpenClaw reloads
    // the token in place seconds after the file changes): at once the new one passes and the old
    // one is refused.
    let (status, rotated, new_a) = call(
        &server,
        Method::POST,
        &agent_gateway_token_path(&id_a),
        &alice,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_a = new_a.unwrap();
    assert_ne!(new_a, token_a);
    assert_eq!(rotated["gateway_url"], json!(url_a));
    assert_accepted(&url_a, &new_a, "the rotated token").await;
    assert_refused(&url_a, &token_a, "the token before the rotation").await;
    assert_refused(&url_b, &new_a, "alice's new token on bob's agent").await;
    assert_accepted(&url_b, &token_b, "bob's token after alice's rotation").await;

    // A killed gateway comes back by the unit's restart policy (the stand-in's init: Restart=
    // always after 5 s), with the delivered configuration: same URL, the current token. The
    // agent's state stays `running` meanwhile: pika-server does not watch the gateway after
    // provisioning; the restart policy is what brings it back.
    let pid = gateway_pid(&project, &instance_a).expect("the gateway runs");
    project.incus_ok(&["exec", &instance_a, "--", "kill", "-9", &pid]);
    let came_back = eventually(COME_BACK, || async {
        matches!(health(&url_a).await, Ok((StatusCode::OK, _)))
            && gateway_pid(&project, &instance_a).is_some_and(|now| now != pid)
    })
    .await;
    assert!(
        came_back,
        "the killed gateway did not come back within {COME_BACK:?}"
    );
    assert_accepted(&url_a, &new_a, "the current token after the restart").await;
    let (_, shown, _) = call(&server, Method::GET, &agent_path(&id_a), &alice).await;
    assert_eq!(shown["state"], json!("running"), "{shown}");

    // A server restart keeps every agent's port and reach.
    assert!(server.terminate().success());
    let server = start(dir.path(), &project, &ports);
    for (id, url, owner, token) in [
        (&id_a, &url_a, &alice, &new_a),
        (&id_b, &url_b, &bob, &token_b),
    ] {
        let (_, after, _) = call(&server, Method::GET, &agent_path(id), owner).await;
        assert_eq!(after["gateway_url"], json!(url), "{after}");
        assert_eq!(after["state"], json!("running"), "{after}");
        assert!(matches!(health(url).await, Ok((StatusCode::OK, _))));
        assert_accepted(url, token, "a token after the server restart").await;
    }

    // No token or model key in the server's log, the database, the Incus config, the guests'
    // gateway logs (the suite greps this test's own output).
    assert_nowhere(
        &[&token_a, &new_a, &token_b, &model_key],
        &server,
        &project,
        dir.path(),
    );

    // Delete closes the port and leaves no device, instance or row.
    for (id, url, owner) in [(&id_a, &url_a, &alice), (&id_b, &url_b, &bob)] {
        let (status, body, _) = call(&server, Method::DELETE, &agent_path(id), owner).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert!(health(url).await.is_err(), "the port is closed: {url}");
        let (status, _, _) = call(&server, Method::GET, &agent_path(id), owner).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is free again"
        );
    }
    project.assert_no_instances();
    let db = db_rows(&dir.path().join("agents.db"));
    assert_eq!(
        db,
        (0, 0),
        "(agents rows, gateway_ports rows) after the deletes"
    );
}

/// (rows of `agents`, rows of `gateway_ports`) of the server's database, read through the
/// store's own reader (the tables are pika-server's).
fn db_rows(db: &Path) -> (usize, usize) {
    let store = pika_server::store::Store::open(db).unwrap();
    let agents = store.list(None).unwrap().len();
    let ports = store.gateway_ports().unwrap().len();
    (agents, ports)
}
