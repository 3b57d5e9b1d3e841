//! Identity that copies cannot steal (issue 21): a copied or restored database started next to the
//! live server deletes nothing of it, and two servers on one database are refused.

mod common;

use std::process::Command;

use common::{client, scratch, setup, start};
use pika_managed_agent_contract::client::AgentClient;
use pika_managed_agent_contract::{
    AgentProvisionRequest, AgentRecord, AgentReprovisionRequest, AgentState,
};
use pika_server::incus_keys::AGENT_ID_KEY;
use pika_test_support::TestProject;
use pika_test_support::server::server_command;

async fn provision(api: &AgentClient) -> AgentRecord {
    api.provision(&AgentProvisionRequest::default())
        .await
        .expect("provisioned")
        .agent
}

async fn state_of(api: &AgentClient, id: &str) -> AgentState {
    api.get(id).await.expect("the agent").state
}

fn agent_ids(project: &TestProject) -> Vec<String> {
    let mut ids: Vec<String> = project
        .instances()
        .iter()
        .filter_map(|i| i["config"][AGENT_ID_KEY].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_copied_database_started_next_to_the_live_server_deletes_nothing() {
    let (project, live_dir) = scratch("copy");
    let live = start(live_dir.path(), &project, &[]);
    let api = client(&live, &live.add_token("alice"));
    let before = provision(&api).await;
    // An online backup with SQLite's backup API (what `sqlite3 .backup` does), while it runs.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy_db = copy_dir.path().join("agents.db");
    pika_test_support::run_ok(Command::new("sqlite3").args([
        &live_dir.path().join("agents.db").display().to_string(),
        &format!(".backup {}", copy_db.display()),
    ]));
    // The live server goes on: an agent the copy never heard of, and a reprovision whose new
    // instance the copy does not know either.
    let after = provision(&api).await;
    api.reprovision(&before.id, &AgentReprovisionRequest::default())
        .await
        .expect("reprovisioned");
    let expected = agent_ids(&project);
    assert_eq!(expected.len(), 2, "{expected:?}");

    // The copy, in its own state directory, on the same project (same server ID).
    let copy = start(copy_dir.path(), &project, &[]);
    assert_eq!(agent_ids(&project), expected, "the copy deleted nothing");
    let log = copy.log();
    assert!(!log.contains("deleting an orphan"), "{log}");
    assert!(log.contains("never created"), "{log}");
    for agent in [&before, &after] {
        let id = &agent.id;
        assert_eq!(state_of(&api, id).await, AgentState::Running, "{id}");
    }
    // And a restart of the copy (its own reconcile again) still deletes nothing.
    copy.kill();
    let copy = start(copy_dir.path(), &project, &[]);
    assert_eq!(agent_ids(&project), expected);
    drop(copy);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_second_server_on_one_database_refuses_to_start() {
    let (project, dir) = scratch("twin");
    let first = start(dir.path(), &project, &[]);
    let token = first.add_token("alice");
    let agent = provision(&client(&first, &token)).await;
    // Bounded: without the lock the twin would serve (and reconcile) for ever.
    let mut twin = server_command(&setup(dir.path(), &project, &[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the second server runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while twin.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = twin.kill();
            let _ = twin.wait();
            panic!("the second server on the same database did not refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = twin.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another pika-server")
            && stderr.contains(&format!("pid {}", first.child.id()))
            && stderr.contains("agents.db.lock"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "never ready"
    );
    let id = &agent.id;
    assert_eq!(
        state_of(&client(&first, &token), id).await,
        AgentState::Running
    );
    assert_eq!(agent_ids(&project), [id.to_owned()]);
    // Once the first is gone, the lock is free (the kernel drops it with the process).
    first.kill();
    let again = start(dir.path(), &project, &[]);
    assert_eq!(
        state_of(&client(&again, &token), id).await,
        AgentState::Running
    );
}
