//! Benchmark (not a test): create + start + delete of one busybox container through this client
//! against the `incus` CLI doing the same (`incus launch` + `incus delete -f`), median of N rounds
//! each (default 10), alternating the two so drift hits both alike. Prints the ratio client/CLI.
//!
//! ```sh
//! PIKA_TEST_IMAGE_DIR=/tmp/pt cargo run --release -p pika-incus --example bench_lifecycle [ROUNDS]
//! ```
//! The image is `$PIKA_TEST_IMAGE_DIR/container` (built with scripts/lib/test-image.sh when unset).
//! Everything happens in a throwaway `pika-test-bench-*` project, removed at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use pika_incus::{ImageImport, IncusClient, InstanceCreate, ProjectClient, ProjectCreate, api};
use pika_test_support::incus;

const ALIAS: &str = "pika-test/bench";

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .with_context(|| format!("ROUNDS must be a number, got {arg:?}"))?,
        None => 10,
    };
    ensure!(rounds > 0, "ROUNDS must be at least 1");
    let socket = std::env::var_os("INCUS_SOCKET")
        .map_or_else(|| PathBuf::from(api::DEFAULT_UNIX_SOCKET), PathBuf::from);
    let client = IncusClient::unix(&socket)?;
    let name = format!("pika-test-bench-{}", std::process::id());
    client
        .create_project(&ProjectCreate::new(&name).config("features.profiles", "false"))
        .await?;
    let project = client.in_project(&name);
    let outcome = run(&project, rounds).await;
    project.delete_with_contents().await?;
    outcome
}

async fn run(project: &ProjectClient, rounds: usize) -> Result<()> {
    let image = pika_test_support::image::shared_container();
    project
        .import_image(&ImageImport::container(image.metadata(), image.rootfs()).alias(ALIAS))
        .await?;
    let (mut by_client, mut by_cli) = (Vec::new(), Vec::new());
    // PIKA_BENCH_ONLY=client|cli runs one side alone (to tell which one misbehaves).
    let only = std::env::var("PIKA_BENCH_ONLY").unwrap_or_default();
    for round in 0..rounds {
        let instance = format!("bench-{round}");
        // Alternate which goes first.
        for side in if round % 2 == 0 {
            ["client", "cli"]
        } else {
            ["cli", "client"]
        } {
            if !only.is_empty() && only != side {
                continue;
            }
            let name = format!("{instance}-{side}");
            let (samples, elapsed) = match side {
                "client" => (&mut by_client, with_client(project, &name).await?),
                _ => (&mut by_cli, with_cli(project.name(), &name)?),
            };
            eprintln!("{name}: {:.1} ms", elapsed.as_secs_f64() * 1000.0);
            samples.push(elapsed);
        }
    }
    if by_client.is_empty() || by_cli.is_empty() {
        for (side, samples) in [("client", &mut by_client), ("cli", &mut by_cli)] {
            if !samples.is_empty() {
                println!(
                    "{side}: median {:.1} ms of {rounds}",
                    median(samples).as_secs_f64() * 1000.0
                );
            }
        }
        return Ok(());
    }
    let (client_median, cli_median) = (median(&mut by_client), median(&mut by_cli));
    println!("create+start+delete of one container, median of {rounds}:");
    println!(
        "  pika-incus client: {:>8.1} ms",
        client_median.as_secs_f64() * 1000.0
    );
    println!(
        "  incus CLI:         {:>8.1} ms",
        cli_median.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio client/CLI:  {:>8.3}",
        client_median.as_secs_f64() / cli_median.as_secs_f64()
    );
    Ok(())
}

/// The same four operations `incus launch` + `incus delete -f` perform.
async fn with_client(project: &ProjectClient, instance: &str) -> Result<Duration> {
    let started = Instant::now();
    project
        .create_instance(&InstanceCreate::from_alias(instance, ALIAS))
        .await?;
    project.start_instance(instance).await?;
    project.stop_instance(instance, true).await?;
    project.delete_instance(instance).await?;
    Ok(started.elapsed())
}

fn with_cli(project: &str, instance: &str) -> Result<Duration> {
    let started = Instant::now();
    incus(&["launch", ALIAS, instance, "--project", project]);
    incus(&["delete", "--force", instance, "--project", project]);
    Ok(started.elapsed())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
