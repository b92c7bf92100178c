//! The client protocol (SPEC §6), independent of the transport: parsing of client messages with
//! precise errors, and serialisation of the replies.
//!
//! Client → server (one JSON text each; `id` is optional, a number or a string, echoed in the reply):
//!
//! * `{"id":1,"type":"auth","token":"…"}` or `{"id":1,"type":"auth","ticket":"…"}`
//! * `{"id":2,"type":"subscribe","topics":["tick:EURUSD","service_status"],"since":{"tick:EURUSD":1200},"epoch":"…"}`
//! * `{"id":3,"type":"unsubscribe","topics":["service_status"]}`
//! * `{"id":4,"type":"ping"}` (answered with `pong`), `{"type":"pong"}` (keeps the connection alive)
//!
//! Server → client replies:
//!
//! * `{"id":1,"type":"auth_ok","client_id":"…","ping_interval_ms":25000,"epoch":"…"}`
//! * `{"id":2,"type":"subscribed","topics":[…],"recovered":{"tick:EURUSD":true}}`, queued
//!   before the replayed events and before any live event of those topics
//! * `{"id":3,"type":"unsubscribed","topics":[…]}`, after which no event of those patterns follows
//! * `{"id":4,"type":"pong"}`
//! * `{"id":5,"type":"error","code":"invalid_message","message":"…"}` (codes: [`ProtocolError::code`])
//!
//! Unknown fields are rejected, like everywhere else in the orchestrator.

use std::collections::{BTreeMap, HashSet};

use gateway_core::{FieldError, JsonType, Lang, Reason, Topic, TopicPattern};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::HubConfig;
use crate::error::ProtocolError;
use crate::frame::Frame;

/// Default largest inbound message: 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest accepted token or ticket.
const MAX_CREDENTIAL_LEN: usize = 4096;
/// Longest accepted string `id` or `epoch`.
const MAX_SHORT_STRING: usize = 64;

/// The client's request id: a JSON number or string, echoed in the reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct RequestId(Value);

impl RequestId {
    /// The id as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId(Value::from(n))
    }
}

/// What the client authenticates with; verified outside the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token (`token`).
    Token(String),
    /// A one-time ticket from `POST /api/auth/ticket` (`ticket`).
    Ticket(String),
}

impl Credential {
    /// The secret itself.
    pub fn secret(&self) -> &str {
        match self {
            Credential::Token(s) | Credential::Ticket(s) => s,
        }
    }
}

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Authenticate the connection.
    Auth {
        /// Request id.
        id: Option<RequestId>,
        /// Token or ticket.
        credential: Credential,
    },
    /// Subscribe to patterns, optionally replaying from `since`.
    Subscribe {
        /// Request id.
        id: Option<RequestId>,
        /// The patterns, deduplicated, in the order given.
        topics: Vec<TopicPattern>,
        /// Last `seq` seen per topic; each topic is covered by one of `topics`.
        since: BTreeMap<Topic, u64>,
        /// The epoch the client last saw.
        epoch: Option<String>,
    },
    /// Drop patterns.
    Unsubscribe {
        /// Request id.
        id: Option<RequestId>,
        /// The patterns, deduplicated.
        topics: Vec<TopicPattern>,
    },
    /// Application-level ping; answered with `pong`.
    Ping {
        /// Request id.
        id: Option<RequestId>,
    },
    /// Application-level pong; only keeps the connection alive.
    Pong {
        /// Request id.
        id: Option<RequestId>,
    },
}

impl ClientMessage {
    /// The request id, if the client sent one.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            ClientMessage::Auth { id, .. }
            | ClientMessage::Subscribe { id, .. }
            | ClientMessage::Unsubscribe { id, .. }
            | ClientMessage::Ping { id }
            | ClientMessage::Pong { id } => id.as_ref(),
        }
    }
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Most patterns (and `since` entries) in one message.
    pub max_topics: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: MAX_MESSAGE_BYTES, max_topics: 128 }
    }
}

impl From<&HubConfig> for Limits {
    fn from(c: &HubConfig) -> Self {
        Limits { max_message_bytes: c.max_message_bytes, max_topics: c.max_topics_per_client }
    }
}

