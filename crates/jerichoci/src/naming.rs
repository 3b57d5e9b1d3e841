//! Run IDs and Incus instance names.

use rand::Rng;
use time::OffsetDateTime;
use time::macros::format_description;

/// Longest instance name Incus accepts (a DNS label).
pub const MAX_INSTANCE_NAME_LEN: usize = 63;

/// A new run ID: UTC time to the millisecond plus a random suffix, e.g. `20261127-103500-042-3f9a`.
/// Sorts by start time and is valid in file names and Incus instance names.
pub fn new_run_id() -> String {
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(format_description!(
            "[year][month][day]-[hour][minute][second]-[subsecond digits:3]"
        ))
        .expect("a fixed format always formats");
    let suffix: u16 = rand::rng().random();
    format!("{stamp}-{suffix:04x}")
}

/// Now, RFC 3339 UTC, for records.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 always formats a UTC time")
}

/// The ephemeral instance name of job `job_id` in run `run_id`: `pikaci-<run>-<job>`, sanitized to
/// Incus rules (ASCII letters, digits and `-`; starts with a letter; no trailing `-`; at most 63
/// characters). Names that had to be shortened keep a hash of the full name, so they stay distinct.
pub fn instance_name(run_id: &str, job_id: &str) -> String {
    let raw = format!("pikaci-{run_id}-{job_id}");
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        name.push(c);
    }
    let trimmed_len = name.trim_end_matches('-').len();
    name.truncate(trimmed_len);
    if name.len() > MAX_INSTANCE_NAME_LEN || name != raw {
        // Sanitizing can map two job IDs to one name (`a.b` and `a_b`): add a short hash of the raw
        // name whenever anything changed.
        let hash = fnv1a(raw.as_bytes());
        let tag = format!("-{:08x}", hash & 0xffff_ffff);
        name.truncate(MAX_INSTANCE_NAME_LEN - tag.len());
        let trimmed_len = name.trim_end_matches('-').len();
        name.truncate(trimmed_len);
        name.push_str(&tag);
    }
    name
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_for_incus(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_INSTANCE_NAME_LEN
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && !name.ends_with('-')
            && !name.contains("--")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    #[test]
    fn plain_ids_are_kept() {
        assert_eq!(
            instance_name("20261127-103500-3f9a", "unit"),
            "pikaci-20261127-103500-3f9a-unit"
        );
    }

    #[test]
    fn awkward_ids_are_sanitized_and_stay_distinct() {
        let a = instance_name("r1", "Lint.Rust_fmt");
        let b = instance_name("r1", "lint-rust-fmt");
        let c = instance_name("r1", "lint_rust.fmt");
        for name in [&a, &b, &c] {
            assert!(valid_for_incus(name), "{name}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("pikaci-r1-lint-rust-fmt-"), "{a}");
    }

    #[test]
    fn long_ids_are_truncated_with_a_hash() {
        let long = "x".repeat(200);
        let a = instance_name("r1", &long);
        let b = instance_name("r1", &format!("{long}y"));
        assert!(valid_for_incus(&a), "{a}");
        assert!(valid_for_incus(&b), "{b}");
        assert_ne!(a, b);
        assert!(valid_for_incus(&instance_name("r1", "---")));
        assert!(valid_for_incus(&instance_name(
            "r1",
            &format!("{}-!", "a".repeat(48))
        )));
    }

    #[test]
    fn run_ids_are_valid_names() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261127-103500-042-3f9a".len(), "{id}");
        let later = {
            std::thread::sleep(std::time::Duration::from_millis(2));
            new_run_id()
        };
        assert!(later > id, "{later} sorts after {id}");
        assert!(valid_for_incus(&instance_name(&id, "unit")));
        assert!(now_rfc3339().ends_with('Z'));
    }
}
