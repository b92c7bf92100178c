//! Fault tests (SPEC §11 reliability): kill -9 of every service many times in a row, kill -9 of
//! the orchestrator in the middle of settings writes and with services that have children of
//! their own, downstreams that accept connections and never answer, 1 000 concurrent requests,
//! and 1 000 WebSocket connect/close cycles. The real binary and real simulated services, with
//! every timer shrunk through `ORCHESTRATOR_*`; each figure measured is printed (see
//! docs/RELIABILITY.md).
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// Kill -9 rounds per service. 50 for each of the four, all four at once.
const KILL_ROUNDS: usize = 50;

fn kill(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn pid_of(entry: &Value) -> u32 {
    entry["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {entry}")) as u32
}

/// FAST, with restarts that do not slow down over 50 failures in a row (the backoff and the
/// crash-loop rule are tested in supervision.rs; here every kill must be followed by a restart).
fn fast_restarts() -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<(&str, &str)> =
        FAST.iter().copied().filter(|(k, _)| !k.starts_with("ORCHESTRATOR_BACKOFF")).collect();
    env.extend([
        ("ORCHESTRATOR_BACKOFF_INITIAL_MS", "5"),
        ("ORCHESTRATOR_BACKOFF_MAX_MS", "10"),
        ("ORCHESTRATOR_SERVICE_MAX_FAILURES", "100000"),
    ]);
    env
}

/// Percentile of sorted durations, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Kills the service `rounds` times with SIGKILL; after each kill it must come back online with a
/// new pid, there must never be two live copies on its port, and the old process must be reaped
/// (the four loops run at once, so other services' fresh zombies are checked at the end).
/// Returns the kill → online times.
async fn kill_loop(api: &Api, name: &str, port: u16, rounds: usize) -> Vec<Duration> {
    let needle = format!("--port {port} ");
    let mut entry = api.wait_status(name, "online", LONG).await;
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let old = pid_of(&entry);
        let started = Instant::now();
        kill(old, Signal::SIGKILL);
        entry = loop {
            let copies = processes_matching(&needle);
            assert!(copies.len() <= 1, "{name} round {round}: two copies at once: {copies:?}");
            let r = api.get(&format!("/api/services/{name}")).await;
            let e = r.data().clone();
            if e["status"] == "online" && e["pid"].as_u64().is_some_and(|p| p as u32 != old) {
                break e;
            }
            assert!(started.elapsed() < LONG, "{name} round {round}: not back within {LONG:?}: {e}");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        };
        times.push(started.elapsed());
        let new = pid_of(&entry);
        assert!(!alive(old), "{name} round {round}: the killed {old} still runs");
        let copies = processes_matching(&needle);
        assert_eq!(copies, vec![new], "{name} round {round}: exactly the new copy runs");
        eventually(&format!("{name} round {round}: {old} reaped"), LONG, || async {
            (!std::path::Path::new(&format!("/proc/{old}")).exists() || !is_zombie(old)).then_some(())
        })
        .await;
    }
    assert!(entry["restarts"].as_u64().unwrap_or(0) >= rounds as u64, "{name}: {entry}");
    times
}

#[actix_rt::test]
async fn kill_9_of_every_service_50_times_brings_each_back_once() {
    let services = Services::new();
    let config = services.toml(true, "", |_| vec!["--quiet".into(), "--tick-rate".into(), "2".into()]);
    let app = TestApp::spawn_with_env(&config, &fast_restarts()).await;
    let orchestrator = app.pid();
    let started = Instant::now();
    let names = ["data", "mt5", "strategy", "pattern"];
    let apis: Vec<Api> = names.iter().map(|_| app.client()).collect();
    let loops =
        names.iter().zip(&apis).zip(services.ports).map(|((name, api), port)| kill_loop(api, name, port, KILL_ROUNDS));
    let results = futures_util::future::join_all(loops).await;
    for (name, mut times) in names.iter().zip(results) {
        times.sort();
        eprintln!(
            "kill -9 x{KILL_ROUNDS} {name}: back online p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            pct(&times, 0.5),
            pct(&times, 0.9),
            pct(&times, 1.0)
        );
    }
    eprintln!("{} kills in {:?}", KILL_ROUNDS * names.len(), started.elapsed());
    let api = app.client();
    assert_eq!(api.anonymous().get("/api/health").await.data()["status"], "ok");
    eventually("no zombie child of the orchestrator", LONG, || async {
        zombie_children(orchestrator).is_empty().then_some(())
    })
    .await;
    assert!(alive(orchestrator));
}

