//! Integration tests of the supervisor with real processes: the Python fixture service in
//! `tests/fixtures/service.py`, real ports, real signals, real `/proc` (Unix; the Windows
//! layer has its own tests in `os/windows.rs` and `tests/windows.rs`).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use gateway_core::{ServiceKind, ServiceName, ServiceStatus, SubState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use registry::{
    BackoffConfig, PortConflictPolicy, Registry, RestartPolicy, ServiceChange, ServiceConfig, ServiceEntry,
};
use supervisor::{HealthConfig, Supervisor, SupervisorConfig, SupervisorError, SupervisorHandle};
use tokio::sync::broadcast;

const DEADLINE: Duration = Duration::from_secs(20);

// ---- harness ---------------------------------------------------------------------------------

#[path = "../../../tests/support/ports.rs"]
mod ports;

/// A port no other caller in this process has been given (see `tests/support/ports.rs`).
fn free_port() -> u16 {
    ports::unique_port().unwrap()
}

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service.py").to_string_lossy().into_owned()
}

/// The real Python interpreter (not a version-manager shim that forks helpers before it
/// execs Python, which would blur "exactly one process").
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is installed");
        let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        if path.is_empty() { "python3".to_owned() } else { path }
    })
}

fn fixture_command(name: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let mut cmd = vec![python().to_owned(), fixture(), "--name".into(), name.into(), "--port".into(), port.to_string()];
    cmd.extend(extra.iter().map(|s| (*s).to_owned()));
    cmd
}

fn service(name: &str, extra: &[&str]) -> ServiceConfig {
    let port = free_port();
    let mut c = ServiceConfig::with_defaults(ServiceName::parse(name).unwrap(), port);
    c.display_name = format!("{name} display");
    c.command = Some(fixture_command(name, port, extra));
    c.stop_timeout = Duration::from_millis(3000);
    c.backoff = BackoffConfig {
        first: Duration::from_millis(0),
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_millis(1000),
        jitter: 0.0,
        reset_after: Duration::from_millis(60_000),
    };
    c.max_failures = 100;
    c.failure_window = Duration::from_millis(60_000);
    c
}

fn health() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        failure_threshold: 2,
        startup_timeout: Duration::from_millis(10_000),
        startup_probe_interval: Duration::from_millis(25),
    }
}

struct Harness {
    handle: SupervisorHandle,
    registry: Registry,
    dir: tempfile::TempDir,
    changes: broadcast::Receiver<ServiceChange>,
    seen: Vec<ServiceChange>,
}

impl Harness {
    fn new(services: Vec<ServiceConfig>) -> Harness {
        Harness::with(services, health(), tempfile::tempdir().unwrap())
    }

    fn with(services: Vec<ServiceConfig>, health: HealthConfig, dir: tempfile::TempDir) -> Harness {
        let registry = Registry::new(&services);
        let changes = registry.subscribe();
        let handle =
            Supervisor::start(SupervisorConfig { health, data_dir: dir.path().to_owned() }, registry.clone()).unwrap();
        Harness { handle, registry, dir, changes, seen: Vec::new() }
    }

    fn entry(&self, name: &str) -> ServiceEntry {
        self.registry.entry(name).unwrap()
    }

    fn port(&self, name: &str) -> u16 {
        self.registry.config(name).unwrap().port
    }

