//! `GET /openapi.json`: each role's contract (OpenAPI 3.1), complete and true to what its
//! routes accept, as a FastAPI service publishes its own. A test in `server` checks every
//! registered route and method against it.

use gateway_core::TIMEFRAMES;
use serde_json::{Value, json};

use crate::args::Role;

/// The symbol format every role accepts.
const SYMBOL_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._#@-]{0,31}$";

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn query(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": required, "schema": schema, "description": description })
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn ok(schema: Value) -> Value {
    json!({ "description": "Success", "content": { "application/json": { "schema": schema } } })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": r("Error") } } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn limit(default: u64, max: u64) -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": max, "default": default })
}

/// The paths and schemas of one role (without the common routes).
fn role_paths(role: Role) -> (Value, Value) {
    match role {
        Role::Data => (
            json!({
                "/ticks/latest": { "get": {
                    "operationId": "ticks_latest", "summary": "The latest tick of a symbol",
                    "parameters": [query("symbol", true, r("Symbol"), "A served symbol")],
                    "responses": { "200": ok(r("Tick")), "400": error("Invalid symbol"), "404": error("Symbol not served") }
                }},
                "/ohlc": { "get": {
                    "operationId": "ohlc", "summary": "Bars of a symbol, oldest first",
                    "parameters": [
                        query("symbol", true, r("Symbol"), "A served symbol"),
                        query("timeframe", true, r("Timeframe"), "One of the 21 MT5 timeframes"),
                        query("count", false, json!({"type": "integer", "minimum": 1, "maximum": 100_000, "default": 100}), "How many bars")
                    ],
                    "responses": { "200": ok(json!({"type": "array", "items": r("Bar")})), "400": error("Invalid query"), "404": error("Symbol not served") }
                }},
                "/symbols": { "get": {
                    "operationId": "symbols", "summary": "The served symbols",
                    "responses": { "200": ok(json!({"type": "array", "items": r("SymbolSpec")})) }
                }}
            }),
            json!({
                "Tick": { "type": "object", "required": ["symbol", "time_msc", "bid", "ask", "last", "volume"], "properties": {
                    "symbol": {"type": "string"}, "time_msc": {"type": "integer"}, "bid": {"type": "number"},
                    "ask": {"type": "number"}, "last": {"type": "number"}, "volume": {"type": "integer"} } },
                "Bar": { "type": "object", "required": ["time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume"], "properties": {
                    "time": {"type": "integer", "description": "Bar open, unix seconds"}, "open": {"type": "number"},
                    "high": {"type": "number"}, "low": {"type": "number"}, "close": {"type": "number"},
                    "tick_volume": {"type": "integer"}, "spread": {"type": "integer"}, "real_volume": {"type": "integer"} } },
                "SymbolSpec": { "type": "object", "additionalProperties": true }
            }),
        ),
        Role::Mt5 => {
            let ticket = path_param("ticket", json!({"type": "integer", "minimum": 0}));
            (
                json!({
                    "/account": { "get": {
                        "operationId": "account", "summary": "The paper account",
                        "responses": { "200": ok(r("Account")) }
                    }},
                    "/positions": { "get": {
                        "operationId": "positions", "summary": "Open positions",
                        "parameters": [query("symbol", false, r("Symbol"), "Only this symbol's")],
                        "responses": { "200": ok(json!({"type": "array", "items": r("Position")})), "400": error("Invalid query") }
                    }},
                    "/positions/{ticket}": { "delete": {
                        "operationId": "close_position", "summary": "Close a position at the market",
                        "parameters": [ticket.clone()],
                        "responses": { "200": ok(r("TradeResult")), "400": error("Invalid ticket"), "404": error("No such position") }
                    }},
                    "/orders": {
                        "get": {
                            "operationId": "pending_orders", "summary": "Pending (limit and stop) orders",
                            "responses": { "200": ok(json!({"type": "array", "items": r("PendingOrder")})) }
                        },
                        "post": {
                            "operationId": "send_order", "summary": "Send an order (market orders fill at once)",
                            "requestBody": body(r("OrderRequest")),
                            "responses": { "200": ok(r("TradeResult")), "400": error("Invalid order") }
                        }
                    },
                    "/orders/{ticket}": { "delete": {
                        "operationId": "cancel_order", "summary": "Cancel a pending order",
                        "parameters": [ticket],
                        "responses": { "200": ok(r("TradeResult")), "400": error("Invalid ticket"), "404": error("No such order") }
                    }}
                }),
                json!({
                    "Side": { "type": "string", "enum": ["buy", "sell"] },
                    "OrderType": { "type": "string", "enum": ["market", "limit", "stop"] },
                    "OrderRequest": {
                        "type": "object", "additionalProperties": false,
                        "required": ["symbol", "side", "type", "volume"],
                        "properties": {
                            "symbol": r("Symbol"), "side": r("Side"), "type": r("OrderType"),
                            "volume": {"type": "number", "exclusiveMinimum": 0},
                            "price": {"type": ["number", "null"], "exclusiveMinimum": 0, "description": "Required unless market"},
                            "sl": {"type": ["number", "null"], "minimum": 0, "description": "0 = none"},
                            "tp": {"type": ["number", "null"], "minimum": 0, "description": "0 = none"},
                            "deviation": {"type": ["integer", "null"], "minimum": 0, "maximum": 4_294_967_295_u64},
                            "magic": {"type": ["integer", "null"], "minimum": 0},
                            "comment": {"type": ["string", "null"]}
                        }
                    },
                    "TradeResult": { "type": "object", "required": ["order", "deal", "price", "volume", "retcode", "comment"], "properties": {
                        "order": {"type": "integer"}, "deal": {"type": "integer"}, "price": {"type": "number"},
                        "volume": {"type": "number"}, "retcode": {"type": "integer"}, "comment": {"type": "string"} } },
                    "Account": { "type": "object", "properties": {
                        "login": {"type": "integer"}, "currency": {"type": "string"}, "leverage": {"type": "integer"},
                        "balance": {"type": "number"}, "equity": {"type": "number"}, "margin": {"type": "number"},
                        "margin_free": {"type": "number"}, "margin_level": {"type": "number"} } },
                    "Position": { "type": "object", "properties": {
                        "ticket": {"type": "integer"}, "symbol": {"type": "string"}, "type": r("Side"),
                        "volume": {"type": "number"}, "price_open": {"type": "number"}, "sl": {"type": "number"},
                        "tp": {"type": "number"}, "price_current": {"type": "number"}, "profit": {"type": "number"},
                        "swap": {"type": "number"}, "time": {"type": "integer"}, "magic": {"type": "integer"},
                        "comment": {"type": "string"} } },
                    "PendingOrder": { "type": "object", "additionalProperties": true }
                }),
            )
        }
        Role::Strategy => {
            let id = path_param("id", json!({"type": "string", "minLength": 1}));
            (
                json!({
                    "/strategies": {
                        "get": {
                            "operationId": "list_strategies", "summary": "Every strategy",
                            "responses": { "200": ok(json!({"type": "array", "items": r("Strategy")})) }
                        },
                        "post": {
                            "operationId": "create_strategy", "summary": "Create a strategy (stopped)",
                            "requestBody": body(r("NewStrategy")),
                            "responses": { "201": ok(r("Strategy")), "400": error("Invalid strategy") }
                        }
                    },
                    "/strategies/{id}": {
                        "get": {
                            "operationId": "get_strategy", "summary": "One strategy", "parameters": [id.clone()],
                            "responses": { "200": ok(r("Strategy")), "404": error("No such strategy") }
                        },
                        "put": {
                            "operationId": "update_strategy", "summary": "Change name, symbol, timeframe or parameters",
                            "parameters": [id.clone()], "requestBody": body(r("StrategyPatch")),
                            "responses": { "200": ok(r("Strategy")), "400": error("Invalid change"), "404": error("No such strategy") }
                        },
                        "delete": {
                            "operationId": "delete_strategy", "summary": "Delete a strategy", "parameters": [id.clone()],
                            "responses": { "200": ok(json!({"type": "object", "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}})), "404": error("No such strategy") }
                        }
                    },
                    "/strategies/{id}/start": { "post": {
                        "operationId": "start_strategy", "summary": "Start emitting signals", "parameters": [id.clone()],
                        "responses": { "200": ok(r("Strategy")), "404": error("No such strategy"), "409": error("Already running") }
                    }},
                    "/strategies/{id}/stop": { "post": {
                        "operationId": "stop_strategy", "summary": "Stop emitting signals", "parameters": [id],
                        "responses": { "200": ok(r("Strategy")), "404": error("No such strategy"), "409": error("Already stopped") }
                    }},
                    "/signals": { "get": {
                        "operationId": "signals", "summary": "Recent signals, newest first",
                        "parameters": [
                            query("limit", false, limit(50, 1000), "How many"),
                            query("strategy_id", false, json!({"type": "string"}), "Only this strategy's")
                        ],
                        "responses": { "200": ok(json!({"type": "array", "items": r("Signal")})), "400": error("Invalid query") }
                    }}
                }),
                json!({
                    "NewStrategy": {
                        "type": "object", "required": ["name", "symbol", "timeframe"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 64},
                            "symbol": r("Symbol"), "timeframe": r("Timeframe"),
                            "parameters": {"type": ["object", "null"]}
                        }
                    },
                    "StrategyPatch": {
                        "type": "object",
                        "properties": {
                            "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
                            "symbol": {"anyOf": [r("Symbol"), {"type": "null"}]},
                            "timeframe": {"anyOf": [r("Timeframe"), {"type": "null"}]},
                            "parameters": {"type": ["object", "null"]}
                        }
                    },
                    "Strategy": { "type": "object", "properties": {
                        "id": {"type": "string"}, "name": {"type": "string"}, "symbol": {"type": "string"},
                        "timeframe": r("Timeframe"), "parameters": {"type": "object"},
                        "status": {"type": "string", "enum": ["running", "stopped"]},
                        "created_at": {"type": "string"}, "updated_at": {"type": "string"} } },
                    "Signal": { "type": "object", "properties": {
                        "strategy_id": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": r("Timeframe"),
                        "side": {"type": "string", "enum": ["buy", "sell"]}, "price": {"type": "number"},
                        "strength": {"type": "number"}, "time": {"type": "integer"} } }
                }),
            )
        }
        Role::Pattern => (
            json!({
                "/patterns": { "get": {
                    "operationId": "patterns", "summary": "Detected patterns, newest first",
                    "parameters": [
                        query("symbol", false, r("Symbol"), "Only this symbol (default: every watched one)"),
                        query("timeframe", false, r("Timeframe"), "Only this timeframe (default: every watched one)"),
                        query("limit", false, limit(50, 1000), "How many")
                    ],
                    "responses": { "200": ok(json!({"type": "array", "items": r("Pattern")})), "400": error("Invalid query") }
                }},
                "/patterns/latest": { "get": {
                    "operationId": "latest_patterns", "summary": "The most recent patterns",
                    "parameters": [query("limit", false, limit(20, 1000), "How many")],
                    "responses": { "200": ok(json!({"type": "array", "items": r("Pattern")})), "400": error("Invalid query") }
                }}
            }),
            json!({
                "Pattern": { "type": "object", "properties": {
                    "id": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": r("Timeframe"),
                    "pattern": {"type": "string"}, "direction": {"type": "string", "enum": ["bullish", "bearish", "neutral"]},
                    "confidence": {"type": "number"}, "detected_at": {"type": "string"},
                    "time": {"type": "integer"}, "price": {"type": "number"} } }
            }),
        ),
    }
}

/// The whole document of a role: its own paths plus the common `/health`, `/settings`,
/// `/events` and `/openapi.json`.
pub fn document(role: Role) -> Value {
    let (mut paths, mut schemas) = role_paths(role);
    let common = json!({
        "/health": { "get": {
            "operationId": "health", "summary": "Liveness",
            "responses": { "200": ok(json!({"type": "object", "required": ["status", "service", "instance"], "properties": {
                "status": {"const": "ok"}, "service": {"type": "string"}, "instance": {"type": "string"} }})) }
        }},
        "/settings": { "post": {
            "operationId": "settings", "summary": "Settings pushed by the orchestrator",
            "requestBody": body(json!({"type": "object", "required": ["changed", "all"], "properties": {
                "changed": {"type": "object"}, "all": {"type": "object"} }})),
            "responses": { "200": ok(json!({"type": "object", "properties": {"applied": {"type": "boolean"}}})), "400": error("Invalid settings") }
        }},
        "/events": { "get": {
            "operationId": "events", "summary": "WebSocket of this service's events",
            "responses": { "101": { "description": "Switching to the WebSocket protocol" } }
        }},
        "/openapi.json": { "get": {
            "operationId": "openapi", "summary": "This document",
            "responses": { "200": ok(json!({"type": "object"})) }
        }}
    });
    if let (Some(p), Value::Object(c)) = (paths.as_object_mut(), common) {
        p.extend(c);
    }
    let timeframes: Vec<&str> = TIMEFRAMES.iter().map(|t| t.as_str()).collect();
    if let Some(s) = schemas.as_object_mut() {
        s.insert("Symbol".into(), json!({"type": "string", "pattern": SYMBOL_PATTERN}));
        s.insert("Timeframe".into(), json!({"type": "string", "enum": timeframes}));
        s.insert(
            "Error".into(),
            json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Simulated {} service", role.as_str()),
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}
