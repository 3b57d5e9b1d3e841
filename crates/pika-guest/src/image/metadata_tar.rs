//! An image's metadata tarball (`metadata.tar.xz`: metadata.yaml plus `templates/`), read so that
//! what pika-guest verifies is what Incus will use:
//!
//! - Incus decodes every `metadata.yaml` entry in turn, so the last one wins; pika-guest refuses a
//!   tarball holding it twice (`metadata.yaml` and `./metadata.yaml` are the same member), and
//!   likewise a template path held twice (the unpacked tree keeps the last).
//! - No member may leave the tarball (an absolute path or a `..` component); members under
//!   `templates/` are plain files or directories (no symlinks, hard links or devices); every
//!   template metadata.yaml names is a plain file of the tarball.
//! - Decompression is bounded: liblzma may use at most [`XZ_MEMORY_LIMIT`], and the tarball may
//!   unpack to at most [`MAX_UNPACKED_BYTES`]; reading stops at the bound, so a small file that
//!   unpacks to gigabytes costs neither the memory nor the time.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

pub const METADATA_YAML: &str = "metadata.yaml";
const TEMPLATES_DIR: &str = "templates";
/// What a metadata tarball may unpack to (metadata.yaml and its templates are a few KiB).
pub const MAX_UNPACKED_BYTES: u64 = 16 << 20;
const MAX_UNPACKED_TEXT: &str = "16 MiB";
/// liblzma's memory for one stream (its dictionary): `xz -9` needs 65 MiB to decode.
const XZ_MEMORY_LIMIT: u64 = 128 << 20;
const XZ_MEMORY_TEXT: &str = "128 MiB";

/// A verified metadata tarball.
#[derive(Debug, Clone)]
pub struct MetadataTarball {
    /// The text of its one metadata.yaml.
    pub yaml: String,
    /// The plain files under `templates/`, as paths relative to it (`hostname.tpl`).
    pub templates: BTreeSet<String>,
}

/// Why reading stopped early: the unpacked bound or an xz error (the tar reader sees both only
/// as an I/O error).
#[derive(Debug, Clone, Default)]
enum Stop {
    #[default]
    None,
    Bound,
    Xz(String),
}

/// The decompressed stream, cut at [`MAX_UNPACKED_BYTES`].
struct Bounded<R> {
    inner: R,
    left: u64,
    stop: Rc<Cell<Stop>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let record = |stop: &Rc<Cell<Stop>>, what: Stop, e: io::Error| {
            stop.set(what);
            e
        };
        if self.left == 0 {
            // At the bound: one more byte means the tarball is larger than allowed.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(record(
                    &self.stop,
                    Stop::Bound,
                    io::Error::other("unpacked size bound"),
                )),
                Err(e) => Err(record(&self.stop, Stop::Xz(e.to_string()), e)),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) => Err(record(&self.stop, Stop::Xz(e.to_string()), e)),
        }
    }
}

/// Opens the xz tarball at `path` as a bounded tar stream.
/// A member's name as the archive at `path` spells it (checked with [`member_path`] before use).
fn member_name(entry: &tar::Entry<'_, impl Read>, path: &Path) -> Result<String, String> {
    let name = entry
        .path()
        .map_err(|e| format!("{}: corrupt tar archive: {e}", path.display()))?;
    Ok(name.to_string_lossy().into_owned())
}

fn open(path: &Path) -> Result<(tar::Archive<impl Read>, Rc<Cell<Stop>>), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let stream =
        xz2::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, xz2::stream::CONCATENATED)
            .map_err(|e| format!("cannot start the xz decoder: {e}"))?;
    let decoder = xz2::bufread::XzDecoder::new_stream(BufReader::new(file), stream);
    let stop = Rc::new(Cell::new(Stop::None));
    let bounded = Bounded {
        inner: decoder,
        left: MAX_UNPACKED_BYTES,
        stop: Rc::clone(&stop),
    };
    Ok((tar::Archive::new(bounded), stop))
}

