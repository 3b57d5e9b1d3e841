//! The warm pool (issue 22) against the real `pika-server`, incusd and SQLite, on the busybox
//! stand-in: concurrent claims, a crash between claim and record, an alias move, reconcile, and
//! a second server on the same project.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Stop, get, kill_switch, post, restart, scratch, start, started};
use pika_managed_agent_contract::{AGENTS_PATH, HEALTH_PATH, IncusGuestRole};
use pika_server::incus_keys::{AGENT_ID_KEY, POOL_KEY, SERVER_ID_KEY};
use pika_test_support::TestProject;
use pika_test_support::server;
use reqwest::StatusCode;
use serde_json::{Value, json};

const POOL_CHECK: &str = "pool.managed-openclaw";

/// `POST /v1/agents` with an empty body.
async fn post_agent(url: &str, token: &str) -> (StatusCode, Value) {
    post(url, token, AGENTS_PATH, &json!({})).await
}

/// The pool's health check detail (admin token).
async fn pool_detail(url: &str, admin: &str) -> String {
    let (_, report) = get(url, admin, HEALTH_PATH).await;
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == POOL_CHECK)
        .map(|c| c["detail"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| format!("no {POOL_CHECK} check in {report}"))
}

/// Waits until the pool reports `ready` members and none launching.
async fn wait_ready(url: &str, admin: &str, ready: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The health report is cached for a second.
        let detail = pool_detail(url, admin).await;
        if detail.contains(&format!("ready {ready} ")) && detail.contains("launching 0") {
            return detail;
        }
        assert!(Instant::now() < deadline, "pool not ready: {detail}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The project's instances carrying this pool label (unclaimed members), by name.
fn pool_members(project: &TestProject, server_id: Option<&str>) -> BTreeSet<String> {
    project
        .instances()
        .into_iter()
        .filter(|i| {
            let config = &i["config"];
            config[POOL_KEY].as_str().is_some_and(|v| !v.is_empty())
                && server_id.is_none_or(|id| config[SERVER_ID_KEY] == id)
        })
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

fn server_id_of(project: &TestProject, instance: &str) -> String {
    project.instance(instance).unwrap()["config"][SERVER_ID_KEY]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn twenty_concurrent_posts_with_a_pool_of_four_never_share_a_guest() {
    let (project, _dir, srv) = started("pool-race", &[("PIKA_AGENT_POOL_SIZE", "4")]);
    let (token, admin) = (srv.add_token("alice"), srv.add_admin_token("ops"));
    wait_ready(&srv.url, &admin, 4).await;
    let warm = pool_members(&project, None);
    assert_eq!(warm.len(), 4, "{warm:?}");
    let made = futures_util::future::join_all((0..20).map(|_| post_agent(&srv.url, &token))).await;
    let mut instances = BTreeSet::new();
    for (status, body) in &made {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_eq!(body["state"], "running", "{body}");
        let name = body["instance_name"].as_str().unwrap().to_owned();
        // The instance is the agent's: its labels name the agent, the pool label is gone.
        let instance = project
            .instance(&name)
            .expect("the agent's instance exists");
        assert_eq!(instance["config"][AGENT_ID_KEY], body["id"], "{name}");
        assert!(
            instance["config"][POOL_KEY]
                .as_str()
                .is_none_or(str::is_empty),
            "{name} still carries the pool label"
        );
        assert!(instances.insert(name.clone()), "two agents on {name}");
    }
    let claimed: Vec<_> = instances.intersection(&warm).collect();
    assert_eq!(
        claimed.len(),
        4,
        "every warm guest was claimed once: {claimed:?}"
    );
    let gateways: BTreeSet<_> = made
        .iter()
        .map(|(_, b)| b["gateway_url"].to_string())
        .collect();
    assert_eq!(gateways.len(), 20, "20 distinct gateway ports");
    // The pool refills in the background, with new guests.
    wait_ready(&srv.url, &admin, 4).await;
    let refilled = pool_members(&project, None);
    assert!(refilled.is_disjoint(&instances), "{refilled:?}");
    assert_eq!(project.instance_names().len(), 24);
    let (_, list) = get(&srv.url, &token, AGENTS_PATH).await;
    assert_eq!(
        list["agents"].as_array().unwrap().len(),
        20,
        "pool guests are no agents"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn kill_9_between_claim_and_record_leaves_no_orphan_and_no_dangling_row() {
    let (project, dir) = scratch("pool-crash");
    // The first request patching an instance: a claim stamping the agent's labels (launches patch
    // too, adding the gateway's proxy device: so the switch is armed once the pool is full, and the
    // refill a claim wakes creates its guest before it patches).
    let switch = kill_switch(dir.path(), |request| {
        request.starts_with("PATCH /1.0/instances/")
    });
    let env = [
        ("PIKA_AGENT_POOL_SIZE", "2"),
        ("INCUS_SOCKET", switch.socket.to_str().unwrap()),
    ];
    let srv = start(dir.path(), &project, &env);
    let (token, admin) = (srv.add_token("alice"), srv.add_admin_token("ops"));
    wait_ready(&srv.url, &admin, 2).await;
    switch.arm(&srv);
    let before = pool_members(&project, None);
    let url = srv.url.clone();
    let request = tokio::spawn(async move { post_agent(&url, &token).await });
    switch
        .wait_killed(Duration::from_secs(60), "the claim never stamped")
        .await;
    // The claim was committed, the guest not yet stamped, when the server died.
    request.abort();
    let srv = restart(srv, Stop::Kill, &project, &[("PIKA_AGENT_POOL_SIZE", "2")]);
    let (token, admin) = (srv.add_token("alice"), srv.add_admin_token("ops"));
    wait_ready(&srv.url, &admin, 2).await;
    let (_, list) = get(&srv.url, &token, AGENTS_PATH).await;
    let agents = list["agents"].as_array().unwrap().clone();
    assert_eq!(agents.len(), 1, "the claimed agent's row: {list}");
    let agent = &agents[0];
    let instances = project.instance_names();
    // Every instance is the agent's (when it runs) or a ready pool member: no orphan.
    let members = pool_members(&project, None);
    let mut accounted = members.clone();
    match agent["state"].as_str().unwrap() {
        "running" => {
            let name = agent["instance_name"].as_str().unwrap();
            assert!(before.iter().any(|b| b == name), "the claimed guest");
            let instance = project.instance(name).unwrap();
            assert_eq!(instance["config"][AGENT_ID_KEY], agent["id"], "adopted");
            accounted.insert(name.to_owned());
        }
        "failed" => {}
        other => panic!("dangling row in state {other}: {agent}"),
    }
    assert_eq!(
        instances.iter().cloned().collect::<BTreeSet<_>>(),
        accounted,
        "instances {instances:?}, pool {members:?}, agent {agent}"
    );
    // The agent deletes like any other, and then only the pool is left.
    let id = agent["id"].as_str().unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{}{AGENTS_PATH}/{id}", srv.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        project
            .instance_names()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        pool_members(&project, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn an_alias_move_drains_the_pool_and_no_agent_gets_the_old_image() {
    let (project, _dir, srv) = started("pool-alias", &[("PIKA_AGENT_POOL_SIZE", "2")]);
    let alias = IncusGuestRole::ManagedOpenclaw.default_image_alias();
    let old = project.alias_target(alias);
    let (token, admin) = (srv.add_token("alice"), srv.add_admin_token("ops"));
    let detail = wait_ready(&srv.url, &admin, 2).await;
    assert!(detail.contains(&old[..12]), "members per image: {detail}");
    let warm = pool_members(&project, None);
    // A new image under the alias (as `pika-guest image import` does).
    let images = tempfile::tempdir().unwrap();
    let built = pika_test_support::image::build_container(
        &images.path().join("new"),
        "pika pool test image",
        "pika-pool-new",
    );
    let [metadata, rootfs] = built.import_args();
    project.incus_ok(&["image", "import", &metadata, &rootfs, "--alias", "pool-new"]);
    let new = project.alias_target("pool-new");
    assert_ne!(new, old);
    project.incus_ok(&["image", "alias", "delete", alias]);
    project.incus_ok(&["image", "alias", "create", alias, &new]);
    // At once, before any drain: the agent gets the new image, not a warm guest of the old one.
    let (status, body) = post_agent(&srv.url, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let name = body["instance_name"].as_str().unwrap();
    let instance = project.instance(name).unwrap();
    assert_eq!(
        instance["config"]["volatile.base_image"], new,
        "{name} runs the old image"
    );
    // The old members are drained and replaced.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let detail = wait_ready(&srv.url, &admin, 2).await;
        let members = pool_members(&project, None);
        if members.is_disjoint(&warm) && detail.contains(&new[..12]) && !detail.contains(&old[..12])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {detail} {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for member in pool_members(&project, None) {
        let instance = project.instance(&member).unwrap();
        assert_eq!(instance["config"]["volatile.base_image"], new, "{member}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn reconcile_leaves_pool_members_alone_and_lists_none() {
    let (project, _dir, srv) = started("pool-reconcile", &[("PIKA_AGENT_POOL_SIZE", "2")]);
    let admin = srv.add_admin_token("ops");
    wait_ready(&srv.url, &admin, 2).await;
    let warm = pool_members(&project, None);
    let srv = restart(srv, Stop::Term, &project, &[("PIKA_AGENT_POOL_SIZE", "2")]);
    let (token, admin) = (srv.add_token("alice"), srv.add_admin_token("ops"));
    wait_ready(&srv.url, &admin, 2).await;
    assert_eq!(
        pool_members(&project, None),
        warm,
        "the same warm guests survive the restart's reconcile: {}",
        srv.log()
    );
    let (_, list) = get(&srv.url, &token, AGENTS_PATH).await;
    assert_eq!(list["agents"], json!([]), "pool guests are no agents");
    // A claimed member still gets its gateway reached through its port after the restart.
    let (status, body) = post_agent(&srv.url, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        warm.contains(body["instance_name"].as_str().unwrap()),
        "{body}"
    );
}

/// A claim reads only the server's own database (`pool_members`), so no query filter keeps B off
/// A's guests; what could take them is B's reconcile, which skips instances of another server ID
/// and, behind that, any this database never created. Either check alone keeps A's members
/// (shown by dropping each); dropping both makes this test fail at the restart.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_second_server_on_the_project_never_claims_the_first_ones_pool() {
    let project = server::project("pool-two");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(dir_a.path(), &project, &[("PIKA_AGENT_POOL_SIZE", "2")]);
    let admin_a = a.add_admin_token("ops");
    wait_ready(&a.url, &admin_a, 2).await;
    let warm_a = pool_members(&project, None);
    let id_a = server_id_of(&project, warm_a.first().unwrap());
    // B has a pool of its own on the same project.
    let b = start(dir_b.path(), &project, &[("PIKA_AGENT_POOL_SIZE", "1")]);
    let (token_b, admin_b) = (b.add_token("bob"), b.add_admin_token("ops"));
    wait_ready(&b.url, &admin_b, 1).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let (status, body) = post_agent(&b.url, &token_b).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let name = body["instance_name"].as_str().unwrap().to_owned();
        assert!(!warm_a.contains(&name), "B claimed A's {name}");
        assert_ne!(server_id_of(&project, &name), id_a);
        made.push(name);
    }
    // B's restart (its reconcile) leaves A's members alone.
    let b = restart(b, Stop::Term, &project, &[("PIKA_AGENT_POOL_SIZE", "1")]);
    let admin_b = b.add_admin_token("ops");
    wait_ready(&b.url, &admin_b, 1).await;
    assert_eq!(pool_members(&project, Some(&id_a)), warm_a);
    let detail = wait_ready(&a.url, &admin_a, 2).await;
    assert!(detail.contains("ready 2 "), "{detail}");
}
