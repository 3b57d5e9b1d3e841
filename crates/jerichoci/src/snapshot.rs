//! Workspace snapshots: the files `git ls-files -co --exclude-standard` lists, as a tar archive
//! (uploaded into the guest) or as a staged host directory (mounted read-only into the guest).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("`git ls-files` failed in {dir}: {detail}")]
    Git { dir: PathBuf, detail: String },
    #[error("cannot stage {path}: {source}")]
    Stage {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Copies the workspace `dir` (see [`workspace_files`]) into the new directory `dest` (its parent
/// must exist; `dest` must not): the staged snapshot a guest mounts. Symlinks stay links; file
/// modes are kept. Returns the number of files. On error, `dest` may be partly written: the caller
/// removes it (it removes it after the job anyway).
pub fn stage_snapshot(
    dir: &Path,
    exclude: &[PathBuf],
    dest: &Path,
) -> Result<usize, SnapshotError> {
    let files = workspace_files(dir, exclude)?;
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| SnapshotError::Stage { path, source }
    };
    std::fs::create_dir(dest).map_err(fail(dest))?;
    for rel in &files {
        let (from, to) = (dir.join(rel), dest.join(rel));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(fail(parent))?;
        }
        let meta = from.symlink_metadata().map_err(fail(&from))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(fail(&from))?;
            std::os::unix::fs::symlink(target, &to).map_err(fail(&to))?;
        } else {
            std::fs::copy(&from, &to).map_err(fail(&to))?;
        }
    }
    Ok(files.len())
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
    fn staging_copies_the_same_files_as_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir_all(root.join("src/nested")).unwrap();
        git(&root, &["init", "-q"]);
        fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
        fs::write(root.join("src/nested/file.txt"), "nested\n").unwrap();
        fs::write(root.join("ignored.txt"), "no\n").unwrap();
        fs::create_dir_all(root.join(".pikaci/runs")).unwrap();
        fs::write(root.join(".pikaci/runs/log"), "no\n").unwrap();
        std::os::unix::fs::symlink("src/nested/file.txt", root.join("link")).unwrap();

        let dest = dir.path().join("staged");
        let count = stage_snapshot(&root, &[PathBuf::from(".pikaci")], &dest).unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            fs::read_to_string(dest.join("src/nested/file.txt")).unwrap(),
            "nested\n"
        );
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("src/nested/file.txt")
        );
        assert!(!dest.join("ignored.txt").exists());
        assert!(!dest.join(".pikaci").exists());
        // An existing destination is refused: a stale stage is never mixed into a new one.
        assert!(stage_snapshot(&root, &[], &dest).is_err());
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