/// A rejected message: the error and the request id, when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The request id, for the `error` reply.
    pub id: Option<RequestId>,
    /// Why.
    pub error: ProtocolError,
}

/// Parses a client message with the default limits (64 KiB, 128 topics).
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    parse(text, Limits::default()).map_err(|r| r.error)
}

/// Parses a client message; on error also returns the request id when it could be read.
pub fn parse(text: &str, limits: Limits) -> Result<ClientMessage, Rejected> {
    let reject = |id: Option<RequestId>, error| Rejected { id, error };
    if text.len() > limits.max_message_bytes {
        return Err(reject(None, ProtocolError::TooBig { max: limits.max_message_bytes }));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| reject(None, json_error(&e)))?;
    let Value::Object(mut map) = value else {
        return Err(reject(None, field("message", Reason::WrongType { expected: JsonType::Object })));
    };
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(request_id(v).map_err(|e| reject(None, e))?),
    };
    let ty = match map.remove("type") {
        None | Some(Value::Null) => Err(field("type", Reason::Missing)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(field("type", Reason::WrongType { expected: JsonType::String })),
    }
    .map_err(|e| reject(id.clone(), e))?;
    let parsed = match ty.as_str() {
        "auth" => parse_auth(id.clone(), &mut map),
        "subscribe" => parse_subscribe(id.clone(), &mut map, limits),
        "unsubscribe" => parse_topics(map.remove("topics"), limits)
            .map(|topics| ClientMessage::Unsubscribe { id: id.clone(), topics }),
        "ping" => Ok(ClientMessage::Ping { id: id.clone() }),
        "pong" => Ok(ClientMessage::Pong { id: id.clone() }),
        other => Err(ProtocolError::UnknownType(other.chars().take(MAX_SHORT_STRING).collect())),
    }
    .and_then(|msg| match map.keys().next() {
        Some(unknown) => Err(field(&truncate(unknown), Reason::UnknownField)),
        None => Ok(msg),
    });
    parsed.map_err(|e| reject(id, e))
}

fn field(name: &str, reason: Reason) -> ProtocolError {
    ProtocolError::Field(FieldError::new(name, reason))
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_SHORT_STRING).collect()
}

fn json_error(e: &serde_json::Error) -> ProtocolError {
    let reason = match e.classify() {
        serde_json::error::Category::Eof => Reason::TruncatedJson,
        _ => Reason::MalformedJson { line: e.line(), column: e.column() },
    };
    field("message", reason)
}

fn request_id(v: Value) -> Result<RequestId, ProtocolError> {
    match v {
        Value::Number(_) => Ok(RequestId(v)),
        Value::String(ref s) if s.len() <= MAX_SHORT_STRING => Ok(RequestId(v)),
        Value::String(_) => Err(field("id", Reason::TooLong { max: MAX_SHORT_STRING })),
        _ => Err(field("id", Reason::WrongType { expected: JsonType::Integer })),
    }
}

fn short_string(v: Value, name: &str, max: usize) -> Result<String, ProtocolError> {
    match v {
        Value::String(s) if s.is_empty() => Err(field(name, Reason::TooShort { min: 1 })),
        Value::String(s) if s.len() > max => Err(field(name, Reason::TooLong { max })),
        Value::String(s) => Ok(s),
        _ => Err(field(name, Reason::WrongType { expected: JsonType::String })),
    }
}

fn parse_auth(id: Option<RequestId>, map: &mut Map<String, Value>) -> Result<ClientMessage, ProtocolError> {
    let token = map.remove("token").filter(|v| !v.is_null());
    let ticket = map.remove("ticket").filter(|v| !v.is_null());
    let credential = match (token, ticket) {
        (Some(_), Some(_)) => return Err(ProtocolError::AmbiguousCredential),
        (Some(t), None) => Credential::Token(short_string(t, "token", MAX_CREDENTIAL_LEN)?),
        (None, Some(t)) => Credential::Ticket(short_string(t, "ticket", MAX_CREDENTIAL_LEN)?),
        (None, None) => return Err(field("token", Reason::Missing)),
    };
    Ok(ClientMessage::Auth { id, credential })
}

