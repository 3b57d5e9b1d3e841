//! What a job is: an ID, a shell command and where it runs.

use std::time::Duration;

use pika_incus_guest_role::IncusGuestRole;
use serde::{Deserialize, Serialize};

/// One CI job: a shell command run by `sh -c` in a runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job ID, unique within a run (pikaci uses the target name).
    pub id: String,
    /// Shell command, run with `sh -c` in the workspace (Incus: in `/workspace/snapshot`).
    pub command: String,
    /// Where the command runs.
    pub runtime: JobRuntimeConfig,
    /// Limit for the command itself (the `run` phase); `None` waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub timeout: Option<Duration>,
}

impl JobSpec {
    /// A job running `command` in an ephemeral Incus guest of `guest_role`.
    pub fn incus(
        id: impl Into<String>,
        command: impl Into<String>,
        guest_role: IncusGuestRole,
    ) -> Self {
        Self {
            id: id.into(),
            command: command.into(),
            runtime: JobRuntimeConfig::Incus(IncusRuntimeConfig {
                guest_role,
                staged_linux_command: None,
            }),
            timeout: None,
        }
    }

    /// A job running `command` as a host process in the workspace directory.
    pub fn host(id: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            command: command.into(),
            runtime: JobRuntimeConfig::HostProcess,
            timeout: None,
        }
    }

    /// Sets the `run` phase limit.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command the runtime executes: an Incus job's staged Linux command when it has one,
    /// otherwise [`JobSpec::command`].
    pub fn effective_command(&self) -> &str {
        match &self.runtime {
            JobRuntimeConfig::Incus(IncusRuntimeConfig {
                staged_linux_command: Some(staged),
                ..
            }) => staged,
            _ => &self.command,
        }
    }
}

/// Where a job runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobRuntimeConfig {
    /// `sh -c` on the host, in the workspace directory itself.
    HostProcess,
    /// An ephemeral Incus guest launched from the role's image alias.
    Incus(IncusRuntimeConfig),
}

impl JobRuntimeConfig {
    /// Short name used in records and progress output: `host` or `incus`.
    pub const fn kind(&self) -> &'static str {
        match self {
            JobRuntimeConfig::HostProcess => "host",
            JobRuntimeConfig::Incus(_) => "incus",
        }
    }
}

/// Incus runtime settings of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncusRuntimeConfig {
    /// The guest role whose image runs the job (pikaci: always `pikaci-runner`).
    pub guest_role: IncusGuestRole,
    /// A Linux-specific command run in the guest instead of [`JobSpec::command`], for jobs whose host
    /// command does not apply inside the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_linux_command: Option<String>,
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_linux_command_replaces_the_command_in_the_guest() {
        let mut job = JobSpec::incus("unit", "cargo test", IncusGuestRole::PikaciRunner);
        assert_eq!(job.effective_command(), "cargo test");
        if let JobRuntimeConfig::Incus(cfg) = &mut job.runtime {
            cfg.staged_linux_command = Some("nix develop -c cargo test".into());
        }
        assert_eq!(job.effective_command(), "nix develop -c cargo test");
        assert_eq!(JobSpec::host("h", "true").effective_command(), "true");
    }

    #[test]
    fn job_spec_round_trips_through_json() {
        let job = JobSpec::incus("unit", "true", IncusGuestRole::PikaciRunner)
            .with_timeout(Some(Duration::from_secs(30)));
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["runtime"]["kind"], "incus");
        assert_eq!(json["runtime"]["guest_role"], "pikaci-runner");
        assert_eq!(json["timeout"], 30);
        let back: JobSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
    }
}
