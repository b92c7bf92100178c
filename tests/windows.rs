//! Black-box tests of supervision on Windows (SPEC §7, §12): the real `orchestrator.exe`
//! supervising real simulated services, each in its own job object with a hidden console of
//! its own. Processes are observed and ended through Win32 (`OpenProcess`, `TerminateProcess`).
//!
//! CI runs this suite under Wine (`tests/wine/`); where Wine does not behave as Windows does, the
//! test's name says so and `docs/OPERATIONS.md` ("Windows") lists the gap.
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::windows::io::{AsRawHandle as _, FromRawHandle as _, OwnedHandle};
use std::time::{Duration, Instant};

use common::{FAST, Services, TestApp, eventually, free_port, one_service};
use serde_json::Value;
use windows_sys::Win32::Foundation::WAIT_TIMEOUT;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{
    OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, TerminateProcess,
    WaitForSingleObject,
};

/// Generous: Wine starts processes far more slowly than Windows does.
const LONG: Duration = Duration::from_secs(60);

/// An open handle to process `pid` with `access`, or `None` when there is no such process.
#[allow(unsafe_code)]
fn open_process(pid: u32, access: u32) -> Option<OwnedHandle> {
    // SAFETY: OpenProcess takes no pointers; a null result (no such process, or no access) is
    // checked before the handle is used.
    let raw = unsafe { OpenProcess(access, 0, pid) };
    // SAFETY: a non-null result is an open handle that nothing else owns.
    (!raw.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// Whether process `pid` exists and has not ended (a process object kept alive by someone's
/// handle after its exit does not count).
#[allow(unsafe_code)]
fn running(pid: u32) -> bool {
    let Some(process) = open_process(pid, PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION) else {
        return false;
    };
    // SAFETY: a valid process handle opened with SYNCHRONIZE; a zero timeout only polls.
    unsafe { WaitForSingleObject(process.as_raw_handle(), 0) == WAIT_TIMEOUT }
}

/// Ends process `pid` at once, as Task Manager's "End task" does (the equivalent of kill -9).
#[allow(unsafe_code)]
fn terminate(pid: u32) {
    let process = open_process(pid, PROCESS_TERMINATE).unwrap_or_else(|| panic!("cannot open process {pid}"));
    // SAFETY: a valid process handle opened with PROCESS_TERMINATE.
    let ok = unsafe { TerminateProcess(process.as_raw_handle(), 1) };
    assert_ne!(ok, 0, "TerminateProcess({pid}): {}", std::io::Error::last_os_error());
}

/// Whether this runs under Wine (its ntdll exports `wine_get_version`).
#[allow(unsafe_code)]
fn under_wine() -> bool {
    let ntdll: Vec<u16> = "ntdll.dll".encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated module name; ntdll is loaded in every process.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    // SAFETY: a module handle from above and a NUL-terminated export name.
    !module.is_null() && unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }.is_some()
}

fn pid_of(entry: &Value) -> u32 {
    u32::try_from(entry["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {entry}"))).unwrap()
}

/// Waits until no process of `pids` runs.
async fn all_gone(what: &str, pids: &[u32]) {
    eventually(what, LONG, || async { pids.iter().all(|p| !running(*p)).then_some(()) }).await;
}

/// Waits until a line of the service's captured output contains `needle` (output is read
/// asynchronously, so it may trail the status change).
async fn log_line(api: &common::Api, name: &str, needle: &str) {
    eventually(&format!("a line with {needle:?} in the log of {name}"), LONG, || async move {
        api.service_log(name).await.iter().any(|l| l.contains(needle)).then_some(())
    })
    .await;
}

/// The pid the `--spawn-child` grandchild printed in its service's log.
async fn grandchild_of(api: &common::Api, name: &str) -> u32 {
    eventually("the grandchild pid in the logs", LONG, || async move {
        api.service_log(name).await.iter().find_map(|line| line.split("spawned child pid=").nth(1)?.trim().parse().ok())
    })
    .await
}

#[actix_rt::test]
async fn the_platform_comes_up_with_every_service_online() {
    let services = Services::new();
    let app = TestApp::spawn_with_env(&services.toml(true, "", |_| Vec::new()), FAST).await;
    assert!(app.token.starts_with("orch_"), "the admin token is in data/admin.token: {:?}", app.token);
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        let e = api.wait_status(name, "online", LONG).await;
        assert!(running(pid_of(&e)), "{name} runs: {e}");
        assert_eq!(e["kind"], "managed", "{e}");
    }
    let health = api.anonymous().get("/api/health").await;
    assert_eq!(health.data()["status"], "ok", "{:?}", health.body);
    let listed = api.get("/api/services").await;
    let listed = listed.data().as_array().unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.iter().all(|e| e["status"] == "online"), "{listed:?}");
    let log = std::fs::read_to_string(app.data_dir().join("logs").join("data.log")).unwrap();
    assert!(log.contains("listening"), "stdout is captured into data/logs: {log}");
    assert!(app.data_dir().join("run").join("data.pid").exists(), "the pidfile is written");
}

