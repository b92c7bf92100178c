//! Routes of the real-time part: `/ws`, SSE, tickets, event ingest and hub introspection.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use gateway_core::{Problem, Reason};
use serde::Serialize;
use serde_json::Value;

use crate::body;
use crate::edge::auth::Principal;
use crate::edge::context::RequestCtx;
use crate::edge::error::ApiError;
use crate::state::AppState;

/// A one-time ticket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ticket {
    /// The ticket, for `?ticket=` or the WebSocket's first message.
    pub(crate) ticket: String,
    /// How long it stays valid.
    pub(crate) expires_in_ms: u64,
}

/// How many events were published.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    /// Events published.
    pub(crate) accepted: usize,
}

/// Delivered to the client's queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Sent {
    /// Always true (a failure is an error answer).
    pub(crate) sent: bool,
}

pub(crate) async fn ticket(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let principal = req.extensions().get::<Principal>().cloned().ok_or(Problem::Unauthorized)?;
    let ticket = state.tickets.issue(principal);
    let expires_in_ms = u64::try_from(state.tickets.ttl().as_millis()).unwrap_or(u64::MAX);
    Ok(ctx.ok(Ticket { ticket, expires_in_ms }))
}

/// `POST /api/events`: a JSON array of `{type, topic?, data, timestamp?}`, all or nothing.
pub(crate) async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?;
    let items: Vec<Value> = body::decode(&bytes)?;
    if items.is_empty() {
        return Err(Problem::invalid("body", Reason::TooShort { min: 1 }).into());
    }
    let accepted = state.hub.publish_raw_batch(items)?;
    Ok(ctx.ok(Accepted { accepted }))
}

pub(crate) async fn clients(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    let local = state.hub.clients().await;
    let Some(broker) = &state.cluster else { return ctx.ok(local) };
    // In a cluster: every node's clients, each naming its node; this node's are always listed,
    // the others' when the broker answers in time.
    let node = &broker.config().node;
    let mut all: Vec<Value> = local
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|mut c| {
            c["node"] = Value::from(node.as_str());
            c
        })
        .collect();
    for other in crate::cluster::nodes::others(broker).await.unwrap_or_default() {
        all.extend(other.clients.into_iter().map(|mut c| {
            c["node"] = Value::from(other.node.as_str());
            c
        }));
    }
    ctx.ok(all)
}

pub(crate) async fn send(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?;
    let data: Value = body::decode(&bytes)?;
    state.hub.send_to(&id, data).await?;
    Ok(ctx.ok(Sent { sent: true }))
}
