//! Black-box supervision tests: the real binary supervising real simulated services.
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(20);

fn kill(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn pid_of(entry: &serde_json::Value) -> u32 {
    entry["pid"].as_u64().expect("pid") as u32
}

#[actix_rt::test]
async fn the_platform_comes_up_and_logs_are_captured() {
    let services = Services::new();
    let app = TestApp::spawn_with_env(&services.toml(true, "", |_| Vec::new()), FAST).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        let e = api.wait_status(name, "online", LONG).await;
        assert!(alive(pid_of(&e)));
        assert_eq!(e["kind"], "managed");
    }
    let health = api.anonymous().get("/api/health").await;
    assert_eq!(health.data()["status"], "ok");
    let r = api.get("/api/services/data/logs?tail=5").await;
    let lines = r.data()["lines"].as_array().unwrap().clone();
    assert!(!lines.is_empty() && lines.len() <= 5, "{lines:?}");
    assert!(lines.iter().all(|l| l["at"].is_string() && l["stream"].is_string() && l["line"].is_string()));
    api.get("/api/services/data/logs?tail=0").await.assert_error(400, "validation_failed");
    let log_file = app.data_dir().join("logs").join("data.log");
    let text = std::fs::read_to_string(&log_file).unwrap();
    assert!(text.contains("listening"), "{text}");
    assert!(app.data_dir().join("run").join("data.pid").exists());
}

#[actix_rt::test]
async fn kill_9_of_a_service_brings_it_back_once() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = true"), FAST).await;
    let api = app.client();
    let first = api.wait_status("data", "online", LONG).await;
    let old = pid_of(&first);
    kill(old, Signal::SIGKILL);
    let back = api
        .wait_service("data", "online with a new pid", LONG, |e| e["status"] == "online" && e["pid"] != first["pid"])
        .await;
    assert_eq!(back["restarts"], 1, "{back}");
    assert_eq!(back["last_exit"]["signal"], "SIGKILL", "{back}");
    let copies = processes_matching(&format!("--port {port}"));
    assert_eq!(copies, vec![pid_of(&back)], "exactly one copy runs");
    assert!(zombie_children(app.pid()).is_empty(), "no zombies");

    // kill -9 of the service's keeper (its parent, the orchestrator's child): the service dies
    // with it (its parent-death signal) and comes back once.
    let keeper = parent_of(pid_of(&back));
    assert_ne!(keeper, app.pid());
    assert_eq!(parent_of(keeper), app.pid());
    kill(keeper, Signal::SIGKILL);
    let again = api
        .wait_service("data", "online after its keeper's kill", LONG, |e| {
            e["status"] == "online" && e["pid"] != back["pid"]
        })
        .await;
    assert_eq!(again["restarts"], 2, "{again}");
    assert_eq!(again["last_exit"]["signal"], "SIGKILL", "{again}");
    assert!(!alive(pid_of(&back)), "the service died with its keeper");
    assert_eq!(processes_matching(&format!("--port {port}")), vec![pid_of(&again)], "exactly one copy runs");
    eventually("no zombie child of the orchestrator", LONG, || async {
        zombie_children(app.pid()).is_empty().then_some(())
    })
    .await;
}

/// The parent of a process (from `/proc/PID/stat`).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[actix_rt::test]
async fn start_twice_is_a_conflict_and_stop_twice_too() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = false"), FAST).await;
    let api = app.client();
    let r = api.post("/api/services/data/start").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api.post("/api/services/data/start").await;
    r.assert_error(409, "conflict");
    assert_eq!(r.body["error"], "A(z) data service már fut.");
    api.wait_status("data", "online", LONG).await;
    api.post("/api/services/data/start").await.assert_error(409, "conflict");
    assert_eq!(processes_matching(&format!("--port {port}")).len(), 1);
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped");
    api.post("/api/services/data/stop").await.assert_error(409, "conflict");
    assert!(processes_matching(&format!("--port {port}")).is_empty());
    api.post("/api/services/nope/start").await.assert_error(404, "not_found");
    api.post("/api/services/data/explode").await.assert_error(404, "not_found");
}

