//! `GET /api/dashboard` (SPEC §5): parts fetched in parallel within one 2 s budget, failed parts
//! `null` (never omitted), `meta` with per-source status and latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use gateway_core::{Envelope, Problem};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::context::RequestCtx;
use crate::state::AppState;
use crate::upstream::{self, Call, Failure};

/// The overall budget of one dashboard request.
pub const BUDGET: Duration = Duration::from_secs(2);

/// (part name, resource that finds the owning service, path on that service)
const PARTS: [(&str, &str, &str); 4] = [
    ("account", "account", "/account"),
    ("positions", "positions", "/positions"),
    ("strategies", "strategies", "/strategies"),
    ("patterns", "patterns", "/patterns/latest"),
];

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/dashboard", web::get().to(dashboard));
}

/// How one source did.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// `ok`, `timeout`, `unavailable` or `error`.
    pub status: &'static str,
    /// Time spent.
    pub latency_ms: u64,
    /// The user-facing reason, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct PartResult {
    part: &'static str,
    service: String,
    data: Option<Value>,
    source: SourceStatus,
    problem: Option<Problem>,
}

async fn fetch_part(
    state: &AppState,
    ctx: &RequestCtx,
    part: &'static str,
    resource: &str,
    path: &str,
) -> Option<PartResult> {
    let service = state.registry.route(resource)?;
    let started = Instant::now();
    let fail = |failure: Failure, timeout: Duration| {
        let problem = failure.problem(&service, timeout);
        PartResult {
            part,
            service: service.name.to_string(),
            data: None,
            source: SourceStatus {
                status: failure.label(),
                latency_ms: millis(started.elapsed()),
                error: Some(problem.message(ctx.lang)),
            },
            problem: Some(problem),
        }
    };
    let accepting = state.registry.status(service.name.as_str()).is_some_and(|(s, _)| s.accepts_requests());
    let timeout = BUDGET.min(Duration::from_millis(service.request_timeout_ms));
    if !accepting {
        return Some(fail(Failure::Connect, timeout));
    }
    let mut headers = Vec::new();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&ctx.request_id) {
        headers.push((crate::context::REQUEST_ID, v));
    }
    let call = Call {
        service: &service,
        method: Method::GET,
        path_and_query: path,
        headers,
        body: Default::default(),
        timeout,
    };
    let reply = match upstream::send(call).await {
        Ok(r) => r,
        Err(f) => {
            state.metrics.upstream_failed(service.name.as_str(), f.label());
            state.supervisor.probe_now(service.name.as_str());
            return Some(fail(f, timeout));
        }
    };
    state.metrics.upstream_answered(service.name.as_str(), started.elapsed());
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if !reply.status.is_success() || parsed.is_none() {
        let (kind, problem) = if reply.status.is_success() {
            (
                "invalid",
                Problem::UpstreamInvalid { service: service.display_name.clone(), status: Some(reply.status.as_u16()) },
            )
        } else {
            let detail = format!("HTTP {}", reply.status.as_u16());
            let kind = if reply.status.is_server_error() { "status_5xx" } else { "status_4xx" };
            (kind, Problem::UpstreamError { service: service.display_name.clone(), detail })
        };
        state.metrics.upstream_failed(service.name.as_str(), kind);
        return Some(PartResult {
            part,
            service: service.name.to_string(),
            data: None,
            source: SourceStatus {
                status: "error",
                latency_ms: millis(started.elapsed()),
                error: Some(problem.message(ctx.lang)),
            },
            problem: Some(problem),
        });
    }
    // A downstream envelope contributes its `data`.
    let data = match parsed {
        Some(Value::Object(mut obj))
            if obj.get("success").is_some_and(Value::is_boolean) && obj.contains_key("data") =>
        {
            obj.remove("data")
        }
        other => other,
    };
    Some(PartResult {
        part,
        service: service.name.to_string(),
        data,
        source: SourceStatus { status: "ok", latency_ms: millis(started.elapsed()), error: None },
        problem: None,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn dashboard(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    let results =
        join_all(PARTS.iter().map(|(part, resource, path)| fetch_part(&state, &ctx, part, resource, path))).await;
    let mut data = Map::new();
    let mut sources: BTreeMap<String, SourceStatus> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut attempted = 0;
    for (part, _, _) in PARTS {
        data.insert(part.to_owned(), Value::Null);
    }
    for r in results.into_iter().flatten() {
        attempted += 1;
        data.insert(r.part.to_owned(), r.data.unwrap_or(Value::Null));
        if let Some(p) = r.problem {
            failed.push(p);
        }
        // One entry per service: the worst of its parts, the longest latency.
        match sources.get_mut(&r.service) {
            Some(existing) => {
                existing.latency_ms = existing.latency_ms.max(r.source.latency_ms);
                if existing.status == "ok" && r.source.status != "ok" {
                    existing.status = r.source.status;
                    existing.error = r.source.error;
                }
            }
            None => {
                sources.insert(r.service, r.source);
            }
        }
    }
    data.insert("services".into(), serde_json::to_value(state.registry.entries()).unwrap_or(Value::Null));
    let complete = failed.is_empty();
    data.insert("meta".into(), serde_json::json!({ "complete": complete, "sources": sources }));

    let all_failed = attempted > 0 && failed.len() == attempted;
    let (status, envelope) = if all_failed {
        let names: Vec<String> = failed
            .iter()
            .filter_map(|p| match p {
                Problem::ServiceUnavailable { service }
                | Problem::UpstreamTimeout { service, .. }
                | Problem::UpstreamError { service, .. }
                | Problem::UpstreamInvalid { service, .. } => Some(service.clone()),
                _ => None,
            })
            .fold(Vec::new(), |mut acc, n| {
                if !acc.contains(&n) {
                    acc.push(n);
                }
                acc
            });
        let problem = Problem::ServiceUnavailable { service: names.join(", ") };
        let mut env = Envelope::failure(&problem, ctx.lang, ctx.request_id.as_str());
        env.data = Some(Value::Object(data));
        (StatusCode::SERVICE_UNAVAILABLE, env)
    } else {
        (StatusCode::OK, Envelope::ok(Value::Object(data), ctx.request_id.as_str()))
    };
    HttpResponse::build(status)
        .insert_header(("X-Gateway-Complete", if complete { "true" } else { "false" }))
        .json(envelope)
}
