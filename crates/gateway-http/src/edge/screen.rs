//! The screening middleware (inside the request context, before CORS headers and auth): cheap
//! checks that refuse a request before any routing work or body read — an overlong path or query
//! string (400), a declared body larger than `gateway.max_body_bytes` on any route, also one that
//! ignores bodies (413), and a browser origin the CORS policy does not allow (403, see
//! [`crate::edge::cors`]). It also puts the frame-length guard ([`crate::edge::wsguard`]) on the inbound
//! bytes of every WebSocket upgrade.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use bytes::Bytes;
use futures_util::Stream;
use gateway_core::{Problem, Reason};

use crate::edge::error::ApiError;
use crate::edge::wsguard::{FrameGuard, MAX_WS_FRAME};
use crate::state::AppState;

/// Longest accepted path, in bytes (still percent-encoded).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted query string, in bytes (still percent-encoded). 128 SSE topics fit easily.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

fn check(req: &ServiceRequest) -> Result<(), Problem> {
    if req.path().len() > MAX_PATH_BYTES {
        return Err(Problem::invalid("path", Reason::TooLong { max: MAX_PATH_BYTES }));
    }
    if req.query_string().len() > MAX_QUERY_BYTES {
        return Err(Problem::invalid("query", Reason::TooLong { max: MAX_QUERY_BYTES }));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(declared), Some(state)) = (declared, req.app_data::<web::Data<AppState>>())
        && declared > state.config.gateway.max_body_bytes as u64
    {
        return Err(Problem::PayloadTooLarge);
    }
    crate::edge::cors::check(req)
}

/// The middleware.
pub async fn screen(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Err(problem) = check(&req) {
        return Ok(req.error_response(ApiError::Problem(problem)));
    }
    let mut req = req;
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if upgrade.is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket")) {
        let guarded: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(FrameGuard::new(req.take_payload(), MAX_WS_FRAME));
        req.set_payload(Payload::from(guarded));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
