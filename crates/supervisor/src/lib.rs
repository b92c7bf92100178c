//! Process supervision (SPEC §7): spawns the managed services in their own sessions, captures
//! their output, probes their health, restarts them with backoff, adopts or reports whatever
//! holds their port, monitors external services, and stops everything on shutdown.
//!
//! Only this crate spawns or signals processes. It writes every status into the
//! [`registry::Registry`] (which publishes each change); it knows nothing about the hub or HTTP
//! routes. Platform specifics live in the `unix` module behind a small seam of free functions.
//!
//! Threading: awc (the health-probe client) is `!Send`, so the whole supervisor runs on its own
//! thread with a current-thread actix runtime; [`SupervisorHandle`] is `Send + Sync + Clone`
//! and talks to it over channels. One task per service owns that service's lifecycle.

mod backoff;
mod error;
mod logs;
mod pidfile;
mod probe;
mod service;
mod supervisor;
#[cfg(unix)]
mod unix;

pub use backoff::BackoffPolicy;
pub use error::SupervisorError;
pub use logs::{LOG_FILE_MAX_BYTES, LOG_FILES_KEPT, LogLine, MAX_LINE_BYTES, RING_BYTES, RING_LINES};
pub use supervisor::{Supervisor, SupervisorConfig, SupervisorHandle};
