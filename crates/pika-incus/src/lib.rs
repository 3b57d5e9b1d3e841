//! A thin, typed, async client for the [Incus](https://linuxcontainers.org/incus/) REST API.
//!
//! One [`IncusClient`] talks to one server, over the local unix socket ([`IncusClient::unix`]) or
//! over HTTPS with a TLS client certificate ([`IncusClient::https`], what a remote host or a
//! cluster member exposes on port 8443). Server-wide calls are methods of the client; everything
//! inside a project is on the [`ProjectClient`] from [`IncusClient::in_project`], so the project
//! is always chosen on purpose. Calls that start a background operation wait for it (bounded by
//! [`IncusClient::with_operation_timeout`]).
//!
//! Errors are one [`Error`] type whose variants say what happened (not found, conflict,
//! unauthorized, operation failed, transport, timeout) and name the Incus object
//! (`instance pika-test-x/c1`). Each request is logged with `tracing` at debug level: method,
//! path, status, duration; never a header, body, certificate or key.
//!
//! The Incus strings (API paths, headers, `user.` keys, the default socket) live in [`api`]. The
//! request cycle (requests, error mapping, Incus's JSON envelope, operation waits) is one private
//! module below both the server-wide and the project calls.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use pika_incus::{ExecRequest, FileMode, ImageImport, IncusClient, InstanceCreate, ProjectCreate, api};
//!
//! # async fn demo() -> pika_incus::Result<()> {
//! // Local socket; for a remote: IncusClient::https(HttpsConfig { endpoint, client_cert_pem, .. }).
//! let incus = IncusClient::unix(api::DEFAULT_UNIX_SOCKET)?.with_timeout(Duration::from_secs(10));
//! // Own profiles off: instances use the default project's profiles (root disk included).
//! incus.create_project(&ProjectCreate::new("pika-demo").config("features.profiles", "false")).await?;
//! let project = incus.in_project("pika-demo");
//!
//! // A split image (metadata tarball + rootfs) under an alias.
//! let image = project
//!     .import_image(&ImageImport::container("metadata.tar.xz", "rootfs.squashfs").alias("pika-demo/busybox"))
//!     .await?;
//!
//! // Create and start an instance from the alias, with user.* config.
//! project
//!     .create_instance(
//!         &InstanceCreate::from_alias("c1", "pika-demo/busybox").user_config("pika.demo", "yes").start(true),
//!     )
//!     .await?;
//!
//! // Run a command; Incus records its output, no websocket needed.
//! let output = project.exec("c1", &ExecRequest::new(["echo", "hello"])).await?;
//! assert_eq!((output.exit_code, output.stdout_lossy().as_str()), (0, "hello\n"));
//! project.push_file("c1", "/tmp/greeting", "hi\n", FileMode::default()).await?;
//! assert_eq!(project.pull_file("c1", "/tmp/greeting").await?, b"hi\n");
//!
//! // Clean up: delete_instance takes a stopped instance; remove_instance deletes in any state
//! // (force-stopping a running one) and counts an absent one as removed.
//! project.remove_instance("c1").await?;
//! project.delete_image_alias("pika-demo/busybox").await?;
//! project.delete_image(&image.fingerprint).await?;
//! incus.delete_project("pika-demo").await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
mod client;
mod error;
mod project;
pub mod provenance;
mod tls;
mod transport;
mod types;

pub use client::{DEFAULT_OPERATION_TIMEOUT, DEFAULT_TIMEOUT, HttpsConfig, IncusClient};
pub use error::{Error, Result};
pub use project::ProjectClient;
pub use provenance::ImageProvenance;
pub use types::*;
