//! Pidfiles (`run/NAME.pid`) and the clean-up of processes left over by a crashed run.
//!
//! A pidfile holds three lines: the pid, its start time (field 22 of `/proc/PID/stat`, clock
//! ticks since boot) and the boot id. The first line alone is a conventional pidfile.
//!
//! Leftovers are killed only when they are provably ours: the recorded leader still runs with
//! the recorded start time (pid reuse safety), or the leader is gone but processes of its
//! session remain in the same boot (a session id stays reserved while it has members, so it
//! cannot have been handed to another program meanwhile). Pidfiles from another boot, or whose
//! pid now belongs to a different process, are removed without killing anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::unix;

/// What a pidfile records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidRecord {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: Option<String>,
}

impl PidRecord {
    /// The record of a running process, read from `/proc` now.
    pub(crate) fn of(pid: u32) -> Option<PidRecord> {
        Some(PidRecord { pid, start_ticks: unix::process_start_ticks(pid)?, boot_id: unix::boot_id() })
    }
}

/// `run_dir/NAME.pid`.
pub(crate) fn path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.pid"))
}

/// Writes a pidfile atomically (temporary file, then rename).
pub(crate) fn write(path: &Path, rec: &PidRecord) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    let text = format!("{}\n{}\n{}\n", rec.pid, rec.start_ticks, rec.boot_id.as_deref().unwrap_or("-"));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// Reads a pidfile.
pub(crate) fn read(path: &Path) -> io::Result<PidRecord> {
    let text = fs::read_to_string(path)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("malformed pidfile {}", path.display()));
    let mut lines = text.lines().map(str::trim);
    let pid = lines.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
    let start_ticks = lines.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
    let boot_id = lines.next().filter(|l| !l.is_empty() && *l != "-").map(str::to_owned);
    Ok(PidRecord { pid, start_ticks, boot_id })
}

/// Removes a pidfile; a missing one is fine.
pub(crate) fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}

/// How a recorded process relates to what runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The recorded leader runs with the recorded start time.
    Running,
    /// The leader is gone; members of its session may remain.
    LeaderGone,
    /// The pid belongs to another process now.
    PidReused,
    /// Recorded in another boot (or the boot is unknown): nothing to compare.
    OtherBoot,
}

/// Compares a record with the live system.
pub(crate) fn verdict(rec: &PidRecord) -> Verdict {
    let now_boot = unix::boot_id();
    if rec.boot_id.is_none() || rec.boot_id != now_boot {
        return Verdict::OtherBoot;
    }
    match unix::stat(rec.pid) {
        Some(st) if st.state == 'Z' => Verdict::LeaderGone,
        Some(st) if st.start_ticks == rec.start_ticks => Verdict::Running,
        Some(_) => Verdict::PidReused,
        None => Verdict::LeaderGone,
    }
}

/// Kills the leftovers recorded in `run_dir/*.pid` (SIGKILL to the session) and returns the
/// sessions to wait for and the pidfiles to remove once they are empty. Pidfiles that do not
/// name leftovers are removed at once.
pub(crate) fn kill_leftovers(run_dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(dir) = fs::read_dir(run_dir) else { return Vec::new() };
    let mut pending = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pid") {
            continue;
        }
        let rec = match read(&path) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("ignoring {}: {e}", path.display());
                remove(&path);
                continue;
            }
        };
        match verdict(&rec) {
            Verdict::Running | Verdict::LeaderGone => {
                let killed = unix::kill_session(rec.pid);
                if killed > 0 {
                    log::warn!(
                        "killed {killed} process(es) left over by a previous run ({}: session {})",
                        path.display(),
                        rec.pid
                    );
                    pending.push((rec.pid, path));
                } else {
                    remove(&path);
                }
            }
            v @ (Verdict::PidReused | Verdict::OtherBoot) => {
                log::info!("stale pidfile {} ({v:?}); nothing to stop", path.display());
                remove(&path);
            }
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use gateway_core::ServiceName;
    use registry::ServiceConfig;
    use std::time::{Duration, Instant};

    #[test]
    fn round_trip_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "data");
        assert!(p.ends_with("data.pid"));
        let rec = PidRecord { pid: 42, start_ticks: 123_456, boot_id: Some("abc".into()) };
        write(&p, &rec).unwrap();
        assert_eq!(read(&p).unwrap(), rec);
        assert_eq!(fs::read_to_string(&p).unwrap().lines().next(), Some("42"));
        let no_boot = PidRecord { boot_id: None, ..rec };
        write(&p, &no_boot).unwrap();
        assert_eq!(read(&p).unwrap(), no_boot);
        fs::write(&p, "x\n").unwrap();
        assert_eq!(read(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        remove(&p);
        remove(&p);
        assert!(!p.exists());
    }

    #[test]
    fn start_time_check() {
        let me = std::process::id();
        let rec = PidRecord::of(me).unwrap();
        assert_eq!(verdict(&rec), Verdict::Running);
        assert_eq!(verdict(&PidRecord { start_ticks: rec.start_ticks + 1, ..rec.clone() }), Verdict::PidReused);
        assert_eq!(verdict(&PidRecord { boot_id: Some("other".into()), ..rec.clone() }), Verdict::OtherBoot);
        assert_eq!(verdict(&PidRecord { pid: u32::MAX - 1, ..rec }), Verdict::LeaderGone);
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn leftovers_of_a_crashed_run_are_killed_only_when_ours() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ServiceConfig::with_defaults(ServiceName::parse("left").unwrap(), 1);
        cfg.command = Some(vec!["sh".into(), "-c".into(), "sleep 300 & sleep 300 & wait".into()]);
        let mut spawned = unix::spawn(&cfg).unwrap();
        let pid = spawned.pid;
        wait_until("the session to have 3 members", || unix::session_members(pid).len() == 3);

        // A record whose start time does not match is left alone.
        let rec = PidRecord::of(pid).unwrap();
        let wrong = path(dir.path(), "wrong");
        write(&wrong, &PidRecord { start_ticks: rec.start_ticks + 7, ..rec.clone() }).unwrap();
        assert!(kill_leftovers(dir.path()).is_empty());
        assert!(!wrong.exists(), "a stale pidfile is removed");
        assert_eq!(unix::session_members(pid).len(), 3, "nothing was killed");

        // The right record kills the whole session, grandchildren included.
        let good = path(dir.path(), "left");
        write(&good, &rec).unwrap();
        let pending = kill_leftovers(dir.path());
        assert_eq!(pending, [(pid, good.clone())]);
        spawned.child.wait().await.unwrap();
        wait_until("the session to be empty", || unix::session_members(pid).is_empty());
    }

    #[tokio::test]
    async fn grandchildren_are_killed_when_the_leader_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ServiceConfig::with_defaults(ServiceName::parse("orphan").unwrap(), 1);
        cfg.command = Some(vec!["sh".into(), "-c".into(), "sleep 300 & sleep 300 & exit 0".into()]);
        let mut spawned = unix::spawn(&cfg).unwrap();
        let pid = spawned.pid;
        let rec = PidRecord::of(pid).unwrap();
        write(&path(dir.path(), "orphan"), &rec).unwrap();
        spawned.child.wait().await.unwrap();
        wait_until("two orphans", || unix::session_members(pid).len() == 2);
        assert_eq!(verdict(&rec), Verdict::LeaderGone);
        assert_eq!(kill_leftovers(dir.path()).len(), 1);
        wait_until("the orphans to be gone", || unix::session_members(pid).is_empty());
    }
}