/// The error for a failed read of the tarball: the bound, the xz layer or the tar layer.
fn read_error(path: &Path, stop: &Rc<Cell<Stop>>, tar_error: &io::Error) -> String {
    match stop.take() {
        Stop::Bound => format!(
            "{}: unpacks to more than {MAX_UNPACKED_TEXT}, the bound on an image's metadata tarball (metadata.yaml and templates/); refusing it",
            path.display()
        ),
        Stop::Xz(e) if e.contains("memory") => format!(
            "{}: its xz stream needs more than {XZ_MEMORY_TEXT} of memory to decompress (the bound on an image's metadata tarball); refusing it",
            path.display()
        ),
        Stop::Xz(e) => format!("{}: not a whole xz file: {e}", path.display()),
        Stop::None => format!("{}: corrupt tar archive: {tar_error}", path.display()),
    }
}

/// The member path as Incus's unpacked tree has it (`./a//b` is `a/b`), or why it leaves the tree.
fn member_path(raw: &str) -> Result<String, &'static str> {
    if raw.starts_with('/') {
        return Err("an absolute path");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("a `..` component"),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn kind(entry_type: tar::EntryType) -> &'static str {
    match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous => "a plain file",
        tar::EntryType::Directory => "a directory",
        tar::EntryType::Symlink => "a symlink",
        tar::EntryType::Link => "a hard link",
        tar::EntryType::Char | tar::EntryType::Block => "a device",
        tar::EntryType::Fifo => "a fifo",
        _ => "a special member",
    }
}

/// Reads and verifies the metadata tarball at `path`; every error names the file and the member.
pub fn read(path: &Path) -> Result<MetadataTarball, String> {
    let (mut archive, stop) = open(path)?;
    let entries = archive
        .entries()
        .map_err(|e| format!("{}: not a tar archive: {e}", path.display()))?;
    let mut yaml: Option<(String, String)> = None;
    let mut templates = BTreeMap::<String, String>::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(path, &stop, &e))?;
        let raw = member_name(&entry, path)?;
        let name = member_path(&raw).map_err(|why| {
            format!(
                "{}: member {raw:?} has {why}; a metadata tarball's members stay inside it",
                path.display()
            )
        })?;
        let entry_type = entry.header().entry_type();
        let is_file = matches!(
            entry_type,
            tar::EntryType::Regular | tar::EntryType::Continuous
        );
        let link = || {
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|target| format!(" (to {})", target.display()))
                .unwrap_or_default()
        };
        if name == METADATA_YAML {
            if let Some((first, _)) = &yaml {
                return Err(format!(
                    "{}: holds {METADATA_YAML} twice ({first:?} and {raw:?}); Incus would use the last, so the tarball is refused",
                    path.display()
                ));
            }
            if !is_file {
                return Err(format!(
                    "{}: {METADATA_YAML} is {}{}, not a plain file",
                    path.display(),
                    kind(entry_type),
                    link()
                ));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| read_error(path, &stop, &e))?;
            yaml = Some((raw, text));
        } else if name == TEMPLATES_DIR || name.starts_with("templates/") {
            if entry_type == tar::EntryType::Directory {
                continue;
            }
            if name == TEMPLATES_DIR || !is_file {
                return Err(format!(
                    "{}: template member {raw:?} is {}{}; templates are plain files under {TEMPLATES_DIR}/",
                    path.display(),
                    kind(entry_type),
                    link()
                ));
            }
            let relative = name["templates/".len()..].to_string();
            if let Some(first) = templates.insert(relative, raw.clone()) {
                return Err(format!(
                    "{}: holds template {name} twice ({first:?} and {raw:?}); Incus would use the last, so the tarball is refused",
                    path.display()
                ));
            }
        }
    }
    let Some((_, yaml)) = yaml else {
        return Err(format!("{}: holds no {METADATA_YAML}", path.display()));
    };
    let tarball = MetadataTarball {
        yaml,
        templates: templates.into_keys().collect(),
    };
    check_template_references(&tarball)
        .map_err(|e| format!("{}: {METADATA_YAML}: {e}", path.display()))?;
    Ok(tarball)
}

