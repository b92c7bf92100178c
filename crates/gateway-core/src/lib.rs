//! Domain types, the error model and the response envelope shared by every orchestrator crate.
//!
//! This crate does no IO and knows nothing about actix: it is the vocabulary the other crates
//! speak. Newtypes validate themselves on construction, so a value of type [`Symbol`] or
//! [`ServiceName`] is always valid.

mod config_error;
mod envelope;
mod event;
mod message;
mod names;
mod status;
pub mod validate;

pub use config_error::ConfigError;
pub use envelope::Envelope;
pub use event::{Event, EventType, Topic, TopicPattern};
pub use message::{ErrorCode, FieldError, JsonType, Lang, Problem, Reason};
pub use names::{ServiceName, Symbol, TIMEFRAMES, Timeframe};
pub use status::{Access, Role, ServiceKind, ServiceStatus, SubState};

/// The current time as an RFC 3339 string in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a timestamp as RFC 3339 in UTC with millisecond precision (`2026-01-02T03:04:05.678Z`).
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Formats a unix time in milliseconds as RFC 3339 (see [`format_rfc3339`]).
pub fn format_unix_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format_rfc3339(t),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting_is_utc_with_millis() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_unix_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && now.len() == 24, "{now}");
    }
}
