//! Table tests of contract loading and checking: an OpenAPI 3.0 document (converted), and the
//! contract a real FastAPI app generated (`tests/fixtures/fastapi_mt5.openapi.json`, 3.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::Method;
use gateway_core::{ErrorCode, Lang, ServiceName};
use registry::ServiceConfig;
use serde_json::json;

use super::compiled::{Contract, ContractError, Verdict};

fn service(name: &str, routes: &[&str]) -> ServiceConfig {
    let mut s = ServiceConfig::with_defaults(ServiceName::parse(name).unwrap(), 1);
    s.routes = routes.iter().map(|r| (*r).to_owned()).collect();
    s
}

const FASTAPI: &str = include_str!("../../../../tests/fixtures/fastapi_mt5.openapi.json");

/// An OpenAPI 3.0 document with the 3.0-only keywords and `$ref`s into every kind of component.
fn v3_0() -> serde_json::Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "quotes", "version": "1"},
        "paths": {
            "/quotes": {
                "parameters": [{"$ref": "#/components/parameters/Symbol"}],
                "get": {
                    "parameters": [
                        {"name": "depth", "in": "query", "schema": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 10, "example": 5}},
                        {"name": "side", "in": "query", "schema": {"type": "string", "enum": ["bid", "ask"], "nullable": true}},
                        {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}}
                    ],
                    "responses": {"200": {"description": "ok"}}
                },
                "post": {
                    "requestBody": {"$ref": "#/components/requestBodies/Quote"},
                    "responses": {"200": {"description": "ok"}}
                }
            },
            "/quotes/{id}": {
                "get": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
                    "responses": {"200": {"description": "ok"}}
                }
            },
            "/quotes/active": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
        },
        "components": {
            "parameters": {"Symbol": {"name": "symbol", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[A-Z]{6}$"}}},
            "requestBodies": {"Quote": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Quote"}}}}},
            "schemas": {
                "Quote": {
                    "type": "object", "required": ["price", "venue"], "additionalProperties": false,
                    "properties": {
                        "price": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                        "note": {"type": "string", "nullable": true, "maxLength": 8},
                        "venue": {"$ref": "#/components/schemas/Venue"},
                        "legs": {"type": "array", "items": {"$ref": "#/components/schemas/Venue"}}
                    }
                },
                "Venue": {"type": "object", "required": ["code"], "properties": {"code": {"type": "string", "enum": ["X", "Y"]}}}
            }
        }
    })
}

