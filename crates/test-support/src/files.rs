//! Files under test.

use std::path::Path;

/// Writes `text` to `path` and sets its modification time back to what it was: a change that
/// a watcher keyed on the mtime alone would miss.
pub fn rewrite_keeping_mtime(path: &Path, text: &str) {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|err| panic!("the mtime of {}: {err}", path.display()));
    std::fs::write(path, text).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(mtime))
        .unwrap_or_else(|err| panic!("setting the mtime of {}: {err}", path.display()));
    assert_eq!(
        std::fs::metadata(path).unwrap().modified().unwrap(),
        mtime,
        "the mtime of {} is kept",
        path.display()
    );
}
