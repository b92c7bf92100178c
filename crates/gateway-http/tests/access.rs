//! The router, the access rules and the route table agree, checked with real requests through
//! the router built by `gateway_http::routes::configure`: every route of
//! `gateway_http::routes::ROUTES` is reached, by its own pattern, with each of its methods and
//! only those, and the access the auth middleware decides is the route's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::App;
use actix_web::dev::Service as _;
use actix_web::dev::{ResourceDef, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test as actix_test;
use gateway_core::Access;
use gateway_http::routes::{Methods, ROUTES, RouteAccess, SCOPES, scope_of};

/// A concrete path for a pattern: each `{x}` becomes a plausible value (`{tail:.*}` two segments).
fn concrete(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        let var = &rest[start + 1..end - 1];
        out.push_str(match var {
            "name" => "data",
            "key" => "symbols",
            "action" => "start",
            "id" => "nobody",
            "file" => "dashboard.js",
            "resource" => "ticks",
            v if v.contains(":.*") => "latest/x",
            v => v,
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// What the router made of one request.
#[derive(Debug)]
struct Seen {
    /// The pattern the request matched (what the auth middleware and the metrics use).
    pattern: Option<String>,
    status: StatusCode,
}

/// Sends each (method, path) through the gateway's router (without application state: a
/// handler that needs it fails with 500, the router's own miss is the 404 default service).
async fn route_all(requests: &[(Method, String)]) -> Vec<Seen> {
    let patterns: Rc<RefCell<Vec<Option<String>>>> = Rc::default();
    let log = patterns.clone();
    let app =
        actix_test::init_service(App::new().configure(gateway_http::routes::configure).wrap_fn(move |req, srv| {
            log.borrow_mut().push(req.match_pattern());
            srv.call(req)
        }))
        .await;
    let mut statuses = Vec::new();
    for (method, path) in requests {
        let req = actix_test::TestRequest::default().method(method.clone()).uri(path).to_request();
        let res: Result<ServiceResponse, _> = actix_test::try_call_service(&app, req).await;
        statuses.push(match res {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        });
    }
    let patterns = patterns.borrow();
    assert_eq!(patterns.len(), requests.len(), "the recording middleware saw every request");
    patterns.iter().cloned().zip(statuses).map(|(pattern, status)| Seen { pattern, status }).collect()
}

#[actix_rt::test]
async fn every_route_is_reached_by_its_own_pattern_with_each_of_its_methods() {
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for route in ROUTES {
        let path = concrete(route.pattern);
        let mut methods: Vec<&str> = route.methods.documented().to_vec();
        if route.methods == Methods::GetOrHead {
            methods.push("HEAD");
        }
        for method in methods {
            requests.push((Method::from_bytes(method.as_bytes()).unwrap(), path.clone()));
            expected.push((method, route));
        }
        for concrete in route.concrete {
            requests.push((Method::from_bytes(concrete.method.as_bytes()).unwrap(), concrete.path.to_owned()));
            expected.push((concrete.method, route));
        }
    }
    assert!(requests.len() > ROUTES.len(), "{requests:?}");
    let seen = route_all(&requests).await;
    for (((method, route), (_, path)), seen) in expected.iter().zip(&requests).zip(&seen) {
        assert_eq!(seen.pattern.as_deref(), Some(route.pattern), "{method} {path} is decided by another pattern");
        assert_ne!(seen.status, StatusCode::NOT_FOUND, "{method} {path} reached no handler ({seen:?})");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let enforced = gateway_http::required_access(&method, seen.pattern.as_deref());
        assert_eq!(enforced, route.access.for_method(method.as_str()), "{method} {path}");
    }
}

#[actix_rt::test]
async fn a_request_reaches_a_handler_exactly_when_the_table_declares_one() {
    // Every method on every route's path, and a few paths of no route: the table's answer
    // (some route's pattern matches the path and admits the method; the forwarding catch-alls
    // only outside the scopes, which keep what falls under their prefix) must be the router's.
    let declares = |method: &str, path: &str| {
        ROUTES.iter().any(|r| {
            let reachable = r.methods != Methods::Any || scope_of(path).is_none();
            reachable && r.methods.admits(method) && ResourceDef::new(r.pattern).is_match(path)
        })
    };
    let mut paths: Vec<String> = ROUTES.iter().map(|r| concrete(r.pattern)).collect();
    paths.extend(
        ["/api", "/api/", "/nope", "/api/services/data/logs/more", "/assets/", "/api/settings/a/b"].map(String::from),
    );
    let mut requests = Vec::new();
    for path in &paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            requests.push((Method::from_bytes(method.as_bytes()).unwrap(), path.clone()));
        }
    }
    let mut misses = 0;
    for ((method, path), seen) in requests.iter().zip(route_all(&requests).await) {
        if declares(method.as_str(), path) {
            assert_ne!(seen.status, StatusCode::NOT_FOUND, "{method} {path} reached no handler: {seen:?}");
        } else {
            misses += 1;
            assert_eq!(seen.status, StatusCode::NOT_FOUND, "{method} {path} reached a handler: {seen:?}");
        }
    }
    assert!(misses > 20, "{misses} requests that no route declares");
}

#[test]
fn dynamic_gateway_routes_sit_in_static_scopes() {
    // A forwarded request (most of the traffic) must not pay for the gateway's own regexes: every
    // dynamic pattern but the forwarding catch-alls is inside a scope with a static prefix.
    for route in ROUTES {
        let dynamic = route.pattern.contains('{');
        if route.methods == Methods::Any {
            assert_eq!(route.access, RouteAccess::ByMethod, "{}", route.pattern);
            assert_eq!(scope_of(route.pattern), None, "{}", route.pattern);
        } else if dynamic {
            assert!(scope_of(route.pattern).is_some(), "{} is dynamic outside the scopes {SCOPES:?}", route.pattern);
        }
    }
    for scope in SCOPES {
        assert!(!scope.contains('{') && ROUTES.iter().any(|r| scope_of(r.pattern) == Some(scope)), "{scope}");
    }
    // The catch-alls are last, so that no gateway route is shadowed by them.
    let first_any = ROUTES.iter().position(|r| r.methods == Methods::Any).unwrap();
    assert!(ROUTES[first_any..].iter().all(|r| r.methods == Methods::Any));
}

#[test]
fn only_the_documented_routes_are_public() {
    // SPEC §3.2: only `GET /api/health`, the OpenAPI document and the static dashboard (anything
    // outside /api/) are public; `/ws` authenticates inside the protocol (its first message).
    let table = gateway_http::access_table();
    assert!(table.len() >= ROUTES.len() - 2, "{table:?}");
    for (method, pattern, access) in table {
        if *access != Access::Public {
            continue;
        }
        assert_eq!(*method, "GET", "{pattern}: only reads can be public");
        let api = pattern.starts_with("/api/") || *pattern == "/api" || *pattern == "/metrics";
        assert!(
            !api || ["/api/health", "/api/openapi.json", "/api/docs"].contains(pattern),
            "{pattern} is public but the API is not (SPEC §3.2)"
        );
    }
    // Anything not declared needs a token.
    assert_eq!(gateway_http::required_access(&Method::GET, Some("/api/new-thing")), Access::Read);
    assert_eq!(gateway_http::required_access(&Method::POST, None), Access::Write);
    assert_eq!(concrete("/api/services/{name}/{action}"), "/api/services/data/start");
    assert_eq!(concrete("/api/{resource}/{tail:.*}"), "/api/ticks/latest/x");
}
