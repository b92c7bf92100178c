//! Black-box tests of the REST API: the real binary, a temporary data dir, real sockets.
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

/// Services configured but not started, so API tests do not depend on processes.
fn idle_config() -> String {
    Services::new().toml(false, "", |_| Vec::new())
}

#[actix_rt::test]
async fn health_is_public_and_answered_from_the_registry() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client().anonymous();
    let r = api.get("/api/health").await;
    assert_eq!(r.status, 200);
    let data = r.data();
    assert_eq!(data["status"], "degraded", "nothing runs yet: {data}");
    let services = data["services"].as_array().unwrap();
    let names: Vec<&str> = services.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data", "mt5", "strategy", "pattern"]);
    assert!(services.iter().all(|s| s["status"] == "stopped"));
}

#[actix_rt::test]
async fn auth_roles_are_enforced() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    // No token, a wrong token, a malformed header: 401.
    api.anonymous().get("/api/services").await.assert_error(401, "unauthorized");
    api.with_token("orch_0000").get("/api/services").await.assert_error(401, "unauthorized");
    let r = api
        .send(api.anonymous().request("GET", "/api/settings").insert_header(("Authorization", "Basic eDp5")), None)
        .await;
    r.assert_error(401, "unauthorized");

    // A viewer reads but cannot write.
    let viewer = api.with_token(&app.create_token("dash", "viewer"));
    assert_eq!(viewer.get("/api/services").await.status, 200);
    assert_eq!(viewer.get("/api/settings").await.status, 200);
    viewer.json("PUT", "/api/settings/ui.language", &json!({"value": "en"})).await.assert_error(403, "forbidden");
    viewer.json("PUT", "/api/settings", &json!({"ui.language": "en"})).await.assert_error(403, "forbidden");
    viewer.send(viewer.request("DELETE", "/api/settings/symbols"), None).await.assert_error(403, "forbidden");
    viewer.post("/api/services/data/start").await.assert_error(403, "forbidden");

    // A service token may not read.
    let service = api.with_token(&app.create_token("ingest", "service"));
    service.get("/api/settings").await.assert_error(403, "forbidden");

    // The operator (admin) may write; nothing the viewer tried was written.
    assert_eq!(api.get("/api/settings/ui.language").await.data()["version"], 0);
    let r = api.json("PUT", "/api/settings/ui.language", &json!({"value": "en"})).await;
    assert_eq!(r.data()["value"], "en");

    // Revoking takes effect at once.
    let out = std::process::Command::new(exe())
        .arg("--data-dir")
        .arg(app.data_dir())
        .args(["token", "revoke", "dash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    viewer.get("/api/services").await.assert_error(401, "unauthorized");
}

#[actix_rt::test]
async fn admin_token_file_is_private_and_tokens_are_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(&idle_config()).await;
    let meta = std::fs::metadata(app.data_dir().join("admin.token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(app.log().contains(&format!("#token={}", app.token)), "the dashboard URL with the token is logged");
    let before = app.log().len();
    let mut app = app;
    app.signal_and_wait(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(15));
    app.start().await;
    let second = app.log()[before..].to_owned();
    assert!(second.contains("dashboard: http://127.0.0.1:"), "the second start logs the URL: {second}");
    assert!(!second.contains(&app.token), "the second start's log holds no token: {second}");
    assert!(second.contains("admin.token"), "and says where the token file is: {second}");
    let db = std::fs::read(app.data_dir().join("setup.db")).unwrap();
    let wal = std::fs::read(app.data_dir().join("setup.db-wal")).unwrap_or_default();
    let needle = app.token.as_bytes();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "plaintext token stored");
    }
}

#[actix_rt::test]
async fn services_are_listed_with_every_field() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    let r = api.get("/api/services").await;
    let list = r.data().as_array().unwrap().clone();
    assert_eq!(list.len(), 4);
    let fields = [
        "name",
        "display_name",
        "status",
        "sub_state",
        "kind",
        "host",
        "port",
        "pid",
        "uptime_ms",
        "restarts",
        "consecutive_failures",
        "last_check",
        "last_exit",
        "next_restart_at",
        "last_error",
    ];
    for entry in &list {
        for f in fields {
            assert!(entry.get(f).is_some(), "{f} missing in {entry}");
        }
        assert_eq!(entry["kind"], "managed");
    }
    let one = api.get("/api/services/mt5").await;
    assert_eq!(one.data()["display_name"], "MT5 Service");
    api.get("/api/services/nope").await.assert_error(404, "not_found");
}

