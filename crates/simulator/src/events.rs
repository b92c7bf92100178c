//! The `/events` WebSocket: a broadcast of pre-serialised event frames to every listener.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use futures_util::StreamExt as _;
use gateway_core::EventType;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// How many events a listener may fall behind before it skips the oldest.
const CAPACITY: usize = 1024;
/// How long a socket we close waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Fan-out of events; each event is serialised once and shared by every listener.
#[derive(Clone)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { tx: broadcast::channel(CAPACITY).0 }
    }
}

/// One event frame: `{"type", "topic", "data", "timestamp"}`.
pub(crate) fn frame(ty: EventType, key: &str, data_json: &str) -> String {
    let ty = ty.as_str();
    let ts = gateway_core::now_rfc3339();
    let mut s = String::with_capacity(data_json.len() + ty.len() * 2 + key.len() + ts.len() + 48);
    s.push_str("{\"type\":\"");
    s.push_str(ty);
    s.push_str("\",\"topic\":\"");
    s.push_str(ty);
    s.push(':');
    s.push_str(key);
    s.push_str("\",\"data\":");
    s.push_str(data_json);
    s.push_str(",\"timestamp\":\"");
    s.push_str(&ts);
    s.push_str("\"}");
    s
}

impl EventBus {
    /// Whether anyone is listening (so producers can skip serialising).
    pub(crate) fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an already-built frame.
    pub(crate) fn send_frame(&self, frame: String) {
        // An error only means nobody listens right now.
        let _ = self.tx.send(Arc::from(frame));
    }

    /// Serialises and publishes an event with topic `type:key`, if anyone listens.
    pub(crate) fn publish(&self, ty: EventType, key: &str, data: &impl Serialize) {
        if !self.has_listeners() {
            return;
        }
        match serde_json::to_string(data) {
            Ok(json) => self.send_frame(frame(ty, key, &json)),
            Err(e) => log::warn!("cannot serialise {ty} event: {e}"),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// `GET /events`: upgrades to a WebSocket and streams every event until either side closes or
/// the service stops. Pings are answered; anything else the client sends is ignored.
pub(crate) async fn events_ws(
    req: HttpRequest,
    body: web::Payload,
    bus: web::Data<EventBus>,
    shutdown: web::Data<watch::Receiver<bool>>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut inbound) = actix_ws::handle(&req, body)?;
    let mut rx = bus.subscribe();
    let mut shutdown = shutdown.get_ref().clone();
    actix_web::rt::spawn(async move {
        let reason = loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(text) => {
                        if session.text(String::from(&*text)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => log::debug!("events listener skipped {n} events"),
                    Err(broadcast::error::RecvError::Closed) => break CloseCode::Away,
                },
                msg = inbound.next() => match msg {
                    Some(Ok(Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break CloseCode::Normal,
                    Some(Err(e)) => {
                        log::info!("events listener sent a bad frame: {e}");
                        break CloseCode::Protocol;
                    }
                    Some(Ok(_)) => {}
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break CloseCode::Away;
                    }
                }
            }
        };
        let initiated_here = reason != CloseCode::Normal;
        // Keep the socket's body open until the client answers our close frame (or a short
        // grace passes), so the frame is on the wire before the connection can be dropped.
        let keep_open = session.clone();
        let _ = session.close(Some(CloseReason::from(reason))).await;
        if initiated_here {
            let answered = async {
                while let Some(Ok(msg)) = inbound.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            };
            let _ = actix_web::rt::time::timeout(CLOSE_GRACE, answered).await;
        }
        drop(keep_open);
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn frames_are_valid_json_with_topic() {
        let f = frame(EventType::Tick, "EURUSD", r#"{"bid":1.1}"#);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "tick");
        assert_eq!(v["topic"], "tick:EURUSD");
        assert_eq!(v["data"]["bid"], 1.1);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn publish_without_listeners_is_a_no_op_and_listeners_receive() {
        let bus = EventBus::default();
        assert!(!bus.has_listeners());
        bus.publish(EventType::System, "x", &serde_json::json!({}));
        let mut rx = bus.subscribe();
        bus.publish(EventType::Position, "EURUSD", &serde_json::json!({"ticket": 1}));
        let got = rx.try_recv().unwrap();
        assert!(got.contains("\"topic\":\"position:EURUSD\""));
    }
}
