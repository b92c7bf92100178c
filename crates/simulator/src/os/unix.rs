//! Unix: SIGTERM and SIGINT are the stop events; the grandchild is `sleep`, left in our process
//! group with no parent-death signal, so only a kill of the whole group ends it.

use std::process::{Child, Command, Stdio};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::StopEvent;
use crate::args::Role;

/// SIGTERM and SIGINT, as they arrive.
pub(crate) struct StopEvents {
    term: Signal,
    int: Signal,
}

impl StopEvents {
    /// Installs the handlers (from here on neither signal ends the process by itself).
    pub(crate) fn new() -> std::io::Result<StopEvents> {
        Ok(StopEvents { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// The next stop event.
    pub(crate) async fn recv(&mut self) -> StopEvent {
        tokio::select! {
            _ = self.term.recv() => StopEvent { name: "SIGTERM", ignorable: true },
            _ = self.int.recv() => StopEvent { name: "SIGINT", ignorable: false },
        }
    }
}

/// Starts `sleep 100000` in our process group.
pub(crate) fn spawn_grandchild(_role: Role) -> std::io::Result<Child> {
    Command::new("sleep").arg("100000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
}
