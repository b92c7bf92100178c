//! The gateway's platform layer: the requests that shut the orchestrator down (Unix signals,
//! Windows console events), the request to reload (SIGHUP; Windows has none, `orchestrator
//! reload` serves there) and the kernel's timeout for unresponsive peers, one implementation per
//! OS behind the same items.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{Hangups, drop_unresponsive_peers, shutdown_signal};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{Hangups, drop_unresponsive_peers, shutdown_signal};
