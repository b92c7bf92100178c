//! `ANY /api/{resource}/{path…}`: validated forwarding to the service that owns `resource`
//! (SPEC §4), with fast fail, per-service timeouts and envelope wrapping.

use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::validate::{self, OrderRequest, StrategyRequest};
use gateway_core::{FieldError, Problem, Reason};
use registry::ServiceConfig;
use serde_json::Value;

use crate::body;
use crate::context::{REQUEST_ID, RequestCtx, ServiceTag};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upstream::{self, Call, UpstreamReply};

/// Registers the catch-all forwarding routes (after every gateway route).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/{resource}", web::to(forward)).route("/api/{resource}/{tail:.*}", web::to(forward));
}

/// Headers passed on to the service (everything else, hop-by-hop headers and the client's
/// `Authorization` included, is dropped).
const PASSED_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_LANGUAGE];

async fn forward(
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
    req.extensions_mut().insert(ServiceTag(service.name.to_string()));

    // Fast fail: a service known to be down costs nothing.
    let (status, _) = state.registry.status(service.name.as_str()).ok_or(Problem::NotFound)?;
    if !status.accepts_requests() {
        return Err(Problem::ServiceUnavailable { service: service.display_name.clone() }.into());
    }

    let limits = state.limits_for(&service);
    let pairs = parse_query(req.query_string())?;
    validate::check_query(&pairs, &limits)?;

    let method = req.method().clone();
    let body = if method == Method::GET || method == Method::HEAD {
        Bytes::new()
    } else {
        body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?
    };
    if !body.is_empty() {
        check_body(&method, rest, &body, &limits)?;
    }

    let mut headers = Vec::with_capacity(4);
    for name in PASSED_HEADERS {
        if let Some(v) = req.headers().get(&name) {
            headers.push((name, v.clone()));
        }
    }
    if let Ok(v) = header::HeaderValue::from_str(&ctx.request_id) {
        headers.push((REQUEST_ID, v));
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let timeout = Duration::from_millis(service.request_timeout_ms);
    let call = Call { service: &service, method, path_and_query: &path_and_query, headers, body, timeout };
    match upstream::send(call).await {
        Ok(reply) => wrap(&service, reply, &ctx),
        Err(failure) => {
            state.supervisor.probe_now(service.name.as_str());
            Err(failure.problem(&service, timeout).into())
        }
    }
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, FieldError> {
    if query.is_empty() {
        return Ok(Vec::new());
    }
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).map_err(|_| FieldError::new("query", Reason::Malformed))
}

/// Whole-body rules for the typed routes; the common fields everywhere else.
fn check_body(method: &Method, rest: &str, bytes: &[u8], limits: &validate::Limits) -> Result<(), ApiError> {
    let route = rest.trim_end_matches('/');
    if method == Method::POST && route == "orders" {
        let order: OrderRequest = body::decode(bytes)?;
        order.check(limits)?;
        return Ok(());
    }
    if method == Method::POST && route == "strategies" {
        let strategy: StrategyRequest = body::decode(bytes)?;
        strategy.check(limits)?;
        return Ok(());
    }
    let value: Value = body::decode(bytes)?;
    validate::check_body_fields(&value, limits)?;
    Ok(())
}

/// Turns a downstream answer into the gateway's: envelopes pass through with our request id,
/// other JSON becomes `data`, 4xx keep their status, 5xx and invalid JSON become 502.
fn wrap(service: &ServiceConfig, reply: UpstreamReply, ctx: &RequestCtx) -> Result<HttpResponse, ApiError> {
    let status = reply.status;
    if status.is_server_error() {
        let detail = detail_of(&reply.body).unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        return Err(Problem::UpstreamError { service: service.display_name.clone(), detail }.into());
    }
    let body = &reply.body;
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if !empty && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(Problem::UpstreamError {
            service: service.display_name.clone(),
            detail: format!("érvénytelen JSON válasz (HTTP {})", status.as_u16()),
        }
        .into());
    }
    let out_status = if status == StatusCode::NO_CONTENT { StatusCode::OK } else { status };
    if looks_like_envelope(body)
        && let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body)
        && obj.get("success").is_some_and(Value::is_boolean)
        && obj.contains_key("data")
    {
        obj.insert("request_id".into(), Value::String(ctx.request_id.clone()));
        for key in ["error", "code"] {
            obj.entry(key).or_insert(Value::Null);
        }
        return Ok(HttpResponse::build(out_status).json(obj));
    }
    if status.is_client_error() {
        let detail = detail_of(body).unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        return Err(Problem::UpstreamRejected { service: service.display_name.clone(), status: status.as_u16(), detail }
            .into());
    }
    // The fast path: splice the downstream bytes into the envelope without re-parsing.
    let data: &[u8] = if empty { b"null" } else { body };
    let mut out = Vec::with_capacity(data.len() + 96 + ctx.request_id.len());
    out.extend_from_slice(b"{\"success\":true,\"data\":");
    out.extend_from_slice(data);
    out.extend_from_slice(b",\"error\":null,\"code\":null,\"request_id\":");
    out.extend_from_slice(serde_json::to_string(&ctx.request_id).unwrap_or_default().as_bytes());
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
