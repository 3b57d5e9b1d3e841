//! What the pika-server integration tests share: the server binary started on a test project,
//! and raw exchanges with its API (status, headers and JSON body) for the tests that check
//! statuses and error bodies. Each test file uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pika_managed_agent_contract::AGENTS_PATH;
use pika_managed_agent_contract::client::AgentClient;
use pika_test_support::TestProject;
use pika_test_support::server::{self, Server, ServerSetup};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_pika-server");

/// How to start this crate's server on `project`, its database and tokens in `dir`.
pub fn setup<'a>(dir: &'a Path, project: &'a TestProject, env: &[(&str, &str)]) -> ServerSetup<'a> {
    ServerSetup::new(Path::new(BIN), dir, project, env)
}

pub fn start(dir: &Path, project: &TestProject, env: &[(&str, &str)]) -> Server {
    Server::start(setup(dir, project, env))
}

/// A server test project ([`server::project`]) and the scratch directory for its server.
pub fn scratch(tag: &str) -> (TestProject, TempDir) {
    (server::project(tag), tempfile::tempdir().unwrap())
}

/// [`scratch`] with a server started on it (dropped first: server, directory, project).
pub fn started(tag: &str, env: &[(&str, &str)]) -> (TestProject, TempDir, Server) {
    let (project, dir) = scratch(tag);
    let srv = start(dir.path(), &project, env);
    (project, dir, srv)
}

/// One HTTP exchange: status, headers, the JSON body (`Null` when empty) without the gateway
/// token a create, reprovision or rotate answer carries, and that token.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub gateway_token: Option<String>,
}

/// Sends `request`; a body that is neither empty nor JSON fails the test.
pub async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let mut body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    let gateway_token = server::take_gateway_token(&mut body);
    Answer {
        status,
        headers,
        body,
        gateway_token,
    }
}

/// `METHOD url+path` with, when given, the bearer `token` and a JSON body.
pub async fn call(
    url: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut request = reqwest::Client::new().request(method, format!("{url}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    send(request).await
}

/// `METHOD path` of `srv` with `token`, the body `{}` for a create or a reprovision: (status,
/// body without its gateway token, the token).
pub async fn exchange(
    srv: &Server,
    method: Method,
    path: &str,
    token: &str,
) -> (StatusCode, Value, Option<String>) {
    let body = (path == AGENTS_PATH || path.ends_with("/reprovision")).then(|| json!({}));
    let answer = call(&srv.url, method, path, Some(token), body.as_ref()).await;
    (answer.status, answer.body, answer.gateway_token)
}

pub async fn get(url: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let answer = call(url, Method::GET, path, Some(token), None).await;
    (answer.status, answer.body)
}

/// `POST path` with a JSON body.
pub async fn post(url: &str, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let answer = call(url, Method::POST, path, Some(token), Some(body)).await;
    (answer.status, answer.body)
}

pub async fn delete(url: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let answer = call(url, Method::DELETE, path, Some(token), None).await;
    (answer.status, answer.body)
}

/// How [`restart`] stops the running server.
pub enum Stop {
    /// SIGKILL, like a crash.
    Kill,
    /// SIGTERM, which must end it cleanly.
    Term,
}

/// Stops `srv` and starts a new server on its directory and gateway ports (the harness picked
/// them) with `env`.
pub fn restart(mut srv: Server, stop: Stop, project: &TestProject, env: &[(&str, &str)]) -> Server {
    let ports = srv
        .gateway_ports
        .take()
        .expect("the harness picked the gateway ports");
    let dir = srv.dir.clone();
    match stop {
        Stop::Kill => srv.kill(),
        Stop::Term => assert!(srv.terminate().success(), "pika-server failed on SIGTERM"),
    }
    let range = ports.range();
    let mut env = env.to_vec();
    env.push(("PIKA_AGENT_GATEWAY_PORTS", &range));
    let mut next = start(&dir, project, &env);
    next.gateway_ports = Some(ports);
    next
}

/// The typed client of `srv` with `token`.
pub fn client(srv: &Server, token: &str) -> AgentClient {
    AgentClient::new(&srv.url, token).expect("the server's URL")
}

/// A proxy in front of incusd that kills the server at one request (see [`killing_proxy`]):
/// start the server with `INCUS_SOCKET` = [`KillSwitch::socket`], then [`KillSwitch::arm`] it.
pub struct KillSwitch {
    pub socket: PathBuf,
    victim: Arc<AtomicU32>,
    killed: Arc<AtomicBool>,
}

impl KillSwitch {
    /// From now on, the first request for which `kills` holds kills `server`.
    pub fn arm(&self, server: &Server) {
        self.victim.store(server.child.id(), Ordering::SeqCst);
    }

    /// Waits (at most `within`) until the switch killed the server; panics naming `what`.
    pub async fn wait_killed(&self, within: std::time::Duration, what: &str) {
        let deadline = std::time::Instant::now() + within;
        while !self.killed.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A [`KillSwitch`] listening in `dir`, forwarding to the test incusd.
pub fn kill_switch(dir: &Path, kills: fn(&str) -> bool) -> KillSwitch {
    let switch = KillSwitch {
        socket: dir.join("incus-proxy.sock"),
        victim: Arc::new(AtomicU32::new(0)),
        killed: Arc::new(AtomicBool::new(false)),
    };
    killing_proxy(
        switch.socket.clone(),
        PathBuf::from(server::incus_socket()),
        Arc::clone(&switch.victim),
        Arc::clone(&switch.killed),
        kills,
    );
    switch
}

/// Forwards every connection to incusd, except that, once `victim` names a process, the first
/// request for which `kills` holds (given the start of its text) is never forwarded: that process
/// is killed with SIGKILL instead, and `killed` is set.
fn killing_proxy(
    listen: PathBuf,
    upstream: PathBuf,
    victim: Arc<AtomicU32>,
    killed: Arc<AtomicBool>,
    kills: fn(&str) -> bool,
) {
    let listener = UnixListener::bind(&listen).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (upstream, victim, killed) =
                (upstream.clone(), Arc::clone(&victim), Arc::clone(&killed));
            tokio::spawn(async move {
                let Ok(mut server) = UnixStream::connect(&upstream).await else {
                    return;
                };
                let mut buffer = vec![0u8; 64 * 1024];
                let mut back = vec![0u8; 64 * 1024];
                loop {
                    tokio::select! {
                        read = client.read(&mut buffer) => {
                            let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                            let text = String::from_utf8_lossy(&buffer[..n]);
                            let pid = victim.load(Ordering::SeqCst);
                            if pid != 0 && kills(&text) && !killed.swap(true, Ordering::SeqCst) {
                                let pid = pid.to_string();
                                let _ = tokio::process::Command::new("kill").args(["-KILL", &pid]).status().await;
                                return;
                            }
                            if server.write_all(&buffer[..n]).await.is_err() { return; }
                        }
                        read = server.read(&mut back) => {
                            let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                            if client.write_all(&back[..n]).await.is_err() { return; }
                        }
                    }
                }
            });
        }
    });
}
