//! What every Pika binary shares at run time, so each one behaves the same:
//!
//! - [`error_chain`]: an error and its causes on one line (also for libraries: no default features);
//! - [`init`]: a tracing subscriber on stderr, filtered by `RUST_LOG`;
//! - [`color`]: whether to colour a stream (`NO_COLOR`, not-a-terminal);
//! - [`WithCompletions`]: the `completions SHELL` subcommand every binary has;
//! - [`TextTable`]: the one table style.

#[cfg(feature = "cli")]
mod cli;
mod error;

#[cfg(feature = "cli")]
pub use cli::{TextTable, WithCompletions, color, init, paint, printable};
pub use error::error_chain;
