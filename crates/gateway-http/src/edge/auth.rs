//! Authentication and authorisation: bearer tokens checked by the settings store's
//! [`settings::TokenVerifier`] (the same one `/ws` and SSE use), and the access each route needs.
//!
//! Each route declares its access in the route table ([`crate::routes::ROUTES`]), looked up by
//! the router pattern the request matched; anything else needs at least a viewer token
//! (GET/HEAD) or an operator token (everything else), so nothing is accidentally public.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use gateway_core::{Access, Problem};

use crate::edge::context::RoutePattern;
use crate::edge::error::ApiError;
use crate::state::AppState;

/// Who is calling (the same principal the hub records for its clients).
pub use hub::Principal;

/// The access a request needs, from its method and the router pattern it matched: the route's
/// own ([`crate::routes::ROUTES`]), else viewer for reads and operator for anything else.
pub fn required_access(method: &Method, pattern: Option<&str>) -> Access {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    match pattern.and_then(|p| crate::routes::find(method, p)) {
        Some(route) => route.access.for_method(method),
        None => crate::routes::by_method(method),
    }
}

/// The routes whose access does not follow from the method, one entry per documented method:
/// (method, router pattern, access). Derived from [`crate::routes::ROUTES`].
pub fn access_table() -> &'static [(&'static str, &'static str, Access)] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, &'static str, Access)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        for route in crate::routes::ROUTES {
            if let crate::routes::RouteAccess::Fixed(access) = route.access {
                table.extend(route.methods.documented().iter().map(|m| (*m, route.pattern, access)));
            }
        }
        table
    })
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

/// Where bearer tokens are checked: the settings store (a single node or a cluster primary) or
/// the table a primary publishes (a cluster edge).
#[derive(Clone, Debug)]
pub enum Tokens {
    /// Verified against the settings store, remembered until it changes.
    Store(Arc<settings::TokenVerifier>),
    /// Verified against the primary's published hashes (see [`crate::cluster::edge`]).
    Published(Arc<crate::cluster::PublishedTokens>),
}

impl Tokens {
    /// The token's identity when it can be told without blocking.
    pub fn cached(&self, token: &str) -> Option<settings::TokenInfo> {
        match self {
            Tokens::Store(verifier) => verifier.cached(token),
            Tokens::Published(table) => table.verify(token),
        }
    }

    /// The token's identity (asks the store on the blocking pool when needed).
    pub async fn verify(&self, token: String) -> Result<Option<settings::TokenInfo>, ApiError> {
        match self {
            Tokens::Store(verifier) => {
                if let Some(info) = verifier.cached(&token) {
                    return Ok(Some(info));
                }
                let verifier = verifier.clone();
                Ok(web::block(move || verifier.verify(&token)).await??)
            }
            Tokens::Published(table) => Ok(table.verify(&token)),
        }
    }
}

/// The auth middleware (inside the request-context middleware).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let access = RoutePattern::with(&req, |pattern| required_access(req.method(), pattern));
    if access == Access::Public {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal("application state missing".into())));
    };
    let principal = match bearer(&req) {
        Some(token) => match state.tokens.verify(token).await {
            Ok(info) => info.map(|i| Principal { name: i.name, role: i.role }),
            Err(e) => return Ok(req.error_response(e)),
        },
        // Browsers cannot set headers on an EventSource: the SSE stream also takes a ticket.
        None if RoutePattern::with(&req, |pattern| pattern == Some(TICKET_ROUTE)) => {
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
