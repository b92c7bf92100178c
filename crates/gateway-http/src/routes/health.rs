//! `GET /api/health`: public, answered from the registry alone.

use actix_web::{HttpResponse, web};

use crate::context::RequestCtx;
use crate::state::AppState;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/health", web::get().to(health));
}

async fn health(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    ctx.ok(state.registry.health())
}
