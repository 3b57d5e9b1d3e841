//! Token holders are tenants: the findings of the attacker's trial (issue 12), each as a test
//! against the real `pika-server`, incusd and SQLite, and the bad-input corpus.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::{Answer, start, started};
use pika_managed_agent_contract::{
    AGENTS_PATH, HEALTH_PATH, HEALTHZ_PATH, IDEMPOTENCY_KEY_HEADER, IncusGuestRole,
    REQUEST_ID_HEADER,
};
use pika_server::incus_keys::{AGENT_ID_KEY, SERVER_ID_KEY, instance_name};
use pika_server::store::Store;
use pika_test_support::TestProject;
use pika_test_support::server;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn send(
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    let mut request = reqwest::Client::new().request(method, format!("{url}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    common::send(request).await
}

/// A request with a body larger than the server takes, sent the way curl sends one
/// (`Expect: 100-continue`, then the body while reading the answer): a client that only reads
/// after writing everything sees the connection closed instead of the 413.
fn send_oversized(url: &str, path: &str, headers: &[(&str, &str)], length: usize) -> Answer {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The body goes out after `100 Continue`, as curl sends it; the server stops reading at its
    // limit, so writing may fail once it answered and closed.
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = length;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    // Read until a final (non-1xx) answer is whole: interim `100 Continue` answers are skipped.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let (status, headers, body) = loop {
        let n = stream.read(&mut chunk).expect("the server answers");
        assert!(
            n > 0,
            "connection closed mid-answer: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&chunk[..n]);
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        while text.starts_with("HTTP/1.1 1") {
            match text.split_once("\r\n\r\n") {
                Some((_, rest)) => text = rest.to_owned(),
                None => break,
            }
        }
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        if head.starts_with("HTTP/1.1 1") {
            continue;
        }
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(
                    HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                    HeaderValue::from_str(value.trim()).unwrap(),
                );
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a content length");
        if body.len() >= length {
            break (status, headers, body[..length].to_owned());
        }
    };
    let body = body.as_str();
    let mut body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let gateway_token = server::take_gateway_token(&mut body);
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body,
        gateway_token,
    }
}

/// `POST /v1/agents` with a JSON body and a token.
async fn provision(url: &str, token: &str, body: Value, extra: &[(&str, &str)]) -> Answer {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    send(
        url,
        Method::POST,
        AGENTS_PATH,
        &headers,
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn authed(url: &str, token: &str, method: Method, path: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send(url, method, path, &[("authorization", auth.as_str())], None).await
}

/// The one error shape: message, code, request ID equal to the response header.
fn assert_error_shape(answer: &Answer, what: &str) {
    let body = &answer.body;
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: {body}"
    );
    let header = answer
        .headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(!header.is_empty(), "{what}: no request id header");
    assert_eq!(body["request_id"], json!(header), "{what}: {body}");
}

fn db_rows(dir: &Path) -> Vec<pika_managed_agent_contract::AgentRecord> {
    Store::open(&dir.join("agents.db"))
        .unwrap()
        .list(None)
        .unwrap()
}

fn instance_names(project: &TestProject) -> Vec<String> {
    let mut names = project.instance_names();
    names.sort();
    names
}

/// Incus objects a refused request must not change: instances (with status), profiles and images
/// of the given projects (a project that vanished fails the listing).
fn incus_objects(projects: &[&TestProject]) -> Vec<String> {
    let mut objects = Vec::new();
    for project in projects {
        for kind in [["list"], ["profile"], ["image"]] {
            let args: Vec<&str> = if kind[0] == "list" {
                vec!["list", "--format", "json"]
            } else {
                vec![kind[0], "list", "--format", "json"]
            };
            let text = project.incus_ok(&args);
            let items: Value = serde_json::from_str(&text).unwrap();
            for item in items.as_array().into_iter().flatten() {
                let id = item["name"]
                    .as_str()
                    .or(item["fingerprint"].as_str())
                    .unwrap_or_default();
                objects.push(format!(
                    "{}/{}/{id}/{}",
                    project.name,
                    kind[0],
                    item["status"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    objects.sort();
    objects
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn bad_input_corpus_is_refused_cleanly() {
    let project = server::project("corpus");
    project.create_profile("pika-test-other", None);
    let victim = server::project("victim");
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &project, &[]);
    let url = srv.url.clone();
    let alice = srv.add_token("alice");
    let bob = srv.add_token("bob");
    let created = provision(&url, &alice, json!({"name": "kept"}), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let agent = format!("{AGENTS_PATH}/{id}");
    let reprovision = format!("{agent}/reprovision");
    // A listening port nobody should be made to connect to.
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bait_url = format!("https://127.0.0.1:{}", bait.local_addr().unwrap().port());
    bait.set_nonblocking(true).unwrap();

    let rows_before = db_rows(dir.path());
    let objects_before = incus_objects(&[&project, &victim]);

    // A client-sent request ID is replaced by the server's own (it goes into the server's logs).
    let forged = send(
        &url,
        Method::GET,
        &agent,
        &[(REQUEST_ID_HEADER, "forged-id")],
        None,
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);
    assert_error_shape(&forged, "forged request ID");
    assert_ne!(
        forged.body["request_id"],
        json!("forged-id"),
        "{}",
        forged.body
    );

    let a = format!("Bearer {alice}");
    let b = format!("Bearer {bob}");
    let json_ct = ("content-type", "application/json");
    let big = vec![b'x'; 10 * 1024 * 1024];
    let long = "x".repeat(300);
    let name65 = "n".repeat(65);
    let other_role = IncusGuestRole::ALL
        .iter()
        .find(|r| **r != IncusGuestRole::ManagedOpenclaw)
        .map(|r| r.as_str())
        .unwrap_or("no-such-role");
    let long_key = "k".repeat(300);

    // (what, method, path, headers, body, status, code)
    type Case<'a> = (
        String,
        Method,
        String,
        Vec<(&'a str, String)>,
        Option<Vec<u8>>,
        u16,
        &'a str,
    );
    let mut cases: Vec<Case> = Vec::new();
    let mut post = |what: &str, body: Value, status: u16, code: &'static str| {
        cases.push((
            what.to_owned(),
            Method::POST,
            AGENTS_PATH.to_owned(),
            vec![("authorization", a.clone()), (json_ct.0, json_ct.1.into())],
            Some(body.to_string().into_bytes()),
            status,
            code,
        ));
    };
    // Shapes and unknown fields.
    for (what, body) in [
        ("array body", json!([])),
        ("null body", json!(null)),
        ("number body", json!(1)),
        ("string body", json!("x")),
        ("incus array", json!({"incus": []})),
        ("incus string", json!({"incus": "x"})),
        ("incus null", json!({"incus": null})),
        ("name number", json!({"name": 5})),
        ("name array", json!({"name": []})),
        (
            "legacy field",
            json!({"legacy_backend": {"kind": "openclaw"}}),
        ),
        (
            "misspelt role field",
            json!({"incus": {"guest-role": other_role}}),
        ),
        (
            "incus config",
            json!({"incus": {"config": {"user.pika.owner": "bob"}}}),
        ),
        ("owner field", json!({"owner": "bob"})),
        (
            "insecure_tls string",
            json!({"incus": {"insecure_tls": "yes"}}),
        ),
        ("project number", json!({"incus": {"project": 5}})),
        ("unknown role", json!({"incus": {"guest_role": "nope"}})),
        ("other role", json!({"incus": {"guest_role": other_role}})),
    ] {
        post(what, body, 400, "invalid");
    }
    // Names.
    for (what, name) in [
        ("name with BEL", "a\u{7}b"),
        ("name with newline", "a\nb"),
        ("name with U+202E", "evil\u{202E}gpj.exe"),
        ("name with U+200B", "a\u{200B}b"),
        ("name with U+FEFF", "\u{FEFF}x"),
        ("name of 65 characters", name65.as_str()),
    ] {
        post(what, json!({"name": name}), 400, "invalid");
    }
    for (what, body) in [
        (
            "project with control",
            json!({"incus": {"project": "a\u{1b}b"}}),
        ),
        ("project of 300 bytes", json!({"incus": {"project": long}})),
        (
            "profile with U+202E",
            json!({"incus": {"profile": "p\u{202E}"}}),
        ),
        (
            "alias with U+2066",
            json!({"incus": {"image_alias": "a\u{2066}"}}),
        ),
        (
            "http endpoint",
            json!({"incus": {"endpoint": "http://127.0.0.1:8443"}}),
        ),
        (
            "endpoint with user",
            json!({"incus": {"endpoint": "https://u:p@127.0.0.1"}}),
        ),
        (
            "endpoint with path",
            json!({"incus": {"endpoint": "https://127.0.0.1/x"}}),
        ),
    ] {
        post(what, body, 400, "invalid");
    }
    // Outside the operator's boundaries.
    for (what, body) in [
        (
            "another project",
            json!({"incus": {"project": victim.name}}),
        ),
        ("default project", json!({"incus": {"project": "default"}})),
        (
            "an existing profile not allowed",
            json!({"incus": {"profile": "pika-test-other"}}),
        ),
        (
            "privileged profile",
            json!({"incus": {"profile": "privileged"}}),
        ),
        ("another pool", json!({"incus": {"storage_pool": "host"}})),
        (
            "another alias",
            json!({"incus": {"image_alias": "pika-test/anything"}}),
        ),
        (
            "listening endpoint",
            json!({"incus": {"endpoint": bait_url}}),
        ),
        (
            "closed endpoint",
            json!({"incus": {"endpoint": "https://127.0.0.1:1"}}),
        ),
        (
            "name-only endpoint",
            json!({"incus": {"endpoint": "https://incus.invalid"}}),
        ),
        ("insecure_tls", json!({"incus": {"insecure_tls": true}})),
        (
            "endpoint and insecure_tls",
            json!({"incus": {"endpoint": bait_url, "insecure_tls": true}}),
        ),
    ] {
        post(what, body, 403, "forbidden");
    }
    let mut raw = |what: &str,
                   method: Method,
                   path: &str,
                   headers: Vec<(&'static str, String)>,
                   body: Option<Vec<u8>>,
                   status: u16,
                   code: &'static str| {
        cases.push((
            what.to_owned(),
            method,
            path.to_owned(),
            headers,
            body,
            status,
            code,
        ));
    };
    let auth = |t: &str| vec![("authorization", t.to_owned())];
    // Tokens.
    for (what, header) in [
        ("no token", None),
        ("scheme only", Some("Bearer".to_owned())),
        ("empty token", Some("Bearer ".to_owned())),
        ("basic scheme", Some(format!("Basic {alice}"))),
        ("token scheme", Some(format!("Token {alice}"))),
        ("bare token", Some(alice.clone())),
        ("unknown token", Some("Bearer pika_0000".to_owned())),
        ("token with suffix", Some(format!("Bearer {alice}x"))),
        ("token and more", Some(format!("Bearer {alice} extra"))),
    ] {
        let headers = header.map(|h| auth(&h)).unwrap_or_default();
        raw(
            what,
            Method::GET,
            AGENTS_PATH,
            headers.clone(),
            None,
            401,
            "unauthorized",
        );
        raw(
            what,
            Method::POST,
            AGENTS_PATH,
            headers,
            Some(b"{}".to_vec()),
            401,
            "unauthorized",
        );
    }
    raw(
        "health details without token",
        Method::GET,
        HEALTH_PATH,
        vec![],
        None,
        401,
        "unauthorized",
    );
    // Media type, size, invalid JSON.
    raw(
        "no content type",
        Method::POST,
        AGENTS_PATH,
        auth(&a),
        Some(b"{}".to_vec()),
        415,
        "unsupported-media-type",
    );
    raw(
        "text/plain",
        Method::POST,
        AGENTS_PATH,
        vec![
            ("authorization", a.clone()),
            ("content-type", "text/plain".into()),
        ],
        Some(b"{}".to_vec()),
        415,
        "unsupported-media-type",
    );
    let json_auth = vec![
        ("authorization", a.clone()),
        ("content-type", "application/json".to_owned()),
    ];
    raw(
        "10 MB body",
        Method::POST,
        AGENTS_PATH,
        json_auth.clone(),
        Some(big),
        413,
        "payload-too-large",
    );
    raw(
        "truncated JSON",
        Method::POST,
        AGENTS_PATH,
        json_auth.clone(),
        Some(b"{\"name\":".to_vec()),
        400,
        "invalid",
    );
    raw(
        "invalid UTF-8",
        Method::POST,
        AGENTS_PATH,
        json_auth.clone(),
        Some(vec![b'{', 0xff, b'}']),
        400,
        "invalid",
    );
    let mut with_key = json_auth.clone();
    with_key.push((IDEMPOTENCY_KEY_HEADER, long_key.clone()));
    raw(
        "idempotency key of 300 bytes",
        Method::POST,
        AGENTS_PATH,
        with_key,
        Some(b"{}".to_vec()),
        400,
        "invalid",
    );
    // Requests without a body, by the answer they get: routes and methods, other owners' and
    // unknown agents.
    let (collection, v2) = (AGENTS_PATH.to_owned(), "/v2/agents".to_owned());
    let (deep, forced) = (format!("{agent}/x/y"), format!("{agent}?force=true"));
    let unknown = format!("{AGENTS_PATH}/0000000000000000");
    let traversal = format!("{AGENTS_PATH}/..%2Fhealthz");
    let method_not_allowed = [
        ("PUT collection", Method::PUT, &collection, &a),
        ("DELETE collection", Method::DELETE, &collection, &a),
        ("PATCH agent", Method::PATCH, &agent, &a),
        ("GET reprovision", Method::GET, &reprovision, &a),
    ];
    let no_such_endpoint = [
        ("unknown route", Method::GET, &v2, &a),
        ("too deep", Method::GET, &deep, &a),
    ];
    let not_found = [
        ("bob reads alice's", Method::GET, &agent, &b),
        ("bob deletes alice's", Method::DELETE, &agent, &b),
        ("bob force-deletes alice's", Method::DELETE, &forced, &b),
        ("bob reprovisions alice's", Method::POST, &reprovision, &b),
        ("unknown agent", Method::GET, &unknown, &a),
        ("encoded traversal", Method::GET, &traversal, &a),
    ];
    for (status, code, requests) in [
        (405, "method-not-allowed", &method_not_allowed[..]),
        (404, "no-such-endpoint", &no_such_endpoint[..]),
        (404, "not-found", &not_found[..]),
    ] {
        for (what, method, path, token) in requests {
            raw(what, method.clone(), path, auth(token), None, status, code);
        }
    }
    // Reprovision and delete of alice's own agent, refused.
    for (what, body, status, code) in [
        (
            "reprovision into another project",
            json!({"incus": {"project": victim.name}}),
            403,
            "forbidden",
        ),
        (
            "reprovision with a profile not allowed",
            json!({"incus": {"profile": "pika-test-other"}}),
            403,
            "forbidden",
        ),
        (
            "reprovision with a name",
            json!({"name": "x"}),
            400,
            "invalid",
        ),
        ("reprovision with an array", json!([]), 400, "invalid"),
    ] {
        raw(
            what,
            Method::POST,
            &reprovision,
            json_auth.clone(),
            Some(body.to_string().into_bytes()),
            status,
            code,
        );
    }
    raw(
        "force=maybe",
        Method::DELETE,
        &format!("{agent}?force=maybe"),
        auth(&a),
        None,
        400,
        "invalid",
    );
    raw(
        "unknown query",
        Method::DELETE,
        &format!("{agent}?purge=1"),
        auth(&a),
        None,
        400,
        "invalid",
    );
    // Gateway token rotation of an agent that is not there, or not the caller's: 404, the
    // owner's token untouched (the row's updated_at would change).
    raw(
        "rotate an unknown agent's gateway token",
        Method::POST,
        &format!("{AGENTS_PATH}/0000000000000000/gateway-token"),
        auth(&a),
        None,
        404,
        "not-found",
    );
    raw(
        "rotate another owner's gateway token",
        Method::POST,
        &format!("{agent}/gateway-token"),
        auth(&b),
        None,
        404,
        "not-found",
    );
    raw(
        "rotate with a traversal id",
        Method::POST,
        &format!("{AGENTS_PATH}/..%2F{id}/gateway-token"),
        auth(&a),
        None,
        404,
        "not-found",
    );
    raw(
        "rotate with GET",
        Method::GET,
        &format!("{agent}/gateway-token"),
        auth(&a),
        None,
        405,
        "method-not-allowed",
    );

    let mut clean = 0;
    for (what, method, path, headers, body, status, code) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = match body {
            Some(body) if body.len() > pika_server::http::BODY_LIMIT => {
                send_oversized(&url, path, &headers, body.len())
            }
            _ => send(&url, method.clone(), path, &headers, body.clone()).await,
        };
        assert_eq!(answer.status.as_u16(), *status, "{what}: {}", answer.body);
        assert_error_shape(&answer, what);
        assert_eq!(answer.body["code"], json!(code), "{what}: {}", answer.body);
        if *status == 403 || answer.body.get("field").is_some() {
            assert!(
                answer.body["field"].as_str().is_some(),
                "{what}: names the field: {}",
                answer.body
            );
        }
        let text = answer.body.to_string();
        assert!(
            !text.contains(&alice) && !text.contains(&bob),
            "{what}: echoes a token"
        );
        assert!(
            !text.contains(&dir.path().display().to_string()),
            "{what}: leaks a path"
        );
        assert_eq!(db_rows(dir.path()), rows_before, "{what}: rows changed");
        clean += 1;
    }
    assert_eq!(
        incus_objects(&[&project, &victim]),
        objects_before,
        "Incus objects changed"
    );
    let mut connections = 0;
    while bait.accept().is_ok() {
        connections += 1;
    }
    assert_eq!(connections, 0, "a refused endpoint was contacted");
    assert!(cases.len() >= 60, "corpus of {}", cases.len());
    eprintln!(
        "bad-input corpus: {} requests, {clean} rejected cleanly",
        cases.len()
    );
    let log = srv.log();
    assert!(
        !log.contains(&alice) && !log.contains(&bob),
        "a token reached the log"
    );
}

/// `incus init` of an agent-looking instance (stopped), stamped as `server_id` says.
fn fake_agent(project: &TestProject, agent_id: &str, server_id: Option<&str>) {
    let name = instance_name(agent_id);
    let agent_key = format!("{AGENT_ID_KEY}={agent_id}");
    let mut args = vec![
        "init",
        IncusGuestRole::ManagedOpenclaw.default_image_alias(),
        &name,
        "--profile",
        server::TEST_PROFILE,
        "--config",
        &agent_key,
    ];
    let server_key = server_id.map(|id| format!("{SERVER_ID_KEY}={id}"));
    if let Some(key) = &server_key {
        args.extend(["--config", key]);
    }
    let pool = pika_test_support::storage_pool();
    args.extend(["--storage", &pool]);
    project.incus_ok(&args);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn reconcile_touches_only_this_servers_instances_in_configured_projects() {
    let project = server::project("own");
    let victim = server::project("victim");
    // Another deployment's agent in another project, and one in ours without our server ID.
    fake_agent(&victim, "00000000000000aa", Some("another-server"));
    fake_agent(&victim, "00000000000000ab", None);
    fake_agent(&project, "00000000000000ac", Some("another-server"));
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), &project, &[]);
    let token = first.add_token("alice");
    // A request naming the other project is refused and leaves no row...
    let answer = provision(
        &first.url,
        &token,
        json!({"incus": {"project": victim.name}}),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(answer.body["field"], json!("incus.project"));
    assert!(db_rows(dir.path()).is_empty());
    let mut ours = Vec::new();
    for _ in 0..3 {
        let answer = provision(&first.url, &token, json!({}), &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        ours.push(answer.body["instance_name"].as_str().unwrap().to_owned());
    }
    first.kill();
    // ...so the restart reconciles nothing there.
    let again = start(dir.path(), &project, &[]);
    again.kill();
    // A second server, and the first one with a fresh database, on the same project.
    let second_dir = tempfile::tempdir().unwrap();
    start(second_dir.path(), &project, &[]).kill();
    let fresh_dir = tempfile::tempdir().unwrap();
    start(fresh_dir.path(), &project, &[]).kill();
    let mut expected: Vec<String> = ours.clone();
    expected.push(instance_name("00000000000000ac"));
    expected.sort();
    assert_eq!(
        instance_names(&project),
        expected,
        "nothing of another server was deleted"
    );
    assert_eq!(
        victim.instance_names().len(),
        2,
        "the other project is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn reprovision_keeps_the_old_instance_until_the_new_one_runs() {
    let project = server::project("reprov-safe");
    // A profile that exists but makes every instance fail to start: a disk from a host path
    // that is not there.
    project.create_profile("pika-test-broken", None);
    project.incus_ok(&[
        "profile",
        "device",
        "add",
        "pika-test-broken",
        "data",
        "disk",
        "source=/nonexistent/pika-test",
        "path=/mnt",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let srv = start(
        dir.path(),
        &project,
        &[
            (
                "PIKA_AGENT_INCUS_ALLOWED_PROFILES",
                "pika-test-broken,pika-test-absent",
            ),
            ("PIKA_AGENT_INCUS_ALLOWED_STORAGE_POOLS", "pika-test-absent"),
            ("PIKA_AGENT_INCUS_ALLOWED_IMAGE_ALIASES", "pika-test/absent"),
        ],
    );
    let token = srv.add_token("alice");
    let created = provision(&srv.url, &token, json!({}), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let name = created.body["instance_name"].as_str().unwrap();
    let uuid = project.instance(name).unwrap()["config"]["volatile.uuid"].clone();
    let path = format!("{AGENTS_PATH}/{id}/reprovision");
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for (profile, status) in [
        ("pika-test-absent", 400),
        ("pika-test-broken", 502),
        ("nope", 403),
    ] {
        let body = json!({"incus": {"profile": profile}})
            .to_string()
            .into_bytes();
        let answer = send(&srv.url, Method::POST, &path, &headers, Some(body)).await;
        assert_eq!(answer.status.as_u16(), status, "{profile}: {}", answer.body);
        assert_error_shape(&answer, profile);
        let instance = project
            .instance(name)
            .expect("the old instance is still there");
        assert_eq!(instance["status"], json!("Running"), "{profile}");
        assert_eq!(
            instance["config"]["volatile.uuid"], uuid,
            "{profile}: the same instance"
        );
        assert_eq!(instance_names(&project), [name], "{profile}: no leftover");
        let shown = authed(
            &srv.url,
            &token,
            Method::GET,
            &format!("{AGENTS_PATH}/{id}"),
        )
        .await;
        assert_eq!(
            shown.body["state"],
            json!("running"),
            "{profile}: {}",
            shown.body
        );
        assert_eq!(shown.body["instance_name"], json!(name));
        assert_eq!(
            shown.body["incus"], created.body["incus"],
            "{profile}: params kept"
        );
        assert_eq!(db_rows(dir.path()).len(), 1, "{profile}: no row added");
    }
    // A new agent naming an allowed object that does not exist: the same 400 naming the field
    // whatever the object, and no row.
    for (field, value) in [
        ("profile", "pika-test-absent"),
        ("storage_pool", "pika-test-absent"),
        ("image_alias", "pika-test/absent"),
    ] {
        let answer = provision(&srv.url, &token, json!({"incus": {field: value}}), &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            answer.body
        );
        assert_eq!(answer.body["field"], json!(format!("incus.{field}")));
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .contains("does not exist")
        );
        assert_eq!(
            db_rows(dir.path()).len(),
            1,
            "{field}: the refused request left no row"
        );
    }
    assert_eq!(instance_names(&project), [name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn vanished_instances_are_lost_and_unreachable_agents_can_be_deleted() {
    let (project, dir, srv) = started("lost", &[]);
    let token = srv.add_token("alice");
    let mut agents = Vec::new();
    for _ in 0..3 {
        let answer = provision(&srv.url, &token, json!({}), &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        agents.push(answer.body);
    }
    srv.kill();
    // 1. An instance removed behind the server's back: its agent becomes `lost`, visibly.
    let gone = agents[0]["instance_name"].as_str().unwrap();
    project.incus_ok(&["delete", "--force", gone]);
    let srv = start(dir.path(), &project, &[]);
    let path = |agent: &Value| format!("{AGENTS_PATH}/{}", agent["id"].as_str().unwrap());
    let shown = authed(&srv.url, &token, Method::GET, &path(&agents[0])).await;
    assert_eq!(shown.body["state"], json!("lost"), "{}", shown.body);
    assert!(
        shown.body["error"].as_str().unwrap().contains(gone),
        "{}",
        shown.body
    );
    let kept = authed(&srv.url, &token, Method::GET, &path(&agents[1])).await;
    assert_eq!(kept.body["state"], json!("running"));
    srv.kill();

    // 2. Incus unreachable: a delete fails (503), a forced one marks the row and names the
    // leftover; the next start that reaches Incus finishes the job.
    let dead = dir.path().join("dead.socket");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let dead = dead.display().to_string();
    let srv = start(dir.path(), &project, &[("INCUS_SOCKET", &dead)]);
    let answer = authed(&srv.url, &token, Method::DELETE, &path(&agents[1])).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_error_shape(&answer, "unreachable delete");
    let forced = format!("{}?force=true", path(&agents[1]));
    let answer = authed(&srv.url, &token, Method::DELETE, &forced).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["state"], json!("abandoned"));
    let leftover = agents[1]["instance_name"].as_str().unwrap();
    assert!(
        answer.body["error"].as_str().unwrap().contains(leftover),
        "{}",
        answer.body
    );
    srv.kill();
    let srv = start(dir.path(), &project, &[]);
    assert!(
        project.instance(leftover).is_none(),
        "reconcile removed the leftover"
    );
    let answer = authed(&srv.url, &token, Method::GET, &path(&agents[1])).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "and the row");
    // The lost agent is deleted normally.
    let answer = authed(&srv.url, &token, Method::DELETE, &path(&agents[0])).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    srv.kill();

    // 3. A project no longer configured: never contacted; forced delete abandons, then forgets.
    let other = server::project("lost-other");
    let srv = start(dir.path(), &other, &[]);
    let answer = authed(&srv.url, &token, Method::DELETE, &path(&agents[2])).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("no longer configured")
    );
    let forced = format!("{}?force=true", path(&agents[2]));
    let answer = authed(&srv.url, &token, Method::DELETE, &forced).await;
    assert_eq!(answer.body["state"], json!("abandoned"), "{}", answer.body);
    let answer = authed(&srv.url, &token, Method::DELETE, &forced).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "forgotten");
    assert!(db_rows(dir.path()).is_empty());
    assert!(
        project
            .instance(agents[2]["instance_name"].as_str().unwrap())
            .is_some(),
        "the leftover was reported, not touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_failed_database_write_is_compensated_and_retries_are_idempotent() {
    let (project, dir, srv) = started("dbfail", &[]);
    let token = srv.add_token("alice");
    let db = dir.path().join("agents.db");
    // The database refuses every update from now on (what a full or read-only disk does to the
    // write after the Incus create), through the server's own connection.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER pika_test_no_updates BEFORE UPDATE ON agents
         BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected by the test)'); END;",
    )
    .unwrap();
    let answer = provision(&srv.url, &token, json!({}), &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.body
    );
    assert_error_shape(&answer, "db failure");
    let text = answer.body.to_string();
    assert!(
        !text.contains("agents.db") && !text.contains("injected"),
        "internal details stay in the log: {text}"
    );
    assert!(srv.log().contains("injected"), "but the log has them");
    assert!(
        project.instance_names().is_empty(),
        "the created instance was removed again"
    );
    let rows = db_rows(dir.path());
    assert_eq!(rows.len(), 1);
    // The row could not be marked failed either; it is deletable, not stuck until a restart.
    let path = format!("{AGENTS_PATH}/{}", rows[0].id);
    conn.execute_batch("DROP TRIGGER pika_test_no_updates")
        .unwrap();
    let answer = authed(&srv.url, &token, Method::DELETE, &path).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);

    // Idempotency-Key: a retry returns the same agent; the key with another body is refused.
    let key = [(IDEMPOTENCY_KEY_HEADER, "retry-1")];
    let first = provision(&srv.url, &token, json!({"name": "once"}), &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let retry = provision(&srv.url, &token, json!({"name": "once"}), &key).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.headers.get("idempotent-replayed").unwrap(), "true");
    let other = provision(&srv.url, &token, json!({"name": "twice"}), &key).await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    // Concurrent retries of one new key make one agent.
    let url = srv.url.clone();
    let retries = (0..5).map(|_| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            provision(
                &url,
                &token,
                json!({}),
                &[(IDEMPOTENCY_KEY_HEADER, "retry-2")],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(retries).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| a.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one agent for one key");
    for answer in &answers {
        assert!(
            matches!(answer.status.as_u16(), 201 | 409),
            "{}",
            answer.body
        );
    }
    assert_eq!(project.instance_names().len(), 2);
    // The database files are private.
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn tokens_fail_closed_and_health_says_only_ok() {
    // No watcher: the Incus calls counted below are the health checks' alone.
    let (_project, dir, srv) = started("tokens", &[("PIKA_AGENT_INCUS_MEMBER_CHECK_SECS", "0")]);
    let alice = srv.add_token("alice");
    let tokens = dir.path().join("tokens");
    let good = std::fs::read_to_string(&tokens).unwrap();
    let list = |token: String| {
        let url = srv.url.clone();
        async move { authed(&url, &token, Method::GET, AGENTS_PATH).await }
    };
    assert_eq!(list(alice.clone()).await.status, StatusCode::OK);
    // Lowercase scheme is fine.
    let answer = send(
        &srv.url,
        Method::GET,
        AGENTS_PATH,
        &[("authorization", &format!("bearer {alice}"))],
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    // A syntax error anywhere: every token is refused, the log names the line.
    std::fs::write(&tokens, format!("{good}bob not-a-hash\n")).unwrap();
    let answer = list(alice.clone()).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["code"], json!("tokens-unavailable"));
    assert!(srv.log().contains("line=2"), "{}", srv.log());
    std::fs::write(&tokens, &good).unwrap();
    assert_eq!(list(alice.clone()).await.status, StatusCode::OK);
    // A revocation that keeps the modification time is seen.
    let revoked = good.replace(
        &pika_server::auth::hash_token(&alice),
        &pika_server::auth::hash_token("x"),
    );
    pika_test_support::rewrite_keeping_mtime(&tokens, &revoked);
    assert_eq!(list(alice.clone()).await.status, StatusCode::UNAUTHORIZED);
    std::fs::write(&tokens, &good).unwrap();

    // /healthz: the verdict only, and cached, so a burst costs Incus a few calls, not 5 a hit.
    let calls = || srv.log().matches("incus request").count();
    let before = calls();
    for _ in 0..20 {
        let answer = send(&srv.url, Method::GET, HEALTHZ_PATH, &[], None).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, json!({"ok": true}));
    }
    let spent = calls() - before;
    assert!(spent < 20, "20 health hits made {spent} Incus calls");
    // Tokens are never logged or stored in clear.
    assert!(!srv.log().contains(&alice));
    let db = std::fs::read(dir.path().join("agents.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&alice));
}
