//! The contract reaches the real incusd: every role's launch config and mounts on a created
//! instance, Secure Boot off on VM roles, each readiness kind, and a guest that never gets ready
//! deleted with an error naming role, readiness and timeout.

use std::path::PathBuf;
use std::time::Duration;

use pika_guest_launch::{
    AfterStart, GuestFile, LaunchError, MountSources, NotReady, apply_contract, launch,
    launch_with, size_root_disk, wait_ready, wait_ready_via,
};
use pika_incus::{InstanceCreate, InstanceType, api::is_vm_only_config_key};
use pika_incus_guest_role::{IncusGuestRole, Readiness};
use pika_test_support::{TestProject, repo_root, run_ok, storage_pool};
use serde_json::Value;

/// A project whose own default profile has a root disk, so instances need no other profile.
fn project(tag: &str) -> TestProject {
    let project = TestProject::new(tag);
    let pool = format!("pool={}", storage_pool());
    project.incus_ok(&[
        "profile", "device", "add", "default", "root", "disk", "path=/", &pool,
    ]);
    project
}

fn client(project: &TestProject) -> pika_incus::ProjectClient {
    pika_incus::IncusClient::unix(pika_incus::api::DEFAULT_UNIX_SOCKET)
        .unwrap()
        .in_project(project.name.clone())
}

/// A [`project`], its client, and the first role of the registry with its image imported.
fn with_first_role(tag: &str) -> (TestProject, pika_incus::ProjectClient, IncusGuestRole) {
    let project = project(tag);
    let client = client(&project);
    let role = IncusGuestRole::ALL[0];
    project.import_image(role.default_image_alias());
    (project, client, role)
}

