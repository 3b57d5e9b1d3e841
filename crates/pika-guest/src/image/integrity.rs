//! Is a payload file whole? Reads the headers and tables of a squashfs rootfs or a qcow2 disk and
//! checks that everything they point at lies inside the file, so a truncated or foreign file is
//! refused before a byte reaches Incus (which would import a cut squashfs and alias it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const SQUASHFS_SUPERBLOCK_LEN: usize = 96;
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
const QCOW2_HEADER_LEN: usize = 72;
/// Host offset bits of an L1 entry and of a standard L2 entry (qcow2 spec: bits 9-55).
const QCOW2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const QCOW2_COMPRESSED: u64 = 1 << 62;

/// Checks a squashfs image: superblock magic and version, block size, and that the filesystem
/// (`bytes_used`) and every table start lie inside the file.
pub fn check_squashfs(path: &Path) -> Result<(), String> {
    let (_, len, sb) = open_headed::<SQUASHFS_SUPERBLOCK_LEN>(
        path,
        SQUASHFS_MAGIC,
        "a squashfs image",
        "superblock",
    )?;
    let (major, minor) = (
        u16::from_le_bytes(field(&sb, 28)),
        u16::from_le_bytes(field(&sb, 30)),
    );
    if (major, minor) != (4, 0) {
        return Err(format!(
            "{}: squashfs version {major}.{minor}, Incus needs 4.0",
            path.display()
        ));
    }
    let block_size = u32::from_le_bytes(field(&sb, 12));
    let block_log = u16::from_le_bytes(field(&sb, 22));
    if block_log > 20 || u64::from(block_size) != 1u64 << block_log {
        return Err(format!(
            "{}: corrupt squashfs superblock (block size)",
            path.display()
        ));
    }
    let bytes_used = u64::from_le_bytes(field(&sb, 40));
    if bytes_used > len {
        return Err(format!(
            "{}: truncated squashfs image: the filesystem is {bytes_used} bytes, the file {len}",
            path.display()
        ));
    }
    // Tables that are absent are 0xffff...; present ones must start inside the filesystem.
    for (name, offset) in [
        ("id table", 48),
        ("inode table", 64),
        ("directory table", 72),
    ] {
        let start = u64::from_le_bytes(field(&sb, offset));
        if start >= bytes_used {
            return Err(format!(
                "{}: corrupt squashfs superblock ({name} at {start}, past the end {bytes_used})",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Checks a qcow2 disk: header, no backing file, and that the L1 table, the refcount table, every
/// L2 table and every data cluster they map lie inside the file.
pub fn check_qcow2(path: &Path) -> Result<(), String> {
    let (mut file, len, header) =
        open_headed::<QCOW2_HEADER_LEN>(path, QCOW2_MAGIC, "a qcow2 disk", "header")?;
    let version = u32::from_be_bytes(field(&header, 4));
    if !(2..=3).contains(&version) {
        return Err(format!(
            "{}: qcow2 version {version} is not 2 or 3",
            path.display()
        ));
    }
    if u64::from_be_bytes(field(&header, 8)) != 0 {
        return Err(format!(
            "{}: the qcow2 disk has a backing file; Incus needs a standalone disk",
            path.display()
        ));
    }
    let cluster_bits = u32::from_be_bytes(field(&header, 20));
    if !(9..=21).contains(&cluster_bits) {
        return Err(format!(
            "{}: corrupt qcow2 header (cluster bits {cluster_bits})",
            path.display()
        ));
    }
    let cluster = 1u64 << cluster_bits;
    let corrupt = |what: String| {
        format!(
            "{}: truncated or corrupt qcow2 disk: {what}",
            path.display()
        )
    };
    let inside = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= len);

    let l1_size = u64::from(u32::from_be_bytes(field(&header, 36)));
    let l1_offset = u64::from_be_bytes(field(&header, 40));
    if !inside(l1_offset, l1_size * 8) {
        return Err(corrupt(format!(
            "the L1 table ({l1_size} entries at {l1_offset}) ends past the file end {len}"
        )));
    }
    let refcount_offset = u64::from_be_bytes(field(&header, 48));
    let refcount_clusters = u64::from(u32::from_be_bytes(field(&header, 56)));
    if !inside(refcount_offset, refcount_clusters * cluster) {
        return Err(corrupt(format!(
            "the refcount table at {refcount_offset} ends past the file end {len}"
        )));
    }

    let l1 = read_table(&mut file, l1_offset, l1_size, path)?;
    // Compressed L2 entries keep the host offset in the low (62 - (cluster_bits - 8)) bits.
    let compressed_offset_mask = (1u64 << (62 - (cluster_bits - 8))) - 1;
    for l2_offset in l1.iter().map(|entry| entry & QCOW2_OFFSET_MASK) {
        if l2_offset == 0 {
            continue;
        }
        if !inside(l2_offset, cluster) {
            return Err(corrupt(format!(
                "an L2 table at {l2_offset} ends past the file end {len}"
            )));
        }
        for entry in read_table(&mut file, l2_offset, cluster / 8, path)? {
            let (offset, size) = if entry & QCOW2_COMPRESSED != 0 {
                (entry & compressed_offset_mask, 1)
            } else {
                (entry & QCOW2_OFFSET_MASK, cluster)
            };
            if offset != 0 && !inside(offset, size) {
                return Err(corrupt(format!(
                    "a data cluster at {offset} ends past the file end {len}"
                )));
            }
        }
    }
    Ok(())
}

/// Opens `path` (`what`: "a squashfs image") and reads its first `N` bytes (its `head`), which
/// start with `magic`: the file, its length and the head.
fn open_headed<const N: usize>(
    path: &Path,
    magic: &[u8; 4],
    what: &str,
    head: &str,
) -> Result<(File, u64, [u8; N]), String> {
    let mut file = open(path)?;
    let len = file_len(&file, path)?;
    let mut bytes = [0u8; N];
    read_exact_at(&mut file, 0, &mut bytes)
        .map_err(|_| format!("{}: not {what} (shorter than its {head})", path.display()))?;
    if &bytes[0..4] != magic {
        return Err(format!("{}: not {what} (bad magic)", path.display()));
    }
    Ok((file, len, bytes))
}

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn file_len(file: &File, path: &Path) -> Result<u64, String> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_exact_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `count` big-endian u64 entries at `offset` (bounds already checked).
fn read_table(file: &mut File, offset: u64, count: u64, path: &Path) -> Result<Vec<u64>, String> {
    let len = usize::try_from(count * 8)
        .map_err(|_| format!("{}: qcow2 table too large", path.display()))?;
    let mut bytes = vec![0u8; len];
    read_exact_at(file, offset, &mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| u64::from_be_bytes(chunk.try_into().unwrap_or_default()))
        .collect())
}

/// The `N` bytes of `b` at offset `at`, for `u32::from_le_bytes` and the like (the caller has
/// checked that `b` holds them).
fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(&b[at..at + N]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `command`, whose program (from `package`) the test needs installed, and checks that it
    /// succeeded.
    fn run(command: &mut Command, package: &str) {
        let program = command.get_program().to_string_lossy().into_owned();
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("{program} ({package}) is needed for this test: {e}"));
        assert!(status.success(), "{program} failed: {status}");
    }

    fn truncate_copy(from: &Path, to: &Path, keep: u64) {
        std::fs::copy(from, to).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(to).unwrap();
        file.set_len(keep).unwrap();
    }

    #[test]
    fn squashfs_whole_passes_and_truncated_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Incompressible content, so the image spans many blocks.
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect();
        std::fs::write(root.join("noise"), noise).unwrap();
        let image = dir.path().join("rootfs.squashfs");
        run(
            Command::new("mksquashfs")
                .args([root.as_os_str(), image.as_os_str()])
                .args(["-noappend", "-quiet", "-no-progress"]),
            "squashfs-tools",
        );
        check_squashfs(&image).unwrap();

        let cut = dir.path().join("cut.squashfs");
        truncate_copy(&image, &cut, std::fs::metadata(&image).unwrap().len() / 2);
        let error = check_squashfs(&cut).unwrap_err();
        assert!(error.contains("truncated squashfs image"), "{error}");

        std::fs::write(&cut, b"not a squashfs at all, but long enough to hold a superblock.......................................").unwrap();
        assert!(check_squashfs(&cut).unwrap_err().contains("bad magic"));
        std::fs::write(&cut, b"hsqs").unwrap();
        assert!(
            check_squashfs(&cut)
                .unwrap_err()
                .contains("shorter than its superblock")
        );
    }

    #[test]
    fn qcow2_whole_passes_and_truncated_fails() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let mut data = vec![0u8; 4 << 20];
        // Data in the first and the last MiB: allocated clusters at both ends of the qcow2.
        data[..16].copy_from_slice(b"pika-test-first.");
        let tail = data.len() - 16;
        data[tail..].copy_from_slice(b"pika-test-last..");
        std::fs::write(&raw, data).unwrap();
        let disk = dir.path().join("disk.qcow2");
        run(
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .args([raw.as_os_str(), disk.as_os_str()]),
            "qemu-utils",
        );
        check_qcow2(&disk).unwrap();

        let len = std::fs::metadata(&disk).unwrap().len();
        let cut = dir.path().join("cut.qcow2");
        truncate_copy(&disk, &cut, len - 4096);
        let error = check_qcow2(&cut).unwrap_err();
        assert!(error.contains("truncated or corrupt qcow2 disk"), "{error}");
        truncate_copy(&disk, &cut, 100);
        assert!(
            check_qcow2(&cut)
                .unwrap_err()
                .contains("truncated or corrupt qcow2")
        );
        assert!(check_qcow2(&raw).unwrap_err().contains("bad magic"));
    }
}
