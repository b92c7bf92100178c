//! A cluster (SPEC §13) of real orchestrator processes sharing a real `redis-server`: a
//! primary, an edge, and a second would-be primary. Linux only (the edge logic is portable; the
//! test harness stops processes with signals).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use awc::ws::{Frame, Message};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` on a free port with its files in a temp dir, killed on drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Redis {
        let mut redis = Redis { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)starts it on the same port, without persistence (a restart loses everything).
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        eventually("redis-server to accept connections", WAIT, || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster_section(redis: &Redis, node: &str, role: &str, primary: Option<&TestApp>) -> String {
    let primary_url = primary.map(|p| format!("primary_url = \"http://127.0.0.1:{}\"\n", p.port)).unwrap_or_default();
    format!("\n[cluster]\nbroker = \"{}\"\nnode = \"{node}\"\nrole = \"{role}\"\n{primary_url}", redis.url())
}

async fn start_primary(redis: &Redis, service_port: u16) -> TestApp {
    let config = format!(
        "{}{}",
        one_service("data", service_port, &[], "autostart = false\n"),
        cluster_section(redis, "gw-1", "primary", None)
    );
    TestApp::spawn_with_env(&config, FAST).await
}

async fn start_edge(redis: &Redis, primary: &TestApp, node: &str) -> TestApp {
    let mut edge = TestApp::spawn(&cluster_section(redis, node, "edge", Some(primary))).await;
    edge.token = primary.token.clone();
    edge
}

trait WsIo:
    futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
    + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
    + Unpin
{
}
impl<T> WsIo for T where
    T: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
        + Unpin
{
}

/// A `/ws` client.
struct Ws {
    io: Box<dyn WsIo>,
}

impl Ws {
    async fn open(app: &TestApp, token: &str) -> (Ws, Value) {
        let (_, io) = awc::Client::default().ws(format!("ws://127.0.0.1:{}/ws", app.port)).connect().await.unwrap();
        let mut ws = Ws { io: Box::new(io) };
        ws.send(json!({"id": 1, "type": "auth", "token": token})).await;
        let ok = ws.recv().await;
        (ws, ok)
    }

    async fn send(&mut self, v: Value) {
        self.io.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// The next text frame (pings answered), or a panic after [`WAIT`].
    async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.io.next())
                .await
                .unwrap_or_else(|_| panic!("nothing received within {WAIT:?}"))
                .expect("the socket closed")
                .unwrap();
            match frame {
                Frame::Text(bytes) => return serde_json::from_slice(&bytes).unwrap(),
                Frame::Ping(p) => self.io.send(Message::Pong(p)).await.unwrap(),
                Frame::Close(reason) => panic!("closed: {reason:?}"),
                _ => {}
            }
        }
    }

    /// The next event of `topic`, skipping others (`system` events among them).
    async fn event(&mut self, topic: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["topic"] == topic && v.get("seq").is_some() {
                return v;
            }
        }
    }

    async fn subscribe(&mut self, msg: Value) -> Value {
        self.send(msg).await;
        loop {
            let v = self.recv().await;
            if v["type"] == "subscribed" {
                return v;
            }
        }
    }
}

/// Waits until `api` answers `path` with `status`.
async fn answers(api: &Api, path: &str, status: u16, what: &str) -> Reply {
    eventually(what, WAIT, || async move {
        let r = api.get(path).await;
        (r.status == status).then_some(r)
    })
    .await
}

