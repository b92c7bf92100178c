//! The cluster engine against a real `redis-server` (started here on a free port): two hubs in
//! one runtime stand in for two processes sharing one broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway_core::{Event, Role, Topic, TopicPattern};
use hub::{
    Ack, BrokerConfig, ClientInfo, ClientSession, Hub, HubConfig, HubHandle, Outbound, Principal, SubscribeRequest,
    Subscribed, Transport,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

struct Redis {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("hub-cluster-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis { child: None, port, dir };
        redis.spawn().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install Debian's redis-server)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        until("redis-server answers", || async {
            match client.get_multiplexed_async_connection().await {
                Ok(mut con) => redis::cmd("PING").query_async::<String>(&mut con).await.is_ok(),
                Err(_) => false,
            }
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it holds, failing after `WAIT`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn clustered(redis: &Redis, node: &str) -> HubHandle {
    let hub = Hub::start_clustered(HubConfig::default(), BrokerConfig::new(redis.url(), node));
    connected(&hub, true).await;
    hub
}

async fn connected(hub: &HubHandle, up: bool) {
    until("the broker state", || async { hub.broker_state().is_some_and(|s| s.connected == up) }).await;
}

fn topic(s: &str) -> Topic {
    Topic::parse(s).unwrap()
}

fn info() -> ClientInfo {
    ClientInfo {
        principal: Principal { name: "tester".into(), role: Role::Viewer },
        remote_addr: None,
        transport: Transport::Ws,
    }
}

async fn client(hub: &HubHandle, ps: &[&str]) -> ClientSession {
    let session = hub.connect(info()).await.unwrap();
    let patterns = ps.iter().map(|p| TopicPattern::parse(p).unwrap()).collect();
    hub.subscribe(&session.id, SubscribeRequest { patterns, ..Default::default() }).await.unwrap();
    session
}

async fn subscribe_since(hub: &HubHandle, session: &ClientSession, t: &str, since: u64, epoch: &str) -> Subscribed {
    let request = SubscribeRequest {
        patterns: vec![TopicPattern::parse(t).unwrap()],
        since: BTreeMap::from([(topic(t), since)]),
        epoch: Some(epoch.to_owned()),
        ack: Some(Ack { id: Some(1.into()) }),
    };
    hub.subscribe(&session.id, request).await.unwrap()
}

fn publish(hub: &HubHandle, t: &str, data: Value) {
    let t = topic(t);
    hub.publish(t.event_type(), t, data, None).unwrap();
}

/// The next event frame of the session (replies skipped).
async fn next_event(session: &mut ClientSession) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match session.recv().await {
                Some(Outbound::Frame(f)) => {
                    if let Some(e) = f.to_event() {
                        return e;
                    }
                }
                Some(Outbound::Close { code, reason }) => panic!("closed {code} {reason}"),
                None => panic!("outbox ended"),
            }
        }
    })
    .await
    .expect("an event within the deadline")
}

