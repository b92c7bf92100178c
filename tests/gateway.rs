//! Black-box tests of the gateway (SPEC §4, §5, §9): validated forwarding, path safety, fast
//! fail, timeouts and downstream errors, envelope handling, the dashboard aggregate, settings
//! propagation, `/metrics` and `/api/openapi.json`. The real binary, the real simulated
//! services, and a tiny capturing HTTP upstream for what the simulator cannot show (headers,
//! envelopes, garbage).
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ONLINE: Duration = Duration::from_secs(20);

/// Starts the app and waits until every listed service is online.
async fn app_with(config: &str, online: &[&str]) -> TestApp {
    let app = TestApp::spawn_with_env(config, FAST).await;
    let api = app.client();
    for name in online {
        api.wait_status(name, "online", ONLINE).await;
    }
    app
}

/// The `METHOD /path` of each request line in a simulator's captured output, counted.
fn request_counts(lines: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lines {
        let mut parts = line.split(' ');
        if let (Some(method), Some(path), Some(status)) = (parts.next(), parts.next(), parts.next())
            && method.chars().all(|c| c.is_ascii_uppercase())
            && path.starts_with('/')
            && status.parse::<u16>().is_ok()
        {
            *out.entry(format!("{method} {path}")).or_insert(0) += 1;
        }
    }
    out
}

static FLUSHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sends one request per service that must reach it, and waits until each shows up in that
/// service's log: every earlier request line is then in the log too (one writer, in order).
async fn flush_logs(api: &Api, services: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for (service, resource) in services {
        let n = FLUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("/{resource}/flush-{n}");
        let r = api.get(&format!("/api{marker}")).await;
        assert_eq!(r.status, 404, "the flush marker reaches {service}: {:?}", r.body);
        let key = format!("GET {marker}");
        let counts = eventually(&format!("{service} to log {key}"), Duration::from_secs(10), || {
            let key = key.clone();
            async move {
                let counts = request_counts(&api.service_log(service).await);
                counts.contains_key(&key).then_some(counts)
            }
        })
        .await;
        out.insert((*service).to_owned(), counts);
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Forwarded; the gateway answers with this status.
    Forwarded(u16),
    /// 400 naming this field, never forwarded.
    Invalid(&'static str),
}

struct Case {
    method: &'static str,
    target: String,
    body: Option<Vec<u8>>,
    expect: Expect,
}

fn get(target: &str, expect: Expect) -> Case {
    Case { method: "GET", target: target.to_owned(), body: None, expect }
}

fn send(method: &'static str, target: &str, body: Value, expect: Expect) -> Case {
    Case { method, target: target.to_owned(), body: Some(serde_json::to_vec(&body).unwrap()), expect }
}

fn send_raw(method: &'static str, target: &str, body: &[u8], expect: Expect) -> Case {
    Case { method, target: target.to_owned(), body: Some(body.to_vec()), expect }
}

/// The owning service of a target and the line it would log (`METHOD /path` without query).
fn downstream_key(case: &Case) -> (&'static str, String) {
    let path = case.target.strip_prefix("/api").unwrap();
    let path = path.split('?').next().unwrap();
    let resource = path.trim_start_matches('/').split('/').next().unwrap();
    let service = match resource {
        "ticks" | "ohlc" | "symbols" => "data",
        "account" | "positions" | "orders" => "mt5",
        "strategies" | "signals" => "strategy",
        "patterns" => "pattern",
        other => panic!("no service owns {other}"),
    };
    (service, format!("{} {path}", case.method))
}

fn validation_cases() -> Vec<Case> {
    use Expect::{Forwarded as F, Invalid as I};
    let long_symbol = "A".repeat(33);
    let mut cases = vec![
        // symbol: format everywhere, membership in `symbols` on the data service's resources.
        get("/api/ticks/latest?symbol=EURUSD", F(200)),
        get("/api/ticks/latest?symbol=XAUUSD", F(200)),
        get("/api/ticks/latest?symbol=EUR%20USD", I("symbol")),
        get("/api/ticks/latest?symbol=EUR+USD", I("symbol")),
        get("/api/ticks/latest?symbol=", I("symbol")),
        get(&format!("/api/ticks/latest?symbol={long_symbol}"), I("symbol")),
        get("/api/ticks/latest?symbol=-EURUSD", I("symbol")),
        get("/api/ticks/latest?symbol=EUR%2FUSD", I("symbol")),
        get("/api/ticks/latest?symbol=EUR%01USD", I("symbol")),
        get("/api/ticks/latest?symbol=%ZZ", I("symbol")),
        get("/api/ticks/latest?symbol=BTCUSD", I("symbol")),
        get("/api/ticks/latest?symbol=eurusd", I("symbol")),
        get("/api/ticks/latest?symbol=EURUSD&symbol=BTCUSD", I("symbol")),
        get("/api/positions?symbol=BTCUSD", F(200)),
        get("/api/patterns?symbol=BTCUSD&timeframe=H1", F(200)),
        get("/api/patterns?symbol=BTC%20USD", I("symbol")),
        // timeframe: one of the 21, never defaulted (a missing one reaches the service as is).
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=10", F(200)),
        get("/api/ohlc?symbol=GBPUSD&timeframe=MN1&count=1", F(200)),
        get("/api/ohlc?symbol=EURUSD&count=5", F(400)),
        get("/api/ohlc?symbol=EURUSD&timeframe=H5", I("timeframe")),
        get("/api/ohlc?symbol=EURUSD&timeframe=", I("timeframe")),
        get("/api/ohlc?symbol=EURUSD&timeframe=h1", I("timeframe")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1%20", I("timeframe")),
        get("/api/patterns?timeframe=X1", I("timeframe")),
        // count: 1..=100000.
        get("/api/ohlc?symbol=EURUSD&timeframe=M1&count=100000", F(200)),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=0", I("count")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=100001", I("count")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=-1", I("count")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=ten", I("count")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=1.5", I("count")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&count=", I("count")),
        get("/api/signals?count=0", I("count")),
        // from/to: RFC 3339 or unix ms, from ≤ to.
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00%2B02:00", F(200)),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=1700000000000&to=1700000000000", F(200)),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=yesterday", I("from")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=2024-01-01", I("from")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&to=2024-13-01T00:00:00Z", I("to")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=1700000000001&to=1700000000000", I("from")),
        get("/api/ohlc?symbol=EURUSD&timeframe=H1&from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", I("from")),
        // Control characters in any query value.
        get("/api/symbols?note=a%0Ab", I("note")),
        get("/api/symbols", F(200)),
    ];
    let market = json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1});
    let with = |patch: Value| {
        let mut o = market.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        o
    };
    // POST /api/orders: the whole body is typed.
    cases.extend([
        send("POST", "/api/orders", market.clone(), F(200)),
        send(
            "POST",
            "/api/orders",
            json!({"symbol": "EURUSD", "side": "sell", "type": "limit", "volume": 1.0, "price": 5.0, "sl": 6.0, "tp": 4.0}),
            F(200),
        ),
        send("POST", "/api/orders", with(json!({"symbol": null})), I("symbol")),
        send("POST", "/api/orders", with(json!({"symbol": "EUR USD"})), I("symbol")),
        send("POST", "/api/orders", with(json!({"symbol": 5})), I("symbol")),
        send("POST", "/api/orders", with(json!({"side": null})), I("side")),
        send("POST", "/api/orders", with(json!({"side": "long"})), I("side")),
        send("POST", "/api/orders", with(json!({"type": "fok"})), I("type")),
        send("POST", "/api/orders", with(json!({"volume": 0})), I("volume")),
        send("POST", "/api/orders", with(json!({"volume": -1})), I("volume")),
        send("POST", "/api/orders", with(json!({"volume": 1.5})), I("volume")),
        send("POST", "/api/orders", with(json!({"volume": "0.1"})), I("volume")),
        send("POST", "/api/orders", with(json!({"type": "limit"})), I("price")),
        send("POST", "/api/orders", with(json!({"type": "stop", "price": -1})), I("price")),
        send("POST", "/api/orders", with(json!({"sl": 1.2, "tp": 1.1})), I("sl")),
        send("POST", "/api/orders", with(json!({"type": "limit", "price": 1.0, "sl": 1.01})), I("sl")),
        send("POST", "/api/orders", with(json!({"comment": "x".repeat(40)})), I("comment")),
        send("POST", "/api/orders", with(json!({"leverage": 500})), I("leverage")),
        send("POST", "/api/orders", json!([market.clone()]), I("body")),
        send_raw("POST", "/api/orders", br#"{"symbol": "EURUSD","#, I("body")),
        send_raw("POST", "/api/orders", b"{\"symbol\": \"EUR\xffUSD\"}", I("body")),
        send_raw("POST", "/api/orders", b"", I("body")),
    ]);
    // POST /api/strategies: name, symbol, timeframe, parameters.
    let strategy = json!({"name": "MA cross", "symbol": "EURUSD", "timeframe": "H1", "parameters": {"fast": 5}});
    let strat = |patch: Value| {
        let mut o = strategy.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        o
    };
    cases.extend([
        send("POST", "/api/strategies", strategy.clone(), F(201)),
        send("POST", "/api/strategies", strat(json!({"name": "x".repeat(64)})), F(201)),
        send("POST", "/api/strategies", strat(json!({"name": ""})), I("name")),
        send("POST", "/api/strategies", strat(json!({"name": "   "})), I("name")),
        send("POST", "/api/strategies", strat(json!({"name": "x".repeat(65)})), I("name")),
        send("POST", "/api/strategies", strat(json!({"name": "a\u{7}b"})), I("name")),
        send("POST", "/api/strategies", strat(json!({"name": null})), I("name")),
        send("POST", "/api/strategies", strat(json!({"symbol": "EUR/USD"})), I("symbol")),
        send("POST", "/api/strategies", strat(json!({"timeframe": "H7"})), I("timeframe")),
        send("POST", "/api/strategies", strat(json!({"timeframe": null})), I("timeframe")),
        send("POST", "/api/strategies", strat(json!({"parameters": [1]})), I("parameters")),
        send("POST", "/api/strategies", strat(json!({"parameters": null})), I("parameters")),
        send("POST", "/api/strategies", strat(json!({"owner": "me"})), I("owner")),
        // Other bodies: the common fields wherever they appear at the top level.
        send("PUT", "/api/strategies/no-such-id", json!({"name": "renamed"}), F(404)),
        send("PUT", "/api/strategies/no-such-id", json!({"timeframe": "H7"}), I("timeframe")),
        send("PUT", "/api/strategies/no-such-id", json!({"symbol": 5}), I("symbol")),
        send("PUT", "/api/strategies/no-such-id", json!({"count": 0}), I("count")),
    ]);
    cases
}