    async fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&ServiceEntry) -> bool) -> ServiceEntry {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let e = self.entry(name);
            if pred(&e) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name} to be {what}: {e:#?}\nlogs: {:#?}",
                self.handle.logs(name, 20)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn online(&self, name: &str) -> ServiceEntry {
        self.wait_for(name, "online", |e| e.status == ServiceStatus::Online).await
    }

    /// Forgets the changes published so far.
    fn forget_changes(&mut self) {
        self.changes();
        self.seen.clear();
    }

    /// Every change published so far.
    fn changes(&mut self) -> &[ServiceChange] {
        loop {
            match self.changes.try_recv() {
                Ok(c) => self.seen.push(c),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Shuts down and checks that nothing is left: no fixture process, no zombie child.
    async fn finish(self, names: &[&str]) {
        let ports: Vec<(String, u16)> = names.iter().map(|n| ((*n).to_owned(), self.port(n))).collect();
        self.handle.shutdown().await;
        for (name, port) in &ports {
            assert!(fixture_pids(name, *port).is_empty(), "{name} still runs after shutdown");
            assert!(!self.dir.path().join(format!("run/{name}.pid")).exists(), "{name}'s pidfile is left");
        }
        no_zombie_children().await;
    }
}

// ---- /proc helpers ---------------------------------------------------------------------------

/// (state, ppid, pgrp, session) of a process.
fn proc_stat(pid: u32) -> Option<(char, u32, u32, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f[0].chars().next()?, f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, ..)| state != 'Z')
}

/// Live fixture processes serving `name` on `port`. A scan of `/proc` is not a snapshot (a
/// process seen early may be dead by the time a later one is seen), so every candidate is
/// checked again after the scan: what is counted was alive at the same moment.
fn fixture_pids(name: &str, port: u16) -> Vec<u32> {
    let needle = format!("service.py --name {name} --port {port}");
    let candidates: Vec<u32> = all_pids().into_iter().filter(|p| alive(*p) && cmdline(*p).contains(&needle)).collect();
    candidates.into_iter().filter(|p| alive(*p)).collect()
}

/// Live processes of a service's process group other than the service itself and its keeper
/// (the group leader, the service's parent).
fn group_members(service: u32) -> Vec<u32> {
    let Some((_, keeper, pgid, _)) = proc_stat(service) else { return Vec::new() };
    assert_eq!(keeper, pgid, "the service's parent leads its group");
    all_pids()
        .into_iter()
        .filter(|p| ![service, pgid].contains(p) && proc_stat(*p).is_some_and(|(s, _, g, _)| s != 'Z' && g == pgid))
        .collect()
}

async fn no_zombie_children() {
    let me = std::process::id();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let zombies: Vec<u32> = all_pids()
            .into_iter()
            .filter(|p| proc_stat(*p).is_some_and(|(state, ppid, ..)| state == 'Z' && ppid == me))
            .collect();
        if zombies.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "zombie children of the test process: {zombies:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
}

fn parse_rfc3339(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    SystemTime::from(t)
}

async fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn start_online_then_kill9_is_noticed_at_once_and_never_runs_twice() {
    let svc = service("alpha", &[]);
    let port = svc.port;
    // Monitoring probes are far apart: only the exit notification can bring it back quickly.
    let h = Harness::with(
        vec![svc],
        HealthConfig { interval: Duration::from_millis(600_000), ..health() },
        tempfile::tempdir().unwrap(),
    );

    let started = h.handle.start_service("alpha").await.unwrap();
    assert_eq!(started.status, ServiceStatus::Starting);
    assert_eq!(started.kind, ServiceKind::Managed);
    let first = h.online("alpha").await;
    let pid = first.pid.unwrap();
    assert_eq!(fixture_pids("alpha", port), [pid]);
    assert!(first.last_check.as_ref().is_some_and(|c| c.error.is_none()));

    // The pidfile records pid and start time.
    let pidfile = fs::read_to_string(h.dir.path().join("run/alpha.pid")).unwrap();
    assert_eq!(pidfile.lines().next(), Some(pid.to_string().as_str()));

    // Starting twice is refused, with the display name for the message.
    match h.handle.start_service("alpha").await {
        Err(e @ SupervisorError::AlreadyRunning { .. }) => {
            assert_eq!(e.problem(), gateway_core::Problem::AlreadyRunning { service: "alpha display".into() })
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert!(matches!(h.handle.start_service("nope").await, Err(SupervisorError::UnknownService(_))));

    // Watch the number of fixture processes while it is killed and restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most) = (stop.clone(), most.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(fixture_pids("alpha", port).len(), Ordering::Relaxed);
            }
        })
    };
    let killed_at = Instant::now();
    sigkill(pid);
    let again = h
        .wait_for("alpha", "online with a new pid", |e| {
            e.status == ServiceStatus::Online && e.pid.is_some_and(|p| p != pid)
        })
        .await;
    let recovery = killed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(most.load(Ordering::Relaxed) <= 1, "two copies ran at once");
    assert_eq!(fixture_pids("alpha", port), [again.pid.unwrap()]);
    assert_eq!(again.restarts, 1);
    let exit = again.last_exit.unwrap();
    assert_eq!((exit.code, exit.signal.as_deref()), (None, Some("SIGKILL")));
    assert!(recovery < Duration::from_secs(10), "restart took {recovery:?}");
    eprintln!("kill -9 -> online again in {recovery:?}");

    // Output was captured across both instances, in the ring and in the log file.
    let lines = h.handle.logs("alpha", 100).unwrap();
    let starts = lines.iter().filter(|l| l.line.starts_with("fixture alpha starting") && l.stream == "stdout").count();
    assert_eq!(starts, 2, "{lines:#?}");
    assert_eq!(h.handle.logs("alpha", 1).unwrap().len(), 1);
    assert!(h.handle.logs("nope", 1).is_err());
    poll("the log file", || {
        fs::read_to_string(h.dir.path().join("logs/alpha.log"))
            .is_ok_and(|t| t.matches(" stdout fixture alpha starting").count() == 2)
    })
    .await;

    let stopped = h.handle.stop_service("alpha").await.unwrap();
    assert_eq!(stopped.status, ServiceStatus::Stopped);
    assert_eq!(stopped.pid, None);
    assert!(fixture_pids("alpha", port).is_empty(), "stopped means the group is empty");
    assert!(matches!(h.handle.stop_service("alpha").await, Err(SupervisorError::AlreadyStopped { .. })));
    h.finish(&["alpha"]).await;
}

