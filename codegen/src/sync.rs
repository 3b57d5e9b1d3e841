//! Writing and checking the checked-in outputs with one comparison (the rust-analyzer
//! `ensure_file_contents` idea): `generate` rewrites stale files, `check` reports them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use pika_role_spec::REGENERATE_COMMAND;

use crate::Output;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rewrite stale files (each atomically: temp file + rename).
    Write,
    /// Only report stale files.
    Check,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    Fresh,
    Written,
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    /// Repository-relative path.
    pub path: PathBuf,
    pub state: FileState,
}

/// A write that failed: names the stale file and the command that regenerates it.
#[derive(Debug)]
pub struct SyncError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is stale and cannot be written ({}); run `{REGENERATE_COMMAND}` in a writable checkout",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for SyncError {}

/// True when the file on disk already holds `contents` (line endings normalised).
pub fn is_fresh(path: &Path, contents: &str) -> bool {
    match std::fs::read_to_string(path) {
        Ok(old) => old.replace("\r\n", "\n") == contents,
        Err(_) => false,
    }
}

/// Compares every output with the file under `repo_root`; in `Write` mode replaces stale ones.
/// All temp files are written before any rename, so a failed write leaves every output as it was.
pub fn sync_outputs(
    repo_root: &Path,
    outputs: &[Output],
    mode: Mode,
) -> Result<Vec<FileStatus>, SyncError> {
    let mut statuses = Vec::new();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    for output in outputs {
        let target = repo_root.join(&output.path);
        if is_fresh(&target, &output.contents) {
            statuses.push(FileStatus {
                path: output.path.clone(),
                state: FileState::Fresh,
            });
            continue;
        }
        if mode == Mode::Check {
            statuses.push(FileStatus {
                path: output.path.clone(),
                state: FileState::Stale,
            });
            continue;
        }
        match stage(&target, &output.contents) {
            Ok(temp) => staged.push((temp, target)),
            Err(source) => {
                for (temp, _) in &staged {
                    let _ = std::fs::remove_file(temp);
                }
                return Err(SyncError {
                    path: output.path.clone(),
                    source,
                });
            }
        }
        statuses.push(FileStatus {
            path: output.path.clone(),
            state: FileState::Written,
        });
    }
    for (temp, target) in staged {
        std::fs::rename(&temp, &target).map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            SyncError {
                path: target.strip_prefix(repo_root).unwrap_or(&target).into(),
                source,
            }
        })?;
    }
    Ok(statuses)
}

/// Writes `contents` to a temp file beside `target`, keeping the target's permissions.
fn stage(target: &Path, contents: &str) -> io::Result<PathBuf> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&temp, contents)?;
    if let Ok(meta) = std::fs::metadata(target) {
        std::fs::set_permissions(&temp, meta.permissions())?;
    }
    Ok(temp)
}
