//! What the Unix layer reads from `/proc`: process start times and states, the members of a
//! session, the boot id, and who holds a listening TCP port.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::signal_group;

/// Selected fields of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcStat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// Start time in clock ticks since boot (field 22).
    pub start_ticks: u64,
}

/// Parses the text of `/proc/PID/stat` (the command may contain spaces and parentheses).
pub(super) fn parse_stat(text: &str) -> Option<ProcStat> {
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
pub(super) fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub(super) fn all_stats() -> impl Iterator<Item = (u32, ProcStat)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| stat(pid).map(|s| (pid, s)))
}

/// Processes of a session (not counting zombies).
pub(super) fn session_members(sid: u32) -> Vec<u32> {
    all_stats().filter(|(_, st)| st.session == sid && st.state != 'Z').map(|(pid, _)| pid).collect()
}

/// SIGKILLs every process of a session (its process groups first, then stragglers one by one).
/// Returns how many processes were found.
pub(super) fn kill_session(sid: u32) -> usize {
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
pub(super) fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
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
pub(super) fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> =
        raw.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    if parts.is_empty() { None } else { Some(parts.join(" ")) }
}

/// Whether the group has members that are not zombies (a `/proc` scan; slower than
/// [`group_alive`], used only when a group lingers).
pub(super) fn group_has_live_members(pgid: u32) -> bool {
    all_stats().any(|(_, st)| st.pgrp == pgid && st.state != 'Z')
}
