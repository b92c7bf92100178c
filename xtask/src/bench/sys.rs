//! The system calls std does not offer, behind safe wrappers: `epoll(7)` for the hub
//! benchmark's receivers (one thread watches thousands of sockets at a cost per ready socket,
//! not per watched one), `kill(2)` for the supervisor benchmark (so the timer starts at the
//! signal, not at a fork of kill(1)) and `prctl(PR_SET_TIMERSLACK)` for the paced load
//! generator of the gateway benchmark (so its sleeps end on time, not up to 50 µs late), and
//! `sysconf(_SC_CLK_TCK)` for reading `/proc/PID/stat` CPU times.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance (closed on drop).
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new instance that reports at most `batch` ready sockets per wait.
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may take it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)] })
    }

    /// Watches `fd` for input; `token` comes back from [`Epoll::wait`].
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL.
        let _ = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout_ms` and returns the tokens of the ready sockets.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Vec<u64>> {
        let cap = i32::try_from(self.events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a valid, exclusively borrowed buffer of `cap` epoll_event.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0);
        Ok(self.events[..n].iter().map(|e| e.u64).collect())
    }
}

/// `sysconf(_SC_CLK_TCK)`: the unit of `utime` and `stime` in `/proc/PID/stat` (100 if unknown).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes a plain integer and has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
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

/// Sets the calling thread's timer slack (how late the kernel may end its sleeps) to `ns`
/// nanoseconds; the default is 50 µs.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    let ns = libc::c_ulong::try_from(ns.max(1)).map_err(|_| io::Error::other("timer slack out of range"))?;
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer argument and only affects this thread.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
