//! Property tests (proptest) of the client protocol parser: `parse_client_message` never panics
//! on any text (arbitrary strings, arbitrary JSON, near-valid messages, deep nesting, oversized
//! input), every rejection has a stable code and a message in both languages, and whatever it
//! accepts respects the protocol's limits. `cargo xtask fuzz` runs these with many more cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_core::Lang;
use hub::protocol::{MAX_MESSAGE_BYTES, parse_client_message};
use hub::{ClientMessage, Credential};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CODES: [&str; 7] = [
    "message_too_big",
    "invalid_message",
    "unknown_type",
    "too_many_topics",
    "already_authenticated",
    "unsupported",
    "internal",
];

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        topic_like().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["id", "type", "token", "ticket", "topics", "since", "epoch", "extra"])
            .prop_map(String::from),
        ".{0,12}",
    ]
}

fn topic_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "(tick|system|position|service_status|strategy_signal)(:[A-Za-z0-9._#@-]{1,10}\\*?)?",
        "(tick|ticks|TICK|)(:[A-Za-z0-9*: ]{0,8})?",
    ]
}

/// A valid pattern, cheaply: a type, and maybe a key (with duplicates on purpose) or a prefix.
fn cheap_pattern() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["tick", "position", "service_status", "strategy_signal", "system"]), 0u32..400, 0u8..3)
        .prop_map(|(ty, n, shape)| match shape {
            0 => ty.to_owned(),
            1 => format!("{ty}:K{n}"),
            _ => format!("{ty}:K{n}*"),
        })
}

/// Objects shaped like client messages, with some fields valid and some not.
fn near_message() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        prop::sample::select(vec!["auth", "subscribe", "unsubscribe", "ping", "pong"]).prop_map(Value::from),
        json_value(),
    ];
    let topics = prop_oneof![
        prop::collection::vec(topic_like().prop_map(Value::from), 0..6).prop_map(Value::Array),
        prop::collection::vec(cheap_pattern().prop_map(Value::from), 120..140).prop_map(Value::Array),
        json_value(),
    ];
    let since = prop_oneof![
        prop::collection::btree_map(topic_like(), prop_oneof![any::<u64>().prop_map(Value::from), json_value()], 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        json_value(),
    ];
    let token = prop_oneof![".{0,30}".prop_map(Value::from), json_value()];
    (
        ty,
        prop::option::of(json_value()),
        prop::option::of(topics),
        prop::option::of(since),
        prop::option::of(token.clone()),
        prop::option::of(token),
        prop::option::of((field_name(), json_value())),
    )
        .prop_map(|(ty, id, topics, since, token, ticket, extra)| {
            let mut m = Map::new();
            m.insert("type".into(), ty);
            for (k, v) in [("id", id), ("topics", topics), ("since", since), ("token", token), ("ticket", ticket)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m).to_string()
        })
}

/// Checks one parse: no panic, a known code and real messages for a rejection, and the
/// protocol's limits for an acceptance.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse_client_message(text) {
        Err(e) => {
            prop_assert!(CODES.contains(&e.code()), "unknown code {} for {text:?}", e.code());
            prop_assert!(!e.message(Lang::En).is_empty() && !e.message(Lang::Hu).is_empty());
            prop_assert!(e.message(Lang::En).len() < 2048, "an unbounded message for {} bytes of input", text.len());
        }
        Ok(msg) => {
            prop_assert!(text.len() <= MAX_MESSAGE_BYTES);
            match msg {
                ClientMessage::Auth { credential, .. } => {
                    let secret = match &credential {
                        Credential::Token(s) | Credential::Ticket(s) => s,
                    };
                    prop_assert!(!secret.is_empty() && secret.len() <= 4096);
                }
                ClientMessage::Subscribe { topics, since, epoch, .. } => {
                    prop_assert!(!topics.is_empty() && topics.len() <= 128);
                    let mut seen = std::collections::HashSet::new();
                    prop_assert!(topics.iter().all(|t| seen.insert(t.as_str().to_owned())), "duplicates kept");
                    prop_assert!(since.keys().all(|t| topics.iter().any(|p| p.matches(t))), "since not covered");
                    prop_assert!(epoch.is_none_or(|e| !e.is_empty() && e.len() <= 64));
                }
                ClientMessage::Unsubscribe { topics, .. } => {
                    prop_assert!(!topics.is_empty() && topics.len() <= 128);
                }
                ClientMessage::Ping { .. } | ClientMessage::Pong { .. } => {}
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn never_panics_on_any_text(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn never_panics_on_any_json(value in json_value()) {
        check(&value.to_string())?;
    }

    #[test]
    fn near_valid_messages_are_accepted_or_refused_cleanly(text in near_message()) {
        check(&text)?;
    }

    #[test]
    fn deep_nesting_and_oversized_input_are_refused(depth in 1usize..20_000, pad in 0usize..(2 * MAX_MESSAGE_BYTES)) {
        let nested = format!("{{\"type\":\"ping\",\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        check(&nested)?;
        let big = format!("{{\"type\":\"ping\",\"id\":\"{}\"}}", "x".repeat(pad));
        check(&big)?;
        if big.len() > MAX_MESSAGE_BYTES {
            prop_assert_eq!(parse_client_message(&big).unwrap_err().code(), "message_too_big");
        }
    }

    #[test]
    fn valid_subscriptions_parse_to_their_topics(
        topics in prop::collection::vec(cheap_pattern(), 1..=128),
        id in any::<u32>(),
    ) {
        let text = json!({"id": id, "type": "subscribe", "topics": topics}).to_string();
        match parse_client_message(&text) {
            Ok(ClientMessage::Subscribe { topics: parsed, since, epoch, .. }) => {
                let mut expected: Vec<&str> = Vec::new();
                for t in &topics {
                    if !expected.contains(&t.as_str()) {
                        expected.push(t);
                    }
                }
                let parsed: Vec<&str> = parsed.iter().map(|p| p.as_str()).collect();
                prop_assert_eq!(parsed, expected);
                prop_assert!(since.is_empty() && epoch.is_none());
            }
            other => prop_assert!(false, "{text}: {other:?}"),
        }
    }
}
