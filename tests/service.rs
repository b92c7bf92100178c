//! Black-box tests of starting with the machine: `service install --print` writes the systemd
//! unit with absolute paths, and under a (fake) systemd the orchestrator reports `READY=1` only
//! once its autostart services are online or have given up, and pings the watchdog.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// Every datagram the orchestrator sends to a fake `NOTIFY_SOCKET`, with when it arrived.
fn listen(socket: UnixDatagram) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx.send((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned())).is_err() {
                return;
            }
        }
    });
    rx
}

#[actix_rt::test]
async fn ready_is_reported_once_the_autostart_services_are_online_or_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let messages = listen(UnixDatagram::bind(&path).unwrap());
    let config = format!(
        "{}\n[[service]]\nname = \"ghost\"\ndisplay_name = \"Ghost Service\"\nroutes = [\"ghost-res\"]\nport = {}\n\
         command = [\"/nonexistent/program\"]\nrestart = \"never\"\n",
        one_service("data", free_port(), &["--startup-delay-ms", "1500"], ""),
        free_port()
    );
    let socket = path.to_str().unwrap();
    let env: Vec<(&str, &str)> =
        FAST.iter().copied().chain([("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "400000")]).collect();
    let app = TestApp::spawn_with_env(&config, &env).await;
    let api = app.client();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ready_at, mut pings) = (None, 0);
    while ready_at.is_none() || pings < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, text) = messages.recv_timeout(left).unwrap_or_else(|_| {
            panic!("READY=1 and three WATCHDOG=1 by now (ready: {ready_at:?}, pings: {pings})\n{}", app.log())
        });
        if text.lines().any(|l| l == "READY=1") {
            assert!(ready_at.is_none(), "READY=1 is sent once");
            ready_at = Some(at);
            // When READY=1 arrived, data had been online for at least as long as it took us to ask.
            let asked = Instant::now();
            let data = api.get("/api/services/data").await;
            let data = data.data();
            assert_eq!(data["status"], "online", "READY=1 before data was online: {data}");
            let uptime = data["uptime_ms"].as_u64().unwrap_or(0);
            let since_ready = asked.duration_since(at).as_millis() as u64;
            assert!(uptime + 2 >= since_ready, "data came online {since_ready} ms - {uptime} ms after READY=1");
            assert_eq!(api.get("/api/services/ghost").await.data()["status"], "error");
        }
        if text.lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
}

#[test]
fn install_print_shows_a_notify_unit_with_absolute_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("orchestrator.toml"), one_service("data", free_port(), &[], "stop_timeout_ms = 40000"))
        .unwrap();
    let out = Command::new(exe())
        .current_dir(&root)
        .args(["--data-dir", "state", "service", "install", "--print", "--user", "trader", "--name", "desk"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = String::from_utf8(out.stdout).unwrap();
    let exe = std::path::Path::new(exe()).canonicalize().unwrap();
    let (exe, root) = (exe.display(), root.display());
    for line in [
        "Type=notify".to_owned(),
        "User=trader".to_owned(),
        "WatchdogSec=30s".to_owned(),
        "TimeoutStopSec=55s".to_owned(),
        format!("WorkingDirectory={root}"),
        format!("ExecStart={exe} --config {root}/orchestrator.toml --data-dir {root}/state"),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from\n{unit}");
    }
    assert!(!root.to_string().is_empty() && !std::path::Path::new("/etc/systemd/system/desk.service").exists());
}
