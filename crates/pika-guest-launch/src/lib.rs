//! Launching Incus guests with their role's runtime contract, the same way in every launcher
//! (pika-server, jerichoci, pika-guest): no launcher has per-role code.
//!
//! - [`apply_contract`] adds the role's `launch_config()` (limits.cpu, limits.memory, Secure Boot,
//!   instance-config) and its mounts (disk devices for host directories the launcher supplies) to
//!   a create request;
//! - [`wait_ready`] polls the instance until it is ready the way the role says ([`readiness`]);
//! - [`size_root_disk`] gives the root disk the role's `disk-size-mib`;
//! - [`launch`] does all three around the create (pushing [`GuestFile`]s, such as an SSH key, once the
//!   guest runs) and, when the guest does not become ready, deletes the instance before it reports
//!   the error, so a failed launch leaves nothing behind; [`launch_with`] also adds devices to the
//!   running guest while the files are written (see [`AfterStart`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use pika_guest_launch::{MountSources, apply_contract, image_type_of_alias, launch};
//! use pika_incus::{IncusClient, InstanceCreate, api};
//! use pika_incus_guest_role::IncusGuestRole;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let project = IncusClient::unix(api::DEFAULT_UNIX_SOCKET)?.in_project("pika-demo");
//! let role = IncusGuestRole::ManagedOpenclaw;
//! let alias = role.default_image_alias();
//! let create = InstanceCreate::from_alias("demo", alias)
//!     .instance_type(image_type_of_alias(&project, alias).await?);
//! let create = apply_contract(create, role, &MountSources::new())?;
//! launch(&project, &create, role, &[], Duration::from_secs(120)).await?;
//! # Ok(())
//! # }
//! ```

mod contract;
pub mod http_probe;
pub mod readiness;

use std::time::Duration;

use pika_incus::{Devices, FileMode, InstanceCreate, ProjectClient};
use pika_incus_guest_role::IncusGuestRole;
use tokio::time::Instant;

pub use contract::{MountSources, apply_contract, image_type_of_alias, size_root_disk};
pub use pika_incus_guest_role::MountSourceError;
pub use readiness::{DEFAULT_READY_TIMEOUT, NotReady, Ready, wait_ready, wait_ready_via};

/// Why a launch failed. The instance is gone by then unless [`LaunchError::cleanup`] says why not.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{source}{}", cleanup_note(cleanup))]
    Incus {
        source: pika_incus::Error,
        cleanup: Option<String>,
    },
    #[error(
        "guest {instance} of role {role}: writing {path}: {source}{}",
        cleanup_note(cleanup)
    )]
    File {
        role: IncusGuestRole,
        instance: String,
        path: String,
        source: pika_incus::Error,
        cleanup: Option<String>,
    },
    #[error("guest {instance} of role {role}: {source}{}", cleanup_note(cleanup))]
    NotReady {
        role: IncusGuestRole,
        instance: String,
        source: NotReady,
        cleanup: Option<String>,
    },
}

impl LaunchError {
    /// Why the failed instance could not be removed, if it could not.
    pub fn cleanup(&self) -> Option<&str> {
        match self {
            LaunchError::Incus { cleanup, .. }
            | LaunchError::File { cleanup, .. }
            | LaunchError::NotReady { cleanup, .. } => cleanup.as_deref(),
        }
    }
}

fn cleanup_note(cleanup: &Option<String>) -> String {
    match cleanup {
        None => String::new(),
        Some(e) => format!(" (and removing the instance failed: {e})"),
    }
}

