//! The per-connection state machine on a real tokio runtime: authentication (deadline, bad and
//! forbidden credentials), replies, limits, flood, keepalive and closes coming from the hub.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_core::{EventType, Lang, Role, Topic};
use hub::{Action, Authenticator, Connection, Credential, Hub, HubConfig, HubHandle, Principal, close_code};
use serde_json::{Value, json};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

fn authenticator() -> Authenticator {
    Authenticator::new(|c: &Credential| match c {
        Credential::Token(t) if t == "viewer-token" => Some(Principal { name: "viewer".into(), role: Role::Viewer }),
        Credential::Token(t) if t == "service-token" => Some(Principal { name: "svc".into(), role: Role::Service }),
        Credential::Ticket(t) if t == "ticket-1" => Some(Principal { name: "op".into(), role: Role::Operator }),
        _ => None,
    })
}

fn connection(hub: &HubHandle) -> Connection {
    Connection::new(hub.clone(), authenticator(), Some("127.0.0.1:50000".into())).with_lang(Lang::En)
}

async fn authenticated(hub: &HubHandle) -> Connection {
    let mut conn = connection(hub);
    let actions = conn.on_text(r#"{"id":1,"type":"auth","token":"viewer-token"}"#).await;
    assert_eq!(actions.len(), 1);
    assert_eq!(sent(&actions[0])["type"], "auth_ok");
    conn
}

fn sent(action: &Action) -> Value {
    match action {
        Action::Send(frame) => serde_json::from_str(frame.as_str()).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn closed(actions: &[Action]) -> (u16, String) {
    match actions {
        [Action::Close { code, reason }] => (*code, reason.clone()),
        other => panic!("expected one close, got {other:?}"),
    }
}

async fn next(conn: &mut Connection) -> Action {
    tokio::time::timeout(WAIT, conn.next_action()).await.expect("no action in time")
}

async fn next_frame(conn: &mut Connection) -> Value {
    sent(&next(conn).await)
}

#[tokio::test]
async fn auth_subscribe_receive_and_ping() {
    let hub = Hub::start(HubConfig::default());
    let mut conn = connection(&hub);
    assert!(conn.client_id().is_none());
    let actions = conn.on_text(r#"{"id":1,"type":"auth","token":"viewer-token"}"#).await;
    let reply = sent(&actions[0]);
    let client_id = conn.client_id().unwrap().to_owned();
    assert_eq!(
        reply,
        json!({"id": 1, "type": "auth_ok", "client_id": client_id, "ping_interval_ms": 25000, "epoch": &*hub.epoch()})
    );

    let actions = conn.on_text(r#"{"id":2,"type":"subscribe","topics":["tick:EURUSD","service_status"]}"#).await;
    assert!(actions.is_empty(), "the ack travels in order with the events: {actions:?}");
    assert_eq!(
        next_frame(&mut conn).await,
        json!({"id": 2, "type": "subscribed", "topics": ["tick:EURUSD", "service_status"], "recovered": {}})
    );
    hub.publish(EventType::Tick, Topic::parse("tick:EURUSD").unwrap(), json!({"bid": 1.1}), None).unwrap();
    let event = next_frame(&mut conn).await;
    assert_eq!((event["topic"].clone(), event["seq"].clone()), (json!("tick:EURUSD"), json!(1)));

    let actions = conn.on_text(r#"{"id":"p","type":"ping"}"#).await;
    assert_eq!(sent(&actions[0]), json!({"id": "p", "type": "pong"}));
    assert!(conn.on_text(r#"{"type":"pong"}"#).await.is_empty());

    let actions = conn.on_text(r#"{"id":3,"type":"unsubscribe","topics":["service_status"]}"#).await;
    assert!(actions.is_empty());
    assert_eq!(next_frame(&mut conn).await, json!({"id": 3, "type": "unsubscribed", "topics": ["service_status"]}));

    let clients = hub.clients().await;
    assert_eq!(clients.len(), 1);
    assert_eq!((clients[0].id.as_str(), clients[0].principal.role), (client_id.as_str(), Role::Viewer));
    assert_eq!(clients[0].topics, ["tick:EURUSD"]);
    assert_eq!(clients[0].remote_addr.as_deref(), Some("127.0.0.1:50000"));
}

#[tokio::test]
async fn tickets_authenticate_too_and_an_async_authenticator_works() {
    let hub = Hub::start(HubConfig::default());
    let mut conn = connection(&hub);
    let actions = conn.on_text(r#"{"type":"auth","ticket":"ticket-1"}"#).await;
    assert_eq!(sent(&actions[0])["type"], "auth_ok");
    assert!(sent(&actions[0]).get("id").is_none());
    assert_eq!(hub.clients().await[0].principal.role, Role::Operator);

    let slow_auth = Authenticator::new_async(|c: Credential| async move {
        tokio::task::yield_now().await;
        (c.secret() == "s3cret").then(|| Principal { name: "async".into(), role: Role::Viewer })
    });
    let mut conn = Connection::new(hub.clone(), slow_auth, None);
    let actions = conn.on_text(r#"{"id":1,"type":"auth","token":"s3cret"}"#).await;
    assert_eq!(sent(&actions[0])["type"], "auth_ok");
}

#[tokio::test]
async fn bad_forbidden_or_missing_authentication_closes() {
    let hub = Hub::start(HubConfig::default());
    let cases = [
        (r#"{"id":1,"type":"auth","token":"wrong"}"#, close_code::AUTH_FAILED, "authentication failed"),
        (r#"{"id":1,"type":"auth","ticket":"viewer-token"}"#, close_code::AUTH_FAILED, "authentication failed"),
        (r#"{"id":1,"type":"auth","token":"service-token"}"#, close_code::FORBIDDEN, "forbidden"),
        (r#"{"id":1,"type":"subscribe","topics":["tick"]}"#, close_code::AUTH_FAILED, "authentication required"),
        (r#"{"type":"ping"}"#, close_code::AUTH_FAILED, "authentication required"),
        ("not json", close_code::AUTH_FAILED, "authentication required"),
        (r#"{"type":"auth"}"#, close_code::AUTH_FAILED, "authentication required"),
    ];
    for (text, code, reason) in cases {
        let mut conn = connection(&hub);
        assert_eq!(closed(&conn.on_text(text).await), (code, reason.to_owned()), "{text}");
        assert!(conn.is_closed());
        assert!(conn.on_text(r#"{"type":"auth","token":"viewer-token"}"#).await.is_empty(), "closed stays closed");
    }
    let mut conn = connection(&hub);
    assert_eq!(closed(&conn.on_binary(3)).0, close_code::AUTH_FAILED);
    assert!(hub.clients().await.is_empty());
}

#[tokio::test]
async fn no_auth_within_the_deadline_closes_4001() {
    let auth_timeout = Duration::from_millis(150);
    let hub = Hub::start(HubConfig { auth_timeout, ..HubConfig::default() });
    let started = Instant::now();
    let mut conn = connection(&hub);
    let action = next(&mut conn).await;
    assert!(started.elapsed() >= auth_timeout);
    assert_eq!(closed(&[action]), (close_code::AUTH_FAILED, "authentication timeout".to_owned()));

    // An authenticator that hangs is cut off by the same deadline.
    let hanging = Authenticator::new_async(|_c: Credential| std::future::pending());
    let mut conn = Connection::new(hub.clone(), hanging, None);
    let actions = tokio::time::timeout(WAIT, conn.on_text(r#"{"type":"auth","token":"x"}"#)).await.unwrap();
    assert_eq!(closed(&actions), (close_code::AUTH_FAILED, "authentication timeout".to_owned()));
}

#[tokio::test]
async fn a_flood_closes_4009() {
    let hub =
        Hub::start(HubConfig { flood_messages: 5, flood_window: Duration::from_secs(60), ..HubConfig::default() });
    let mut conn = authenticated(&hub).await;
    for _ in 0..4 {
        assert_eq!(sent(&conn.on_text(r#"{"type":"ping"}"#).await[0])["type"], "pong");
    }
    assert_eq!(closed(&conn.on_text(r#"{"type":"ping"}"#).await), (close_code::POLICY_VIOLATION, "flood".to_owned()));
    drop(conn);
    assert!(hub.clients().await.is_empty(), "dropping the connection unregisters the client");
}

#[tokio::test]
async fn oversized_messages_close_1009() {
    let hub = Hub::start(HubConfig::default());
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(64 * 1024));
    let mut conn = authenticated(&hub).await;
    assert_eq!(closed(&conn.on_text(&big).await), (close_code::MESSAGE_TOO_BIG, "message too big".to_owned()));
    let mut conn = connection(&hub);
    assert_eq!(closed(&conn.on_text(&big).await).0, close_code::MESSAGE_TOO_BIG);
    let mut conn = authenticated(&hub).await;
    assert_eq!(closed(&conn.on_binary(64 * 1024 + 1)).0, close_code::MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn bad_messages_get_error_replies_and_the_connection_stays_open() {
    let hub = Hub::start(HubConfig { max_topics_per_client: 2, ..HubConfig::default() });
    let mut conn = authenticated(&hub).await;
    let cases = [
        (r#"{"id":5,"type":"subscribe","topics":["tick:A","tick:B","tick:C"]}"#, json!(5), "too_many_topics"),
        (r#"{"id":6,"type":"subscribe","topics":["nope"]}"#, json!(6), "invalid_message"),
        (r#"{"id":7,"type":"dance"}"#, json!(7), "unknown_type"),
        (r#"{"id":8,"type":"auth","token":"viewer-token"}"#, json!(8), "already_authenticated"),
        ("{oops", Value::Null, "invalid_message"),
    ];
    for (text, id, code) in cases {
        let actions = conn.on_text(text).await;
        let reply = sent(&actions[0]);
        assert_eq!((reply["type"].clone(), reply["code"].clone()), (json!("error"), json!(code)), "{text}");
        assert_eq!(reply.get("id").cloned().unwrap_or(Value::Null), id, "{text}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(sent(&conn.on_binary(4)[0])["code"], "unsupported");

    // The per-client limit is also enforced across messages.
    assert!(conn.on_text(r#"{"id":9,"type":"subscribe","topics":["tick:A","tick:B"]}"#).await.is_empty());
    assert_eq!(next_frame(&mut conn).await["type"], "subscribed");
    let reply = sent(&conn.on_text(r#"{"id":10,"type":"subscribe","topics":["tick:C"]}"#).await[0]);
    assert_eq!((reply["id"].clone(), reply["code"].clone()), (json!(10), json!("too_many_topics")));
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn error_messages_are_hungarian_by_default() {
    let hub = Hub::start(HubConfig::default());
    let mut conn = Connection::new(hub.clone(), authenticator(), None);
    conn.on_text(r#"{"type":"auth","token":"viewer-token"}"#).await;
    let reply = sent(&conn.on_text(r#"{"type":"subscribe","topics":[]}"#).await[0]);
    assert_eq!(reply["message"], "Érvénytelen üzenet: topics – túl rövid (legalább 1)");
}

#[tokio::test]
async fn pings_are_scheduled_and_silence_closes_4000() {
    let hub = Hub::start(HubConfig {
        ping_interval: Duration::from_millis(40),
        idle_timeout: Duration::from_millis(400),
        ..HubConfig::default()
    });
    let mut conn = authenticated(&hub).await;
    let started = Instant::now();
    let mut pings = 0;
    let (code, reason) = loop {
        match next(&mut conn).await {
            Action::Ping => pings += 1,
            Action::Close { code, reason } => break (code, reason),
            Action::Send(f) => panic!("unexpected frame {}", f.as_str()),
        }
    };
    assert_eq!((code, reason.as_str()), (close_code::IDLE_TIMEOUT, "idle timeout"));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(pings >= 1, "{pings} pings");

    // Activity (a pong) keeps it open past the idle timeout.
    let mut conn = authenticated(&hub).await;
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(50), conn.next_action()).await {
            Ok(Action::Ping) | Err(_) => conn.on_activity(),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn a_slow_consumer_is_closed_4008_through_the_connection() {
    let hub = Hub::start(HubConfig { client_queue: 2, ..HubConfig::default() });
    let mut conn = authenticated(&hub).await;
    assert!(conn.on_text(r#"{"id":2,"type":"subscribe","topics":["position"]}"#).await.is_empty());
    for n in 0..10 {
        hub.publish(EventType::Position, Topic::parse("position:X").unwrap(), json!({ "n": n }), None).unwrap();
    }
    hub.stats().await;
    assert_eq!(closed(&[next(&mut conn).await]), (close_code::SLOW_CONSUMER, "slow consumer".to_owned()));
    assert!(conn.is_closed());
    assert_eq!(hub.stats().await.slow_consumer_closes, 1);
    assert!(hub.clients().await.is_empty());
}

#[tokio::test]
async fn hub_shutdown_closes_connections_1001() {
    let hub = Hub::start(HubConfig::default());
    let mut conn = authenticated(&hub).await;
    hub.shutdown().await;
    assert_eq!(closed(&[next(&mut conn).await]).0, close_code::GOING_AWAY);
    let mut late = connection(&hub);
    let actions = late.on_text(r#"{"type":"auth","token":"viewer-token"}"#).await;
    assert_eq!(closed(&actions).0, close_code::INTERNAL_ERROR);
}