#[actix_rt::test]
async fn a_program_that_cannot_be_run_is_spawn_failed_in_both_languages() {
    let config = format!(
        "[[service]]\nname = \"ghost\"\ndisplay_name = \"Ghost Service\"\nroutes = [\"ghost-res\"]\nport = {}\n\
         command = [\"/nonexistent/program\"]\nautostart = false\nrestart = \"never\"\n\n{}",
        free_port(),
        one_service("data", free_port(), &[], "autostart = false\nrestart = \"never\"\ncwd = \"/nonexistent/dir\"")
    );
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    for (name, display) in [("ghost", "Ghost Service"), ("data", "data service")] {
        for action in ["start", "restart"] {
            let r = api.post(&format!("/api/services/{name}/{action}")).await;
            r.assert_error(500, "spawn_failed");
            let hu = r.body["error"].as_str().unwrap_or_default();
            assert!(hu.starts_with(&format!("A(z) {display} nem indítható: ")), "{name} {action}: {hu}");
            assert!(hu.contains("(os error") && !hu.contains("nonexistent"), "the short OS error alone: {hu}");
        }
        let req = api.request("POST", &format!("/api/services/{name}/start")).insert_header(("Accept-Language", "en"));
        let r = api.send(req, None).await;
        r.assert_error(500, "spawn_failed");
        let en = r.body["error"].as_str().unwrap_or_default();
        assert!(en.starts_with(&format!("{display} cannot be started: ")), "{en}");
    }
    api.wait_status("ghost", "error", LONG).await;
}

#[actix_rt::test]
async fn crash_during_startup_reports_exit_code_and_last_lines() {
    let port = free_port();
    let config = one_service("data", port, &["--fail-startup", "--exit-code", "3"], "restart = \"never\"");
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "error", LONG).await;
    assert_eq!(e["last_exit"]["code"], 3, "{e}");
    let last_error = e["last_error"].as_str().unwrap_or("");
    assert!(last_error.contains('3'), "{e}");
    assert!(last_error.to_lowercase().contains("startup"), "the simulator's last line is included: {e}");
}

#[actix_rt::test]
async fn hung_health_goes_offline_then_restarts() {
    let port = free_port();
    let config = one_service("data", port, &["--hang-health-after-ms", "1000"], "");
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let first = api.wait_status("data", "online", LONG).await;
    let seen_offline = api
        .wait_service("data", "offline or restarted", LONG, |e| e["status"] == "offline" || e["pid"] != first["pid"])
        .await;
    assert!(seen_offline["consecutive_failures"].as_u64().unwrap_or(0) >= 1 || seen_offline["pid"] != first["pid"]);
    let back = api
        .wait_service("data", "online with a new pid", LONG, |e| e["status"] == "online" && e["pid"] != first["pid"])
        .await;
    assert!(back["restarts"].as_u64().unwrap() >= 1);
    assert!(!alive(pid_of(&first)), "the hung instance was stopped");
}

#[actix_rt::test]
async fn ignoring_sigterm_gets_sigkill_after_the_stop_timeout() {
    let port = free_port();
    let config = one_service("data", port, &["--ignore-sigterm"], "stop_timeout_ms = 800");
    let app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    let started = Instant::now();
    let r = api.post("/api/services/data/stop").await;
    let took = started.elapsed();
    assert_eq!(r.data()["status"], "stopped");
    assert!(took >= Duration::from_millis(800), "waited the stop timeout first: {took:?}");
    assert!(!alive(pid_of(&e)));
    assert_eq!(r.data()["last_exit"]["signal"], "SIGKILL", "{:?}", r.body);
}

#[actix_rt::test]
async fn the_whole_process_group_is_stopped() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &["--spawn-child"], ""), FAST).await;
    let api = app.client();
    api.wait_status("data", "online", LONG).await;
    let child = eventually("the grandchild pid in the logs", LONG, || {
        let api = &api;
        async move {
            let r = api.get("/api/services/data/logs?tail=100").await;
            r.body["data"]["lines"].as_array()?.iter().find_map(|l| {
                let line = l["line"].as_str()?;
                line.split("spawned child pid=").nth(1)?.trim().parse::<u32>().ok()
            })
        }
    })
    .await;
    assert!(alive(child));
    let r = api.post("/api/services/data/stop").await;
    assert_eq!(r.data()["status"], "stopped");
    assert!(!alive(child), "the grandchild {child} died with its group");
}

#[actix_rt::test]
async fn a_foreign_socket_on_the_port_is_a_port_conflict() {
    let port = free_port();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], ""), FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "error", LONG).await;
    assert_eq!(e["sub_state"], "port_conflict", "{e}");
    let me = std::process::id().to_string();
    assert!(e["last_error"].as_str().unwrap_or("").contains(&me), "names the owning pid {me}: {e}");
    assert!(processes_matching(&format!("--port {port}")).is_empty(), "nothing was spawned");
}