#[actix_rt::test]
async fn every_validation_rule_is_enforced_before_forwarding() {
    let services = Services::new();
    // The domain rules alone: without contracts (tests/contracts.rs has those), so the flush
    // markers, paths no contract names, reach the services.
    let config = services.toml(true, "openapi_path = \"\"", |_| Vec::new());
    let app = app_with(&config, &["data", "mt5", "strategy", "pattern"]).await;
    let api = app.client();
    let before =
        flush_logs(&api, &[("data", "ticks"), ("mt5", "account"), ("strategy", "signals"), ("pattern", "patterns")])
            .await;

    let cases = validation_cases();
    let mut expected: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for case in &cases {
        let req = api.request(case.method, &case.target).insert_header(("Content-Type", "application/json"));
        let r = api.send(req, case.body.clone()).await;
        let what =
            format!("{} {} {}", case.method, case.target, String::from_utf8_lossy(case.body.as_deref().unwrap_or(b"")));
        let key = downstream_key(case);
        expected.entry(key.clone()).or_insert(0);
        match case.expect {
            Expect::Forwarded(status) => {
                assert_eq!(r.status, status, "{what}: {:?}", r.body);
                assert_envelope(&r.body);
                *expected.get_mut(&key).unwrap() += 1;
            }
            Expect::Invalid(field) => {
                r.assert_error(400, "validation_failed");
                let message = r.body["error"].as_str().unwrap();
                assert!(
                    message.starts_with(&format!("Érvénytelen kérés: {field} – ")),
                    "{what}: the message names {field}: {message}"
                );
            }
        }
    }

    // Nothing invalid arrived: each service saw exactly the valid requests.
    let after =
        flush_logs(&api, &[("data", "ticks"), ("mt5", "account"), ("strategy", "signals"), ("pattern", "patterns")])
            .await;
    for ((service, key), want) in &expected {
        let seen = after[*service].get(key).copied().unwrap_or(0) - before[*service].get(key).copied().unwrap_or(0);
        assert_eq!(seen, *want, "{service} saw {key} {seen} times, expected {want}");
    }

    // English messages name the field too.
    let r = api
        .send(api.request("GET", "/api/ohlc?symbol=EURUSD&timeframe=H9").insert_header(("Accept-Language", "en")), None)
        .await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().starts_with("Invalid request: timeframe – "), "{:?}", r.body);
}

