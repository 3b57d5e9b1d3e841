//! Benchmark (not a test): CI job overhead of jerichoci against the raw `incus` CLI.
//!
//! For N rounds (default 10, `BENCH_N`), alternately:
//! - raw: `incus launch --ephemeral` + `incus exec -- sh -c CMD` + `incus delete -f`;
//! - jerichoci: one Incus job running CMD (launch, snapshot upload, run, collect), its delete in
//!   the background as `pikaci run` does it (the job ends once its record is written; the
//!   delete is awaited after the clock stops, so it never overlaps the next round);
//!
//! on the same busybox image in a fresh `pikaci-bench-job-*` project (deleted at the end), then
//! prints the medians and their ratio (target: <= 0.8). The jerichoci job uploads a small git
//! workspace (one file).
//!
//! ```text
//! cargo run -p pikaci --example bench_job            # PIKA_TEST_IMAGE_DIR=... to reuse an image
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use jerichoci::fixtures::{CiProject, workspace};
use jerichoci::remote::{DEFAULT_PROFILE, PROJECT_ENV, incus_client_from, process_env};
use jerichoci::{Executor, JobSpec, JobStatus, RunStore};
use pika_incus_guest_role::IncusGuestRole;
use pika_test_support::incus;

const COMMAND: &str = "cat /etc/pika-test-marker >/dev/null";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let project = CiProject::with_prefix("pikaci-bench", "job");
    let ws = workspace("");
    let alias = IncusGuestRole::PikaciRunner.default_image_alias();
    let project_flag = format!("--project={}", project.name);
    let profile_flag = format!("--profile={DEFAULT_PROFILE}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = project.name.clone();
    let executor = Executor::new(RunStore::new(ws.path().join(".pikaci/runs")), ws.path())
        .with_incus(incus_client_from(process_env).unwrap())
        .with_background_cleanup(true)
        .with_env(Arc::new(move |var| {
            (var == PROJECT_ENV).then(|| name.clone())
        }));

    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    let mut phase_ms = std::collections::BTreeMap::<&str, Vec<u64>>::new();
    for i in 0..n {
        let instance = format!("bench-raw-{i}");
        let started = Instant::now();
        incus(&[
            "launch",
            alias,
            &instance,
            "--ephemeral",
            &project_flag,
            &profile_flag,
            "--quiet",
        ]);
        incus(&["exec", &instance, &project_flag, "--", "sh", "-c", COMMAND]);
        incus(&["delete", "-f", &instance, &project_flag]);
        raw.push(started.elapsed());

        let job = JobSpec::incus(format!("bench-{i}"), COMMAND, IncusGuestRole::PikaciRunner);
        let started = Instant::now();
        let record = runtime.block_on(executor.run_job("bench", &job));
        ours.push(started.elapsed());
        runtime.block_on(executor.finish_cleanups());
        assert_eq!(record.status, JobStatus::Passed, "{record:?}");
        for phase in &record.phases {
            phase_ms
                .entry(phase.phase.as_str())
                .or_default()
                .push(phase.duration_ms);
        }
        eprintln!("round {i}: raw {:?}, jerichoci {:?}", raw[i], ours[i]);
    }
    project.assert_no_instances();

    let (raw_m, ours_m) = (median(raw), median(ours));
    println!("N={n}, command: {COMMAND}");
    println!(
        "raw incus launch+exec+delete -f  median {:>8.1} ms",
        raw_m.as_secs_f64() * 1e3
    );
    println!(
        "jerichoci job (all phases)       median {:>8.1} ms",
        ours_m.as_secs_f64() * 1e3
    );
    for (phase, mut ms) in phase_ms {
        ms.sort_unstable();
        println!("  {phase:<8} median {:>6} ms", ms[ms.len() / 2]);
    }
    println!(
        "ratio jerichoci/raw: {:.3} (target <= 0.8; the delete runs after the record)",
        ours_m.as_secs_f64() / raw_m.as_secs_f64()
    );
}