#[tokio::test]
async fn crash_during_startup_reports_exit_code_and_last_lines() {
    let mut svc = service("crashy", &["--exit-after-ms", "0", "--exit-code", "3"]);
    svc.restart = RestartPolicy::Never;
    let h = Harness::new(vec![svc]);
    h.handle.start_service("crashy").await.unwrap();
    let e = h.wait_for("crashy", "error", |e| e.status == ServiceStatus::Error).await;
    let exit = e.last_exit.clone().unwrap();
    assert_eq!((exit.code, exit.signal), (Some(3), None));
    let error = e.last_error.clone().unwrap();
    assert!(error.contains("exit code 3"), "{error}");
    assert!(error.contains("[stderr] failing before listening"), "{error}");
    assert!(error.contains("[stdout] fixture crashy starting"), "{error}");
    assert_eq!(e.sub_state, None, "restart = never: no backoff");
    assert_eq!(e.pid, None);
    // It can be started again by hand (and fails again).
    h.handle.start_service("crashy").await.unwrap();
    h.wait_for("crashy", "error again", |e| e.status == ServiceStatus::Error && e.last_exit.is_some()).await;
    h.finish(&["crashy"]).await;
}

#[tokio::test]
async fn hung_health_goes_offline_after_the_threshold_and_is_restarted() {
    let svc = service("hung", &["--hang-health-after-ms", "400", "--ignore-sigterm"]);
    let mut h = Harness::new(vec![svc]);
    h.handle.start_service("hung").await.unwrap();
    let first = h.online("hung").await;
    let pid = first.pid.unwrap();
    let again = h
        .wait_for("hung", "restarted and online", |e| {
            e.status == ServiceStatus::Online && e.restarts >= 1 && e.pid.is_some_and(|p| p != pid)
        })
        .await;
    assert!(!alive(pid), "the hung instance is gone");
    let changes = h.changes();
    let offline = changes.iter().find(|c| c.entry.status == ServiceStatus::Offline && c.entry.sub_state.is_none());
    let offline = offline.expect("went offline first");
    assert_eq!(offline.entry.consecutive_failures, 2, "threshold is 2");
    assert!(offline.entry.last_check.as_ref().unwrap().error.is_some());
    // It ignored SIGTERM, so it was killed after stop_timeout_ms.
    assert!(changes.iter().any(|c| c.entry.sub_state == Some(SubState::Stopping)));
    assert!(changes.iter().any(|c| c.entry.sub_state == Some(SubState::Backoff)));
    assert!(again.last_error.unwrap().contains("unhealthy"));
    h.finish(&["hung"]).await;
}

