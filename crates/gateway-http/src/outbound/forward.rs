//! `ANY /api/{resource}/{path…}`: validated forwarding to the service that owns `resource`
//! (SPEC §4), with fast fail, per-service timeouts and envelope wrapping.

use std::time::Instant;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::Problem;
use gateway_core::validate::{self, OrderRequest, StrategyRequest};
use registry::ServiceConfig;
use serde_json::Value;

use crate::body;
use crate::edge::context::{REQUEST_ID, RequestCtx, ServiceTag, sane_request_id};
use crate::edge::error::ApiError;
use crate::outbound::upstream::{self, Call, UpstreamReply};
use crate::state::AppState;

/// Headers passed on to the service (everything else, hop-by-hop headers and the client's
/// `Authorization` included, is dropped).
const PASSED_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_LANGUAGE];

pub(crate) async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let raw_path = req.uri().path();
    validate::check_path(raw_path).map_err(|r| Problem::invalid("path", r))?;
    let rest = raw_path.strip_prefix("/api/").unwrap_or("");
    let resource = rest.split('/').next().unwrap_or("");
    let service = state.registry.route(resource).ok_or(Problem::NotFound)?;
    req.extensions_mut().insert(ServiceTag(service.clone()));

    // Fast fail: a service known to be down costs nothing.
    let (status, _) = state.registry.status(service.name.as_str()).ok_or(Problem::NotFound)?;
    if !status.accepts_requests() {
        state.metrics.upstream_failed(service.name.as_str(), "unavailable");
        return Err(Problem::ServiceUnavailable { service: service.display_name.clone() }.into());
    }

    let method = req.method().clone();
    let query = req.query_string();
    let body = if method == Method::GET || method == Method::HEAD {
        Bytes::new()
    } else {
        body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?
    };
    // The service's own contract first (404/405 before any field); a service configured
    // without one costs nothing here.
    if service.openapi_path.is_some()
        && let Some(contract) = state.contracts.get(service.name.as_str())
    {
        contract.check(&method, raw_path.strip_prefix("/api").unwrap_or(raw_path), query, &body)?;
    }

    let limits = state.limits_for(&service);
    if !query.is_empty() {
        validate::check_query(form_urlencoded::parse(query.as_bytes()), &limits)?;
    }
    if !body.is_empty() || is_typed_route(&method, rest) {
        check_body(&method, rest, &body, &limits)?;
    }

    let mut headers = Vec::with_capacity(PASSED_HEADERS.len() + 1);
    for name in PASSED_HEADERS {
        if let Some(v) = req.headers().get(&name) {
            headers.push((name, v.clone()));
        }
    }
    if let Ok(v) = header::HeaderValue::from_str(&ctx.request_id) {
        headers.push((REQUEST_ID, v));
    }
    // `/api/{resource}/…?query` → `/{resource}/…?query`, as sent (already checked safe).
    let path_and_query = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    let path_and_query = path_and_query.strip_prefix("/api").unwrap_or(path_and_query);
    let timeout = service.request_timeout;
    // HEAD is sent on as GET (services need not route HEAD); the server leaves out the body.
    let method = if method == Method::HEAD { Method::GET } else { method };
    let call = Call { service: &service, method, path_and_query, headers, body, timeout };
    let started = Instant::now();
    let sent = upstream::send(call).await;
    let metrics = &state.metrics;
    match sent {
        Ok(reply) => {
            metrics.upstream_answered(service.name.as_str(), started.elapsed());
            let wrapped = wrap(&service, reply, &ctx);
            if let Err(kind) = &wrapped {
                metrics.upstream_failed(service.name.as_str(), kind.label());
            }
            wrapped.map_err(|kind| kind.problem(&service).into())
        }
        Err(failure) => {
            metrics.upstream_failed(service.name.as_str(), failure.label());
            if let Some(supervisor) = &state.supervisor {
                supervisor.probe_now(service.name.as_str());
            }
            Err(failure.problem(&service, timeout).into())
        }
    }
}

/// Routes whose whole body is typed (and therefore required).
fn is_typed_route(method: &Method, rest: &str) -> bool {
    method == Method::POST && matches!(rest.trim_end_matches('/'), "orders" | "strategies")
}

/// Whole-body rules for the typed routes; the common fields everywhere else.
fn check_body(method: &Method, rest: &str, bytes: &[u8], limits: &validate::Limits) -> Result<(), ApiError> {
    let route = rest.trim_end_matches('/');
    if method == Method::POST && route == "orders" {
        let order: OrderRequest = body::decode_object(bytes)?;
        order.check(limits)?;
        return Ok(());
    }
    if method == Method::POST && route == "strategies" {
        let strategy: StrategyRequest = body::decode_object(bytes)?;
        strategy.check(limits)?;
        return Ok(());
    }
    let value: Value = body::decode(bytes)?;
    validate::check_body_fields(&value, limits)?;
    Ok(())
}

