//! Benchmark (not a test): an agent's time to ready through the API, with a warm pool of 4 and
//! with no pool, vs the same image launched by hand: `incus launch`, the gateway's configuration
//! pushed with `incus file push`, and the role's readiness (`GET /health` inside the guest, via
//! `incus exec ... wget`) awaited by polling. p50 and p95 over N (default 20) each.
//!
//! ```text
//! cargo run --release -p pika-server --example bench_pool [-- N]
//! ```
//! Needs a local incusd (INCUS_SOCKET) and busybox-static; uses PIKA_TEST_IMAGE_DIR when set.
//! Creates and deletes `pika-test-bench-*` projects.

use std::path::Path;
use std::time::{Duration, Instant};

use pika_incus_guest_role::Readiness;
use pika_managed_agent_contract::client::AgentClient;
use pika_managed_agent_contract::{AgentProvisionRequest, HEALTH_PATH, IncusGuestRole};
use pika_test_support::bench::{ms, percentile, samples_arg};
use pika_test_support::server::{self, Server, ServerSetup, TEST_PROFILE};
use pika_test_support::{TestProject, cargo_bin, storage_pool};

const POOL: usize = 4;

fn start(dir: &Path, project: &TestProject, pool: usize) -> Server {
    Server::start(ServerSetup {
        bin: &cargo_bin("pika-server", "pika-server"),
        dir,
        project: Some(&project.name),
        env: vec![
            ("RUST_LOG".into(), "warn".into()),
            ("PIKA_AGENT_POOL_SIZE".into(), pool.to_string()),
        ],
    })
}

/// Waits until the pool's health detail says `ready N` with nothing launching.
async fn wait_pool(url: &str, admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let want = format!("ready {POOL} ");
    loop {
        let report: serde_json::Value = reqwest::Client::new()
            .get(format!("{url}{HEALTH_PATH}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        let ready = report["checks"].as_array().into_iter().flatten().any(|c| {
            c["name"] == "pool.managed-openclaw"
                && c["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&want) && d.contains("launching 0"))
        });
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "the pool never filled: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Time to ready through the API, `n` times; with a pool, each sample starts from a full pool.
async fn through_api(project: &TestProject, pool: usize, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), project, pool);
    let admin = server.add_admin_token("ops");
    let api = AgentClient::new(&server.url, server.add_token("bench")).unwrap();
    let mut times = Vec::new();
    for i in 0..=n {
        if pool > 0 {
            wait_pool(&server.url, &admin).await;
        }
        let started = Instant::now();
        let made = api
            .provision(&AgentProvisionRequest::default())
            .await
            .unwrap_or_else(|err| panic!("provisioning: {err}"));
        // The first is a warm-up (the image is unpacked into the storage pool).
        if i > 0 {
            times.push(started.elapsed());
        }
        api.delete(&made.agent.id, false).await.expect("delete");
    }
    times.sort();
    times
}

/// Time to ready by hand: launch, push the configuration, poll the readiness inside the guest.
fn by_hand(project: &TestProject, n: usize) -> Vec<Duration> {
    let role = IncusGuestRole::ManagedOpenclaw;
    let Readiness::Http { port, path } = role.readiness() else {
        panic!("managed-openclaw's readiness is http");
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), b"{\"gateway\":{}}\n").unwrap();
    let config = config.path().display().to_string();
    let pool = storage_pool();
    let mut times = Vec::new();
    for i in 0..=n {
        let name = format!("bench-hand-{i}");
        let started = Instant::now();
        project.incus_ok(&[
            "launch",
            role.default_image_alias(),
            &name,
            "--profile",
            TEST_PROFILE,
            "--storage",
            &pool,
        ]);
        project.incus_ok(&[
            "file",
            "push",
            &config,
            &format!("{name}/var/lib/openclaw/openclaw.json"),
            "--create-dirs",
            "--mode",
            "0600",
        ]);
        while !project
            .incus(&["exec", &name, "--", "wget", "-q", "-O", "/dev/null", &url])
            .status
            .success()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if i > 0 {
            times.push(started.elapsed());
        }
        project.incus_ok(&["delete", "-f", &name]);
    }
    times.sort();
    times
}

fn report(label: &str, api: &[Duration], hand: &[Duration], target: &str) {
    let (a50, a95) = (percentile(api, 50), percentile(api, 95));
    let (h50, h95) = (percentile(hand, 50), percentile(hand, 95));
    println!("{label}:");
    println!(
        "  API (POST, running = ready):     p50 {:7.1} ms  p95 {:7.1} ms",
        ms(a50),
        ms(a95)
    );
    println!(
        "  incus launch + push + wait:      p50 {:7.1} ms  p95 {:7.1} ms",
        ms(h50),
        ms(h95)
    );
    println!(
        "  ratio API/by hand:               p50 {:.3}  p95 {:.3}  ({target})",
        ms(a50) / ms(h50),
        ms(a95) / ms(h95)
    );
}

#[tokio::main]
async fn main() {
    let n = samples_arg(20);
    let project = server::project("bench-pool");
    let hand = by_hand(&project, n);
    let warm = through_api(&project, POOL, n).await;
    let cold = through_api(&project, 0, n).await;
    println!(
        "time to a ready agent, {n} samples each, busybox stand-in, project {}",
        project.name
    );
    report(
        &format!("warm pool of {POOL}"),
        &warm,
        &hand,
        "target p50 <= 0.5",
    );
    report("no pool", &cold, &hand, "target p50 <= 1.10");
}
