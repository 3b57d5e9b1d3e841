//! Integration tests against the real incusd that scripts/test.sh starts.
//!
//! Each test works in its own `pika-test-incus-*` project (scripts/test.sh deletes leftovers).
//! Environment: INCUS_SOCKET (default /var/lib/incus/unix.socket), PIKA_TEST_IMAGE_DIR (its
//! `container/` image is used when present; otherwise, and for the second image, the tests build
//! busybox images with scripts/lib/test-image.sh).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use pika_incus::{
    CertificateAdd, Config, Error, ExecRequest, FileMode, HttpsConfig, ImageImport, IncusClient,
    InstanceCreate, ProjectClient, ProjectCreate, api,
};

const ALIAS: &str = "pika-test/busybox";

fn socket() -> PathBuf {
    std::env::var_os("INCUS_SOCKET")
        .map_or_else(|| PathBuf::from(api::DEFAULT_UNIX_SOCKET), PathBuf::from)
}

/// `RUST_LOG=pika_incus=debug` shows each request (method, path, status, duration).
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn unix_client() -> IncusClient {
    init_logging();
    IncusClient::unix(socket())
        .expect("unix client")
        .with_timeout(Duration::from_secs(30))
}

/// A project name unique to this test and process.
fn project_name(tag: &str) -> String {
    format!("pika-test-incus-{tag}-{}", std::process::id())
}

/// A busybox container image built by scripts/lib/test-image.sh into `out` with `marker` in
/// /etc/pika-test-marker.
fn build_image(out: &Path, marker: &str) -> Result<ImageImport> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib/test-image.sh");
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -e; source "$1"; test_image_container "$2" "pika-incus test image" "$3""#)
        .arg("bash")
        .arg(&lib)
        .arg(out)
        .arg(marker)
        .status()
        .with_context(|| format!("running {}", lib.display()))?;
    ensure!(
        status.success(),
        "test_image_container {} failed: {status}",
        out.display()
    );
    Ok(split_image(out))
}

fn split_image(dir: &Path) -> ImageImport {
    ImageImport::container(dir.join("metadata.tar.xz"), dir.join("rootfs.squashfs"))
}

/// The shared test image of scripts/test.sh (its marker unknown here), or a fresh one built in
/// `scratch` with a known marker.
fn first_image(scratch: &Path) -> Result<(ImageImport, Option<&'static str>)> {
    if let Some(dir) = std::env::var_os("PIKA_TEST_IMAGE_DIR") {
        let dir = PathBuf::from(dir).join("container");
        if dir.join("rootfs.squashfs").exists() {
            return Ok((split_image(&dir), None));
        }
    }
    let marker = "pika-incus-first";
    Ok((build_image(&scratch.join("first"), marker)?, Some(marker)))
}

/// A project whose instances use the default project's profiles (root disk included).
async fn fresh_project(client: &IncusClient, name: &str) -> Result<ProjectClient> {
    match client.delete_project(name).await {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e).context("removing a leftover project"),
    }
    let create = ProjectCreate::new(name)
        .description("pika-incus test")
        .config("features.profiles", "false");
    client.create_project(&create).await?;
    Ok(client.in_project(name))
}

/// Deletes everything the tests put in `project`, then the project.
async fn remove_project(project: &ProjectClient) -> Result<()> {
    for instance in project.list_instances().await? {
        if instance.is_running() {
            project.stop_instance(&instance.name, true).await?;
        }
        project.delete_instance(&instance.name).await?;
    }
    for image in project.list_images().await? {
        project.delete_image(&image.fingerprint).await?;
    }
    project.client().delete_project(project.name()).await?;
    Ok(())
}

