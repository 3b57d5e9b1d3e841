//! An agent provisioned through pika-server runs in an instance with its role's runtime contract:
//! the role's limits and instance config, read back from the real incusd.

mod common;

use common::{client, started};
use pika_managed_agent_contract::{AgentProvisionRequest, AgentState, IncusGuestRole};
use serde_json::json;

const MANAGED: IncusGuestRole = IncusGuestRole::ManagedOpenclaw;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn the_agents_instance_carries_the_roles_limits_and_instance_config() {
    let (project, _dir, server) = started("api-contract", &[]);
    let api = client(&server, &server.add_token("alice"));
    let request = AgentProvisionRequest {
        name: Some("contract".into()),
        ..AgentProvisionRequest::default()
    };
    let record = match api.provision(&request).await {
        Ok(created) => created.agent,
        Err(err) => panic!("provisioning: {err}"),
    };
    assert_eq!(record.state, AgentState::Running, "{record:?}");

    let instance = project
        .instance(&record.instance_name)
        .expect("the agent's instance exists");
    let config = &instance["config"];
    assert_eq!(config["limits.cpu"], json!(MANAGED.cpu().to_string()));
    assert_eq!(
        config["limits.memory"],
        json!(format!("{}MiB", MANAGED.memory_mib()))
    );
    for (key, value) in MANAGED.instance_config() {
        assert_eq!(config[*key], json!(value), "{key}: {config}");
    }
    // The whole launch config, minus what Incus knows only for VMs (the stand-in is a container).
    for (key, value) in MANAGED.launch_config() {
        if pika_incus::api::is_vm_only_config_key(&key) {
            assert!(config.get(&key).is_none(), "{key}: {config}");
        } else {
            assert_eq!(config[&key], json!(value), "{key}: {config}");
        }
    }
}