#[actix_rt::test]
async fn settings_round_trip_and_survive_a_restart() {
    let mut app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    let all = api.get("/api/settings").await;
    let data = all.data();
    for key in ["symbols", "timeframes", "default_timeframe", "risk.max_volume", "ui.language"] {
        let e = &data[key];
        assert_eq!(e["key"], key);
        assert_eq!(e["value"], e["default"], "{key}");
        assert_eq!(e["version"], 0);
        assert!(e["updated_at"].is_null());
    }
    let r = api.json("PUT", "/api/settings/symbols", &json!({"value": ["EURUSD", "BTCUSD"]})).await;
    assert_eq!(r.data()["version"], 1);
    assert_eq!(r.header("etag").as_deref(), Some("\"1\""));
    let r = api.get("/api/settings/symbols").await;
    assert_eq!(r.data()["value"], json!(["EURUSD", "BTCUSD"]));
    assert_eq!(r.header("etag").as_deref(), Some("\"1\""));
    let r = api.json("PUT", "/api/settings/ui.dashboard.layout", &json!({"value": {"columns": 3}})).await;
    assert_eq!(r.data()["value"]["columns"], 3);

    // Restart the binary on the same data dir: everything is still there.
    let status = app.signal_and_wait(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(15));
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    app.start().await;
    let api = app.client();
    let r = api.get("/api/settings/symbols").await;
    assert_eq!(r.data()["value"], json!(["EURUSD", "BTCUSD"]));
    assert_eq!(r.data()["version"], 1);
    assert_eq!(api.get("/api/settings/ui.dashboard.layout").await.data()["value"]["columns"], 3);

    // DELETE puts the default back, with a new version.
    let r = api.send(api.request("DELETE", "/api/settings/symbols"), None).await;
    assert_eq!(r.data()["value"], r.data()["default"]);
    assert_eq!(r.data()["version"], 2);
    api.get("/api/settings/no.such.key").await.assert_error(404, "not_found");
}

#[actix_rt::test]
async fn batch_updates_are_atomic_and_if_match_is_compare_and_set() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    let r =
        api.json("PUT", "/api/settings", &json!({"risk.max_volume": 5.0, "symbols": ["EURUSD", "not a symbol"]})).await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().contains("symbols[1]"), "{:?}", r.body);
    let all = api.get("/api/settings").await;
    assert_eq!(all.data()["risk.max_volume"]["version"], 0, "nothing changed");
    assert_eq!(all.data()["risk.max_volume"]["value"], 1.0);

    let r = api.json("PUT", "/api/settings", &json!({"risk.max_volume": 5.0, "ui.language": "en"})).await;
    assert_eq!(r.data()["risk.max_volume"]["version"], 1);
    assert_eq!(r.data()["ui.language"]["value"], "en");

    // If-Match: bare or quoted; a mismatch is 409 and changes nothing.
    let put = |v: &str, body: serde_json::Value| {
        let req = api.request("PUT", "/api/settings/risk.max_volume").insert_header(("If-Match", v.to_owned()));
        api.send(req.insert_header(("Content-Type", "application/json")), Some(serde_json::to_vec(&body).unwrap()))
    };
    put("7", json!({"value": 2.0})).await.assert_error(409, "conflict");
    assert_eq!(put("\"1\"", json!({"value": 2.0})).await.data()["version"], 2);
    assert_eq!(put("2", json!({"value": 3.0})).await.data()["version"], 3);
    put("2", json!({"value": 4.0})).await.assert_error(409, "conflict");
    put("abc", json!({"value": 4.0})).await.assert_error(400, "validation_failed");
    assert_eq!(api.get("/api/settings/risk.max_volume").await.data()["value"], 3.0);
}

#[actix_rt::test]
async fn messages_are_hungarian_by_default_and_english_on_request() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    let r = api.anonymous().get("/api/settings").await;
    assert_eq!(r.body["error"], "Hitelesítés szükséges.");
    let req = api.anonymous().request("GET", "/api/settings").insert_header(("Accept-Language", "en-US,en;q=0.9"));
    let r = api.send(req, None).await;
    assert_eq!(r.body["error"], "Authentication required.");
    let r = api.json("PUT", "/api/settings/risk.max_volume", &json!({"value": 500})).await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().starts_with("Érvénytelen kérés: risk.max_volume – "), "{:?}", r.body);
}

#[actix_rt::test]
async fn request_id_is_echoed_or_generated() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    let req = api.request("GET", "/api/services").insert_header(("X-Request-Id", "trace-42"));
    let r = api.send(req, None).await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("trace-42"));
    assert_eq!(r.body["request_id"], "trace-42");
    // An insane id is replaced by a generated one, also on errors.
    let req = api.anonymous().request("GET", "/api/services").insert_header(("X-Request-Id", "bad id <x>"));
    let r = api.send(req, None).await;
    let id = r.header("x-request-id").unwrap();
    assert_ne!(id, "bad id <x>");
    assert_eq!(r.body["request_id"], id.as_str());
    assert!(app.log().contains("rid=trace-42"), "the access log carries the request id");
}

