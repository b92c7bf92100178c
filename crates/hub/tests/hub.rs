//! The hub through its public handle, on a real tokio runtime: sequencing, matching, replay,
//! latest tick, slow consumers, ingest validation and client registration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future as _;
use std::time::Duration;

use gateway_core::{Event, EventType, Role, Topic, TopicPattern};
use hub::{
    Ack, ClientInfo, ClientSession, Hub, HubConfig, HubError, HubHandle, Outbound, Principal, SubscribeRequest,
    Subscribed, Transport, close_code,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn topic(s: &str) -> Topic {
    Topic::parse(s).unwrap()
}

fn patterns(ps: &[&str]) -> Vec<TopicPattern> {
    ps.iter().map(|p| TopicPattern::parse(p).unwrap()).collect()
}

fn info() -> ClientInfo {
    ClientInfo {
        principal: Principal { name: "tester".into(), role: Role::Viewer },
        remote_addr: Some("127.0.0.1:40000".into()),
        transport: Transport::Ws,
    }
}

async fn client(hub: &HubHandle, ps: &[&str]) -> ClientSession {
    let session = hub.connect(info()).await.unwrap();
    if !ps.is_empty() {
        hub.subscribe(&session.id, SubscribeRequest { patterns: patterns(ps), ..Default::default() }).await.unwrap();
    }
    session
}

async fn subscribe_since(
    hub: &HubHandle,
    session: &ClientSession,
    ps: &[&str],
    since: &[(&str, u64)],
    epoch: Option<&str>,
) -> Subscribed {
    let request = SubscribeRequest {
        patterns: patterns(ps),
        since: since.iter().map(|(t, s)| (topic(t), *s)).collect(),
        epoch: epoch.map(str::to_owned),
        ack: Some(Ack { id: Some(7.into()) }),
    };
    hub.subscribe(&session.id, request).await.unwrap()
}

fn publish(hub: &HubHandle, t: &str, data: Value) {
    let t = topic(t);
    hub.publish(t.event_type(), t, data, None).unwrap();
}

/// Everything queued for the session once the hub has handled every earlier command.
async fn ready(hub: &HubHandle, session: &mut ClientSession) -> Vec<Outbound> {
    hub.stats().await;
    let mut out = Vec::new();
    while let Some(Some(item)) = session.outbound.try_recv() {
        out.push(item);
    }
    out
}

fn json_of(item: &Outbound) -> Value {
    match item {
        Outbound::Frame(f) => serde_json::from_str(f.as_str()).unwrap(),
        Outbound::Close { code, reason } => panic!("unexpected close {code} {reason}"),
    }
}

fn events(items: &[Outbound]) -> Vec<Event> {
    items
        .iter()
        .map(|i| match i {
            Outbound::Frame(f) => f.to_event().unwrap_or_else(|| panic!("not an event: {}", f.as_str())),
            Outbound::Close { code, reason } => panic!("unexpected close {code} {reason}"),
        })
        .collect()
}

fn seqs(items: &[Outbound]) -> Vec<u64> {
    events(items).iter().map(|e| e.seq).collect()
}

fn topics_of(items: &[Outbound]) -> Vec<String> {
    events(items).iter().map(|e| e.topic.to_string()).collect()
}

async fn recv(session: &mut ClientSession) -> Option<Outbound> {
    tokio::time::timeout(WAIT, session.recv()).await.expect("nothing received in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_per_topic_from_one_without_gaps() {
    let hub = Hub::start(HubConfig::default());
    let mut s = client(&hub, &["tick", "position"]).await;
    let threads: Vec<_> = ["tick:EURUSD", "tick:GBPUSD", "position:EURUSD"]
        .into_iter()
        .map(|t| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for n in 0..60 {
                    publish(&hub, t, json!({ "n": n }));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let items = ready(&hub, &mut s).await;
    assert_eq!(items.len(), 180);
    let mut per_topic: BTreeMap<String, Vec<(u64, Value)>> = BTreeMap::new();
    for e in events(&items) {
        assert_eq!(e.epoch, *hub.epoch());
        assert_eq!(e.event_type, e.topic.event_type());
        per_topic.entry(e.topic.to_string()).or_default().push((e.seq, e.data));
    }
    for (t, got) in per_topic {
        let want: Vec<(u64, Value)> = (0..60).map(|n| (n + 1, json!({ "n": n }))).collect();
        assert_eq!(got, want, "{t}");
    }
    let stats = hub.stats().await;
    assert_eq!((stats.events_published, stats.topics, stats.clients), (180, 3, 1));
    assert_eq!(stats.frames_sent, 180);

    let other = Hub::start(HubConfig::default());
    assert_ne!(other.epoch(), hub.epoch(), "every start has a new epoch");
    assert_eq!(hub.epoch().len(), 32);
}

#[tokio::test]
async fn subscribers_receive_only_matching_events() {
    let hub = Hub::start(HubConfig::default());
    let mut s = client(&hub, &["service_status:data"]).await;
    publish(&hub, "service_status:data", json!({"status": "online"}));
    publish(&hub, "service_status:mt5", json!({"status": "offline"}));
    publish(&hub, "tick:EURUSD", json!({"bid": 1.1}));
    let items = ready(&hub, &mut s).await;
    let got = events(&items);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.as_str(), "service_status:data");
    assert_eq!(got[0].data, json!({"status": "online"}));
    assert_eq!(got[0].seq, 1);
    // The frame text is what was promised on the wire.
    let Outbound::Frame(frame) = &items[0] else { unreachable!() };
    assert!(frame.as_str().starts_with(r#"{"type":"service_status","topic":"service_status:data","seq":1,"epoch":""#));
    assert_eq!(frame.sse_id().as_deref(), Some("service_status:data@1"));
}

#[tokio::test]
async fn bare_type_prefix_and_exact_patterns_match_once_each() {
    let hub = Hub::start(HubConfig::default());
    let mut all = client(&hub, &["tick"]).await;
    let mut eur = client(&hub, &["tick:EUR*"]).await;
    let mut exact = client(&hub, &["tick:EURUSD"]).await;
    let mut overlap = client(&hub, &["tick", "tick:EUR*", "tick:EURUSD", "tick:*"]).await;
    let mut system = client(&hub, &["system"]).await;
    for t in ["tick:EURUSD", "tick:EURJPY", "tick:GBPUSD", "system", "position:EURUSD"] {
        publish(&hub, t, json!({}));
    }
    assert_eq!(topics_of(&ready(&hub, &mut all).await), ["tick:EURUSD", "tick:EURJPY", "tick:GBPUSD"]);
    assert_eq!(topics_of(&ready(&hub, &mut eur).await), ["tick:EURUSD", "tick:EURJPY"]);
    assert_eq!(topics_of(&ready(&hub, &mut exact).await), ["tick:EURUSD"]);
    assert_eq!(topics_of(&ready(&hub, &mut overlap).await), ["tick:EURUSD", "tick:EURJPY", "tick:GBPUSD"]);
    assert_eq!(topics_of(&ready(&hub, &mut system).await), ["system"]);
}

#[tokio::test]
async fn replay_sends_the_ack_then_every_missed_event_then_live_ones() {
    let hub = Hub::start(HubConfig::default());
    for n in 1..=10 {
        publish(&hub, "position:EURUSD", json!({ "n": n }));
    }
    let mut s = client(&hub, &[]).await;
    let sub = subscribe_since(&hub, &s, &["position:EURUSD"], &[("position:EURUSD", 3)], Some(&hub.epoch())).await;
    assert_eq!(sub.topics, ["position:EURUSD"]);
    assert_eq!(sub.recovered, BTreeMap::from([("position:EURUSD".to_owned(), true)]));
    publish(&hub, "position:EURUSD", json!({ "n": 11 }));
    let items = ready(&hub, &mut s).await;
    assert_eq!(
        json_of(&items[0]),
        json!({"id": 7, "type": "subscribed", "topics": ["position:EURUSD"], "recovered": {"position:EURUSD": true}})
    );
    assert_eq!(seqs(&items[1..]), (4..=11).collect::<Vec<_>>());
    assert_eq!(events(&items[1..])[0].data, json!({ "n": 4 }));

    let whole = hub.replay(&topic("position:EURUSD"), 0, None).await;
    assert!(whole.recovered);
    assert_eq!(whole.frames.iter().map(|f| f.seq().unwrap()).collect::<Vec<_>>(), (1..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_gap_in_the_ring_means_not_recovered_and_no_partial_replay() {
    let hub = Hub::start(HubConfig { ring_size: 5, ..HubConfig::default() });
    for n in 1..=10 {
        publish(&hub, "position:EURUSD", json!({ "n": n }));
    }
    let mut gap = client(&hub, &[]).await;
    let sub = subscribe_since(&hub, &gap, &["position"], &[("position:EURUSD", 2)], None).await;
    assert!(!sub.recovered["position:EURUSD"]);
    let mut edge = client(&hub, &[]).await;
    let sub = subscribe_since(&hub, &edge, &["position"], &[("position:EURUSD", 5)], None).await;
    assert!(sub.recovered["position:EURUSD"], "the ring holds 6..=10");
    publish(&hub, "position:EURUSD", json!({ "n": 11 }));

    let items = ready(&hub, &mut gap).await;
    assert_eq!(json_of(&items[0])["recovered"], json!({"position:EURUSD": false}));
    assert_eq!(seqs(&items[1..]), [11], "nothing replayed, live events flow");
    let items = ready(&hub, &mut edge).await;
    assert_eq!(seqs(&items[1..]), [6, 7, 8, 9, 10, 11]);
    let r = hub.replay(&topic("position:EURUSD"), 2, None).await;
    assert!(!r.recovered && r.frames.is_empty());
}

#[tokio::test]
async fn another_epoch_or_an_impossible_seq_is_not_recovered() {
    let hub = Hub::start(HubConfig::default());
    for _ in 0..4 {
        publish(&hub, "strategy_signal:s1", json!({}));
    }
    let t = topic("strategy_signal:s1");
    let epoch = hub.epoch();
    let cases: [(u64, Option<&str>, bool, usize); 6] = [
        (0, Some("another-epoch"), false, 0),
        (0, Some(&*epoch), true, 4),
        (2, None, true, 2),
        (4, None, true, 0),
        (9, None, false, 0), // after a restart without epoch: seq beyond the last one
        (3, Some(""), false, 0),
    ];
    for (since, epoch, recovered, n) in cases {
        let r = hub.replay(&t, since, epoch).await;
        assert_eq!((r.recovered, r.frames.len()), (recovered, n), "since {since} epoch {epoch:?}");
        let mut s = client(&hub, &[]).await;
        let sub = subscribe_since(&hub, &s, &["strategy_signal"], &[("strategy_signal:s1", since)], epoch).await;
        assert_eq!(sub.recovered["strategy_signal:s1"], recovered);
        assert_eq!(ready(&hub, &mut s).await.len(), 1 + n);
    }
    // A topic that has never had an event: since 0 is up to date, anything else is not.
    assert!(hub.replay(&topic("position:NONE"), 0, None).await.recovered);
    assert!(!hub.replay(&topic("position:NONE"), 5, None).await.recovered);
}

#[tokio::test]
async fn the_ring_forgets_events_older_than_its_max_age_but_keeps_the_latest() {
    let hub = Hub::start(HubConfig { ring_max_age: Duration::from_millis(100), ..HubConfig::default() });
    for n in 1..=3 {
        publish(&hub, "tick:EURUSD", json!({ "n": n }));
    }
    let t = topic("tick:EURUSD");
    assert_eq!(hub.replay(&t, 0, None).await.frames.len(), 3);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.replay(&t, 0, None).await.recovered {
        assert!(tokio::time::Instant::now() < deadline, "events never aged out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hub.replay(&t, 3, None).await.recovered, "up to date needs nothing from the ring");
    let latest = hub.latest(&t).await.unwrap();
    assert_eq!((latest.seq, latest.data), (3, json!({ "n": 3 })));
}

#[tokio::test]
async fn subscribing_to_an_exact_tick_sends_its_latest_tick_at_once() {
    let hub = Hub::start(HubConfig::default());
    for n in 1..=3 {
        publish(&hub, "tick:EURUSD", json!({ "bid": n }));
    }
    publish(&hub, "tick:GBPUSD", json!({ "bid": 9 }));
    publish(&hub, "position:EURUSD", json!({}));

    let mut exact = client(&hub, &["tick:EURUSD", "position:EURUSD"]).await;
    let got = events(&ready(&hub, &mut exact).await);
    assert_eq!(got.len(), 1, "only ticks get a latest-on-subscribe");
    assert_eq!((got[0].topic.as_str(), got[0].seq, &got[0].data), ("tick:EURUSD", 3, &json!({ "bid": 3 })));

    let mut bare = client(&hub, &["tick", "tick:GBP*"]).await;
    assert!(ready(&hub, &mut bare).await.is_empty());

    let mut replayed = client(&hub, &[]).await;
    subscribe_since(&hub, &replayed, &["tick:EURUSD"], &[("tick:EURUSD", 1)], None).await;
    let items = ready(&hub, &mut replayed).await;
    assert_eq!(seqs(&items[1..]), [2, 3], "the replay already ends with the latest tick");

    let mut lost = client(&hub, &[]).await;
    subscribe_since(&hub, &lost, &["tick:EURUSD"], &[("tick:EURUSD", 1)], Some("old")).await;
    let items = ready(&hub, &mut lost).await;
    assert_eq!(json_of(&items[0])["recovered"]["tick:EURUSD"], false);
    assert_eq!(seqs(&items[1..]), [3], "not recovered: the current price still comes");

    assert_eq!(hub.latest(&topic("tick:GBPUSD")).await.unwrap().data, json!({ "bid": 9 }));
    assert!(hub.latest(&topic("tick:USDJPY")).await.is_none());
}

#[tokio::test]
async fn a_stalled_tick_reader_is_conflated_to_the_newest_tick_and_never_closed() {
    let hub = Hub::start(HubConfig { client_queue: 8, ..HubConfig::default() });
    let mut s = client(&hub, &["tick"]).await;
    for n in 1..=200 {
        for sym in ["A", "B", "C"] {
            publish(&hub, &format!("tick:{sym}"), json!({ "n": n }));
        }
    }
    let items = ready(&hub, &mut s).await;
    assert!(items.len() <= 8 + 3, "queue stays bounded: {}", items.len());
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for e in events(&items) {
        let prev = last.insert(e.topic.to_string(), e.seq).unwrap_or(0);
        assert!(e.seq > prev, "{} went from {prev} to {}", e.topic, e.seq);
        assert_eq!(e.data, json!({ "n": e.seq }));
    }
    assert_eq!(last, BTreeMap::from([("tick:A".into(), 200), ("tick:B".into(), 200), ("tick:C".into(), 200)]));
    let stats = hub.stats().await;
    assert_eq!(stats.slow_consumer_closes, 0);
    assert_eq!(items.len() as u64 + stats.drops, 600, "every tick was either delivered or conflated");
    let clients = hub.clients().await;
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].drops, stats.drops);
    // Still subscribed and healthy.
    publish(&hub, "tick:A", json!({ "n": 201 }));
    assert_eq!(seqs(&ready(&hub, &mut s).await), [201]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_non_tick_reader_is_closed_while_a_healthy_client_gets_everything_in_order() {
    let hub = Hub::start(HubConfig { client_queue: 16, ..HubConfig::default() });
    let mut slow = client(&hub, &["position"]).await;
    let mut healthy = client(&hub, &["position"]).await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = healthy.recv().await {
            match item {
                Outbound::Frame(f) => {
                    if seen_tx.send(f.to_event().unwrap().seq).is_err() {
                        break;
                    }
                }
                Outbound::Close { code, reason } => panic!("healthy client closed: {code} {reason}"),
            }
        }
        healthy
    });
    let mut seen = Vec::new();
    for batch in 0..25 {
        for n in 0..8 {
            publish(&hub, "position:EURUSD", json!({ "n": batch * 8 + n }));
        }
        while seen.len() < (batch + 1) * 8 {
            seen.push(tokio::time::timeout(WAIT, seen_rx.recv()).await.unwrap().unwrap());
        }
    }
    assert_eq!(seen, (1..=200).collect::<Vec<u64>>());
    match recv(&mut slow).await {
        Some(Outbound::Close { code, reason }) => {
            assert_eq!((code, reason.as_str()), (close_code::SLOW_CONSUMER, "slow consumer"));
        }
        other => panic!("expected a 4008 close, got {other:?}"),
    }
    assert!(recv(&mut slow).await.is_none());
    let stats = hub.stats().await;
    assert_eq!(stats.slow_consumer_closes, 1);
    let clients = hub.clients().await;
    assert_eq!(clients.len(), 1);
    assert_ne!(clients[0].id, slow.id);
    drop(seen_rx);
    publish(&hub, "position:EURUSD", json!({}));
    let healthy = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(clients[0].id, healthy.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_with_since_under_concurrent_publishing_loses_and_doubles_nothing() {
    let hub = Hub::start(HubConfig { ring_size: 10_000, client_queue: 100_000, ..HubConfig::default() });
    let t = topic("position:EURUSD");
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for n in 1..=5_000u64 {
                publish(&hub, "position:EURUSD", json!({ "n": n }));
                if n % 256 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.latest(&t).await.is_none_or(|e| e.seq < 100) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let mut s = client(&hub, &[]).await;
    let sub = subscribe_since(&hub, &s, &["position"], &[("position:EURUSD", 50)], None).await;
    assert!(sub.recovered["position:EURUSD"]);
    publisher.join().unwrap();
    let items = ready(&hub, &mut s).await;
    assert_eq!(json_of(&items[0])["type"], "subscribed");
    assert_eq!(seqs(&items[1..]), (51..=5_000).collect::<Vec<u64>>());
}

#[tokio::test]
async fn dropping_a_thousand_sessions_leaves_no_client_behind() {
    let hub = Hub::start(HubConfig::default());
    let mut sessions = Vec::new();
    for i in 0..1000 {
        let ps: &[&str] = match i % 3 {
            0 => &["tick"],
            1 => &["tick:EUR*", "position"],
            _ => &["tick:EURUSD"],
        };
        sessions.push(client(&hub, ps).await);
    }
    assert_eq!(hub.clients().await.len(), 1000);
    publish(&hub, "tick:EURUSD", json!({}));
    drop(sessions);
    assert!(hub.clients().await.is_empty());
    assert_eq!(hub.stats().await.clients, 0);
    // Slots are reused cleanly: a new client gets exactly its own events.
    let mut s = client(&hub, &["position"]).await;
    publish(&hub, "tick:EURUSD", json!({}));
    publish(&hub, "position:X", json!({}));
    assert_eq!(topics_of(&ready(&hub, &mut s).await), ["position:X"]);
    s.close();
    assert!(hub.clients().await.is_empty());
}

#[tokio::test]
async fn publish_raw_validates_every_field() {
    let hub = Hub::start(HubConfig::default());
    let big = "x".repeat(64 * 1024 + 1);
    let bad: Vec<(Value, &str, &str)> = vec![
        (json!([]), "event", "expected an object"),
        (json!({"data": {}}), "type", "required"),
        (json!({"type": 1, "data": {}}), "type", "expected a string"),
        (json!({"type": "ticks", "data": {}}), "type", "unknown event type"),
        (json!({"type": "tick", "topic": "position:X", "data": {}}), "topic", "invalid topic"),
        (json!({"type": "tick", "topic": "tick:EUR USD", "data": {}}), "topic", "invalid topic"),
        (json!({"type": "tick", "topic": "tick:EUR*", "data": {}}), "topic", "invalid topic"),
        (json!({"type": "tick", "topic": 5, "data": {}}), "topic", "expected a string"),
        (json!({"type": "tick", "topic": "tick:X"}), "data", "required"),
        (json!({"type": "tick", "data": {}, "timestamp": "yesterday"}), "timestamp", "invalid time"),
        (json!({"type": "tick", "data": {}, "timestamp": 1700000000000u64}), "timestamp", "expected a string"),
        (json!({"type": "tick", "data": {}, "seq": 4}), "seq", "unknown field"),
        (json!({"type": "system", "data": big}), "data", "too long (at most 65536)"),
    ];
    for (item, field, needle) in bad {
        match hub.publish_raw(item.clone()) {
            Err(HubError::Invalid(e)) => {
                assert_eq!(e.field, field, "{item}");
                assert!(e.to_string().contains(needle), "{item}: {e}");
            }
            other => panic!("{item}: expected invalid, got {other:?}"),
        }
    }
    assert_eq!(hub.stats().await.events_published, 0);

    let mut s = client(&hub, &["tick", "system"]).await;
    let good = [
        json!({"type": "tick", "topic": "tick:EURUSD", "data": {"bid": 1.1}, "timestamp": "2026-01-02T03:04:05.678Z"}),
        json!({"type": "system", "data": "settings_changed"}),
        json!({"type": "tick", "topic": null, "data": null}),
    ];
    for item in good {
        hub.publish_raw(item).unwrap();
    }
    let got = events(&ready(&hub, &mut s).await);
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].topic.as_str(), got[0].timestamp.as_str()), ("tick:EURUSD", "2026-01-02T03:04:05.678Z"));
    assert_eq!((got[1].topic.as_str(), &got[1].data), ("system", &json!("settings_changed")));
    assert!(got[1].timestamp.ends_with('Z'), "timestamp defaults to now");
    assert_eq!(got[2].topic.as_str(), "tick", "topic defaults to the type");

    let batch = vec![json!({"type": "system", "data": 1}), json!({"type": "nope", "data": 2})];
    match hub.publish_raw_batch(batch) {
        Err(HubError::Invalid(e)) => assert_eq!(e.field, "[1].type"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_eq!(hub.stats().await.events_published, 3, "an invalid batch publishes nothing");
    let batch = vec![json!({"type": "system", "data": 1}), json!({"type": "system", "data": 2})];
    assert_eq!(hub.publish_raw_batch(batch).unwrap(), 2);
    assert_eq!(seqs(&ready(&hub, &mut s).await), [2, 3]);

    let mismatch = hub.publish(EventType::Tick, topic("position:X"), json!({}), None);
    assert!(matches!(mismatch, Err(HubError::Invalid(e)) if e.field == "topic"));
}

#[tokio::test]
async fn targeted_sends_reach_one_client() {
    let hub = Hub::start(HubConfig::default());
    let mut a = client(&hub, &["system"]).await;
    let mut b = client(&hub, &["system"]).await;
    hub.send_to(&a.id, json!({"notice": "hello"})).await.unwrap();
    let items = ready(&hub, &mut a).await;
    let v = json_of(&items[0]);
    assert_eq!(
        (v["type"].clone(), v["topic"].clone(), v["direct"].clone()),
        (json!("system"), json!("system"), json!(true))
    );
    assert_eq!(v["data"], json!({"notice": "hello"}));
    assert_eq!(v["epoch"], &*hub.epoch());
    assert!(v.get("seq").is_none());
    assert!(ready(&hub, &mut b).await.is_empty());
    assert!(matches!(hub.send_to("nobody", json!(1)).await, Err(HubError::NotFound(id)) if id == "nobody"));
}

#[tokio::test]
async fn unsubscribe_acks_and_then_nothing_of_those_patterns_arrives() {
    let hub = Hub::start(HubConfig::default());
    let mut s = client(&hub, &["tick", "position"]).await;
    publish(&hub, "tick:A", json!({}));
    hub.unsubscribe(&s.id, patterns(&["tick", "service_status"]), Some(Ack { id: Some(3.into()) })).await.unwrap();
    publish(&hub, "tick:A", json!({}));
    publish(&hub, "position:A", json!({}));
    let items = ready(&hub, &mut s).await;
    assert_eq!(events(&items[..1])[0].topic.as_str(), "tick:A");
    assert_eq!(json_of(&items[1]), json!({"id": 3, "type": "unsubscribed", "topics": ["tick", "service_status"]}));
    assert_eq!(topics_of(&items[2..]), ["position:A"]);
    assert_eq!(hub.clients().await[0].topics, ["position"]);
    assert!(matches!(hub.unsubscribe("nobody", vec![], None).await, Err(HubError::NotFound(_))));
}

#[tokio::test]
async fn the_topic_limit_is_per_client_and_all_or_nothing() {
    let hub = Hub::start(HubConfig { max_topics_per_client: 3, ..HubConfig::default() });
    let s = client(&hub, &["tick:A", "tick:B"]).await;
    let r = hub
        .subscribe(&s.id, SubscribeRequest { patterns: patterns(&["tick:C", "tick:D"]), ..Default::default() })
        .await;
    assert!(matches!(r, Err(HubError::TooManyTopics { max: 3 })));
    assert_eq!(hub.clients().await[0].topics, ["tick:A", "tick:B"]);
    let r = hub
        .subscribe(
            &s.id,
            SubscribeRequest { patterns: patterns(&["tick:A", "tick:B", "tick:C"]), ..Default::default() },
        )
        .await;
    assert!(r.is_ok(), "patterns already held do not count twice");
    assert_eq!(hub.clients().await[0].topics, ["tick:A", "tick:B", "tick:C"]);
    let r = hub.subscribe("nobody", SubscribeRequest::default()).await;
    assert!(matches!(r, Err(HubError::NotFound(_))));
}

#[tokio::test]
async fn clients_are_listed_with_what_the_operator_needs() {
    let hub = Hub::start(HubConfig::default());
    let mut s = client(&hub, &["tick:EURUSD"]).await;
    publish(&hub, "tick:EURUSD", json!({}));
    publish(&hub, "tick:EURUSD", json!({}));
    let clients = hub.clients().await;
    assert_eq!(clients.len(), 1);
    let c = &clients[0];
    assert_eq!(c.id, s.id);
    assert_eq!(c.principal, Principal { name: "tester".into(), role: Role::Viewer });
    assert_eq!((c.transport, c.remote_addr.as_deref(), c.queue_depth), (Transport::Ws, Some("127.0.0.1:40000"), 2));
    assert!(c.connected_at.ends_with('Z'));
    let v = serde_json::to_value(c).unwrap();
    assert_eq!(v["transport"], "ws");
    assert_eq!(v["principal"]["role"], "viewer");
    assert_eq!(ready(&hub, &mut s).await.len(), 2);
    assert_eq!(hub.clients().await[0].queue_depth, 0);
}

#[tokio::test]
async fn shutdown_closes_every_client_and_refuses_further_work() {
    let hub = Hub::start(HubConfig::default());
    let mut s = client(&hub, &["tick"]).await;
    hub.shutdown().await;
    match recv(&mut s).await {
        Some(Outbound::Close { code, .. }) => assert_eq!(code, close_code::GOING_AWAY),
        other => panic!("expected close, got {other:?}"),
    }
    assert!(recv(&mut s).await.is_none());
    assert!(matches!(hub.publish(EventType::System, topic("system"), json!(1), None), Err(HubError::Stopped)));
    assert!(matches!(hub.connect(info()).await, Err(HubError::Stopped)));
    assert!(hub.clients().await.is_empty());
}

#[tokio::test]
async fn a_connect_abandoned_after_the_hub_answered_leaves_no_client_behind() {
    let hub = Hub::start(HubConfig::default());
    {
        let mut connect = std::pin::pin!(hub.connect(info()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(connect.as_mut().poll(&mut cx).is_pending(), "the command is sent, the hub has not run yet");
        // Let the hub task register the client and answer; then give up without reading the answer.
        let deadline = tokio::time::Instant::now() + WAIT;
        while hub.stats().await.clients == 0 {
            assert!(tokio::time::Instant::now() < deadline);
        }
    }
    assert!(hub.clients().await.is_empty());
}
