//! Black-box tests of the real-time hub (SPEC §6): real WebSocket clients (awc) and real SSE
//! streams against the real binary, events published over `POST /api/events` and by simulated
//! services.
//!
//! A Unix suite (signals, process groups, /proc); `tests/windows.rs` is the Windows one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_ws::Item;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use bytes::Bytes;
use common::*;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};

/// How long a frame that should come may take.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// WebSocket client

trait WsIo: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin {}
impl<T> WsIo for T where
    T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

/// What a WebSocket client received next.
#[derive(Debug)]
enum Got {
    Text(Value),
    Close(Option<u16>, Option<String>),
    /// The connection ended without a close frame (or with a protocol error).
    End(#[allow(dead_code)] String),
}

/// A WebSocket client of `/ws`.
struct Ws {
    io: Box<dyn WsIo>,
    /// Server pings seen so far.
    pings: usize,
    /// Answer server pings with pongs.
    auto_pong: bool,
}

impl Ws {
    async fn connect(app: &TestApp) -> Ws {
        Self::connect_with(app, &[]).await
    }

    async fn connect_with(app: &TestApp, headers: &[(&str, &str)]) -> Ws {
        let mut req = awc::Client::default().ws(format!("ws://127.0.0.1:{}/ws", app.port)).max_frame_size(4 << 20);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (res, framed) = req.connect().await.unwrap();
        assert_eq!(res.status().as_u16(), 101);
        Ws { io: Box::new(framed), pings: 0, auto_pong: true }
    }

    /// Connects and authenticates; returns the client and its `auth_ok`.
    async fn open(app: &TestApp, token: &str) -> (Ws, Value) {
        let mut ws = Ws::connect(app).await;
        let ok = ws.auth(token).await;
        (ws, ok)
    }

    async fn send(&mut self, msg: Message) {
        self.io.send(msg).await.unwrap();
    }

    async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.send(Message::Text(text.into())).await;
    }

