//! Lifecycle findings of issue 21 against the real `pika-server`, incusd and SQLite: exclusive
//! deletes, deletes that check the labels, failed requests' idempotency keys, the instance watcher,
//! and the tokens file.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{delete, get, started};
use pika_managed_agent_contract::client::IDEMPOTENT_REPLAYED_HEADER;
use pika_managed_agent_contract::{
    AGENTS_PATH, IDEMPOTENCY_KEY_HEADER, IncusGuestRole, agent_path,
};
use pika_server::auth::hash_token;
use pika_server::incus_keys::AGENT_ID_KEY;
use pika_test_support::server::{Server, TEST_PROFILE};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `POST /v1/agents` with `headers`: (status, replayed, body).
async fn post(server: &Server, token: &str, headers: &[(&str, &str)]) -> (StatusCode, bool, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{AGENTS_PATH}", server.url))
        .bearer_auth(token)
        .json(&json!({}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = common::send(request).await;
    let replayed = answer.headers.contains_key(IDEMPOTENT_REPLAYED_HEADER);
    (answer.status, replayed, answer.body)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn concurrent_deletes_of_one_agent_give_one_204_and_409_busy() {
    const AGENTS: usize = 12;
    let (project, _dir, srv) = started("del-race", &[]);
    let token = srv.add_token("alice");
    let made = futures_util::future::join_all((0..AGENTS).map(|_| post(&srv, &token, &[]))).await;
    let ids: Vec<String> = made
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // Every agent deleted twice at once: 24 DELETEs in flight.
    let deletes = ids.iter().flat_map(|id| {
        let (url, token) = (srv.url.clone(), token.clone());
        [id.clone(), id.clone()].map(move |id| {
            let (url, token) = (url.clone(), token.clone());
            async move { (id.clone(), delete(&url, &token, &agent_path(&id)).await) }
        })
    });
    let mut outcomes: BTreeMap<String, Vec<(StatusCode, Value)>> = BTreeMap::new();
    for (id, answer) in futures_util::future::join_all(deletes).await {
        outcomes.entry(id).or_default().push(answer);
    }
    for (id, answers) in &outcomes {
        let gone = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::NO_CONTENT)
            .count();
        let busy = answers
            .iter()
            .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == json!("busy"))
            .count();
        assert_eq!((gone, busy), (1, 1), "agent {id}: {answers:?}");
    }
    assert!(project.instances().is_empty(), "every instance removed");
    let (_, list) = get(&srv.url, &token, AGENTS_PATH).await;
    assert_eq!(list["agents"], json!([]), "every row removed");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn delete_leaves_an_unlabelled_instance_of_the_same_name_alone() {
    // No watcher: the impostor is in place before anything looks.
    let (project, _dir, srv) = started("impostor", &[("PIKA_AGENT_INCUS_MEMBER_CHECK_SECS", "0")]);
    let token = srv.add_token("alice");
    let (status, _, agent) = post(&srv, &token, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let (id, name) = (
        agent["id"].as_str().unwrap(),
        agent["instance_name"].as_str().unwrap(),
    );
    // Someone replaces the agent's instance with their own under the same name, unlabelled.
    project.incus_ok(&["delete", "--force", name]);
    let pool = pika_test_support::storage_pool();
    project.incus_ok(&[
        "init",
        IncusGuestRole::ManagedOpenclaw.default_image_alias(),
        name,
        "--profile",
        TEST_PROFILE,
        "--storage",
        &pool,
    ]);
    let (status, body) = delete(&srv.url, &token, &agent_path(id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let survivor = project.instance(name).expect("the impostor survives");
    assert!(survivor["config"][AGENT_ID_KEY].is_null());
    let (status, _) = get(&srv.url, &token, &agent_path(id)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the agent (its instance gone) is deleted"
    );
    assert!(
        srv.log()
            .contains("does not carry its agent and server IDs"),
        "{}",
        srv.log()
    );
    project.incus_ok(&["delete", "--force", name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_failed_requests_idempotency_key_allows_a_fresh_attempt() {
    let (project, _dir, srv) = started("idem-fail", &[]);
    let token = srv.add_token("alice");
    // Two keys at once: refused, nothing made.
    let (status, _, body) = post(
        &srv,
        &token,
        &[
            (IDEMPOTENCY_KEY_HEADER, "k1"),
            (IDEMPOTENCY_KEY_HEADER, "k2"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], json!(IDEMPOTENCY_KEY_HEADER), "{body}");
    let (_, list) = get(&srv.url, &token, AGENTS_PATH).await;
    assert_eq!(list["agents"], json!([]));

    // A profile device whose source does not exist: instances are created but cannot start.
    project.incus_ok(&[
        "profile",
        "device",
        "add",
        TEST_PROFILE,
        "broken",
        "disk",
        "source=/nonexistent/pika-test-idem",
        "path=/mnt/broken",
    ]);
    let key = [(IDEMPOTENCY_KEY_HEADER, "retry-me")];
    let (status, replayed, failed) = post(&srv, &token, &key).await;
    assert!(status.is_server_error(), "{status}: {failed}");
    assert!(!replayed);
    let failed_id = failed["agent"]["id"]
        .as_str()
        .expect("the failed agent")
        .to_owned();
    assert_eq!(failed["agent"]["state"], json!("failed"), "{failed}");
    project.incus_ok(&["profile", "device", "remove", TEST_PROFILE, "broken"]);

    // The retry is a fresh attempt, which now succeeds; the key then binds to it.
    let (status, replayed, fresh) = post(&srv, &token, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    assert!(!replayed, "not a replay of the failure");
    assert_eq!(fresh["state"], json!("running"), "{fresh}");
    assert_ne!(fresh["id"], json!(failed_id));
    let (status, replayed, again) = post(&srv, &token, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(replayed);
    assert_eq!(again["id"], fresh["id"]);
    // The failed agent is still there to see and delete.
    let (status, row) = get(&srv.url, &token, &agent_path(&failed_id)).await;
    assert_eq!((status, &row["state"]), (StatusCode::OK, &json!("failed")));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn an_instance_deleted_behind_the_servers_back_turns_lost_while_it_runs() {
    let (project, _dir, srv) = started("vanish", &[("PIKA_AGENT_INCUS_MEMBER_CHECK_SECS", "1")]);
    let token = srv.add_token("alice");
    let (status, _, agent) = post(&srv, &token, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let (_, _, kept) = post(&srv, &token, &[]).await;
    let path = agent_path(agent["id"].as_str().unwrap());
    project.incus_ok(&[
        "delete",
        "--force",
        agent["instance_name"].as_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let (_, row) = get(&srv.url, &token, &path).await;
        if row["state"] == json!("lost") || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row["state"], json!("lost"), "{row}");
    assert!(
        row["error"].as_str().unwrap().contains("disappeared"),
        "{row}"
    );
    let (_, other) = get(&srv.url, &token, &agent_path(kept["id"].as_str().unwrap())).await;
    assert_eq!(
        other["state"],
        json!("running"),
        "the other agent is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn tokens_file_missing_duplicate_and_loose_modes() {
    use std::os::unix::fs::PermissionsExt;
    let (_project, dir, srv) = started("tokfile", &[]);
    let tokens = dir.path().join("tokens");
    assert!(!tokens.exists());
    // Missing file: 503, as for a file that does not parse.
    let (status, body) = get(&srv.url, "pika_anything", AGENTS_PATH).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], json!("tokens-unavailable"));
    let alice = srv.add_token("alice");
    assert_eq!(get(&srv.url, &alice, AGENTS_PATH).await.0, StatusCode::OK);
    let good = std::fs::read_to_string(&tokens).unwrap();
    // mallory with alice's hash: alice's token must not become mallory's.
    std::fs::write(&tokens, format!("{good}mallory {}\n", hash_token(&alice))).unwrap();
    let (status, body) = get(&srv.url, &alice, AGENTS_PATH).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], json!("tokens-unavailable"));
    let log = srv.log();
    assert!(log.contains("line=2") && log.contains("as line 1"), "{log}");
    std::fs::write(&tokens, &good).unwrap();
    assert_eq!(get(&srv.url, &alice, AGENTS_PATH).await.0, StatusCode::OK);
    // World-readable: used, with an error in the log.
    assert!(!srv.log().contains("may be read by its group or others"));
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&tokens, format!("{good}# touched\n")).unwrap();
    assert_eq!(get(&srv.url, &alice, AGENTS_PATH).await.0, StatusCode::OK);
    assert!(
        srv.log().contains("may be read by its group or others"),
        "{}",
        srv.log()
    );
}
