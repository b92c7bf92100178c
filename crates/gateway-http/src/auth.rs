//! Authentication and authorisation: bearer tokens checked against the settings store, and the
//! access each route needs.
//!
//! The access table is keyed by the router's own patterns, and anything not listed needs at
//! least a viewer token (GET/HEAD) or an operator token (everything else): a route added
//! without an entry here is never accidentally public.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use gateway_core::{Access, Problem};

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling (the same principal the hub records for its clients).
pub use hub::Principal;

/// Explicit entries: (method, router pattern, access). `*` matches any method.
const ACCESS_TABLE: &[(&str, &str, Access)] = &[
    ("GET", "/", Access::Public),
    ("GET", "/assets/{file}", Access::Public),
    ("GET", "/api/health", Access::Public),
    ("GET", "/api/openapi.json", Access::Public),
    ("GET", "/ws", Access::Public),
    ("GET", "/api/services", Access::Read),
    ("GET", "/api/services/{name}", Access::Read),
    ("GET", "/api/services/{name}/logs", Access::Read),
    ("POST", "/api/services/{name}/{action}", Access::Write),
    ("GET", "/api/settings", Access::Read),
    ("PUT", "/api/settings", Access::Write),
    ("GET", "/api/settings/{key}", Access::Read),
    ("PUT", "/api/settings/{key}", Access::Write),
    ("DELETE", "/api/settings/{key}", Access::Write),
    ("GET", "/api/dashboard", Access::Read),
    ("POST", "/api/events", Access::Ingest),
    ("GET", "/api/events/stream", Access::Read),
    ("POST", "/api/auth/ticket", Access::Read),
    ("GET", "/api/hub/clients", Access::Read),
    ("POST", "/api/hub/clients/{id}/send", Access::Write),
    ("GET", "/metrics", Access::Read),
];

/// The access a request needs, from its method and the router pattern it matched.
pub fn required_access(method: &Method, pattern: Option<&str>) -> Access {
    let reading = method == Method::GET || method == Method::HEAD;
    if let Some(pattern) = pattern {
        let method = if method == Method::HEAD { "GET" } else { method.as_str() };
        if let Some((_, _, access)) = ACCESS_TABLE.iter().find(|(m, p, _)| *p == pattern && (*m == method || *m == "*"))
        {
            return *access;
        }
    }
    if reading { Access::Read } else { Access::Write }
}

/// The explicit access table (for documentation and the route-coverage test).
pub fn access_table() -> &'static [(&'static str, &'static str, Access)] {
    ACCESS_TABLE
}

/// The one route that also accepts `?ticket=`.
const TICKET_ROUTE: &str = "/api/events/stream";

fn ticket(req: &ServiceRequest) -> Option<String> {
    req.query_string().split('&').find_map(|pair| pair.strip_prefix("ticket=")).map(str::to_owned)
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The auth middleware (inside the request-context middleware).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let access = required_access(req.method(), req.match_pattern().as_deref());
    if access == Access::Public {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal("application state missing".into())));
    };
    let principal = match bearer(&req) {
        Some(token) => {
            let store = state.settings.clone();
            match web::block(move || store.verify_token(&token)).await {
                Ok(Ok(info)) => info.map(|i| Principal { name: i.name, role: i.role }),
                Ok(Err(e)) => return Ok(req.error_response(ApiError::from(e))),
                Err(e) => return Ok(req.error_response(ApiError::from(e))),
            }
        }
        // Browsers cannot set headers on an EventSource: the SSE stream also takes a ticket.
        None if req.match_pattern().as_deref() == Some(TICKET_ROUTE) => {
            ticket(&req).and_then(|t| state.tickets.redeem(&t))
        }
        None => None,
    };
    let Some(principal) = principal else {
        return Ok(req.error_response(ApiError::Problem(Problem::Unauthorized)));
    };
    if !principal.role.permits(access) {
        return Ok(req.error_response(ApiError::Problem(Problem::Forbidden)));
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_routes_are_never_public() {
        assert_eq!(required_access(&Method::GET, Some("/api/new-thing")), Access::Read);
        assert_eq!(required_access(&Method::POST, Some("/api/new-thing")), Access::Write);
        assert_eq!(required_access(&Method::DELETE, None), Access::Write);
        assert_eq!(required_access(&Method::GET, Some("/api/health")), Access::Public);
        assert_eq!(required_access(&Method::HEAD, Some("/api/health")), Access::Public);
        assert_eq!(required_access(&Method::POST, Some("/api/health")), Access::Write);
        assert_eq!(required_access(&Method::PUT, Some("/api/settings/{key}")), Access::Write);
        assert_eq!(required_access(&Method::POST, Some("/api/events")), Access::Ingest);
    }
}
