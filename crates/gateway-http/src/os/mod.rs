//! The gateway's platform layer: the requests that shut the orchestrator down (Unix signals,
//! Windows console events) and the kernel's timeout for unresponsive peers, one implementation
//! per OS behind the same two functions.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{drop_unresponsive_peers, shutdown_signal};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{drop_unresponsive_peers, shutdown_signal};
