//! `/api/settings`: list, read, write (single and atomic batch, with `If-Match`) and reset.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use gateway_core::{Problem, Reason};
use serde::Deserialize;
use settings::SettingEntry;

use crate::body;
use crate::edge::context::RequestCtx;
use crate::edge::error::ApiError;
use crate::state::AppState;

/// `If-Match: 3` or `If-Match: "3"`; `*` or absent means unconditional.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| Problem::invalid("If-Match", Reason::Malformed))?.trim();
    if text == "*" {
        return Ok(None);
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    let bare = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    bare.parse::<i64>().map(Some).map_err(|_| Problem::invalid("If-Match", Reason::Malformed).into())
}

fn with_etag(ctx: &RequestCtx, entry: &SettingEntry) -> HttpResponse {
    let mut res = ctx.ok(entry);
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{}\"", entry.version)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// On a cluster edge: the primary's published copy (503 naming the primary before the first read).
fn published(state: &AppState) -> Option<Result<std::sync::Arc<serde_json::Map<String, serde_json::Value>>, ApiError>> {
    let copy = state.published_settings.as_ref()?;
    Some(copy.all().ok_or_else(|| {
        let primary = state.config.cluster.as_ref().and_then(|c| c.primary_url.clone()).unwrap_or_default();
        Problem::ServiceUnavailable { service: format!("primary orchestrator ({primary})") }.into()
    }))
}

pub(crate) async fn list(state: web::Data<AppState>, ctx: RequestCtx) -> Result<HttpResponse, ApiError> {
    if let Some(copy) = published(&state) {
        return Ok(ctx.ok(&*copy?));
    }
    let store = state.store()?.clone();
    let all = web::block(move || store.list()).await??;
    Ok(ctx.ok(all))
}

pub(crate) async fn get(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if let Some(copy) = published(&state) {
        let copy = copy?;
        let entry = copy.get(key.as_str()).ok_or(Problem::NotFound)?;
        let mut res = ctx.ok(entry);
        if let Some(version) = entry.get("version").and_then(serde_json::Value::as_i64)
            && let Ok(v) = header::HeaderValue::from_str(&format!("\"{version}\""))
        {
            res.headers_mut().insert(header::ETAG, v);
        }
        return Ok(res);
    }
    let store = state.store()?.clone();
    let entry = web::block(move || store.get(&key)).await??;
    Ok(with_etag(&ctx, &entry))
}

/// The new value.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingPut {
    /// Checked against the setting's catalogue entry.
    value: serde_json::Value,
}

pub(crate) async fn put(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    req: HttpRequest,
    key: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let bytes = body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?;
    let SettingPut { value } = body::decode(&bytes)?;
    let store = state.store()?.clone();
    let key = key.into_inner();
    let entry = web::block(move || store.put(&key, value, expected)).await??;
    changed(&state, BTreeMap::from([(entry.key.clone(), entry.value.clone())])).await;
    Ok(with_etag(&ctx, &entry))
}

pub(crate) async fn put_batch(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.config.gateway.max_body_bytes).await?;
    let changes: serde_json::Map<String, serde_json::Value> = body::decode(&bytes)?;
    let store = state.store()?.clone();
    let entries = web::block(move || store.put_batch(&changes)).await??;
    changed(&state, entries.iter().map(|(k, e)| (k.clone(), e.value.clone())).collect()).await;
    Ok(ctx.ok(entries))
}

pub(crate) async fn reset(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let store = state.store()?.clone();
    let key = key.into_inner();
    let entry = web::block(move || store.reset(&key, expected)).await??;
    changed(&state, BTreeMap::from([(entry.key.clone(), entry.value.clone())])).await;
    Ok(with_etag(&ctx, &entry))
}

/// After a committed change: refresh what validation caches, and tell whoever depends on it.
async fn changed(state: &web::Data<AppState>, changes: BTreeMap<String, serde_json::Value>) {
    log::info!("settings changed: {}", changes.keys().cloned().collect::<Vec<_>>().join(", "));
    let refresh = state.clone();
    if let Err(e) = web::block(move || refresh.refresh_limits()).await {
        log::error!("cannot refresh validation limits: {e}");
    }
    crate::outbound::ingest::system(
        &state.hub,
        serde_json::json!({ "kind": "settings_changed", "keys": changes.keys().collect::<Vec<_>>() }),
    );
    if let Some(propagation) = &state.propagation {
        propagation.changed(changes);
    }
}