/// The next event of `topic` whose `data.event` is `what` (other events skipped).
async fn next_notice(session: &mut ClientSession, what: &str) -> Event {
    loop {
        let e = next_event(session).await;
        if e.topic.as_str() == "system" && e.data["event"] == what {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_for_every_node_and_replay_on_another_node() {
    let redis = Redis::start().await;
    let a = clustered(&redis, "a").await;
    let b = clustered(&redis, "b").await;
    assert_eq!(a.epoch(), b.epoch(), "both nodes derive the same epoch");
    assert_eq!(a.epoch().len(), 32);
    let state = a.broker_state().unwrap();
    assert_eq!((state.connected, state.epoch_source), (true, "redis"));
    let mut ca = client(&a, &["position"]).await;
    let mut cb = client(&b, &["position"]).await;
    for i in 1..=3 {
        publish(&a, "position:EURUSD", json!({"i": i}));
    }
    for i in 1..=3u64 {
        let (ea, eb) = (next_event(&mut ca).await, next_event(&mut cb).await);
        assert_eq!((ea.seq, eb.seq), (i, i));
        assert_eq!(ea.epoch, *a.epoch());
        assert_eq!(eb.epoch, ea.epoch);
        assert_eq!(eb.data, json!({"i": i}));
    }
    // Published on B, sequenced after A's.
    publish(&b, "position:EURUSD", json!({"i": 4}));
    assert_eq!(next_event(&mut ca).await.seq, 4);
    assert_eq!(next_event(&mut cb).await.seq, 4);

    // A client that saw seq 2 on A resumes on B.
    let mut moved = b.connect(info()).await.unwrap();
    let sub = subscribe_since(&b, &moved, "position:EURUSD", 2, &a.epoch()).await;
    assert_eq!(sub.recovered.get("position:EURUSD"), Some(&true));
    assert_eq!(next_event(&mut moved).await.seq, 3);
    assert_eq!(next_event(&mut moved).await.seq, 4);
    publish(&a, "position:EURUSD", json!({"i": 5}));
    assert_eq!(next_event(&mut moved).await.seq, 5);
    assert!(b.broker_state().is_some() && Hub::start(HubConfig::default()).broker_state().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_replays_what_was_published_before() {
    let redis = Redis::start().await;
    let a = clustered(&redis, "a").await;
    let mut ca = client(&a, &["strategy_signal"]).await;
    for i in 1..=5 {
        publish(&a, "strategy_signal:s1", json!({"i": i}));
    }
    for i in 1..=5 {
        assert_eq!(next_event(&mut ca).await.seq, i);
    }
    let late = clustered(&redis, "late").await;
    assert_eq!(late.epoch(), a.epoch());
    let mut c = late.connect(info()).await.unwrap();
    let sub = subscribe_since(&late, &c, "strategy_signal:s1", 1, &a.epoch()).await;
    assert_eq!(sub.recovered.get("strategy_signal:s1"), Some(&true));
    for i in 2..=5 {
        let e = next_event(&mut c).await;
        assert_eq!((e.seq, e.data), (i, json!({"i": i})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_means_a_local_epoch_then_a_new_shared_one() {
    let mut redis = Redis::start().await;
    let a = clustered(&redis, "a").await;
    let b = clustered(&redis, "b").await;
    let mut ca = client(&a, &["position", "system"]).await;
    let mut cb = client(&b, &["position", "system"]).await;
    publish(&a, "position:X", json!({"i": 1}));
    assert_eq!(next_event(&mut ca).await.seq, 1);
    assert_eq!(next_event(&mut cb).await.seq, 1);
    let before = a.epoch();

    redis.kill();
    let down = next_notice(&mut ca, "broker_down").await;
    assert_eq!(down.data["node"], "a");
    assert_eq!(next_notice(&mut cb, "broker_down").await.data["node"], "b");
    connected(&a, false).await;
    assert_eq!(a.broker_state().unwrap().epoch_source, "local");
    let local = a.epoch();
    assert_ne!(local, before);
    assert_ne!(local, b.epoch(), "each node has its own local epoch");
    publish(&a, "position:X", json!({"i": 2}));
    let e = next_event(&mut ca).await;
    assert_eq!((e.seq, e.epoch.as_str(), e.data), (1, &*local, json!({"i": 2})));

    redis.spawn().await;
    connected(&a, true).await;
    connected(&b, true).await;
    let up = next_notice(&mut cb, "broker_up").await;
    let after = b.epoch();
    assert_eq!(up.epoch, *after);
    assert_eq!(a.epoch(), after);
    assert_ne!(after, before, "a Redis restart is a new epoch");
    publish(&a, "position:X", json!({"i": 3}));
    let e = loop {
        let e = next_event(&mut cb).await;
        if e.topic.as_str() == "position:X" {
            break e;
        }
    };
    assert_eq!((e.seq, e.epoch.as_str(), e.data), (1, &*after, json!({"i": 3})));

    let c = b.connect(info()).await.unwrap();
    let sub = subscribe_since(&b, &c, "position:X", 1, &before).await;
    assert_eq!(sub.recovered.get("position:X"), Some(&false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushall_gives_every_node_a_new_epoch() {
    let redis = Redis::start().await;
    let a = clustered(&redis, "a").await;
    let b = clustered(&redis, "b").await;
    let mut cb = client(&b, &["position"]).await;
    publish(&a, "position:X", json!({"i": 1}));
    assert_eq!(next_event(&mut cb).await.seq, 1);
    let before = a.epoch();

    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL").query_async::<()>(&mut con).await.unwrap();
    until("both nodes under a new shared epoch", || async {
        a.epoch() != before && a.epoch() == b.epoch() && a.broker_state().unwrap().connected
    })
    .await;
    let after = a.epoch();
    publish(&a, "position:X", json!({"i": 2}));
    let e = next_event(&mut cb).await;
    assert_eq!((e.seq, e.epoch.as_str(), e.data), (1, &*after, json!({"i": 2})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_local_hub_and_its_password_is_never_shown() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://:secret@127.0.0.1:{closed}/0");
    let hub = Hub::start_clustered(HubConfig::default(), BrokerConfig::new(url, "lonely"));
    // The notice may come before the client: `since` 0 replays it in that case.
    let mut c = client(&hub, &["position"]).await;
    let request = SubscribeRequest {
        patterns: vec![TopicPattern::parse("system").unwrap()],
        since: BTreeMap::from([(topic("system"), 0)]),
        ..Default::default()
    };
    hub.subscribe(&c.id, request).await.unwrap();
    let down = next_notice(&mut c, "broker_down").await;
    assert_eq!(down.data["node"], "lonely");
    let state = hub.broker_state().unwrap();
    assert_eq!((state.connected, state.epoch_source), (false, "local"));
    assert_eq!(state.url_redacted, format!("redis://127.0.0.1:{closed}/0"));
    assert!(!serde_json::to_string(&state).unwrap().contains("secret"));
    publish(&hub, "position:X", json!({"i": 1}));
    let e = next_event(&mut c).await;
    assert_eq!((e.seq, e.epoch.as_str()), (1, &*hub.epoch()));

    let bad = Hub::start_clustered(HubConfig::default(), BrokerConfig::new("not a url", "bad"));
    let mut c = client(&bad, &["position"]).await;
    publish(&bad, "position:X", json!({}));
    assert_eq!(next_event(&mut c).await.seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_live_message_is_filled_from_the_stream_and_a_lost_script_is_loaded_again() {
    let redis = Redis::start().await;
    let a = clustered(&redis, "a").await;
    let b = clustered(&redis, "b").await;
    let mut cb = client(&b, &["position"]).await;
    publish(&a, "position:EURUSD", json!({"i": 1}));
    assert_eq!(next_event(&mut cb).await.seq, 1);

    // Seq 2 is sequenced and stored as the script would, but its live message never goes out.
    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let epoch = a.epoch();
    let base = format!("orchestrator:hub:{epoch}");
    let stream = format!("{base}:t:position:EURUSD");
    let stored: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut con).await.unwrap();
    let first = stored[0].1[1].clone();
    let seq: u64 = redis::cmd("HINCRBY")
        .arg(format!("{base}:seq"))
        .arg("position:EURUSD")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(seq, 2);
    let second = first.replacen("\"seq\":1", "\"seq\":2", 1).replacen("{\"i\":1}", "{\"i\":2}", 1);
    assert_ne!(first, second, "the stored frame has the expected shape: {first}");
    let _: String =
        redis::cmd("XADD").arg(&stream).arg("2-1").arg("f").arg(&second).query_async(&mut con).await.unwrap();
    // The next live message shows the gap; B fills it from the stream, in order.
    publish(&a, "position:EURUSD", json!({"i": 3}));
    let filled = next_event(&mut cb).await;
    assert_eq!((filled.seq, filled.data), (2, json!({"i": 2})));
    assert_eq!(next_event(&mut cb).await.seq, 3);

    // Redis loses the script (SCRIPT FLUSH, a promoted replica): loaded again, not an outage.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut con).await.unwrap();
    publish(&a, "position:EURUSD", json!({"i": 4}));
    let after = next_event(&mut cb).await;
    assert_eq!((after.seq, after.epoch.as_str(), after.data), (4, &*epoch, json!({"i": 4})));
    assert!(a.broker_state().is_some_and(|s| s.connected && s.epoch_source == "redis"));
}
