//! The simulator's platform layer: the stop events a service reacts to and the grandchild of
//! `--spawn-child`, one implementation per OS behind the same small interface.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{StopEvents, spawn_grandchild};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{StopEvents, spawn_grandchild};

/// One stop request as it reached the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StopEvent {
    /// Its name in the log (`SIGTERM`, `CTRL_BREAK`, …).
    pub name: &'static str,
    /// Whether `--ignore-sigterm` ignores it: SIGTERM on Unix; CTRL_BREAK and CTRL_C on
    /// Windows, since either is what a stop raises there and only the job's termination should
    /// end such a service.
    pub ignorable: bool,
}