#[actix_rt::test]
async fn an_edge_serves_with_the_primarys_tokens_and_sends_writes_to_the_primary() {
    let redis = Redis::start().await;
    let primary = start_primary(&redis, free_port()).await;
    let edge = start_edge(&redis, &primary, "gw-2").await;

    // The edge knows the primary's tokens (published as hashes), not others.
    let r = answers(&edge.client(), "/api/services", 200, "the edge to accept the primary's token").await;
    assert_eq!(r.data()[0]["name"], "data", "the service list is the primary's: {:?}", r.body);
    edge.client().with_token("mt5_not-a-token").get("/api/services").await.assert_error(401, "unauthorized");
    let health = edge.client().anonymous().get("/api/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.data()["cluster"]["node"], "gw-2", "{:?}", health.body);
    assert_eq!(health.data()["cluster"]["role"], "edge");

    // A token created on the primary works on the edge; once revoked, it stops working there.
    let viewer = primary.create_token("late-viewer", "viewer");
    answers(&edge.client().with_token(&viewer), "/api/settings", 200, "a new token to work on the edge").await;
    let out = Command::new(exe())
        .arg("--data-dir")
        .arg(primary.data_dir())
        .args(["token", "revoke", "late-viewer"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    answers(&edge.client().with_token(&viewer), "/api/settings", 401, "a revoked token to stop working on the edge")
        .await;

    // A settings write sent to the edge is made on the primary, with the caller's token.
    let put = edge.client().json("PUT", "/api/settings/risk.max_volume", &json!({"value": 2.5})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let read = primary.client().get("/api/settings/risk.max_volume").await;
    assert_eq!(read.data()["value"], 2.5, "{:?}", read.body);
    let denied = edge.client().with_token(&primary.create_token("v2", "viewer"));
    let denied = eventually("the viewer token to reach the edge", WAIT, || {
        let denied = &denied;
        async move {
            let r = denied.json("PUT", "/api/settings/risk.max_volume", &json!({"value": 3})).await;
            (r.status != 401).then_some(r)
        }
    })
    .await;
    denied.assert_error(403, "forbidden");

    // A lifecycle command sent to the edge starts the service on the primary.
    let started = edge.client().post("/api/services/data/start").await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    primary.client().wait_status("data", "online", WAIT).await;

    // A second primary on the same broker refuses to start, naming the holder.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("orchestrator.toml");
    std::fs::write(&config, cluster_section(&redis, "gw-3", "primary", None)).unwrap();
    let out = Command::new(exe())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--bind")
        .arg(format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second primary started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gw-1"), "the refusal names the holder: {stderr}");

    // The primary gone: the edge still answers, and a write names the primary.
    let mut primary = primary;
    primary.signal_and_wait(nix::sys::signal::Signal::SIGTERM, WAIT);
    let health = edge.client().anonymous().get("/api/health").await;
    assert_eq!(health.status, 200);
    let r = edge.client().json("PUT", "/api/settings/risk.max_volume", &json!({"value": 1})).await;
    r.assert_error(503, "service_unavailable");
    assert!(r.body["error"].as_str().unwrap().contains("primary"), "{:?}", r.body);
}

#[actix_rt::test]
async fn every_node_delivers_the_same_seq_and_replays_what_another_node_delivered() {
    let redis = Redis::start().await;
    let primary = start_primary(&redis, free_port()).await;
    let edge = start_edge(&redis, &primary, "gw-2").await;
    let ingest = primary.client().with_token(&primary.create_token("feeder", "service"));
    answers(&edge.client(), "/api/health", 200, "the edge").await;
    let token = primary.token.clone();
    let (mut on_primary, ok_p) = Ws::open(&primary, &token).await;
    let mut on_edge = eventually("the edge to accept the token on /ws", WAIT, || {
        let (edge, token) = (&edge, token.clone());
        async move {
            let (ws, ok) = Ws::open(edge, &token).await;
            (ok["type"] == "auth_ok").then_some(ws)
        }
    })
    .await;
    assert_eq!(ok_p["type"], "auth_ok", "{ok_p}");
    on_primary.subscribe(json!({"id": 2, "type": "subscribe", "topics": ["position:EURUSD"]})).await;
    // Every node's clients are listed on any node, each with its node.
    let api = primary.client();
    eventually("the edge's client in the primary's client list", WAIT, || {
        let api = &api;
        async move {
            let r = api.get("/api/hub/clients").await;
            let nodes: Vec<String> =
                r.data().as_array()?.iter().filter_map(|c| c["node"].as_str().map(str::to_owned)).collect();
            (nodes.iter().any(|n| n == "gw-1") && nodes.iter().any(|n| n == "gw-2")).then_some(())
        }
    })
    .await;
    on_edge.subscribe(json!({"id": 2, "type": "subscribe", "topics": ["position:EURUSD"]})).await;

    let publish = |n: u64| {
        let ingest = &ingest;
        async move {
            let r = ingest
                .json(
                    "POST",
                    "/api/events",
                    &json!([{"type": "position", "topic": "position:EURUSD", "data": {"n": n}}]),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    let mut seen = Vec::new();
    for n in 1..=3 {
        publish(n).await;
        let a = on_primary.event("position:EURUSD").await;
        let b = on_edge.event("position:EURUSD").await;
        assert_eq!((&a["seq"], &a["epoch"], &a["data"]), (&b["seq"], &b["epoch"], &b["data"]), "same event everywhere");
        seen.push(a);
    }
    let epoch = seen[0]["epoch"].as_str().unwrap().to_owned();
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2], "one order: {seqs:?}");

    // A client of the primary that saw the first event moves to the edge: exactly the missed ones.
    drop(on_primary);
    let (mut moved, _) = Ws::open(&edge, &token).await;
    let sub = moved
        .subscribe(json!({"id": 3, "type": "subscribe", "topics": ["position:EURUSD"],
            "since": {"position:EURUSD": seqs[0]}, "epoch": epoch}))
        .await;
    assert_eq!(sub["recovered"]["position:EURUSD"], true, "{sub}");
    for want in &seen[1..] {
        let got = moved.event("position:EURUSD").await;
        assert_eq!((&got["seq"], &got["data"]), (&want["seq"], &want["data"]));
    }

    // Redis killed: REST keeps answering everywhere, and the primary's own clients still get events.
    let mut redis = redis;
    let (mut local, _) = Ws::open(&primary, &token).await;
    local.subscribe(json!({"id": 4, "type": "subscribe", "topics": ["position:EURUSD", "system"]})).await;
    redis.kill();
    loop {
        let v = local.recv().await;
        if v["topic"] == "system" && v["data"]["event"] == "broker_down" {
            break;
        }
    }
    assert_eq!(primary.client().get("/api/services").await.status, 200);
    assert_eq!(edge.client().anonymous().get("/api/health").await.status, 200);
    publish(4).await;
    let during = local.event("position:EURUSD").await;
    assert_eq!(during["data"]["n"], 4);
    assert_ne!(during["epoch"], epoch.as_str(), "no seq of the shared epoch is invented during the outage");

    // Redis back (empty): edge clients get events again, under a new epoch; the old one is not
    // recovered.
    redis.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        assert!(std::time::Instant::now() < deadline, "events never reached the edge again");
        publish(5).await;
        if let Ok(v) = tokio::time::timeout(Duration::from_secs(1), on_edge.event("position:EURUSD")).await
            && v["data"]["n"] == 5
        {
            break v;
        }
    };
    assert_ne!(fresh["epoch"], epoch.as_str(), "Redis lost its data: a new epoch");
    let (mut late, _) = Ws::open(&edge, &token).await;
    let sub = late
        .subscribe(json!({"id": 5, "type": "subscribe", "topics": ["position:EURUSD"],
            "since": {"position:EURUSD": seqs[2]}, "epoch": epoch}))
        .await;
    assert_eq!(sub["recovered"]["position:EURUSD"], false, "{sub}");
}

/// A simulator the test runs itself (an external service to the primary), killed on drop.
struct OutsideSim(Child);

impl OutsideSim {
    async fn start(role: &str, port: u16) -> OutsideSim {
        let child = Command::new(exe())
            .args(["sim", role, "--quiet", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let sim = OutsideSim(child);
        let client = awc::Client::default();
        eventually(&format!("the outside {role} to answer /health"), WAIT, || {
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

/// The names of the services an edge's health lists, with their statuses.
async fn edge_services(edge: &TestApp) -> Vec<(String, String)> {
    let health = edge.client().anonymous().get("/api/health").await;
    health.data()["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["name"].as_str().unwrap_or("").to_owned(), s["status"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[actix_rt::test]
async fn an_edge_reaches_advertised_services_itself_and_keeps_serving_external_ones_without_the_primary() {
    let redis = Redis::start().await;
    // mt5: external (the test runs it), advertised. strategy: managed by the primary,
    // advertised. pattern: managed, loopback only (edges go through the primary).
    let mt5_port = free_port();
    let _mt5 = OutsideSim::start("mt5", mt5_port).await;
    let (strategy_port, pattern_port) = (free_port(), free_port());
    let sim =
        |role: &str, port: u16| format!("[{:?}, \"sim\", \"{role}\", \"--quiet\", \"--port\", \"{port}\"]", exe());
    let config = format!(
        "[[service]]\nname = \"mt5\"\nroutes = [\"account\", \"positions\", \"orders\"]\nport = {mt5_port}\n\
         advertise_host = \"127.0.0.1\"\nsettings_path = \"/settings\"\nsettings_keys = [\"risk.max_volume\"]\n\n\
         [[service]]\nname = \"strategy\"\nroutes = [\"strategies\", \"signals\"]\nport = {strategy_port}\n\
         advertise_host = \"127.0.0.1\"\ncommand = {}\n\n\
         [[service]]\nname = \"pattern\"\nroutes = [\"patterns\"]\nport = {pattern_port}\ncommand = {}\n{}",
        sim("strategy", strategy_port),
        sim("pattern", pattern_port),
        cluster_section(&redis, "gw-1", "primary", None)
    );
    let primary = TestApp::spawn_with_env(&config, FAST).await;
    for name in ["mt5", "strategy", "pattern"] {
        primary.client().wait_status(name, "online", WAIT).await;
    }
    let edge = start_edge(&redis, &primary, "gw-2").await;

    // The edge routes the advertised services itself, with the primary's statuses; the
    // loopback-only one is not in its table.
    let listed = eventually("the edge to list the advertised services online", WAIT, || {
        let edge = &edge;
        async move {
            let listed = edge_services(edge).await;
            let online = |n: &str| listed.iter().any(|(name, status)| name == n && status == "online");
            (online("mt5") && online("strategy")).then_some(listed)
        }
    })
    .await;
    assert!(
        !listed.iter().any(|(name, _)| name == "pattern"),
        "a loopback-only service is routed directly: {listed:?}"
    );
    let api = edge.client();
    let account = answers(&api, "/api/account", 200, "the edge to forward to mt5").await;
    assert!(account.data().get("balance").is_some(), "{:?}", account.body);
    answers(&api, "/api/strategies", 200, "the edge to forward to strategy").await;
    let patterns = api.get("/api/patterns").await;
    assert_eq!(patterns.status, 200, "through the primary: {:?}", patterns.body);
    let dashboard = api.get("/api/dashboard").await;
    assert_eq!(dashboard.status, 200, "{:?}", dashboard.body);

    // Settings reads answer from the primary's published copy, which follows its writes.
    let put = primary.client().json("PUT", "/api/settings/risk.max_volume", &json!({"value": 4.5})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let read = eventually("the edge's copy to follow the primary's write", WAIT, || {
        let api = &api;
        async move {
            let r = api.get("/api/settings/risk.max_volume").await;
            (r.status == 200 && r.data()["value"] == 4.5).then_some(r)
        }
    })
    .await;
    assert_eq!(read.header("etag"), put.header("etag"), "the copy keeps the version");
    let all = api.get("/api/settings").await;
    assert_eq!(all.data(), primary.client().get("/api/settings").await.data());
    // The edge validates against the copied limits (4.5, not the default 1.0) before forwarding.
    let order = |volume: f64| json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": volume});
    // (mt5 checks its own copy too, pushed by the primary: retried until that push landed.)
    eventually("3 lots, within the copied limit, to be placed through the edge", WAIT, || {
        let (api, body) = (&api, order(3.0));
        async move { (api.json("POST", "/api/orders", &body).await.status < 300).then_some(()) }
    })
    .await;
    let refused = api.json("POST", "/api/orders", &order(9.0)).await;
    refused.assert_error(400, "validation_failed");
    assert!(refused.body["error"].as_str().unwrap().contains("4.5"), "the edge's own check: {:?}", refused.body);

    // The primary gone (its managed services stopped with it): the external service is still
    // served by the edge, the managed ones answer 503, settings reads answer from the last copy.
    let mut primary = primary;
    primary.signal_and_wait(nix::sys::signal::Signal::SIGTERM, WAIT);
    eventually("the primary's managed services to be offline on the edge", Duration::from_secs(20), || {
        let api = &api;
        async move { (api.get("/api/strategies").await.status == 503).then_some(()) }
    })
    .await;
    let account = api.get("/api/account").await;
    assert_eq!(account.status, 200, "an external service is still served: {:?}", account.body);
    let patterns = api.get("/api/patterns").await;
    patterns.assert_error(503, "service_unavailable");
    assert!(patterns.body["error"].as_str().unwrap().contains("primary"), "{:?}", patterns.body);
    let read = api.get("/api/settings/risk.max_volume").await;
    assert_eq!(read.data()["value"], 4.5, "{:?}", read.body);
}
