//! Outgoing frames: one serialised JSON text, reference counted and shared by every client that
//! receives it, plus what the adapter pulls from a client's outbox.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use gateway_core::Event;

/// One JSON text frame. Cloning is two reference-count increments, never a copy.
#[derive(Debug, Clone)]
pub struct Frame {
    text: ByteString,
    event: Option<EventRef>,
}

/// What the hub needs to know about an event frame without parsing it.
#[derive(Debug, Clone)]
pub(crate) struct EventRef {
    topic: Arc<str>,
    seq: u64,
    tick: bool,
}

impl Frame {
    /// A reply or other frame that is not part of a topic's sequence.
    pub(crate) fn reply(text: String) -> Frame {
        Frame { text: ByteString::from(text), event: None }
    }

    /// An event frame of `topic` with its `seq`; `tick` frames may be conflated.
    pub(crate) fn event(text: String, topic: Arc<str>, seq: u64, tick: bool) -> Frame {
        Frame { text: ByteString::from(text), event: Some(EventRef { topic, seq, tick }) }
    }

    /// The JSON text (for `actix_ws::Session::text`, which takes a `ByteString` without copying).
    pub fn text(&self) -> &ByteString {
        &self.text
    }

    /// The JSON text, by value.
    pub fn into_text(self) -> ByteString {
        self.text
    }

    /// The JSON text as bytes.
    pub fn bytes(&self) -> Bytes {
        self.text.as_bytes().clone()
    }

    /// The JSON text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The topic of an event frame (`None` for replies and targeted messages).
    pub fn topic(&self) -> Option<&str> {
        self.event.as_ref().map(|e| &*e.topic)
    }

    /// The per-topic sequence number of an event frame.
    pub fn seq(&self) -> Option<u64> {
        self.event.as_ref().map(|e| e.seq)
    }

    /// The SSE `id:` of an event frame: `topic@seq`.
    pub fn sse_id(&self) -> Option<String> {
        self.event.as_ref().map(|e| format!("{}@{}", e.topic, e.seq))
    }

    /// Parses the frame back into an [`Event`] (`None` if it is not an event). For inspection and
    /// tests; the hot path never parses frames.
    pub fn to_event(&self) -> Option<Event> {
        self.event.as_ref()?;
        serde_json::from_str(&self.text).ok()
    }

    /// The conflation key of a tick frame: its topic.
    pub(crate) fn tick_key(&self) -> Option<&Arc<str>> {
        self.event.as_ref().filter(|e| e.tick).map(|e| &e.topic)
    }
}

/// What an adapter pulls from a client's [`crate::Outbox`].
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A JSON text frame to send as is.
    Frame(Frame),
    /// Close the connection with this code and reason; nothing follows.
    Close {
        /// WebSocket close code (see [`crate::close_code`]).
        code: u16,
        /// Short reason text.
        reason: String,
    },
}
