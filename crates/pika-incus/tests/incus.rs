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
use pika_test_support::image::{self, ContainerImage};
use pika_test_support::project_prefix;

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
    format!("{}-incus-{tag}-{}", project_prefix(), std::process::id())
}

/// A busybox container image built into `out` with `marker` in /etc/pika-test-marker.
fn build_image(out: &Path, marker: &str) -> ImageImport {
    split_image(&image::build_container(
        out,
        "pika-incus test image",
        marker,
    ))
}

fn split_image(image: &ContainerImage) -> ImageImport {
    ImageImport::container(image.metadata(), image.rootfs())
}

/// A project whose instances use the default project's profiles (root disk included).
async fn fresh_project(client: &IncusClient, name: &str) -> Result<ProjectClient> {
    match client.in_project(name).delete_with_contents().await {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e).context("removing a leftover project"),
    }
    let create = ProjectCreate::new(name)
        .description("pika-incus test")
        .config("features.profiles", "false");
    client.create_project(&create).await?;
    Ok(client.in_project(name))
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
    let shared = image::shared_container();
    let (first, first_marker) = (split_image(shared), shared.marker.as_deref());
    // One alias made inside the upload (X-Incus-aliases), one after it.
    let upload_alias = format!("{ALIAS}/v1");
    let image = project
        .import_image(&first.clone().alias(ALIAS).upload_alias(&upload_alias))
        .await?;
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
    let aliases = project.list_image_aliases().await?;
    for name in [ALIAS, upload_alias.as_str()] {
        ensure!(
            aliases
                .iter()
                .any(|a| a.name == name && a.target == image.fingerprint),
            "{name} not listed: {aliases:?}"
        );
    }
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
        .import_image(&build_image(&scratch.path().join("second"), second_marker))
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

/// Runs `body`, then always deletes the project and its contents (gone already is fine);
/// returns `body`'s result first.
async fn with_cleanup(
    client: &IncusClient,
    name: &str,
    body: impl Future<Output = Result<()>>,
) -> Result<()> {
    let outcome = body.await;
    let cleanup = client.in_project(name).delete_with_contents().await;
    match (outcome, cleanup) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) if !e.is_not_found() => Err(e.into()),
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

/// A self-signed certificate and its key (PEM), as a fresh Incus client identity.
fn identity(name: &str) -> Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()])?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn https_client(
    endpoint: &str,
    (cert, key): &(String, String),
    server_cert_pem: Option<String>,
) -> Result<IncusClient> {
    let config = HttpsConfig {
        endpoint: endpoint.to_string(),
        client_cert_pem: cert.clone(),
        client_key_pem: key.clone(),
        server_cert_pem,
        insecure_tls: false,
    };
    Ok(IncusClient::https(config)?.with_timeout(Duration::from_secs(30)))
}

fn https_address_config(address: &str) -> Config {
    Config::from([("core.https_address".to_string(), address.to_string())])
}

/// HTTPS transport: pinned smoke, untrusted client, wrong pin, no pin (system roots), insecure.
/// One test function because it changes the server's `core.https_address` (restored at the end).
#[tokio::test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn https_transport() -> Result<()> {
    let _lock = https_config_lock().await?;
    let unix = unix_client();
    let info = unix.server_info().await?;
    let previous_address = info
        .config_str("core.https_address")
        .unwrap_or_default()
        .to_string();
    let server_cert = info.environment.certificate.clone();
    ensure!(
        server_cert.contains("BEGIN CERTIFICATE"),
        "no server certificate in GET /1.0"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    unix.update_server_config(&https_address_config(&address))
        .await?;
    let trusted = identity("pika-incus-test-trusted")?;
    let added = unix
        .add_certificate(&CertificateAdd {
            name: project_name("https"),
            certificate_pem: trusted.0.clone(),
            ..CertificateAdd::default()
        })
        .await;

    let endpoint = format!("https://{address}");
    let outcome = match &added {
        Ok(_) => https_checks(&unix, &endpoint, &trusted, &server_cert).await,
        Err(e) => Err(anyhow::anyhow!("trusting the test certificate: {e}")),
    };

    // Restore the server whatever happened.
    if let Ok(fingerprint) = &added {
        unix.delete_certificate(fingerprint).await?;
        ensure!(
            unix.delete_certificate(fingerprint)
                .await
                .is_err_and(|e| e.is_not_found())
        );
    }
    unix.update_server_config(&https_address_config(&previous_address))
        .await?;
    let restored = unix.server_info().await?;
    ensure!(
        restored
            .config_str("core.https_address")
            .unwrap_or_default()
            == previous_address
    );
    outcome
}

