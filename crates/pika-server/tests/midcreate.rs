//! incusd's connection dying mid-create (issue 21): the create request reached Incus, its answer
//! never came back. A fault-injecting proxy sits between the server and the real incusd socket.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{post, scratch, start};
use pika_managed_agent_contract::AGENTS_PATH;
use pika_server::incus_keys::AGENT_ID_KEY;
use pika_test_support::server::incus_socket;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Forwards every connection to incusd. The first instance create (`POST /1.0/instances`) is
/// forwarded whole, and once incusd starts answering it, both sides are closed: Incus has the
/// request, the server never sees the answer.
fn cutting_proxy(listen: PathBuf, upstream: PathBuf) -> Arc<AtomicBool> {
    let armed = Arc::new(AtomicBool::new(true));
    let listener = UnixListener::bind(&listen).unwrap();
    let cut = Arc::clone(&armed);
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (upstream, armed) = (upstream.clone(), Arc::clone(&cut));
            tokio::spawn(async move {
                let Ok(server) = UnixStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let cutting = Arc::new(AtomicBool::new(false));
                let mark = Arc::clone(&cutting);
                let up = tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buffer[..n]);
                        let text = String::from_utf8_lossy(&seen);
                        if (text.contains("POST /1.0/instances?")
                            || text.contains("POST /1.0/instances "))
                            && armed.swap(false, Ordering::SeqCst)
                        {
                            mark.store(true, Ordering::SeqCst);
                        }
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cutting.load(Ordering::SeqCst) {
                        // incusd answered the create: the connection "dies" here.
                        break;
                    }
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    armed
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_create_whose_connection_dies_leaves_no_instance() {
    let (project, dir) = scratch("cut");
    let socket = dir.path().join("proxy.socket");
    let armed = cutting_proxy(socket.clone(), PathBuf::from(incus_socket()));
    let srv = start(
        dir.path(),
        &project,
        &[("INCUS_SOCKET", socket.to_str().unwrap())],
    );
    let token = srv.add_token("alice");
    let (status, body) = post(&srv.url, &token, AGENTS_PATH, &json!({})).await;
    assert!(!armed.load(Ordering::SeqCst), "the create was cut");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["agent"]["state"], json!("failed"), "{body}");
    let id = body["agent"]["id"].as_str().unwrap().to_owned();
    let labelled = || {
        project
            .instances()
            .into_iter()
            .filter(|i| i["config"][AGENT_ID_KEY] == json!(id))
            .map(|i| format!("{} {}", i["name"], i["status"]))
            .collect::<Vec<_>>()
    };
    // At the answer, and a while later (Incus went on with the create it had received).
    assert_eq!(labelled(), Vec::<String>::new(), "{}", srv.log());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(labelled(), Vec::<String>::new(), "{}", srv.log());
}
