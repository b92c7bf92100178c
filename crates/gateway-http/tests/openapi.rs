//! Route coverage of the OpenAPI document: every pattern the router registers, with every method
//! its access-table entry names, is an operation of `/api/openapi.json`, and every documented
//! operation is served by the router (no stale entries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use actix_web::App;
use actix_web::dev::Service as _;
use actix_web::test as actix_test;
use gateway_http::openapi::{OPERATIONS, doc_path, document};

/// The registered patterns, read from the router's resource map (its `Debug` form, the only view
/// actix-web offers of the whole tree; `tests/access.rs` checks this still works).
async fn registered() -> (BTreeSet<String>, actix_web::dev::ResourceMap) {
    let seen: Rc<RefCell<Option<actix_web::dev::ResourceMap>>> = Rc::default();
    let grab = seen.clone();
    let app =
        actix_test::init_service(App::new().configure(gateway_http::routes::configure).wrap_fn(move |req, srv| {
            *grab.borrow_mut() = Some(req.resource_map().clone());
            srv.call(req)
        }))
        .await;
    let _ = actix_test::try_call_service(&app, actix_test::TestRequest::get().uri("/api/health").to_request()).await;
    let rmap = seen.borrow_mut().take().expect("the middleware saw the request");
    let text = format!("{rmap:?}");
    let mut patterns = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("patterns: ") {
        rest = &rest[i + "patterns: ".len()..];
        let end = rest.find(", is_prefix").or_else(|| rest.find('}')).unwrap_or(rest.len());
        for quoted in rest[..end].split('"').skip(1).step_by(2) {
            if !quoted.is_empty() {
                patterns.insert(quoted.replace("\\\\", "\\"));
            }
        }
        rest = &rest[end..];
    }
    (patterns, rmap)
}

#[actix_rt::test]
async fn every_registered_route_is_in_the_document() {
    let (patterns, _) = registered().await;
    assert!(patterns.len() >= 15, "the resource map could not be read: {patterns:?}");
    let doc = serde_json::to_value(document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut missing = Vec::new();
    for pattern in &patterns {
        let item = paths.get(&doc_path(pattern));
        // Methods: the access table's for this pattern; GET at least.
        let mut methods: Vec<&str> =
            gateway_http::access_table().iter().filter(|(_, p, _)| p == pattern).map(|(m, _, _)| *m).collect();
        if methods.is_empty() {
            methods.push("GET");
        }
        for m in methods {
            if item.and_then(|i| i.get(m.to_ascii_lowercase())).is_none() {
                missing.push(format!("{m} {pattern}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes missing from crates/gateway-http/src/openapi.rs OPERATIONS: {missing:?}");
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(paths["/api/{resource}/{tail}"].get(method).is_some(), "forwarded {method}");
    }
    // The table the auth middleware enforces is covered too.
    for (method, pattern, _) in gateway_http::access_table() {
        let op = paths.get(&doc_path(pattern)).and_then(|i| i.get(method.to_ascii_lowercase()));
        assert!(op.is_some(), "{method} {pattern} is in the access table but not in the document");
    }
}

#[actix_rt::test]
async fn every_documented_operation_is_served() {
    let (patterns, rmap) = registered().await;
    for op in OPERATIONS {
        assert!(patterns.contains(op.pattern), "{} {} is documented but not registered", op.method, op.pattern);
        if let Some(path) = op.path {
            assert_eq!(rmap.match_pattern(path).as_deref(), Some(op.pattern), "{path} is served by {}", op.pattern);
        }
    }
}
