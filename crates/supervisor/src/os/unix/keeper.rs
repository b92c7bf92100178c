//! The keeper: a small process between the orchestrator and each service that leads the
//! service's session and process group, reaps it, and takes the whole group along when the
//! orchestrator is gone (kill -9 included). All of the Unix layer's `unsafe` code is here:
//! the pre-exec hook, the keeper's own loop (async-signal-safe system calls only), its
//! re-execution into a small image, and the kill request the supervisor sends it.

use std::fs;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd as _, RawFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use registry::ServiceConfig;
use tokio::process::{Child, Command};

use super::signal_group;

/// Spawns the service's command behind a keeper (see [`install_keeper`]): own session and
/// process group, stdin null, stdout/stderr piped. Returns the keeper (our child, whose exit
/// status is the service's), the service's pid and the keeper's pid (= process group id =
/// session id). Must be called from the supervisor's long-lived thread (the parent-death
/// signal fires when the *thread* that forked exits).
pub(super) fn spawn_kept(config: &ServiceConfig, argv: &[String]) -> io::Result<(Child, u32, u32)> {
    let (program, args) =
        argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&config.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if let Some(cwd) = &config.cwd {
        cmd.current_dir(cwd);
    }
    // The keeper reports the service's pid through this pipe before the spawn returns.
    let (report_rx, report_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let title = format!("keep:{}", config.name.as_str()).into_bytes();
    install_keeper(&mut cmd, report_tx.as_raw_fd(), keeper_name(config.name.as_str()), title);
    let spawned = cmd.spawn();
    drop(report_tx);
    let child = spawned?;
    let pgid = child.id().ok_or_else(|| io::Error::other("spawned process has no pid"))?;
    let mut buf = [0u8; 4];
    let pid = match fs::File::from(report_rx).read_exact(&mut buf) {
        Ok(()) => u32::try_from(i32::from_ne_bytes(buf)).unwrap_or(0),
        Err(e) => {
            let _ = signal_group(pgid, Signal::SIGKILL);
            return Err(io::Error::other(format!("the keeper did not report the service's pid: {e}")));
        }
    };
    Ok((child, pid, pgid))
}

fn keeper_name(service: &str) -> [u8; 16] {
    let mut name = [0u8; 16];
    for (dst, src) in name.iter_mut().take(15).zip(b"keep:".iter().chain(service.as_bytes())) {
        *dst = *src;
    }
    name
}

/// Where this process's command line lives in its memory (`arg_start`, `arg_end`: fields 48
/// and 49 of `/proc/self/stat`), read once. A keeper writes its title there, so that `ps -f`
/// and `pgrep -f` show `keep:NAME` rather than a second copy of the orchestrator's command.
fn argument_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(|| {
        let text = fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3, so field N is fields[N - 3].
        let start: usize = fields.get(45)?.parse().ok()?;
        let end: usize = fields.get(46)?.parse().ok()?;
        (start != 0 && end > start).then_some((start, end))
    })
}

/// The keeper's parent-death signal: the orchestrator (its supervisor thread) is gone.
fn orchestrator_gone_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Sent by the supervisor to a keeper: SIGKILL the service, reap it, then SIGKILL the group.
fn kill_request_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// Set in the environment of a keeper that re-executes the binary (and nowhere else):
/// `service pid:orchestrator pid:gone signal:kill signal`.
const KEEPER_ENV: &str = "ORCHESTRATOR_KEEPER";

/// Whether this binary agreed to be re-executed as a keeper ([`keeper_entry`]).
static REEXEC: AtomicBool = AtomicBool::new(false);

/// For a binary that embeds the supervisor: call it first thing in `main`.
///
/// In a process the supervisor started as a keeper, it runs the keeper and never returns.
/// Otherwise it returns at once, and from then on this binary's keepers re-execute it
/// (`/proc/self/exe`) instead of living on in the copy-on-write image of the whole process that
/// forked them: a fork of an orchestrator that holds 100 MB (thousands of WebSocket clients,
/// say) would keep the pre-fork version of every page the orchestrator later changes or frees,
/// for as long as the service runs. Without the call, keepers stay in that forked image.
pub fn keeper_entry() {
    if let Some(spec) = std::env::var_os(KEEPER_ENV) {
        run_reexecuted_keeper(&spec.to_string_lossy());
    }
    REEXEC.store(true, Ordering::Relaxed);
}

