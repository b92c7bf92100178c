//! Everything platform-specific, for Unix (Linux first): spawning a service in its own session
//! under a keeper that takes the service's process group along when the orchestrator dies,
//! signalling and probing process groups, reading process start times and session members from
//! `/proc`, and finding who holds a TCP port.
//!
//! The seam for a future `windows` module is these free functions: [`spawn`], [`request_kill`],
//! [`signal_group`], [`group_alive`], [`process_start_ticks`], [`session_members`],
//! [`kill_session`], [`boot_id`], [`port_owner`], [`parse_signal`] and [`describe_exit`]. Nothing outside
//! this module calls libc, nix or reads `/proc`. (On Windows a job object would take the place
//! of the session, `TerminateJobObject` that of `killpg`, and `GetExtendedTcpTable` that of
//! `/proc/net/tcp`.)

use std::fs;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use registry::ServiceConfig;
use tokio::process::{Child, Command};

/// A freshly spawned service: its keeper (our child, leader of its own session and process
/// group) and the service process (the keeper's only child, in the same group).
pub(crate) struct Spawned {
    /// The keeper: `wait` on it yields the service's exit status.
    pub child: Child,
    /// The service's own process (what the registry shows).
    pub pid: u32,
    /// The keeper's pid, which is also the process group id and the session id.
    pub pgid: u32,
}

/// Spawns the service's command behind a keeper (see [`install_keeper`]): own session and
/// process group, stdin null, stdout/stderr piped. Must be called from the supervisor's
/// long-lived thread (the parent-death signal fires when the *thread* that forked exits).
pub(crate) fn spawn(config: &ServiceConfig) -> io::Result<Spawned> {
    let argv = config.command.as_deref().unwrap_or_default();
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
    Ok(Spawned { child, pid, pgid })
}

/// `keep:NAME`, cut to the 15 bytes a Linux process name holds (shown by `ps -o comm`, `top`).
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
pub(crate) fn request_kill(keeper: u32) -> io::Result<bool> {
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
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
    let Ok(raw) = i32::try_from(pgid) else { return Ok(false) };
    if raw <= 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "refusing to signal process group <= 1"));
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether any process of the group is alive. Zombies left to a reaper other than us still
/// count for `kill(-pgid, 0)`, so a group whose members are all zombies counts as empty.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else { return false };
    if raw <= 1 {
        return false;
    }
    match kill(Pid::from_raw(-raw), None) {
        Err(Errno::ESRCH) => false,
        Ok(()) | Err(_) => true,
    }
}

/// Whether the group has members that are not zombies (a `/proc` scan; slower than
/// [`group_alive`], used only when a group lingers).
pub(crate) fn group_has_live_members(pgid: u32) -> bool {
    all_stats().any(|(_, st)| st.pgrp == pgid && st.state != 'Z')
}

/// Selected fields of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// Start time in clock ticks since boot (field 22).
    pub start_ticks: u64,
}

/// Parses the text of `/proc/PID/stat` (the command may contain spaces and parentheses).
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so field N is f[N - 3].
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// The stat of a process, if it exists.
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of a process (clock ticks since boot), if it exists.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_ticks)
}

fn all_stats() -> impl Iterator<Item = (u32, ProcStat)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| stat(pid).map(|s| (pid, s)))
}

/// Processes of a session (not counting zombies).
pub(crate) fn session_members(sid: u32) -> Vec<u32> {
    all_stats().filter(|(_, st)| st.session == sid && st.state != 'Z').map(|(pid, _)| pid).collect()
}