// ---------------------------------------------------------------------------------------------

/// One writer's progress: the last value the API acknowledged, and the one in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    acked: u64,
    sent: u64,
}

/// Hammers `PUT /api/settings` with batches `{ui.fault.wN.a: n, ui.fault.wN.b: n, ui.fault.wN.c: "n"}`
/// until the orchestrator stops answering.
async fn writer(base: String, token: String, w: usize, start: u64, progress: Rc<RefCell<Progress>>) {
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let mut n = start;
    loop {
        n += 1;
        progress.borrow_mut().sent = n;
        let body = json!({
            format!("ui.fault.w{w}.a"): n,
            format!("ui.fault.w{w}.b"): n,
            format!("ui.fault.w{w}.c"): n.to_string(),
        });
        let sent = client
            .put(format!("{base}/api/settings"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send_json(&body)
            .await;
        match sent {
            Ok(res) if res.status().as_u16() == 200 => progress.borrow_mut().acked = n,
            Ok(res) => panic!("writer {w}: a batch got {}", res.status()),
            Err(_) => return,
        }
    }
}

/// The `ui.fault.*` values straight from the database file, checked for integrity first.
fn database_values(db: &std::path::Path) -> BTreeMap<String, Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "PRAGMA integrity_check after kill -9");
    let mut stmt = conn.prepare("SELECT key, value FROM settings WHERE key LIKE 'ui.fault.%'").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
    rows.map(|r| {
        let (k, v) = r.unwrap();
        (k, serde_json::from_str(&v).unwrap())
    })
    .collect()
}

/// Every acknowledged batch is there, whole: each writer's three keys agree and hold the last
/// acknowledged value or the one that was in flight.
fn assert_writes_kept(values: &BTreeMap<String, Value>, progress: &[Progress], when: &str) -> Vec<u64> {
    progress
        .iter()
        .enumerate()
        .map(|(w, p)| {
            let get = |k: &str| values.get(&format!("ui.fault.w{w}.{k}")).cloned().unwrap_or(Value::Null);
            let a = get("a").as_u64().unwrap_or(0);
            assert_eq!(get("b").as_u64().unwrap_or(0), a, "{when}: writer {w}'s batch was split: {values:?}");
            if a > 0 {
                assert_eq!(get("c"), Value::String(a.to_string()), "{when}: writer {w}'s batch was split");
            }
            assert!(
                a == p.acked || (a == p.sent && p.sent == p.acked + 1),
                "{when}: writer {w} has {a}, acknowledged {}, in flight {}",
                p.acked,
                p.sent
            );
            a
        })
        .collect()
}

#[actix_rt::test]
async fn kill_9_of_the_orchestrator_during_batch_writes_loses_no_acknowledged_write() {
    const WRITERS: usize = 3;
    const ROUNDS: usize = 4;
    let mut app = TestApp::spawn_with_env(&Services::new().toml(false, "", |_| Vec::new()), FAST).await;
    let db = app.data_dir().join("setup.db");
    let mut values = vec![0u64; WRITERS];
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let progress: Vec<Rc<RefCell<Progress>>> =
            values.iter().map(|v| Rc::new(RefCell::new(Progress { acked: *v, sent: *v }))).collect();
        let base = format!("http://127.0.0.1:{}", app.port);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| actix_rt::spawn(writer(base.clone(), app.token.clone(), w, values[w], progress[w].clone())))
            .collect();
        // Kill at a different point each round, while every writer is busy.
        let target = 15 + 11 * round as u64;
        eventually("every writer to get going", LONG, || {
            let progress = &progress;
            let values = &values;
            async move { progress.iter().zip(values).all(|(p, v)| p.borrow().acked >= v + target).then_some(()) }
        })
        .await;
        let _ = app.signal_and_wait(Signal::SIGKILL, LONG);
        for t in tasks {
            let _ = t.await;
        }
        let progress: Vec<Progress> = progress.iter().map(|p| *p.borrow()).collect();
        total_acked += progress.iter().zip(&values).map(|(p, v)| p.acked - v).sum::<u64>();
        let found = assert_writes_kept(&database_values(&db), &progress, &format!("round {round}, the file"));

        // And through the API after a restart.
        app.start().await;
        let settings = app.client().get("/api/settings").await;
        let api_values: BTreeMap<String, Value> = settings
            .data()
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("ui.fault."))
            .map(|(k, v)| (k.clone(), v["value"].clone()))
            .collect();
        assert_eq!(assert_writes_kept(&api_values, &progress, &format!("round {round}, the API")), found);
        values = found;
    }
    eprintln!("{total_acked} acknowledged batches over {ROUNDS} kill -9 rounds: all kept, integrity ok");
}

