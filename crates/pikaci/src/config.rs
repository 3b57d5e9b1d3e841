//! `pikaci.toml`: the CI targets of a workspace.
//!
//! ```toml
//! [targets.unit]
//! command = "cargo test --workspace"
//! runtime = "incus"        # default; or "host"
//! timeout-secs = 3600      # optional, limits the command (default DEFAULT_TIMEOUT_SECS)
//! description = "unit tests"
//! ```
//!
//! Every Incus target runs as guest role `pikaci-runner`; only `PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE`
//! overrides that. Errors name `file:line:col` of the offending value.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jerichoci::JobSpec;
use pika_incus_guest_role::IncusGuestRole;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// File name looked up at the repository root.
pub const CONFIG_FILE: &str = "pikaci.toml";

/// The job timeout of a target without `timeout-secs` (2 hours): no job runs unbounded.
pub const DEFAULT_TIMEOUT_SECS: u64 = 7200;

/// The guest role of every Incus target.
pub const TARGET_GUEST_ROLE: IncusGuestRole = IncusGuestRole::PikaciRunner;

/// A parsed `pikaci.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// The directory holding the config: jobs run on (a snapshot of) it.
    pub workspace: PathBuf,
    /// Targets in name order.
    pub targets: Vec<Target>,
}

/// Where a target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetRuntime {
    Incus,
    Host,
}

/// One `[targets.NAME]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub name: String,
    pub command: String,
    pub runtime: TargetRuntime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Target {
    /// The jerichoci job of this target (Incus targets in role [`TARGET_GUEST_ROLE`]).
    pub fn job(&self) -> JobSpec {
        let job = match self.runtime {
            TargetRuntime::Incus => JobSpec::incus(&self.name, &self.command, TARGET_GUEST_ROLE),
            TargetRuntime::Host => JobSpec::host(&self.name, &self.command),
        };
        job.with_timeout(Some(Duration::from_secs(self.effective_timeout_secs())))
    }

    /// `timeout-secs`, or [`DEFAULT_TIMEOUT_SECS`] when unset.
    pub fn effective_timeout_secs(&self) -> u64 {
        self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)
    }
}

/// A bad or unreadable config, with the position of the offending value when known.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    targets: BTreeMap<Spanned<String>, Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTarget {
    command: Spanned<String>,
    #[serde(default)]
    runtime: Option<TargetRuntime>,
    #[serde(default)]
    timeout_secs: Option<Spanned<i64>>,
    #[serde(default)]
    description: Option<String>,
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        position: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Validates config `text` read from `path` (used in messages and for the workspace dir).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let error = |span: Option<Range<usize>>, message: String| ConfigError {
        path: path.to_owned(),
        position: span.map(|s| line_col(text, s.start)),
        message,
    };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| error(e.span(), e.message().to_owned()))?;
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (name, target) in raw.targets {
        let name_span = name.span();
        let name = name.into_inner();
        if !valid_target_name(&name) {
            return Err(error(
                Some(name_span),
                format!(
                    "target name {name:?} is not allowed: use ASCII letters, digits, `-`, `_` and `.`, \
                     starting with a letter or digit"
                ),
            ));
        }
        let target = target.into_inner();
        let command_span = target.command.span();
        let command = target.command.into_inner();
        if command.trim().is_empty() {
            return Err(error(
                Some(command_span),
                format!("targets.{name}.command is empty"),
            ));
        }
        let timeout_secs = match target.timeout_secs {
            None => None,
            Some(t) => {
                let span = t.span();
                match u64::try_from(*t.get_ref()) {
                    Ok(secs) if secs > 0 => Some(secs),
                    _ => {
                        return Err(error(
                            Some(span),
                            format!(
                                "targets.{name}.timeout-secs must be a whole number of seconds > 0, got {}",
                                t.get_ref()
                            ),
                        ));
                    }
                }
            }
        };
        targets.push(Target {
            name,
            command,
            runtime: target.runtime.unwrap_or(TargetRuntime::Incus),
            timeout_secs,
            description: target.description,
        });
    }
    let workspace = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok(Config {
        path: path.to_owned(),
        workspace,
        targets,
    })
}

