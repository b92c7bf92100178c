//! An edge's side: the token table its primary publishes, and the middleware that sends what
//! only the primary can answer to `primary_url`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use gateway_core::Problem;
use parking_lot::{Mutex, RwLock};
use settings::{TokenInfo, token_hash};
use subtle::ConstantTimeEq;

use super::primary::TokenTable;
use super::{Broker, Link};
use crate::edge::context::RoutePattern;
use crate::edge::error::ApiError;
use crate::state::AppState;

/// How often an edge reads the token table.
const READ_EVERY: Duration = Duration::from_millis(250);
/// A table read longer ago than this no longer decides alone (the broker is unreachable).
const FRESH: Duration = Duration::from_secs(2);
/// While the table is not fresh, a token verified within this long is still accepted.
pub const GRACE: Duration = Duration::from_secs(60);

/// The tokens an edge accepts: the primary's published table while it is fresh; while the
/// broker is unreachable, only the tokens verified within the last [`GRACE`].
#[derive(Default)]
pub struct PublishedTokens {
    table: RwLock<Table>,
    verified: Mutex<HashMap<String, (TokenInfo, Instant)>>,
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<String, TokenInfo>,
    read_at: Option<Instant>,
}

impl std::fmt::Debug for PublishedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedTokens").field("tokens", &self.table.read().by_hash.len()).finish_non_exhaustive()
    }
}

impl PublishedTokens {
    /// Replaces the table with one just read from the broker.
    pub fn replace(&self, table: TokenTable) {
        let by_hash = table
            .tokens
            .into_iter()
            .map(|t| {
                let info = TokenInfo { name: t.name, role: t.role, created_at: String::new(), last_used_at: None };
                (t.hash, info)
            })
            .collect();
        *self.table.write() = Table { by_hash, read_at: Some(Instant::now()) };
    }

    /// Marks the table as read now although nothing was published (no primary: no tokens).
    fn clear(&self) {
        *self.table.write() = Table { by_hash: HashMap::new(), read_at: Some(Instant::now()) };
    }

    /// The token's identity, or `None` (never blocks: everything is in memory).
    pub fn verify(&self, token: &str) -> Option<TokenInfo> {
        let hash = token_hash(token);
        let table = self.table.read();
        if table.read_at.is_some_and(|at| at.elapsed() < FRESH) {
            let found = table
                .by_hash
                .get_key_value(&hash)
                .filter(|(stored, _)| bool::from(stored.as_bytes().ct_eq(hash.as_bytes())))
                .map(|(_, info)| info.clone());
            drop(table);
            let mut verified = self.verified.lock();
            match &found {
                Some(info) => {
                    verified.insert(hash, (info.clone(), Instant::now()));
                }
                None => {
                    verified.remove(&hash);
                }
            }
            return found;
        }
        drop(table);
        let verified = self.verified.lock();
        verified.get(&hash).filter(|(_, at)| at.elapsed() < GRACE).map(|(info, _)| info.clone())
    }
}

/// Reads the primary's token table every 250 ms while the process runs.
pub async fn follow_tokens(broker: Broker, tokens: std::sync::Arc<PublishedTokens>) {
    let mut link = Link::new(broker.clone());
    let key = broker.key("tokens");
    loop {
        if let Some(conn) = link.get().await {
            let read: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(conn).await;
            match read {
                Ok(Some(text)) => match serde_json::from_str::<TokenTable>(&text) {
                    Ok(table) => tokens.replace(table),
                    Err(e) => log::error!("cluster: the published token table is unreadable: {e}"),
                },
                // No primary has published (or its table lapsed): nobody is authorised.
                Ok(None) => tokens.clear(),
                Err(e) => link.failed(&e),
            }
        }
        tokio::time::sleep(READ_EVERY).await;
    }
}

/// Whether an edge answers this route itself (real-time, health, its own pages and metrics)
/// rather than sending it to the primary.
pub fn is_local(pattern: Option<&str>) -> bool {
    matches!(
        pattern,
        Some(
            "/api/health"
                | "/api/config/reload"
                | "/ws"
                | "/api/events/stream"
                | "/api/events"
                | "/api/auth/ticket"
                | "/api/hub/clients"
                | "/api/hub/clients/{id}/send"
                | "/"
                | "/api/docs"
                | "/assets/{file}"
                | "/metrics"
                | "/api/openapi.json"
        )
    )
}

/// Headers that belong to one connection and are not passed on.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

/// How long the primary may take to answer a request sent on by an edge.
const PRIMARY_TIMEOUT: Duration = Duration::from_secs(60);

/// The edge middleware (inside auth, so the caller is authenticated here first): a route only the
/// primary can answer is sent to `primary_url` with the caller's own headers (its token
/// included) and the answer is passed back as it is; an unreachable primary is a 503 naming it.
pub async fn forward_to_primary(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if RoutePattern::with(&req, is_local) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal("application state missing".into())));
    };
    let Some(primary) = state.config.cluster.as_ref().and_then(|c| c.primary_url.clone()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let max = state.config.gateway.max_body_bytes;
    let mut body = BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > max {
            return Ok(req.error_response(ApiError::Problem(Problem::PayloadTooLarge)));
        }
        body.extend_from_slice(&chunk);
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", primary.trim_end_matches('/'));
    let mut outgoing = crate::outbound::upstream::client().request(req.method().clone(), &url).timeout(PRIMARY_TIMEOUT);
    for (name, value) in req.headers() {
        if !hop_by_hop(name) {
            outgoing = outgoing.insert_header((name.clone(), value.clone()));
        }
    }
    if let Some(peer) = req.peer_addr() {
        outgoing = outgoing.insert_header(("x-forwarded-for", peer.ip().to_string()));
    }
    let sent = outgoing.send_body(body.freeze()).await;
    let name = format!("primary orchestrator ({primary})");
    let mut answer = match sent {
        Ok(answer) => answer,
        Err(awc::error::SendRequestError::Timeout) => {
            return Ok(req.error_response(ApiError::Problem(Problem::UpstreamTimeout {
                service: name,
                timeout_ms: u64::try_from(PRIMARY_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
            })));
        }
        Err(e) => {
            log::warn!("cluster: the primary {primary} did not answer {path}: {e}");
            return Ok(req.error_response(ApiError::Problem(Problem::ServiceUnavailable { service: name })));
        }
    };
    let bytes = match answer.body().limit(64 * 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(e) => {
            log::warn!("cluster: the primary's answer to {path} broke off: {e}");
            return Ok(req.error_response(ApiError::Problem(Problem::UpstreamInvalid { service: name, status: None })));
        }
    };
    let mut response = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response.insert_header((name.clone(), value.clone()));
        }
    }
    Ok(req.into_response(response.body(bytes)).map_into_boxed_body())
}
