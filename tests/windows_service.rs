//! Black-box test of the Windows service (SPEC §12): `orchestrator service install` registers
//! the real `orchestrator.exe` with the Service Control Manager; `sc start` brings the platform
//! up under the SCM dispatcher, `sc stop` runs the graceful shutdown (services stopped before
//! the service reports `STOPPED`), and `service uninstall` removes the entry. CI runs it under
//! Wine, whose `services.exe` implements the SCM (its `schtasks` cannot create tasks, so the
//! logon task is covered by unit tests only).
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually, exe, free_port, http_client, one_service};

/// Generous: Wine starts processes far more slowly than Windows does.
const LONG: Duration = Duration::from_secs(60);

fn orchestrator(dir: &Path, args: &[&str]) -> Output {
    Command::new(exe()).current_dir(dir).args(args).output().unwrap()
}

fn sc(args: &[&str]) -> String {
    let out = Command::new("sc").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the registration however the test ends.
struct Registered(String);

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = Command::new(exe()).args(["service", "uninstall", "--name", &self.0]).output();
    }
}

#[actix_rt::test]
async fn a_registered_service_runs_under_the_scm_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, data) = (free_port(), free_port());
    let config = format!(
        "[gateway]\nbind = \"127.0.0.1:{gateway}\"\n\n{}",
        one_service("data", data, &[], "stop_timeout_ms = 3000")
    );
    std::fs::write(dir.path().join("orchestrator.toml"), config).unwrap();
    let name = format!("orchestrator-test-{}", std::process::id());

    let out = orchestrator(dir.path(), &["--data-dir", "data", "service", "install", "--name", &name]);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let _registered = Registered(name.clone());
    sc(&["start", &name]);

    let client = http_client();
    let url = format!("http://127.0.0.1:{gateway}/api/health");
    eventually("the service's gateway to report data online", LONG, || {
        let req = client.get(&url).timeout(Duration::from_secs(2));
        async move {
            let mut res = req.send().await.ok()?;
            let body: serde_json::Value = res.json().await.ok()?;
            (body["data"]["services"][0]["status"] == "online").then_some(())
        }
    })
    .await;
    assert!(sc(&["query", &name]).contains("RUNNING"), "{}", sc(&["query", &name]));

    sc(&["stop", &name]);
    eventually("the service to report STOPPED", LONG, || {
        let stopped = sc(&["query", &name]).contains("STOPPED");
        async move { stopped.then_some(()) }
    })
    .await;
    let log = std::fs::read_to_string(dir.path().join("data").join("orchestrator.log")).unwrap_or_default();
    let asked = log.find("the Service Control Manager asked to stop");
    let done = log.find("all services stopped");
    assert!(asked.is_some() && done > asked, "a graceful stop, logged in the data directory:\n{log}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", data)).is_err(), "the data service was stopped");

    let out = orchestrator(dir.path(), &["service", "uninstall", "--name", &name]);
    assert!(out.status.success(), "uninstall: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!sc(&["query", &name]).contains("SERVICE_NAME"), "{}", sc(&["query", &name]));
}