#[actix_rt::test]
async fn unsafe_paths_are_refused_and_never_forwarded() {
    let services = Services::new();
    let app = app_with(&services.toml(true, "openapi_path = \"\"", |_| Vec::new()), &["data"]).await;
    let api = app.client();
    let before = flush_logs(&api, &[("data", "ticks")]).await;
    let targets = [
        "/api/ticks/../settings",
        "/api/ticks/latest/../../settings",
        "/api/../api/settings",
        "/api/ticks/./latest",
        "/api/ticks/..",
        "/api/ticks/%2e%2e/settings",
        "/api/ticks/%2E%2E/settings",
        "/api/ticks/.%2e/settings",
        "/api/ticks/%2e./settings",
        "/api/ticks/%252e%252e/settings",
        "/api/ticks/%25252e%25252e/settings",
        "/api/ticks/a%2fb",
        "/api/ticks/%2F..%2Fsettings",
        "/api/ticks/a\\b",
        "/api/ticks/..\\..\\settings",
        "/api/ticks/a%5cb",
        "/api/ticks/%5C..%5Csettings",
        "/api/ticks/a%00b",
        "/api/ticks/latest%00.json",
        "/api/ticks/a%0d%0aX-Injected:%20yes",
        "/api/ticks/a%7f",
        "/api/nowhere/../ticks/latest",
    ];
    for target in targets {
        let (status, body) = raw_get(app.port, target, &app.token);
        assert_eq!(status, 400, "{target}: {body}");
        assert_envelope(&body);
        assert_eq!(body["code"], "validation_failed", "{target}: {body}");
        assert!(body["error"].as_str().unwrap().starts_with("Érvénytelen kérés: path – "), "{target}: {body}");
    }
    // Raw control bytes never get past the HTTP parser.
    for target in ["/api/ticks/a\0b", "/api/ticks/a\x01b"] {
        let (status, _) = raw_get(app.port, target, &app.token);
        assert_eq!(status, 400, "{target:?}");
    }
    // A plain dot inside a segment is fine.
    let (status, body) = raw_get(app.port, "/api/ticks/..latest", &app.token);
    assert_eq!(status, 404, "{body}");

    let after = flush_logs(&api, &[("data", "ticks")]).await;
    let forwarded: Vec<&String> = after["data"]
        .keys()
        // (The gateway's own calls — settings pushes, the events socket — do not count.)
        .filter(|k| k.starts_with("GET /ticks") && !k.contains("/flush-"))
        .filter(|k| before["data"].get(*k) != after["data"].get(*k))
        .collect();
    assert_eq!(forwarded, vec!["GET /ticks/..latest"], "only the harmless path reached the data service");
}