/// Imports the fake VM image of scripts/lib/test-image.sh (`$PIKA_TEST_IMAGE_DIR/vm`, else built
/// into `scratch`) under `alias`, or points `alias` at it when it is already there.
fn import_vm(project: &TestProject, alias: &str, scratch: &std::path::Path) {
    if let Some(fingerprint) = project.images().first() {
        project.incus_ok(&["image", "alias", "create", alias, fingerprint]);
        return;
    }
    let shared = std::env::var_os("PIKA_TEST_IMAGE_DIR").map(|d| PathBuf::from(d).join("vm"));
    let dir = match shared.filter(|d| d.join("disk.qcow2").is_file()) {
        Some(dir) => dir,
        None => {
            let lib = repo_root().join("scripts/lib/test-image.sh");
            let out = scratch.join("vm");
            run_ok(
                std::process::Command::new("bash")
                    .args(["-c", r#"set -e; source "$1"; test_image_vm "$2""#, "bash"])
                    .arg(&lib)
                    .arg(&out),
            );
            out
        }
    };
    let (metadata, disk) = (dir.join("metadata.tar.xz"), dir.join("disk.qcow2"));
    project.incus_ok(&[
        "image",
        "import",
        metadata.to_str().unwrap(),
        disk.to_str().unwrap(),
        "--alias",
        alias,
    ]);
}

fn mount_sources(role: IncusGuestRole, dir: &std::path::Path) -> MountSources {
    role.mounts()
        .iter()
        .map(|m| (m.name.to_owned(), Some(dir.join(m.name))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn every_roles_launch_config_and_mounts_reach_the_instance() {
    let project = project("launch-config");
    let client = client(&project);
    let dirs = tempfile::tempdir().unwrap();
    for &role in IncusGuestRole::ALL {
        project.import_image(role.default_image_alias());
        let sources = mount_sources(role, dirs.path());
        for dir in sources.values().flatten() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let name = format!("c-{role}");
        let create = InstanceCreate::from_alias(&name, role.default_image_alias());
        let create = apply_contract(create, role, &sources).unwrap();
        client.create_instance(&create).await.unwrap();

        let instance = project.instance(&name).expect("created");
        let config = &instance["config"];
        for (key, value) in role.launch_config() {
            if is_vm_only_config_key(&key) {
                assert!(config.get(&key).is_none(), "{role}: {key} on a container");
            } else {
                assert_eq!(config[&key], value.as_str(), "{role}: {key}: {config}");
            }
        }
        assert_eq!(config["limits.cpu"], role.cpu().to_string(), "{role}");
        assert_eq!(config["limits.memory"], format!("{}MiB", role.memory_mib()));
        for mount in role.mounts() {
            let device = &instance["devices"][mount.name];
            assert_eq!(device["type"], "disk", "{role}: {device}");
            assert_eq!(device["path"], mount.path, "{role}: {device}");
            let source = sources[mount.name].as_ref().unwrap();
            assert_eq!(device["source"], source.display().to_string());
            let readonly = device.get("readonly").and_then(Value::as_str) == Some("true");
            assert_eq!(readonly, mount.read_only, "{role}: {device}");
            assert_eq!(
                device["shift"], "true",
                "containers idmap the mount: {device}"
            );
        }
        client.delete_instance(&name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn vm_roles_without_a_signed_image_get_secure_boot_off() {
    let vm_roles: Vec<IncusGuestRole> = IncusGuestRole::ALL
        .iter()
        .copied()
        .filter(|r| r.instance_type() == InstanceType::VirtualMachine.as_str())
        .collect();
    assert!(!vm_roles.is_empty(), "roles.toml has VM roles");
    let project = project("launch-vm");
    let client = client(&project);
    let dirs = tempfile::tempdir().unwrap();
    for role in vm_roles {
        import_vm(&project, role.default_image_alias(), dirs.path());
        let name = format!("v-{role}");
        let create = InstanceCreate::from_alias(&name, role.default_image_alias())
            .instance_type(InstanceType::VirtualMachine);
        let create = apply_contract(create, role, &mount_sources(role, dirs.path())).unwrap();
        let secure_boot = create.config.get("security.secureboot").map(String::as_str);
        let expected = (!role.secure_boot()).then_some("false");
        assert_eq!(secure_boot, expected, "{role}: {:?}", create.config);
        match client.create_instance(&create).await {
            Ok(()) => {
                // A host that runs VMs: read the created VM back.
                let instance = project.instance(&name).unwrap();
                for (key, value) in &create.config {
                    assert_eq!(instance["config"][key], value.as_str(), "{role}: {key}");
                }
                client.delete_instance(&name).await.unwrap();
            }
            Err(e) if e.to_string().contains("not supported on this server") => {
                // Here incusd refuses any VM before it looks at the config (no vhost_vsock), so
                // its config validator is asked through a profile of a project with its own
                // profiles: it accepts the VM keys the create carried, and refuses a misspelt one.
                let profile = format!("p-{role}");
                project.incus_ok(&["profile", "create", &profile]);
                let mut args = vec!["profile".to_owned(), "set".into(), profile.clone()];
                args.extend(create.config.iter().map(|(k, v)| format!("{k}={v}")));
                project.incus_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
                let misspelt =
                    project.incus(&["profile", "set", &profile, "security.secureboots=false"]);
                assert!(!misspelt.status.success(), "incusd validates profile keys");
                project.incus_ok(&["profile", "delete", &profile]);
            }
            Err(e) => panic!("{role}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn each_readiness_kind_waits_for_what_it_names() {
    let (_project, client, role) = with_first_role("launch-ready");
    let create = InstanceCreate::from_alias("r1", role.default_image_alias()).start(true);
    client.create_instance(&create).await.unwrap();
    let short = Duration::from_secs(2);

    for ready in [Readiness::Booted, Readiness::IncusAgent] {
        wait_ready(&client, "r1", ready, short).await.unwrap();
    }
    let file = Readiness::LifecycleFile("/run/pika-test-ready");
    let err = wait_ready(&client, "r1", file, short).await.unwrap_err();
    assert!(matches!(err, NotReady::TimedOut { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("lifecycle file /run/pika-test-ready") && text.contains("2s"),
        "{text}"
    );
    client
        .push_file("r1", "/run/pika-test-ready", "", Default::default())
        .await
        .unwrap();
    wait_ready(&client, "r1", file, short).await.unwrap();

    // http: probed inside the guest (busybox wget here), so it reaches the guest's own loopback
    // though the guest has no network device. Nothing listens yet: not ready, the error says why.
    let http = Readiness::Http {
        port: 18080,
        path: "/healthz",
    };
    let err = wait_ready(&client, "r1", http, short).await.unwrap_err();
    assert!(matches!(err, NotReady::TimedOut { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("http http://127.0.0.1:18080/healthz")
            && text.contains("GET http://127.0.0.1:18080/healthz in the guest exited"),
        "{text}"
    );
    let guest = |script: &str| {
        let exec = pika_incus::ExecRequest::new(["sh", "-c", script]);
        let client = client.clone();
        async move {
            let out = client.exec("r1", &exec).await.unwrap();
            assert!(out.success(), "{}", out.stderr_lossy());
        }
    };
    guest("ip link set lo up 2>/dev/null; mkdir -p /www && echo ok >/www/healthz && httpd -p 127.0.0.1:18080 -h /www").await;
    wait_ready(&client, "r1", http, short).await.unwrap();
    // A 404 is not ready.
    let missing = Readiness::Http {
        port: 18080,
        path: "/nothing-here",
    };
    let err = wait_ready(&client, "r1", missing, short).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("/nothing-here in the guest exited"),
        "{err}"
    );
    // (A guest with neither curl nor wget: see the probe script's own tests; busybox sh here runs
    // its wget applet even without /bin/wget.)

    // No network device here: nothing to connect to, so ssh is never ready.
    let err = wait_ready(&client, "r1", Readiness::Ssh, short)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no global network address"),
        "{err}"
    );

    // A stopped instance will not become ready: said at once, not after the timeout.
    client.stop_instance("r1", true).await.unwrap();
    let started = std::time::Instant::now();
    let err = wait_ready(&client, "r1", Readiness::Booted, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, NotReady::Gone { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn a_guest_that_does_not_get_ready_is_deleted_and_the_error_says_why() {
    // A busybox container without a network can never satisfy ssh or a lifecycle file.
    let role = *IncusGuestRole::ALL
        .iter()
        .find(|r| matches!(r.readiness(), Readiness::Ssh | Readiness::LifecycleFile(_)))
        .expect("roles.toml has a role with ssh or lifecycle-file readiness");
    let project = project("launch-timeout");
    let client = client(&project);
    project.import_image(role.default_image_alias());
    let dirs = tempfile::tempdir().unwrap();
    let create = InstanceCreate::from_alias("late", role.default_image_alias());
    let create = apply_contract(create, role, &mount_sources(role, dirs.path())).unwrap();
    let err = launch(&client, &create, role, &[], Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(err, LaunchError::NotReady { .. }), "{err}");
    let text = err.to_string();
    let readiness = pika_guest_launch::readiness::describe(role.readiness());
    for part in [role.as_str(), readiness.as_str(), "within 3s", "late"] {
        assert!(text.contains(part), "{text:?} names {part:?}");
    }
    assert_eq!(err.cleanup(), None);
    assert!(
        project.instances().is_empty(),
        "no orphan: {:?}",
        project.instances()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn files_are_written_before_the_readiness_wait() {
    let (project, client, role) = with_first_role("launch-files");
    let create = InstanceCreate::from_alias("f1", role.default_image_alias());
    // The plain launch config only (mounts would need host directories, not the point here).
    let create = role
        .launch_config()
        .into_iter()
        .filter(|(k, _)| !is_vm_only_config_key(k))
        .fold(create, |c, (k, v)| c.config(k, v));
    let key = GuestFile {
        path: "/root/.ssh/authorized_keys".into(),
        contents: b"ssh-ed25519 AAAA test\n".to_vec(),
        mode: 0o600,
        dir_mode: 0o700,
        uid: 0,
        gid: 0,
    };
    // Any readiness a running busybox meets: launch pushes the file first.
    let ready_role = *IncusGuestRole::ALL
        .iter()
        .find(|r| matches!(r.readiness(), Readiness::Booted | Readiness::IncusAgent))
        .expect("a role that a busybox container satisfies");
    launch(
        &client,
        &create,
        ready_role,
        &[key],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let modes = project.incus_ok(&[
        "exec",
        "f1",
        "--",
        "stat",
        "-c",
        "%a %U %n",
        "/root/.ssh",
        "/root/.ssh/authorized_keys",
    ]);
    assert_eq!(
        modes,
        "700 root /root/.ssh\n600 root /root/.ssh/authorized_keys\n"
    );
    assert_eq!(
        client
            .pull_file("f1", "/root/.ssh/authorized_keys")
            .await
            .unwrap(),
        b"ssh-ed25519 AAAA test\n"
    );
    // launch sized the root disk by the role it launched as.
    let root = &project.instance("f1").expect("launched")["devices"]["root"];
    assert_eq!(
        root["size"],
        format!("{}MiB", ready_role.disk_size_mib()),
        "{root}"
    );
}

/// Every role's `disk-size-mib` reaches the instance's root disk: copied from the profile's root
/// disk (pool and all) when the create has none, added to the create's own root disk otherwise.
/// The `dir` pool here does not enforce the size for containers; the device config is what is
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn root_disks_get_the_roles_size() {
    let project = project("launch-disk");
    let client = client(&project);
    for &role in IncusGuestRole::ALL {
        project.import_image(role.default_image_alias());
        let size = format!("{}MiB", role.disk_size_mib());
        let from_profile = format!("p-{role}");
        let create = InstanceCreate::from_alias(&from_profile, role.default_image_alias());
        let create = size_root_disk(create, role, &client).await.unwrap();
        client.create_instance(&create).await.unwrap();
        let instance = project.instance(&from_profile).expect("created");
        let root = &instance["devices"]["root"];
        assert_eq!(root["type"], "disk", "{role}: {instance}");
        assert_eq!(root["path"], "/", "{role}: {root}");
        assert_eq!(root["pool"], storage_pool(), "{role}: {root}");
        assert_eq!(root["size"], size, "{role}: {root}");
        assert_eq!(instance["expanded_devices"]["root"]["size"], size, "{role}");

        let own = format!("o-{role}");
        let create = InstanceCreate::from_alias(&own, role.default_image_alias())
            .profiles(Vec::<String>::new())
            .device(
                "rootfs",
                [
                    ("type", "disk"),
                    ("path", "/"),
                    ("pool", storage_pool().as_str()),
                ],
            );
        let create = size_root_disk(create, role, &client).await.unwrap();
        client.create_instance(&create).await.unwrap();
        let root = &project.instance(&own).expect("created")["devices"]["rootfs"];
        assert_eq!(root["size"], size, "{role}: {root}");
        assert!(
            project.instance(&own).unwrap()["devices"]
                .get("root")
                .is_none()
        );
        for name in [from_profile, own] {
            client.delete_instance(&name).await.unwrap();
        }
    }
}

/// Devices of `AfterStart` reach the running guest (a proxy device here, whose start Incus makes
/// slow); one Incus refuses (its port held by another program) fails the launch and leaves no
/// instance. An http readiness through the instance's own proxy device waits for the service
/// and says at once when the instance stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real incusd: run scripts/test.sh"]
async fn devices_after_start_reach_the_guest_and_a_refused_one_leaves_nothing() {
    let project = project("launch-devices");
    let client = client(&project);
    let role = *IncusGuestRole::ALL
        .iter()
        .find(|r| matches!(r.readiness(), Readiness::Booted | Readiness::IncusAgent))
        .expect("a role that a busybox container satisfies");
    project.import_image(role.default_image_alias());
    let proxy = |listen: std::net::SocketAddr| {
        std::collections::BTreeMap::from(
            [
                ("type", "proxy".to_owned()),
                ("listen", format!("tcp:{listen}")),
                ("connect", "tcp:127.0.0.1:18080".to_owned()),
                ("bind", "host".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        )
    };
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = free.local_addr().unwrap();
    drop(free);
    let after = AfterStart {
        devices: [("gateway".to_owned(), proxy(listen))].into(),
        ..AfterStart::default()
    };
    let create = InstanceCreate::from_alias("d1", role.default_image_alias());
    launch_with(&client, &create, role, &after, Duration::from_secs(60))
        .await
        .unwrap();
    let device = &project.instance("d1").expect("launched")["devices"]["gateway"];
    assert_eq!(device["listen"], format!("tcp:{listen}"), "{device}");

    // Through the proxy: not ready while nothing listens in the guest, ready once it does.
    let http = Readiness::Http {
        port: 18080,
        path: "/healthz",
    };
    let short = Duration::from_secs(2);
    let err = wait_ready_via(&client, "d1", http, Some(listen), short)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotReady::TimedOut { .. }) && err.to_string().contains("proxy device"),
        "{err}"
    );
    client
        .exec(
            "d1",
            &pika_incus::ExecRequest::new([
                "sh",
                "-c",
                "ip link set lo up 2>/dev/null; mkdir -p /www && echo ok >/www/healthz && httpd -p 127.0.0.1:18080 -h /www",
            ]),
        )
        .await
        .unwrap();
    wait_ready_via(&client, "d1", http, Some(listen), short)
        .await
        .unwrap();
    // An instance that stops during the wait will not become ready: said at once, not at the
    // timeout.
    let gone = Readiness::Http {
        port: 18080,
        path: "/nothing-here",
    };
    let started = std::time::Instant::now();
    let (waited, stopped) = tokio::join!(
        wait_ready_via(&client, "d1", gone, Some(listen), Duration::from_secs(60)),
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            client.stop_instance("d1", true).await
        }
    );
    stopped.unwrap();
    let err = waited.unwrap_err();
    assert!(matches!(err, NotReady::Gone { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Another program holds the port: Incus refuses the device, and the instance goes.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let after = AfterStart {
        devices: [("gateway".to_owned(), proxy(held.local_addr().unwrap()))].into(),
        ..AfterStart::default()
    };
    let create = InstanceCreate::from_alias("d2", role.default_image_alias());
    let err = launch_with(&client, &create, role, &after, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, LaunchError::Incus { .. }), "{err}");
    // (forkproxy reports the bind's failure as `address already in use` or, racing with its
    // listener child, as a failure to receive the listening socket.)
    assert!(
        err.to_string()
            .contains("Failed to start device \"gateway\""),
        "{err}"
    );
    assert_eq!(err.cleanup(), None);
    assert!(
        project.instance("d2").is_none(),
        "no orphan: {:?}",
        project.instance_names()
    );
}
