//! Hostile input and access control (SPEC §3.2, §11), black-box against the real binary.
//!
//! A table-driven suite over every route: the routes come from `gateway_http::access_table()`
//! (derived, like the router itself, from the route table `gateway_http::routes::ROUTES`) plus
//! the forwarding routes of the configured services. Each route gets malformed, oversized and
//! smuggling input over raw TCP (so nothing normalises it first); each case must get its documented 4xx, never a 5xx, the
//! process must survive (same pid, health answers) and nothing may be written. Then frame-level
//! WebSocket garbage, the role of every route for every kind of token, token storage, CORS and
//! the warning for a non-loopback listen address.
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use gateway_core::Access;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// One answer read off a raw socket: the status, the head and the body (empty for streams).
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A failed envelope with this status and code.
    fn assert_envelope(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.describe());
        let body = self.json().unwrap_or_else(|| panic!("{what}: not JSON: {}", self.describe()));
        assert_envelope(&body);
        assert_eq!(body["success"], false, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }

    fn describe(&self) -> String {
        format!("{}\n{}", self.head, String::from_utf8_lossy(&self.body[..self.body.len().min(400)]))
    }
}

/// Sends `head` then `body` (from a second thread, so an early answer is read while the body is
/// still going out) and reads one answer. Streaming answers (no `Content-Length`) end after the
/// head.
fn raw_exchange(port: u16, head: &[u8], body: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let out: Vec<u8> = [head, body].concat();
    let sender = std::thread::spawn(move || {
        for chunk in out.chunks(256 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break buf.len(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).trim_end().to_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer: {head:?}"));
    let mut raw = Raw { status, head, body: buf[head_end..].to_vec() };
    if let Some(len) = raw.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        while raw.body.len() < len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.body.extend_from_slice(&chunk[..n]),
            }
        }
        raw.body.truncate(len);
    } else {
        raw.body.clear();
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    raw
}

/// A request's head: `METHOD target HTTP/1.1`, `Host`, `Connection: close`, the token, extra
/// header lines (raw bytes), and `Content-Length` for a body unless `chunked`.
fn head(method: &str, target: &[u8], token: Option<&str>, extra: &[Vec<u8>], body_len: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        out.extend_from_slice(format!("Authorization: Bearer {t}\r\n").as_bytes());
    }
    for line in extra {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = body_len {
        out.extend_from_slice(format!("Content-Type: application/json\r\nContent-Length: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(1 << 20) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// The route table

/// What a route does with its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// Reads none (the body is ignored; only its declared size is checked).
    Ignored,
    /// `{"value": …}` for one setting (`risk.max_volume`).
    SettingOne,
    /// `{key: value, …}`.
    SettingBatch,
    /// `[{type, topic?, data, timestamp?}, …]`.
    Events,
    /// Any JSON value.
    AnyJson,
    /// `POST /api/orders`.
    Order,
    /// `POST /api/strategies`.
    Strategy,
}

/// One route as the suite exercises it.
#[derive(Debug, Clone)]
struct Route {
    method: &'static str,
    pattern: String,
    /// A concrete target that is harmless even when an ignored part of a hostile request is
    /// dropped: a start of a running service (409), a reset with a stale `If-Match` (409), a
    /// send to an unknown client (404).
    target: String,
    access: Access,
    body: BodyKind,
    extra: Vec<String>,
}

impl Route {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn under_api(&self) -> bool {
        self.path().starts_with("/api/")
    }

    /// A body that passes authentication but is refused (or harmless) when it reaches the
    /// handler, for the role checks.
    fn harmless_body(&self) -> Option<Value> {
        match self.body {
            BodyKind::Ignored => None,
            BodyKind::SettingOne => Some(json!({"value": "not a number"})),
            BodyKind::SettingBatch => Some(json!({"risk.max_volume": -1})),
            BodyKind::Events => Some(json!([])),
            BodyKind::AnyJson => Some(json!({"hello": "nobody"})),
            BodyKind::Order | BodyKind::Strategy => Some(json!({})),
        }
    }
}

/// The concrete target and body of each entry of the access table. A route added to the router
/// (and so to the table) without a line here fails the suite: decide how to attack it.
fn instantiate(method: &'static str, pattern: &str, access: Access) -> Route {
    let (target, body, extra): (&str, BodyKind, &[&str]) = match (method, pattern) {
        ("GET", "/") => ("/", BodyKind::Ignored, &[]),
        ("GET", "/assets/{file}") => ("/assets/dashboard.js", BodyKind::Ignored, &[]),
        ("GET", "/api/health") => ("/api/health", BodyKind::Ignored, &[]),
        ("GET", "/api/openapi.json") => ("/api/openapi.json", BodyKind::Ignored, &[]),
        ("GET", "/api/docs") => ("/api/docs", BodyKind::Ignored, &[]),
        ("GET", "/ws") => ("/ws", BodyKind::Ignored, &[]),
        ("GET", "/metrics") => ("/metrics", BodyKind::Ignored, &[]),
        ("GET", "/api/services") => ("/api/services", BodyKind::Ignored, &[]),
        ("GET", "/api/services/{name}") => ("/api/services/data", BodyKind::Ignored, &[]),
        ("GET", "/api/services/{name}/logs") => ("/api/services/data/logs?tail=5", BodyKind::Ignored, &[]),
        ("POST", "/api/services/{name}/{action}") => ("/api/services/data/start", BodyKind::Ignored, &[]),
        ("GET", "/api/settings") => ("/api/settings", BodyKind::Ignored, &[]),
        ("PUT", "/api/settings") => ("/api/settings", BodyKind::SettingBatch, &[]),
        ("GET", "/api/settings/{key}") => ("/api/settings/risk.max_volume", BodyKind::Ignored, &[]),
        ("PUT", "/api/settings/{key}") => ("/api/settings/risk.max_volume", BodyKind::SettingOne, &[]),
        ("DELETE", "/api/settings/{key}") => {
            ("/api/settings/risk.max_volume", BodyKind::Ignored, &["If-Match: \"999999\""])
        }
        ("GET", "/api/dashboard") => ("/api/dashboard", BodyKind::Ignored, &[]),
        ("POST", "/api/events") => ("/api/events", BodyKind::Events, &[]),
        ("GET", "/api/events/stream") => ("/api/events/stream?topics=system", BodyKind::Ignored, &[]),
        ("POST", "/api/auth/ticket") => ("/api/auth/ticket", BodyKind::Ignored, &[]),
        ("GET", "/api/hub/clients") => ("/api/hub/clients", BodyKind::Ignored, &[]),
        ("POST", "/api/hub/clients/{id}/send") => ("/api/hub/clients/nobody/send", BodyKind::AnyJson, &[]),
        // Re-reads the unchanged file: a plan that changes nothing.
        ("POST", "/api/config/reload") => ("/api/config/reload", BodyKind::Ignored, &[]),
        other => panic!("tests/hostile.rs: no instantiation for the route {other:?}; add one to `instantiate`"),
    };
    Route {
        method,
        pattern: pattern.to_owned(),
        target: target.to_owned(),
        access,
        body,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Every route: the access table plus the forwarding routes of the four simulated services.
fn routes() -> Vec<Route> {
    let mut out: Vec<Route> = gateway_http::access_table().iter().map(|(m, p, a)| instantiate(m, p, *a)).collect();
    let forward = "/api/{resource}/{tail:.*}";
    for target in [
        "/api/ticks/latest?symbol=EURUSD",
        "/api/ohlc?symbol=EURUSD&timeframe=H1&count=5",
        "/api/symbols",
        "/api/account",
        "/api/positions",
        "/api/orders",
        "/api/strategies",
        "/api/signals",
        "/api/patterns/latest",
    ] {
        out.push(Route {
            method: "GET",
            pattern: forward.into(),
            target: target.into(),
            access: Access::Read,
            body: BodyKind::Ignored,
            extra: Vec::new(),
        });
    }
    for (target, body) in [("/api/orders", BodyKind::Order), ("/api/strategies", BodyKind::Strategy)] {
        out.push(Route {
            method: "POST",
            pattern: forward.into(),
            target: target.into(),
            access: Access::Write,
            body,
            extra: Vec::new(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The cases

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status with a failed envelope and this code.
    Envelope(u16, &'static str),
    /// One of these (status, code) pairs, in a failed envelope.
    OneOf(&'static [(u16, &'static str)]),
    /// Refused by the HTTP parser before routing: this status, no envelope.
    Protocol(u16),
    /// Whatever the route answers (the hostile part is ignored), but never a 5xx.
    NoServerError,
}

struct Case {
    name: String,
    head: Vec<u8>,
    body: Vec<u8>,
    expect: Expect,
}

const TEN_MIB: usize = 10 * 1024 * 1024;

fn with_query(target: &str, extra: &str) -> String {
    if target.contains('?') { format!("{target}&{extra}") } else { format!("{target}?{extra}") }
}

/// The cases every route gets, whatever it reads.
fn generic_cases(route: &Route, token: &str) -> Vec<Case> {
    let m = route.method;
    let extra: Vec<Vec<u8>> = route.extra.iter().map(|l| l.as_bytes().to_vec()).collect();
    let h = |target: &[u8], more: &[Vec<u8>], body_len: Option<usize>| {
        let mut lines = extra.clone();
        lines.extend_from_slice(more);
        head(m, target, Some(token), &lines, body_len)
    };
    let path = route.path().to_owned();
    let t = route.target.as_bytes();
    // A segment appended under /api/ lands in the forwarding route (unsafe path: 400) or in a
    // parameter of a gateway route (an unknown name or key: 404); outside /api/ nothing matches.
    let unrouted = if route.under_api() {
        Expect::OneOf(&[(400, "validation_failed"), (404, "not_found")])
    } else {
        Expect::Envelope(404, "not_found")
    };
    let mut cases = vec![
        Case {
            name: "query string over 16 KiB".into(),
            head: h(with_query(&route.target, &format!("q={}", "a".repeat(17 * 1024))).as_bytes(), &[], None),
            body: Vec::new(),
            expect: Expect::Envelope(400, "validation_failed"),
        },
        Case {
            name: "path over 4 KiB".into(),
            head: h(format!("{path}/{}", "a".repeat(5000)).as_bytes(), &[], None),
            body: Vec::new(),
            expect: Expect::Envelope(400, "validation_failed"),
        },
        Case {
            name: "a 200 KiB header".into(),
            head: h(t, &[[b"X-Junk: ".as_slice(), &vec![b'a'; 200 * 1024]].concat()], None),
            body: Vec::new(),
            expect: Expect::Protocol(431),
        },
        Case {
            name: "120 headers".into(),
            head: h(t, &(0..120).map(|i| format!("X-H{i}: v").into_bytes()).collect::<Vec<_>>(), None),
            body: Vec::new(),
            expect: Expect::Protocol(431),
        },
        Case {
            name: "raw control character in the path".into(),
            head: h(format!("{path}/a\u{1}b").as_bytes(), &[], None),
            body: Vec::new(),
            expect: Expect::Protocol(400),
        },
        Case {
            name: "raw invalid UTF-8 in the path".into(),
            head: h(&[path.as_bytes(), b"/\xff\xfe"].concat(), &[], None),
            body: Vec::new(),
            expect: Expect::Protocol(400),
        },
        Case {
            name: "control character in a header".into(),
            head: h(t, &[b"X-Request-Id: a\x01b".to_vec()], None),
            body: Vec::new(),
            expect: Expect::Protocol(400),
        },
        Case {
            name: "invalid UTF-8 in headers".into(),
            head: h(t, &[b"X-Request-Id: \xff\xfe".to_vec(), b"Accept-Language: \xc3\x28".to_vec()], None),
            body: Vec::new(),
            expect: Expect::NoServerError,
        },
        Case {
            name: "a 10 MiB body (Content-Length)".into(),
            head: h(t, &[], Some(TEN_MIB)),
            body: vec![b' '; TEN_MIB],
            expect: Expect::Envelope(413, "payload_too_large"),
        },
        Case {
            name: "an encoded control character as a segment".into(),
            head: h(format!("{path}/%01").as_bytes(), &[], None),
            body: Vec::new(),
            expect: unrouted,
        },
    ];
    for traversal in [
        "/../x",
        "/..",
        "/./x",
        "/%2e%2e/x",
        "/%2E%2e%2Fx",
        "/.%2e/x",
        "/%252e%252e/x",
        "/..%2fx",
        "/%5c..%5cx",
        "\\..\\x",
    ] {
        cases.push(Case {
            name: format!("path traversal {traversal:?}"),
            head: h(format!("{path}{traversal}").as_bytes(), &[], None),
            body: Vec::new(),
            expect: unrouted,
        });
    }
    if route.access != Access::Public {
        cases.push(Case {
            name: "a 10 KiB bearer token".into(),
            head: head(m, t, Some(&"x".repeat(10 * 1024)), &extra, None),
            body: Vec::new(),
            expect: Expect::Envelope(401, "unauthorized"),
        });
    }
    cases
}

/// The body cases of a route that reads JSON.
fn body_cases(route: &Route, token: &str) -> Vec<Case> {
    if route.body == BodyKind::Ignored {
        return Vec::new();
    }
    let bad = Expect::Envelope(400, "validation_failed");
    let mut bodies: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("malformed JSON", br#"{"value": }"#.to_vec(), bad),
        ("truncated JSON", br#"{"value": [1, 2"#.to_vec(), bad),
        ("not JSON at all", b"hello".to_vec(), bad),
        ("invalid UTF-8", b"{\"value\": \"\xff\xfe\"}".to_vec(), bad),
        ("an empty body", Vec::new(), bad),
        ("100 000 nested arrays", vec![b'['; 100_000], bad),
        ("a number out of range", br#"{"value": 1e999999}"#.to_vec(), bad),
    ];
    let (wrong, unknown): (Option<Value>, Option<Value>) = match route.body {
        BodyKind::SettingOne => (Some(json!({"value": "two"})), Some(json!({"value": 1.0, "extra": true}))),
        BodyKind::SettingBatch => (Some(json!({"risk.max_volume": "two"})), Some(json!({"no.such.key": 1}))),
        BodyKind::Events => {
            (Some(json!({"type": "system"})), Some(json!([{"type": "system", "data": {}, "extra": 1}])))
        }
        BodyKind::Order => (
            Some(json!({"symbol": 5, "side": "buy", "type": "market", "volume": 0.1})),
            Some(json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1, "extra": 1})),
        ),
        BodyKind::Strategy => (
            Some(json!({"name": 5, "symbol": "EURUSD", "timeframe": "H1", "parameters": {}})),
            Some(json!({"name": "x", "symbol": "EURUSD", "timeframe": "H1", "parameters": {}, "extra": 1})),
        ),
        BodyKind::AnyJson | BodyKind::Ignored => (None, None),
    };
    if let Some(w) = wrong {
        bodies.push(("a wrong type", w.to_string().into_bytes(), bad));
    }
    if let Some(u) = unknown {
        bodies.push(("an unknown field", u.to_string().into_bytes(), bad));
    }
    if matches!(route.body, BodyKind::SettingOne | BodyKind::Order | BodyKind::Strategy) {
        bodies.push(("a duplicate field", br#"{"value": 1.0, "value": 2.0}"#.to_vec(), bad));
    }
    let extra: Vec<Vec<u8>> = route.extra.iter().map(|l| l.as_bytes().to_vec()).collect();
    let mut cases: Vec<Case> = bodies
        .into_iter()
        .map(|(name, body, expect)| Case {
            name: name.into(),
            head: head(route.method, route.target.as_bytes(), Some(token), &extra, Some(body.len())),
            body,
            expect,
        })
        .collect();
    let mut lines = extra.clone();
    lines.push(b"Content-Type: application/json".to_vec());
    lines.push(b"Transfer-Encoding: chunked".to_vec());
    cases.push(Case {
        name: "a 10 MiB chunked body".into(),
        head: head(route.method, route.target.as_bytes(), Some(token), &lines, None),
        body: chunked(&[b"[", &vec![b'1'; TEN_MIB][..], b"]"].concat()),
        expect: Expect::Envelope(413, "payload_too_large"),
    });
    cases
}

// ---------------------------------------------------------------------------------------------
// What must not change

/// What a hostile request could have written: settings versions, positions and strategies in the
/// simulated services, and the services' pids.
#[derive(Debug, PartialEq)]
struct Snapshot {
    versions: BTreeMap<String, Value>,
    positions: usize,
    strategies: usize,
    pids: Vec<Value>,
}

async fn snapshot(api: &Api) -> Snapshot {
    let settings = api.get("/api/settings").await;
    let versions =
        settings.data().as_object().unwrap().iter().map(|(k, v)| (k.clone(), v["version"].clone())).collect();
    let positions = api.get("/api/positions").await.data().as_array().map_or(0, Vec::len);
    let strategies = api.get("/api/strategies").await.data().as_array().map_or(0, Vec::len);
    let services = api.get("/api/services").await;
    let pids = services.data().as_array().unwrap().iter().map(|s| s["pid"].clone()).collect();
    Snapshot { versions, positions, strategies, pids }
}

async fn platform() -> TestApp {
    let services = Services::new();
    let app = TestApp::spawn_with_env(&services.toml(true, "", |_| vec!["--quiet".into()]), FAST).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    app
}

fn check(case: &Case, route: &Route, got: &Raw) {
    let what = format!("{} {} ({}): {}", route.method, route.target, route.pattern, case.name);
    assert!(got.status < 500, "{what}: a server error: {}", got.describe());
    match case.expect {
        Expect::Envelope(status, code) => got.assert_envelope(status, code, &what),
        Expect::OneOf(allowed) => {
            let code = got.json().map(|b| b["code"].clone()).unwrap_or_default();
            let (status, code) = allowed
                .iter()
                .find(|(s, c)| *s == got.status && code == *c)
                .unwrap_or_else(|| panic!("{what}: expected one of {allowed:?}: {}", got.describe()));
            got.assert_envelope(*status, code, &what);
        }
        Expect::Protocol(status) => assert_eq!(got.status, status, "{what}: {}", got.describe()),
        Expect::NoServerError => {
            if let Some(id) = got.header("x-request-id") {
                assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)), "{what}: id {id:?}");
            }
        }
    }
}

fn health_answers(port: u16) -> bool {
    raw_exchange(port, &head("GET", b"/api/health", None, &[], None), &[]).status == 200
}

#[actix_rt::test]
async fn every_route_refuses_hostile_input_with_its_documented_4xx() {
    let app = platform().await;
    let api = app.client();
    let pid = app.pid();
    let before = snapshot(&api).await;
    let routes = routes();
    assert!(routes.len() >= 30, "{} routes", routes.len());
    let mut count = 0;
    let started = Instant::now();
    for route in &routes {
        for case in generic_cases(route, &app.token).into_iter().chain(body_cases(route, &app.token)) {
            let got = raw_exchange(app.port, &case.head, &case.body);
            check(&case, route, &got);
            count += 1;
        }
        assert!(alive(pid), "the orchestrator died during {} {}\n{}", route.method, route.target, app.log());
        assert!(health_answers(app.port), "health stopped answering after {} {}", route.method, route.target);
    }
    assert_eq!(app.pid(), pid);
    assert_eq!(snapshot(&api).await, before, "a hostile request wrote something");
    assert!(!app.log().contains("panicked"), "a panic was logged");
    eprintln!("{count} hostile requests over {} routes in {:?}", routes.len(), started.elapsed());
}

#[actix_rt::test]
async fn slow_and_silent_clients_are_cut_off_without_slowing_anyone() {
    // 200 connections that send half a request head and then nothing, and one that trickles a
    // byte every 300 ms: actix's request-head timeout (5 s) answers 408 and closes each, and the
    // gateway keeps answering everyone else meanwhile.
    let app = TestApp::spawn(&Services::new().toml(false, "", |_| Vec::new())).await;
    let port = app.port;
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s
        })
        .collect();
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let t = Instant::now();
        for b in head {
            if s.write_all(&[*b]).is_err() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("a client trickling its request head for {:?} was never cut off", t.elapsed());
    });
    for _ in 0..20 {
        let t = Instant::now();
        assert!(health_answers(port));
        assert!(t.elapsed() < Duration::from_millis(500), "health took {:?} beside slow clients", t.elapsed());
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, s) in silent.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "silent client {i}: {text:?}");
    }
    let cut = started.elapsed();
    assert!(cut < Duration::from_secs(12), "the silent clients were held for {cut:?}");
    let trickled = trickler.join().unwrap();
    assert!(trickled < Duration::from_secs(12), "the trickler was held for {trickled:?}");
    assert!(health_answers(port));
    eprintln!("200 silent clients and a trickler cut off after {cut:?} / {trickled:?}");
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames

/// A raw WebSocket client: the upgrade by hand, then frames as bytes.
struct RawWs {
    stream: TcpStream,
    read: Vec<u8>,
}

impl RawWs {
    fn connect(port: u16) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAccept-Language: en\r\n\r\n",
            )
            .unwrap();
        let mut read = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the upgrade");
            read.extend_from_slice(&chunk[..n]);
        };
        assert!(read.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&read));
        RawWs { stream, read: read[end..].to_vec() }
    }

    /// Sends bytes; `false` when the server has already closed.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    fn auth(&mut self, token: &str) {
        assert!(self.send(&frame(0x1, json!({"id": 1, "type": "auth", "token": token}).to_string().as_bytes())));
        match self.next() {
            Some(Got::Text(v)) => assert_eq!(v["type"], "auth_ok", "{v}"),
            other => panic!("no auth_ok: {other:?}"),
        }
    }

    /// The next text or close frame from the server; `None` when the connection ends without one.
    fn next(&mut self) -> Option<Got> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if self.read.len() >= 2 {
                let len7 = usize::from(self.read[1] & 0x7f);
                let (len, at) = match len7 {
                    126 if self.read.len() >= 4 => (usize::from(u16::from_be_bytes([self.read[2], self.read[3]])), 4),
                    127 if self.read.len() >= 10 => {
                        (usize::try_from(u64::from_be_bytes(self.read[2..10].try_into().unwrap())).unwrap(), 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.read.len() >= at + len {
                    let opcode = self.read[0] & 0x0f;
                    let payload = self.read[at..at + len].to_vec();
                    self.read.drain(..at + len);
                    match opcode {
                        0x1 => return Some(Got::Text(serde_json::from_slice(&payload).unwrap())),
                        0x8 => {
                            let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                            return Some(Got::Close(code));
                        }
                        _ => continue,
                    }
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn next_close(&mut self) -> Option<u16> {
        loop {
            match self.next() {
                Some(Got::Close(code)) => return code,
                Some(Got::Text(_)) => continue,
                None => return None,
            }
        }
    }
}

#[derive(Debug)]
enum Got {
    Text(Value),
    Close(Option<u16>),
}

/// A client frame: FIN set, masked (as clients must), with this opcode and payload.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(0x80 | opcode, true, payload.len() as u64, payload)
}

fn frame_with(first: u8, masked: bool, declared: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let m = if masked { 0x80 } else { 0 };
    if declared < 126 {
        out.push(m | declared as u8);
    } else if declared <= u64::from(u16::MAX) {
        out.push(m | 126);
        out.extend_from_slice(&(declared as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&declared.to_be_bytes());
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

#[actix_rt::test]
async fn websocket_garbage_at_the_frame_level_gets_close_codes_and_costs_nothing() {
    let app = TestApp::spawn_with_env(&Services::new().toml(false, "", |_| Vec::new()), FAST).await;
    let api = app.client();
    let port = app.port;
    let token = app.token.clone();
    let pid = app.pid();
    let ten_thousand: Vec<String> = (0..10_000).map(|i| format!("tick:S{i}")).collect();
    let subscribe_10k = json!({"id": 2, "type": "subscribe", "topics": ten_thousand}).to_string();

    // (what, authenticate first, bytes, the close code expected)
    type WsCase = (&'static str, bool, Vec<u8>, Option<u16>);
    let cases: Vec<WsCase> = vec![
        ("a binary frame before auth", false, frame(0x2, b"\x00\x01"), Some(4001)),
        ("invalid JSON before auth", false, frame(0x1, b"{nope"), Some(4001)),
        ("a subscribe to 10 000 topics before auth", false, frame(0x1, subscribe_10k.as_bytes()), Some(1009)),
        ("a subscribe to 10 000 topics", true, frame(0x1, subscribe_10k.as_bytes()), Some(1009)),
        ("a 1 MiB binary frame", true, frame(0x2, &vec![0u8; 1 << 20]), Some(1009)),
        ("an unmasked frame", true, frame_with(0x81, false, 15, br#"{"type":"ping"}"#), Some(1002)),
        ("a text frame that is not UTF-8", true, frame(0x1, b"\xff\xfe\xfd"), Some(1007)),
        ("a reserved opcode", true, frame(0x3, b"x"), Some(1002)),
        ("a continuation with nothing to continue", true, frame(0x0, b"abc"), Some(1002)),
        ("a control frame over 125 bytes", true, frame(0x9, &[b'p'; 200]), Some(1002)),
        ("reserved bits set", true, frame_with(0xF1, true, 2, b"{}"), Some(1002)),
        ("a frame declaring 2^40 bytes", true, frame_with(0x82, true, 1 << 40, b"aaaa"), Some(1009)),
        ("a frame declaring 2^40 bytes before auth", false, frame_with(0x82, true, 1 << 40, b"aaaa"), Some(1009)),
    ];
    for (what, authenticate, bytes, expected) in cases {
        let mut ws = RawWs::connect(port);
        if authenticate {
            ws.auth(&token);
        }
        ws.send(&bytes);
        let code = ws.next_close();
        assert_eq!(code, expected, "{what}");
    }
    // Messages the protocol refuses keep the connection open with an error reply.
    let mut ws = RawWs::connect(port);
    ws.auth(&token);
    for (text, code) in [
        ("[1,2,3]", "invalid_message"),
        (r#"{"id":3,"type":"hello"}"#, "unknown_type"),
        (r#"{"id":4,"type":"subscribe","topics":["tick:EUR USD"]}"#, "invalid_message"),
    ] {
        assert!(ws.send(&frame(0x1, text.as_bytes())));
        match ws.next() {
            Some(Got::Text(v)) => {
                assert_eq!(v["type"], "error", "{text}: {v}");
                assert_eq!(v["code"], code, "{text}: {v}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert!(ws.send(&frame(0x2, b"bin")));
    match ws.next() {
        Some(Got::Text(v)) => assert_eq!(v["code"], "unsupported", "{v}"),
        other => panic!("binary: {other:?}"),
    }
    drop(ws);

    // A header that announces a huge frame, then 64 MiB of it: the gateway stops at the header
    // instead of buffering (before authentication too), and drops the connection.
    let baseline = rss_kib(pid);
    let mut bomb = RawWs::connect(port);
    assert!(bomb.send(&frame_with(0x82, true, 1 << 40, &[])));
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    while sent < 64 && bomb.send(&chunk) {
        sent += 1;
    }
    let grown = rss_kib(pid).saturating_sub(baseline);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB while {sent} MiB of one frame were sent");
    bomb.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    let ended = loop {
        match bomb.stream.read(&mut sink) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(ended, "the connection is dropped ({:?})", started.elapsed());
    drop(bomb);

    eventually("every hostile client to be gone", LONG, || async {
        api.get("/api/hub/clients").await.data().as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
    assert!(alive(pid) && health_answers(port));
}

// ---------------------------------------------------------------------------------------------
// Access control

#[actix_rt::test]
async fn every_route_enforces_its_role_for_every_kind_of_token() {
    let app = platform().await;
    let api = app.client();
    let before = snapshot(&api).await;
    let viewer = app.create_token("hostile-viewer", "viewer");
    let service = app.create_token("hostile-service", "service");
    let operator = app.token.clone();
    let tokens: [(&str, Option<&str>, Option<gateway_core::Role>); 4] = [
        ("anonymous", None, None),
        ("viewer", Some(viewer.as_str()), Some(gateway_core::Role::Viewer)),
        ("service", Some(service.as_str()), Some(gateway_core::Role::Service)),
        ("operator", Some(operator.as_str()), Some(gateway_core::Role::Operator)),
    ];
    let mut checked = 0;
    for route in routes() {
        let body = route.harmless_body().map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let extra: Vec<Vec<u8>> = route.extra.iter().map(|l| l.as_bytes().to_vec()).collect();
        for (who, token, role) in &tokens {
            let len = (!body.is_empty()).then_some(body.len());
            let got = raw_exchange(app.port, &head(route.method, route.target.as_bytes(), *token, &extra, len), &body);
            let what = format!("{who} {} {} ({})", route.method, route.target, route.pattern);
            assert!(got.status < 500, "{what}: {}", got.describe());
            let permitted = route.access == Access::Public || role.is_some_and(|r| r.permits(route.access));
            if permitted {
                assert!(![401, 403].contains(&got.status), "{what} must pass: {}", got.describe());
            } else if role.is_none() {
                got.assert_envelope(401, "unauthorized", &what);
            } else {
                got.assert_envelope(403, "forbidden", &what);
            }
            checked += 1;
        }
    }
    assert!(checked >= 120, "{checked} checks");
    assert_eq!(snapshot(&api).await, before, "an access check wrote something");
}

#[actix_rt::test]
async fn tokens_are_stored_only_as_hashes_and_compared_in_constant_time() {
    use std::os::unix::fs::PermissionsExt;
    let mut app = TestApp::spawn(&Services::new().toml(false, "", |_| Vec::new())).await;
    let mut tokens = vec![app.token.clone()];
    for (name, role) in [("t-viewer", "viewer"), ("t-operator", "operator"), ("t-service", "service")] {
        tokens.push(app.create_token(name, role));
    }
    // Use every token (so `last_used_at` is written too), then stop cleanly and start again.
    for t in &tokens {
        let r = raw_exchange(app.port, &head("GET", b"/api/services", Some(t), &[], None), &[]);
        assert!([200, 403].contains(&r.status), "{}", r.describe());
    }
    let mode =
        |app: &TestApp| std::fs::metadata(app.data_dir().join("admin.token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app), 0o600);
    let _ = app.signal_and_wait(nix::sys::signal::Signal::SIGTERM, LONG);
    app.start().await;
    assert_eq!(mode(&app), 0o600, "still private after a restart");
    assert_eq!(app.token, tokens[0], "the admin token is created once");

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("setup.db") {
            stored.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!stored.is_empty());
    for t in &tokens {
        let secret = t.trim_start_matches(settings::TOKEN_PREFIX);
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "a token's secret part is stored");
        let hash = settings::token_hash(t);
        assert!(stored.windows(hash.len()).any(|w| w == hash.as_bytes()), "the SHA-256 of each token is stored");
    }
    // Constant time: the presented token is hashed and looked up by its hash (so lookup timing
    // says nothing about stored tokens), then the stored hash is compared with
    // `subtle::ConstantTimeEq`. A timing measurement cannot resolve this over HTTP, so the
    // property is checked where it lives.
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/settings/src/tokens.rs")).unwrap();
    let verify = source.split("pub fn verify_token").nth(1).expect("verify_token exists");
    let verify = verify.split("\n    pub fn ").next().unwrap_or(verify);
    assert!(verify.contains("WHERE token_hash = ?1"), "tokens are looked up by hash");
    assert!(verify.contains(".ct_eq("), "the stored hash is compared in constant time");
    assert!(!verify.contains("== hash") && !verify.contains("hash =="), "no short-circuit comparison of hashes");
    // The verifier's memory of accepted tokens is keyed by the same hash, never by the token.
    let verifier =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/settings/src/verifier.rs")).unwrap();
    for f in ["pub fn cached(", "pub fn verify("] {
        let body = verifier.split(f).nth(1).and_then(|b| b.split("\n    }").next()).unwrap_or("");
        assert!(body.contains("token_hash(token)"), "TokenVerifier::{f}…) keys by the token's hash");
    }
}

#[actix_rt::test]
async fn cors_refuses_unknown_origins_and_allows_configured_ones() {
    let allowed = "https://app.example.com";
    let config = format!(
        "[gateway]\ncors_allowed_origins = [\"{allowed}/\"]\n\n{}",
        Services::new().toml(false, "", |_| Vec::new())
    );
    let app = TestApp::spawn(&config).await;
    let port = app.port;
    let own = format!("http://127.0.0.1:{port}");
    let token = app.token.clone();
    let request = |method: &str, target: &str, lines: &[String], auth: bool| {
        let mut all: Vec<Vec<u8>> = vec![format!("Host: 127.0.0.1:{port}").into_bytes()];
        all.extend(lines.iter().map(|l| l.clone().into_bytes()));
        // `head` adds its own Host line; the first Host wins in actix, so put ours first.
        let mut h = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
        for l in &all {
            h.extend_from_slice(l);
            h.extend_from_slice(b"\r\n");
        }
        if auth {
            h.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
        }
        h.extend_from_slice(b"Connection: close\r\n\r\n");
        raw_exchange(port, &h, &[])
    };
    let preflight = |origin: &str| {
        request(
            "OPTIONS",
            "/api/settings/ui.language",
            &[
                format!("Origin: {origin}"),
                "Access-Control-Request-Method: PUT".into(),
                "Access-Control-Request-Headers: authorization, content-type".into(),
            ],
            false,
        )
    };
    // Unknown origins: refused, preflight and actual request alike, with no CORS grant.
    for origin in ["https://evil.example", "null", "https://app.example.com.evil.example", "http://app.example.com"] {
        let r = preflight(origin);
        r.assert_envelope(403, "forbidden", &format!("preflight from {origin}"));
        assert_eq!(r.header("access-control-allow-origin"), None);
        let r = request("GET", "/api/settings", &[format!("Origin: {origin}")], true);
        r.assert_envelope(403, "forbidden", &format!("GET from {origin}"));
        assert_eq!(r.header("access-control-allow-origin"), None);
        let r = request("GET", "/api/health", &[format!("Origin: {origin}")], false);
        r.assert_envelope(403, "forbidden", &format!("public GET from {origin}"));
    }
    // A cross-origin WebSocket from an unknown page is refused before the upgrade.
    let r = request(
        "GET",
        "/ws",
        &[
            "Origin: https://evil.example".into(),
            "Upgrade: websocket".into(),
            "Connection: Upgrade".into(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
            "Sec-WebSocket-Version: 13".into(),
        ],
        false,
    );
    r.assert_envelope(403, "forbidden", "WebSocket from an unknown origin");

    // The configured origin and the gateway's own origin are allowed.
    for origin in [allowed, own.as_str()] {
        let r = preflight(origin);
        assert_eq!(r.status, 200, "preflight from {origin}: {}", r.describe());
        assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(origin));
        assert!(r.header("access-control-allow-methods").is_some_and(|m| m.contains("PUT")), "{}", r.describe());
        let headers = r.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
        let r = request("GET", "/api/settings", &[format!("Origin: {origin}")], true);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(origin));
        let exposed = r.header("access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(exposed.contains("x-request-id") && exposed.contains("etag"), "{exposed}");
    }
    // No Origin (curl, services): nothing to decide.
    let r = request("GET", "/api/settings", &[], true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A preflight must name its origin.
    let r = request("OPTIONS", "/api/settings", &["Access-Control-Request-Method: PUT".into()], false);
    r.assert_envelope(400, "validation_failed", "preflight without Origin");

    // Same-origin only by default: the origin configured above is refused by a default config.
    let default = TestApp::spawn(&Services::new().toml(false, "", |_| Vec::new())).await;
    let r = raw_exchange(
        default.port,
        &head("GET", b"/api/health", None, &[format!("Origin: {allowed}").into_bytes()], None),
        &[],
    );
    r.assert_envelope(403, "forbidden", "a default config and a foreign origin");
    assert!(app.log().contains("refused a cross-origin"), "refusals are logged");
}

#[actix_rt::test]
async fn listening_on_every_interface_logs_a_clear_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("orchestrator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let config = dir.path().join("orchestrator.toml");
    std::fs::write(&config, Services::new().toml(false, "", |_| Vec::new())).unwrap();
    let mut child = std::process::Command::new(exe())
        .arg("--config")
        .arg(&config)
        .args(["--bind", &format!("0.0.0.0:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = awc::Client::default();
    eventually("the orchestrator to answer on 127.0.0.1", LONG, || {
        let req = client.get(format!("http://127.0.0.1:{port}/api/health")).timeout(Duration::from_millis(500));
        async move { req.send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    let warning =
        text.lines().find(|l| l.contains("WARN") && l.contains("0.0.0.0")).unwrap_or_else(|| panic!("{text}"));
    assert!(warning.contains("reachable from other machines"), "{warning}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();

    // The loopback default logs no such warning.
    let app = TestApp::spawn(&Services::new().toml(false, "", |_| Vec::new())).await;
    assert!(!app.log().contains("reachable from other machines"), "{}", app.log());
}