// ---------------------------------------------------------------------------------------------

/// The parent of a process (from `/proc/PID/stat`).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[actix_rt::test]
async fn kill_9_of_the_orchestrator_takes_every_service_and_grandchild_along_at_once() {
    /// SPEC §11: kill -9 of the orchestrator leaves no orphan; "at once" is held to this.
    const AT_ONCE: Duration = Duration::from_secs(1);
    let services = Services::new();
    let config = services.toml(true, "", |_| vec!["--quiet".into(), "--spawn-child".into()]);
    let mut app = TestApp::spawn_with_env(&config, FAST).await;
    let api = app.client();
    let mut processes = Vec::new();
    for name in ["data", "mt5", "strategy", "pattern"] {
        let service = pid_of(&api.wait_status(name, "online", LONG).await);
        let child = eventually(&format!("{name}'s grandchild pid in its log"), LONG, || {
            let api = &api;
            async move {
                let r = api.get(&format!("/api/services/{name}/logs?tail=100")).await;
                r.body["data"]["lines"]
                    .as_array()?
                    .iter()
                    .find_map(|l| l["line"].as_str()?.split("spawned child pid=").nth(1)?.trim().parse::<u32>().ok())
            }
        })
        .await;
        assert!(alive(child));
        // The service's keeper, the orchestrator's child and leader of the service's group.
        let keeper = parent_of(service);
        assert_eq!(parent_of(keeper), app.pid(), "{name}: the service's parent is a child of the orchestrator");
        processes.extend([(name, "keeper", keeper), (name, "service", service), (name, "grandchild", child)]);
    }
    let killed = Instant::now();
    let _ = app.signal_and_wait(Signal::SIGKILL, LONG);
    // No restart: the keepers take their groups along as soon as the orchestrator is gone.
    let survivors = || processes.iter().filter(|(.., pid)| alive(*pid)).copied().collect::<Vec<_>>();
    let within = AT_ONCE.saturating_sub(killed.elapsed());
    eventually("every keeper, service and grandchild to be gone", within, || async {
        survivors().is_empty().then_some(())
    })
    .await;
    let all_gone = killed.elapsed();
    assert!(all_gone < AT_ONCE, "gone only {all_gone:?} after the kill");
    for port in services.ports {
        assert!(processes_matching(&format!("--port {port} ")).is_empty(), "a service on {port} survived");
    }
    // The next start finds nothing left over behind its pidfiles, and brings everything back.
    app.start().await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    assert!(!app.log().contains("left over by a previous run"), "the restart had leftovers to kill:\n{}", app.log());
    eprintln!(
        "kill -9 of the orchestrator: {} keepers, services and grandchildren gone {all_gone:?} after the kill, without a restart",
        processes.len()
    );
}

// ---------------------------------------------------------------------------------------------