/// The keeper after its `execve`: its signal mask (all blocked), parent-death signal, session,
/// child (the service) and resource limits came through the exec; the rest is set again.
#[allow(unsafe_code)]
fn run_reexecuted_keeper(spec: &str) -> ! {
    let fields: Vec<libc::pid_t> = spec.split(':').filter_map(|f| f.parse().ok()).collect();
    // A keeper leads its own session (whose group it kills when its orchestrator is gone, which
    // may already be the case); anything else (a stray variable in someone's shell) is refused
    // before it could signal a group that is not its own.
    // SAFETY: getsid and getpid have no preconditions.
    let leads_session = unsafe { libc::getsid(0) == libc::getpid() };
    let &[service, parent, gone_signal, kill_signal] = fields.as_slice() else {
        eprintln!("{KEEPER_ENV}={spec}: not a keeper specification");
        std::process::exit(2);
    };
    if !leads_session {
        eprintln!("{KEEPER_ENV} is set, but this process was not started as a keeper by the supervisor");
        std::process::exit(2);
    }
    let title = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name = [0u8; 16];
    for (dst, src) in name.iter_mut().take(15).zip(title.bytes()) {
        *dst = src;
    }
    // SAFETY: prctl and sigprocmask on this process only; `name` is NUL-terminated.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        keep(service, parent, gone_signal, kill_signal)
    }
}

/// Writes `n` in decimal at `buf[at..]`; returns the index after it (no allocation: this runs
/// between fork and exec). Stops at the end of `buf`.
fn put_decimal(buf: &mut [u8], mut at: usize, n: i64) -> usize {
    let mut digits = [0u8; 20];
    let (mut len, mut rest) = (0, n.unsigned_abs());
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 && at < buf.len() {
        buf[at] = b'-';
        at += 1;
    }
    for d in digits[..len].iter().rev() {
        if at < buf.len() {
            buf[at] = *d;
            at += 1;
        }
    }
    at
}

/// Installs the pre-exec hook that puts a keeper between the orchestrator and the service.
///
/// In the forked child (the keeper-to-be): a new session (pgid = sid = its pid), every signal
/// blocked, a parent-death signal, the child-subreaper flag and the name `keep:NAME`; then one
/// more fork. The grandchild is the service: it gets SIGKILL as its own parent-death signal
/// (tied to the keeper), its inherited signal mask back, and returns, so std execs the command. The
/// keeper never returns: it reports the service's pid, closes every descriptor (std's exec
/// error pipe among them, so the spawn returns once the service has exec'd; the stdout/stderr
/// pipes too, so their end of file is the service side's), and runs [`keep`]: after
/// re-executing the binary as `keep:NAME` when the binary called [`keeper_entry`] (a small,
/// fresh image), or in the forked image when it did not or the exec failed.
///
/// The orchestrator is multithreaded, so everything after the first fork must be
/// async-signal-safe: only system calls, no allocation, no lock, no Rust I/O.
#[allow(unsafe_code)]
fn install_keeper(cmd: &mut Command, report_fd: RawFd, name: [u8; 16], title: Vec<u8>) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let arguments = argument_area();
    let gone_signal = orchestrator_gone_signal();
    let kill_signal = kill_request_signal();
    // Everything the re-exec needs is made before the fork; only the service's pid is written
    // into `spec` after it.
    let reexec = REEXEC.load(Ordering::Relaxed).then(|| {
        let exe = std::ffi::CString::new("/proc/self/exe").unwrap_or_default();
        let argv0 = std::ffi::CString::new(title.clone()).unwrap_or_default();
        (exe, argv0)
    });
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // system calls (setsid, sigprocmask, prctl, getpid, getppid, sigaction, fork, write,
    // close_range, setrlimit, waitpid, sigtimedwait, kill, open, read, close, execve, _exit);
    // it allocates nothing and touches no lock. `io::Error::last_os_error` only reads errno.
    // The keeper also overwrites its own copy of the argument strings (a range of its stack the
    // kernel reports, see `argument_area`) with the title prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // Signals stay pending until the keeper waits for them; the service gets the
            // mask it would have had without a keeper.
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut inherited: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            if libc::sigprocmask(libc::SIG_BLOCK, &all, &mut inherited) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, gone_signal as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The orchestrator may have died between fork and prctl: then nobody would tell us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            // Descendants orphaned by the service are reparented to the keeper, which reaps them.
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
            // An ignored SIGCHLD (inherited) would reap the service behind the keeper's back.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGCHLD, &default, std::ptr::null_mut());
            let keeper = libc::getpid();
            let service = libc::fork();
            if service == -1 {
                return Err(io::Error::last_os_error());
            }
            if service == 0 {
                // The service: dies with its keeper, whatever killed the keeper.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != keeper {
                    libc::_exit(1);
                }
                if libc::sigprocmask(libc::SIG_SETMASK, &inherited, std::ptr::null_mut()) == -1 {
                    return Err(io::Error::last_os_error());
                }
                return Ok(());
            }
            let report = service.to_ne_bytes();
            libc::write(report_fd, report.as_ptr().cast(), report.len());
            close_every_descriptor();
            if let Some((exe, argv0)) = &reexec {
                // NUL-terminated: the last byte is never written.
                let mut spec = [0u8; 96];
                let prefix = b"ORCHESTRATOR_KEEPER=";
                spec[..prefix.len()].copy_from_slice(prefix);
                let mut at = prefix.len();
                for (i, n) in [service, parent, gone_signal, kill_signal].into_iter().enumerate() {
                    if i > 0 && at < 95 {
                        spec[at] = b':';
                        at += 1;
                    }
                    at = put_decimal(&mut spec[..95], at, i64::from(n));
                }
                let argv = [argv0.as_ptr(), std::ptr::null()];
                let envp = [spec.as_ptr().cast::<libc::c_char>(), std::ptr::null()];
                libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                // The exec failed: stay a keeper in this image.
            }
            if let Some((start, end)) = arguments {
                // The keeper's own copy of the argument strings (copy-on-write since the fork):
                // its title, then NULs to the end of the area.
                let area = start as *mut u8;
                let len = end - start;
                std::ptr::write_bytes(area, 0, len);
                std::ptr::copy_nonoverlapping(title.as_ptr(), area, title.len().min(len - 1));
            }
            // No core file of this copy of the orchestrator when it re-raises a service's SIGSEGV.
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            keep(service, parent, gone_signal, kill_signal)
        });
    }
}