#[tokio::test]
async fn a_service_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    let mut svc = service("stubborn", &["--ignore-sigterm"]);
    svc.stop_timeout = Duration::from_millis(400);
    let port = svc.port;
    let h = Harness::new(vec![svc]);
    h.handle.start_service("stubborn").await.unwrap();
    let pid = h.online("stubborn").await.pid.unwrap();
    let t = Instant::now();
    let stopped = h.handle.stop_service("stubborn").await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(400), "SIGKILL came early: {took:?}");
    assert_eq!(stopped.status, ServiceStatus::Stopped);
    assert_eq!(stopped.last_exit.unwrap().signal.as_deref(), Some("SIGKILL"));
    assert!(!alive(pid));
    assert!(fixture_pids("stubborn", port).is_empty());
    h.finish(&["stubborn"]).await;
}

#[tokio::test]
async fn grandchildren_die_with_their_service() {
    let svc = service("parent", &["--spawn-child"]);
    let h = Harness::new(vec![svc]);
    h.handle.start_service("parent").await.unwrap();
    let pid = h.online("parent").await.pid.unwrap();
    poll("the grandchild", || group_members(pid).len() == 1).await;
    let grandchild = group_members(pid)[0];
    assert!(cmdline(grandchild).starts_with("sleep 1000"));

    // The leader crashes: the orphaned grandchild is killed before the restart.
    sigkill(pid);
    let new_pid = h
        .wait_for("parent", "restarted", |e| e.status == ServiceStatus::Online && e.pid.is_some_and(|p| p != pid))
        .await
        .pid
        .unwrap();
    assert!(!alive(grandchild), "the crashed leader's grandchild survived");
    poll("the new grandchild", || group_members(new_pid).len() == 1).await;
    let grandchild = group_members(new_pid)[0];

    // A stop returns only once the whole group is gone.
    h.handle.stop_service("parent").await.unwrap();
    assert!(!alive(new_pid));
    assert!(!alive(grandchild), "the grandchild survived the stop");
    h.finish(&["parent"]).await;
}

#[tokio::test]
async fn a_foreign_socket_on_the_port_is_a_port_conflict_naming_its_owner() {
    let mut svc = service("clash", &[]);
    svc.restart = RestartPolicy::Always;
    let holder = TcpListener::bind(("127.0.0.1", svc.port)).unwrap();
    let port = svc.port;
    let h = Harness::new(vec![svc]);
    let e = h.handle.start_service("clash").await.unwrap();
    assert_eq!(e.status, ServiceStatus::Error);
    assert_eq!(e.sub_state, Some(SubState::PortConflict));
    let error = e.last_error.unwrap();
    assert!(error.contains(&format!("pid {}", std::process::id())), "{error}");
    assert!(error.contains(&format!("port {port}")), "{error}");
    assert!(fixture_pids("clash", port).is_empty(), "nothing was spawned");
    assert_eq!(e.next_restart_at, None, "no restart loop on a port conflict");

    // The operator frees the port and starts again.
    drop(holder);
    h.handle.start_service("clash").await.unwrap();
    let e = h.online("clash").await;
    assert_eq!(e.sub_state, None);
    h.finish(&["clash"]).await;
}

