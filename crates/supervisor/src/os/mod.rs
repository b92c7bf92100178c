//! The OS layer: the one interface through which the supervisor touches processes, with a
//! `unix` and a `windows` implementation of the same items (SPEC §7, §12). `cfg` attributes
//! live here and nowhere else in the crate.
//!
//! - [`spawn`] starts a service's command with stdout/stderr piped in a [`Tree`] of its own —
//!   on Unix a session and process group led by a keeper, on Windows a Job Object with
//!   kill-on-close — so that the whole tree dies with the orchestrator, killed or not.
//! - [`Tree`] signals the stop signal to the tree, terminates it and tells when it is empty.
//! - [`exit_of`] describes an exit status; [`port_owner`] names who listens on a port;
//!   [`process_start`] and [`boot_id`] are a process's identity for pidfiles;
//!   [`kill_leftover`] and [`leftovers_remain`] clean up after a crashed run.
//! - [`keeper_entry`] is what an embedding binary calls first thing in `main`: the keeper
//!   (Unix) or the stop-signal helper (Windows) runs there.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub(crate) use imp::{Spawned, Tree, boot_id, exit_of, port_owner, process_start, spawn};

/// For a binary that embeds the supervisor: call it first thing in `main`.
///
/// On Unix, in a process the supervisor started as a service's keeper, it runs the keeper and
/// never returns; otherwise it returns at once, and from then on this binary's keepers
/// re-execute it (`/proc/self/exe`) into a small image of their own instead of living on in a
/// copy-on-write fork of the whole program. On Windows, in a process the supervisor started to
/// raise a stop event in a service's console, it does that and exits; otherwise it returns at
/// once.
pub fn keeper_entry() {
    #[cfg(unix)]
    imp::keeper_entry();
    #[cfg(windows)]
    imp::helper_entry();
}

/// Kills what a crashed run left of a service whose tree was led by `leader` (started at
/// `leader_start`, already checked against the live system). Returns how many processes were
/// found.
pub(crate) fn kill_leftover(leader: u32, leader_start: u64) -> usize {
    imp::kill_leftover(leader, leader_start)
}

/// Whether processes of a leftover (see [`kill_leftover`]) are still alive.
pub(crate) fn leftovers_remain(leader: u32) -> bool {
    #[cfg(unix)]
    return imp::leftovers_remain(leader);
    #[cfg(windows)]
    return process_start(leader).is_some();
}