/// Closes every descriptor of the keeper.
#[allow(unsafe_code)]
unsafe fn close_every_descriptor() {
    // SAFETY: plain system calls on the keeper's own descriptor table.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_int) == 0 {
            return;
        }
        // Kernels before 5.9: one by one, up to the descriptor limit.
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(1 << 20) as libc::c_int
        } else {
            1 << 16
        };
        for fd in 0..max {
            libc::close(fd);
        }
    }
}

/// The keeper's life: reap the service (and descendants the service orphaned); when the
/// service has ended, end the same way; when the orchestrator is gone (parent-death signal,
/// or a new parent noticed at least once a second), SIGKILL the whole process group, the
/// keeper included; on a kill request, SIGKILL the service, reap it and then the group. Every
/// other signal (such as the stop signal the supervisor sends the group) is taken and ignored:
/// the service received it too.
#[allow(unsafe_code)]
unsafe fn keep(service: libc::pid_t, parent: libc::pid_t, gone_signal: libc::c_int, kill_signal: libc::c_int) -> ! {
    // SAFETY: async-signal-safe system calls only, on the keeper's own children and group.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let second = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        loop {
            loop {
                let mut status = 0;
                let reaped = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if reaped == service {
                    kill_orphans();
                    end_like(status);
                }
                if reaped <= 0 {
                    break;
                }
            }
            if libc::getppid() != parent {
                kill_everything(service);
            }
            let signal = libc::sigtimedwait(&all, std::ptr::null_mut(), &second);
            if signal == gone_signal || signal == kill_signal {
                kill_everything(service);
            }
        }
    }
}

/// The keeper's end when the orchestrator is gone or asks for a hard stop: SIGKILL the service
/// and reap it, so that what it started in other sessions becomes the keeper's (the
/// child-subreaper flag) and goes too ([`kill_orphans`]); then SIGKILL the group, the keeper
/// included.
#[allow(unsafe_code)]
unsafe fn kill_everything(service: libc::pid_t) -> ! {
    // SAFETY: async-signal-safe system calls on the keeper's own child and group.
    unsafe {
        libc::kill(service, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(service, &mut status, 0);
        kill_orphans();
        libc::kill(0, libc::SIGKILL);
        libc::_exit(1)
    }
}

/// SIGKILLs and reaps every child the keeper has left: processes the service started and left
/// behind, which the child-subreaper flag made the keeper's children whatever their session or
/// group (a helper started with `setsid` would escape the group-wide SIGKILL). Repeats while
/// children appear (a killed orphan's own children come to the keeper in turn), at most 64
/// rounds. Reads `/proc/self/task/PID/children` with plain system calls and no allocation, so it
/// may run between fork and exec; without that file (a kernel without `CONFIG_PROC_CHILDREN`) it
/// does nothing.
#[allow(unsafe_code)]
unsafe fn kill_orphans() {
    // SAFETY: async-signal-safe system calls (getpid, open, read, close, kill, waitpid) on the
    // keeper's own children, with buffers on the stack.
    unsafe {
        let mut path = [0u8; 64];
        let prefix = b"/proc/self/task/";
        path[..prefix.len()].copy_from_slice(prefix);
        let at = put_decimal(&mut path[..40], prefix.len(), i64::from(libc::getpid()));
        let suffix = b"/children";
        path[at..at + suffix.len()].copy_from_slice(suffix);
        for _ in 0..64 {
            let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return;
            }
            let mut buf = [0u8; 4096];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            let Ok(n) = usize::try_from(n) else { return };
            // At most 2 048 pids fit in 4 096 bytes (a digit and a space each).
            let mut killed = [0 as libc::pid_t; 2048];
            let count = parse_pids(&buf[..n], n < buf.len(), &mut killed);
            if count == 0 {
                return;
            }
            for &pid in &killed[..count] {
                libc::kill(pid, libc::SIGKILL);
            }
            // Reap exactly those (they are dying); children that arrived meanwhile are read,
            // killed and reaped in the next round, never waited on alive.
            let mut status = 0;
            for &pid in &killed[..count] {
                libc::waitpid(pid, &mut status, 0);
            }
        }
    }
}

