//! Unix: SIGINT and SIGTERM shut the orchestrator down; on Linux the listener gets
//! `TCP_USER_TIMEOUT` (other Unixes have no equivalent, so the hub alone drops stalled clients).

use std::net::TcpListener;
use std::time::Duration;

/// Completes at the first SIGINT or SIGTERM (never, if they cannot be listened for).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => log::info!("SIGINT received"),
                _ = term.recv() => log::info!("SIGTERM received"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            log::error!("cannot listen for SIGINT/SIGTERM: {e}");
            std::future::pending::<()>().await;
        }
    }
}

/// SIGHUPs, the operator's request to reload the configuration.
pub(crate) struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    /// Listens for SIGHUP from now on (instead of its default action, which ends the process).
    pub(crate) fn listen() -> Hangups {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Hangups(Some(s)),
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                Hangups(None)
            }
        }
    }

    /// The next SIGHUP; `false` when none can come any more.
    pub(crate) async fn next(&mut self) -> bool {
        match &mut self.0 {
            Some(s) => s.recv().await.is_some(),
            None => false,
        }
    }
}

/// Sets `TCP_USER_TIMEOUT` to `after` on the listener (inherited by every accepted socket).
pub(crate) fn drop_unresponsive_peers(listener: &TcpListener, after: Duration) {
    #[cfg(target_os = "linux")]
    {
        let ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX);
        if let Err(e) = nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpUserTimeout, &ms) {
            log::warn!("cannot set TCP_USER_TIMEOUT on the listener: {e}; stalled clients are only dropped by the hub");
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        log::debug!("TCP_USER_TIMEOUT is Linux-only; stalled clients ({after:?}) are only dropped by the hub");
    }
}
