//! The OpenAPI document is the route table's: its operations are exactly the routes of
//! `gateway_http::routes::ROUTES` (each documented method, and the concrete paths a route
//! serves), each with the route's role; its error codes are `ErrorCode`'s variants and its
//! request bodies the Rust types'.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use gateway_http::openapi::{doc_path, document, role_name};
use gateway_http::routes::ROUTES;

#[test]
fn the_document_lists_exactly_the_routes() {
    let doc = serde_json::to_value(document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let mut declared = BTreeSet::new();
    for route in ROUTES {
        for method in route.methods.documented() {
            let op = &paths[&doc_path(route.pattern)][method.to_ascii_lowercase()];
            let role = role_name(route.access.for_method(method));
            assert!(op["description"].as_str().unwrap().starts_with(&format!("Role: {role}.")), "{method} {op}");
            assert_eq!(op["tags"][0], route.doc.tag, "{method} {}", route.pattern);
            declared.insert((method.to_string(), doc_path(route.pattern)));
        }
        for concrete in route.concrete {
            declared.insert((concrete.method.to_owned(), concrete.path.to_owned()));
        }
    }
    assert_eq!(documented, declared);
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(paths["/api/{resource}/{tail}"].get(method).is_some(), "forwarded {method}");
    }
    assert_eq!(
        paths["/api/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OrderRequest"
    );
}

#[test]
fn error_codes_and_schemas_come_from_the_types() {
    let doc = serde_json::to_value(document()).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    assert!(schemas["Envelope"]["properties"]["code"].to_string().contains("#/components/schemas/ErrorCode"));
    let codes = serde_json::to_string(&schemas["ErrorCode"]["enum"]).unwrap();
    for code in gateway_core::ErrorCode::ALL {
        assert!(codes.contains(&format!("\"{}\"", code.as_str())), "{code:?} missing from {codes}");
    }
    // The bodies the gateway validates itself are described by their Rust types (`ToSchema`),
    // unknown fields refused as `deny_unknown_fields` does.
    for name in ["OrderRequest", "StrategyRequest", "SettingPut"] {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
}
