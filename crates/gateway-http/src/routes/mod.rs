//! The gateway's routes: one table ([`ROUTES`]) that declares each route once — methods, router
//! pattern, access, documentation and handler — and the registration derived from it. The auth
//! middleware ([`crate::edge::auth`]) and the OpenAPI document ([`crate::openapi`]) read the same table.

use actix_web::{guard, web};
use gateway_core::{Access, Problem, Reason};

use crate::edge::error::ApiError;
use crate::openapi::Doc;

pub mod config;
pub mod health;
pub mod services;
pub mod settings;
mod table;

pub use table::{FORWARD_ROOT, FORWARD_TAIL, ROUTES};

/// The methods a route is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `GET` only.
    Get,
    /// `GET` and `HEAD` (the page and its assets).
    GetOrHead,
    /// `POST` only.
    Post,
    /// `PUT` only.
    Put,
    /// `DELETE` only.
    Delete,
    /// Any method (the forwarding routes); documented as GET, POST, PUT, PATCH and DELETE.
    Any,
}

impl Methods {
    /// The methods written in the access table and the document.
    pub fn documented(self) -> &'static [&'static str] {
        match self {
            Methods::Get | Methods::GetOrHead => &["GET"],
            Methods::Post => &["POST"],
            Methods::Put => &["PUT"],
            Methods::Delete => &["DELETE"],
            Methods::Any => &["GET", "POST", "PUT", "PATCH", "DELETE"],
        }
    }

    /// Whether a request with `method` (`HEAD` already read as `GET`) is this route's.
    pub fn admits(self, method: &str) -> bool {
        self == Methods::Any || self.documented().contains(&method)
    }

    /// The actix route with this method guard.
    fn guarded(self) -> actix_web::Route {
        match self {
            Methods::Get => web::get(),
            Methods::GetOrHead => web::route().guard(guard::Any(guard::Get()).or(guard::Head())),
            Methods::Post => web::post(),
            Methods::Put => web::put(),
            Methods::Delete => web::delete(),
            Methods::Any => web::route(),
        }
    }
}

/// What a route needs from the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    /// This access, whatever the method.
    Fixed(Access),
    /// Viewer for `GET`/`HEAD`, operator for anything else (the forwarding routes, and the rule
    /// for every request no route declares).
    ByMethod,
}

impl RouteAccess {
    /// The access a request with `method` needs.
    pub fn for_method(self, method: &str) -> Access {
        match self {
            RouteAccess::Fixed(access) => access,
            RouteAccess::ByMethod => by_method(method),
        }
    }
}

/// The rule for anything not declared otherwise: reads need a viewer, the rest an operator.
pub fn by_method(method: &str) -> Access {
    if method == "GET" || method == "HEAD" { Access::Read } else { Access::Write }
}

/// Where a cluster edge (SPEC §13) answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEdge {
    /// The edge itself (real-time, health, settings reads from the published copy, its pages).
    Local,
    /// The primary, at `primary_url` (lifecycle, logs, settings writes).
    Primary,
    /// The edge, when it reaches the services the route needs directly; else the primary.
    Direct,
}

/// A documented concrete path a route serves (a forwarded route the gateway validates itself).
#[derive(Debug, Clone, Copy)]
pub struct Concrete {
    /// HTTP method.
    pub method: &'static str,
    /// The concrete path (matched by the route's pattern).
    pub path: &'static str,
    /// Its documentation.
    pub doc: Doc,
}

/// One route of the gateway, declared once.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The methods it is registered for.
    pub methods: Methods,
    /// The router pattern (`{name}` segments; `{tail:.*}` for the rest of a path).
    pub pattern: &'static str,
    /// Who may call it.
    pub access: RouteAccess,
    /// Where a cluster edge answers it.
    pub on_edge: OnEdge,
    /// Its OpenAPI documentation.
    pub doc: Doc,
    /// Concrete paths it serves that are documented on their own.
    pub concrete: &'static [Concrete],
    /// Attaches the handler to the guarded actix route.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

impl Route {
    /// The actix route: the method guard and the handler.
    fn actix(&self) -> actix_web::Route {
        (self.handler)(self.methods.guarded())
    }
}

/// The route declared for a method (`HEAD` read as `GET`) and a router pattern.
pub fn find(method: &str, pattern: &str) -> Option<&'static Route> {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES.iter().find(|r| r.pattern == pattern && r.methods.admits(method))
}

/// The static prefixes the gateway's dynamic routes are grouped under. The router tries
/// patterns in order, and a dynamic one (`{name}`) costs a regular-expression match: inside a
/// scope, a request for another prefix skips them after one string comparison, so that a
/// forwarded request — most of the traffic — reaches the catch-all after string comparisons only.
pub const SCOPES: &[&str] = &["/api/services", "/api/settings", "/api/hub", "/assets"];

/// The scope a pattern is registered in, if any.
pub fn scope_of(pattern: &str) -> Option<&'static str> {
    SCOPES
        .iter()
        .copied()
        .find(|s| pattern.strip_prefix(s).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Registers every route of [`ROUTES`], in table order (the forwarding catch-alls are last),
/// each scoped route inside its [`SCOPES`] prefix, and the 404 envelope for anything else.
/// Each route is a resource of its own (not one resource with several methods), so that another
/// method falls through to the next route or the 404 envelope rather than a bare 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        log::debug!("bad query: {e}");
        ApiError::Problem(Problem::invalid("query", Reason::Malformed)).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        log::debug!("bad path: {e}");
        ApiError::Problem(Problem::invalid("path", Reason::Malformed)).into()
    }));
    let mut registered: Vec<&str> = Vec::new();
    for route in ROUTES {
        match scope_of(route.pattern) {
            None => {
                cfg.route(route.pattern, route.actix());
            }
            Some(prefix) if !registered.contains(&prefix) => {
                registered.push(prefix);
                let mut scope = web::scope(prefix);
                for member in ROUTES.iter().filter(|r| scope_of(r.pattern) == Some(prefix)) {
                    scope = scope.route(&member.pattern[prefix.len()..], member.actix());
                }
                cfg.service(scope);
            }
            Some(_) => {}
        }
    }
    cfg.default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(Problem::NotFound.into())
}
