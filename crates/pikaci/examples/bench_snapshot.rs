//! Benchmark (not a test): CI job overhead with the snapshot mounted vs uploaded.
//!
//! For a 1 MiB and a 300 MiB workspace (one incompressible file plus the fixture files), runs N
//! jobs (default 5 and 3, `BENCH_N` overrides both) alternately with the snapshot staged and
//! attached as the role's read-only `snapshot` mount (what a local Incus gets) and with the upload
//! (what an HTTPS endpoint gets), on the same busybox image in a fresh `pikaci-bench-snap-*`
//! project. The command only checks the file is there, so the job time is the overhead. Prints
//! medians and the ratio mount/upload per size.
//!
//! ```text
//! cargo run --release -p pikaci --example bench_snapshot     # PIKA_TEST_IMAGE_DIR=... to reuse an image
//! ```

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jerichoci::fixtures::{CiProject, workspace};
use jerichoci::remote::{PROJECT_ENV, incus_client_from, process_env};
use jerichoci::{Executor, JobSpec, JobStatus, RunStore, SnapshotTransfer};
use pika_incus_guest_role::IncusGuestRole;
use pika_test_support::bench::ms;

const MIB: usize = 1 << 20;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Writes `mib` MiB of pseudo-random bytes (xorshift) to `path`.
fn blob(path: &std::path::Path, mib: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; MIB];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).unwrap();
    }
}

fn main() {
    let override_n: Option<usize> = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok());
    let project = CiProject::with_prefix("pikaci-bench", "snap");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = project.name.clone();
    let env: jerichoci::EnvLookup = Arc::new(move |var| (var == PROJECT_ENV).then(|| name.clone()));
    println!("CI job overhead (median), snapshot mounted read-only vs uploaded:");
    for (mib, default_n) in [(1usize, 5usize), (300, 3)] {
        let n = override_n.unwrap_or(default_n);
        let ws = workspace("");
        blob(&ws.path().join("blob.bin"), mib);
        let executor = Executor::new(RunStore::new(ws.path().join(".pikaci/runs")), ws.path())
            .with_incus(incus_client_from(process_env).unwrap())
            .with_env(env.clone());
        let (mut mounted, mut uploaded) = (Vec::new(), Vec::new());
        for i in 0..n {
            for (force_upload, samples) in [(false, &mut mounted), (true, &mut uploaded)] {
                let exec = executor.clone().force_snapshot_upload(force_upload);
                let job = JobSpec::incus(
                    format!("snap-{mib}-{i}-{force_upload}"),
                    "test -s blob.bin",
                    IncusGuestRole::PikaciRunner,
                );
                let started = Instant::now();
                let record = runtime.block_on(exec.run_job("bench", &job));
                samples.push(started.elapsed());
                assert_eq!(record.status, JobStatus::Passed, "{record:?}");
                let transfer = record.remote_linux_vm.as_ref().unwrap().snapshot_transfer;
                let expected = if force_upload {
                    SnapshotTransfer::Upload
                } else {
                    SnapshotTransfer::Mount
                };
                assert_eq!(transfer, Some(expected));
            }
        }
        let (m, u) = (median(mounted), median(uploaded));
        println!(
            "  {mib:>3} MiB snapshot, N={n}: mount {:>8.1} ms, upload {:>8.1} ms, ratio mount/upload {:.3}",
            ms(m),
            ms(u),
            m.as_secs_f64() / u.as_secs_f64()
        );
    }
    project.assert_no_instances();
}