/// A downstream answer the gateway will not pass on.
#[derive(Debug)]
enum Unusable {
    /// A 5xx: its own words (or `HTTP n`) as the detail.
    ServerError(String),
    /// A 4xx without an envelope: its status is kept.
    Rejected(u16, String),
    /// Not JSON.
    NotJson(StatusCode),
}

impl Unusable {
    fn label(&self) -> &'static str {
        match self {
            Unusable::ServerError(_) => "status_5xx",
            Unusable::Rejected(..) => "status_4xx",
            Unusable::NotJson(_) => "invalid",
        }
    }

    fn problem(self, service: &ServiceConfig) -> Problem {
        let name = service.display_name.clone();
        match self {
            Unusable::ServerError(detail) => Problem::UpstreamError { service: name, detail },
            Unusable::Rejected(status, detail) => Problem::UpstreamRejected { service: name, status, detail },
            Unusable::NotJson(status) => Problem::UpstreamInvalid { service: name, status: Some(status.as_u16()) },
        }
    }
}

/// Turns a downstream answer into the gateway's: envelopes pass through with our request id,
/// other JSON becomes `data`, 4xx keep their status, 5xx and invalid JSON become 502.
fn wrap(service: &ServiceConfig, reply: UpstreamReply, ctx: &RequestCtx) -> Result<HttpResponse, Unusable> {
    let status = reply.status;
    let body = &reply.body;
    if status.is_server_error() {
        return Err(Unusable::ServerError(detail_of(body).unwrap_or_else(|| format!("HTTP {}", status.as_u16()))));
    }
    let out_status = if status == StatusCode::NO_CONTENT { StatusCode::OK } else { status };
    // An envelope passes through (one parse, which also validates it) with our request id.
    if looks_like_envelope(body)
        && let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body)
        && obj.get("success").is_some_and(Value::is_boolean)
        && obj.contains_key("data")
    {
        obj.insert("request_id".into(), Value::String(ctx.request_id.clone()));
        for key in ["error", "code"] {
            obj.entry(key).or_insert(Value::Null);
        }
        obj.retain(|k, _| matches!(k.as_str(), "success" | "data" | "error" | "code" | "request_id"));
        return Ok(HttpResponse::build(out_status).json(obj));
    }
    if status.is_client_error() {
        let detail = detail_of(body).unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        return Err(Unusable::Rejected(status.as_u16(), detail));
    }
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if !empty && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        log::debug!("{} answered HTTP {} with a body that is not JSON", service.name, status.as_u16());
        return Err(Unusable::NotJson(status));
    }
    // The fast path: splice the downstream bytes into the envelope without re-parsing them.
    let data: &[u8] = if empty { b"null" } else { body };
    let mut out = Vec::with_capacity(data.len() + 96 + ctx.request_id.len());
    out.extend_from_slice(b"{\"success\":true,\"data\":");
    out.extend_from_slice(data);
    out.extend_from_slice(b",\"error\":null,\"code\":null,\"request_id\":");
    if sane_request_id(&ctx.request_id) {
        // `[A-Za-z0-9._:-]` needs no escaping.
        out.push(b'"');
        out.extend_from_slice(ctx.request_id.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(serde_json::to_string(&ctx.request_id).unwrap_or_default().as_bytes());
    }
    out.push(b'}');
    Ok(HttpResponse::build(out_status).content_type("application/json").body(out))
}

fn looks_like_envelope(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| body[i] == b'{') && body.windows(9).any(|w| w == b"\"success\"")
}

/// The `error` (or `message`/`detail`) string of a JSON body, cut to 200 characters.
fn detail_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = ["error", "message", "detail"].iter().find_map(|k| v.get(*k).and_then(Value::as_str))?;
    Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_detection_and_details() {
        assert!(looks_like_envelope(br#" {"success": true, "data": 1}"#));
        assert!(!looks_like_envelope(br#"[{"success": true}]"#));
        assert!(!looks_like_envelope(br#"{"ok": true}"#));
        assert_eq!(detail_of(br#"{"error": "unknown symbol"}"#).as_deref(), Some("unknown symbol"));
        assert_eq!(detail_of(br#"{"message": "a\nb"}"#).as_deref(), Some("ab"));
        assert_eq!(detail_of(b"oops"), None);
    }
}