/// The smoke run of the issue, through whichever transport `client` uses.
async fn smoke(client: &IncusClient, project_name: &str) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let info = client.server_info().await?;
    ensure!(
        info.auth == "trusted",
        "server sees this client as {:?}",
        info.auth
    );
    ensure!(
        !info.environment.server_version.is_empty(),
        "no server version in {info:?}"
    );
    let pool = client.get_storage_pool("default").await?;
    ensure!(
        !pool.driver.is_empty(),
        "storage pool without driver: {pool:?}"
    );

    let project = fresh_project(client, project_name).await?;
    ensure!(client.get_project(project_name).await?.name == project_name);
    let profile = project.get_profile("default").await?;
    ensure!(
        profile.devices.contains_key("root"),
        "default profile has no root disk: {profile:?}"
    );

    // Image under an alias.
    let (first, first_marker) = first_image(scratch.path())?;
    let image = project.import_image(&first.clone().alias(ALIAS)).await?;
    ensure!(
        image.fingerprint.len() == 64,
        "fingerprint {:?}",
        image.fingerprint
    );
    ensure!(
        image.aliases.iter().any(|alias| alias.name == ALIAS),
        "aliases {:?}",
        image.aliases
    );
    ensure!(project.get_image_alias(ALIAS).await?.target == image.fingerprint);
    ensure!(
        project
            .list_images()
            .await?
            .iter()
            .any(|listed| listed.fingerprint == image.fingerprint)
    );

    // Create + start with user.* config.
    let create = InstanceCreate::from_alias("c1", ALIAS)
        .user_config("pika.test", "smoke")
        .config("limits.processes", "200");
    project.create_instance(&create).await?;
    ensure!(!project.get_instance("c1").await?.is_running());
    project.start_instance("c1").await?;
    let state = project.instance_state("c1").await?;
    ensure!(state.is_running(), "state after start: {state:?}");
    let listed = project.list_instances().await?;
    let c1 = listed
        .iter()
        .find(|instance| instance.name == "c1")
        .context("c1 not listed")?;
    ensure!(
        c1.user_config("pika.test") == Some("smoke"),
        "config {:?}",
        c1.config
    );
    ensure!(
        api::user_config(&c1.config).any(|(key, value)| (key, value) == ("pika.test", "smoke"))
    );

    // Exec with recorded output.
    let echo = project
        .exec("c1", &ExecRequest::new(["echo", "hello from pika-incus"]))
        .await?;
    ensure!(
        echo.exit_code == 0 && echo.stdout == b"hello from pika-incus\n" && echo.stderr.is_empty(),
        "{echo:?}"
    );
    let failing = ExecRequest::new(["sh", "-c", "echo \"to stderr $GREETING\" >&2; exit 3"])
        .env("GREETING", "hi");
    let failed = project.exec("c1", &failing).await?;
    ensure!(
        failed.exit_code == 3 && failed.stdout.is_empty(),
        "{failed:?}"
    );
    ensure!(failed.stderr_lossy() == "to stderr hi\n", "{failed:?}");
    let c1_marker = project
        .exec("c1", &ExecRequest::new(["cat", "/etc/pika-test-marker"]))
        .await?;
    ensure!(
        c1_marker.success() && !c1_marker.stdout.is_empty(),
        "{c1_marker:?}"
    );
    if let Some(expected) = first_marker {
        ensure!(c1_marker.stdout_lossy().trim() == expected, "{c1_marker:?}");
    }

    // File push and pull, with owner and mode.
    let contents = b"line one\nbinary \x00\xff end\n".to_vec();
    let mode = FileMode {
        uid: 1000,
        gid: 1001,
        mode: 0o640,
    };
    project
        .push_file("c1", "/root/pushed.bin", contents.clone(), mode)
        .await?;
    ensure!(
        project.pull_file("c1", "/root/pushed.bin").await? == contents,
        "pulled file differs"
    );
    let stat = project
        .exec(
            "c1",
            &ExecRequest::new(["stat", "-c", "%a %u %g", "/root/pushed.bin"]),
        )
        .await?;
    ensure!(stat.stdout_lossy().trim() == "640 1000 1001", "{stat:?}");

    // Retarget the alias to a second image (other marker, other fingerprint) in one request.
    let second_marker = "pika-incus-second";
    let second = project
        .import_image(&build_image(&scratch.path().join("second"), second_marker)?)
        .await?;
    ensure!(
        second.fingerprint != image.fingerprint,
        "the second image has the same fingerprint"
    );
    project
        .retarget_image_alias(ALIAS, &second.fingerprint)
        .await?;
    ensure!(project.get_image_alias(ALIAS).await?.target == second.fingerprint);
    project
        .create_instance(&InstanceCreate::from_alias("c2", ALIAS).start(true))
        .await?;
    let marker = project
        .exec("c2", &ExecRequest::new(["cat", "/etc/pika-test-marker"]))
        .await?;
    ensure!(
        marker.stdout_lossy().trim() == second_marker,
        "c2 runs {marker:?}"
    );
    ensure!(
        c1_marker.stdout != marker.stdout,
        "c1 and c2 run the same image"
    );

    // Delete everything; the project is gone.
    for name in ["c1", "c2"] {
        project.stop_instance(name, true).await?;
        project.delete_instance(name).await?;
        ensure!(
            project
                .get_instance(name)
                .await
                .is_err_and(|e| e.is_not_found())
        );
    }
    project.delete_image_alias(ALIAS).await?;
    ensure!(
        project
            .get_image_alias(ALIAS)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    for fingerprint in [&image.fingerprint, &second.fingerprint] {
        project.delete_image(fingerprint).await?;
    }
    ensure!(project.list_images().await?.is_empty());
    client.delete_project(project_name).await?;
    match client.get_project(project_name).await {
        Err(Error::NotFound { what, .. }) => ensure!(what.contains(project_name), "{what}"),
        other => anyhow::bail!("project still there: {other:?}"),
    }
    Ok(())
}

/// Runs `body`, then always `remove_project` (ignoring "not found"), returning `body`'s result.
async fn with_cleanup(
    client: &IncusClient,
    name: &str,
    body: impl Future<Output = Result<()>>,
) -> Result<()> {
    let outcome = body.await;
    let cleanup = remove_project(&client.in_project(name)).await;
    match (outcome, cleanup) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) if !e.downcast_ref::<Error>().is_some_and(Error::is_not_found) => Err(e),
        (Ok(()), _) => Ok(()),
    }
}

#[tokio::test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn unix_socket_smoke() -> Result<()> {
    let client = unix_client();
    let name = project_name("unix");
    with_cleanup(&client, &name, smoke(&client, &name)).await
}
