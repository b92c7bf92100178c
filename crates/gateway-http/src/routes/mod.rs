//! Route registration, one module per resource.

use actix_web::web;
use gateway_core::{Problem, Reason};

use crate::error::ApiError;

pub mod config;
pub mod health;
pub mod services;
pub mod settings;

/// Registers every route of the gateway. The router tries patterns in order, and a dynamic one
/// (`{name}`) costs a regular-expression match: the gateway's own dynamic routes sit in scopes
/// with a static prefix (`/api/services`, `/api/settings`, `/api/hub`, `/assets`), so that a
/// forwarded request — most of the traffic — reaches the catch-all after string comparisons only.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        log::debug!("bad query: {e}");
        ApiError::Problem(Problem::invalid("query", Reason::Malformed)).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        log::debug!("bad path: {e}");
        ApiError::Problem(Problem::invalid("path", Reason::Malformed)).into()
    }))
    .configure(health::configure)
    .configure(config::configure)
    .configure(services::configure)
    .configure(settings::configure)
    .configure(crate::aggregate::configure)
    .configure(crate::realtime::configure)
    .configure(crate::page::configure)
    .configure(crate::metrics::configure)
    .configure(crate::openapi::configure)
    // Last: the catch-all forwarding routes.
    .configure(crate::forward::configure)
    .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(Problem::NotFound.into())
}