/// SIGKILLs every process of a session (its process groups first, then stragglers one by one).
/// Returns how many processes were found.
pub(crate) fn kill_session(sid: u32) -> usize {
    let members: Vec<(u32, ProcStat)> = all_stats().filter(|(_, st)| st.session == sid && st.state != 'Z').collect();
    for (pid, st) in &members {
        if signal_group(st.pgrp, Signal::SIGKILL).ok() != Some(true)
            && let Ok(raw) = i32::try_from(*pid)
        {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
    members.len()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): start times only compare within a boot.
pub(crate) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `SIGTERM` etc. to a signal (SIGTERM for anything unknown; the config validates names).
pub(crate) fn parse_signal(name: &str) -> Signal {
    Signal::from_str(name).unwrap_or(Signal::SIGTERM)
}

/// Exit code and signal name of an exit status.
pub(crate) fn describe_exit(status: &ExitStatus) -> (Option<i32>, Option<String>) {
    let signal = status
        .signal()
        .map(|s| Signal::try_from(s).map(|s| s.as_str().to_owned()).unwrap_or_else(|_| format!("signal {s}")));
    (status.code(), signal)
}

/// The process holding a listening TCP port, as far as it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortOwner {
    pub pid: u32,
    pub command: Option<String>,
}

/// Finds the process listening on `port` (any address): the socket's inode from
/// `/proc/net/tcp{,6}`, then the `/proc/*/fd` entry linking to `socket:[inode]`.
/// `None` when not found (or not visible to us).
pub(crate) fn port_owner(port: u16) -> Option<PortOwner> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path())
                && targets.iter().any(|t| link.as_os_str() == t.as_str())
            {
                return Some(PortOwner { pid, command: cmdline(pid) });
            }
        }
    }
    None
}

/// Inodes of sockets listening on `port` in a `/proc/net/tcp`-format table.
pub(crate) fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *state == LISTEN && inode != 0).then_some(inode)
        })
        .collect()
}

