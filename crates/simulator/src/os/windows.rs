//! Windows: CTRL_BREAK and CTRL_C raised in our console are the stop events (while a handler is
//! installed neither ends the process by itself); the grandchild is this same executable as a
//! quiet simulated service on a free port that ignores both events, so only the termination of
//! the service's job object ends it.

use std::process::{Child, Command, Stdio};

use tokio::signal::windows::{CtrlBreak, CtrlC, ctrl_break, ctrl_c};

use super::StopEvent;
use crate::args::Role;

/// CTRL_BREAK and CTRL_C, as they arrive.
pub(crate) struct StopEvents {
    ctrl_break: CtrlBreak,
    ctrl_c: CtrlC,
}

impl StopEvents {
    /// Installs the console control handlers.
    pub(crate) fn new() -> std::io::Result<StopEvents> {
        Ok(StopEvents { ctrl_break: ctrl_break()?, ctrl_c: ctrl_c()? })
    }

    /// The next stop event.
    pub(crate) async fn recv(&mut self) -> StopEvent {
        tokio::select! {
            _ = self.ctrl_break.recv() => StopEvent { name: "CTRL_BREAK", ignorable: true },
            _ = self.ctrl_c.recv() => StopEvent { name: "CTRL_C", ignorable: true },
        }
    }
}

/// Starts `<this exe> sim ROLE --port 0 --quiet --tick-rate 0 --ignore-sigterm`: the simulator
/// runs as `orchestrator sim ROLE`, so the executable knows that command line.
pub(crate) fn spawn_grandchild(role: Role) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["sim", role.as_str(), "--port", "0", "--quiet", "--tick-rate", "0", "--ignore-sigterm"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}
