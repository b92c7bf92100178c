//! The OS layer for Unix (Linux first): each service runs in its own session and process group
//! under a keeper ([`keeper`]) that takes the group along when the orchestrator dies; stop
//! signals go to the whole group; `/proc` ([`procfs`]) gives process identities, session
//! members and port owners. Only this module and its children call libc or nix.

mod keeper;
mod procfs;

use std::cell::Cell;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use registry::ServiceConfig;

pub use keeper::keeper_entry;
pub(crate) use procfs::{boot_id, port_owner};

/// The processes of one service: the process group its keeper leads.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The keeper's pid: the process group id and the session id.
    pgid: u32,
    /// Whether the keeper was already asked to kill the service (the next terminate kills the
    /// group directly).
    kill_requested: Cell<bool>,
}

/// A freshly spawned service.
pub(crate) struct Spawned {
    /// Its process group.
    pub tree: Tree,
    /// The service's own process (what the registry shows).
    pub pid: u32,
    /// The keeper (our child, stdout/stderr piped): its exit status is the service's.
    pub child: tokio::process::Child,
}

/// Spawns the service's command behind a keeper, in a session and process group of its own.
/// Must be called from the supervisor's long-lived thread (the keeper's parent-death signal
/// fires when the *thread* that forked exits).
pub(crate) fn spawn(config: &ServiceConfig) -> io::Result<Spawned> {
    let argv = config.command.as_deref().unwrap_or_default();
    let (child, pid, pgid) = keeper::spawn_kept(config, argv)?;
    Ok(Spawned { tree: Tree { pgid, kill_requested: Cell::new(false) }, pid, child })
}

impl Tree {
    /// The process group id, for log lines.
    pub(crate) fn id(&self) -> u32 {
        self.pgid
    }

    /// Sends the stop signal (a name the configuration validated; `SIGBREAK`, a Windows name,
    /// means SIGTERM here) to the whole group. `Ok(false)` when the group is gone.
    pub(crate) fn signal(&self, name: &str) -> io::Result<bool> {
        match parse_signal(name) {
            Signal::SIGKILL => self.terminate(),
            signal => signal_group(self.pgid, signal),
        }
    }

    /// Kills the whole group: the first time by asking the keeper to SIGKILL and reap the
    /// service and then the group (so the service never becomes a zombie of init), after that
    /// (or when the keeper is gone) by SIGKILL to the group. `Ok(false)` when it is gone.
    pub(crate) fn terminate(&self) -> io::Result<bool> {
        // The keeper only while it is our live child (once reaped, its pid may be reused).
        let keeper_alive = procfs::stat(self.pgid)
            .is_some_and(|s| s.state != 'Z' && s.ppid == std::process::id() && s.pgrp == self.pgid);
        if !self.kill_requested.replace(true) && keeper_alive {
            match keeper::request_kill(self.pgid) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => log::warn!("cannot ask keeper {} to kill its service: {e}", self.pgid),
            }
        }
        signal_group(self.pgid, Signal::SIGKILL)
    }

    /// Whether no live process is left in the group (zombies that are not ours to reap do not
    /// count).
    pub(crate) fn is_empty(&self) -> bool {
        !group_alive(self.pgid) || !procfs::group_has_live_members(self.pgid)
    }
}

/// Exit code and signal name of an exit status.
pub(crate) fn exit_of(status: &ExitStatus) -> (Option<i32>, Option<String>) {
    let signal = status
        .signal()
        .map(|s| Signal::try_from(s).map(|s| s.as_str().to_owned()).unwrap_or_else(|_| format!("signal {s}")));
    (status.code(), signal)
}

/// A process's identity for pidfiles: its start time in clock ticks since boot; `None` when it
/// does not exist or is a zombie.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    procfs::stat(pid).filter(|s| s.state != 'Z').map(|s| s.start_ticks)
}

