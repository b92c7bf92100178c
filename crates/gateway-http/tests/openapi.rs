//! Route coverage of the OpenAPI document: every pattern the router registers, with every method
//! its access-table entry names, is an operation of `/api/openapi.json`, and every documented
//! operation is served by the router (no stale entries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::registered_patterns;
use gateway_http::openapi::{OPERATIONS, doc_path, document};

#[actix_rt::test]
async fn every_registered_route_is_in_the_document() {
    let (patterns, _) = registered_patterns().await;
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
    let (patterns, rmap) = registered_patterns().await;
    for op in OPERATIONS {
        assert!(patterns.contains(op.pattern), "{} {} is documented but not registered", op.method, op.pattern);
        if let Some(path) = op.path {
            assert_eq!(rmap.match_pattern(path).as_deref(), Some(op.pattern), "{path} is served by {}", op.pattern);
        }
    }
}