/// Every template metadata.yaml names (`templates: {PATH: {template: NAME}}`) is a plain file
/// `templates/NAME` of the tarball.
fn check_template_references(tarball: &MetadataTarball) -> Result<(), String> {
    let doc: serde_norway::Value =
        serde_norway::from_str(&tarball.yaml).map_err(|e| format!("does not parse: {e}"))?;
    let Some(templates) = doc.get("templates").filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let templates = templates
        .as_mapping()
        .ok_or("templates is not a mapping (guest path -> {template: NAME})")?;
    for (guest_path, spec) in templates {
        let guest_path = guest_path
            .as_str()
            .map_or_else(|| format!("{guest_path:?}"), str::to_string);
        let name = spec
            .get("template")
            .and_then(serde_norway::Value::as_str)
            .ok_or_else(|| format!("template for {guest_path} names no template file"))?;
        let relative = member_path(name)
            .ok()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                format!(
                    "template for {guest_path} is {name:?}, which is not a file name under {TEMPLATES_DIR}/"
                )
            })?;
        if !tarball.templates.contains(&relative) {
            return Err(format!(
                "template for {guest_path} is {name}, but the tarball holds no plain file {TEMPLATES_DIR}/{relative}"
            ));
        }
    }
    Ok(())
}

/// Copies the tarball at `from` to `to` with metadata.yaml replaced by `yaml`; every other member
/// (the templates) is kept as it is. `from` is verified first.
pub fn rewrite(from: &Path, to: &Path, yaml: &str, mtime: u64) -> Result<(), String> {
    read(from)?;
    let (mut archive, stop) = open(from)?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let encoder = xz2::write::XzEncoder::new(out, 6);
    let mut builder = tar::Builder::new(encoder);
    let write_error = |e: io::Error| format!("cannot write {}: {e}", to.display());
    let entries = archive
        .entries()
        .map_err(|e| format!("{}: not a tar archive: {e}", from.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(from, &stop, &e))?;
        let raw = member_name(&entry, from)?;
        if member_path(&raw).is_ok_and(|name| name == METADATA_YAML) {
            let mut header = tar::Header::new_gnu();
            header.set_size(yaml.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, METADATA_YAML, yaml.as_bytes())
                .map_err(write_error)?;
        } else {
            let mut header = entry.header().clone();
            builder
                .append_data(&mut header, &raw, &mut entry)
                .map_err(|e| read_error(from, &stop, &e))?;
        }
    }
    let encoder = builder.into_inner().map_err(write_error)?;
    encoder.finish().map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tar member: raw name bytes written into the header as they are (the tar crate's
    /// `set_path` refuses `..`, which is what these tests need).
    enum Member<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
    }

    fn tarball(dir: &Path, members: &[Member]) -> std::path::PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        for member in members {
            let mut header = tar::Header::new_ustar();
            let (name, data): (&str, &[u8]) = match member {
                Member::File(name, data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    (name, data)
                }
                Member::Dir(name) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    (name, b"")
                }
                Member::Symlink(name, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_link_name(target).unwrap();
                    (name, b"")
                }
            };
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        let tar_bytes = builder.into_inner().unwrap();
        let path = dir.join("metadata.tar.xz");
        let mut encoder = xz2::write::XzEncoder::new(std::fs::File::create(&path).unwrap(), 6);
        io::Write::write_all(&mut encoder, &tar_bytes).unwrap();
        encoder.finish().unwrap();
        path
    }

    const YAML: &[u8] = b"architecture: x86_64\nproperties:\n  pika.role: managed-openclaw\n";
    const WITH_TEMPLATE: &[u8] = b"architecture: x86_64\ntemplates:\n  /etc/hostname:\n    when: [create]\n    template: hostname.tpl\n";

    /// A tarball of `members` is refused with an error that says `expected`.
    fn assert_refused(members: &[Member], expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        let error = read(&tarball(dir.path(), members)).unwrap_err();
        assert!(error.contains(expected), "{error}");
    }

    #[test]
    fn plain_tarballs_pass_with_their_templates() {
        let dir = tempfile::tempdir().unwrap();
        let path = tarball(
            dir.path(),
            &[
                Member::Dir("./"),
                Member::File("./metadata.yaml", WITH_TEMPLATE),
                Member::Dir("./templates/"),
                Member::File("./templates/hostname.tpl", b"{{ container.name }}\n"),
            ],
        );
        let read = read(&path).unwrap();
        assert!(read.yaml.contains("hostname.tpl"));
        assert_eq!(read.templates, BTreeSet::from(["hostname.tpl".to_string()]));
    }

    #[test]
    fn a_second_metadata_yaml_is_refused_whatever_its_spelling() {
        assert_refused(
            &[
                Member::File("metadata.yaml", YAML),
                Member::File(
                    "./metadata.yaml",
                    b"architecture: x86_64\nproperties:\n  pika.role: pikaci-runner\n",
                ),
            ],
            "holds metadata.yaml twice (\"metadata.yaml\" and \"./metadata.yaml\")",
        );
        assert_refused(
            &[
                Member::File("metadata.yaml", WITH_TEMPLATE),
                Member::File("templates/hostname.tpl", b"a"),
                Member::File("./templates//hostname.tpl", b"b"),
            ],
            "holds template templates/hostname.tpl twice",
        );
    }

    #[test]
    fn members_leaving_the_tree_and_non_file_templates_are_refused() {
        assert_refused(
            &[
                Member::File("metadata.yaml", YAML),
                Member::File("templates/../../../../tmp/x.tpl", b"x"),
            ],
            "member \"templates/../../../../tmp/x.tpl\" has a `..` component",
        );
        assert_refused(
            &[
                Member::File("metadata.yaml", YAML),
                Member::File("/templates/x.tpl", b"x"),
            ],
            "has an absolute path",
        );
        assert_refused(
            &[
                Member::File("metadata.yaml", WITH_TEMPLATE),
                Member::Symlink("templates/hostname.tpl", "/etc/shadow"),
            ],
            "template member \"templates/hostname.tpl\" is a symlink (to /etc/shadow)",
        );
        assert_refused(
            &[Member::Symlink("metadata.yaml", "/etc/shadow")],
            "metadata.yaml is a symlink (to /etc/shadow), not a plain file",
        );
    }

    #[test]
    fn a_template_metadata_names_must_be_in_the_tarball() {
        assert_refused(
            &[Member::File("metadata.yaml", WITH_TEMPLATE)],
            "template for /etc/hostname is hostname.tpl, but the tarball holds no plain file templates/hostname.tpl",
        );
        assert_refused(
            &[Member::File(
                "metadata.yaml",
                b"architecture: x86_64\ntemplates:\n  /etc/x:\n    template: ../../etc/shadow\n",
            )],
            "not a file name under templates/",
        );
    }

    #[test]
    fn a_tarball_unpacking_past_the_bound_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = vec![0u8; usize::try_from(MAX_UNPACKED_BYTES).unwrap() + 1];
        let path = tarball(
            dir.path(),
            &[
                Member::File("zeros", &zeros),
                Member::File("metadata.yaml", YAML),
            ],
        );
        let error = read(&path).unwrap_err();
        assert!(error.contains("unpacks to more than 16 MiB"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[test]
    fn rewrite_keeps_the_templates() {
        let dir = tempfile::tempdir().unwrap();
        let from = tarball(
            dir.path(),
            &[
                Member::File("metadata.yaml", WITH_TEMPLATE),
                Member::Dir("templates/"),
                Member::File("templates/hostname.tpl", b"{{ container.name }}\n"),
            ],
        );
        let to = dir.path().join("out.tar.xz");
        let yaml = "architecture: x86_64\ncreation_date: 5\ntemplates:\n  /etc/hostname:\n    template: hostname.tpl\n";
        rewrite(&from, &to, yaml, 5).unwrap();
        let read = read(&to).unwrap();
        assert_eq!(read.yaml, yaml);
        assert_eq!(read.templates, BTreeSet::from(["hostname.tpl".to_string()]));
    }
}
