//! The two system calls std does not offer, behind safe wrappers: `poll(2)` for the hub
//! benchmark's receivers (one thread watches thousands of sockets) and `kill(2)` for the
//! supervisor benchmark (so the timer starts at the signal, not at a fork of kill(1)).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// One socket to watch for input.
pub type PollFd = libc::pollfd;

/// A slot watching `fd` for input (a negative fd is ignored by poll).
pub fn readable(fd: RawFd) -> PollFd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Whether the slot has input, a hang-up or an error.
pub fn ready(p: &PollFd) -> bool {
    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// `poll(2)` over `fds` for at most `timeout_ms`; the number of ready slots.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len()).map_err(|_| io::Error::other("too many sockets"))?;
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` of length `n`; poll only
    // writes the `revents` fields within it.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// `kill(pid, SIGKILL)`.
pub fn kill9(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    if pid <= 0 {
        return Err(io::Error::other("refusing to signal a process group"));
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is a positive single process.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