/// A `[[service]]` block.
fn service_block(name: &str, routes: &str, port: u16, command: Option<Vec<String>>, extra: &str) -> String {
    let command = command
        .map(|c| format!("command = [{}]\n", c.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")))
        .unwrap_or_default();
    format!(
        "[[service]]\nname = \"{name}\"\ndisplay_name = \"{name}\"\nroutes = {routes}\nport = {port}\n{command}{extra}\n"
    )
}

fn sim(role: &str, port: u16, flags: &[&str]) -> Option<Vec<String>> {
    let mut c = vec![exe().to_owned(), "sim".into(), role.into(), "--port".into(), port.to_string(), "--quiet".into()];
    c.extend(flags.iter().map(|f| (*f).to_owned()));
    Some(c)
}

/// An outside process, killed when dropped.
struct Outside(std::process::Child);

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_rt::test]
async fn a_downstream_that_never_answers_gets_504_on_time_and_blocks_nothing() {
    // `hung` holds its port (accepts, never answers anything) and is external; `mt5` is managed,
    // healthy, but none of its other routes ever answers. Health probes are slow here, so the
    // held service stays `starting` (a starting service may already answer, SPEC §4) and every
    // request to it goes out and must time out.
    let held = free_port();
    let _outside = Outside(
        std::process::Command::new(exe())
            .args(["sim", "pattern", "--hold-port", "--port", &held.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the held port to accept", LONG, || async {
        std::net::TcpStream::connect(("127.0.0.1", held)).ok().map(|_| ())
    })
    .await;
    let (data, mt5) = (free_port(), free_port());
    let timeout_ms = 700u64;
    let config = [
        service_block("data", "[\"ticks\", \"ohlc\", \"symbols\"]", data, sim("data", data, &[]), ""),
        service_block(
            "mt5",
            "[\"account\", \"positions\", \"orders\"]",
            mt5,
            sim("mt5", mt5, &["--response-delay-ms", "600000"]),
            &format!("request_timeout_ms = {timeout_ms}"),
        ),
        service_block("hung", "[\"hung\"]", held, None, &format!("request_timeout_ms = {timeout_ms}")),
    ]
    .concat();
    let mut env: Vec<(&str, &str)> =
        FAST.iter().copied().filter(|(k, _)| !k.starts_with("ORCHESTRATOR_HEALTH_")).collect();
    env.extend([("ORCHESTRATOR_HEALTH_TIMEOUT_MS", "60000"), ("ORCHESTRATOR_HEALTH_INTERVAL_MS", "60000")]);
    let app = TestApp::spawn_with_env(&config, &env).await;
    let api = app.client();
    api.wait_status("data", "online", LONG).await;
    api.wait_status("mt5", "online", LONG).await;
    assert_eq!(api.get("/api/services/hung").await.data()["status"], "starting");

    let hung_targets = ["/api/hung/anything", "/api/account", "/api/positions"];
    let hung = futures_util::future::join_all((0..60).map(|i| {
        let api = app.client();
        let target = hung_targets[i % hung_targets.len()];
        async move {
            let started = Instant::now();
            let r = api.get(target).await;
            (target, r, started.elapsed())
        }
    }));
    let normal_targets =
        ["/api/health", "/api/ticks/latest?symbol=EURUSD", "/api/services", "/api/settings", "/api/symbols"];
    let normal = async {
        // Start once the hung requests are surely out.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        let mut latencies = Vec::new();
        for round in 0..20 {
            let replies = futures_util::future::join_all(normal_targets.iter().map(|t| {
                let api = app.client();
                async move {
                    let started = Instant::now();
                    let r = api.get(t).await;
                    (t, r, started.elapsed())
                }
            }))
            .await;
            for (t, r, took) in replies {
                assert_eq!(r.status, 200, "round {round}: {t} while others hang: {:?}", r.body);
                latencies.push(took);
            }
        }
        latencies
    };
    let (hung, mut latencies) = futures_util::future::join(hung, normal).await;
    latencies.sort();
    let mut waits = Vec::new();
    for (target, r, took) in hung {
        r.assert_error(504, "upstream_timeout");
        assert!(
            took >= Duration::from_millis(timeout_ms - 50) && took < Duration::from_millis(timeout_ms + 1000),
            "{target}: 504 after {took:?} (timeout {timeout_ms} ms)"
        );
        waits.push(took);
    }
    waits.sort();
    assert!(pct(&latencies, 1.0) < 1000.0, "a normal route took {:.0} ms while others hung", pct(&latencies, 1.0));
    eprintln!(
        "hung downstream ({timeout_ms} ms timeout): 60 requests answered 504 after {:.0}–{:.0} ms; meanwhile {} normal \
         requests p50 {:.1} ms, p99 {:.1} ms",
        pct(&waits, 0.0),
        pct(&waits, 1.0),
        latencies.len(),
        pct(&latencies, 0.5),
        pct(&latencies, 0.99)
    );
    // The managed one is still healthy (its health answers), so it stays online.
    assert_eq!(api.get("/api/services/mt5").await.data()["status"], "online");
}

// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_thousand_concurrent_requests_all_succeed() {
    let services = Services::new();
    // Health checks at a relaxed pace: this test is about the gateway under load, and on a busy
    // CI machine FAST's 300 ms probe timeout could mark a service offline (fast fail: 503).
    let mut env: Vec<(&str, &str)> =
        FAST.iter().copied().filter(|(k, _)| !k.starts_with("ORCHESTRATOR_HEALTH_TIMEOUT")).collect();
    env.push(("ORCHESTRATOR_HEALTH_TIMEOUT_MS", "10000"));
    let app = TestApp::spawn_with_env(&services.toml(true, "", |_| vec!["--quiet".into()]), &env).await;
    let api = app.client();
    for name in ["data", "mt5", "strategy", "pattern"] {
        api.wait_status(name, "online", LONG).await;
    }
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0).timeout(Duration::from_secs(10)))
        .timeout(Duration::from_secs(30))
        .finish();
    let targets = [
        "/api/health",
        "/api/services",
        "/api/services/data",
        "/api/settings",
        "/api/settings/symbols",
        "/api/ticks/latest?symbol=EURUSD",
        "/api/ohlc?symbol=EURUSD&timeframe=H1&count=10",
        "/api/account",
        "/api/positions",
        "/api/strategies",
        "/api/patterns/latest",
        "/api/dashboard",
    ];
    let started = Instant::now();
    let replies = futures_util::future::join_all((0..1000).map(|i| {
        let target = targets[i % targets.len()];
        let req = client
            .get(format!("http://127.0.0.1:{}{target}", app.port))
            .insert_header(("Authorization", format!("Bearer {}", app.token)));
        async move {
            let t = Instant::now();
            let mut res = req.send().await.unwrap_or_else(|e| panic!("{target}: {e}"));
            let body: Value = res.json().limit(16 << 20).await.unwrap_or_else(|e| panic!("{target}: {e}"));
            (target, res.status().as_u16(), body, t.elapsed())
        }
    }))
    .await;
    let wall = started.elapsed();
    let mut latencies = Vec::new();
    for (target, status, body, took) in replies {
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(body["success"], true, "{target}: {body}");
        latencies.push(took);
    }
    latencies.sort();
    eprintln!(
        "1000 concurrent requests: all 200 in {wall:?}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
    assert!(alive(app.pid()));
}