/// The pids (> 1) of a `children` file's text into `out`; returns how many. When `whole` is
/// false the text is a full buffer that may end in the middle of a pid, so a last number not
/// followed by a separator is left for the next read. No allocation (see [`kill_orphans`]).
fn parse_pids(text: &[u8], whole: bool, out: &mut [libc::pid_t]) -> usize {
    let tail: &[u8] = if whole { b" " } else { b"" };
    let (mut count, mut pid): (usize, libc::pid_t) = (0, 0);
    for &b in text.iter().chain(tail) {
        if b.is_ascii_digit() {
            pid = pid.saturating_mul(10).saturating_add(libc::pid_t::from(b - b'0'));
        } else {
            if pid > 1 && count < out.len() {
                out[count] = pid;
                count += 1;
            }
            pid = 0;
        }
    }
    count
}

/// Ends the keeper with the service's wait status: the same exit code, or the same signal
/// (default action restored, then raised and unblocked), so the supervisor sees what the
/// service did.
#[allow(unsafe_code)]
unsafe fn end_like(status: libc::c_int) -> ! {
    // SAFETY: async-signal-safe system calls on the keeper itself.
    unsafe {
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
            let mut one: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut one);
            libc::sigaddset(&mut one, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
            libc::_exit(128 + signal);
        }
        libc::_exit(1)
    }
}

/// Asks a keeper (our child, not yet reaped, so its pid cannot have been reused) to SIGKILL
/// its service, reap it and SIGKILL the rest of the group. Killing the service first lets the
/// keeper reap it: a group-wide SIGKILL would kill the keeper at the same moment and leave
/// the service to init, which in some containers never reaps. `Ok(false)` when the keeper is
/// gone.
#[allow(unsafe_code)]
pub(super) fn request_kill(keeper: u32) -> io::Result<bool> {
    let Ok(raw) = libc::pid_t::try_from(keeper) else { return Ok(false) };
    if raw <= 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "refusing to signal pid <= 1"));
    }
    // SAFETY: kill(2) with a positive pid and a real-time signal the keeper waits for.
    if unsafe { libc::kill(raw, kill_request_signal()) } == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        e => Err(e),
    }
}

/// Sends a signal to a whole process group. `Ok(false)` when the group no longer exists.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists_are_parsed_without_a_cut_pid() {
        let mut out = [0; 8];
        assert_eq!(parse_pids(b"123 4567 ", true, &mut out), 2);
        assert_eq!(&out[..2], &[123, 4567]);
        // A whole list may end without a separator; pid 1 and 0 are never taken.
        assert_eq!(parse_pids(b"1 0 89", true, &mut out), 1);
        assert_eq!(out[0], 89);
        // A full buffer cut inside "45678": the 45 is not a pid to kill.
        assert_eq!(parse_pids(b"123 45", false, &mut out), 1);
        assert_eq!(out[0], 123);
        // More pids than room: the first ones, the rest next round.
        let mut two = [0; 2];
        assert_eq!(parse_pids(b"10 11 12 13 ", true, &mut two), 2);
        assert_eq!(two, [10, 11]);
        assert_eq!(parse_pids(b"", true, &mut out), 0);
    }

    #[test]
    fn decimals_are_written_without_allocating() {
        let mut buf = [0u8; 32];
        let end = put_decimal(&mut buf, 0, 4_194_304);
        let end = put_decimal(&mut buf, end, 0);
        let end = put_decimal(&mut buf, end, -35);
        assert_eq!(&buf[..end], b"41943040-35");
        let mut tiny = [0u8; 3];
        assert_eq!(put_decimal(&mut tiny, 0, 123_456), 3, "stops at the end of the buffer");
        assert_eq!(&tiny, b"123");
    }
}
