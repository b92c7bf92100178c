//! `GET /api/events/stream?topics=…`: the hub's events as Server-Sent Events. A `subscribed`
//! event first (client id, epoch, topics, what was recovered), then one `message` per event with
//! `id:` = `topic@seq`, replay from `Last-Event-ID` (or `since=topic@seq,…`, with an optional
//! `epoch=`), a comment heartbeat,
//! and `event: close` when the hub ends the stream.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::{Problem, Reason, Topic, TopicPattern};
use hub::{ClientInfo, Frame, Outbound, SubscribeRequest, Transport};
use serde::Deserialize;

use crate::edge::auth::Principal;
use crate::edge::error::ApiError;
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
    let session = hub.connect(info).await?;
    let subscribed = hub.subscribe(&session.id, SubscribeRequest { patterns, since, epoch, ack: None }).await?;
    let hello = serde_json::json!({
        "client_id": session.id,
        "epoch": &*hub.epoch(),
        "topics": subscribed.topics,
        "recovered": subscribed.recovered,
    });
    let hello = format!("retry: {RETRY_MS}\n\nevent: subscribed\ndata: {hello}\n\n");

    let heartbeat = state.config.hub.sse_heartbeat;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // As for `/ws`, the loop is the response body: the dispatcher polls it when the socket can
    // take more. A client that stops reading stops the polling; the kernel gives the connection
    // up after the listener's `TCP_USER_TIMEOUT`, and dropping the body unregisters the client.
    let stream = Stream { hello: Some(Bytes::from(hello)), session: Some(session), tick };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), stream))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One SSE client's stream.
struct Stream {
    /// The `subscribed` event, sent first.
    hello: Option<Bytes>,
    /// `None` once the stream has ended.
    session: Option<hub::ClientSession>,
    tick: tokio::time::Interval,
}

impl Stream {
    /// The next chunk of the response; `None` ends it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(hello) = self.hello.take() {
            return Some(hello);
        }
        let session = self.session.as_mut()?;
        let chunk = tokio::select! {
            out = session.outbound.recv() => match out {
                Some(Outbound::Frame(frame)) => event_block(&frame),
                Some(Outbound::Close { code, reason }) => {
                    self.session = None;
                    let data = serde_json::json!({ "code": code, "reason": reason });
                    Bytes::from(format!("event: close\ndata: {data}\n\n"))
                }
                None => {
                    self.session = None;
                    return None;
                }
            },
            _ = self.tick.tick() => Bytes::from_static(b": heartbeat\n\n"),
        };
        Some(chunk)
    }
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
