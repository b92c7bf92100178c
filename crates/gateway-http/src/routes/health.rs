//! `GET /api/health`: public, answered from the registry alone.

use actix_web::{HttpResponse, web};

use crate::edge::context::RequestCtx;
use crate::state::AppState;

pub(crate) async fn health(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    let health = state.registry.health();
    let Some(cluster) = &state.config.cluster else { return ctx.ok(health) };
    // A cluster node also names itself and the broker's state.
    let mut answer = serde_json::to_value(health).unwrap_or_default();
    if let Some(fields) = answer.as_object_mut() {
        fields.insert(
            "cluster".to_owned(),
            serde_json::json!({
                "node": cluster.node,
                "role": cluster.role,
                "primary_url": cluster.primary_url,
                "broker": state.hub.broker_state(),
            }),
        );
    }
    ctx.ok(answer)
}
