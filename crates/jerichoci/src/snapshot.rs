//! Workspace snapshots: the files `git ls-files -co --exclude-standard` lists, as a tar archive.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("`git ls-files` failed in {dir}: {detail}")]
    Git { dir: PathBuf, detail: String },
    #[error("cannot archive {path}: {source}")]
    Archive {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A tar archive of a workspace.
#[derive(Debug)]
pub struct Snapshot {
    pub tar: Vec<u8>,
    pub files: usize,
}

/// Files of the workspace `dir`: tracked and untracked, minus ignored ones and minus everything
/// under `exclude` (paths relative to `dir`, e.g. the run state dir). Tracked files deleted from the
/// working tree are skipped.
pub fn workspace_files(dir: &Path, exclude: &[PathBuf]) -> Result<Vec<PathBuf>, SnapshotError> {
    let out = Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(dir)
        .output()
        .map_err(|e| SnapshotError::Git {
            dir: dir.to_owned(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SnapshotError::Git {
            dir: dir.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .filter(|p| !exclude.iter().any(|ex| p.starts_with(ex)))
        .filter(|p| dir.join(p).symlink_metadata().is_ok())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Archives the workspace `dir` (see [`workspace_files`]). Symlinks are stored as links.
pub fn build_snapshot(dir: &Path, exclude: &[PathBuf]) -> Result<Snapshot, SnapshotError> {
    let files = workspace_files(dir, exclude)?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    for rel in &files {
        builder
            .append_path_with_name(dir.join(rel), rel)
            .map_err(|source| SnapshotError::Archive {
                path: dir.join(rel),
                source,
            })?;
    }
    let tar = builder
        .into_inner()
        .map_err(|source| SnapshotError::Archive {
            path: dir.to_owned(),
            source,
        })?;
    Ok(Snapshot {
        tar,
        files: files.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;

    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn snapshot_holds_tracked_and_untracked_files_but_not_ignored_or_excluded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
        fs::create_dir_all(root.join("src/nested")).unwrap();
        fs::write(root.join("src/nested/file.txt"), "nested\n").unwrap();
        fs::write(root.join("ignored.txt"), "no\n").unwrap();
        fs::create_dir_all(root.join(".pikaci/runs")).unwrap();
        fs::write(root.join(".pikaci/runs/log"), "no\n").unwrap();
        fs::write(root.join("tracked-then-deleted.txt"), "x").unwrap();
        git(root, &["add", "tracked-then-deleted.txt"]);
        fs::remove_file(root.join("tracked-then-deleted.txt")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("src/nested/file.txt", root.join("link")).unwrap();

        let snap = build_snapshot(root, &[PathBuf::from(".pikaci")]).unwrap();
        let mut archive = tar::Archive::new(snap.tar.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if name == "src/nested/file.txt" {
                let mut body = String::new();
                entry.read_to_string(&mut body).unwrap();
                assert_eq!(body, "nested\n");
            }
            if name == "link" {
                assert!(entry.header().entry_type().is_symlink());
            }
            names.push(name);
        }
        assert_eq!(names, [".gitignore", "link", "src/nested/file.txt"]);
        assert_eq!(snap.files, 3);
    }

    #[test]
    fn a_directory_outside_git_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_snapshot(dir.path(), &[]).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