    async fn send_json(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    /// The next text frame or close, within `timeout`; server pings are counted (and answered
    /// when `auto_pong`).
    async fn next_within(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.io.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Got::End("end of stream".into())),
                Ok(Some(Err(e))) => return Some(Got::End(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Text(bytes) => return Some(Got::Text(serde_json::from_slice(&bytes).unwrap())),
                Frame::Close(reason) => {
                    // Answer like a browser does, completing the closing handshake.
                    let echo = reason.as_ref().map(|r| awc::ws::CloseReason { code: r.code, description: None });
                    let _ = self.io.send(Message::Close(echo)).await;
                    return Some(Got::Close(
                        reason.as_ref().map(|r| u16::from(r.code)),
                        reason.and_then(|r| r.description),
                    ));
                }
                Frame::Ping(p) => {
                    self.pings += 1;
                    if self.auto_pong {
                        self.send(Message::Pong(p)).await;
                    }
                }
                Frame::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    async fn next(&mut self) -> Got {
        self.next_within(WAIT).await.unwrap_or_else(|| panic!("nothing received within {WAIT:?}"))
    }

    /// The next text frame as JSON.
    async fn recv(&mut self) -> Value {
        match self.next().await {
            Got::Text(v) => v,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame must be a close; returns its code.
    async fn recv_close(&mut self) -> u16 {
        match self.next().await {
            Got::Close(Some(code), _) => code,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Skips events until the close frame; returns its code, its reason and what was skipped.
    async fn recv_close_skipping_events(&mut self) -> (u16, String, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            match self.next().await {
                Got::Close(Some(code), reason) => return (code, reason.unwrap_or_default(), skipped),
                Got::Text(v) => skipped.push(v),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    async fn auth(&mut self, token: &str) -> Value {
        self.send_json(&json!({"id": 1, "type": "auth", "token": token})).await;
        let ok = self.recv().await;
        assert_eq!(ok["type"], "auth_ok", "{ok}");
        ok
    }

    /// Subscribes and returns the `subscribed` reply.
    async fn subscribe(&mut self, id: u64, topics: &[&str]) -> Value {
        self.subscribe_with(json!({"id": id, "type": "subscribe", "topics": topics})).await
    }

    async fn subscribe_with(&mut self, msg: Value) -> Value {
        let id = msg["id"].clone();
        self.send_json(&msg).await;
        let reply = self.recv().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        assert_eq!(reply["id"], id, "{reply}");
        reply
    }

    /// Sends an application ping and waits for its pong: everything queued before it has arrived.
    async fn roundtrip(&mut self, id: &str) -> Vec<Value> {
        self.send_json(&json!({"id": id, "type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let v = self.recv().await;
            if v["type"] == "pong" && v["id"] == id {
                return before;
            }
            before.push(v);
        }
    }
}

/// Asserts the shape of an event frame and returns it.
fn assert_event(v: &Value, topic: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    let ty = topic.split(':').next().unwrap();
    assert_eq!(v["type"], ty, "{v}");
    assert_eq!(v["topic"], topic, "{v}");
    assert!(v["seq"].as_u64().is_some_and(|s| s >= 1), "{v}");
    assert!(v["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{v}");
    assert!(obj.contains_key("data"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// SSE client

/// One SSE block (between blank lines).
#[derive(Debug, Default, Clone)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<String>,
    comments: Vec<String>,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap_or_else(|| panic!("no data: {self:?}"))).unwrap()
    }
}

struct Sse {
    body: Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin>,
    buf: String,
    content_type: String,
}

impl Sse {
    async fn open(app: &TestApp, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Result<Sse, Reply> {
        let client = awc::Client::builder().disable_timeout().finish();
        let mut req = client.get(app.url(path)).insert_header(("Accept", "text/event-stream"));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = req.send().await.unwrap();
        let status = res.status().as_u16();
        if status != 200 {
            let headers = res.headers().clone();
            let bytes = res.body().await.unwrap();
            return Err(Reply { status, body: serde_json::from_slice(&bytes).unwrap(), headers });
        }
        let content_type =
            res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok(Sse { body: Box::new(res), buf: String::new(), content_type })
    }

    /// The next block (event or comment), within `timeout`.
    async fn next_within(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        ev.comments.push(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v).to_owned();
                        match k {
                            "id" => ev.id = Some(v),
                            "event" => ev.event = Some(v),
                            "data" => ev.data = Some(v),
                            "retry" => ev.retry = Some(v),
                            other => panic!("unknown SSE field {other:?} in {block:?}"),
                        }
                    }
                }
                return Some(ev);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("SSE stream ended; buffered: {:?}", self.buf),
                Ok(Some(Err(e))) => panic!("SSE stream failed: {e}"),
                Ok(Some(Ok(chunk))) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            }
        }
    }

    /// The next block that carries data (skipping comments).
    async fn next_event(&mut self) -> SseEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.next_within(left).await.unwrap_or_else(|| panic!("no SSE event within {WAIT:?}"));
            if ev.data.is_some() {
                return ev;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Services configured but never started.
fn idle_config() -> String {
    one_service("pattern", free_port(), &["--quiet"], "autostart = false")
}

/// A config with a `[hub]` section.
fn hub_config(hub: &str) -> String {
    format!("[hub]\n{hub}\n\n{}", idle_config())
}

/// An app plus a viewer token and a service (ingest) client.
struct Setup {
    app: TestApp,
    viewer: String,
    ingest: Api,
}

impl Setup {
    async fn new(config: &str, env: &[(&str, &str)]) -> Setup {
        let app = TestApp::spawn_with_env(config, env).await;
        let viewer = app.create_token("browser", "viewer");
        let ingest = app.client().with_token(&app.create_token("feeder", "service"));
        Setup { app, viewer, ingest }
    }

    async fn ws(&self) -> (Ws, String) {
        let (ws, ok) = Ws::open(&self.app, &self.viewer).await;
        (ws, ok["client_id"].as_str().unwrap().to_owned())
    }

    /// Publishes a batch over `POST /api/events`.
    async fn publish(&self, events: Value) {
        let n = events.as_array().unwrap().len();
        let r = self.ingest.json("POST", "/api/events", &events).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.data()["accepted"], n);
    }

    async fn clients(&self) -> Vec<Value> {
        let r = self.app.client().get("/api/hub/clients").await;
        r.data().as_array().unwrap().clone()
    }

    async fn client(&self, id: &str) -> Option<Value> {
        self.clients().await.into_iter().find(|c| c["id"] == id)
    }
}

fn ev(ty: &str, topic: &str, data: Value) -> Value {
    json!({"type": ty, "topic": topic, "data": data})
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[actix_rt::test]
async fn authentication_deadline_bad_credentials_and_tickets() {
    let s = Setup::new(&idle_config(), &[("ORCHESTRATOR_HUB_AUTH_TIMEOUT_MS", "300")]).await;
    let app = &s.app;

    // Silence: closed with 4001 once the (shrunk) deadline passes, not before.
    let mut ws = Ws::connect(app).await;
    let started = Instant::now();
    assert_eq!(ws.recv_close().await, 4001);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");

    // An unknown token, an empty one, a message before auth, a binary frame before auth: 4001.
    let firsts: [fn() -> Message; 5] = [
        || Message::Text(json!({"id": 1, "type": "auth", "token": "orch_nope"}).to_string().into()),
        || Message::Text(json!({"id": 1, "type": "auth", "token": ""}).to_string().into()),
        || Message::Text(json!({"id": 1, "type": "subscribe", "topics": ["tick"]}).to_string().into()),
        || Message::Text("not json".into()),
        || Message::Binary(Bytes::from_static(b"\x00\x01")),
    ];
    for first in firsts {
        let first = first();
        let mut ws = Ws::connect(app).await;
        ws.send(first).await;
        assert_eq!(ws.recv_close().await, 4001);
    }

    // A service token may ingest but not subscribe: 4003.
    let service = app.create_token("svc", "service");
    let mut ws = Ws::connect(app).await;
    ws.send_json(&json!({"type": "auth", "token": service})).await;
    assert_eq!(ws.recv_close().await, 4003);

    // A good token: auth_ok echoes the id and says how often the server pings.
    let mut ws = Ws::connect(app).await;
    ws.send_json(&json!({"id": "a-1", "type": "auth", "token": s.viewer})).await;
    let ok = ws.recv().await;
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    assert_eq!(ok["id"], "a-1");
    assert_eq!(ok["ping_interval_ms"], 25000);
    assert_eq!(ok["client_id"].as_str().unwrap().len(), 32, "{ok}");
    assert_eq!(ok["epoch"].as_str().unwrap().len(), 32, "{ok}");
    // A second auth is an error reply, not a close.
    ws.send_json(&json!({"id": 2, "type": "auth", "token": s.viewer})).await;
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("already_authenticated"), Some(2))
    );
    // The client is listed under the token's name.
    let me = s.client(ok["client_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(me["principal"], json!({"name": "browser", "role": "viewer"}));
    assert_eq!(me["transport"], "ws");

    // A ticket (for browsers) authenticates once.
    let viewer_api = app.client().with_token(&s.viewer);
    let r = viewer_api.post("/api/auth/ticket").await;
    let ticket = r.data()["ticket"].as_str().unwrap().to_owned();
    assert_eq!(r.data()["expires_in_ms"], 30000);
    let mut ws = Ws::connect(app).await;
    ws.send_json(&json!({"id": 1, "type": "auth", "ticket": ticket})).await;
    let ok = ws.recv().await;
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    let me = s.client(ok["client_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(me["principal"]["name"], "browser");
    let mut again = Ws::connect(app).await;
    again.send_json(&json!({"id": 1, "type": "auth", "ticket": ticket})).await;
    assert_eq!(again.recv_close().await, 4001, "a ticket is valid once");
    // Tickets need a token; a service token may not get one.
    app.client().anonymous().post("/api/auth/ticket").await.assert_error(401, "unauthorized");
    app.client().with_token(&service).post("/api/auth/ticket").await.assert_error(403, "forbidden");
}

// ---------------------------------------------------------------------------------------------
// Subscribe, receive, wildcards, latest tick, unsubscribe

#[actix_rt::test]
async fn subscribe_receive_wildcards_latest_tick_and_unsubscribe() {
    let s = Setup::new(&idle_config(), &[]).await;
    // A tick published before anyone subscribes.
    s.publish(json!([ev("tick", "tick:XAUUSD", json!({"bid": 1.0})), ev("tick", "tick:XAUUSD", json!({"bid": 2.0}))]))
        .await;

    let (mut eur, _) = s.ws().await;
    let r = eur.subscribe(2, &["tick:EUR*", "position", "tick:EUR*"]).await;
    assert_eq!(r["topics"], json!(["tick:EUR*", "position"]), "duplicates are folded: {r}");
    assert_eq!(r["recovered"], json!({}));
    let (mut all_ticks, _) = s.ws().await;
    // Overlapping patterns: still one copy of each event.
    all_ticks.subscribe(1, &["tick", "tick:EUR*"]).await;
    // An exact tick subscription gets the latest tick at once (a prefix one does not).
    let (mut gold, _) = s.ws().await;
    gold.subscribe(1, &["tick:XAUUSD"]).await;
    let latest = gold.recv().await;
    assert_event(&latest, "tick:XAUUSD");
    assert_eq!((latest["seq"].as_u64(), latest["data"]["bid"].as_f64()), (Some(2), Some(2.0)));

    s.publish(json!([
        ev("tick", "tick:EURUSD", json!({"bid": 1.1})),
        ev("tick", "tick:GBPUSD", json!({"bid": 1.3})),
        ev("strategy_signal", "strategy_signal:s1", json!({"side": "buy"})),
        ev("tick", "tick:EURJPY", json!({"bid": 160.0})),
        ev("position", "position:EURUSD", json!({"ticket": 7})),
        {"type": "system", "data": {"kind": "hello"}},
        ev("tick", "tick:EURUSD", json!({"bid": 1.2})),
        ev("tick", "tick:XAUUSD", json!({"bid": 3.0})),
    ]))
    .await;

    let got: Vec<(String, u64)> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let e = eur.recv().await;
            assert_event(&e, e["topic"].as_str().unwrap());
            v.push((e["topic"].as_str().unwrap().to_owned(), e["seq"].as_u64().unwrap()));
        }
        v
    };
    assert_eq!(
        got,
        [
            ("tick:EURUSD".into(), 1),
            ("tick:EURJPY".into(), 1),
            ("position:EURUSD".into(), 1),
            ("tick:EURUSD".into(), 2)
        ]
    );
    assert!(eur.roundtrip("p").await.is_empty(), "nothing else matches tick:EUR* or position");

    let topics: Vec<String> = all_ticks
        .roundtrip("p")
        .await
        .iter()
        .map(|e| format!("{}@{}", e["topic"].as_str().unwrap(), e["seq"]))
        .collect();
    assert_eq!(topics, ["tick:EURUSD@1", "tick:GBPUSD@1", "tick:EURJPY@1", "tick:EURUSD@2", "tick:XAUUSD@3"]);

    let e = gold.recv().await;
    assert_eq!((e["seq"].as_u64(), e["data"]["bid"].as_f64()), (Some(3), Some(3.0)));
    assert_eq!(e["epoch"], latest["epoch"]);

    // Unsubscribe: acknowledged, and nothing of that pattern follows.
    eur.send_json(&json!({"id": 9, "type": "unsubscribe", "topics": ["tick:EUR*"]})).await;
    assert_eq!(eur.recv().await, json!({"id": 9, "type": "unsubscribed", "topics": ["tick:EUR*"]}));
    s.publish(json!([ev("tick", "tick:EURUSD", json!({})), ev("position", "position:GBPUSD", json!({}))])).await;
    let e = eur.recv().await;
    assert_eq!(e["topic"], "position:GBPUSD", "{e}");
    let listed = s.clients().await;
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().any(|c| c["topics"] == json!(["position"])), "{listed:?}");
}

// ---------------------------------------------------------------------------------------------
// Replay

#[actix_rt::test]
async fn replay_is_whole_or_not_at_all() {
    let s = Setup::new(&hub_config("ring_size = 5"), &[]).await;
    let pos = |n: u64| ev("position", "position:EURUSD", json!({"n": n}));
    s.publish(json!([pos(1), pos(2), pos(3)])).await;

    // No gap: the missed events, in order, between the reply and the live ones.
    let (mut a, _) = s.ws().await;
    let r = a
        .subscribe_with(
            json!({"id": 1, "type": "subscribe", "topics": ["position:EURUSD"], "since": {"position:EURUSD": 1}}),
        )
        .await;
    assert_eq!(r["recovered"], json!({"position:EURUSD": true}));
    assert_eq!(a.recv().await["seq"], 2);
    assert_eq!(a.recv().await["seq"], 3);
    s.publish(json!([pos(4)])).await;
    assert_eq!(a.recv().await["seq"], 4, "the live event follows the replay, without doubles");

    // The ring keeps 5: after 12 events it holds 8..=12.
    s.publish(json!((5..=12).map(pos).collect::<Vec<_>>())).await;
    let (mut b, ok) = Ws::open(&s.app, &s.viewer).await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    let since = |id: u64, seq: u64, epoch: Option<&str>| {
        let mut m = json!({"id": id, "type": "subscribe", "topics": ["position"], "since": {"position:EURUSD": seq}});
        if let Some(e) = epoch {
            m["epoch"] = json!(e);
        }
        m
    };
    // since 6 needs 7..=12, and 7 is gone: nothing is replayed (never a partial replay).
    let r = b.subscribe_with(since(1, 6, None)).await;
    assert_eq!(r["recovered"], json!({"position:EURUSD": false}));
    assert!(b.roundtrip("x").await.is_empty());
    // since 7 needs 8..=12: all in the ring, replayed whole.
    let (mut c, _) = s.ws().await;
    let r = c.subscribe_with(since(1, 7, Some(&epoch))).await;
    assert_eq!(r["recovered"], json!({"position:EURUSD": true}));
    let seqs: Vec<u64> = c.roundtrip("x").await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
    // Another epoch (the hub restarted) recovers nothing.
    let (mut d, _) = s.ws().await;
    let r = d.subscribe_with(since(1, 7, Some("0123456789abcdef0123456789abcdef"))).await;
    assert_eq!(r["recovered"], json!({"position:EURUSD": false}));
    assert!(d.roundtrip("x").await.is_empty());
    // Up to date: recovered, nothing to replay; ahead of the hub: not recovered.
    let (mut e, _) = s.ws().await;
    assert_eq!(e.subscribe_with(since(1, 12, None)).await["recovered"], json!({"position:EURUSD": true}));
    assert_eq!(e.subscribe_with(since(2, 99, None)).await["recovered"], json!({"position:EURUSD": false}));
    assert!(e.roundtrip("x").await.is_empty());
    // A topic never published from 0 is recovered (there is nothing to miss).
    let r = e
        .subscribe_with(
            json!({"id": 3, "type": "subscribe", "topics": ["strategy_signal:s9"], "since": {"strategy_signal:s9": 0}}),
        )
        .await;
    assert_eq!(r["recovered"], json!({"strategy_signal:s9": true}));
    // `since` must name a topic the same subscribe covers.
    e.send_json(&json!({"id": 4, "type": "subscribe", "topics": ["position"], "since": {"tick:EURUSD": 1}})).await;
    let err = e.recv().await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str(), err["id"].as_u64()),
        (Some("error"), Some("invalid_message"), Some(4))
    );

    // Live events reach every one of them once.
    s.publish(json!([pos(13)])).await;
    for ws in [&mut b, &mut c, &mut d, &mut e] {
        assert_eq!(ws.recv().await["seq"], 13);
    }

    // Ticks: a replay brings the topic up to date, so no extra latest tick follows it.
    let tick = |bid: f64| ev("tick", "tick:EURUSD", json!({"bid": bid}));
    s.publish(json!([tick(1.0), tick(2.0), tick(3.0)])).await;
    let (mut t, _) = s.ws().await;
    t.subscribe_with(json!({"id": 1, "type": "subscribe", "topics": ["tick:EURUSD"], "since": {"tick:EURUSD": 1}}))
        .await;
    let seqs: Vec<u64> = t.roundtrip("x").await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3]);
    // A wildcard with `since` replays the named topic.
    let (mut w, _) = s.ws().await;
    let r = w
        .subscribe_with(json!({"id": 1, "type": "subscribe", "topics": ["tick:EUR*"], "since": {"tick:EURUSD": 2}}))
        .await;
    assert_eq!(r["recovered"], json!({"tick:EURUSD": true}));
    let seqs: Vec<u64> = w.roundtrip("x").await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3]);
}

// ---------------------------------------------------------------------------------------------
// Slow consumers

/// About 32 KiB of padding, so a few hundred events fill a socket's kernel buffers.
fn pad() -> String {
    "x".repeat(32 * 1024)
}

#[actix_rt::test]
async fn stalled_reader_of_ticks_is_conflated_never_disconnected() {
    let s = Setup::new(&hub_config("client_queue = 8"), &[]).await;
    let (mut stalled, id) = s.ws().await;
    stalled.subscribe(1, &["tick:AAA", "tick:BBB"]).await;
    // From here on `stalled` reads nothing: the socket buffers fill, then its hub queue, and then
    // the hub conflates its ticks.
    let pad = pad();
    let mut published: HashMap<&str, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut batch = Vec::new();
        for sym in ["AAA", "BBB"] {
            for _ in 0..2 {
                let n = published.entry(sym).or_default();
                *n += 1;
                batch.push(ev("tick", &format!("tick:{sym}"), json!({"n": *n, "pad": pad})));
            }
        }
        s.publish(Value::Array(batch)).await;
        let me = s.client(&id).await.expect("a stalled tick reader is never disconnected");
        if me["drops"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no tick was ever conflated: {me}");
    }
    // The newest tick of each symbol, small so it is easy to spot.
    for sym in ["AAA", "BBB"] {
        let n = published.entry(sym).or_default();
        *n += 1;
        s.publish(json!([ev("tick", &format!("tick:{sym}"), json!({"n": *n, "last": true}))])).await;
    }
    let me = s.client(&id).await.expect("still connected");
    assert!(me["queue_depth"].as_u64().unwrap() >= 2, "{me}");

    // The reader wakes up: every symbol's ticks in order, the newest last, some skipped.
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last = 0;
    while last < 2 {
        let e = stalled.recv().await;
        assert_eq!(e["type"], "tick", "{}", e["type"]);
        let topic = e["topic"].as_str().unwrap().to_owned();
        let seq = e["seq"].as_u64().unwrap();
        assert_eq!(e["data"]["n"], seq, "the seq counts this topic's ticks");
        let list = seen.entry(topic.clone()).or_default();
        assert!(list.last().is_none_or(|&prev| prev < seq), "{topic}: {seq} after {list:?}");
        list.push(seq);
        if e["data"]["last"] == true {
            last += 1;
        }
    }
    for sym in ["AAA", "BBB"] {
        let list = &seen[&format!("tick:{sym}")];
        assert_eq!(list.last(), Some(&published[sym]), "the newest {sym} tick arrives");
    }
    // Nothing is queued any more; every tick was either delivered or counted as a drop.
    assert!(stalled.roundtrip("after").await.is_empty());
    let me = s.client(&id).await.expect("still connected");
    let received: usize = seen.values().map(Vec::len).sum();
    let total: u64 = published.values().sum();
    assert!((received as u64) < total, "some ticks were conflated");
    assert_eq!(received as u64 + me["drops"].as_u64().unwrap(), total, "{me}");
    assert_eq!(me["queue_depth"], 0);
}

#[actix_rt::test]
async fn stalled_reader_of_other_events_is_closed_4008_and_the_healthy_one_keeps_up() {
    let s = Setup::new(&hub_config("client_queue = 16"), &[]).await;
    let (mut stalled, stalled_id) = s.ws().await;
    stalled.subscribe(1, &["position"]).await;
    let (mut healthy, healthy_id) = s.ws().await;
    healthy.subscribe(1, &["position:EURUSD"]).await;

    // The healthy client reads in the background and notes when each event arrived.
    let arrivals: Rc<RefCell<Vec<(u64, Instant)>>> = Rc::default();
    let reader = {
        let arrivals = arrivals.clone();
        actix_rt::spawn(async move {
            loop {
                let e = healthy.recv().await;
                assert_eq!(e["topic"], "position:EURUSD", "{}", e["topic"]);
                arrivals.borrow_mut().push((e["seq"].as_u64().unwrap(), Instant::now()));
                if e["data"]["last"] == true {
                    return healthy;
                }
            }
        })
    };

    let pad = pad();
    let mut sent: Vec<Instant> = Vec::new(); // index seq-1: when its POST started
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at = Instant::now();
        let batch: Vec<Value> = (0..4)
            .map(|_| {
                sent.push(at);
                ev("position", "position:EURUSD", json!({"n": sent.len(), "pad": pad}))
            })
            .collect();
        s.publish(Value::Array(batch)).await;
        if s.client(&stalled_id).await.is_none() {
            break; // the hub has closed the stalled client
        }
        assert!(Instant::now() < deadline, "the stalled client was never closed");
    }
    // A few more after the close: the healthy client still gets everything.
    for _ in 0..3 {
        sent.push(Instant::now());
        s.publish(json!([ev("position", "position:EURUSD", json!({"n": sent.len()}))])).await;
    }
    sent.push(Instant::now());
    s.publish(json!([ev("position", "position:EURUSD", json!({"n": sent.len(), "last": true}))])).await;

    let mut healthy = actix_rt::time::timeout(WAIT, reader).await.expect("the healthy client got every event").unwrap();
    let arrivals = arrivals.borrow().clone();
    let seqs: Vec<u64> = arrivals.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>(), "every event, in order");
    let worst = arrivals.iter().map(|(seq, at)| at.duration_since(sent[*seq as usize - 1])).max().unwrap();
    assert!(worst < Duration::from_secs(1), "the healthy client was delayed by {worst:?}");
    assert!(s.client(&healthy_id).await.is_some(), "the healthy client is still connected");
    assert!(healthy.roundtrip("still-there").await.is_empty());

    // The stalled client, reading again, finds what reached its socket, in order, then 4008.
    let (code, reason, got) = stalled.recv_close_skipping_events().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer"));
    let got: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(!got.is_empty());
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "a prefix, without gaps");
    assert!(got.len() < sent.len());
}

#[actix_rt::test]
async fn a_peer_that_takes_nothing_is_dropped_after_the_idle_timeout() {
    // Pings every second, silence for 3 s closes: a reader that never reads (so never answers a
    // ping) is dropped even when its socket is full and no close frame can reach it.
    let env = [("ORCHESTRATOR_HUB_PING_INTERVAL_MS", "1000"), ("ORCHESTRATOR_HUB_IDLE_TIMEOUT_MS", "3000")];
    let s = Setup::new(&hub_config("client_queue = 8"), &env).await;
    let sockets_before = open_sockets(s.app.pid());
    let (mut stalled, id) = s.ws().await;
    stalled.subscribe(1, &["tick:AAA"]).await;
    let pad = pad();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch: Vec<Value> = (0..8)
            .map(|_| {
                n += 1;
                ev("tick", "tick:AAA", json!({"n": n, "pad": pad}))
            })
            .collect();
        s.publish(Value::Array(batch)).await;
        match s.client(&id).await {
            Some(me) if me["drops"].as_u64().unwrap() > 0 => break,
            Some(_) => {}
            None => panic!("dropped before its buffers were full"),
        }
        assert!(Instant::now() < deadline, "the socket never filled");
    }
    let full_at = Instant::now();
    eventually("the stalled client to be dropped", Duration::from_secs(10), || async {
        s.client(&id).await.is_none().then_some(())
    })
    .await;
    let took = full_at.elapsed();
    assert!(took < Duration::from_secs(8), "dropped after {took:?}");
    // Its connection is closed too, although it still reads nothing.
    eventually("the stalled client's socket to be closed", Duration::from_secs(10), || async {
        (open_sockets(s.app.pid()) <= sockets_before).then_some(())
    })
    .await;
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// Keepalive

#[actix_rt::test]
async fn server_pings_keep_a_client_alive_and_silence_closes_4000() {
    let env = [("ORCHESTRATOR_HUB_PING_INTERVAL_MS", "100"), ("ORCHESTRATOR_HUB_IDLE_TIMEOUT_MS", "400")];
    let s = Setup::new(&idle_config(), &env).await;
    let (mut alive, ok) = Ws::open(&s.app, &s.viewer).await;
    assert_eq!(ok["ping_interval_ms"], 100, "the client learns the ping period: {ok}");
    let (mut silent, _) = s.ws().await;
    silent.auto_pong = false;
    let started = Instant::now();
    // One client answers pings (awc leaves that to us) and so outlives several idle timeouts.
    let alive = actix_rt::spawn(async move {
        while alive.pings < 15 {
            assert!(alive.next_within(Duration::from_millis(200)).await.is_none(), "nothing but pings");
        }
        (alive, Instant::now())
    });

    // The silent client gets pings, never answers, and is closed with 4000.
    let code = silent.recv_close().await;
    let took = started.elapsed();
    assert_eq!(code, 4000);
    assert!(silent.pings >= 2, "pings before the close: {}", silent.pings);
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "{took:?}");