/// The command line of a process, arguments joined by spaces.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> =
        raw.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    if parts.is_empty() { None } else { Some(parts.join(" ")) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_parsing() {
        let text = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1 2 0 0 3 4 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(text).unwrap();
        assert_eq!(st, ProcStat { state: 'S', ppid: 1, pgrp: 4242, session: 4242, start_ticks: 987_654 });
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1 2").is_none());
    }

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id();
        let st = stat(me).unwrap();
        assert_ne!(st.state, 'Z');
        assert_eq!(st.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(process_start_ticks(me), Some(st.start_ticks));
        assert!(cmdline(me).is_some());
        assert!(process_start_ticks(u32::MAX).is_none());
    }

    #[test]
    fn proc_net_tcp_parsing() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0 100 0 0 10 0\n\
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8080), [123_456]);
        assert_eq!(listening_inodes(table, 8081), [555]);
        assert!(listening_inodes(table, 8082).is_empty());
    }

    #[test]
    fn port_owner_finds_our_own_listener() {
        let listener = crate::test_listener();
        let port = listener.local_addr().unwrap().port();
        let owner = port_owner(port).expect("our listener is found");
        assert_eq!(owner.pid, std::process::id());
        assert!(owner.command.is_some());
        drop(listener);
        // A child another test forks at this moment may hold a copy of the descriptor for a few
        // milliseconds (until it execs or closes it): wait for the listener to be gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while port_owner(port).is_some() {
            assert!(std::time::Instant::now() < deadline, "the dropped listener is still found");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn sh(name: &str, script: &str) -> ServiceConfig {
        let name = gateway_core::ServiceName::parse(name).unwrap();
        let mut cfg = ServiceConfig::with_defaults(name, 1);
        cfg.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
        cfg
    }

    fn wait_until(what: &str, within: std::time::Duration, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + within;
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn live_members(pgid: u32) -> usize {
        all_stats().filter(|(_, st)| st.pgrp == pgid && st.state != 'Z').count()
    }

    #[tokio::test]
    async fn the_keeper_leads_the_group_and_ends_like_its_service() {
        let mut s = spawn(&sh("code", "exit 7")).unwrap();
        assert_eq!(describe_exit(&s.child.wait().await.unwrap()), (Some(7), None));

        let mut s = spawn(&sh("keeper-test", "exec sleep 300")).unwrap();
        let service = stat(s.pid).unwrap();
        assert_eq!((service.ppid, service.pgrp, service.session), (s.pgid, s.pgid, s.pgid));
        let keeper = stat(s.pgid).unwrap();
        assert_eq!((keeper.ppid, keeper.pgrp, keeper.session), (std::process::id(), s.pgid, s.pgid));
        assert_eq!(fs::read_to_string(format!("/proc/{}/comm", s.pgid)).unwrap().trim(), "keep:keeper-tes");
        // Its command line is its title (NUL-padded), not a copy of the orchestrator's.
        let cmdline = fs::read(format!("/proc/{}/cmdline", s.pgid)).unwrap();
        assert_eq!(String::from_utf8_lossy(&cmdline).trim_end_matches('\0'), "keep:keeper-test");
        assert_eq!(fs::read_dir(format!("/proc/{}/fd", s.pgid)).unwrap().count(), 0, "the keeper holds no descriptor");
        // The stop signal goes to the whole group; the keeper ignores it and ends like the service.
        assert!(signal_group(s.pgid, Signal::SIGTERM).unwrap());
        assert_eq!(describe_exit(&s.child.wait().await.unwrap()), (None, Some("SIGTERM".to_owned())));
        assert!(stat(s.pid).is_none(), "the keeper reaped the service");

        // A kill request: the service first (reaped by the keeper), then the rest of the group.
        let mut s = spawn(&sh("hard", "sleep 300 & exec sleep 300")).unwrap();
        wait_until("three members", Duration::from_secs(5), || live_members(s.pgid) == 3);
        assert!(request_kill(s.pgid).unwrap());
        assert_eq!(describe_exit(&s.child.wait().await.unwrap()), (None, Some("SIGKILL".to_owned())));
        assert!(stat(s.pid).is_none(), "the keeper reaped the service");
        wait_until("the group to be gone", Duration::from_secs(5), || live_members(s.pgid) == 0);
        assert!(!request_kill(s.pgid).unwrap_or(true) || stat(s.pgid).is_none());
    }

    #[tokio::test]
    async fn what_a_service_started_in_other_sessions_goes_with_it() {
        // (This test binary does not call `keeper_entry`: the keeper runs in the forked image.)
        let marker = format!("sleep {}", 3_000 + std::process::id() % 1_000);
        let helpers = || {
            all_stats()
                .filter(|(pid, st)| st.state != 'Z' && cmdline(*pid).is_some_and(|c| c == marker))
                .map(|(pid, st)| (pid, st.session))
                .collect::<Vec<_>>()
        };
        // Two helpers in sessions of their own; the service then exits with 3.
        let script = format!("setsid {marker} & setsid {marker} & sleep 0.3; exit 3");
        let mut s = spawn(&sh("detach", &script)).unwrap();
        wait_until("two detached helpers", Duration::from_secs(5), || helpers().len() == 2);
        assert!(helpers().iter().all(|(pid, session)| pid == session), "each leads its own session");
        assert_eq!(
            describe_exit(&s.child.wait().await.unwrap()),
            (Some(3), None),
            "the keeper still ends like its service"
        );
        assert_eq!(helpers(), vec![], "the keeper killed and reaped them before it ended");
    }

    #[tokio::test]
    async fn a_command_that_cannot_be_executed_is_a_spawn_error() {
        let mut cfg = sh("missing", "");
        cfg.command = Some(vec!["/nonexistent/program".into()]);
        let err = spawn(&cfg).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn the_whole_group_dies_at_once_with_the_spawning_thread() {
        // The parent-death signal fires when the thread that forked exits, as when the
        // orchestrator is killed.
        let (pgid, pid) = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let s = spawn(&sh("orphans", "sleep 300 & sleep 300 & exec sleep 300")).unwrap();
                wait_until("four members", Duration::from_secs(5), || live_members(s.pgid) == 4);
                (s.pgid, s.pid)
            })
        })
        .join()
        .unwrap();
        let gone_at = std::time::Instant::now();
        wait_until("the group to die with the thread", Duration::from_secs(1), || live_members(pgid) == 0);
        eprintln!("group of {pid} gone {:?} after its spawning thread", gone_at.elapsed());
    }

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

    #[test]
    fn signals_and_exit_descriptions() {
        assert_eq!(parse_signal("SIGINT"), Signal::SIGINT);
        assert_eq!(parse_signal("nonsense"), Signal::SIGTERM);
        let killed = ExitStatus::from_raw(9);
        assert_eq!(describe_exit(&killed), (None, Some("SIGKILL".to_owned())));
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe_exit(&exited), (Some(3), None));
        assert!(signal_group(1, Signal::SIGTERM).is_err(), "never signal init's group");
        assert!(!group_alive(0));
    }
}
