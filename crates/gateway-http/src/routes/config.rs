//! `POST /api/config/reload` (operator): applies a changed configuration file without a
//! restart and answers the plan that was carried out (see [`crate::reload`]).

use actix_web::{HttpResponse, web};

use crate::edge::context::RequestCtx;
use crate::edge::error::ApiError;
use crate::state::AppState;

pub(crate) async fn reload(state: web::Data<AppState>, ctx: RequestCtx) -> Result<HttpResponse, ApiError> {
    let plan = state.reloader.reload(&state).await?;
    Ok(ctx.ok(plan))
}