#[actix_rt::test]
async fn bad_requests_get_clear_envelopes() {
    let app = TestApp::spawn(&idle_config()).await;
    let api = app.client();
    // Unknown route.
    api.get("/api/nope/x").await.assert_error(404, "not_found");
    api.get("/nothing-here").await.assert_error(404, "not_found");
    // Oversized body.
    let big = vec![b' '; 2 * 1024 * 1024];
    api.raw("PUT", "/api/settings", &big).await.assert_error(413, "payload_too_large");
    // Malformed JSON, with the position named in Hungarian.
    let r = api.raw("PUT", "/api/settings/symbols", b"{\"value\": [\"EURUSD\",}").await;
    r.assert_error(400, "validation_failed");
    let msg = r.body["error"].as_str().unwrap();
    assert!(msg.contains("hibás JSON") && msg.contains("1. sor"), "{msg}");
    // Invalid UTF-8, wrong type, unknown field, missing field.
    let r = api.raw("PUT", "/api/settings/symbols", b"{\"value\": \"\xff\"}").await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().contains("UTF-8"));
    let r = api.json("PUT", "/api/settings/symbols", &json!({"value": "EURUSD"})).await;
    r.assert_error(400, "validation_failed");
    let r = api.json("PUT", "/api/settings/symbols", &json!({"value": ["EURUSD"], "extra": 1})).await;
    assert!(r.body["error"].as_str().unwrap().contains("extra – ismeretlen mező"), "{:?}", r.body);
    let r = api.json("PUT", "/api/settings/symbols", &json!({})).await;
    assert!(r.body["error"].as_str().unwrap().contains("value – "), "{:?}", r.body);
    // Nothing was written by any of these.
    assert_eq!(api.get("/api/settings/symbols").await.data()["version"], 0);
}

#[actix_rt::test]
async fn config_check_reports_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[service]]\nname = \"data\"\nport = 5001\nroutes = [\"health\"]\n").unwrap();
    let out = std::process::Command::new(exe()).args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line 4") && text.contains("service[0].routes"), "{text}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, idle_config()).unwrap();
    let out = std::process::Command::new(exe()).args(["config", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // `config print` with no file shows the built-in platform, with environment overrides.
    let out = std::process::Command::new(exe())
        .current_dir(dir.path())
        .args(["config", "print"])
        .env("ORCHESTRATOR_HEALTH_INTERVAL_MS", "1234")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("interval_ms = 1234"), "{text}");
    for port in ["5001", "5002", "5003", "5004"] {
        assert!(text.contains(&format!("port = {port}")), "{text}");
    }
    let out = std::process::Command::new(exe()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("token"));
}

/// A client that trusts exactly `cert` and offers these ALPN protocols.
fn tls_client(cert: &rcgen::Certificate, alpn: &[&[u8]]) -> awc::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(config)))
        .timeout(std::time::Duration::from_secs(5))
        .finish()
}

#[actix_rt::test]
async fn https_with_http2_by_alpn_and_wss() {
    use futures_util::{SinkExt as _, StreamExt as _};
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let config = format!("[gateway.tls]\ncert = {cert:?}\nkey = {key:?}\n{}", idle_config());
    let config_path = dir.path().join("orchestrator.toml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("orchestrator.log")).unwrap();
    let mut child = std::process::Command::new(exe())
        .arg("--config")
        .arg(&config_path)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let h2 = tls_client(&generated.cert, &[b"h2", b"http/1.1"]);
    let health = format!("https://localhost:{port}/api/health");
    let version = eventually("HTTPS to answer", std::time::Duration::from_secs(20), || {
        let req = h2.get(&health);
        async move {
            let r = req.send().await.ok()?;
            r.status().is_success().then(|| r.version())
        }
    })
    .await;
    assert_eq!(version, awc::http::Version::HTTP_2, "HTTP/2 chosen by ALPN");
    let http1 = tls_client(&generated.cert, &[b"http/1.1"]);
    let r = http1.get(&health).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, awc::http::Version::HTTP_11));
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        http_client()
            .get(format!("http://127.0.0.1:{port}/api/health"))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
    );
    // wss:// with the admin token.
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let (_, mut ws) = http1.ws(format!("wss://localhost:{port}/ws")).connect().await.unwrap();
    let auth = json!({"id": 1, "type": "auth", "token": token.trim()}).to_string();
    ws.send(awc::ws::Message::Text(auth.into())).await.unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            awc::ws::Frame::Text(t) => break serde_json::from_slice::<serde_json::Value>(&t).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

#[test]
fn an_unknown_override_stops_the_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["config", "print"])
        .env("ORCHESTRATOR_HEALTH_INTERVAL", "100")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a typo in an override must not be ignored");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ORCHESTRATOR_HEALTH_INTERVAL") && stderr.contains("not a configuration override"),
        "{stderr}"
    );
    let out = std::process::Command::new(exe())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["config", "print"])
        .env("ORCHESTRATOR_HEALTH_INTERVAL_MS", "100")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("interval_ms = 100"));
}
