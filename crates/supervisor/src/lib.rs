//! Process supervision (SPEC §7): spawns the managed services in their own sessions, each under
//! a keeper that takes the service's process group along when the orchestrator dies, captures
//! their output, probes their health, restarts them with backoff, adopts or reports whatever
//! holds their port, monitors external services, and stops everything on shutdown.
//!
//! Only this crate spawns or signals processes. It writes every status into the
//! [`registry::Registry`] (which publishes each change); it knows nothing about the hub or HTTP
//! routes. Platform specifics live in the `unix` module behind a small seam of free functions.
//!
//! Embedding: call [`keeper_entry`] first thing in `main` (unix). A process the supervisor
//! started as a service's keeper then runs as that keeper in a fresh image of the binary (about
//! 0.5 MB of its own) instead of a copy-on-write fork of the whole program; without the call,
//! keepers stay forked copies, which keep every page the program changes afterwards.
//!
//! Threading: awc (the health-probe client) is `!Send`, so the whole supervisor runs on its own
//! thread with a current-thread actix runtime; [`SupervisorHandle`] is `Send + Sync + Clone`
//! and talks to it over channels. One task per service owns that service's lifecycle.
//!
//! # Behaviour where SPEC §7 leaves room
//!
//! - **`start_all`** first kills the leftovers of a crashed run (see `pidfile`), then starts
//!   the autostart services without dependencies in parallel and returns once they are spawned
//!   (or adopted / in port conflict); it does not wait for them to be healthy. A service with
//!   `depends_on` is started in the background as soon as all its dependencies are online, for
//!   as long as that takes (a manual start does not wait). External services are `starting`
//!   until their first probe: healthy → `online`, failed → `offline`; from `online` they go
//!   `offline` after `failure_threshold` failures.
//! - **Startup** polls the port with a TCP connect every 2 ms for the first 2 s (then every
//!   `startup_probe_interval_ms`) and probes HTTP as soon as it accepts, then every
//!   `startup_probe_interval_ms`. Each spawn gets a fresh HTTP client (no pooled connection to a
//!   dead instance). Startup timeout → SIGKILL to the group, `error`, backoff (unless
//!   `restart = "never"`). Exit during startup → `error` with the exit code/signal and the last
//!   5 output lines of that instance in `last_error`.
//! - **Exits**: when a service exits by itself, what remains of its process group is SIGKILLed
//!   and waited for before anything else (orphans never hold the port for the next instance).
//!   An exit while online → `offline`. `on-failure` does not restart after exit code 0 (the
//!   service stays `offline`); health failures count as failures.
//! - **Unhealthy** (`failure_threshold` failed probes while online) → `offline`; when the
//!   policy restarts, the group is stopped gracefully (`stop_signal`, SIGKILL after
//!   `stop_timeout_ms`) and then restarted with backoff.
//! - **Backoff and crash loop**: see [`BackoffPolicy`]. While waiting: `offline`/`backoff`
//!   (`error`/`backoff` after a startup failure) with `next_restart_at`; in a crash loop
//!   `error`/`crash_loop`, and the retry shows `starting`/`crash_loop` until it is healthy.
//! - **`restarts`** counts automatic restarts plus `restart_service` of a running service.
//! - **`last_error`** is the last error and is kept after recovery; `sub_state` tells the
//!   current situation.
//! - **Port conflict**: no restart loop (the operator frees the port and starts again; a manual
//!   start checks again). The owner is named as `pid N (command)` when `/proc` shows it. An
//!   adopted service that fails `failure_threshold` probes becomes `managed` again and, if its
//!   policy restarts, is started by us (after a new port check).
//! - **Commands**: `start` → `AlreadyRunning` while any process of ours runs (also `offline`
//!   but alive under `restart = "never"`); in backoff or error it starts at once. `stop` →
//!   `AlreadyStopped` only when `stopped`; in backoff it cancels the pending restart, in error it
//!   just marks `stopped`. A spawn failure (e.g. missing program) sets `error` with the cause,
//!   backs off per policy, and `start_service` returns `SupervisorError::Spawn`.
//! - **Passive checks** (`probe_now`): a probe in flight answers them; otherwise at most one
//!   probe per 100 ms.
//! - **Logs**: the ring holds 10 000 lines and at most 4 MiB per service; the file line is
//!   `RFC3339 stream text`. File writes go through one writer thread; if its queue (16 384
//!   lines) is full, lines are dropped from the file (not the ring) and the count is noted.
//! - **Shutdown** also happens when every handle is dropped without calling it.

mod backoff;
mod config;
mod error;
mod lifecycle;
mod logs;
mod os;
mod pidfile;
mod probe;
mod service;
mod supervisor;

/// Test listeners on ports nothing else will use once dropped (see `tests/support/ports.rs`).
#[cfg(test)]
#[path = "../../../tests/support/ports.rs"]
mod ports;

#[cfg(test)]
pub(crate) fn test_listener() -> std::net::TcpListener {
    ports::unique_listener().unwrap_or_else(|e| panic!("{e}"))
}

pub use backoff::BackoffPolicy;
pub use config::HealthConfig;
pub use error::SupervisorError;
pub use logs::{LOG_FILE_MAX_BYTES, LOG_FILES_KEPT, LogLine, MAX_LINE_BYTES, RING_BYTES, RING_LINES};
pub use os::keeper_entry;
pub use supervisor::{Supervisor, SupervisorConfig, SupervisorHandle};