/// Serializes the tests that change the server's HTTPS address, across processes too (two
/// `cargo test` runs at once): an abstract unix socket is bound while the lock is held and freed
/// by the kernel when the holder exits, however it exits.
async fn https_config_lock() -> Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = std::os::unix::net::SocketAddr::from_abstract_name(b"pika-incus-test-https-config")?;
    let started = Instant::now();
    loop {
        match std::os::unix::net::UnixListener::bind_addr(&name) {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < Duration::from_secs(300) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("waiting for the HTTPS config lock"),
        }
    }
}

async fn https_checks(
    unix: &IncusClient,
    endpoint: &str,
    trusted: &(String, String),
    server_cert: &str,
) -> Result<()> {
    let pinned = https_client(endpoint, trusted, Some(server_cert.to_string()))?;
    // The listener may take a moment after the config change.
    let started = Instant::now();
    let info = loop {
        match pinned.server_info().await {
            Ok(info) => break info,
            Err(Error::Transport { .. }) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    ensure!(
        info.auth == "trusted",
        "the added certificate is not trusted: {:?}",
        info.auth
    );
    ensure!(pinned.endpoint() == endpoint);

    let name = project_name("https");
    with_cleanup(unix, &name, smoke(&pinned, &name)).await?;

    // An untrusted client certificate: the server talks, but refuses anything that matters.
    let stranger = https_client(
        endpoint,
        &identity("pika-incus-test-stranger")?,
        Some(server_cert.to_string()),
    )?;
    ensure!(stranger.server_info().await?.auth == "untrusted");
    match stranger.list_projects().await {
        Err(Error::Unauthorized {
            what,
            endpoint: named,
            status,
            ..
        }) => {
            ensure!(
                what == "projects" && named == endpoint && status == 403,
                "{what} {named} {status}"
            );
        }
        other => anyhow::bail!("an untrusted certificate listed projects: {other:?}"),
    }
    match stranger.in_project("default").get_instance("nothing").await {
        Err(e @ Error::Unauthorized { .. }) => {
            ensure!(e.to_string().contains("instance default/nothing"), "{e}")
        }
        other => anyhow::bail!("an untrusted certificate read an instance: {other:?}"),
    }

    // A pinned certificate that is not the server's: the TLS handshake fails.
    let (other_cert, _) = identity("not-the-server")?;
    let wrong_pin = https_client(endpoint, trusted, Some(other_cert))?;
    match wrong_pin.server_info().await {
        Err(Error::Transport {
            endpoint: named,
            message,
            ..
        }) => {
            ensure!(named == endpoint, "{named}");
            ensure!(message.contains("not the pinned one"), "{message}");
        }
        other => anyhow::bail!("a wrong pinned certificate was accepted: {other:?}"),
    }

    // No pin: the system roots do not know a self-signed Incus certificate.
    let unpinned = https_client(endpoint, trusted, None)?;
    ensure!(
        matches!(unpinned.server_info().await, Err(Error::Transport { .. })),
        "a self-signed server certificate passed system-root verification"
    );

    // insecure_tls, set on purpose, skips server verification.
    let insecure = IncusClient::https(HttpsConfig {
        endpoint: endpoint.to_string(),
        client_cert_pem: trusted.0.clone(),
        client_key_pem: trusted.1.clone(),
        server_cert_pem: None,
        insecure_tls: true,
    })?;
    ensure!(insecure.server_info().await?.auth == "trusted");
    ensure!(unix.server_info().await?.auth == "trusted");
    Ok(())
}

/// The HTTPS settings are checked before anything is dialled, without printing the key.
#[test]
fn https_config_errors() -> Result<()> {
    let trusted = identity("pika-incus-test-config")?;
    let config = HttpsConfig {
        endpoint: "https://127.0.0.1:8443".into(),
        client_cert_pem: trusted.0.clone(),
        client_key_pem: trusted.1.clone(),
        server_cert_pem: Some(trusted.0.clone()),
        insecure_tls: true,
    };
    let debug = format!("{config:?}");
    ensure!(
        !debug.contains("PRIVATE KEY") && !debug.contains("BEGIN CERTIFICATE"),
        "{debug}"
    );
    let both = IncusClient::https(config.clone());
    ensure!(
        matches!(both, Err(Error::Config { .. })),
        "pin + insecure accepted"
    );
    let plain_http = IncusClient::https(HttpsConfig {
        endpoint: "http://127.0.0.1:8443".into(),
        ..config.clone()
    });
    ensure!(
        matches!(plain_http, Err(Error::Config { .. })),
        "http:// accepted"
    );
    let bad_key = IncusClient::https(HttpsConfig {
        client_key_pem: "garbage".into(),
        insecure_tls: false,
        ..config.clone()
    });
    match bad_key {
        Err(e @ Error::Config { .. }) => ensure!(!e.to_string().contains(&trusted.1), "{e}"),
        other => anyhow::bail!("a garbage key was accepted: {other:?}"),
    }
    Ok(())
}

/// A project with the test image under [`ALIAS`].
async fn project_with_image(client: &IncusClient, tag: &str) -> Result<ProjectClient> {
    let project = fresh_project(client, &project_name(tag)).await?;
    let image = split_image(image::shared_container());
    project.import_image(&image.alias(ALIAS)).await?;
    Ok(project)
}

#[tokio::test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn errors_name_their_object() -> Result<()> {
    let client = unix_client();
    let name = project_name("errors");
    with_cleanup(&client, &name, async {
        let project = project_with_image(&client, "errors").await?;

        // Unknown instance, alias, image, project: not found, naming the object.
        match project.get_instance("no-such-instance").await {
            Err(Error::NotFound { what, .. }) => ensure!(
                what == format!("instance {name}/no-such-instance"),
                "{what}"
            ),
            other => anyhow::bail!("unknown instance: {other:?}"),
        }
        match project.start_instance("no-such-instance").await {
            Err(e) => ensure!(
                e.is_not_found() && e.what() == format!("instance {name}/no-such-instance"),
                "{e}"
            ),
            Ok(()) => anyhow::bail!("started an unknown instance"),
        }
        match project.get_image_alias("pika-test/none").await {
            Err(e) => ensure!(
                e.is_not_found() && e.what() == format!("image alias {name}/pika-test/none"),
                "{e}"
            ),
            Ok(alias) => anyhow::bail!("unknown alias found: {alias:?}"),
        }
        ensure!(
            client
                .get_project("pika-test-incus-none")
                .await
                .is_err_and(|e| e.is_not_found())
        );

        // Duplicate instance name: conflict.
        let create = InstanceCreate::from_alias("dup", ALIAS);
        project.create_instance(&create).await?;
        match project.create_instance(&create).await {
            Err(Error::Conflict { what, message }) => {
                ensure!(what == format!("instance {name}/dup"), "{what}");
                ensure!(!message.is_empty(), "a conflict without Incus's message");
            }
            other => anyhow::bail!("duplicate instance name: {other:?}"),
        }
        // Duplicate alias: conflict.
        let target = project.get_image_alias(ALIAS).await?.target;
        ensure!(
            project
                .create_image_alias(ALIAS, &target, "")
                .await
                .is_err_and(|e| e.is_conflict())
        );

        // An unknown alias (Incus 6.0 answers 500 "Image not provided"): the error names the instance.
        let orphan = InstanceCreate::from_alias("orphan", "pika-test/none");
        match project.create_instance(&orphan).await {
            Err(e) => ensure!(e.what() == format!("instance {name}/orphan"), "{e}"),
            Ok(()) => anyhow::bail!("created an instance from an unknown alias"),
        }

        // A failing operation carries Incus's message: stopping the never started "dup".
        match project.stop_instance("dup", false).await {
            Err(Error::OperationFailed { what, message }) => {
                ensure!(what == format!("instance {name}/dup"), "{what}");
                ensure!(message.contains("already stopped"), "{message}");
            }
            other => anyhow::bail!("stopped a stopped instance: {other:?}"),
        }
        Ok(())
    })
    .await
}

/// `remove_instance` deletes in any state: never started, running, ephemeral running, absent.
#[tokio::test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn remove_instance_deletes_in_any_state() -> Result<()> {
    let client = unix_client();
    let name = project_name("remove");
    with_cleanup(&client, &name, async {
        let project = project_with_image(&client, "remove").await?;
        project
            .create_instance(&InstanceCreate::from_alias("stopped", ALIAS))
            .await?;
        project
            .create_instance(&InstanceCreate::from_alias("running", ALIAS).start(true))
            .await?;
        project
            .create_instance(
                &InstanceCreate::from_alias("ephemeral", ALIAS)
                    .ephemeral(true)
                    .start(true),
            )
            .await?;
        for instance in ["stopped", "running", "ephemeral", "absent"] {
            project
                .remove_instance(instance)
                .await
                .with_context(|| format!("removing {instance}"))?;
            ensure!(
                project
                    .get_instance(instance)
                    .await
                    .is_err_and(|e| e.is_not_found()),
                "{instance} is still there"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn missing_socket_is_a_transport_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("incus-not-here.socket");
    let client = IncusClient::unix(&path)?.with_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), client.server_info()).await?;
    match outcome {
        Err(e @ Error::Transport { .. }) => {
            let text = e.to_string();
            ensure!(text.contains(&path.display().to_string()), "{text}");
            ensure!(text.contains("No such file"), "{text}");
            ensure!(e.what() == "server");
        }
        other => anyhow::bail!("a missing socket gave {other:?}"),
    }
    ensure!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

/// A socket that accepts connections but never answers: the call ends with a timeout.
#[tokio::test]
async fn silent_socket_times_out() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("silent.socket");
    let _listener = std::os::unix::net::UnixListener::bind(&path)?;
    let client = IncusClient::unix(&path)?.with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.in_project("p").list_instances(),
    )
    .await?;
    match outcome {
        Err(Error::Timeout { what, after }) => {
            ensure!(
                what == "instances p/*" && after == Duration::from_millis(500),
                "{what} {after:?}"
            );
        }
        other => anyhow::bail!("a silent socket gave {other:?}"),
    }
    ensure!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

/// What Incus names a split image: the SHA-256 of the metadata tarball followed by the rootfs/disk.
fn split_fingerprint(metadata: &Path, rootfs: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(std::fs::read(metadata)?);
    hash.update(std::fs::read(rootfs)?);
    Ok(hex::encode(hash.finalize()))
}

/// Both kinds of split image arrive byte for byte through the multipart upload (Incus's
/// fingerprint is the hash of both files) under the part name their kind needs.
#[tokio::test]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn split_images_upload_intact() -> Result<()> {
    let client = unix_client();
    let name = project_name("upload");
    with_cleanup(&client, &name, async {
        let project = fresh_project(&client, &name).await?;
        let scratch = tempfile::tempdir()?;
        let (metadata, disk) =
            image::build_vm(&scratch.path().join("vm"), "pika-incus vm", "upload");
        let vm = project
            .import_image(&ImageImport::virtual_machine(&metadata, &disk).alias("pika-test/vm"))
            .await?;
        ensure!(vm.image_type == "virtual-machine", "{vm:?}");
        ensure!(
            vm.fingerprint == split_fingerprint(&metadata, &disk)?,
            "{vm:?}"
        );
        ensure!(vm.filename == "disk.qcow2", "{vm:?}");

        let container = image::shared_container();
        let imported = project.import_image(&split_image(container)).await?;
        ensure!(imported.image_type == "container", "{imported:?}");
        ensure!(
            imported.fingerprint == split_fingerprint(&container.metadata(), &container.rootfs())?,
            "{imported:?}"
        );
        Ok(())
    })
    .await
}
