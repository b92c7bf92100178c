//! `/api/services`: the service table, lifecycle actions and log tails.

use actix_web::{HttpResponse, web};
use gateway_core::{Problem, Reason};
use serde::Deserialize;

use crate::edge::context::RequestCtx;
use crate::edge::error::ApiError;
use crate::state::AppState;

pub(crate) async fn list(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    ctx.ok(state.registry.entries())
}

pub(crate) async fn one(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entry = state.registry.entry(&name).ok_or(Problem::NotFound)?;
    Ok(ctx.ok(entry))
}

pub(crate) async fn action(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, action) = path.into_inner();
    if state.registry.config(&name).is_none() {
        return Err(Problem::NotFound.into());
    }
    let entry = match action.as_str() {
        "start" => state.supervisor()?.start_service(&name).await?,
        "stop" => state.supervisor()?.stop_service(&name).await?,
        "restart" => state.supervisor()?.restart_service(&name).await?,
        _ => return Err(Problem::NotFound.into()),
    };
    Ok(ctx.ok(entry))
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    tail: Option<String>,
}

/// Most lines one request may ask for (the whole ring).
const MAX_TAIL: usize = 10_000;

pub(crate) async fn logs(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    name: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    let tail = match query.tail.as_deref() {
        None => 100,
        Some(t) => t.parse::<usize>().ok().filter(|n| (1..=MAX_TAIL).contains(n)).ok_or_else(|| {
            Problem::invalid("tail", Reason::OutOfRange { min: "1".into(), max: MAX_TAIL.to_string() })
        })?,
    };
    let lines = state.supervisor()?.logs(&name, tail)?;
    Ok(ctx.ok(serde_json::json!({ "lines": lines })))
}
