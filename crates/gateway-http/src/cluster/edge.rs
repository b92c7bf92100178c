//! An edge's side: what its primary publishes (token hashes, the services an edge reaches
//! directly with their statuses, the settings), and the middleware that sends what the edge
//! does not answer itself to `primary_url`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use gateway_core::{Problem, ServiceKind, ServiceStatus};
use parking_lot::{Mutex, RwLock};
use registry::{RawService, Registry, ServiceConfig};
use serde_json::{Map, Value};
use settings::{TokenInfo, token_hash};
use subtle::ConstantTimeEq;

use super::primary::{ServiceTable, TokenTable};
use super::{Broker, Link};
use crate::edge::context::RoutePattern;
use crate::edge::error::ApiError;
use crate::routes::{FORWARD_ROOT, FORWARD_TAIL, OnEdge};
use crate::state::{AppState, CachedLimits};

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

    /// Whether the table was read recently enough to decide alone.
    pub fn is_fresh(&self) -> bool {
        self.table.read().read_at.is_some_and(|at| at.elapsed() < FRESH)
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

/// The primary's copy of the settings, as an edge last read it.
#[derive(Debug, Default)]
pub struct PublishedSettings {
    all: RwLock<Option<Arc<Map<String, Value>>>>,
}

impl PublishedSettings {
    /// Every setting (the primary's `GET /api/settings`), or `None` before the first read.
    pub fn all(&self) -> Option<Arc<Map<String, Value>>> {
        self.all.read().clone()
    }

    /// Replaces the copy; returns whether anything changed.
    fn replace(&self, fresh: Map<String, Value>) -> bool {
        let mut all = self.all.write();
        if all.as_deref() == Some(&fresh) {
            return false;
        }
        *all = Some(Arc::new(fresh));
        true
    }
}

/// The validation limits of a settings copy.
fn limits_of(all: &Map<String, Value>) -> CachedLimits {
    let values: Map<String, Value> = ["symbols", "risk.max_volume"]
        .iter()
        .filter_map(|key| Some(((*key).to_owned(), all.get(*key)?.get("value")?.clone())))
        .collect();
    CachedLimits::of(&values)
}

/// Brings the edge's service table in line with the primary's: services another machine can
/// reach are routed from here, with the primary's statuses. Without a fresh table (the primary
/// is down) the services the primary manages are offline (their routes answer 503 at once)
/// and external ones keep their last status.
pub fn apply_services(registry: &Registry, table: Option<ServiceTable>, gateway: std::net::SocketAddr) {
    let Some(table) = table else {
        for entry in registry.entries() {
            if entry.kind != ServiceKind::External {
                registry.update(&entry.name, |s| {
                    s.status = ServiceStatus::Offline;
                    s.sub_state = None;
                });
            }
        }
        return;
    };
    let raw: Result<Vec<RawService>, _> =
        table.services.iter().map(|s| serde_json::from_value::<RawService>(s.config.clone())).collect();
    let configs = match raw
        .map_err(|e| e.to_string())
        .and_then(|raw| registry::validate_services(raw, gateway).map_err(|e| e.to_string()))
    {
        Ok(configs) => configs,
        Err(e) => {
            log::error!("cluster: the service table published by {} is unusable: {e}", table.node);
            return;
        }
    };
    let current: Vec<ServiceConfig> = registry.configs().iter().map(|c| ServiceConfig::clone(c)).collect();
    if current != configs {
        log::info!(
            "cluster: routing {} service(s) directly: {}",
            configs.len(),
            configs.iter().map(|c| format!("{} at {}", c.name, c.authority())).collect::<Vec<_>>().join(", ")
        );
        registry.replace(&configs);
    }
    for published in &table.services {
        let Some(name) = published.config.get("name").and_then(Value::as_str) else { continue };
        registry.update(name, |s| {
            s.status = published.status;
            s.sub_state = published.sub_state;
            s.kind = published.kind;
        });
    }
}

/// What an edge follows of its primary, read every 250 ms while the process runs.
pub struct Follow {
    /// The token table.
    pub tokens: Arc<PublishedTokens>,
    /// The settings copy.
    pub settings: Arc<PublishedSettings>,
    /// The edge's service table.
    pub registry: Registry,
    /// The edge's validation limits, derived from the settings copy.
    pub limits: Arc<RwLock<Arc<CachedLimits>>>,
    /// The edge's own address (checked against service ports like any configuration).
    pub gateway: std::net::SocketAddr,
}

/// Reads the primary's token table, service table and settings every 250 ms.
pub async fn follow_primary(broker: Broker, follow: Follow) {
    let mut link = Link::new(broker.clone());
    let keys = [broker.key("tokens"), broker.key("services"), broker.key("settings")];
    loop {
        if let Some(conn) = link.get().await {
            let read: redis::RedisResult<Vec<Option<String>>> = redis::cmd("MGET").arg(&keys).query_async(conn).await;
            match read {
                Ok(texts) => apply(&follow, texts),
                Err(e) => link.failed(&e),
            }
        }
        tokio::time::sleep(READ_EVERY).await;
    }
}

/// Takes in one read of the primary's publications.
fn apply(follow: &Follow, mut texts: Vec<Option<String>>) {
    texts.resize(3, None);
    let settings = texts.pop().flatten();
    let services = texts.pop().flatten();
    let tokens = texts.pop().flatten();
    match tokens.map(|t| serde_json::from_str::<TokenTable>(&t)) {
        Some(Ok(table)) => follow.tokens.replace(table),
        Some(Err(e)) => log::error!("cluster: the published token table is unreadable: {e}"),
        // No primary has published, or its table lapsed (the primary is down): the table goes
        // stale, so only the tokens verified within the grace are accepted.
        None => {}
    }
    let services = match services.map(|t| serde_json::from_str::<ServiceTable>(&t)) {
        Some(Ok(table)) => Some(table),
        Some(Err(e)) => {
            log::error!("cluster: the published service table is unreadable: {e}");
            None
        }
        None => None,
    };
    apply_services(&follow.registry, services, follow.gateway);
    if let Some(text) = settings {
        match serde_json::from_str::<Map<String, Value>>(&text) {
            Ok(all) => {
                let limits = limits_of(&all);
                if follow.settings.replace(all) {
                    *follow.limits.write() = Arc::new(limits);
                }
            }
            Err(e) => log::error!("cluster: the published settings are unreadable: {e}"),
        }
    }
}

/// Whether an edge answers this request itself: by the route's [`OnEdge`], a directly reached
/// service's route when this edge knows the service (the dashboard: every one of its sources).
fn served_here(req: &ServiceRequest, state: &AppState, pattern: Option<&str>) -> bool {
    let Some(route) = pattern.and_then(|p| crate::routes::find(req.method().as_str(), p)) else { return false };
    match route.on_edge {
        OnEdge::Local => true,
        OnEdge::Primary => false,
        OnEdge::Direct if route.pattern == FORWARD_ROOT || route.pattern == FORWARD_TAIL => {
            let rest = req.path().strip_prefix("/api/").unwrap_or_default();
            let resource = rest.split_once('/').map_or(rest, |(resource, _)| resource);
            state.registry.route(resource).is_some()
        }
        OnEdge::Direct => crate::outbound::aggregate::resources().all(|r| state.registry.route(r).is_some()),
    }
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

/// The edge middleware (inside auth, so the caller is authenticated here first): a route the edge
/// does not answer itself ([`served_here`]) is sent to `primary_url` with the caller's own headers (its token
/// included) and the answer is passed back as it is; an unreachable primary is a 503 naming it.
pub async fn forward_to_primary(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal("application state missing".into())));
    };
    if RoutePattern::with(&req, |pattern| served_here(&req, &state, pattern)) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cluster::primary::PublishedToken;
    use gateway_core::Role;

    fn table(tokens: &[&str]) -> TokenTable {
        let tokens = tokens
            .iter()
            .map(|t| PublishedToken { hash: token_hash(t), name: (*t).to_owned(), role: Role::Viewer })
            .collect();
        TokenTable { node: "gw-1".into(), tokens }
    }

    #[test]
    fn a_stale_table_accepts_only_the_tokens_verified_while_it_was_fresh() {
        let tokens = PublishedTokens::default();
        assert!(tokens.verify("a").is_none(), "nothing is accepted before the first read");
        tokens.replace(table(&["a", "b"]));
        assert_eq!(tokens.verify("a").map(|i| i.name).as_deref(), Some("a"));
        assert!(tokens.verify("c").is_none());
        // The table goes stale (the broker or the primary is gone): no new reads.
        let deadline = Instant::now() + FRESH * 3;
        while tokens.is_fresh() {
            assert!(Instant::now() < deadline, "the table never went stale");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(tokens.verify("a").map(|i| i.name).as_deref(), Some("a"), "verified within the grace");
        assert!(tokens.verify("b").is_none(), "published but never verified while the table was fresh");
        // A fresh table without `a` (revoked) ends its grace at once.
        tokens.replace(table(&["b"]));
        assert!(tokens.verify("a").is_none());
        assert!(tokens.verify("b").is_some());
    }

    #[test]
    fn a_copy_of_the_settings_gives_the_limits_its_values_set() {
        let all: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "symbols": {"value": ["EURUSD"], "version": 2},
            "risk.max_volume": {"value": 4.5, "version": 3},
            "timeframes": {"value": ["M1"], "version": 1},
        }))
        .unwrap_or_default();
        let limits = limits_of(&all);
        assert!((limits.strict.max_volume - 4.5).abs() < f64::EPSILON);
        assert!(limits.strict.symbols.as_ref().is_some_and(|s| s.contains("EURUSD") && s.len() == 1));
        assert!(limits.lenient.symbols.is_none());
        let settings = PublishedSettings::default();
        assert!(settings.all().is_none());
        assert!(settings.replace(all.clone()), "the first copy is a change");
        assert!(!settings.replace(all), "the same copy again is not");
    }
}
