//! Process supervision (SPEC §7): spawns the managed services in their own sessions, each under
//! a keeper that takes the service's process group along when the orchestrator dies, captures
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
mod error;
mod logs;
mod pidfile;
mod probe;
mod service;
mod supervisor;
#[cfg(unix)]
mod unix;

/// Test listeners on ports nothing else will use: outside the kernel's ephemeral range
/// (32768–60999 on Linux), so no `bind(0)` of a parallel test and no outgoing connection (nor a
/// TCP self-connect) can take the port after the test drops its listener, and never the same
/// port twice in this process.
#[cfg(test)]
pub(crate) fn test_listener() -> std::net::TcpListener {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port left in {FIRST}..{}", FIRST + SPAN);
        let port = u16::try_from(FIRST + (start + n) % SPAN).unwrap_or(0);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
}

pub use backoff::BackoffPolicy;
pub use error::SupervisorError;
pub use logs::{LOG_FILE_MAX_BYTES, LOG_FILES_KEPT, LogLine, MAX_LINE_BYTES, RING_BYTES, RING_LINES};
pub use supervisor::{Supervisor, SupervisorConfig, SupervisorHandle};