#[actix_rt::test]
async fn a_running_instance_is_adopted_and_never_signalled() {
    let port = free_port();
    let mut outside = std::process::Command::new(exe())
        .args(["sim", "data", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = awc::Client::default();
    eventually("the outside instance to answer", LONG, || {
        let req = client.get(format!("http://127.0.0.1:{port}/health"));
        async move { req.send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;
    let mut app = TestApp::spawn_with_env(&one_service("data", port, &[], "on_port_conflict = \"adopt\""), FAST).await;
    let api = app.client();
    let e = api.wait_status("data", "online", LONG).await;
    assert_eq!(e["kind"], "adopted", "{e}");
    assert_eq!(e["sub_state"], "adopted", "{e}");
    api.post("/api/services/data/stop").await.assert_error(409, "conflict");
    let status = app.signal_and_wait(Signal::SIGTERM, LONG);
    assert!(status.success());
    assert!(outside.try_wait().unwrap().is_none(), "the adopted instance survives the orchestrator");
    let _ = outside.kill();
    let _ = outside.wait();
}

#[actix_rt::test]
async fn a_crash_loop_is_reported_and_a_manual_start_resets_it() {
    let port = free_port();
    let config = one_service(
        "data",
        port,
        &["--crash-after-ms", "150", "--exit-code", "1"],
        "max_failures = 3\nfailure_window_ms = 60000\nbackoff = { initial_ms = 100, multiplier = 2.0, max_ms = 400, jitter = 0.0 }",
    );
    let app = TestApp::spawn_with_env(&config, &FAST[..4]).await;
    let api = app.client();
    let e = api.wait_service("data", "crash_loop", LONG, |e| e["sub_state"] == "crash_loop").await;
    assert_eq!(e["status"], "error", "{e}");
    assert!(e["restarts"].as_u64().unwrap() >= 2, "{e}");
    // Still retrying at the cap.
    let later =
        api.wait_service("data", "another restart", LONG, |x| x["restarts"].as_u64() > e["restarts"].as_u64()).await;
    assert_eq!(later["last_exit"]["code"], 1);
    // A manual start resets the sequence (the service is not running at this moment or is: either
    // way the crash loop is cleared until it fails max_failures times again).
    let deadline = Instant::now() + LONG;
    loop {
        let r = api.post("/api/services/data/start").await;
        if r.status == 200 {
            assert_ne!(r.data()["sub_state"], "crash_loop", "{:?}", r.body);
            break;
        }
        assert!(Instant::now() < deadline, "manual start never accepted: {:?}", r.body);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn sigterm_stops_everything_and_exits_zero() {
    let services = Services::new();
    let mut app = TestApp::spawn_with_env(&services.toml(true, "", |_| Vec::new()), FAST).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    let status = app.signal_and_wait(Signal::SIGTERM, LONG);
    assert!(status.success(), "{status:?}\n{}", app.log());
    for port in services.ports {
        assert!(processes_matching(&format!("--port {port}")).is_empty(), "service on {port} survived");
    }
    assert!(!app.data_dir().join("run").join("data.pid").exists(), "pidfiles are removed");
}

#[actix_rt::test]
async fn sigkill_of_the_orchestrator_leaves_no_service_behind() {
    let services = Services::new();
    let mut app = TestApp::spawn_with_env(&services.toml(true, "", |_| Vec::new()), FAST).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    let _ = app.signal_and_wait(Signal::SIGKILL, LONG);
    eventually("every service to die with the orchestrator", LONG, || async {
        services.ports.iter().all(|p| processes_matching(&format!("--port {p}")).is_empty()).then_some(())
    })
    .await;
}

/// A status line of `/proc/PID/status` in kB (e.g. `RssAnon`).
fn status_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{key} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[actix_rt::test]
async fn a_keeper_is_a_fresh_small_process_not_a_copy_of_the_orchestrator() {
    let port = free_port();
    let app = TestApp::spawn_with_env(&one_service("data", port, &[], "autostart = true"), FAST).await;
    let api = app.client();
    let service = pid_of(&api.wait_status("data", "online", LONG).await);
    let keeper = parent_of(service);
    assert_eq!(parent_of(keeper), app.pid());
    let cmdline = std::fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
    assert_eq!(String::from_utf8_lossy(&cmdline).trim_end_matches('\0'), "keep:data");
    assert_eq!(std::fs::read_to_string(format!("/proc/{keeper}/comm")).unwrap().trim(), "keep:data");
    // Re-executed: its environment is the keeper's specification alone, not the orchestrator's.
    let environ = std::fs::read(format!("/proc/{keeper}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let vars: Vec<&str> = environ.split('\0').filter(|v| !v.is_empty()).collect();
    assert_eq!(vars.len(), 1, "{vars:?}");
    assert!(vars[0].starts_with(&format!("ORCHESTRATOR_KEEPER={service}:{}:", app.pid())), "{vars:?}");
    // Its anonymous memory is its own few pages (about 1.2 MB in a debug build), not the
    // orchestrator's heap mapped copy-on-write (a forked keeper counts all of it, 3 MB and more).
    let (keeper_anon, orchestrator_anon) = (status_kb(keeper, "RssAnon"), status_kb(app.pid(), "RssAnon"));
    assert!(keeper_anon < 2048, "keeper {keeper_anon} kB anonymous, orchestrator {orchestrator_anon} kB");

    // It still ends like its service, and stops with it.
    kill(service, Signal::SIGKILL);
    let back = api
        .wait_service("data", "online with a new pid", LONG, |e| e["status"] == "online" && pid_of(e) != service)
        .await;
    assert_eq!(back["last_exit"]["signal"], "SIGKILL", "{back}");
    eventually("the old keeper to be reaped", LONG, || async { (!alive(keeper)).then_some(()) }).await;
    let new_keeper = parent_of(pid_of(&back));
    assert_ne!(new_keeper, keeper);
    api.post("/api/services/data/stop").await.data();
    eventually("the new keeper to be gone", LONG, || async { (!alive(new_keeper)).then_some(()) }).await;
}

/// A service whose command starts a helper in a session of its own (`setsid`), outside the
/// service's process group, marked by a unique `sleep` duration.
fn service_with_a_detached_helper(port: u16, marker: u32) -> String {
    let script = format!("setsid sleep {marker} & exec {:?} sim data --port {port}", exe());
    format!(
        "[[service]]\nname = \"data\"\ndisplay_name = \"data service\"\nroutes = [\"data-res\"]\nport = {port}\n\
         command = [\"sh\", \"-c\", {script:?}]\nautostart = true\n"
    )
}

#[actix_rt::test]
async fn a_helper_in_its_own_session_goes_with_its_service() {
    // Stopped through the API: the helper goes too.
    let (port, marker) = (free_port(), 7_000 + std::process::id() % 1_000);
    let app = TestApp::spawn_with_env(&service_with_a_detached_helper(port, marker), FAST).await;
    let api = app.client();
    api.wait_status("data", "online", LONG).await;
    let helper = format!("sleep {marker}");
    eventually("the detached helper to run", LONG, || async { (processes_matching(&helper).len() == 1).then_some(()) })
        .await;
    let pid = processes_matching(&helper)[0];
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).unwrap().as_raw();
    assert_eq!(sid as u32, pid, "the helper leads a session of its own");
    api.post("/api/services/data/stop").await.data();
    eventually("the helper to go with its service's stop", LONG, || async {
        processes_matching(&helper).is_empty().then_some(())
    })
    .await;
    drop(app);

    // kill -9 of the orchestrator: the helper goes too.
    let (port, marker) = (free_port(), 8_000 + std::process::id() % 1_000);
    let mut app = TestApp::spawn_with_env(&service_with_a_detached_helper(port, marker), FAST).await;
    app.client().wait_status("data", "online", LONG).await;
    let helper = format!("sleep {marker}");
    eventually("the detached helper to run", LONG, || async { (processes_matching(&helper).len() == 1).then_some(()) })
        .await;
    let _ = app.signal_and_wait(Signal::SIGKILL, LONG);
    eventually("the helper to go with the orchestrator", LONG, || async {
        (processes_matching(&helper).is_empty() && processes_matching(&format!("--port {port}")).is_empty())
            .then_some(())
    })
    .await;
}

/// `[[service]]` blocks of `text` by name (Services::toml writes one block per service).
fn blocks(text: &str) -> Vec<(String, String)> {
    text.split("[[service]]")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let name = b.split("name = \"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
            (name, format!("[[service]]{b}"))
        })
        .collect()
}

#[actix_rt::test]
async fn a_reload_restarts_only_what_changed_and_an_invalid_file_changes_nothing() {
    let services = Services::new();
    let text = services.toml(true, "", |_| Vec::new());
    let app = TestApp::spawn_with_env(&text, FAST).await;
    let api = app.client();
    let mut pids = std::collections::BTreeMap::new();
    for name in ["data", "mt5", "strategy", "pattern"] {
        pids.insert(name, pid_of(&api.wait_status(name, "online", LONG).await));
    }
    let config_file = app.dir.path().join("orchestrator.toml");

    // An invalid file: 400 with config check's words, and nothing changes.
    std::fs::write(&config_file, format!("{text}\n[[service]]\nname = \"data\"\nport = 1\n")).unwrap();
    let r = api.post("/api/config/reload").await;
    r.assert_error(400, "validation_failed");
    let message = r.body["error"].as_str().unwrap().to_owned();
    assert!(message.contains("duplicate") && message.contains("line"), "{message}");
    for (name, pid) in &pids {
        assert_eq!(pid_of(&api.get(&format!("/api/services/{name}")).await.data().clone()), *pid, "{name}");
    }

    // mt5 gets a new timeout (in place), strategy a new environment (restart), pattern goes,
    // extra comes; data stays as it is.
    let extra_port = free_port();
    let mut new = String::new();
    for (name, block) in blocks(&text) {
        match name.as_str() {
            "mt5" => new.push_str(&format!("{block}request_timeout_ms = 1234\n")),
            "strategy" => new.push_str(&format!("{block}env = {{ RELOADED = \"1\" }}\n")),
            "pattern" => {}
            _ => new.push_str(&block),
        }
    }
    new.push_str(
        &one_service("pattern", extra_port, &[], "autostart = true").replace("name = \"pattern\"", "name = \"extra\""),
    );
    std::fs::write(&config_file, &new).unwrap();
    let r = api.post("/api/config/reload").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let plan = r.data().clone();
    assert_eq!(plan["added"], serde_json::json!(["extra"]), "{plan}");
    assert_eq!(plan["removed"], serde_json::json!(["pattern"]), "{plan}");
    assert_eq!(plan["restarted"], serde_json::json!(["strategy"]), "{plan}");
    assert_eq!(plan["updated"], serde_json::json!(["mt5"]), "{plan}");
    assert_eq!(plan["unchanged"], serde_json::json!(["data"]), "{plan}");
    for name in ["data", "mt5"] {
        let e = api.get(&format!("/api/services/{name}")).await.data().clone();
        assert_eq!((e["status"].as_str(), pid_of(&e)), (Some("online"), pids[name]), "{name} keeps its process");
    }
    let strategy = api.wait_status("strategy", "online", LONG).await;
    assert_ne!(pid_of(&strategy), pids["strategy"], "strategy was restarted");
    assert!(!alive(pids["strategy"]) && !alive(pids["pattern"]), "the old strategy and the removed pattern are gone");
    api.get("/api/services/pattern").await.assert_error(404, "not_found");
    api.wait_status("extra", "online", LONG).await;
    api.get("/api/patterns/latest").await.assert_error(404, "not_found");

    // SIGHUP reloads too (it used to end the orchestrator, and every service with it); the CLI
    // does the same through the API.
    std::fs::write(&config_file, new.replace("request_timeout_ms = 1234", "request_timeout_ms = 4321")).unwrap();
    kill(app.pid(), Signal::SIGHUP);
    let log = || app.log();
    let deadline = Instant::now() + LONG;
    while !log().contains("SIGHUP: configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload after SIGHUP: {}", log());
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let out = std::process::Command::new(exe())
        .arg("--config")
        .arg(&config_file)
        .arg("--data-dir")
        .arg(app.data_dir())
        .args(["--bind", &format!("127.0.0.1:{}", app.port), "reload"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("\"unchanged\"") && printed.contains("\"data\""), "{printed}");
    assert_eq!(
        pid_of(&api.get("/api/services/data").await.data().clone()),
        pids["data"],
        "still the same data process"
    );
}

#[actix_rt::test]
async fn requests_in_flight_during_reloads_never_fail() {
    let services = Services::new();
    let text = services.toml(true, "", |_| Vec::new());
    let app = TestApp::spawn_with_env(&text, FAST).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    let config_file = app.dir.path().join("orchestrator.toml");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loaders = Vec::new();
    for i in 0..4 {
        let (api, stop) = (app.client(), stop.clone());
        loaders.push(actix_rt::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let path = if i % 2 == 0 { "/api/symbols" } else { "/api/health" };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = api.get(path).await;
                if r.status == 200 { ok += 1 } else { failed.push((path, r.status, r.body.clone())) }
            }
            (ok, failed)
        }));
    }
    // Three reloads while the load runs: timeouts and backoff of the other services change.
    for timeout in [1500, 2500, 3500] {
        let changed: String = blocks(&text)
            .into_iter()
            .map(
                |(name, block)| if name == "data" { block } else { format!("{block}request_timeout_ms = {timeout}\n") },
            )
            .collect();
        std::fs::write(&config_file, changed).unwrap();
        let r = api.post("/api/config/reload").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.data()["updated"].as_array().unwrap().len(), 3, "{:?}", r.body);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loaders {
        let (ok, failed) = l.await.unwrap();
        assert!(failed.is_empty(), "requests failed during a reload: {failed:?}");
        total += ok;
    }
    assert!(total > 0, "the load ran");
}
