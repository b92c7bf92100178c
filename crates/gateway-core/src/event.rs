//! Real-time events (§6): types, topics, topic patterns, and the event itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::Reason;

/// The kinds of event the hub carries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A price tick; topic `tick:SYMBOL`.
    Tick,
    /// A strategy signal; topic `strategy_signal:ID`.
    StrategySignal,
    /// A position change; topic `position:SYMBOL`.
    Position,
    /// A service status change; topic `service_status:NAME`.
    ServiceStatus,
    /// A system notice; topic `system`.
    System,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 5] =
        [EventType::Tick, EventType::StrategySignal, EventType::Position, EventType::ServiceStatus, EventType::System];

    /// The type as it appears on the wire and in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Tick => "tick",
            EventType::StrategySignal => "strategy_signal",
            EventType::Position => "position",
            EventType::ServiceStatus => "service_status",
            EventType::System => "system",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<EventType, Reason> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or(Reason::InvalidEventType)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const MAX_KEY_LEN: usize = 64;

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '#' | '@' | '-'))
        && key.len() <= MAX_KEY_LEN
}

/// A concrete topic: `type` or `type:key` (key: a letter or digit, then up to 63 of
/// letters, digits and `._#@-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// Validates a topic.
    pub fn parse(s: &str) -> Result<Topic, Reason> {
        let (ty, key) = match s.split_once(':') {
            Some((ty, key)) => (ty, Some(key)),
            None => (s, None),
        };
        EventType::parse(ty).map_err(|_| Reason::InvalidTopic)?;
        if let Some(key) = key
            && !valid_key(key)
        {
            return Err(Reason::InvalidTopic);
        }
        Ok(Topic(s.to_owned()))
    }

    /// The topic for an event type and optional key.
    pub fn of(ty: EventType, key: Option<&str>) -> Result<Topic, Reason> {
        match key {
            Some(k) => Topic::parse(&format!("{}:{k}", ty.as_str())),
            None => Ok(Topic(ty.as_str().to_owned())),
        }
    }

    /// The topic string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event type named by the topic.
    pub fn event_type(&self) -> EventType {
        let ty = self.0.split_once(':').map_or(self.0.as_str(), |(t, _)| t);
        EventType::parse(ty).unwrap_or(EventType::System)
    }

    /// The key after `:`, if any.
    pub fn key(&self) -> Option<&str> {
        self.0.split_once(':').map(|(_, k)| k)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Topic::parse(&s).map_err(|r| serde::de::Error::custom(r.render(crate::Lang::En)))
    }
}

/// A subscription pattern: a bare type (every key), `type:key` (exact), or `type:prefix*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPattern {
    raw: String,
    ty: EventType,
    key: PatternKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PatternKey {
    Any,
    Exact(String),
    Prefix(String),
}

impl TopicPattern {
    /// Validates a pattern.
    pub fn parse(s: &str) -> Result<TopicPattern, Reason> {
        let (ty, key) = match s.split_once(':') {
            Some((ty, key)) => (ty, Some(key)),
            None => (s, None),
        };
        let ty = EventType::parse(ty).map_err(|_| Reason::InvalidTopic)?;
        let key = match key {
            None => PatternKey::Any,
            Some("*") => PatternKey::Any,
            Some(k) => match k.strip_suffix('*') {
                Some(prefix) if valid_key(prefix) => PatternKey::Prefix(prefix.to_owned()),
                Some(_) => return Err(Reason::InvalidTopic),
                None if valid_key(k) => PatternKey::Exact(k.to_owned()),
                None => return Err(Reason::InvalidTopic),
            },
        };
        Ok(TopicPattern { raw: s.to_owned(), ty, key })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The concrete topic, when the pattern names exactly one.
    pub fn exact(&self) -> Option<Topic> {
        match &self.key {
            PatternKey::Exact(_) => Some(Topic(self.raw.clone())),
            PatternKey::Any if self.ty == EventType::System && !self.raw.contains(':') => Some(Topic(self.raw.clone())),
            _ => None,
        }
    }

    /// Whether a topic matches this pattern.
    pub fn matches(&self, topic: &Topic) -> bool {
        if topic.event_type() != self.ty {
            return false;
        }
        match (&self.key, topic.key()) {
            (PatternKey::Any, _) => true,
            (PatternKey::Exact(k), Some(tk)) => k == tk,
            (PatternKey::Prefix(p), Some(tk)) => tk.starts_with(p.as_str()),
            (_, None) => false,
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// One event as pushed to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Its topic (`type` or `type:key`).
    pub topic: Topic,
    /// Per-topic sequence number, from 1 in each epoch, without gaps.
    pub seq: u64,
    /// The hub's epoch (new at every hub start).
    pub epoch: String,
    /// RFC 3339 time of the event.
    pub timestamp: String,
    /// The payload.
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        for good in
            ["tick:EURUSD", "system", "service_status:data", "strategy_signal:3f2a-b", "position:XAUUSD", "tick"]
        {
            assert!(Topic::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "ticks:EURUSD", "tick:", "tick:EUR USD", "tick:EUR*", ":x", "tick:a:b", "TICK:EURUSD"] {
            assert_eq!(Topic::parse(bad), Err(Reason::InvalidTopic), "{bad:?}");
        }
        let t = Topic::parse("tick:EURUSD").unwrap_or_else(|_| Topic("system".into()));
        assert_eq!(t.event_type(), EventType::Tick);
        assert_eq!(t.key(), Some("EURUSD"));
    }

    #[test]
    fn patterns_match() {
        let topic = |s: &str| Topic::parse(s).unwrap_or_else(|_| Topic("system".into()));
        let pat = |s: &str| TopicPattern::parse(s).ok();
        let cases = [
            ("tick", "tick:EURUSD", true),
            ("tick", "position:EURUSD", false),
            ("tick:EUR*", "tick:EURUSD", true),
            ("tick:EUR*", "tick:GBPUSD", false),
            ("tick:EURUSD", "tick:EURUSD", true),
            ("tick:EURUSD", "tick:EURUSDX", false),
            ("system", "system", true),
            ("service_status", "service_status:data", true),
            ("tick:*", "tick:X", true),
        ];
        for (p, t, want) in cases {
            let p = pat(p);
            assert!(p.is_some());
            assert_eq!(p.is_some_and(|p| p.matches(&topic(t))), want, "{t}");
        }
        for bad in ["", "tick:*EUR", "ticks", "tick:E*R*", "*", "tick:**"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