fn parse_topics(v: Option<Value>, limits: Limits) -> Result<Vec<TopicPattern>, ProtocolError> {
    let items = match v {
        None | Some(Value::Null) => return Err(field("topics", Reason::Missing)),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(field("topics", Reason::WrongType { expected: JsonType::Array })),
    };
    if items.is_empty() {
        return Err(field("topics", Reason::TooShort { min: 1 }));
    }
    if items.len() > limits.max_topics {
        return Err(ProtocolError::TooManyTopics { max: limits.max_topics });
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut topics = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::String(s) = item else {
            return Err(field(&format!("topics[{i}]"), Reason::WrongType { expected: JsonType::String }));
        };
        let pattern = TopicPattern::parse(&s).map_err(|r| field(&format!("topics[{i}]"), r))?;
        if seen.insert(s) {
            topics.push(pattern);
        }
    }
    Ok(topics)
}

fn parse_subscribe(
    id: Option<RequestId>,
    map: &mut Map<String, Value>,
    limits: Limits,
) -> Result<ClientMessage, ProtocolError> {
    let topics = parse_topics(map.remove("topics"), limits)?;
    let mut since = BTreeMap::new();
    match map.remove("since") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            if entries.len() > limits.max_topics {
                return Err(field("since", Reason::TooLong { max: limits.max_topics }));
            }
            for (key, value) in entries {
                let name = format!("since.{}", truncate(&key));
                let topic = Topic::parse(&key).map_err(|r| field(&name, r))?;
                let seq =
                    value.as_u64().ok_or_else(|| field(&name, Reason::WrongType { expected: JsonType::Integer }))?;
                if !topics.iter().any(|p| p.matches(&topic)) {
                    return Err(ProtocolError::SinceNotSubscribed(topic));
                }
                since.insert(topic, seq);
            }
        }
        Some(_) => return Err(field("since", Reason::WrongType { expected: JsonType::Object })),
    }
    let epoch = match map.remove("epoch") {
        None | Some(Value::Null) => None,
        Some(v) => Some(short_string(v, "epoch", MAX_SHORT_STRING)?),
    };
    Ok(ClientMessage::Subscribe { id, topics, since, epoch })
}

/// Parses an SSE `Last-Event-ID` (`topic@seq`).
pub fn parse_sse_id(s: &str) -> Option<(Topic, u64)> {
    let (topic, seq) = s.trim().rsplit_once('@')?;
    Some((Topic::parse(topic).ok()?, seq.parse().ok()?))
}

#[derive(Serialize)]
struct Reply<'a, T: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RequestId>,
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(flatten)]
    body: T,
}

fn reply<T: Serialize>(id: Option<&RequestId>, ty: &'static str, body: T) -> Frame {
    let text = serde_json::to_string(&Reply { id, ty, body }).unwrap_or_else(|e| {
        log::error!("hub: cannot serialise a {ty} reply: {e}");
        format!("{{\"type\":\"{ty}\"}}")
    });
    Frame::reply(text)
}

#[derive(Serialize)]
struct Empty {}

/// `{"id":…,"type":"auth_ok","client_id":…,"ping_interval_ms":…,"epoch":…}`
pub fn auth_ok(id: Option<&RequestId>, client_id: &str, ping_interval_ms: u64, epoch: &str) -> Frame {
    #[derive(Serialize)]
    struct Body<'a> {
        client_id: &'a str,
        ping_interval_ms: u64,
        epoch: &'a str,
    }
    reply(id, "auth_ok", Body { client_id, ping_interval_ms, epoch })
}

/// `{"id":…,"type":"subscribed","topics":[…],"recovered":{topic: bool}}`
pub fn subscribed(id: Option<&RequestId>, topics: &[String], recovered: &BTreeMap<String, bool>) -> Frame {
    #[derive(Serialize)]
    struct Body<'a> {
        topics: &'a [String],
        recovered: &'a BTreeMap<String, bool>,
    }
    reply(id, "subscribed", Body { topics, recovered })
}

/// `{"id":…,"type":"unsubscribed","topics":[…]}`
pub fn unsubscribed(id: Option<&RequestId>, topics: &[String]) -> Frame {
    #[derive(Serialize)]
    struct Body<'a> {
        topics: &'a [String],
    }
    reply(id, "unsubscribed", Body { topics })
}