#[actix_rt::test]
async fn a_terminated_service_is_restarted_once() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = true"), FAST).await;
    let api = app.client();
    let first = api.wait_status("data", "online", LONG).await;
    let old = pid_of(&first);
    terminate(old);
    let back = api
        .wait_service("data", "online with a new pid", LONG, |e| e["status"] == "online" && e["pid"] != first["pid"])
        .await;
    assert_eq!(back["restarts"], 1, "{back}");
    assert!(!running(old), "the terminated instance is gone");
    assert!(running(pid_of(&back)), "{back}");
}

#[actix_rt::test]
async fn stop_leaves_no_process_of_the_service() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = true"), FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped", "{:?}", r.body);
    assert!(r.data()["pid"].is_null(), "{:?}", r.body);
    assert!(!running(pid_of(&e)), "no process of the service is left");
}

/// Wine 8 cannot raise Ctrl+Break (`GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, 0)` fails with
/// ERROR_INVALID_HANDLE), so there the default stop (`SIGTERM`) cannot be delivered and becomes
/// a termination of the job at once; under Wine this test checks that instead.
#[actix_rt::test]
async fn the_default_stop_signal_is_ctrl_break_and_the_service_exits_gracefully_not_under_wine() {
    let port = free_port();
    let config = one_service("data", port, &[], "autostart = true\nstop_timeout_ms = 800");
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped", "{:?}", r.body);
    assert!(!running(pid_of(&e)));
    if under_wine() {
        let log = app.log();
        assert!(log.contains("cannot send the stop signal"), "the stop became a kill\n{log}");
        assert!(log.contains("GenerateConsoleCtrlEvent"), "naming the helper's failure\n{log}");
        return;
    }
    log_line(&api, "data", "CTRL_BREAK, stopping").await;
}

#[actix_rt::test]
async fn stop_signal_sigint_is_ctrl_c_and_the_service_exits_gracefully() {
    let port = free_port();
    let config = one_service("data", port, &[], "autostart = true\nstop_signal = \"SIGINT\"");
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped", "{:?}", r.body);
    assert!(!running(pid_of(&e)));
    log_line(&api, "data", "CTRL_C, stopping").await;
}

/// `--ignore-sigterm` ignores both console events on Windows; Ctrl+C is the one Wine can raise
/// too, so this uses `stop_signal = "SIGINT"`, and the log shows the event arrived and was ignored.
#[actix_rt::test]
async fn a_service_ignoring_its_stop_event_is_terminated_after_the_stop_timeout() {
    let port = free_port();
    let extra = "autostart = true\nstop_signal = \"SIGINT\"";
    // A stop timeout long enough for the event to arrive on a busy machine (Wine delivers
    // console events through wineserver, which a loaded 2-core CI machine can delay); the
    // per-service override wins over FAST's every-service one.
    let env: Vec<(&str, &str)> =
        FAST.iter().copied().chain([("ORCHESTRATOR_SERVICE_DATA_STOP_TIMEOUT_MS", "3000")]).collect();
    let app = TestApp::spawn_with_env(&one_service("data", port, &["--ignore-sigterm"], extra), &env).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let started = Instant::now();
    let r = api.post("/api/services/data/stop").await;
    let took = started.elapsed();
    assert_eq!(r.data()["status"], "stopped", "{:?}", r.body);
    assert!(took >= Duration::from_millis(3000), "waited the stop timeout first: {took:?}");
    assert!(!running(pid_of(&e)), "the job was terminated");
    log_line(&api, "data", "ignoring CTRL_C (--ignore-sigterm)").await;
}

#[actix_rt::test]
async fn a_grandchild_dies_with_its_service() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &["--spawn-child"], "autostart = true"), FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let grandchild = grandchild_of(&api, "data").await;
    assert!(running(grandchild), "the grandchild {grandchild} runs");
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped", "{:?}", r.body);
    assert!(!running(pid_of(&e)));
    assert!(!running(grandchild), "the grandchild {grandchild} died with its service's job");
}

#[actix_rt::test]
async fn terminating_the_orchestrator_leaves_no_service_behind() {
    let services = Services::new();
    let config = services.toml(true, "", |role| if role == "data" { vec!["--spawn-child".into()] } else { Vec::new() });
    let mut app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let mut pids = Vec::new();
    for name in ["data", "mt5", "strategy", "pattern"] {
        pids.push(pid_of(&api.wait_status(name, "online", LONG).await));
    }
    pids.push(grandchild_of(&api, "data").await);
    assert!(pids.iter().all(|p| running(*p)), "{pids:?}");
    let mut orchestrator = app.child.take().unwrap();
    orchestrator.kill().unwrap();
    orchestrator.wait().unwrap();
    all_gone("every service (and the grandchild) to end with the orchestrator", &pids).await;
}

/// Wine's TCP table lists a listener but leaves its owning pid 0, so under Wine the conflict is
/// found but its owner cannot be named.
#[actix_rt::test]
async fn a_foreign_listener_on_the_port_is_a_port_conflict_naming_its_pid_not_under_wine() {
    let port = free_port();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = true"), FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "error", LONG).await;
    assert_eq!(e["sub_state"], "port_conflict", "{e}");
    assert!(e["pid"].is_null(), "nothing was spawned: {e}");
    if !under_wine() {
        let me = std::process::id().to_string();
        assert!(e["last_error"].as_str().unwrap_or("").contains(&me), "names the owning pid {me}: {e}");
    }
}
