//! Benchmark (not a test): provisioning through the agent API vs raw `incus launch` of the same
//! image, one at a time; then 40 agents with 8 requests in flight vs Incus's own load tool,
//! `incus-benchmark launch --count 40 --parallel 8`, on the same image and project; plus the
//! server's idle RSS.
//!
//! ```text
//! cargo run --release -p pika-server --example bench_provision [-- N]
//! ```
//! Needs a local incusd (INCUS_SOCKET) and busybox-static; uses PIKA_TEST_IMAGE_DIR when set.
//! Creates and deletes a `pika-test-bench-*` project.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use pika_managed_agent_contract::client::AgentClient;
use pika_managed_agent_contract::{AGENTS_PATH, AgentProvisionRequest, IncusGuestRole};
use pika_test_support::bench::{ms, percentile, samples_arg};
use pika_test_support::server::{self, TEST_PROFILE};
use pika_test_support::storage_pool;

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The load phase: this many agents, this many requests (and incus-benchmark threads) at a time.
const LOAD_AGENTS: usize = 40;
const LOAD_IN_FLIGHT: usize = 8;

#[tokio::main]
async fn main() {
    let n = samples_arg(10);
    let alias = IncusGuestRole::ManagedOpenclaw.default_image_alias();
    let project = server::project("bench");
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(dir.path(), &project, &[("RUST_LOG", "warn")]);
    let token = server.add_token("bench");
    let api = AgentClient::new(&server.url, token).unwrap();
    let pool = storage_pool();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = vm_rss_kib(server.child.id());

    let provision = || async {
        let started = Instant::now();
        if let Err(err) = api.provision(&AgentProvisionRequest::default()).await {
            panic!("provisioning: {err}");
        }
        started.elapsed()
    };
    let launch = |name: String| {
        let started = Instant::now();
        project.incus_ok(&[
            "launch",
            alias,
            &name,
            "--profile",
            TEST_PROFILE,
            "--storage",
            &pool,
        ]);
        started.elapsed()
    };

    // Warm-up: the first instance unpacks the image into the pool.
    provision().await;
    launch("bench-warm".into());

    let (mut api, mut raw) = (Vec::new(), Vec::new());
    for i in 0..n {
        api.push(provision().await);
        raw.push(launch(format!("bench-raw-{i}")));
    }
    api.sort();
    raw.sort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_rss = vm_rss_kib(server.child.id());

    println!(
        "provisioning {n} agents, image alias {alias}, project {}",
        project.name
    );
    println!(
        "  API (POST {AGENTS_PATH}):  p50 {:7.1} ms  p95 {:7.1} ms",
        ms(percentile(&api, 50)),
        ms(percentile(&api, 95))
    );
    println!(
        "  incus launch:               p50 {:7.1} ms  p95 {:7.1} ms",
        ms(percentile(&raw, 50)),
        ms(percentile(&raw, 95))
    );
    println!(
        "  ratio API/launch:           p50 {:.3}  p95 {:.3}  (target p50 <= 1.15)",
        ms(percentile(&api, 50)) / ms(percentile(&raw, 50)),
        ms(percentile(&api, 95)) / ms(percentile(&raw, 95))
    );
    println!(
        "  pika-server VmRSS: idle {idle_rss} KiB, after {} provisions {after_rss} KiB",
        n + 1
    );

    // incus-benchmark launches with the project's default profile: give it the same root disk the
    // test profile has. It runs first and deletes its containers, so both sides start from the
    // same instances.
    project.incus_ok(&[
        "profile",
        "device",
        "add",
        "default",
        "root",
        "disk",
        "path=/",
        &format!("pool={pool}"),
    ]);
    let (count, parallel) = (LOAD_AGENTS.to_string(), LOAD_IN_FLIGHT.to_string());
    let started = Instant::now();
    let output = Command::new("incus-benchmark")
        .args(["launch", "--project", &project.name, "--count", &count])
        .args(["--parallel", &parallel, alias])
        .output()
        .expect("incus-benchmark runs (package incus-extra)");
    let tool = started.elapsed();
    assert!(
        output.status.success(),
        "incus-benchmark launch: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let deleted = Command::new("incus-benchmark")
        .args([
            "delete",
            "--project",
            &project.name,
            "--parallel",
            &parallel,
        ])
        .output()
        .expect("incus-benchmark runs");
    assert!(deleted.status.success(), "incus-benchmark delete failed");

    let started = Instant::now();
    futures_util::stream::iter(0..LOAD_AGENTS)
        .map(|_| provision())
        .buffer_unordered(LOAD_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let through_api = started.elapsed();
    println!("{LOAD_AGENTS} agents, {LOAD_IN_FLIGHT} in flight (wall time):");
    let api_label = format!("API (POST {AGENTS_PATH}, running = ready):");
    println!("  {api_label:<44} {:8.1} ms", ms(through_api));
    println!("  {:<44} {:8.1} ms", "incus-benchmark launch:", ms(tool));
    println!(
        "  {:<44} {:8.3}  (target <= 1.10)",
        "ratio API/incus-benchmark:",
        ms(through_api) / ms(tool)
    );
}