/// A tiny HTTP/1.1 upstream that answers by path, for what the simulator cannot show:
/// `/echo/request` echoes method, path, headers and body; the others answer fixed bodies.
/// `stop` closes the listener and every connection (at its next request).
struct CaptureUpstream {
    port: u16,
    stopped: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl CaptureUpstream {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.closed.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the capture upstream did not close");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn capture_upstream() -> CaptureUpstream {
    let listener = common::unique_listener();
    let port = listener.local_addr().unwrap().port();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let closed = Arc::new(AtomicBool::new(false));
    let done = closed.clone();
    // Requests seen per `/echo/flaky…` path: the first of each is dropped unanswered.
    let flaky: Arc<std::sync::Mutex<BTreeMap<String, u32>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if flag.load(Ordering::SeqCst) {
                drop(listener);
                done.store(true, Ordering::SeqCst);
                return;
            }
            let flag = flag.clone();
            let flaky = flaky.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, target) =
                        (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
                    let mut headers = serde_json::Map::new();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            let k = k.trim().to_ascii_lowercase();
                            if k == "content-length" {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            headers.insert(k, Value::String(v.trim().to_owned()));
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let path = target.split('?').next().unwrap_or("");
                    if path.starts_with("/echo/flaky") {
                        let attempt = {
                            let mut seen = flaky.lock().unwrap();
                            let n = seen.entry(path.to_owned()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        if attempt == 1 {
                            // Closed without a byte of an answer: the request may or may not
                            // have been processed.
                            return;
                        }
                        let payload = json!({"method": method, "attempt": attempt}).to_string();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            payload.len()
                        );
                        if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(payload.as_bytes())).is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    let (status, payload): (u16, Vec<u8>) = match path {
                        "/health" => (200, br#"{"status":"ok"}"#.to_vec()),
                        "/echo/request" => (
                            200,
                            serde_json::to_vec(&json!({
                                "method": method, "target": target, "headers": headers,
                                "body": String::from_utf8_lossy(&body),
                            }))
                            .unwrap(),
                        ),
                        "/echo/envelope" => (
                            200,
                            br#"{"success": true, "data": {"x": 1}, "error": null, "code": null, "request_id": "theirs"}"#
                                .to_vec(),
                        ),
                        "/echo/envelope-404" => (
                            404,
                            r#"{"success": false, "data": null, "error": "Nincs ilyen stratégia.", "code": "not_found", "request_id": "theirs"}"#
                                .as_bytes()
                                .to_vec(),
                        ),
                        "/echo/plain" => (200, b"[1, 2, 3]".to_vec()),
                        "/echo/created" => (201, br#"{"id": 7}"#.to_vec()),
                        "/echo/empty" => (204, Vec::new()),
                        "/echo/missing" => (404, br#"{"error": "no such thing"}"#.to_vec()),
                        "/echo/conflict" => (409, br#"{"message": "already there"}"#.to_vec()),
                        "/echo/teapot" => (418, b"short and stout".to_vec()),
                        "/echo/garbage" => (200, b"<html>not json</html>".to_vec()),
                        "/echo/boom" => (500, br#"{"error": "database on fire"}"#.to_vec()),
                        "/echo/unavailable" => (503, b"".to_vec()),
                        _ => (404, br#"{"error": "unknown"}"#.to_vec()),
                    };
                    let reason = if status < 300 { "OK" } else { "Error" };
                    let head = format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        payload.len()
                    );
                    let head = if status == 204 { "HTTP/1.1 204 No Content\r\n\r\n".to_owned() } else { head };
                    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&payload)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    CaptureUpstream { port, stopped, closed }
}

fn echo_service(port: u16) -> String {
    format!("[[service]]\nname = \"echo\"\ndisplay_name = \"Echo Service\"\nroutes = [\"echo\"]\nport = {port}\n")
}

#[actix_rt::test]
async fn envelopes_statuses_and_headers_cross_the_gateway_as_specified() {
    let services = Services::new();
    let config = format!("{}{}", services.toml(true, "", |_| Vec::new()), echo_service(capture_upstream().port));
    let app = app_with(&config, &["echo", "strategy", "data"]).await;
    let api = app.client();

    // Headers: X-Request-Id (the client's, or the generated one) goes down; Authorization,
    // cookies and hop-by-hop headers do not. Method, query and body are kept.
    let req = api
        .request("PATCH", "/api/echo/request?symbol=EURUSD&x=1")
        .insert_header(("X-Request-Id", "client-chosen.42"))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Cookie", "session=secret"))
        .insert_header(("Proxy-Authorization", "Basic eDp5"))
        .insert_header(("TE", "trailers"))
        .insert_header(("Upgrade", "h2c"))
        .insert_header(("Accept-Language", "en"));
    let r = api.send(req, Some(br#"{"note": "hello"}"#.to_vec())).await;
    let seen = r.data();
    assert_eq!(r.header("x-request-id").as_deref(), Some("client-chosen.42"));
    assert_eq!(r.body["request_id"], "client-chosen.42");
    assert_eq!(seen["method"], "PATCH");
    assert_eq!(seen["target"], "/echo/request?symbol=EURUSD&x=1");
    assert_eq!(seen["body"], r#"{"note": "hello"}"#);
    let headers = seen["headers"].as_object().unwrap();
    assert_eq!(headers["x-request-id"], "client-chosen.42");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept-language"], "en");
    for dropped in ["authorization", "cookie", "proxy-authorization", "te", "upgrade"] {
        assert!(!headers.contains_key(dropped), "{dropped} was forwarded: {headers:?}");
    }
    let r = api.get("/api/echo/request").await;
    let generated = r.header("x-request-id").unwrap();
    assert_eq!(r.data()["headers"]["x-request-id"], generated.as_str(), "the generated id goes down too");
    assert!(!r.data()["headers"].as_object().unwrap().contains_key("authorization"));
    // A non-sane client id is replaced, and the replacement is what goes down.
    let r = api.send(api.request("GET", "/api/echo/request").insert_header(("X-Request-Id", "a b<c>")), None).await;
    assert_ne!(r.header("x-request-id").as_deref(), Some("a b<c>"));
    assert_eq!(r.data()["headers"]["x-request-id"], r.header("x-request-id").unwrap().as_str());

    // One retry, only for a GET, only when nothing was answered (SPEC §4): the service drops the
    // first request to each `/echo/flaky…` path without answering.
    let r = api.get("/api/echo/flaky-get").await;
    assert_eq!(r.status, 200, "the GET is sent again: {:?}", r.body);
    assert_eq!(r.data()["attempt"], 2, "{:?}", r.body);
    let r = api
        .send(
            api.request("POST", "/api/echo/flaky-post").insert_header(("Content-Type", "application/json")),
            Some(b"{}".to_vec()),
        )
        .await;
    // Refused (503) or broken (502), depending on when the service's close is seen; never retried.
    assert!(matches!(r.status, 502 | 503) && r.body["success"] == false, "{:?}", r.body);
    let r = api
        .send(
            api.request("POST", "/api/echo/flaky-post").insert_header(("Content-Type", "application/json")),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.data()["attempt"], 2, "the first POST was sent once, not retried: {:?}", r.body);

    // HEAD goes down as GET (the service routes GET only): the GET's status and headers, no body.
    let r = api.send(api.request("HEAD", "/api/echo/request?symbol=EURUSD"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, Value::String(String::new()), "a HEAD answer has no body");
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let r = api.send(api.request("HEAD", "/api/ticks/latest?symbol=EURUSD"), None).await;
    assert_eq!(r.status, 200, "the simulated data service, which has no HEAD routes: {:?}", r.body);

    // A downstream envelope passes through with the gateway's request id.
    let r = api.send(api.request("GET", "/api/echo/envelope").insert_header(("X-Request-Id", "mine")), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"success": true, "data": {"x": 1}, "error": null, "code": null, "request_id": "mine"}));
    let r = api.get("/api/echo/envelope-404").await;
    r.assert_error(404, "not_found");
    assert_eq!(r.body["error"], "Nincs ilyen stratégia.");
    // Any other JSON becomes `data`; the status is kept; an empty answer is `null`.
    let r = api.get("/api/echo/plain").await;
    assert_eq!((r.status, r.data()), (200, &json!([1, 2, 3])));
    let r = api.post("/api/echo/created").await;
    assert_eq!((r.status, r.data()), (201, &json!({"id": 7})));
    let r = api.send(api.request("DELETE", "/api/echo/empty"), None).await;
    assert_eq!((r.status, r.data()), (200, &Value::Null));
    // Downstream 4xx keep their status, with the service's words in the message.
    let r = api.get("/api/echo/missing").await;
    r.assert_error(404, "not_found");
    assert_eq!(r.body["error"], "A(z) Echo Service elutasította a kérést: no such thing");
    let r = api.post("/api/echo/conflict").await;
    r.assert_error(409, "conflict");
    assert!(r.body["error"].as_str().unwrap().ends_with("already there"), "{:?}", r.body);
    let r = api.get("/api/echo/teapot").await;
    r.assert_error(418, "validation_failed");
    assert_eq!(r.body["error"], "A(z) Echo Service elutasította a kérést: HTTP 418");
    let r = api.get("/api/strategies/no-such-id").await;
    r.assert_error(404, "not_found");
    assert!(r.body["error"].as_str().unwrap().starts_with("A(z) Strategy Service elutasította a kérést: "));
    let r = api.get("/api/ohlc?symbol=EURUSD").await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().contains("timeframe"), "{:?}", r.body);
    // Downstream 5xx and invalid JSON are 502 naming the service, without internals.
    let r = api.get("/api/echo/boom").await;
    r.assert_error(502, "upstream_error");
    assert_eq!(r.body["error"], "A(z) Echo Service hibát jelzett: database on fire");
    let r = api.get("/api/echo/unavailable").await;
    r.assert_error(502, "upstream_error");
    assert_eq!(r.body["error"], "A(z) Echo Service hibát jelzett: HTTP 503");
    let r = api.get("/api/echo/garbage").await;
    r.assert_error(502, "upstream_error");
    assert_eq!(r.body["error"], "A(z) Echo Service hibát jelzett: érvénytelen válasz (HTTP 200)");
    let r = api.send(api.request("GET", "/api/echo/garbage").insert_header(("Accept-Language", "en")), None).await;
    r.assert_error(502, "upstream_error");
    assert_eq!(r.body["error"], "Echo Service reported an error: invalid answer (HTTP 200)");
    // An unknown resource is 404 and goes nowhere.
    api.get("/api/nowhere/x").await.assert_error(404, "not_found");
    api.get("/api/nowhere").await.assert_error(404, "not_found");
}

#[actix_rt::test]
async fn down_slow_and_failing_services_answer_503_504_502_at_once() {
    let services = Services::new();
    let config = services.toml_by_role(true, |role| match role {
        "mt5" => (vec!["--fail-requests".into()], String::new()),
        "pattern" => (vec!["--response-delay-ms".into(), "5000".into()], "request_timeout_ms = 500".into()),
        _ => (Vec::new(), String::new()),
    });
    let app = app_with(&config, &["data", "mt5", "strategy", "pattern"]).await;
    let api = app.client();

    // Fast fail: a stopped service answers 503 without any wait (its timeout is 10 s).
    api.post("/api/services/strategy/stop").await.data();
    for _ in 0..3 {
        let started = Instant::now();
        let r = api.get("/api/strategies").await;
        let took = started.elapsed();
        r.assert_error(503, "service_unavailable");
        assert_eq!(r.body["error"], "A(z) Strategy Service jelenleg nem elérhető.");
        assert!(took < Duration::from_millis(1000), "fast fail took {took:?} (the timeout is 10 s)");
    }
    let r = api.send(api.request("GET", "/api/strategies").insert_header(("Accept-Language", "en")), None).await;
    assert_eq!(r.body["error"], "Strategy Service is currently unavailable.");

    // A hung service: 504 after its request_timeout_ms (500 ms), naming it.
    let started = Instant::now();
    let r = api.get("/api/patterns/latest").await;
    let took = started.elapsed();
    r.assert_error(504, "upstream_timeout");
    assert_eq!(r.body["error"], "A(z) Pattern Service nem válaszolt időben (0,5 mp).");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(2000), "504 took {took:?}");
    let r = api.send(api.request("GET", "/api/patterns").insert_header(("Accept-Language", "en")), None).await;
    r.assert_error(504, "upstream_timeout");
    assert_eq!(r.body["error"], "Pattern Service did not respond in time (0.5 s).");
    // Its health is fine, so it stays online.
    assert_eq!(api.get("/api/services/pattern").await.data()["status"], "online");

    // A service that answers 500: 502, for reads and writes alike.
    let r = api.get("/api/account").await;
    r.assert_error(502, "upstream_error");
    assert_eq!(r.body["error"], "A(z) MT5 Service hibát jelzett: internal error");
    let order = json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1});
    api.json("POST", "/api/orders", &order).await.assert_error(502, "upstream_error");

    // A service killed behind the supervisor's back: refused connections are 503, at once.
    let pid = api.get("/api/services/data").await.data()["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually("the data process to die", Duration::from_secs(5), || async move { (!alive(pid as u32)).then_some(()) })
        .await;
    let started = Instant::now();
    let r = api.get("/api/symbols").await;
    let took = started.elapsed();
    if r.status != 200 {
        // (The supervisor may already have restarted it; then 200 is right.)
        r.assert_error(503, "service_unavailable");
        assert!(took < Duration::from_millis(500), "refused connection took {took:?}");
    }
}

#[actix_rt::test]
async fn dashboard_aggregates_with_one_service_stopped_and_one_hung() {
    let services = Services::new();
    let config = services.toml_by_role(true, |role| match role {
        "pattern" => (vec!["--response-delay-ms".into(), "6000".into()], String::new()),
        _ => (Vec::new(), String::new()),
    });
    let app = app_with(&config, &["data", "mt5", "strategy", "pattern"]).await;
    let api = app.client();
    api.post("/api/services/strategy/stop").await.data();

    let started = Instant::now();
    let r = api.get("/api/dashboard").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-gateway-complete").as_deref(), Some("false"));
    assert!(took < Duration::from_millis(2500), "the 2 s budget holds: {took:?}");
    let data = r.data();
    let keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
    for key in ["account", "positions", "strategies", "patterns", "services", "meta"] {
        assert!(keys.contains(&key), "{key} is never omitted: {keys:?}");
    }
    assert!(data["account"]["balance"].is_number(), "{data}");
    assert!(data["positions"].is_array(), "{data}");
    assert_eq!(data["strategies"], Value::Null);
    assert_eq!(data["patterns"], Value::Null);
    assert_eq!(data["services"].as_array().unwrap().len(), 4);
    let meta = &data["meta"];
    assert_eq!(meta["complete"], false);
    let sources = &meta["sources"];
    assert_eq!(sources["mt5"]["status"], "ok", "{meta}");
    assert_eq!(sources["strategy"]["status"], "unavailable", "{meta}");
    assert_eq!(sources["strategy"]["error"], "A(z) Strategy Service jelenleg nem elérhető.");
    assert!(sources["strategy"]["latency_ms"].as_u64().unwrap() < 100, "a stopped service costs nothing: {meta}");
    assert_eq!(sources["pattern"]["status"], "timeout", "{meta}");
    assert_eq!(sources["pattern"]["error"], "A(z) Pattern Service nem válaszolt időben (2 mp).");
    assert!(sources["pattern"]["latency_ms"].as_u64().unwrap() >= 1900, "{meta}");

    // Every downstream part down: 503, still with the parts and why.
    api.post("/api/services/mt5/stop").await.data();
    api.post("/api/services/pattern/stop").await.data();
    let started = Instant::now();
    let r = api.get("/api/dashboard").await;
    assert!(started.elapsed() < Duration::from_millis(1000), "all down is answered at once (a part may take 2 s)");
    r.assert_error(503, "service_unavailable");
    assert_eq!(r.header("x-gateway-complete").as_deref(), Some("false"));
    let data = &r.body["data"];
    for part in ["account", "positions", "strategies", "patterns"] {
        assert_eq!(data[part], Value::Null, "{part}");
    }
    assert_eq!(data["meta"]["sources"]["mt5"]["status"], "unavailable");
}

/// A simulator this test runs itself (an external service to the orchestrator), killed when
/// dropped.
struct OutsideSim(std::process::Child);

impl OutsideSim {
    async fn start(role: &str, port: u16, flags: &[&str]) -> OutsideSim {
        let child = std::process::Command::new(exe())
            .args(["sim", role, "--quiet", "--port", &port.to_string()])
            .args(flags)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let sim = OutsideSim(child);
        let client = awc::Client::default();
        eventually(&format!("the outside {role} to answer /health"), ONLINE, || {
            let req = client.get(format!("http://127.0.0.1:{port}/health")).timeout(Duration::from_millis(500));
            async move { req.send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        sim
    }
}

impl Drop for OutsideSim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_rt::test]
async fn a_dashboard_request_in_flight_is_released_when_another_finds_the_source_hung() {
    // pattern's routes never answer, its health does; its part deadline is the 2 s budget.
    let services = Services::new();
    let config = services.toml_by_role(true, |role| match role {
        "pattern" => (vec!["--response-delay-ms".into(), "600000".into()], String::new()),
        _ => (Vec::new(), String::new()),
    });
    let app = app_with(&config, &["mt5", "strategy", "pattern"]).await;
    let api = app.client();
    // A starts; B starts a second later, while A is still waiting on pattern.
    let timed = |delay: Duration| {
        let api = &api;
        async move {
            actix_rt::time::sleep(delay).await;
            let started = Instant::now();
            let r = api.get("/api/dashboard").await;
            (started, Instant::now(), r)
        }
    };
    let ((a_start, a_end, a), (b_start, b_end, b)) =
        futures_util::future::join(timed(Duration::ZERO), timed(Duration::from_millis(1000))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert!(a_end - a_start >= Duration::from_millis(1900), "A waits the deadline: {:?}", a_end - a_start);
    assert_eq!(a.body["data"]["meta"]["sources"]["pattern"]["status"], "timeout", "{:?}", a.body);
    // B is released when A's part runs out, not at its own deadline (2 s after it started,
    // about a second after A's end).
    assert!(
        b_end < a_end + Duration::from_millis(500),
        "B ends with A, not a deadline later: B took {:?}, ended {:?} after A",
        b_end - b_start,
        b_end.saturating_duration_since(a_end)
    );
    let pattern = &b.body["data"]["meta"]["sources"]["pattern"];
    assert_eq!(pattern["status"], "unresponsive", "{:?}", b.body);
    assert_eq!(b.body["data"]["meta"]["sources"]["mt5"]["status"], "ok", "{:?}", b.body);
    assert!(b.body["data"]["account"]["balance"].is_number(), "{:?}", b.body);
}

#[actix_rt::test]
async fn a_hung_source_is_not_waited_on_until_it_answers_again() {
    // pattern is external, so this test can replace the hung instance by a healthy one on the
    // same port: its routes never answer, its health does (it stays online).
    let services = Services::new();
    let pattern_port = services.ports[3];
    let mut hung = Some(OutsideSim::start("pattern", pattern_port, &["--response-delay-ms", "600000"]).await);
    let managed = services.toml(true, "", |_| Vec::new());
    let cut = managed.find("[[service]]\nname = \"pattern\"").unwrap();
    let config = format!(
        "{}[[service]]\nname = \"pattern\"\ndisplay_name = \"Pattern Service\"\nroutes = [\"patterns\"]\n\
         port = {pattern_port}\nrequest_timeout_ms = 1000\n",
        &managed[..cut]
    );
    let app = app_with(&config, &["mt5", "strategy", "pattern"]).await;
    let api = app.client();

    // The first request finds out: it waits the part's deadline.
    let started = Instant::now();
    let r = api.get("/api/dashboard").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(took >= Duration::from_millis(900), "the first request waits the deadline: {took:?}");
    let data = r.data();
    assert_eq!(data["patterns"], Value::Null);
    assert_eq!(data["meta"]["sources"]["pattern"]["status"], "timeout", "{data}");
    assert_eq!(data["meta"]["sources"]["pattern"]["error"], "A(z) Pattern Service nem válaszolt időben (1 mp).");

    // Then the dashboard no longer waits on it, while it stays online.
    for i in 0..5 {
        let started = Instant::now();
        let r = api.get("/api/dashboard").await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "request {i} does not wait on the hung source: {took:?}");
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.header("x-gateway-complete").as_deref(), Some("false"));
        let data = r.data();
        let keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
        for key in ["account", "positions", "strategies", "patterns", "services", "meta"] {
            assert!(keys.contains(&key), "{key} is never omitted: {keys:?}");
        }
        assert_eq!(data["patterns"], Value::Null, "{data}");
        assert!(data["account"]["balance"].is_number() && data["strategies"].is_array(), "{data}");
        let meta = &data["meta"];
        assert_eq!(meta["complete"], false);
        assert_eq!(meta["sources"]["mt5"]["status"], "ok", "{meta}");
        let pattern = &meta["sources"]["pattern"];
        assert_eq!(pattern["status"], "unresponsive", "{meta}");
        assert_eq!(
            pattern["error"],
            "A(z) Pattern Service legutóbb nem válaszolt időben (1 mp), ezért most nem várunk rá; \
             a háttérben ellenőrizzük, helyreállt-e."
        );
        assert!(pattern["latency_ms"].as_u64().unwrap() < 500, "{meta}");
    }
    let english = api.request("GET", "/api/dashboard").insert_header(("Accept-Language", "en"));
    let r = api.send(english, None).await;
    assert!(
        r.data()["meta"]["sources"]["pattern"]["error"].as_str().unwrap().contains("not waited for now"),
        "{:?}",
        r.body
    );
    assert_eq!(api.get("/api/services/pattern").await.data()["status"], "online");

    // Forwarding is unchanged: a hung route still answers 504 on time.
    let started = Instant::now();
    api.get("/api/patterns/latest").await.assert_error(504, "upstream_timeout");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(3000), "{took:?}");

    // A healthy instance in its place: the part comes back.
    drop(hung.take());
    let _healthy = OutsideSim::start("pattern", pattern_port, &[]).await;
    let data = eventually("the patterns part to come back", Duration::from_secs(15), || {
        let api = &api;
        async move {
            let r = api.get("/api/dashboard").await;
            (r.status == 200 && r.body["data"]["meta"]["sources"]["pattern"]["status"] == "ok")
                .then(|| r.body["data"].clone())
        }
    })
    .await;
    assert!(data["patterns"].is_array(), "{data}");
    let r = api.get("/api/dashboard").await;
    assert_eq!(r.header("x-gateway-complete").as_deref(), Some("true"), "{:?}", r.body);
}

#[actix_rt::test]
async fn a_healthy_dashboard_is_complete() {
    let services = Services::new();
    let app = app_with(&services.toml(true, "", |_| Vec::new()), &["mt5", "strategy", "pattern"]).await;
    let api = app.client();
    api.json("POST", "/api/strategies", &json!({"name": "a", "symbol": "EURUSD", "timeframe": "H1", "parameters": {}}))
        .await
        .data();
    let r = api.get("/api/dashboard").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-gateway-complete").as_deref(), Some("true"));
    let data = r.data();
    assert_eq!(data["meta"]["complete"], true);
    assert_eq!(data["strategies"].as_array().unwrap().len(), 1, "{data}");
    assert!(data["patterns"].is_array() && data["positions"].is_array() && data["account"].is_object(), "{data}");
    for source in ["mt5", "strategy", "pattern"] {
        assert_eq!(data["meta"]["sources"][source]["status"], "ok", "{data}");
        assert!(data["meta"]["sources"][source].get("error").is_none());
    }
    api.anonymous().get("/api/dashboard").await.assert_error(401, "unauthorized");
}

/// Reads an SSE stream until a chunk contains `needle` or the deadline passes.
async fn sse_until(res: &mut awc::ClientResponse, needle: &str) -> String {
    use futures_util::StreamExt;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match actix_rt::time::timeout(left, res.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no {needle} in the stream ({other:?}): {text}"),
        }
    }
    text
}

#[actix_rt::test]
async fn settings_changes_reach_running_and_returning_services() {
    let services = Services::new();
    let app = app_with(&services.toml(true, "", |_| Vec::new()), &["data", "mt5", "strategy", "pattern"]).await;
    let api = app.client();
    let defaults = api.get("/api/settings/symbols").await.data()["value"].clone();
    api.get("/api/ticks/latest?symbol=BTCUSD").await.assert_error(400, "validation_failed");

    let mut events =
        api.request("GET", "/api/events/stream?topics=system").timeout(Duration::from_secs(30)).send().await.unwrap();
    assert_eq!(events.status().as_u16(), 200);

    // A running service gets the change and really switches.
    let mut with_btc = defaults.as_array().unwrap().clone();
    with_btc.push(json!("BTCUSD"));
    api.json("PUT", "/api/settings/symbols", &json!({"value": with_btc})).await.data();
    let started = Instant::now();
    let tick = eventually("BTCUSD to be served", Duration::from_secs(5), || {
        let api = &api;
        async move {
            let r = api.get("/api/ticks/latest?symbol=BTCUSD").await;
            (r.status == 200).then(|| r.body["data"].clone())
        }
    })
    .await;
    assert_eq!(tick["symbol"], "BTCUSD");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let text = sse_until(&mut events, "settings_changed").await;
    assert!(text.contains("symbols"), "{text}");

    // A service that was down during a change gets it when it comes back.
    api.post("/api/services/data/stop").await.data();
    let mut with_eth = with_btc.clone();
    with_eth.push(json!("ETHUSD"));
    api.json("PUT", "/api/settings/symbols", &json!({"value": with_eth})).await.data();
    api.get("/api/ticks/latest?symbol=ETHUSD").await.assert_error(503, "service_unavailable");
    api.post("/api/services/data/start").await.data();
    api.wait_status("data", "online", ONLINE).await;
    let tick = eventually("ETHUSD to be served after the restart", Duration::from_secs(5), || {
        let api = &api;
        async move {
            let r = api.get("/api/ticks/latest?symbol=ETHUSD").await;
            (r.status == 200).then(|| r.body["data"].clone())
        }
    })
    .await;
    assert_eq!(tick["symbol"], "ETHUSD");
    let log = api.service_log("data").await;
    assert!(log.iter().any(|l| l.starts_with("POST /settings 200")), "{log:?}");

    // Removing a symbol: the gateway refuses it at once (its own cache), the service stops serving it.
    api.json("PUT", "/api/settings/symbols", &json!({"value": ["EURUSD"]})).await.data();
    api.get("/api/ticks/latest?symbol=ETHUSD").await.assert_error(400, "validation_failed");
    // Services that do not list the key are not bothered; those that do all got it.
    for service in ["mt5", "strategy", "pattern"] {
        let log = api.service_log(service).await;
        assert!(log.iter().filter(|l| l.starts_with("POST /settings 200")).count() >= 2, "{service}: {log:?}");
    }
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text body.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[actix_rt::test]
async fn metrics_and_the_openapi_document_are_served() {
    let services = Services::new();
    let config = services.toml_by_role(true, |role| match role {
        "pattern" => (vec!["--response-delay-ms".into(), "3000".into()], "request_timeout_ms = 200".into()),
        _ => (Vec::new(), String::new()),
    });
    let app = app_with(&config, &["data", "mt5", "strategy", "pattern"]).await;
    let api = app.client();
    let viewer = api.with_token(&app.create_token("grafana", "viewer"));
    for _ in 0..3 {
        assert_eq!(api.get("/api/ticks/latest?symbol=EURUSD").await.status, 200);
    }
    api.get("/api/ticks/latest?symbol=NOPE").await.assert_error(400, "validation_failed");
    api.get("/api/patterns/latest").await.assert_error(504, "upstream_timeout");
    api.post("/api/services/strategy/stop").await.data();
    api.get("/api/strategies").await.assert_error(503, "service_unavailable");
    api.get("/definitely/not/here").await.assert_error(404, "not_found");

    api.anonymous().get("/metrics").await.assert_error(401, "unauthorized");
    let mut res = viewer.request("GET", "/metrics").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let forward = r#"method="GET",route="/api/{resource}/{tail:.*}""#;
    let value = |series: String| sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(value(format!("orchestrator_http_requests_total{{{forward},status=\"200\"}}")), 3.0);
    assert_eq!(value(format!("orchestrator_http_requests_total{{{forward},status=\"400\"}}")), 1.0);
    assert_eq!(value(format!("orchestrator_http_requests_total{{{forward},status=\"504\"}}")), 1.0);
    let root = r#"method="GET",route="/api/{resource}",status="503""#;
    assert_eq!(value(format!("orchestrator_http_requests_total{{{root}}}")), 1.0);
    assert_eq!(value(r#"orchestrator_http_requests_total{method="GET",route="unmatched",status="404"}"#.into()), 1.0);
    assert_eq!(value(format!("orchestrator_http_request_duration_seconds_count{{{forward},status=\"200\"}}")), 3.0);
    assert_eq!(
        value(format!("orchestrator_http_request_duration_seconds_bucket{{{forward},status=\"504\",le=\"0.1\"}}")),
        0.0
    );
    assert_eq!(
        value(format!("orchestrator_http_request_duration_seconds_bucket{{{forward},status=\"504\",le=\"1\"}}")),
        1.0
    );
    assert!(value(r#"orchestrator_upstream_request_duration_seconds_count{service="data"}"#.into()) >= 3.0);
    assert_eq!(value(r#"orchestrator_upstream_errors_total{service="pattern",kind="timeout"}"#.into()), 1.0);
    assert_eq!(value(r#"orchestrator_upstream_errors_total{service="strategy",kind="unavailable"}"#.into()), 1.0);
    assert_eq!(value(r#"orchestrator_upstream_errors_total{service="data",kind="timeout"}"#.into()), 0.0);
    assert_eq!(value(r#"orchestrator_service_status{service="strategy",status="stopped"}"#.into()), 1.0);
    assert_eq!(value(r#"orchestrator_service_status{service="data",status="online"}"#.into()), 1.0);
    assert_eq!(value(r#"orchestrator_service_up{service="strategy"}"#.into()), 0.0);
    assert_eq!(value(r#"orchestrator_service_restarts_total{service="data"}"#.into()), 0.0);
    assert!(value("orchestrator_hub_clients".into()) >= 0.0);
    value("orchestrator_hub_drops_total".into());
    value("orchestrator_hub_slow_consumer_closes_total".into());

    // The document is public and lists every route with the envelope.
    let r = api.anonymous().get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let doc = &r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for (path, method) in [
        ("/api/health", "get"),
        ("/api/services/{name}/{action}", "post"),
        ("/api/settings/{key}", "put"),
        ("/api/dashboard", "get"),
        ("/api/orders", "post"),
        ("/api/{resource}/{tail}", "delete"),
        ("/metrics", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(doc["components"]["schemas"]["Envelope"]["properties"]["request_id"].is_object());
}

#[actix_rt::test]
async fn a_failed_forward_triggers_an_immediate_probe() {
    let upstream = capture_upstream();
    // Monitor rounds a minute apart: anything faster is the passive check.
    let env: Vec<(&str, &str)> = FAST
        .iter()
        .copied()
        .filter(|(k, _)| *k != "ORCHESTRATOR_HEALTH_INTERVAL_MS")
        .chain([("ORCHESTRATOR_HEALTH_INTERVAL_MS", "60000")])
        .collect();
    let app = TestApp::spawn_with_env(&echo_service(upstream.port), &env).await;
    let api = app.client();
    let entry = api.wait_status("echo", "online", ONLINE).await;
    let checked_at = entry["last_check"]["at"].clone();
    assert_eq!(api.get("/api/echo/plain").await.status, 200, "a pooled connection exists now");

    upstream.stop();
    let started = Instant::now();
    let r = api.get("/api/echo/plain").await;
    // A pooled connection is closed without an answer (a GET is retried) or the connection is
    // refused: either way the service is unavailable.
    r.assert_error(503, "service_unavailable");
    assert!(started.elapsed() < Duration::from_millis(2000), "{:?} (the timeout is 10 s)", started.elapsed());
    let entry = api
        .wait_service("echo", "to be probed at once", Duration::from_secs(5), |e| {
            e["last_check"]["at"] != checked_at && e["consecutive_failures"].as_u64() >= Some(1)
        })
        .await;
    assert!(entry["last_check"]["error"].is_string(), "{entry}");
}
