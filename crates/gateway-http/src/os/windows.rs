//! Windows: CTRL_C, CTRL_BREAK, closing the console and system shutdown shut the orchestrator
//! down (as SIGINT and SIGTERM do on Unix). After a close or shutdown event Windows ends the
//! process within seconds whatever it does, so the graceful stop may not finish; the services
//! still end with it, since each one's job object is killed when its last handle closes. There is
//! no `TCP_USER_TIMEOUT`: the hub alone drops stalled clients.

use std::net::TcpListener;
use std::time::Duration;

use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};

/// Windows has no hang-up signal: a reload is `orchestrator reload` or the API.
pub(crate) struct Hangups;

impl Hangups {
    /// Nothing to listen for.
    pub(crate) fn listen() -> Hangups {
        Hangups
    }

    /// Never comes.
    pub(crate) async fn next(&mut self) -> bool {
        false
    }
}

/// Completes at the first CTRL_C, CTRL_BREAK, console close or shutdown event (never, if they
/// cannot be listened for).
pub(crate) async fn shutdown_signal() {
    match (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown()) {
        (Ok(mut c), Ok(mut brk), Ok(mut close), Ok(mut shutdown)) => {
            tokio::select! {
                _ = c.recv() => log::info!("CTRL_C received"),
                _ = brk.recv() => log::info!("CTRL_BREAK received"),
                _ = close.recv() => log::info!("console closed"),
                _ = shutdown.recv() => log::info!("system shutdown"),
            }
        }
        (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => {
            log::error!("cannot listen for console control events: {e}");
            std::future::pending::<()>().await;
        }
    }
}

/// Only logs: Windows has no `TCP_USER_TIMEOUT` an accepted socket inherits.
pub(crate) fn drop_unresponsive_peers(_listener: &TcpListener, after: Duration) {
    log::debug!("TCP_USER_TIMEOUT is Linux-only; stalled clients ({after:?}) are only dropped by the hub");
}