// ---------------------------------------------------------------------------------------------

/// The next text frame as JSON, answering pings.
async fn next_text<S>(ws: &mut S, i: usize) -> Value
where
    S: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<awc::ws::Message, Error = awc::error::WsProtocolError>
        + Unpin,
{
    use awc::ws::{Frame, Message};
    loop {
        match ws.next().await {
            Some(Ok(Frame::Text(t))) => return serde_json::from_slice::<Value>(&t).unwrap(),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("cycle {i}: {other:?}"),
        }
    }
}

/// One WebSocket life: connect, authenticate, subscribe, then close politely or just drop.
async fn ws_cycle(url: String, token: String, i: usize) {
    use awc::ws::{Frame, Message};
    let (_, mut ws) = awc::Client::default().ws(url).connect().await.unwrap_or_else(|e| panic!("cycle {i}: {e}"));
    if i % 3 == 2 {
        return; // dropped before authenticating
    }
    ws.send(Message::Text(json!({"id": 1, "type": "auth", "token": token}).to_string().into())).await.unwrap();
    assert_eq!(next_text(&mut ws, i).await["type"], "auth_ok");
    ws.send(Message::Text(json!({"id": 2, "type": "subscribe", "topics": ["tick", "system"]}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws, i).await["type"], "subscribed");
    if i.is_multiple_of(3) {
        ws.send(Message::Close(Some(awc::ws::CloseCode::Normal.into()))).await.unwrap();
        while let Some(Ok(frame)) = ws.next().await {
            if matches!(frame, Frame::Close(_)) {
                break;
            }
        }
    }
}

#[actix_rt::test]
async fn a_thousand_websocket_cycles_leave_no_client_and_no_memory_behind() {
    let app = TestApp::spawn_with_env(&Services::new().toml(false, "", |_| Vec::new()), FAST).await;
    let api = app.client();
    let url = format!("ws://127.0.0.1:{}/ws", app.port);
    let batch = |n: usize| {
        let (url, token) = (url.clone(), app.token.clone());
        async move {
            let ids: Vec<usize> = (0..n).collect();
            for chunk in ids.chunks(50) {
                futures_util::future::join_all(chunk.iter().map(|&i| ws_cycle(url.clone(), token.clone(), i))).await;
            }
        }
    };
    let clients = || async { api.get("/api/hub/clients").await.data().as_array().map_or(usize::MAX, Vec::len) };
    // Warm-up: allocator arenas, pools, the blocking pool's threads.
    batch(300).await;
    eventually("the warm-up clients to be gone", LONG, || async { (clients().await == 0).then_some(()) }).await;
    let before = rss_kib(app.pid());
    let started = Instant::now();
    batch(1000).await;
    let took = started.elapsed();
    eventually("every client to be gone", LONG, || async { (clients().await == 0).then_some(()) }).await;
    let after = rss_kib(app.pid());
    eprintln!(
        "1000 WebSocket connect/auth/subscribe/close cycles in {took:?}: clients 0 after; RSS {before} KiB before, \
         {after} KiB after"
    );
    assert!(after <= before + 8 * 1024, "RSS grew from {before} KiB to {after} KiB over 1000 cycles");
    assert!(alive(app.pid()));
}
