//! Writing and checking the checked-in outputs with one comparison (the rust-analyzer
//! `ensure_file_contents` idea): `generate` rewrites stale files, `check` reports them.

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

/// Compares every output with the file under `repo_root` (line endings normalised); in `Write`
/// mode replaces the stale ones. All temp files are written before any rename, so a failed write
/// leaves every output as it was; the error names the stale file and the command.
pub fn sync_outputs(
    repo_root: &Path,
    outputs: &[Output],
    mode: Mode,
) -> Result<Vec<(PathBuf, FileState)>, String> {
    let mut states = Vec::new();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let failed = |path: &Path, e: io::Error| {
        format!(
            "{} is stale and cannot be written ({e}); run `{REGENERATE_COMMAND}` in a writable checkout",
            path.display()
        )
    };
    for output in outputs {
        let target = repo_root.join(&output.path);
        let old = std::fs::read_to_string(&target).ok();
        let state = match (
            old.is_some_and(|old| old.replace("\r\n", "\n") == output.contents),
            mode,
        ) {
            (true, _) => FileState::Fresh,
            (false, Mode::Check) => FileState::Stale,
            (false, Mode::Write) => match stage(&target, &output.contents) {
                Ok(temp) => {
                    staged.push((temp, target));
                    FileState::Written
                }
                Err(e) => {
                    staged
                        .iter()
                        .for_each(|(temp, _)| drop(std::fs::remove_file(temp)));
                    return Err(failed(&output.path, e));
                }
            },
        };
        states.push((output.path.clone(), state));
    }
    for (temp, target) in staged {
        std::fs::rename(&temp, &target).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            failed(target.strip_prefix(repo_root).unwrap_or(&target), e)
        })?;
    }
    Ok(states)
}

/// Writes `contents` to a temp file beside `target`, keeping the target's permissions.
fn stage(target: &Path, contents: &str) -> io::Result<PathBuf> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&temp, contents)?;
    if let Ok(meta) = std::fs::metadata(target) {
        std::fs::set_permissions(&temp, meta.permissions())?;
    }
    Ok(temp)
}