/// A file written into a launched guest once it runs, before the readiness wait (an SSH key for
/// `ssh` readiness, a service's configuration). It is owned by `uid`:`gid`, and so is its own
/// directory when the launch creates it (with `dir_mode`); missing directories above that are
/// created 0755, owned by root. Existing directories are left as they are.
///
/// Its `Debug` shows no contents: a file may carry secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// Absolute guest path.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    pub dir_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Debug for GuestFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestFile")
            .field("path", &self.path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Creates and starts `create` (the `start` flag is forced on; the root disk sized by
/// [`size_root_disk`]), writes `files` into it, and waits
/// until it is ready by `role`'s readiness; all of it within `ready_timeout`. On any failure after
/// the create was sent, the instance is deleted before the error is returned.
pub async fn launch(
    project: &ProjectClient,
    create: &InstanceCreate,
    role: IncusGuestRole,
    files: &[GuestFile],
    ready_timeout: Duration,
) -> Result<Ready, LaunchError> {
    let after = AfterStart {
        files: files.to_vec(),
        ..AfterStart::default()
    };
    launch_with(project, create, role, &after, ready_timeout).await
}

/// What a launch does once the guest runs, before it waits for readiness.
#[derive(Clone, Debug, Default)]
pub struct AfterStart {
    /// Written into the guest.
    pub files: Vec<GuestFile>,
    /// Added to the running guest (one `PATCH`), while the files are written. For devices whose
    /// start is slow: Incus starts a non-NAT `proxy` device by polling forkproxy's log once a
    /// second (`internal/server/device/proxy.go`), so each one adds a whole second to whatever
    /// starts it. Added to the running guest, that second overlaps the guest's own boot instead
    /// of delaying it.
    pub devices: Devices,
    /// The host address of the instance's own proxy device to the role's service port: an
    /// `http://127.0.0.1:PORT/PATH` readiness is probed through it (see
    /// [`readiness::wait_ready_via`]).
    pub via: Option<std::net::SocketAddr>,
}

/// [`launch`], with [`AfterStart`]'s devices and proxy probe.
pub async fn launch_with(
    project: &ProjectClient,
    create: &InstanceCreate,
    role: IncusGuestRole,
    after: &AfterStart,
    ready_timeout: Duration,
) -> Result<Ready, LaunchError> {
    let deadline = Instant::now() + ready_timeout;
    let create = size_root_disk(create.clone(), role, project)
        .await
        .map_err(|source| LaunchError::Incus {
            source,
            cleanup: None,
        })?
        .start(true);
    let name = create.name.as_str();
    if let Err(source) = project.create_instance(&create).await {
        // A create whose start failed leaves the instance; a conflict means it was never ours.
        let cleanup = if source.is_conflict() {
            None
        } else {
            project
                .remove_instance(name)
                .await
                .err()
                .map(|e| e.to_string())
        };
        return Err(LaunchError::Incus { source, cleanup });
    }
    let instance = format!("{}/{name}", project.name());
    let cleanup = || async {
        project
            .remove_instance(name)
            .await
            .err()
            .map(|e| e.to_string())
    };
    let files = async {
        for file in &after.files {
            push_until(project, name, file, deadline)
                .await
                .map_err(|source| (file.path.clone(), source))?;
        }
        Ok(())
    };
    let devices = async {
        if after.devices.is_empty() {
            return Ok(());
        }
        project.update_instance_devices(name, &after.devices).await
    };
    let (files, devices) = tokio::join!(files, devices);
    if let Err(source) = devices {
        return Err(LaunchError::Incus {
            source,
            cleanup: cleanup().await,
        });
    }
    if let Err((path, source)) = files {
        return Err(LaunchError::File {
            role,
            instance,
            path,
            source,
            cleanup: cleanup().await,
        });
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match readiness::wait_ready_via(project, name, role.readiness(), after.via, left).await {
        Ok(ready) => Ok(ready),
        Err(source) => {
            let cleanup = cleanup().await;
            // Name the whole timeout, not what was left of it after the files.
            let source = match source {
                NotReady::TimedOut {
                    readiness, last, ..
                } => NotReady::TimedOut {
                    readiness,
                    timeout: ready_timeout,
                    last,
                },
                gone => gone,
            };
            Err(LaunchError::NotReady {
                role,
                instance,
                source,
                cleanup,
            })
        }
    }
}

/// Writes `file` (and its missing parents) into the guest, retrying until `deadline`: a VM's
/// files API answers only once its incus-agent runs. For launchers that deliver files after the
/// launch (a configuration again on reprovision, a rotated credential).
pub async fn push_until(
    project: &ProjectClient,
    instance: &str,
    file: &GuestFile,
    deadline: Instant,
) -> pika_incus::Result<()> {
    let mut pause = Duration::from_millis(100);
    loop {
        let result = push_file_with_parents(project, instance, file).await;
        match result {
            Err(e) if !e.is_not_found() && Instant::now() + pause < deadline => {
                tracing::debug!("writing {} into {instance}: {e}; retrying", file.path);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

async fn push_file_with_parents(
    project: &ProjectClient,
    instance: &str,
    file: &GuestFile,
) -> pika_incus::Result<()> {
    let root = |mode| FileMode {
        uid: 0,
        gid: 0,
        mode,
    };
    let owned = |mode| FileMode {
        uid: file.uid,
        gid: file.gid,
        mode,
    };
    let parents: Vec<&str> = std::path::Path::new(&file.path)
        .ancestors()
        .skip(1)
        .filter_map(|p| p.to_str())
        .filter(|p| *p != "/" && !p.is_empty())
        .collect();
    for (depth, dir) in parents.iter().enumerate().rev() {
        // The file's own directory belongs to the file's owner (with `dir_mode`); the ones
        // above it to root, traversable (0755).
        let mode = if depth == 0 {
            owned(file.dir_mode)
        } else {
            root(0o755)
        };
        project.create_dir(instance, dir, mode).await?;
    }
    project
        .push_file(
            instance,
            &file.path,
            file.contents.clone(),
            owned(file.mode),
        )
        .await
}

/// [`ProjectClient::remove_instance`] as a free function, for callers that still import it from
/// here (pika-server's `incus` module); new code calls the method.
pub async fn remove_instance(project: &ProjectClient, name: &str) -> pika_incus::Result<()> {
    project.remove_instance(name).await
}

/// Parses a readiness timeout in whole seconds (`300`), for the launchers' env vars and flags.
pub fn parse_timeout_secs(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{value:?} is not a timeout: give a whole number of seconds > 0"
        )),
    }
}
