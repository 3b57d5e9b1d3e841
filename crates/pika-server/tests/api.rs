//! End-to-end tests of the real `pika-server` binary against the real incusd, SQLite and HTTP.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, scratch, start, started};
use pika_managed_agent_contract::{
    AGENTS_PATH, AgentState, HEALTH_PATH, HEALTHZ_PATH, IncusGuestRole,
};
use pika_server::incus_keys::{AGENT_ID_KEY, GUEST_ROLE_KEY, OWNER_KEY, SERVER_ID_KEY};
use pika_test_support::server::{self, Server, ServerSetup, TEST_PROFILE, pika_keys};
use pika_test_support::{TestProject, run, storage_pool};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANAGED: IncusGuestRole = IncusGuestRole::ManagedOpenclaw;

struct Api {
    url: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        Api {
            url: server.url.clone(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = common::call(&self.url, method, path, token, body.as_ref()).await;
        (answer.status, answer.body)
    }

    async fn provision(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, AGENTS_PATH, Some(token), Some(body))
            .await
    }

    async fn list(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.call(Method::GET, AGENTS_PATH, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["agents"].as_array().cloned().unwrap()
    }
}

fn agent_path(id: &Value) -> String {
    format!("{AGENTS_PATH}/{}", id.as_str().unwrap())
}

fn key<'a>(keys: &'a [(String, String)], name: &str) -> Option<&'a str> {
    keys.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn provision_show_list_delete_with_the_managed_role() {
    let (project, dir, server) = started("api-basic", &[]);
    let api = Api::new(&server);
    let alice = server.add_token("alice");

    let (status, health) = api.call(Method::GET, HEALTHZ_PATH, None, None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(
        health,
        json!({"ok": true}),
        "nothing but the verdict without a token"
    );
    let (status, _) = api.call(Method::GET, HEALTH_PATH, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "details need a token");
    // A tenant's token: each check's name and verdict, no details (issue 21).
    let (status, tenant) = api.call(Method::GET, HEALTH_PATH, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    let checks = tenant["checks"].as_array().unwrap();
    assert!(checks.len() >= 3, "{tenant}");
    assert!(
        checks
            .iter()
            .all(|c| c["detail"] == json!("") && c["ok"] == json!(true)),
        "{tenant}"
    );
    let text = tenant.to_string();
    for secret in [project.name.as_str(), "unix.socket", "pika.role", "auth"] {
        assert!(!text.contains(secret), "{secret} shown to a tenant: {text}");
    }
    // An admin token (`token add --admin`): the details.
    let root = server.add_admin_token("root");
    let (status, details) = api.call(Method::GET, HEALTH_PATH, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert!(
        details["checks"].as_array().unwrap().len() >= 3,
        "{details}"
    );
    // The serving image's provenance (the test image carries it: scripts/lib/test-image.sh).
    let image = details["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == json!("image"))
        .unwrap_or_else(|| panic!("no image check: {details}"));
    let detail = image["detail"].as_str().unwrap();
    assert!(
        image["ok"] == json!(true)
            && detail.contains("pika.source-rev=")
            && detail.contains("pika.role="),
        "{details}"
    );

    let (status, record) = api.provision(&alice, json!({"name": "first"})).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_eq!(record["state"], json!(AgentState::Running.as_str()));
    assert_eq!(record["owner"], json!("alice"));
    assert_eq!(record["name"], json!("first"));
    assert_eq!(record["incus"]["guest_role"], json!(MANAGED.as_str()));
    assert_eq!(
        record["incus"]["image_alias"],
        json!(MANAGED.default_image_alias())
    );
    assert_eq!(record["incus"]["project"], json!(project.name));
    let instance_name = record["instance_name"].as_str().unwrap().to_owned();
    assert_eq!(
        instance_name,
        format!("pika-agent-{}", record["id"].as_str().unwrap())
    );

    let instance = project.instance(&instance_name).expect("instance exists");
    assert_eq!(instance["status"], json!("Running"));
    let keys = pika_keys(&instance);
    assert_eq!(key(&keys, GUEST_ROLE_KEY), Some(MANAGED.as_str()));
    assert_eq!(key(&keys, AGENT_ID_KEY), record["id"].as_str());
    assert_eq!(key(&keys, OWNER_KEY), Some("alice"));
    let server_id = pika_server::store::Store::open(&dir.path().join("agents.db"))
        .unwrap()
        .server_id()
        .to_owned();
    assert_eq!(key(&keys, SERVER_ID_KEY), Some(server_id.as_str()));
    assert_eq!(instance["devices"]["root"]["pool"], json!(storage_pool()));
    assert_eq!(instance["profiles"], json!([TEST_PROFILE]));

    let (status, shown) = api
        .call(Method::GET, &agent_path(&record["id"]), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, record);
    assert_eq!(api.list(&alice).await, vec![record.clone()]);

    let (status, _) = api
        .call(
            Method::DELETE,
            &agent_path(&record["id"]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(project.instance(&instance_name).is_none(), "instance gone");
    let (status, _) = api
        .call(Method::GET, &agent_path(&record["id"]), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(api.list(&alice).await.is_empty());
    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn custom_alias_carries_no_role() {
    let (project, dir) = scratch("api-custom");
    project.import_image("pika-test/custom");
    let server = start(
        dir.path(),
        &project,
        &[("PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES", "pika-test/custom")],
    );
    let api = Api::new(&server);
    let token = server.add_token("alice");

    // Request data cannot reach the server's user.pika.* keys, whatever it tries: unknown
    // fields are refused outright.
    let sneaky = json!({OWNER_KEY: "mallory", GUEST_ROLE_KEY: MANAGED.as_str()});
    for body in [
        json!({"incus": {"image_alias": "pika-test/custom", "config": sneaky}}),
        json!({"config": sneaky}),
        json!({"owner": "mallory"}),
    ] {
        let (status, error) = api.provision(&token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(
            error["error"].as_str().unwrap().contains("unknown field"),
            "{error}"
        );
    }
    assert!(api.list(&token).await.is_empty());
    let (status, record) = api
        .provision(
            &token,
            json!({"incus": {"image_alias": "pika-test/custom"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert!(record["incus"].get("guest_role").is_none(), "{record}");
    assert_eq!(record["incus"]["image_alias"], json!("pika-test/custom"));
    let instance = project
        .instance(record["instance_name"].as_str().unwrap())
        .unwrap();
    let keys = pika_keys(&instance);
    assert_eq!(key(&keys, GUEST_ROLE_KEY), None, "{keys:?}");
    assert_eq!(key(&keys, OWNER_KEY), Some("alice"), "{keys:?}");
    assert_eq!(record["owner"], json!("alice"));
    assert!(key(&keys, AGENT_ID_KEY).is_some());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn other_roles_and_bad_bodies_are_rejected_without_side_effects() {
    let (project, _dir, server) = started("api-reject", &[]);
    let api = Api::new(&server);
    let token = server.add_token("alice");

    for role in IncusGuestRole::ALL.iter().filter(|r| **r != MANAGED) {
        let (status, body) = api
            .provision(&token, json!({"incus": {"guest_role": role.as_str()}}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["error"],
            json!(format!(
                "managed runtime currently only supports incus.guest_role = {MANAGED}"
            ))
        );
    }
    let (status, body) = api
        .provision(&token, json!({"incus": {"guest_role": "no-such-role"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("incus.guest_role"),
        "names the field: {error}"
    );
    for role in IncusGuestRole::ALL {
        assert!(error.contains(role.as_str()), "lists {role}: {error}");
    }
    let (status, body) = api
        .provision(
            &token,
            json!({"incus": {"image_alias": "pika-test/missing"}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an alias the operator did not allow: {body}"
    );
    assert_eq!(body["field"], json!("incus.image_alias"), "{body}");

    assert!(project.instances().is_empty(), "no instance was created");
    assert!(
        api.list(&token).await.is_empty(),
        "no refused request left a row"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn tokens_are_required_and_owners_are_isolated() {
    let (project, _dir, server) = started("api-auth", &[]);
    let api = Api::new(&server);
    let alice = server.add_token("alice");
    let bob = server.add_token("bob");

    let (status, body) = api.call(Method::GET, AGENTS_PATH, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = api
        .call(
            Method::POST,
            AGENTS_PATH,
            Some("pika_not-a-token"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(project.instances().is_empty());

    let (status, record) = api.provision(&alice, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let path = agent_path(&record["id"]);
    assert!(api.list(&bob).await.is_empty(), "bob sees none of alice's");
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = api.call(method, &path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{path}/reprovision"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(project.instances().len(), 1, "bob touched nothing");
    assert_eq!(api.list(&alice).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn reprovision_keeps_stored_params_and_applies_new_ones() {
    let (project, dir) = scratch("api-reprov");
    project.incus_ok(&["profile", "create", "pika-test-2"]);
    let server = start(
        dir.path(),
        &project,
        &[("PIKA_AGENT_INCUS_ALLOWED_PROFILES", "pika-test-2")],
    );
    let api = Api::new(&server);
    let token = server.add_token("alice");

    let (status, record) = api.provision(&token, json!({"name": "re"})).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let uuid = |project: &TestProject, record: &Value| {
        let name = record["instance_name"].as_str().unwrap();
        project.instance(name).unwrap()["config"]["volatile.uuid"].clone()
    };
    let first_uuid = uuid(&project, &record);
    let path = format!("{}/reprovision", agent_path(&record["id"]));

    // No parameters: same stored params, a fresh instance.
    let (status, again) = api
        .call(Method::POST, &path, Some(&token), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["incus"], record["incus"]);
    assert_eq!(again["state"], json!("running"));
    let second_uuid = uuid(&project, &again);
    assert_ne!(first_uuid, second_uuid, "the instance was recreated");
    assert_eq!(project.instances().len(), 1, "the old instance is gone");

    // A new profile: applied; everything else kept, role still materialized.
    let (status, changed) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(json!({"incus": {"profile": "pika-test-2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["incus"]["profile"], json!("pika-test-2"));
    assert_eq!(changed["incus"]["project"], record["incus"]["project"]);
    assert_eq!(changed["incus"]["guest_role"], json!(MANAGED.as_str()));
    assert_eq!(changed["name"], json!("re"));
    let instance = project
        .instance(changed["instance_name"].as_str().unwrap())
        .unwrap();
    assert_eq!(instance["profiles"], json!(["pika-test-2"]));
    assert_eq!(
        key(&pika_keys(&instance), GUEST_ROLE_KEY),
        Some(MANAGED.as_str())
    );
    assert_eq!(project.instances().len(), 1, "no leftover instance");

    // Another role is refused and changes nothing.
    if let Some(other) = IncusGuestRole::ALL.iter().find(|r| **r != MANAGED) {
        let (status, _) = api
            .call(
                Method::POST,
                &path,
                Some(&token),
                Some(json!({"incus": {"guest_role": other.as_str()}})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(project.instances().len(), 1);
    }
}

#[test]
fn invalid_guest_role_env_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = server::server_command(&ServerSetup {
        bin: Path::new(BIN),
        dir: dir.path(),
        project: Some("pika-test-never-used"),
        env: vec![("PIKA_AGENT_INCUS_GUEST_ROLE".into(), "openclaw-typo".into())],
    });
    let output = run(&mut command);
    assert!(!output.status.success(), "must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PIKA_AGENT_INCUS_GUEST_ROLE"),
        "names the variable: {stderr}"
    );
    for role in IncusGuestRole::ALL {
        assert_eq!(
            stderr.matches(role.as_str()).count(),
            1,
            "lists {role} once: {stderr}"
        );
    }
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(!dir.path().join("agents.db").exists(), "nothing was opened");
}

#[test]
fn help_and_usage_errors() {
    let output = run(Command::new(BIN).arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("token"));
    // Every setting shows its variable; those with a default show it.
    use pika_server::config::{ENV_DB, ENV_LISTEN, ENV_STATE_DIR, ENV_TOKENS_FILE};
    use pika_server::incus_keys::env;
    for var in [
        ENV_LISTEN,
        ENV_STATE_DIR,
        ENV_DB,
        ENV_TOKENS_FILE,
        env::SOCKET,
        env::ENDPOINT,
        env::PROJECT,
        env::PROFILE,
        env::STORAGE_POOL,
        env::GUEST_ROLE,
        env::IMAGE_ALIAS,
        env::INSECURE_TLS,
        env::CLIENT_CERT_PATH,
        env::CLIENT_KEY_PATH,
        env::SERVER_CERT_PATH,
        env::ALLOWED_ENDPOINTS,
        env::INSECURE_TLS_ENDPOINTS,
        env::ALLOWED_PROJECTS,
        env::ALLOWED_PROFILES,
        env::ALLOWED_STORAGE_POOLS,
        env::ALLOWED_IMAGE_ALIASES,
    ] {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "--help lists {var}: {help}"
        );
    }
    for default in [
        pika_server::config::DEFAULT_LISTEN,
        pika_server::config::DEFAULT_STATE_DIR,
        pika_server::config::DEFAULT_INCUS_SOCKET,
    ] {
        assert!(help.contains(&format!("[default: {default}]")), "{default}");
    }
    let output = run(Command::new(BIN).arg("no-such-command"));
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn healthz_names_what_is_missing() {
    let (_project, _dir, server) = started(
        "api-health",
        &[("PIKA_AGENT_INCUS_IMAGE_ALIAS", "pika-test/absent")],
    );
    let api = Api::new(&server);
    let token = server.add_admin_token("root");
    let (status, verdict) = api.call(Method::GET, HEALTHZ_PATH, None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{verdict}");
    assert_eq!(verdict, json!({"ok": false}));
    let (status, report) = api.call(Method::GET, HEALTH_PATH, Some(&token), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == json!(false))
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["name"], json!("incus_objects"), "{report}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("pika-test/absent"),
        "{report}"
    );
    drop(server);

    // No project configured: a config error, not a skip.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerSetup {
        bin: Path::new(BIN),
        dir: dir.path(),
        project: None,
        env: vec![],
    });
    let token = server.add_admin_token("root");
    let (status, report) = Api::new(&server)
        .call(Method::GET, HEALTH_PATH, Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["checks"][0]["name"], json!("config"));
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("PIKA_AGENT_INCUS_PROJECT"),
        "{report}"
    );
}