/// `{"id":…,"type":"pong"}`
pub fn pong(id: Option<&RequestId>) -> Frame {
    reply(id, "pong", Empty {})
}

/// `{"id":…,"type":"error","code":…,"message":…}`
pub fn error(id: Option<&RequestId>, err: &ProtocolError, lang: Lang) -> Frame {
    #[derive(Serialize)]
    struct Body<'a> {
        code: &'a str,
        message: String,
    }
    reply(id, "error", Body { code: err.code(), message: err.message(lang) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn pat(s: &str) -> TopicPattern {
        TopicPattern::parse(s).unwrap()
    }

    #[test]
    fn good_messages() {
        let cases: Vec<(&str, ClientMessage)> = vec![
            (
                r#"{"id":1,"type":"auth","token":"abc"}"#,
                ClientMessage::Auth { id: Some(1.into()), credential: Credential::Token("abc".into()) },
            ),
            (
                r#"{"type":"auth","ticket":"t-1"}"#,
                ClientMessage::Auth { id: None, credential: Credential::Ticket("t-1".into()) },
            ),
            (
                r#"{"id":"x","type":"auth","token":"abc","ticket":null}"#,
                ClientMessage::Auth { id: Some(RequestId(json!("x"))), credential: Credential::Token("abc".into()) },
            ),
            (
                r#"{"id":2,"type":"subscribe","topics":["tick:EURUSD","service_status","tick:EURUSD"],"since":{"tick:EURUSD":1200},"epoch":"e1"}"#,
                ClientMessage::Subscribe {
                    id: Some(2.into()),
                    topics: vec![pat("tick:EURUSD"), pat("service_status")],
                    since: BTreeMap::from([(Topic::parse("tick:EURUSD").unwrap(), 1200)]),
                    epoch: Some("e1".into()),
                },
            ),
            (
                r#"{"type":"subscribe","topics":["tick:EUR*"],"since":{"tick:EURJPY":0}}"#,
                ClientMessage::Subscribe {
                    id: None,
                    topics: vec![pat("tick:EUR*")],
                    since: BTreeMap::from([(Topic::parse("tick:EURJPY").unwrap(), 0)]),
                    epoch: None,
                },
            ),
            (
                r#"{"id":3,"type":"unsubscribe","topics":["system"]}"#,
                ClientMessage::Unsubscribe { id: Some(3.into()), topics: vec![pat("system")] },
            ),
            (r#"{"id":4,"type":"ping"}"#, ClientMessage::Ping { id: Some(4.into()) }),
            (r#" {"type":"pong"} "#, ClientMessage::Pong { id: None }),
        ];
        for (text, want) in cases {
            assert_eq!(parse_client_message(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_messages() {
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        let many: Vec<String> = (0..129).map(|i| format!("tick:S{i}")).collect();
        let too_many = json!({"type": "subscribe", "topics": many}).to_string();
        let cases: Vec<(&str, &str, &str)> = vec![
            ("", "invalid_message", "message: the JSON ends prematurely"),
            ("{\"type\":", "invalid_message", "message: the JSON ends prematurely"),
            ("{type: auth}", "invalid_message", "message: malformed JSON at line 1, column 2"),
            ("[1,2]", "invalid_message", "message: wrong type, expected an object"),
            ("\"ping\"", "invalid_message", "message: wrong type, expected an object"),
            ("{}", "invalid_message", "type: is required but missing"),
            (r#"{"type":5}"#, "invalid_message", "type: wrong type, expected a string"),
            (r#"{"type":"hello"}"#, "unknown_type", "\"hello\""),
            (r#"{"type":"ping","extra":1}"#, "invalid_message", "extra: unknown field"),
            (r#"{"id":[1],"type":"ping"}"#, "invalid_message", "id: wrong type"),
            (r#"{"type":"auth"}"#, "invalid_message", "token: is required but missing"),
            (r#"{"type":"auth","token":""}"#, "invalid_message", "token: too short"),
            (r#"{"type":"auth","token":7}"#, "invalid_message", "token: wrong type, expected a string"),
            (r#"{"type":"auth","token":"a","ticket":"b"}"#, "invalid_message", "not both"),
            (r#"{"type":"subscribe"}"#, "invalid_message", "topics: is required but missing"),
            (r#"{"type":"subscribe","topics":"tick"}"#, "invalid_message", "topics: wrong type, expected an array"),
            (r#"{"type":"subscribe","topics":[]}"#, "invalid_message", "topics: too short"),
            (r#"{"type":"subscribe","topics":["tick",3]}"#, "invalid_message", "topics[1]: wrong type"),
            (r#"{"type":"subscribe","topics":["ticks"]}"#, "invalid_message", "topics[0]: invalid topic"),
            (r#"{"type":"subscribe","topics":["tick:E*R"]}"#, "invalid_message", "topics[0]: invalid topic"),
            (r#"{"type":"subscribe","topics":["tick"],"since":[1]}"#, "invalid_message", "since: wrong type"),
            (r#"{"type":"subscribe","topics":["tick"],"since":{"tick:X":-1}}"#, "invalid_message", "since.tick:X"),
            (r#"{"type":"subscribe","topics":["tick"],"since":{"tick:X":"1"}}"#, "invalid_message", "since.tick:X"),
            (r#"{"type":"subscribe","topics":["tick"],"since":{"tick:E*":1}}"#, "invalid_message", "invalid topic"),
            (r#"{"type":"subscribe","topics":["tick"],"since":{"position:X":1}}"#, "invalid_message", "position:X"),
            (r#"{"type":"subscribe","topics":["tick"],"epoch":5}"#, "invalid_message", "epoch: wrong type"),
            (r#"{"type":"unsubscribe","topics":[null]}"#, "invalid_message", "topics[0]: wrong type"),
            (&too_many, "too_many_topics", "at most 128"),
            (&big, "message_too_big", "at most 65536 bytes"),
        ];
        for (text, code, needle) in cases {
            let err = parse_client_message(text).expect_err(text);
            assert_eq!(err.code(), code, "{text}: {err}");
            let message = err.message(Lang::En);
            assert!(message.contains(needle), "{text}: {message:?} should contain {needle:?}");
            assert!(!err.message(Lang::Hu).is_empty());
        }
    }

    #[test]
    fn rejected_messages_keep_their_id() {
        let r = parse(r#"{"id":9,"type":"subscribe","topics":[]}"#, Limits::default()).unwrap_err();
        assert_eq!(r.id, Some(9.into()));
        let r = parse(r#"{"id":"a","type":"nope"}"#, Limits::default()).unwrap_err();
        assert_eq!(r.id, Some(RequestId(json!("a"))));
    }

    #[test]
    fn replies_serialise_in_protocol_order() {
        let id = RequestId::from(1);
        assert_eq!(
            auth_ok(Some(&id), "c1", 25000, "ep").as_str(),
            r#"{"id":1,"type":"auth_ok","client_id":"c1","ping_interval_ms":25000,"epoch":"ep"}"#
        );
        let recovered = BTreeMap::from([("tick:EURUSD".to_owned(), true)]);
        assert_eq!(
            subscribed(Some(&2.into()), &["tick:EURUSD".into()], &recovered).as_str(),
            r#"{"id":2,"type":"subscribed","topics":["tick:EURUSD"],"recovered":{"tick:EURUSD":true}}"#
        );
        assert_eq!(unsubscribed(None, &["system".into()]).as_str(), r#"{"type":"unsubscribed","topics":["system"]}"#);
        assert_eq!(pong(Some(&RequestId(json!("p")))).as_str(), r#"{"id":"p","type":"pong"}"#);
        let e = error(Some(&3.into()), &ProtocolError::TooManyTopics { max: 128 }, Lang::En);
        assert_eq!(
            e.as_str(),
            r#"{"id":3,"type":"error","code":"too_many_topics","message":"too many topics: at most 128 per client"}"#
        );
    }

    #[test]
    fn sse_ids() {
        assert_eq!(parse_sse_id("tick:EURUSD@42"), Some((Topic::parse("tick:EURUSD").unwrap(), 42)));
        assert_eq!(parse_sse_id("system@1"), Some((Topic::parse("system").unwrap(), 1)));
        for bad in ["", "tick:EURUSD", "tick:EURUSD@", "tick:EURUSD@x", "nope@1", "tick:EURUSD@-1"] {
            assert_eq!(parse_sse_id(bad), None, "{bad}");
        }
    }
}
