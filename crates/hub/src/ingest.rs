//! Event ingest: validation of `{type, topic?, data, timestamp?}` items and the caller-side
//! preparation of an event's frame, so the hub task only has to insert the `seq`.

use gateway_core::{EventType, FieldError, JsonType, Reason, Topic};
use serde_json::Value;

/// An event ready for the hub task: everything of its frame except `"seq"`.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) ty: EventType,
    pub(crate) topic: Topic,
    /// `,"timestamp":…,"data":…}` (the sequencer inserts `seq` and `epoch`)
    pub(crate) tail: String,
}

/// The frame text of an event: `{"type":…,"topic":…,"seq":…,"epoch":…` followed by the prepared tail.
pub(crate) fn frame_text(ty: EventType, topic: &str, seq: u64, epoch: &str, tail: &str) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(60 + topic.len() + epoch.len() + tail.len());
    text.push_str("{\"type\":\"");
    text.push_str(ty.as_str());
    text.push_str("\",\"topic\":\"");
    text.push_str(topic);
    let _ = write!(text, "\",\"seq\":{seq}");
    text.push_str(",\"epoch\":\"");
    text.push_str(epoch);
    text.push('"');
    text.push_str(tail);
    text
}

/// Checks that a timestamp is RFC 3339.
pub(crate) fn check_timestamp(ts: &str) -> Result<(), FieldError> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| FieldError::new("timestamp", Reason::InvalidTime))
}

/// Serialises the payload (checking its size) and the rest of the frame after `seq`.
pub(crate) fn prepare(
    max_bytes: usize,
    ty: EventType,
    topic: Topic,
    data: &Value,
    timestamp: Option<String>,
) -> Result<Prepared, FieldError> {
    if topic.event_type() != ty {
        return Err(FieldError::new("topic", Reason::InvalidTopic));
    }
    let tail = tail(max_bytes, data, timestamp, false)?;
    Ok(Prepared { ty, topic, tail })
}

/// `,"timestamp":…,"data":…` and, for targeted messages, `,"direct":true`, then `}`.
pub(crate) fn tail(
    max_bytes: usize,
    data: &Value,
    timestamp: Option<String>,
    direct: bool,
) -> Result<String, FieldError> {
    let timestamp = match timestamp {
        Some(ts) => {
            check_timestamp(&ts)?;
            ts
        }
        None => gateway_core::now_rfc3339(),
    };
    let data = serde_json::to_string(data).map_err(|_| FieldError::new("data", Reason::Malformed))?;
    if data.len() > max_bytes {
        return Err(FieldError::new("data", Reason::TooLong { max: max_bytes }));
    }
    let timestamp = serde_json::to_string(&timestamp).map_err(|_| FieldError::new("timestamp", Reason::Malformed))?;
    let mut tail = String::with_capacity(32 + timestamp.len() + data.len());
    tail.push_str(",\"timestamp\":");
    tail.push_str(&timestamp);
    tail.push_str(",\"data\":");
    tail.push_str(&data);
    if direct {
        tail.push_str(",\"direct\":true");
    }
    tail.push('}');
    Ok(tail)
}

/// A validated ingest item.
pub(crate) struct RawEvent {
    pub(crate) ty: EventType,
    pub(crate) topic: Topic,
    pub(crate) data: Value,
    pub(crate) timestamp: Option<String>,
}

fn string_field(value: Value, field: &str) -> Result<String, FieldError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(FieldError::new(field, Reason::WrongType { expected: JsonType::String })),
    }
}

/// Validates `{type, topic?, data, timestamp?}`; unknown fields are rejected.
pub(crate) fn validate_raw(item: Value) -> Result<RawEvent, FieldError> {
    let Value::Object(mut map) = item else {
        return Err(FieldError::new("event", Reason::WrongType { expected: JsonType::Object }));
    };
    let ty = match map.remove("type") {
        None | Some(Value::Null) => return Err(FieldError::new("type", Reason::Missing)),
        Some(v) => {
            let s = string_field(v, "type")?;
            EventType::parse(&s).map_err(|r| FieldError::new("type", r))?
        }
    };
    let topic = match map.remove("topic") {
        None | Some(Value::Null) => Topic::of(ty, None).map_err(|r| FieldError::new("topic", r))?,
        Some(v) => {
            let s = string_field(v, "topic")?;
            let topic = Topic::parse(&s).map_err(|r| FieldError::new("topic", r))?;
            if topic.event_type() != ty {
                return Err(FieldError::new("topic", Reason::InvalidTopic));
            }
            topic
        }
    };
    let data = map.remove("data").ok_or_else(|| FieldError::new("data", Reason::Missing))?;
    let timestamp = match map.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let s = string_field(v, "timestamp")?;
            check_timestamp(&s)?;
            Some(s)
        }
    };
    if let Some(field) = map.keys().next() {
        return Err(FieldError::new(field.clone(), Reason::UnknownField));
    }
    Ok(RawEvent { ty, topic, data, timestamp })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn frame_text_is_an_event() {
        let p = prepare(
            1024,
            EventType::Tick,
            Topic::parse("tick:EURUSD").unwrap(),
            &json!({"bid": 1.1, "s": "a\"b"}),
            Some("2026-01-02T03:04:05.678Z".into()),
        )
        .unwrap();
        let text = frame_text(p.ty, p.topic.as_str(), 42, "ep", &p.tail);
        let event: gateway_core::Event = serde_json::from_str(&text).unwrap();
        assert_eq!(event.seq, 42);
        assert_eq!(event.epoch, "ep");
        assert_eq!(event.topic.as_str(), "tick:EURUSD");
        assert_eq!(event.timestamp, "2026-01-02T03:04:05.678Z");
        assert_eq!(event.data, json!({"bid": 1.1, "s": "a\"b"}));
        assert!(text.starts_with(r#"{"type":"tick","topic":"tick:EURUSD","seq":42,"epoch":"ep""#), "{text}");
    }
}
