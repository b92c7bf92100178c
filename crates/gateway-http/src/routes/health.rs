//! `GET /api/health`: public, answered from the registry alone.

use actix_web::{HttpResponse, web};

use crate::edge::context::RequestCtx;
use crate::state::AppState;

pub(crate) async fn health(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    ctx.ok(state.registry.health())
}
