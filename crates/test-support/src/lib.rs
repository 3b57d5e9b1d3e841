//! Fixtures shared by the workspace's integration tests and benchmarks (a dev-dependency only).
//!
//! - [`TestProject`]: a throwaway Incus project named with `PIKA_TEST_PROJECT_PREFIX`, deleted with
//!   everything in it on drop.
//! - [`image`]: the busybox test images of `scripts/lib/test-image.sh`.
//! - [`cargo_bin`]: a workspace binary built next to the running test, so it is never stale.
//! - [`server`] (feature `server`): a real `pika-server` process.
//! - [`bench`]: the benchmarks' sample-count argument, percentiles and milliseconds.
//!
//! Fixtures panic on failure: they run in tests, where a panic is the report.

pub mod bench;
mod bins;
mod files;
pub mod image;
mod process;
mod project;
#[cfg(feature = "server")]
pub mod server;

pub use bins::{cargo_bin, workspace_bins};
pub use files::rewrite_keeping_mtime;
pub use process::{incus, repo_root, run, run_ok};
pub use project::{TestProject, project_prefix, storage_pool, unique};

/// The reason on every `#[ignore]` of a test that needs the real incusd.
pub const NEEDS_INCUS: &str = "needs a real incusd: run scripts/test.sh";
