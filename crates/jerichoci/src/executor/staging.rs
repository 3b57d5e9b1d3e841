//! Snapshot staging: how a job's workspace snapshot reaches its guest. A role with the
//! [`SNAPSHOT_MOUNT`] mount on a local Incus gets a staged host directory mounted read-only; any
//! other gets the snapshot tar pushed and unpacked. The guards here own what staging leaves on
//! the host.

use std::path::PathBuf;
use std::time::Instant;

use pika_incus::{ExecRequest, FileMode, ProjectClient};
use pika_incus_guest_role::IncusGuestRole;

use super::Executor;
use crate::job::JobSpec;
use crate::record::{JobRecord, Phase, SnapshotTransfer};
use crate::remote::RemoteIncusContext;
use crate::snapshot::{Snapshot, SnapshotError, stage_snapshot};

/// The role mount jerichoci fills with the workspace snapshot (pikaci-runner declares it in
/// roles.toml; its guest path is where commands run).
pub const SNAPSHOT_MOUNT: &str = "snapshot";
/// Where the snapshot is unpacked for a role without a [`SNAPSHOT_MOUNT`] mount.
pub const GUEST_SNAPSHOT_DIR: &str = "/workspace/snapshot";
/// Where the snapshot tar is pushed before it is unpacked (and removed).
pub const GUEST_SNAPSHOT_TAR: &str = "/tmp/pikaci-snapshot.tar";

/// How a job's snapshot gets into its guest, and where the guest sees it.
pub(super) struct SnapshotPlan {
    pub(super) transfer: SnapshotTransfer,
    pub(super) guest_dir: &'static str,
}

/// Mount when the role declares a [`SNAPSHOT_MOUNT`] and Incus shares this host's filesystem
/// (`local`: the unix socket); otherwise upload (an HTTPS endpoint cannot see a host directory).
/// The guest sees the snapshot at the mount's path either way.
pub(super) fn snapshot_plan(role: IncusGuestRole, local: bool, force_upload: bool) -> SnapshotPlan {
    let mount = role.mounts().iter().find(|m| m.name == SNAPSHOT_MOUNT);
    let transfer = if mount.is_some() && local && !force_upload {
        SnapshotTransfer::Mount
    } else {
        SnapshotTransfer::Upload
    };
    SnapshotPlan {
        transfer,
        guest_dir: mount.map_or(GUEST_SNAPSHOT_DIR, |m| m.path),
    }
}

/// The snapshot of an Incus job: a host directory to stage (mount) or a tar being built (upload).
pub(super) enum SnapshotSource {
    Stage(PathBuf),
    Tar(tokio::task::JoinHandle<Result<Snapshot, SnapshotError>>),
}

/// Owns a staged snapshot directory: [`StageGuard::remove`] deletes it; so does a drop.
pub(super) struct StageGuard(pub(super) Option<PathBuf>);

impl StageGuard {
    pub(super) fn remove(&mut self) -> Result<(), String> {
        match self.0.take() {
            None => Ok(()),
            Some(path) => match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
                    "removing the staged snapshot {}: {e}",
                    path.display()
                )),
                _ => Ok(()),
            },
        }
    }
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

impl Executor {
    /// Copies the workspace into `path` for the read-only mount; returns its absolute path.
    pub(super) async fn stage(&self, path: PathBuf) -> Result<PathBuf, String> {
        let workspace = self.workspace.clone();
        let exclude = self.snapshot_exclude.clone();
        tokio::task::spawn_blocking(move || {
            stage_snapshot(&workspace, &exclude, &path)?;
            path.canonicalize().map_err(|source| SnapshotError::Stage {
                path: path.clone(),
                source,
            })
        })
        .await
        .map_err(|e| format!("snapshot task: {e}"))?
        .map_err(|e| format!("snapshot: {e}"))
    }

    /// upload, tar flavour: push the snapshot tar and unpack it at `guest_dir`.
    pub(super) async fn upload(
        &self,
        job: &JobSpec,
        context: &RemoteIncusContext,
        project: &ProjectClient,
        snapshot: tokio::task::JoinHandle<Result<Snapshot, SnapshotError>>,
        guest_dir: &str,
        record: &mut JobRecord,
    ) -> Result<(), String> {
        let started = Instant::now();
        let uploaded = async {
            let snapshot = snapshot
                .await
                .map_err(|e| format!("snapshot task: {e}"))?
                .map_err(|e| format!("snapshot: {e}"))?;
            project
                .push_file(
                    &context.instance_name,
                    GUEST_SNAPSHOT_TAR,
                    snapshot.tar,
                    FileMode::default(),
                )
                .await
                .map_err(|e| format!("upload: {e}"))?;
            // The unpacked copy is the job's own (unlike the read-only mount): it belongs to the
            // user the job runs as.
            let chown = context
                .guest_role
                .user()
                .map(|u| format!(" && chown -R {}:{} {guest_dir}", u.uid, u.gid))
                .unwrap_or_default();
            let unpack = format!(
                "mkdir -p {guest_dir} && tar -xf {GUEST_SNAPSHOT_TAR} -C {guest_dir} && rm -f {GUEST_SNAPSHOT_TAR}{chown}"
            );
            let out = project
                .exec(
                    &context.instance_name,
                    &ExecRequest::new(["sh", "-c", unpack.as_str()]),
                )
                .await
                .map_err(|e| format!("upload: unpack: {e}"))?;
            if !out.success() {
                return Err(format!(
                    "upload: unpacking the snapshot exited {}: {}",
                    out.exit_code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(())
        };
        let uploaded = tokio::select! {
            r = uploaded => r,
            () = self.wait_cancel() => Err("interrupted (Ctrl-C)".to_owned()),
        };
        self.simple_phase(job, record, Phase::Upload, started, &uploaded);
        uploaded?;
        self.check_cancel(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_mount(role: IncusGuestRole) -> Option<&'static str> {
        role.mounts()
            .iter()
            .find(|m| m.name == SNAPSHOT_MOUNT)
            .map(|m| m.path)
    }

    #[test]
    fn the_snapshot_is_mounted_only_locally_for_roles_with_the_mount() {
        let with: Vec<_> = IncusGuestRole::ALL
            .iter()
            .filter(|r| snapshot_mount(**r).is_some())
            .collect();
        assert!(
            !with.is_empty(),
            "some role of roles.toml declares `{SNAPSHOT_MOUNT}`"
        );
        for &role in IncusGuestRole::ALL {
            let local = snapshot_plan(role, true, false);
            let remote = snapshot_plan(role, false, false);
            let forced = snapshot_plan(role, true, true);
            match snapshot_mount(role) {
                Some(path) => {
                    assert_eq!(local.transfer, SnapshotTransfer::Mount, "{role}");
                    assert_eq!(local.guest_dir, path);
                    assert_eq!(
                        remote.guest_dir, path,
                        "the upload lands where the mount would"
                    );
                }
                None => {
                    assert_eq!(local.transfer, SnapshotTransfer::Upload, "{role}");
                    assert_eq!(local.guest_dir, GUEST_SNAPSHOT_DIR);
                }
            }
            // An HTTPS endpoint cannot see this host's directories: always the upload.
            assert_eq!(remote.transfer, SnapshotTransfer::Upload, "{role}");
            assert_eq!(forced.transfer, SnapshotTransfer::Upload, "{role}");
        }
    }
}