#[tokio::test]
async fn adopt_mode_takes_over_monitoring_of_a_running_instance() {
    let mut svc = service("adoptee", &[]);
    svc.on_port_conflict = PortConflictPolicy::Adopt;
    let port = svc.port;
    let mut outside = std::process::Command::new(python())
        .args(&fixture_command("adoptee", port, &[])[1..])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    poll("the outside instance to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;

    let h = Harness::new(vec![svc]);
    h.handle.start_all().await;
    let e = h.wait_for("adoptee", "adopted", |e| e.sub_state == Some(SubState::Adopted)).await;
    assert_eq!(e.status, ServiceStatus::Online);
    assert_eq!(e.kind, ServiceKind::Adopted);
    assert_eq!(e.pid, Some(outside.id()));
    assert!(matches!(h.handle.stop_service("adoptee").await, Err(SupervisorError::NotManaged { .. })));
    assert!(matches!(h.handle.start_service("adoptee").await, Err(SupervisorError::NotManaged { .. })));
    assert!(matches!(h.handle.restart_service("adoptee").await, Err(SupervisorError::NotManaged { .. })));
    // Monitored: probes keep coming.
    let checked = e.last_check.unwrap().at;
    h.wait_for("adoptee", "probed again", |e| e.last_check.as_ref().is_some_and(|c| c.at != checked)).await;

    // Never signalled, not even at shutdown.
    h.handle.shutdown().await;
    assert!(alive(outside.id()), "the adopted instance was stopped");
    assert_eq!(fixture_pids("adoptee", port), [outside.id()]);
    outside.kill().unwrap();
    outside.wait().unwrap();
    no_zombie_children().await;
}

#[tokio::test]
async fn crash_loop_with_growing_delays_then_manual_start_resets_it() {
    let mut svc = service("loopy", &["--exit-after-ms", "0", "--exit-code", "2"]);
    svc.backoff = BackoffConfig {
        first: Duration::from_millis(0),
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_millis(400),
        jitter: 0.0,
        reset_after: Duration::from_millis(60_000),
    };
    svc.max_failures = 4;
    let mut h = Harness::new(vec![svc]);
    h.handle.start_service("loopy").await.unwrap();
    let e = h.wait_for("loopy", "in a crash loop", |e| e.sub_state == Some(SubState::CrashLoop)).await;
    assert_eq!(e.status, ServiceStatus::Error);
    assert!(e.next_restart_at.is_some());
    assert!(e.last_error.unwrap().starts_with("crash loop: 4 failures"));

    // Delays as announced: next_restart_at minus the time of the change.
    let delays: Vec<i64> = h
        .changes()
        .iter()
        .filter(|c| c.status_changed() && matches!(c.entry.sub_state, Some(SubState::Backoff | SubState::CrashLoop)))
        .map(|c| {
            let at = parse_rfc3339(c.entry.next_restart_at.as_deref().unwrap());
            match at.duration_since(c.at) {
                Ok(d) => i64::try_from(d.as_millis()).unwrap(),
                Err(e) => -i64::try_from(e.duration().as_millis()).unwrap(),
            }
        })
        .take(4)
        .collect();
    let want = [0, 100, 200, 400];
    assert_eq!(delays.len(), 4, "{delays:?}");
    for (got, want) in delays.iter().zip(want) {
        assert!((got - want).abs() <= 15, "delays {delays:?}, want about {want:?}");
    }
    let restarts_before = h.entry("loopy").restarts;
    h.wait_for("loopy", "restarted at the cap", |e| e.restarts > restarts_before).await;

    // A manual start resets the sequence and the crash loop: the next failure waits first_ms.
    h.forget_changes();
    loop {
        match h.handle.start_service("loopy").await {
            Ok(e) => {
                assert_eq!(e.sub_state, None, "manual start clears the crash loop");
                break;
            }
            // It may be between spawn and crash right now.
            Err(SupervisorError::AlreadyRunning { .. }) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let e = h.wait_for("loopy", "back in backoff", |e| e.sub_state == Some(SubState::Backoff)).await;
    assert_eq!(e.status, ServiceStatus::Error, "a startup crash is an error");

    // A stop during backoff cancels the pending restart.
    let mut svc_stopped = false;
    while !svc_stopped {
        match h.handle.stop_service("loopy").await {
            Ok(e) => {
                assert_eq!(e.status, ServiceStatus::Stopped);
                svc_stopped = true;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let restarts = h.entry("loopy").restarts;
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        let e = h.entry("loopy");
        assert_eq!((e.status, e.restarts), (ServiceStatus::Stopped, restarts), "restarted after a stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.finish(&["loopy"]).await;
}

#[tokio::test]
async fn dependency_order_at_start_and_shutdown_and_nothing_left_behind() {
    let a = service("base", &["--spawn-child"]);
    let mut b = service("middle", &[]);
    b.depends_on = vec![ServiceName::parse("base").unwrap()];
    let mut c = service("top", &["--ignore-sigterm"]);
    c.depends_on = vec![ServiceName::parse("middle").unwrap()];
    c.stop_timeout = Duration::from_millis(300);
    let mut manual = service("manual", &[]);
    manual.autostart = false;
    // An external service: no command, nothing listening.
    let mut ext = ServiceConfig::with_defaults(ServiceName::parse("remote").unwrap(), free_port());
    ext.display_name = "Remote".into();
    let mut h = Harness::new(vec![c, b, a, manual, ext]);

    h.handle.start_all().await;
    for name in ["base", "middle", "top"] {
        h.online(name).await;
    }
    h.wait_for("remote", "offline", |e| e.status == ServiceStatus::Offline).await;
    assert_eq!(h.entry("remote").kind, ServiceKind::External);
    assert!(matches!(h.handle.start_service("remote").await, Err(SupervisorError::NotManaged { .. })));
    assert_eq!(h.entry("manual").status, ServiceStatus::Stopped, "autostart = false");

    // Each dependent was spawned only after its dependency was online.
    let order: Vec<(String, ServiceStatus)> =
        h.changes().iter().filter(|c| c.status_changed()).map(|c| (c.entry.name.clone(), c.entry.status)).collect();
    let index = |name: &str, status: ServiceStatus| {
        order
            .iter()
            .position(|(n, s)| n == name && *s == status)
            .unwrap_or_else(|| panic!("{name} {status}: {order:?}"))
    };
    assert!(index("base", ServiceStatus::Online) < index("middle", ServiceStatus::Starting), "{order:?}");
    assert!(index("middle", ServiceStatus::Online) < index("top", ServiceStatus::Starting), "{order:?}");

    let pids: BTreeMap<&str, u32> =
        ["base", "middle", "top"].into_iter().map(|n| (n, h.entry(n).pid.unwrap())).collect();
    let grandchild = {
        let base = pids["base"];
        poll("base's grandchild", || group_members(base).len() == 1).await;
        group_members(base)[0]
    };

    h.forget_changes();
    let names = ["base", "middle", "top", "manual"];
    let ports: Vec<(&str, u16)> = names.iter().map(|n| (*n, h.port(n))).collect();
    h.handle.shutdown().await;
    for (name, port) in ports {
        assert!(fixture_pids(name, port).is_empty(), "{name} survived shutdown");
        assert_eq!(h.entry(name).status, ServiceStatus::Stopped);
    }
    assert!(pids.values().all(|p| !alive(*p)));
    assert!(!alive(grandchild));
    // Reverse dependency order.
    let stopped: Vec<String> = h
        .changes()
        .iter()
        .filter(|c| c.status_changed() && c.entry.status == ServiceStatus::Stopped)
        .map(|c| c.entry.name.clone())
        .collect();
    assert_eq!(stopped, ["top", "middle", "base"]);
    assert!(matches!(h.handle.start_service("base").await, Err(SupervisorError::ShutDown)));
    let run = fs::read_dir(h.dir.path().join("run")).unwrap().count();
    assert_eq!(run, 0, "pidfiles left behind");
    no_zombie_children().await;
}

#[tokio::test]
async fn start_all_kills_the_leftovers_of_a_crashed_run() {
    // A "previous run": a session leader with a grandchild, recorded in a pidfile.
    let mut leftover = std::process::Command::new(python())
        .args(["-c", "import os, subprocess, time; os.setsid(); subprocess.Popen(['sleep', '1000']); time.sleep(1000)"])
        .spawn()
        .unwrap();
    let pid = leftover.id();
    let members = || {
        all_pids()
            .into_iter()
            .filter(|p| proc_stat(*p).is_some_and(|(s, _, _, sid)| s != 'Z' && sid == pid))
            .collect::<Vec<u32>>()
    };
    poll("the leftover session", || members().len() == 2).await;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start_ticks: u64 = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("run")).unwrap();
    fs::write(dir.path().join("run/ghost.pid"), format!("{pid}\n{start_ticks}\n{}\n", boot_id.trim())).unwrap();
    // A pidfile whose start time does not match is only removed.
    let bystander = std::process::Command::new("sleep").arg("1000").spawn();
    let mut bystander = bystander.unwrap();
    fs::write(dir.path().join("run/other.pid"), format!("{}\n1\n{}\n", bystander.id(), boot_id.trim())).unwrap();

    let svc = service("fresh", &[]);
    let h = Harness::with(vec![svc], health(), dir);
    h.handle.start_all().await;
    leftover.wait().unwrap();
    poll("the leftover session to be gone", || members().is_empty()).await;
    assert!(alive(bystander.id()), "an unrelated process was killed");
    assert!(!h.dir.path().join("run/ghost.pid").exists());
    assert!(!h.dir.path().join("run/other.pid").exists());
    h.online("fresh").await;
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    h.finish(&["fresh"]).await;
}

#[tokio::test]
async fn restart_and_passive_probe() {
    let svc = service("again", &[]);
    let mut h = Harness::with(
        vec![svc],
        HealthConfig { interval: Duration::from_millis(600_000), ..health() },
        tempfile::tempdir().unwrap(),
    );
    // Restart of a stopped service just starts it.
    let e = h.handle.restart_service("again").await.unwrap();
    assert_eq!((e.status, e.restarts), (ServiceStatus::Starting, 0));
    let pid = h.online("again").await.pid.unwrap();
    let e = h.handle.restart_service("again").await.unwrap();
    assert_eq!(e.status, ServiceStatus::Starting);
    assert_eq!(e.restarts, 1);
    assert!(!alive(pid));
    let online = h.online("again").await;
    let checked = online.last_check.unwrap().at;
    // With monitoring far apart, only a passive check produces a new probe.
    h.forget_changes();
    for _ in 0..50 {
        h.handle.probe_now("again");
    }
    h.handle.probe_now("unknown-service");
    h.wait_for("again", "probed", |e| e.last_check.as_ref().is_some_and(|c| c.at != checked)).await;
    let probes = h.changes().iter().filter(|c| c.entry.name == "again").count();
    assert!(probes <= 2, "a burst of passive checks is coalesced ({probes} probes)");
    h.finish(&["again"]).await;
}

#[tokio::test]
async fn a_reload_restarts_only_what_changed_and_keeps_every_other_pid() {
    let (same, tuned, changed, gone) =
        (service("same", &[]), service("tuned", &[]), service("changed", &[]), service("gone", &[]));
    let h = Harness::new(vec![same.clone(), tuned.clone(), changed.clone(), gone.clone()]);
    for name in ["same", "tuned", "changed", "gone"] {
        h.handle.start_service(name).await.unwrap();
    }
    let mut pids = BTreeMap::new();
    for name in ["same", "tuned", "changed", "gone"] {
        pids.insert(name, h.online(name).await.pid.unwrap());
    }
    let old = vec![same.clone(), tuned.clone(), changed.clone(), gone.clone()];
    let mut tuned2 = tuned.clone();
    tuned2.request_timeout = Duration::from_millis(1234);
    tuned2.routes = vec!["tunes".into()];
    let mut changed2 = changed.clone();
    changed2.env.insert("RELOADED".into(), "1".into());
    let added = service("added", &[]);
    let new = vec![same.clone(), tuned2, changed2, added.clone()];
    let plan = registry::ReloadPlan::between(&old, &new);
    assert_eq!(
        (plan.updated.as_slice(), plan.restarted.as_slice()),
        (&["tuned".to_owned()][..], &["changed".to_owned()][..])
    );
    h.handle.reload(new.clone(), health(), plan).await;

    assert_eq!(h.entry("same").pid, Some(pids["same"]), "an unchanged service keeps its process");
    assert_eq!(h.entry("tuned").pid, Some(pids["tuned"]), "a service updated in place keeps its process");
    assert_eq!(
        h.registry.route("tunes").unwrap().request_timeout,
        Duration::from_millis(1234),
        "its new routes and timeout apply"
    );
    let restarted = h.online("changed").await;
    assert_ne!(restarted.pid, Some(pids["changed"]), "a changed environment restarts it");
    assert_eq!(restarted.restarts, 1);
    assert!(!alive(pids["changed"]));
    assert!(h.registry.entry("gone").is_none(), "a removed service is forgotten");
    assert!(!alive(pids["gone"]), "and stopped");
    assert!(matches!(h.handle.start_service("gone").await, Err(SupervisorError::UnknownService(_))));
    h.online("added").await;
    // The added service is supervised like the others: killed, it comes back.
    let pid = h.entry("added").pid.unwrap();
    sigkill(pid);
    h.wait_for("added", "online again", |e| e.status == ServiceStatus::Online && e.pid.is_some_and(|p| p != pid)).await;
    assert!(!h.handle.logs("added", 10).unwrap().is_empty(), "its output is captured");
    h.finish(&["same", "tuned", "changed", "added"]).await;
}
