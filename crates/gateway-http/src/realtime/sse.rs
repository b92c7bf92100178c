//! `GET /api/events/stream?topics=…`: the hub's events as Server-Sent Events, `id:` =
//! `topic@seq`, replay from `Last-Event-ID` (or `since=topic@seq,…`), and a comment heartbeat.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::{Problem, Reason, Topic, TopicPattern};
use hub::{ClientInfo, Outbound, SubscribeRequest, Transport};
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct StreamQuery {
    topics: Option<String>,
    since: Option<String>,
    #[allow(dead_code)]
    ticket: Option<String>,
}

pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let principal = req.extensions().get::<Principal>().cloned().ok_or(Problem::Unauthorized)?;
    let topics = query.topics.as_deref().unwrap_or("");
    let patterns = topics
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| TopicPattern::parse(t).map_err(|r| Problem::invalid("topics", r)))
        .collect::<Result<Vec<_>, _>>()?;
    if patterns.is_empty() {
        return Err(Problem::invalid("topics", Reason::Missing).into());
    }
    let mut since = BTreeMap::new();
    let last_event_id = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let positions = query.since.iter().flat_map(|s| s.split(',')).map(str::to_owned).chain(last_event_id);
    for id in positions {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let (topic, seq): (Topic, u64) =
            hub::protocol::parse_sse_id(id).ok_or_else(|| Problem::invalid("Last-Event-ID", Reason::Malformed))?;
        since.insert(topic, seq);
    }
    // Only replay topics the stream subscribes to.
    since.retain(|topic, _| patterns.iter().any(|p| p.matches(topic)));

    let session = state
        .hub
        .connect(ClientInfo {
            principal,
            remote_addr: req.peer_addr().map(|a| a.to_string()),
            transport: Transport::Sse,
        })
        .await?;
    state.hub.subscribe(&session.id, SubscribeRequest { patterns, since, epoch: None, ack: None }).await?;

    let heartbeat = Duration::from_millis(state.config.hub.sse_heartbeat_ms);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, actix_web::Error>>(64);
    let mut session = session;
    actix_rt::spawn(async move {
        let hello = format!(": connected {}\nretry: 2000\n\n", session.id);
        if tx.send(Ok(Bytes::from(hello))).await.is_err() {
            return;
        }
        let mut tick = actix_rt::time::interval(heartbeat);
        tick.tick().await;
        loop {
            let chunk = tokio::select! {
                out = session.outbound.recv() => match out {
                    Some(Outbound::Frame(frame)) => {
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
                    Some(Outbound::Close { code, reason }) => {
                        let _ = tx.send(Ok(Bytes::from(format!("event: close\ndata: {{\"code\":{code},\"reason\":{reason:?}}}\n\n")))).await;
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => Bytes::from_static(b": heartbeat\n\n"),
            };
            if tx.send(Ok(chunk)).await.is_err() {
                break; // the client went away; dropping the session unregisters it
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