/// (method, path, query, body) → `Ok(covered)` or the error code and the English message start.
type Case = (&'static str, &'static str, &'static str, &'static str, Result<bool, (ErrorCode, &'static str)>);

fn run(contract: &Contract, cases: &[Case]) {
    for (method, path, query, body, want) in cases {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let got = contract.check(&m, path, query, body.as_bytes());
        match (want, got) {
            (Ok(covered), Ok(v)) => assert_eq!(v == Verdict::Accepted, *covered, "{method} {path}?{query} {body}"),
            (Err((code, msg)), Err(p)) => {
                assert_eq!(p.code(), *code, "{method} {path}?{query} {body}: {}", p.message(Lang::En));
                assert!(
                    p.message(Lang::En).starts_with(msg),
                    "{method} {path}?{query} {body}: {}",
                    p.message(Lang::En)
                );
                assert_ne!(p.message(Lang::Hu), p.message(Lang::En));
            }
            (want, got) => panic!("{method} {path}?{query} {body}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn an_openapi_3_0_contract_is_converted_and_enforced() {
    let doc = serde_json::to_vec(&v3_0()).unwrap();
    let contract = Contract::parse(&doc, &service("quotes", &["quotes"])).unwrap();
    assert_eq!(contract.operations, 4, "/health is not under the service's routes");
    use ErrorCode::{MethodNotAllowed, NotFound, ValidationFailed as Bad};
    let cases: &[Case] = &[
        ("GET", "/quotes", "symbol=EURUSD", "", Ok(true)),
        ("GET", "/quotes/", "symbol=EURUSD&depth=10&side=bid&tags=1&tags=2", "", Ok(true)),
        ("HEAD", "/quotes", "symbol=EURUSD", "", Ok(true)),
        ("GET", "/quotes", "", "", Err((Bad, "Invalid request: symbol – is required"))),
        (
            "GET",
            "/quotes",
            "symbol=eurusd",
            "",
            Err((Bad, "Invalid request: symbol – does not match the pattern ^[A-Z]{6}$")),
        ),
        ("GET", "/quotes", "symbol=EURUSD&depth=0", "", Err((Bad, "Invalid request: depth – must be greater than 0"))),
        ("GET", "/quotes", "symbol=EURUSD&depth=11", "", Err((Bad, "Invalid request: depth – must be at most 10"))),
        (
            "GET",
            "/quotes",
            "symbol=EURUSD&depth=two",
            "",
            Err((Bad, "Invalid request: depth – wrong type, expected an integer")),
        ),
        (
            "GET",
            "/quotes",
            "symbol=EURUSD&side=mid",
            "",
            Err((Bad, "Invalid request: side – not allowed (one of: bid, ask")),
        ),
        (
            "GET",
            "/quotes",
            "symbol=EURUSD&tags=1&tags=x",
            "",
            Err((Bad, "Invalid request: tags – wrong type, expected an integer")),
        ),
        ("GET", "/quotes/7", "", "", Ok(true)),
        ("GET", "/quotes/0", "", "", Err((Bad, "Invalid request: id – must be at least 1"))),
        ("GET", "/quotes/active", "", "", Ok(true)),
        ("GET", "/quotes/7/history", "", "", Err((NotFound, "The requested resource"))),
        ("DELETE", "/quotes/7", "", "", Err((MethodNotAllowed, "This operation is not supported"))),
        ("PUT", "/quotes", "symbol=EURUSD", "{}", Err((MethodNotAllowed, "This operation is not supported"))),
        ("POST", "/quotes", "symbol=EURUSD", r#"{"price": 1.5, "venue": {"code": "X"}, "note": null}"#, Ok(true)),
        ("POST", "/quotes", "symbol=EURUSD", "", Err((Bad, "Invalid request: body – is required"))),
        ("POST", "/quotes", "symbol=EURUSD", "{", Err((Bad, "Invalid request: body – "))),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"venue": {"code": "X"}}"#,
            Err((Bad, "Invalid request: price – is required")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": 0, "venue": {"code": "X"}}"#,
            Err((Bad, "Invalid request: price – must be greater than 0")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": "1", "venue": {"code": "X"}}"#,
            Err((Bad, "Invalid request: price – wrong type, expected a number")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": 1, "venue": {"code": "Z"}}"#,
            Err((Bad, "Invalid request: venue.code – not allowed (one of: X, Y)")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": 1, "venue": {"code": "X"}, "legs": [{"code": "X"}, {}]}"#,
            Err((Bad, "Invalid request: legs[1].code – is required")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": 1, "venue": {"code": "X"}, "extra": 1}"#,
            Err((Bad, "Invalid request: extra – unknown field")),
        ),
        (
            "POST",
            "/quotes",
            "symbol=EURUSD",
            r#"{"price": 1, "venue": {"code": "X"}, "note": "much too long"}"#,
            Err((Bad, "Invalid request: note – too long (at most 8)")),
        ),
    ];
    run(&contract, cases);
}

#[test]
fn a_resource_the_contract_leaves_out_is_unknown_but_an_empty_contract_covers_nothing() {
    let doc = serde_json::to_vec(&v3_0()).unwrap();
    let contract = Contract::parse(&doc, &service("quotes", &["quotes", "books"])).unwrap();
    let not_found = Err((ErrorCode::NotFound, "The requested resource"));
    run(&contract, &[("GET", "/books/anything", "", "", not_found), ("DELETE", "/books", "", "", not_found)]);
    // Nothing under the service's routes (only /health): forwarded with the domain rules only.
    let contract = Contract::parse(&doc, &service("books", &["books"])).unwrap();
    assert_eq!(contract.operations, 0);
    run(&contract, &[("GET", "/books/anything", "", "", Ok(false))]);
}

#[test]
fn a_real_fastapi_contract_is_loaded_and_enforced() {
    let contract = Contract::parse(FASTAPI.as_bytes(), &service("mt5", &["account", "positions", "orders"])).unwrap();
    assert_eq!(contract.openapi, "3.1.0");
    assert_eq!(contract.operations, 4);
    use ErrorCode::{MethodNotAllowed, NotFound, ValidationFailed as Bad};
    let order = r#"{"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1}"#;
    let cases: &[Case] = &[
        ("GET", "/account", "", "", Ok(true)),
        ("GET", "/positions", "symbol=EURUSD&limit=5", "", Ok(true)),
        ("GET", "/positions", "limit=0", "", Err((Bad, "Invalid request: limit – must be at least 1"))),
        (
            "GET",
            "/positions",
            "symbol=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "",
            Err((Bad, "Invalid request: symbol – too long (at most 32)")),
        ),
        ("DELETE", "/positions/12", "", "", Ok(true)),
        ("DELETE", "/positions/x", "", "", Err((Bad, "Invalid request: ticket – wrong type, expected an integer"))),
        ("POST", "/orders", "", order, Ok(true)),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1, "price": null}"#,
            Ok(true),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EURUSD", "side": "hold", "type": "market", "volume": 0.1}"#,
            Err((Bad, "Invalid request: side – not allowed (one of: buy, sell)")),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EURUSD", "side": "buy", "type": "fok", "volume": 0.1}"#,
            Err((Bad, "Invalid request: type – not allowed")),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 500}"#,
            Err((Bad, "Invalid request: volume – must be at most 100")),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 1, "price": -1}"#,
            Err((Bad, "Invalid request: price – must be greater than 0")),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"symbol": "EUR USD", "side": "buy", "type": "market", "volume": 1}"#,
            Err((Bad, "Invalid request: symbol – does not match the pattern")),
        ),
        (
            "POST",
            "/orders",
            "",
            r#"{"side": "buy", "type": "market", "volume": 1}"#,
            Err((Bad, "Invalid request: symbol – is required")),
        ),
        ("GET", "/orders", "", "", Err((MethodNotAllowed, "This operation"))),
        ("GET", "/orders/1", "", "", Err((NotFound, "The requested"))),
    ];
    run(&contract, cases);
    // The merged document: under /api, tagged, envelopes around the answers, schemas renamed.
    let orders = &contract.merged_paths["/api/orders"]["post"];
    assert_eq!(orders["tags"], json!(["mt5"]));
    assert_eq!(orders["operationId"], "mt5_send_order_orders_post");
    let ok = orders["responses"]["200"]["content"]["application/json"]["schema"].to_string();
    assert!(
        ok.contains("#/components/schemas/Envelope") && ok.contains("#/components/schemas/mt5.TradeResult"),
        "{ok}"
    );
    assert!(orders["responses"]["405"].is_object());
    assert!(contract.merged_schemas.contains_key("mt5.OrderRequest"));
    assert!(!contract.merged_paths.contains_key("/api/health"));
}

#[test]
fn broken_documents_are_refused_with_a_reason() {
    let s = service("x", &["x"]);
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "not JSON"),
        (br#"{"swagger": "2.0", "paths": {}}"#, "not an OpenAPI 3.0 or 3.1 document: no `openapi` field"),
        (br#"{"openapi": "3.1.0"}"#, "no `paths`"),
        (br#"{"openapi": "3.1.0", "paths": {"/x": {"get": {"parameters": [{"name": "a", "in": "query", "schema": {"type": 7}}]}}}}"#, "GET /x parameter a"),
    ];
    for (doc, want) in cases {
        let err = Contract::parse(doc, &s).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert!(!matches!(err, ContractError::Schema { .. }) || want.starts_with("GET"));
    }
}
