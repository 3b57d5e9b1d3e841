//! Fault tests of the real `pika-server`: Incus unreachable, crashes between row and instance,
//! and many concurrent provisions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::{delete, get, kill_switch, post, scratch, start, started};
use pika_managed_agent_contract::{
    AGENTS_PATH, AgentState, HEALTH_PATH, IncusGuestRole, IncusProvisionParams, agent_path,
};
use pika_server::incus_keys::{AGENT_ID_KEY, SERVER_ID_KEY, instance_name};
use pika_server::store::Store;
use pika_test_support::server::TEST_PROFILE;
use pika_test_support::{TestProject, storage_pool};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MANAGED: IncusGuestRole = IncusGuestRole::ManagedOpenclaw;

/// Rows and instances agree: no row is mid-flight, every running row has its running instance,
/// and every instance carrying an agent ID belongs to a running row.
fn assert_consistent(project: &TestProject, db: &Path) -> (usize, usize) {
    let store = Store::open(db).unwrap();
    let rows = store.list(None).unwrap();
    let instances: BTreeMap<String, Value> = project
        .instances()
        .into_iter()
        .filter_map(|i| {
            let id = i["config"][AGENT_ID_KEY].as_str()?.to_owned();
            Some((id, i))
        })
        .collect();
    // Counted first, so a failure reports the figures, then asserted one by one.
    let dangling = rows
        .iter()
        .filter(|r| !matches!(r.state, AgentState::Running | AgentState::Failed))
        .count();
    let orphans = instances
        .keys()
        .filter(|id| {
            !rows
                .iter()
                .any(|r| &r.id == *id && r.state == AgentState::Running)
        })
        .count();
    eprintln!(
        "consistency: {} rows, {} agent instances, {orphans} orphans, {dangling} dangling rows",
        rows.len(),
        instances.len()
    );
    for row in &rows {
        assert!(
            matches!(row.state, AgentState::Running | AgentState::Failed),
            "dangling row {} in state {}",
            row.id,
            row.state
        );
        if row.state == AgentState::Running {
            let instance = instances
                .get(&row.id)
                .unwrap_or_else(|| panic!("running row {} has no instance", row.id));
            assert_eq!(instance["status"], json!("Running"));
            assert_eq!(instance["name"], json!(row.instance_name));
        }
    }
    let running: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.state == AgentState::Running)
        .map(|r| r.id.as_str())
        .collect();
    for id in instances.keys() {
        assert!(
            running.contains(id.as_str()),
            "orphan instance of agent {id}"
        );
    }
    (running.len(), rows.len() - running.len())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn unreachable_incus_gives_503_and_no_provisioning_row() {
    let (project, dir) = scratch("fault-down");
    // A socket file nobody listens on: what a stopped incusd leaves behind (connection refused).
    // The shared incusd itself keeps running for the other suites.
    let dead = dir.path().join("incus.socket");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let server = start(
        dir.path(),
        &project,
        &[("INCUS_SOCKET", dead.to_str().unwrap())],
    );
    let token = server.add_token("alice");
    let root = server.add_admin_token("root");

    let (status, report) = get(&server.url, &root, HEALTH_PATH).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let incus = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == json!("incus"))
        .expect("an incus check")
        .clone();
    assert_eq!(incus["ok"], json!(false), "{report}");
    assert!(
        incus["detail"]
            .as_str()
            .unwrap()
            .contains("cannot talk to incus"),
        "{report}"
    );

    let (status, body) = post(&server.url, &token, AGENTS_PATH, &json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("cannot talk to incus"), "{error}");
    assert!(
        error.contains(&dead.display().to_string()),
        "names the socket: {error}"
    );
    assert_eq!(body["code"], json!("incus-unavailable"), "{body}");

    let store = Store::open(&dir.path().join("agents.db")).unwrap();
    assert!(
        store.list(None).unwrap().is_empty(),
        "checked before any row was written"
    );
    assert!(project.instances().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn restart_reconciles_rows_and_instances_left_by_a_crash() {
    let (project, dir) = scratch("fault-crash");
    let db = dir.path().join("agents.db");
    let server = start(dir.path(), &project, &[]);
    let token = server.add_token("alice");
    let (status, kept) = post(&server.url, &token, AGENTS_PATH, &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    server.kill();

    // What a crash can leave behind, made by hand while the server is down.
    let params = IncusProvisionParams {
        guest_role: Some(MANAGED),
        project: Some(project.name.clone()),
        profile: Some(TEST_PROFILE.into()),
        storage_pool: Some(storage_pool()),
        image_alias: Some(MANAGED.default_image_alias().into()),
        ..Default::default()
    };
    let store = Store::open(&db).unwrap();
    let server_id = store.server_id().to_owned();
    // 1. Row written, killed before Incus was called.
    store
        .insert_provisioning("c0ffee0000000001", "alice", None, &params, None, None)
        .unwrap();
    // 2. Row written, instance created but not started.
    store
        .insert_provisioning("c0ffee0000000002", "alice", None, &params, None, None)
        .unwrap();
    let create = |name: &str, agent_id: &str, server: &str| {
        let mut args = vec![
            "init".to_owned(),
            MANAGED.default_image_alias().to_owned(),
            name.to_owned(),
            "--profile".into(),
            TEST_PROFILE.into(),
            "--storage".into(),
            storage_pool(),
        ];
        if !agent_id.is_empty() {
            args.extend(["--config".into(), format!("{AGENT_ID_KEY}={agent_id}")]);
        }
        if !server.is_empty() {
            args.extend(["--config".into(), format!("{SERVER_ID_KEY}={server}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        project.incus_ok(&args);
    };
    create(
        &instance_name("c0ffee0000000002"),
        "c0ffee0000000002",
        &server_id,
    );
    // 3. A delete that crashed after claiming the row.
    store
        .insert_provisioning("c0ffee0000000003", "alice", None, &params, None, None)
        .unwrap();
    store
        .transition(
            "c0ffee0000000003",
            &[AgentState::Provisioning],
            AgentState::Deleting,
            None,
        )
        .unwrap();
    create(
        &instance_name("c0ffee0000000003"),
        "c0ffee0000000003",
        &server_id,
    );
    // 4. An instance this database created whose row is gone (the ledger of creates has it).
    store
        .record_created(&instance_name("0000000000000ghost"), "0000000000000ghost")
        .unwrap();
    create(
        &instance_name("0000000000000ghost"),
        "0000000000000ghost",
        &server_id,
    );
    // 5. Someone else's instance in the same project: not ours, never touched.
    create("not-an-agent", "", "");
    // 6. Another server's agent in the same project: carries an agent ID, not our server ID.
    create(
        &instance_name("00000000000other"),
        "00000000000other",
        "another-server",
    );
    drop(store);

    let server = start(dir.path(), &project, &[]);
    let store = Store::open(&db).unwrap();
    let row = |id: &str| store.get(id).unwrap();
    assert_eq!(row("c0ffee0000000001").unwrap().state, AgentState::Failed);
    assert!(
        row("c0ffee0000000001")
            .unwrap()
            .error
            .unwrap()
            .contains("before the instance was created")
    );
    // The crash came before the gateway's configuration was delivered (no port, and the token
    // is never kept): the agent cannot become running, so it fails and its instance goes.
    let second = row("c0ffee0000000002").unwrap();
    assert_eq!(second.state, AgentState::Failed, "{:?}", second.error);
    assert!(
        second
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("gateway"),
        "{:?}",
        second.error
    );
    assert!(
        project
            .instance(&instance_name("c0ffee0000000002"))
            .is_none(),
        "its instance is removed"
    );
    assert!(row("c0ffee0000000003").is_none(), "the delete finished");
    assert_eq!(
        row(kept["id"].as_str().unwrap()).unwrap().state,
        AgentState::Running
    );
    assert!(
        project
            .instance(&instance_name("0000000000000ghost"))
            .is_none(),
        "orphan deleted"
    );
    assert!(
        project.instance("not-an-agent").is_some(),
        "foreign instance kept"
    );
    assert!(
        project
            .instance(&instance_name("00000000000other"))
            .is_some(),
        "another server's agent kept"
    );
    project.incus_ok(&["delete", "--force", "not-an-agent"]);
    project.incus_ok(&["delete", "--force", &instance_name("00000000000other")]);
    let (running, failed) = assert_consistent(&project, &db);
    // Running: the agent made through the API; failed: the two provisioning rows.
    assert_eq!((running, failed), (1, 2));
    assert!(server.log().contains("reconcile"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn sigkill_during_provisioning_leaves_nothing_dangling_after_restart() {
    let (project, dir) = scratch("fault-kill");
    let db = dir.path().join("agents.db");
    let server = start(dir.path(), &project, &[]);
    let token = server.add_token("alice");
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let _ = http
                    .post(format!("{url}{AGENTS_PATH}"))
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await;
            })
        })
        .collect();
    // Kill once some rows exist, while requests are still in flight.
    let store = Store::open(&db).unwrap();
    for _ in 0..500 {
        if !store.list(None).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.kill();
    for request in requests {
        let _ = request.await;
    }
    let before = store.list(None).unwrap();
    assert!(!before.is_empty(), "the kill came after the first row");

    let _server = start(dir.path(), &project, &[]);
    let (running, failed) = assert_consistent(&project, &db);
    eprintln!(
        "kill -9 trial: {} rows at the kill; after reconcile {running} running, {failed} failed, 0 orphans, 0 dangling rows",
        before.len()
    );
    assert_eq!(
        running + failed,
        before.len(),
        "rows are settled, not dropped"
    );
}

/// A crash right before the gateway's configuration is written leaves a running guest whose
/// gateway never starts. The restarted server fails that agent at once, naming why, instead of
/// waiting out the gateway timeout before it listens.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_crash_before_the_gateway_config_is_written_fails_the_agent_at_restart() {
    let (project, dir) = scratch("fault-undelivered");
    let switch = kill_switch(dir.path(), |request| {
        request.starts_with("POST /1.0/instances/")
            && request.contains("/files?")
            && request.contains("openclaw.json")
    });
    let server = start(
        dir.path(),
        &project,
        &[("INCUS_SOCKET", switch.socket.to_str().unwrap())],
    );
    switch.arm(&server);
    let token = server.add_token("alice");
    let url = server.url.clone();
    let request = tokio::spawn(async move {
        // The answer never comes: the server dies.
        let _ = reqwest::Client::new()
            .post(format!("{url}{AGENTS_PATH}"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await;
    });
    switch
        .wait_killed(
            Duration::from_secs(120),
            "the configuration was never pushed",
        )
        .await;
    request.abort();
    server.kill();

    let db = dir.path().join("agents.db");
    let _server = start(dir.path(), &project, &[]);
    assert_eq!(assert_consistent(&project, &db), (0, 1));
    let rows = Store::open(&db).unwrap().list(None).unwrap();
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains(pika_server::reconcile::UNDELIVERED),
        "failed for the missing configuration, not a timeout: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn fifty_concurrent_provisions_make_fifty_agents() {
    const N: usize = 50;
    let (project, dir, server) = started("fault-fifty", &[]);
    let token = server.add_token("alice");
    let requests = (0..N).map(|i| {
        let body = json!({"name": format!("agent-{i}")});
        let (url, token) = (server.url.clone(), token.clone());
        async move { post(&url, &token, AGENTS_PATH, &body).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut ids = BTreeSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_eq!(body["state"], json!("running"));
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), N, "no duplicate IDs");
    let instances: BTreeSet<String> = project
        .instances()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = ids.iter().map(|id| instance_name(id)).collect();
    assert_eq!(instances, expected, "one instance per agent");
    let (running, failed) = assert_consistent(&project, &dir.path().join("agents.db"));
    assert_eq!((running, failed), (N, 0));

    // And 50 concurrent deletes leave nothing.
    let deletes = ids.iter().map(|id| {
        let (url, token) = (server.url.clone(), token.clone());
        async move { delete(&url, &token, &agent_path(id)).await }
    });
    for (status, body) in futures_util::future::join_all(deletes).await {
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    assert!(project.instances().is_empty(), "every instance deleted");
    let store = Store::open(&dir.path().join("agents.db")).unwrap();
    assert!(store.list(None).unwrap().is_empty(), "every row deleted");
}
