//! Everything platform-specific, for Unix (Linux first): spawning a service in its own session
//! that dies with the orchestrator, signalling and probing process groups, reading process
//! start times and session members from `/proc`, and finding who holds a TCP port.
//!
//! The seam for a future `windows` module is these free functions: [`spawn`],
//! [`signal_group`], [`group_alive`], [`process_start_ticks`], [`session_members`],
//! [`kill_session`], [`boot_id`], [`port_owner`], [`parse_signal`] and [`describe_exit`]. Nothing outside
//! this module calls libc, nix or reads `/proc`. (On Windows a job object would take the place
//! of the session, `TerminateJobObject` that of `killpg`, and `GetExtendedTcpTable` that of
//! `/proc/net/tcp`.)

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use registry::ServiceConfig;
use tokio::process::{Child, Command};

/// A freshly spawned service process (leader of its own session and process group).
pub(crate) struct Spawned {
    pub child: Child,
    pub pid: u32,
}

/// Spawns the service's command: own session (pgid = sid = pid), killed with SIGKILL when the
/// spawning thread dies, stdin null, stdout/stderr piped. Must be called from the supervisor's
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
    detach_and_tie_to_parent(&mut cmd);
    let child = cmd.spawn()?;
    let pid = child.id().ok_or_else(|| io::Error::other("spawned process has no pid"))?;
    Ok(Spawned { child, pid })
}

/// Installs the pre-exec hook: a new session, and the parent-death signal.
#[allow(unsafe_code)]
fn detach_and_tie_to_parent(cmd: &mut Command) {
    let parent = i32::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the forked child before exec; it only makes the
    // async-signal-safe system calls setsid, prctl, getppid and _exit, allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The orchestrator may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let owner = port_owner(port).expect("our listener is found");
        assert_eq!(owner.pid, std::process::id());
        assert!(owner.command.is_some());
        drop(listener);
        assert_eq!(port_owner(port), None);
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
