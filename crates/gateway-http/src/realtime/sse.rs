//! `GET /api/events/stream?topics=…`: the hub's events as Server-Sent Events. A `subscribed`
//! event first (client id, epoch, topics, what was recovered), then one `message` per event with
//! `id:` = `topic@seq`, replay from `Last-Event-ID` (or `since=topic@seq,…`, with an optional
//! `epoch=`), a comment heartbeat,
//! and `event: close` when the hub ends the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::{Problem, Reason, Topic, TopicPattern};
use hub::{ClientInfo, Frame, Outbound, SubscribeRequest, Transport};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The browser's reconnection delay we ask for (`retry:`).
const RETRY_MS: u64 = 2000;

/// The query of `GET /api/events/stream`.
#[derive(Deserialize)]
pub struct StreamQuery {
    topics: Option<String>,
    since: Option<String>,
    /// The epoch the client last saw; another one means nothing is recovered.
    epoch: Option<String>,
    /// Checked by the auth middleware; named here so it is not mistaken for a typo.
    #[allow(dead_code)]
    ticket: Option<String>,
}

/// Parses `topic@seq` positions into `since`, naming `field` on error.
fn positions<'a>(
    list: impl Iterator<Item = &'a str>,
    field: &str,
    since: &mut BTreeMap<Topic, u64>,
) -> Result<(), Problem> {
    for id in list.map(str::trim).filter(|id| !id.is_empty()) {
        let (topic, seq) = hub::protocol::parse_sse_id(id).ok_or_else(|| Problem::invalid(field, Reason::Malformed))?;
        since.insert(topic, seq);
    }
    Ok(())
}

/// `GET /api/events/stream`.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let principal = req.extensions().get::<Principal>().cloned().ok_or(Problem::Unauthorized)?;
    let patterns = query
        .topics
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| TopicPattern::parse(t).map_err(|r| Problem::invalid("topics", r)))
        .collect::<Result<Vec<_>, _>>()?;
    if patterns.is_empty() {
        return Err(Problem::invalid("topics", Reason::Missing).into());
    }
    let mut since = BTreeMap::new();
    positions(query.since.iter().flat_map(|s| s.split(',')), "since", &mut since)?;
    if let Some(value) = req.headers().get("last-event-id") {
        let value = value.to_str().map_err(|_| Problem::invalid("Last-Event-ID", Reason::Malformed))?;
        positions(std::iter::once(value), "Last-Event-ID", &mut since)?;
    }
    // Only replay topics the stream subscribes to.
    since.retain(|topic, _| patterns.iter().any(|p| p.matches(topic)));
    let epoch = query.epoch.clone().filter(|e| !e.is_empty());

    let hub = &state.hub;
    let info = ClientInfo { principal, remote_addr: req.peer_addr().map(|a| a.to_string()), transport: Transport::Sse };
    let mut session = hub.connect(info).await?;
    let subscribed = hub.subscribe(&session.id, SubscribeRequest { patterns, since, epoch, ack: None }).await?;
    let hello = serde_json::json!({
        "client_id": session.id,
        "epoch": hub.epoch(),
        "topics": subscribed.topics,
        "recovered": subscribed.recovered,
    });
    let hello = format!("retry: {RETRY_MS}\n\nevent: subscribed\ndata: {hello}\n\n");

    let heartbeat = Duration::from_millis(state.config.hub.sse_heartbeat_ms);
    // A stream that takes nothing for this long is given up (as a silent WebSocket is).
    let send_timeout = hub.config().idle_timeout;
    let (tx, rx) = mpsc::channel::<Result<Bytes, actix_web::Error>>(64);
    actix_rt::spawn(async move {
        let send = |chunk: Bytes| {
            let tx = tx.clone();
            async move { matches!(tokio::time::timeout(send_timeout, tx.send(Ok(chunk))).await, Ok(Ok(()))) }
        };
        if !send(Bytes::from(hello)).await {
            return;
        }
        let mut tick = actix_rt::time::interval(heartbeat);
        tick.tick().await;
        loop {
            let chunk = tokio::select! {
                out = session.outbound.recv() => match out {
                    Some(Outbound::Frame(frame)) => event_block(&frame),
                    Some(Outbound::Close { code, reason }) => {
                        let data = serde_json::json!({ "code": code, "reason": reason });
                        let _ = send(Bytes::from(format!("event: close\ndata: {data}\n\n"))).await;
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => Bytes::from_static(b": heartbeat\n\n"),
            };
            if !send(chunk).await {
                log::info!("SSE client {} went away or stopped reading", session.id);
                break; // dropping the session unregisters the client
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// `id: topic@seq` (events only) and `data: {json}`.
fn event_block(frame: &Frame) -> Bytes {
    let mut text = String::with_capacity(frame.as_str().len() + 48);
    if let Some(id) = frame.sse_id() {
        text.push_str("id: ");
        text.push_str(&id);
        text.push('\n');
    }
    text.push_str("data: ");
    text.push_str(frame.as_str());
    text.push_str("\n\n");
    Bytes::from(text)
}