fn valid_target_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl Config {
    /// The targets named in `names` (all when empty), in the order given; unknown names are an error
    /// listing the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Target>, String> {
        if names.is_empty() {
            return Ok(self.targets.iter().collect());
        }
        names
            .iter()
            .map(|name| {
                self.targets
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| {
                        format!(
                            "no target {name:?} in {}; targets: {}",
                            self.path.display(),
                            self.target_names()
                        )
                    })
            })
            .collect()
    }

    fn target_names(&self) -> String {
        if self.targets.is_empty() {
            return "none".into();
        }
        self.targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/repo/pikaci.toml"), text)
    }

    #[test]
    fn parses_targets_with_defaults() {
        let cfg = parse_str(
            "[targets.unit]\ncommand = \"cargo test\"\ntimeout-secs = 60\n\n\
             [targets.lint]\ncommand = \"true\"\nruntime = \"host\"\ndescription = \"d\"\n",
        )
        .unwrap();
        assert_eq!(cfg.workspace, PathBuf::from("/repo"));
        let names: Vec<_> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["lint", "unit"]);
        let unit = &cfg.targets[1];
        assert_eq!(unit.runtime, TargetRuntime::Incus);
        let job = unit.job();
        assert_eq!(job.timeout, Some(Duration::from_secs(60)));
        // A target without timeout-secs still has one.
        assert_eq!(
            cfg.targets[0].job().timeout,
            Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS))
        );
        match job.runtime {
            jerichoci::JobRuntimeConfig::Incus(c) => {
                assert_eq!(c.guest_role, IncusGuestRole::PikaciRunner)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cfg.targets[0].job().runtime,
            jerichoci::JobRuntimeConfig::HostProcess
        );
    }

    #[test]
    fn bad_runtime_names_line_col_and_choices() {
        let err = parse_str("[targets.unit]\ncommand = \"x\"\nruntime = \"vm\"\n").unwrap_err();
        assert_eq!(err.position, Some((3, 11)), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("/repo/pikaci.toml:3:11: "), "{msg}");
        assert!(msg.contains("incus") && msg.contains("host"), "{msg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            parse_str("[targets.unit]\ncommand = \"x\"\nrole = \"pikaci-runner\"\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
        assert!(err.message.contains("role"), "{err}");
    }

    #[test]
    fn missing_command_empty_command_and_bad_timeout() {
        let err = parse_str("[targets.unit]\nruntime = \"host\"\n").unwrap_err();
        assert!(err.message.contains("command"), "{err}");
        assert!(err.position.is_some(), "{err}");

        let err = parse_str("[targets.unit]\ncommand = \"  \"\n").unwrap_err();
        assert_eq!(err.position, Some((2, 11)), "{err}");

        let err = parse_str("[targets.unit]\ncommand = \"x\"\ntimeout-secs = 0\n").unwrap_err();
        assert_eq!(err.position, Some((3, 16)), "{err}");
        let err = parse_str("[targets.unit]\ncommand = \"x\"\ntimeout-secs = -5\n").unwrap_err();
        assert!(err.message.contains("-5"), "{err}");
    }

    #[test]
    fn bad_target_name_points_at_the_name() {
        let err = parse_str("[targets.\"bad name\"]\ncommand = \"x\"\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(1), "{err}");
        assert!(err.message.contains("bad name"), "{err}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_str("[targets.unit]\ncommand = \n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
    }

    #[test]
    fn select_keeps_order_and_names_unknown_targets() {
        let cfg =
            parse_str("[targets.a]\ncommand = \"x\"\n[targets.b]\ncommand = \"y\"\n").unwrap();
        let picked: Vec<_> = cfg
            .select(&["b".into(), "a".into()])
            .unwrap()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert_eq!(picked, ["b", "a"]);
        assert_eq!(cfg.select(&[]).unwrap().len(), 2);
        let err = cfg.select(&["c".into()]).unwrap_err();
        assert!(
            err.contains("\"c\"") && err.contains("targets: a, b"),
            "{err}"
        );
    }

    #[test]
    fn the_repository_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pikaci.toml");
        let cfg = load(&path).unwrap();
        assert!(!cfg.targets.is_empty());
    }
}