/// Kills what a crashed run left of a service: every process of the session its keeper led.
/// Returns how many processes were found.
pub(crate) fn kill_leftover(leader: u32, _leader_start: u64) -> usize {
    procfs::kill_session(leader)
}

/// Whether processes of a leftover session (see [`kill_leftover`]) are still alive.
pub(crate) fn leftovers_remain(leader: u32) -> bool {
    !procfs::session_members(leader).is_empty()
}

/// `SIGTERM` etc. to a signal (SIGTERM for anything unknown, `SIGBREAK` included).
fn parse_signal(name: &str) -> Signal {
    Signal::from_str(name).unwrap_or(Signal::SIGTERM)
}

fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
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
fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else { return false };
    if raw <= 1 {
        return false;
    }
    match kill(Pid::from_raw(-raw), None) {
        Err(Errno::ESRCH) => false,
        Ok(()) | Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
    use super::procfs::*;
    use super::*;
    use crate::pidfile;
    use nix::sys::signal::Signal;
    use std::fs;
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
        assert_eq!(process_start(me), Some(st.start_ticks));
        assert!(cmdline(me).is_some());
        assert!(process_start(u32::MAX).is_none());
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

    fn sh(name: &str, script: &str) -> registry::ServiceConfig {
        let name = gateway_core::ServiceName::parse(name).unwrap();
        let mut cfg = registry::ServiceConfig::with_defaults(name, 1);
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
        assert_eq!(exit_of(&s.child.wait().await.unwrap()), (Some(7), None));

        let mut s = spawn(&sh("keeper-test", "exec sleep 300")).unwrap();
        let service = stat(s.pid).unwrap();
        assert_eq!((service.ppid, service.pgrp, service.session), (s.tree.id(), s.tree.id(), s.tree.id()));
        let keeper = stat(s.tree.id()).unwrap();
        assert_eq!((keeper.ppid, keeper.pgrp, keeper.session), (std::process::id(), s.tree.id(), s.tree.id()));
        assert_eq!(fs::read_to_string(format!("/proc/{}/comm", s.tree.id())).unwrap().trim(), "keep:keeper-tes");
        // Its command line is its title (NUL-padded), not a copy of the orchestrator's.
        let cmdline = fs::read(format!("/proc/{}/cmdline", s.tree.id())).unwrap();
        assert_eq!(String::from_utf8_lossy(&cmdline).trim_end_matches('\0'), "keep:keeper-test");
        assert_eq!(
            fs::read_dir(format!("/proc/{}/fd", s.tree.id())).unwrap().count(),
            0,
            "the keeper holds no descriptor"
        );
        // The stop signal goes to the whole group; the keeper ignores it and ends like the service.
        assert!(signal_group(s.tree.id(), Signal::SIGTERM).unwrap());
        assert_eq!(exit_of(&s.child.wait().await.unwrap()), (None, Some("SIGTERM".to_owned())));
        assert!(stat(s.pid).is_none(), "the keeper reaped the service");

        // A kill request: the service first (reaped by the keeper), then the rest of the group.
        let mut s = spawn(&sh("hard", "sleep 300 & exec sleep 300")).unwrap();
        wait_until("three members", Duration::from_secs(5), || live_members(s.tree.id()) == 3);
        assert!(keeper::request_kill(s.tree.id()).unwrap());
        assert_eq!(exit_of(&s.child.wait().await.unwrap()), (None, Some("SIGKILL".to_owned())));
        assert!(stat(s.pid).is_none(), "the keeper reaped the service");
        wait_until("the group to be gone", Duration::from_secs(5), || live_members(s.tree.id()) == 0);
        assert!(!keeper::request_kill(s.tree.id()).unwrap_or(true) || stat(s.tree.id()).is_none());
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
        assert_eq!(exit_of(&s.child.wait().await.unwrap()), (Some(3), None), "the keeper still ends like its service");
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
                wait_until("four members", Duration::from_secs(5), || live_members(s.tree.id()) == 4);
                (s.tree.id(), s.pid)
            })
        })
        .join()
        .unwrap();
        let gone_at = std::time::Instant::now();
        wait_until("the group to die with the thread", Duration::from_secs(1), || live_members(pgid) == 0);
        eprintln!("group of {pid} gone {:?} after its spawning thread", gone_at.elapsed());
    }

    #[test]
    fn signals_and_exit_descriptions() {
        assert_eq!(parse_signal("SIGINT"), Signal::SIGINT);
        assert_eq!(parse_signal("nonsense"), Signal::SIGTERM);
        let killed = ExitStatus::from_raw(9);
        assert_eq!(exit_of(&killed), (None, Some("SIGKILL".to_owned())));
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(exit_of(&exited), (Some(3), None));
        assert!(signal_group(1, Signal::SIGTERM).is_err(), "never signal init's group");
        assert!(!group_alive(0));
    }

    fn wait_until_10s(what: &str, cond: impl FnMut() -> bool) {
        wait_until(what, Duration::from_secs(10), cond);
    }

    #[tokio::test]
    async fn leftovers_of_a_crashed_run_are_killed_only_when_ours() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = registry::ServiceConfig::with_defaults(gateway_core::ServiceName::parse("left").unwrap(), 1);
        cfg.command = Some(vec!["sh".into(), "-c".into(), "sleep 300 & sleep 300 & wait".into()]);
        let mut spawned = spawn(&cfg).unwrap();
        let sid = spawned.tree.id();
        // The keeper, the shell and its two children.
        wait_until_10s("the session to have 4 members", || session_members(sid).len() == 4);

        // A record whose leader's start time does not match is left alone.
        let rec = pidfile::PidRecord::of(spawned.pid, sid).unwrap();
        let wrong = pidfile::path(dir.path(), "wrong");
        pidfile::write(&wrong, &pidfile::PidRecord { leader_start_ticks: rec.leader_start_ticks + 7, ..rec.clone() })
            .unwrap();
        assert!(pidfile::kill_leftovers(dir.path()).is_empty());
        assert!(!wrong.exists(), "a stale pidfile is removed");
        assert_eq!(session_members(sid).len(), 4, "nothing was killed");

        // The right record kills the whole session, grandchildren included.
        let good = pidfile::path(dir.path(), "left");
        pidfile::write(&good, &rec).unwrap();
        let pending = pidfile::kill_leftovers(dir.path());
        assert_eq!(pending, [(sid, good.clone())]);
        spawned.child.wait().await.unwrap();
        wait_until_10s("the session to be empty", || session_members(sid).is_empty());
    }

    #[tokio::test]
    async fn grandchildren_are_killed_when_the_leader_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = registry::ServiceConfig::with_defaults(gateway_core::ServiceName::parse("orphan").unwrap(), 1);
        cfg.command = Some(vec!["sh".into(), "-c".into(), "sleep 300 & sleep 300 & wait".into()]);
        let mut spawned = spawn(&cfg).unwrap();
        let sid = spawned.tree.id();
        wait_until_10s("the session to have 4 members", || session_members(sid).len() == 4);
        let rec = pidfile::PidRecord::of(sid, sid).unwrap();
        pidfile::write(&pidfile::path(dir.path(), "orphan"), &rec).unwrap();
        // The keeper killed outright (it cleans up after its service otherwise): the shell dies
        // with it (its parent-death signal) and the two children are left to init.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(sid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        spawned.child.wait().await.unwrap();
        wait_until_10s("two orphans", || session_members(sid).len() == 2);
        assert_eq!(pidfile::verdict(&rec), pidfile::Verdict::LeaderGone);
        assert_eq!(pidfile::kill_leftovers(dir.path()).len(), 1);
        wait_until_10s("the orphans to be gone", || session_members(sid).is_empty());
    }
}
