//! Test fixtures of jerichoci's users (feature `fixtures`, for tests and benchmarks only: jerichoci's
//! own and pikaci's): a project ready for `pikaci-runner` jobs, a git workspace, and readers of
//! the run record a job leaves. They stand on pika-test-support's Incus fixtures and panic on
//! failure, as fixtures do.

use std::ops::Deref;
use std::process::Command;

use pika_incus_guest_role::IncusGuestRole;
use pika_test_support::{TestProject, project_prefix, run_ok, storage_pool};

use crate::record::{JobRecord, Phase, PhaseRecord, PhaseStatus, RemoteLinuxVmImageRecord};
use crate::remote::DEFAULT_PROFILE;

/// A [`TestProject`] with jerichoci's default profile (root disk on `PIKA_TEST_STORAGE_POOL`, else
/// `default`) and the busybox test image under the `pikaci-runner` role's default alias.
pub struct CiProject {
    project: TestProject,
    /// Fingerprint Incus reported when it imported the image.
    pub fingerprint: String,
}

impl CiProject {
    pub fn new(tag: &str) -> Self {
        Self::with_prefix(&project_prefix(), tag)
    }

    /// See [`TestProject::with_prefix`].
    pub fn with_prefix(prefix: &str, tag: &str) -> Self {
        let project = TestProject::with_prefix(prefix, tag);
        project.create_profile(DEFAULT_PROFILE, Some(&storage_pool()));
        let fingerprint = project.import_image(IncusGuestRole::PikaciRunner.default_image_alias());
        CiProject {
            project,
            fingerprint,
        }
    }

    /// Adds alias `alias` for the imported image.
    pub fn add_alias(&self, alias: &str) {
        assert_eq!(self.project.import_image(alias), self.fingerprint);
    }
}

impl Deref for CiProject {
    type Target = TestProject;

    fn deref(&self) -> &TestProject {
        &self.project
    }
}

/// A git working tree with a nested file, an ignored file and a `pikaci.toml` with `config`.
pub fn workspace(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    run_ok(Command::new("git").args(["init", "-q"]).current_dir(root));
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("workspace directory");
        }
        std::fs::write(&path, text).expect("workspace file");
    };
    write("docs/notes/hello.txt", "hello from the snapshot\n");
    write(".gitignore", "secret.txt\n");
    write("secret.txt", "must not be uploaded\n");
    write("pikaci.toml", config);
    dir
}

/// The job's log as the run left it.
pub fn log(job: &JobRecord) -> String {
    std::fs::read_to_string(&job.log_path)
        .unwrap_or_else(|err| panic!("reading the log {}: {err}", job.log_path))
}

/// Each phase with its status, in order.
pub fn phases(job: &JobRecord) -> Vec<(Phase, PhaseStatus)> {
    job.phases.iter().map(|p| (p.phase, p.status)).collect()
}

/// What a guest job that got as far as running its command records: upload (the snapshot is
/// staged for its mount before the launch), launch, run (with status `run`), collect, cleanup,
/// each but the run `ok`.
pub fn guest_phases(run: PhaseStatus) -> Vec<(Phase, PhaseStatus)> {
    vec![
        (Phase::Upload, PhaseStatus::Ok),
        (Phase::Launch, PhaseStatus::Ok),
        (Phase::Run, run),
        (Phase::Collect, PhaseStatus::Ok),
        (Phase::Cleanup, PhaseStatus::Ok),
    ]
}

/// [`guest_phases`] of a job whose delete ran in the background (`pikaci run`): its cleanup is
/// `deferred`.
pub fn guest_phases_deferred(run: PhaseStatus) -> Vec<(Phase, PhaseStatus)> {
    let mut phases = guest_phases(run);
    if let Some(last) = phases.last_mut() {
        last.1 = PhaseStatus::Deferred;
    }
    phases
}

/// The record of `phase`; panics when the job has none.
pub fn phase(job: &JobRecord, phase: Phase) -> &PhaseRecord {
    job.phases
        .iter()
        .find(|p| p.phase == phase)
        .unwrap_or_else(|| panic!("no {phase:?} phase in {job:?}"))
}

/// The Incus image the job's guest was launched from; panics when the record has none.
pub fn incus_image(job: &JobRecord) -> &RemoteLinuxVmImageRecord {
    job.remote_linux_vm
        .as_ref()
        .and_then(|vm| vm.incus_image.as_ref())
        .unwrap_or_else(|| panic!("no Incus image in {job:?}"))
}