    let (mut alive, fifteenth) = alive.await.unwrap();
    let took = fifteenth - started;
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "15 pings every 100 ms took {took:?}"
    );
    assert!(alive.roundtrip("still-open").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Garbage

#[actix_rt::test]
async fn websocket_garbage_gets_errors_and_closes() {
    let s = Setup::new(&idle_config(), &[]).await;
    let app = &s.app;
    let mut ws = Ws::connect_with(app, &[("Accept-Language", "en")]).await;
    ws.auth(&s.viewer).await;

    let error = |v: &Value, code: &str| {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    };
    ws.send(Message::Binary(Bytes::from_static(b"\x01\x02\x03"))).await;
    error(&ws.recv().await, "unsupported");
    ws.send_text("{not json").await;
    let e = ws.recv().await;
    error(&e, "invalid_message");
    assert!(e["message"].as_str().unwrap().contains("malformed JSON"), "{e}");
    ws.send_text("[1,2,3]").await;
    error(&ws.recv().await, "invalid_message");
    ws.send_json(&json!({"id": 5, "type": "hello"})).await;
    let e = ws.recv().await;
    error(&e, "unknown_type");
    assert_eq!(e["id"], 5);
    ws.send_json(&json!({"id": 6, "type": "subscribe", "topics": ["ticks"]})).await;
    let e = ws.recv().await;
    error(&e, "invalid_message");
    assert!(e["message"].as_str().unwrap().contains("topics[0]"), "{e}");
    ws.send_json(&json!({"id": 7, "type": "subscribe", "topics": ["tick"], "bogus": 1})).await;
    let e = ws.recv().await;
    error(&e, "invalid_message");
    assert!(e["message"].as_str().unwrap().contains("bogus"), "{e}");

    // Too many topics: 129 in one message, or more than 128 in total over several.
    let many: Vec<String> = (0..129).map(|i| format!("tick:S{i}")).collect();
    ws.send_json(&json!({"id": 8, "type": "subscribe", "topics": many})).await;
    let e = ws.recv().await;
    error(&e, "too_many_topics");
    assert_eq!(e["id"], 8);
    for chunk in 0..4 {
        let topics: Vec<String> = (0..40).map(|i| format!("position:P{chunk}x{i}")).collect();
        ws.send_json(&json!({"id": 10 + chunk, "type": "subscribe", "topics": topics})).await;
        let reply = ws.recv().await;
        if chunk < 3 {
            assert_eq!(reply["type"], "subscribed", "{reply}");
        } else {
            error(&reply, "too_many_topics");
        }
    }
    // A message in fragments is put together first.
    ws.send(Message::Continuation(Item::FirstText(Bytes::from_static(b"{\"id\":\"frag\",")))).await;
    ws.send(Message::Continuation(Item::Continue(Bytes::from_static(b"\"type\":")))).await;
    ws.send(Message::Continuation(Item::Last(Bytes::from_static(b"\"ping\"}")))).await;
    assert_eq!(ws.recv().await, json!({"id": "frag", "type": "pong"}));
    // 10 000 topics: the message alone is over 64 KiB, so the connection is closed with 1009 …
    // (the topic limit is still checked first for a message that fits, see above).
    // Before that: the connection is still usable after every error.
    assert!(ws.roundtrip("ok").await.is_empty());
    let ten_thousand: Vec<String> = (0..10_000).map(|i| format!("tick:S{i}")).collect();
    ws.send_json(&json!({"id": 20, "type": "subscribe", "topics": ten_thousand})).await;
    assert_eq!(ws.recv_close().await, 1009);

    // Hungarian by default.
    let (mut hu, _) = s.ws().await;
    hu.send_json(&json!({"id": 1, "type": "nope"})).await;
    let e = hu.recv().await;
    assert!(e["message"].as_str().unwrap().starts_with("Ismeretlen"), "{e}");

    // A 100 KiB message: 1009.
    let (mut big, _) = s.ws().await;
    big.send_text(json!({"type": "ping", "id": "x".repeat(100 * 1024)}).to_string()).await;
    assert_eq!(big.recv_close().await, 1009);
    // Just over 64 KiB, still in one frame: 1009 as well.
    let (mut over, _) = s.ws().await;
    over.send_text(format!("{{\"type\":\"ping\",\"id\":\"{}\"}}", "y".repeat(64 * 1024))).await;
    assert_eq!(over.recv_close().await, 1009);

    // Fragments adding up to more than 64 KiB: 1009.
    let (mut frags, _) = s.ws().await;
    let part = Bytes::from(vec![b' '; 30 * 1024]);
    frags.send(Message::Continuation(Item::FirstText(part.clone()))).await;
    frags.send(Message::Continuation(Item::Continue(part.clone()))).await;
    frags.send(Message::Continuation(Item::Last(part))).await;
    assert_eq!(frags.recv_close().await, 1009);
    // Text that is not UTF-8: 1007.
    let (mut bad_utf8, _) = s.ws().await;
    bad_utf8
        .send(Message::Continuation(Item::FirstText(Bytes::from_static(b"{\"type\":\"ping\",\"id\":\"\xff"))))
        .await;
    bad_utf8.send(Message::Continuation(Item::Last(Bytes::from_static(b"\"}")))).await;
    assert_eq!(bad_utf8.recv_close().await, 1007);

    // A flood: more than 50 messages in a second closes with 4009 (replies may come first).
    let (mut flood, _) = s.ws().await;
    for i in 0..200 {
        if flood.io.send(Message::Text(json!({"id": i, "type": "ping"}).to_string().into())).await.is_err() {
            break;
        }
    }
    let (code, _, replies) = flood.recv_close_skipping_events().await;
    assert_eq!(code, 4009);
    assert!(replies.len() <= 50, "{} replies", replies.len());

    // None of this hurt the server.
    eventually("the closed clients to be gone", WAIT, || async { (s.clients().await.len() == 1).then_some(()) }).await;
    assert_eq!(app.client().get("/api/health").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// SSE

#[actix_rt::test]
async fn sse_stream_replays_from_last_event_id_and_sends_heartbeats() {
    let s = Setup::new(&idle_config(), &[("ORCHESTRATOR_HUB_SSE_HEARTBEAT_MS", "150")]).await;
    let app = &s.app;
    let pos = |n: u64| ev("position", "position:EURUSD", json!({"n": n}));
    s.publish(json!([pos(1), pos(2), pos(3)])).await;

    let path = "/api/events/stream?topics=position:EURUSD,tick:EUR*";
    let mut sse = Sse::open(app, path, Some(&s.viewer), &[("Last-Event-ID", "position:EURUSD@1")]).await.unwrap();
    assert!(sse.content_type.starts_with("text/event-stream"), "{}", sse.content_type);
    let hello = sse.next_event().await;
    assert_eq!(hello.event.as_deref(), Some("subscribed"), "{hello:?}");
    let hello = hello.json();
    assert_eq!(hello["topics"], json!(["position:EURUSD", "tick:EUR*"]));
    assert_eq!(hello["recovered"], json!({"position:EURUSD": true}));
    let client_id = hello["client_id"].as_str().unwrap().to_owned();
    for seq in [2, 3] {
        let e = sse.next_event().await;
        assert_eq!(e.id.as_deref(), Some(format!("position:EURUSD@{seq}").as_str()));
        assert_eq!(e.event, None, "events use the default `message` type");
        let v = e.json();
        assert_event(&v, "position:EURUSD");
        assert_eq!(v["seq"], seq);
        assert_eq!(v["epoch"], hello["epoch"]);
    }
    s.publish(json!([pos(4), ev("tick", "tick:EURJPY", json!({})), ev("tick", "tick:GBPUSD", json!({}))])).await;
    assert_eq!(sse.next_event().await.id.as_deref(), Some("position:EURUSD@4"));
    assert_eq!(sse.next_event().await.id.as_deref(), Some("tick:EURJPY@1"));
    // A heartbeat comment while nothing happens.
    let mut heartbeat = false;
    for _ in 0..5 {
        let block = sse.next_within(Duration::from_secs(2)).await.expect("a heartbeat");
        if block.comments.iter().any(|c| c == "heartbeat") {
            assert!(block.data.is_none() && block.id.is_none());
            heartbeat = true;
            break;
        }
    }
    assert!(heartbeat, "no heartbeat comment");
    let me = s.client(&client_id).await.unwrap();
    assert_eq!(me["transport"], "sse");
    assert_eq!(me["topics"], json!(["position:EURUSD", "tick:EUR*"]));

    // `since=` names several positions; a gap reports recovered: false.
    let path = "/api/events/stream?topics=position,tick&since=position:EURUSD@3,tick:EURJPY@0";
    let mut sse2 = Sse::open(app, path, Some(&s.viewer), &[]).await.unwrap();
    let hello = sse2.next_event().await.json();
    assert_eq!(hello["recovered"], json!({"position:EURUSD": true, "tick:EURJPY": true}));
    assert_eq!(sse2.next_event().await.id.as_deref(), Some("position:EURUSD@4"));
    assert_eq!(sse2.next_event().await.id.as_deref(), Some("tick:EURJPY@1"));
    let mut sse3 = Sse::open(
        app,
        "/api/events/stream?topics=position",
        Some(&s.viewer),
        &[("Last-Event-ID", "position:EURUSD@99")],
    )
    .await
    .unwrap();
    assert_eq!(sse3.next_event().await.json()["recovered"], json!({"position:EURUSD": false}));
    // As on the WebSocket, a position from another epoch recovers nothing; the same epoch does.
    let path = "/api/events/stream?topics=position&since=position:EURUSD@3&epoch=0123456789abcdef0123456789abcdef";
    let mut sse4 = Sse::open(app, path, Some(&s.viewer), &[]).await.unwrap();
    assert_eq!(sse4.next_event().await.json()["recovered"], json!({"position:EURUSD": false}));
    let epoch = hello["epoch"].as_str().unwrap();
    let path = format!("/api/events/stream?topics=position&since=position:EURUSD@3&epoch={epoch}");
    let mut sse5 = Sse::open(app, &path, Some(&s.viewer), &[]).await.unwrap();
    assert_eq!(sse5.next_event().await.json()["recovered"], json!({"position:EURUSD": true}));
    assert_eq!(sse5.next_event().await.id.as_deref(), Some("position:EURUSD@4"));

    // A closed stream leaves no client entry behind (noticed at the next heartbeat at the latest).
    drop(sse);
    eventually("the SSE client to be gone", WAIT, || async { s.client(&client_id).await.is_none().then_some(()) })
        .await;

    // Bad requests are refused before anything streams.
    let bad = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let viewer = s.viewer.clone();
        async move { Sse::open(app, path, Some(&viewer), headers).await.err().expect("refused") }
    };
    let r = bad("/api/events/stream", &[]).await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().contains("topics"), "{:?}", r.body);
    bad("/api/events/stream?topics=bogus", &[]).await.assert_error(400, "validation_failed");
    let r = bad("/api/events/stream?topics=tick", &[("Last-Event-ID", "garbage")]).await;
    r.assert_error(400, "validation_failed");
    assert!(r.body["error"].as_str().unwrap().contains("Last-Event-ID"), "{:?}", r.body);
    let r = Sse::open(app, "/api/events/stream?topics=tick", None, &[]).await.err().unwrap();
    r.assert_error(401, "unauthorized");
}

#[actix_rt::test]
async fn sse_with_a_one_time_ticket() {
    let s = Setup::new(&idle_config(), &[]).await;
    let app = &s.app;
    let viewer = app.client().with_token(&s.viewer);
    let ticket = viewer.post("/api/auth/ticket").await.data()["ticket"].as_str().unwrap().to_owned();
    let path = format!("/api/events/stream?topics=system&ticket={ticket}");
    let mut sse = Sse::open(app, &path, None, &[]).await.unwrap();
    let hello = sse.next_event().await.json();
    s.publish(json!([{"type": "system", "data": {"kind": "note"}}])).await;
    let e = sse.next_event().await;
    assert_eq!(e.id.as_deref(), Some("system@1"));
    assert_eq!(e.json()["data"]["kind"], "note");
    let me = s.client(hello["client_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(me["principal"]["name"], "browser");
    // Used once; a made-up one never worked.
    Sse::open(app, &path, None, &[]).await.err().unwrap().assert_error(401, "unauthorized");
    Sse::open(app, "/api/events/stream?topics=system&ticket=tk_00", None, &[])
        .await
        .err()
        .unwrap()
        .assert_error(401, "unauthorized");
    // Tickets only open the stream, not the rest of the API.
    let ticket = viewer.post("/api/auth/ticket").await.data()["ticket"].as_str().unwrap().to_owned();
    app.client().anonymous().get(&format!("/api/services?ticket={ticket}")).await.assert_error(401, "unauthorized");
    // No ticket reaches the access log.
    let log = app.log();
    assert!(log.contains("/api/events/stream?topics=system&ticket=***"), "the stream's access line: {log}");
    assert!(!log.contains(&ticket), "a ticket in the log: {log}");
}

// ---------------------------------------------------------------------------------------------
// Ingest

#[actix_rt::test]
async fn post_ingest_validates_every_item_and_publishes_all_or_nothing() {
    let s = Setup::new(&idle_config(), &[]).await;
    let (mut ws, _) = s.ws().await;
    ws.subscribe(1, &["position", "system", "strategy_signal"]).await;

    let refused = |body: Value, field: &'static str| {
        let ingest = &s.ingest;
        async move {
            let r = ingest.json("POST", "/api/events", &body).await;
            r.assert_error(400, "validation_failed");
            let msg = r.body["error"].as_str().unwrap().to_owned();
            assert!(msg.contains(field), "{field} not named in {msg:?} for {body}");
        }
    };
    let good = ev("position", "position:EURUSD", json!({"n": 1}));
    refused(json!({"type": "system"}), "").await; // not an array
    refused(json!([]), "body").await;
    refused(json!([good, {"topic": "position:X", "data": {}}]), "[1].type").await;
    refused(json!([good, {"type": "weather", "data": {}}]), "[1].type").await;
    refused(json!([good, ev("position", "tick:EURUSD", json!({}))]), "[1].topic").await;
    refused(json!([ev("position", "position:bad key", json!({}))]), "[0].topic").await;
    refused(json!([{"type": "system", "data": {}, "timestamp": "yesterday"}]), "[0].timestamp").await;
    refused(json!([{"type": "system", "data": {}, "colour": "red"}]), "[0].colour").await;
    refused(json!([ev("position", "position:EURUSD", json!({"pad": "z".repeat(70 * 1024)}))]), "[0].data").await;
    let r = s.ingest.raw("POST", "/api/events", b"[{\"type\":").await;
    r.assert_error(400, "validation_failed");
    // Only the service role may ingest.
    let viewer = s.app.client().with_token(&s.viewer);
    viewer.json("POST", "/api/events", &json!([good])).await.assert_error(403, "forbidden");
    s.app.client().anonymous().json("POST", "/api/events", &json!([good])).await.assert_error(401, "unauthorized");

    // Nothing of the refused batches was published: the first event now gets seq 1.
    s.publish(json!([
        good,
        {"type": "system", "data": {"kind": "x"}, "timestamp": "2026-01-02T03:04:05.678Z"},
        {"type": "strategy_signal", "topic": "strategy_signal:s-1", "data": {"side": "sell"}},
    ]))
    .await;
    let e = ws.recv().await;
    assert_eq!((e["topic"].as_str(), e["seq"].as_u64()), (Some("position:EURUSD"), Some(1)), "{e}");
    let e = ws.recv().await;
    assert_eq!((e["topic"].as_str(), e["seq"].as_u64()), (Some("system"), Some(1)), "topic defaults to the type: {e}");
    assert_eq!(e["timestamp"], "2026-01-02T03:04:05.678Z");
    let e = ws.recv().await;
    assert_eq!(e["topic"], "strategy_signal:s-1");
    assert!(ws.roundtrip("x").await.is_empty());
}

#[actix_rt::test]
async fn ticks_of_a_simulated_data_service_arrive_through_the_gateway() {
    let port = free_port();
    let config = one_service(
        "data",
        port,
        &["--quiet", "--tick-rate", "50", "--symbols", "EURUSD,GBPUSD"],
        "events_path = \"/events\"\nautostart = true",
    );
    let s = Setup::new(&config, FAST).await;
    let api = s.app.client();
    api.wait_status("data", "online", WAIT).await;

    let (mut ws, _) = s.ws().await;
    ws.subscribe(1, &["tick:EURUSD", "service_status:data"]).await;
    let mut last_seq = 0;
    let mut count = 0;
    while count < 10 {
        let e = ws.recv().await;
        if e["type"] != "tick" {
            continue;
        }
        assert_event(&e, "tick:EURUSD");
        let d = &e["data"];
        assert_eq!(d["symbol"], "EURUSD", "{e}");
        for k in ["time_msc", "bid", "ask", "last", "volume"] {
            assert!(d[k].is_number(), "{k} in {e}");
        }
        let seq = e["seq"].as_u64().unwrap();
        assert!(last_seq == 0 || seq == last_seq + 1, "seq {seq} after {last_seq}");
        last_seq = seq;
        count += 1;
    }

    // The gateway follows the service across a restart (reconnecting to its `/events`).
    api.post("/api/services/data/restart").await.data();
    let restarted = Instant::now();
    api.wait_status("data", "online", WAIT).await;
    let mut statuses = Vec::new();
    loop {
        let e = ws.recv().await;
        if e["type"] == "service_status" {
            statuses.push(e["data"]["status"].as_str().unwrap().to_owned());
            continue;
        }
        if statuses.last().map(String::as_str) == Some("online") {
            let seq = e["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "the topic's seq continues: {seq} after {last_seq}");
            break;
        }
    }
    assert!(statuses.contains(&"stopped".to_owned()) || statuses.contains(&"starting".to_owned()), "{statuses:?}");
    assert!(restarted.elapsed() < WAIT);
}

// ---------------------------------------------------------------------------------------------
// Targeted send, listing

#[actix_rt::test]
async fn targeted_send_reaches_one_client() {
    let s = Setup::new(&idle_config(), &[]).await;
    let api = s.app.client();
    let (mut a, a_id) = s.ws().await;
    a.subscribe(1, &["system"]).await;
    let (mut b, b_id) = s.ws().await;
    b.subscribe(1, &["system", "tick:EUR*"]).await;

    let listed = s.clients().await;
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a_id.as_str(), b_id.as_str()], "in connection order");
    let b_entry = &listed[1];
    assert_eq!(b_entry["topics"], json!(["system", "tick:EUR*"]));
    assert_eq!(b_entry["queue_depth"], 0);
    assert_eq!(b_entry["drops"], 0);
    assert!(b_entry["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(b_entry["connected_at"].as_str().unwrap().ends_with('Z'));

    let r = api.json("POST", &format!("/api/hub/clients/{b_id}/send"), &json!({"kind": "notice", "text": "hi"})).await;
    assert_eq!(r.data()["sent"], true);
    let got = b.recv().await;
    assert_eq!(got["type"], "system");
    assert_eq!(got["topic"], "system");
    assert_eq!(got["direct"], true);
    assert_eq!(got["data"], json!({"kind": "notice", "text": "hi"}));
    assert!(got.get("seq").is_none(), "a direct message is not part of the topic's sequence: {got}");
    assert!(a.roundtrip("x").await.is_empty(), "the other client got nothing");

    api.json("POST", "/api/hub/clients/0000/send", &json!({})).await.assert_error(404, "not_found");
    api.raw("POST", &format!("/api/hub/clients/{b_id}/send"), b"{oops").await.assert_error(400, "validation_failed");
    let viewer = api.with_token(&s.viewer);
    viewer.json("POST", &format!("/api/hub/clients/{b_id}/send"), &json!({})).await.assert_error(403, "forbidden");
    assert_eq!(viewer.get("/api/hub/clients").await.status, 200, "viewers may list");
    api.anonymous().get("/api/hub/clients").await.assert_error(401, "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// The gateway's own events

#[actix_rt::test]
async fn service_status_and_settings_changed_events() {
    let port = free_port();
    let config = one_service("pattern", port, &["--quiet"], "autostart = false");
    let s = Setup::new(&config, FAST).await;
    let api = s.app.client();
    let (mut ws, _) = s.ws().await;
    ws.subscribe(1, &["service_status", "system"]).await;

    api.post("/api/services/pattern/start").await.data();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("online") {
        let e = ws.recv().await;
        assert_event(&e, "service_status:pattern");
        assert_eq!(e["data"]["name"], "pattern");
        assert_eq!(e["data"]["display_name"], "pattern service");
        seen.push(e["data"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["starting", "online"]);

    api.post("/api/services/pattern/stop").await.data();
    let mut seen = Vec::new();
    while seen.last().map(|(s, _): &(String, Value)| s.as_str()) != Some("stopped") {
        let e = ws.recv().await;
        seen.push((e["data"]["status"].as_str().unwrap().to_owned(), e["data"]["sub_state"].clone()));
    }
    assert_eq!(seen.first().unwrap().1, "stopping", "{seen:?}");

    let r = api.json("PUT", "/api/settings/ui.language", &json!({"value": "en"})).await;
    r.data();
    let e = ws.recv().await;
    assert_event(&e, "system");
    assert_eq!(e["data"]["kind"], "settings_changed", "{e}");
    assert_eq!(e["data"]["keys"], json!(["ui.language"]));
    api.json("PUT", "/api/settings", &json!({"symbols": ["EURUSD"], "default_timeframe": "M5"})).await.data();
    let e = ws.recv().await;
    assert_eq!(e["data"]["keys"], json!(["default_timeframe", "symbols"]), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Connection churn

/// Sockets the process holds open (other descriptors, such as SQLite's, come and go with its pool).
fn open_sockets(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
        .count()
}

#[actix_rt::test]
async fn a_thousand_connect_close_cycles_leave_nothing_behind() {
    let s = Setup::new(&idle_config(), &[]).await;
    let url = format!("ws://127.0.0.1:{}/ws", s.app.port);
    // Warm up, then count the orchestrator's descriptors.
    let (warm, _) = s.ws().await;
    drop(warm);
    eventually("the warm-up client to be gone", WAIT, || async { s.clients().await.is_empty().then_some(()) }).await;
    let sockets_before = open_sockets(s.app.pid());

    let client = awc::Client::default();
    let viewer = s.viewer.clone();
    let cycle = |i: usize| {
        let (client, url, viewer) = (client.clone(), url.clone(), viewer.clone());
        async move {
            let (_, framed) = client.ws(url).connect().await.unwrap();
            let mut ws = Ws { io: Box::new(framed), pings: 0, auto_pong: true };
            match i % 4 {
                // Authenticate, subscribe, close politely and wait for the server's close.
                0 => {
                    ws.auth(&viewer).await;
                    ws.subscribe(1, &["tick:EURUSD", "system"]).await;
                    ws.send(Message::Close(Some(awc::ws::CloseCode::Normal.into()))).await;
                    match ws.next().await {
                        Got::Close(Some(1000), _) => {}
                        other => panic!("the server echoes the close code, got {other:?}"),
                    }
                }
                // Authenticate, subscribe, then just drop the TCP connection.
                1 => {
                    ws.auth(&viewer).await;
                    ws.subscribe(1, &["position"]).await;
                }
                // Drop before authenticating.
                2 => {}
                // Authenticate and drop.
                _ => {
                    ws.auth(&viewer).await;
                }
            }
        }
    };
    let started = Instant::now();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(25) {
        futures_util::future::join_all(chunk.iter().map(|&i| cycle(i))).await;
    }
    let took = started.elapsed();
    eventually("every client entry to be gone", WAIT, || async { s.clients().await.is_empty().then_some(()) }).await;
    eventually("the orchestrator's sockets to be closed", WAIT, || async {
        (open_sockets(s.app.pid()) <= sockets_before + 2).then_some(())
    })
    .await;
    let stats = s.app.client().get("/api/hub/clients").await;
    assert_eq!(stats.data(), &json!([]));
    assert!(took < Duration::from_secs(40), "1000 cycles took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[actix_rt::test]
async fn shutdown_closes_every_client_with_1001_without_delay() {
    let mut s = Setup::new(&idle_config(), &[]).await;
    let (mut ws, _) = s.ws().await;
    ws.subscribe(1, &["system"]).await;
    let mut sse = Sse::open(&s.app, "/api/events/stream?topics=system", Some(&s.viewer), &[]).await.unwrap();
    sse.next_event().await;
    let started = Instant::now();
    let mut child = s.app.child.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(ws.recv_close().await, 1001);
    let close = sse.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({"code": 1001, "reason": "server shutting down"}));
    let status = eventually("the orchestrator to exit", WAIT, || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "open real-time connections held the shutdown for {took:?}");
}
