//! Pidfiles (`run/NAME.pid`) and the clean-up of processes left over by a crashed run.
//!
//! A pidfile holds five lines: the service's pid, its start time (field 22 of
//! `/proc/PID/stat`, clock ticks since boot), the boot id, then the pid and start time of its
//! keeper, the leader of the service's session and process group. The first line alone is a
//! conventional pidfile. A three-line pidfile (written before services had keepers) names a
//! service that led its own session.
//!
//! Leftovers are killed only when they are provably ours: the recorded session leader still
//! runs with the recorded start time (pid reuse safety), or the leader is gone but processes of
//! its session remain in the same boot (a session id stays reserved while it has members, so
//! it cannot have been handed to another program meanwhile). Pidfiles from another boot, or
//! whose leader's pid now belongs to a different process, are removed without killing anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::os;

/// What a pidfile records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidRecord {
    /// The service's own process.
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: Option<String>,
    /// The leader of the service's session and process group (its keeper): the session id.
    pub leader: u32,
    pub leader_start_ticks: u64,
}

impl PidRecord {
    /// The record of a running service and its session leader, read from `/proc` now.
    pub(crate) fn of(pid: u32, leader: u32) -> Option<PidRecord> {
        Some(PidRecord {
            pid,
            start_ticks: os::process_start(pid)?,
            boot_id: os::boot_id(),
            leader,
            leader_start_ticks: os::process_start(leader)?,
        })
    }
}

/// `run_dir/NAME.pid`.
pub(crate) fn path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.pid"))
}

/// Writes a pidfile atomically (temporary file, then rename).
pub(crate) fn write(path: &Path, rec: &PidRecord) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        rec.pid,
        rec.start_ticks,
        rec.boot_id.as_deref().unwrap_or("-"),
        rec.leader,
        rec.leader_start_ticks
    );
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
    let (leader, leader_start_ticks) = match (lines.next(), lines.next()) {
        (None | Some(""), _) => (pid, start_ticks),
        (Some(l), Some(t)) => (l.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?),
        (Some(_), None) => return Err(bad()),
    };
    Ok(PidRecord { pid, start_ticks, boot_id, leader, leader_start_ticks })
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
    /// The recorded session leader runs with the recorded start time.
    Running,
    /// The leader is gone; members of its session may remain.
    LeaderGone,
    /// The pid belongs to another process now.
    PidReused,
    /// Recorded in another boot (or the boot is unknown): nothing to compare.
    OtherBoot,
}

/// Compares a record's session leader with the live system.
pub(crate) fn verdict(rec: &PidRecord) -> Verdict {
    let now_boot = os::boot_id();
    if rec.boot_id.is_none() || rec.boot_id != now_boot {
        return Verdict::OtherBoot;
    }
    match os::process_start(rec.leader) {
        Some(start) if start == rec.leader_start_ticks => Verdict::Running,
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
                let killed = os::kill_leftover(rec.leader, rec.leader_start_ticks);
                if killed > 0 {
                    log::warn!(
                        "killed {killed} process(es) left over by a previous run ({}: session {})",
                        path.display(),
                        rec.leader
                    );
                    pending.push((rec.leader, path));
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

    #[test]
    fn round_trip_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "data");
        assert!(p.ends_with("data.pid"));
        let rec = PidRecord {
            pid: 42,
            start_ticks: 123_456,
            boot_id: Some("abc".into()),
            leader: 41,
            leader_start_ticks: 123_455,
        };
        write(&p, &rec).unwrap();
        assert_eq!(read(&p).unwrap(), rec);
        assert_eq!(fs::read_to_string(&p).unwrap().lines().next(), Some("42"));
        let no_boot = PidRecord { boot_id: None, ..rec };
        write(&p, &no_boot).unwrap();
        assert_eq!(read(&p).unwrap(), no_boot);
        // A pidfile from before keepers: the service led its own session.
        fs::write(&p, "42\n123456\nabc\n").unwrap();
        let old = read(&p).unwrap();
        assert_eq!((old.leader, old.leader_start_ticks), (42, 123_456));
        for bad in ["x\n", "42\n123456\nabc\n41\n", "42\n123456\nabc\n41\nx\n"] {
            fs::write(&p, bad).unwrap();
            assert_eq!(read(&p).unwrap_err().kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        remove(&p);
        remove(&p);
        assert!(!p.exists());
    }

    #[test]
    fn start_time_check() {
        let me = std::process::id();
        let rec = PidRecord::of(me, me).unwrap();
        assert_eq!(verdict(&rec), Verdict::Running);
        let later = rec.leader_start_ticks + 1;
        assert_eq!(verdict(&PidRecord { leader_start_ticks: later, ..rec.clone() }), Verdict::PidReused);
        assert_eq!(verdict(&PidRecord { boot_id: Some("other".into()), ..rec.clone() }), Verdict::OtherBoot);
        assert_eq!(verdict(&PidRecord { leader: u32::MAX - 1, ..rec.clone() }), Verdict::LeaderGone);
        // Only the leader decides: the service's own pid may be gone already.
        assert_eq!(verdict(&PidRecord { pid: u32::MAX - 1, ..rec }), Verdict::Running);
    }
}
