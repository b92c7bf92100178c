//! `GET /api/openapi.json`: the OpenAPI document of every route (built with `utoipa`'s model
//! from one route table, [`OPERATIONS`]), each answer described with the envelope. The access
//! each operation needs comes from the same table the auth middleware enforces.

use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use gateway_core::Access;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, Tag,
};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy)]
pub enum In {
    /// A `{name}` segment.
    Path,
    /// `?name=`.
    Query,
    /// A request header.
    Header,
}

/// One documented parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// Location.
    pub location: In,
    /// Whether it must be given.
    pub required: bool,
    /// `string`, `integer` or `number`.
    pub ty: &'static str,
    /// What it means and which rules apply.
    pub description: &'static str,
}

/// What a successful answer carries.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// The envelope with `data` of this component schema.
    Data(&'static str),
    /// The envelope with `data` an array of this component schema.
    List(&'static str),
    /// The envelope with any `data` (forwarded answers).
    AnyData,
    /// A non-envelope body of this content type.
    Raw(&'static str),
    /// A protocol switch (WebSocket).
    Upgrade,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// HTTP method.
    pub method: &'static str,
    /// The router pattern it is served by (and whose access it needs).
    pub pattern: &'static str,
    /// The documented path, when it differs from the pattern (a concrete forwarded route).
    pub path: Option<&'static str>,
    /// Grouping.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Details.
    pub description: &'static str,
    /// Parameters.
    pub params: &'static [Param],
    /// The request body's component schema.
    pub body: Option<&'static str>,
    /// The success status.
    pub status: u16,
    /// What the success carries.
    pub answer: Answer,
    /// Error statuses besides those every operation can have.
    pub errors: &'static [u16],
}

impl Operation {
    /// The documented path: the router pattern without regex constraints, or the concrete path.
    pub fn doc_path(&self) -> String {
        self.path.map_or_else(|| doc_path(self.pattern), str::to_owned)
    }
}

/// A router pattern as an OpenAPI path: `{tail:.*}` → `{tail}`.
pub fn doc_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    // Brace depth inside a variable, and whether its `:regex` part is being skipped.
    let mut depth = 0usize;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                depth += 1;
                if !skipping {
                    out.push(c);
                }
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    skipping = false;
                    out.push(c);
                }
            }
            ':' if depth == 1 => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

const NAME: Param = Param {
    name: "name",
    location: In::Path,
    required: true,
    ty: "string",
    description: "Service name (`[a-z][a-z0-9_-]{0,31}`).",
};
const KEY: Param = Param {
    name: "key",
    location: In::Path,
    required: true,
    ty: "string",
    description: "Setting key (`symbols`, `timeframes`, `default_timeframe`, `risk.max_volume`, `ui.*`).",
};
const IF_MATCH: Param = Param {
    name: "If-Match",
    location: In::Header,
    required: false,
    ty: "string",
    description: "Expected version (bare or quoted); a mismatch is 409 `conflict`.",
};
const RESOURCE: Param = Param {
    name: "resource",
    location: In::Path,
    required: true,
    ty: "string",
    description: "A resource owned by a service (`ticks`, `ohlc`, `symbols`, `account`, `positions`, `orders`, \
                  `strategies`, `signals`, `patterns` by default); unknown resources are 404.",
};
const TAIL: Param = Param {
    name: "tail",
    location: In::Path,
    required: true,
    ty: "string",
    description: "The rest of the path, passed on unchanged. `..`, `.` segments, encoded dots or slashes, \
                  backslashes and control characters are 400.",
};
const SYMBOL: Param = Param {
    name: "symbol",
    location: In::Query,
    required: false,
    ty: "string",
    description: "`^[A-Za-z0-9][A-Za-z0-9._#@-]{0,31}$`; on the data service's resources it must also be listed \
                  in the `symbols` setting.",
};
const TIMEFRAME: Param = Param {
    name: "timeframe",
    location: In::Query,
    required: false,
    ty: "string",
    description: "One of M1 M2 M3 M4 M5 M6 M10 M12 M15 M20 M30 H1 H2 H3 H4 H6 H8 H12 D1 W1 MN1; never defaulted \
                  by the gateway.",
};
const COUNT: Param =
    Param { name: "count", location: In::Query, required: false, ty: "integer", description: "1 to 100000." };
const FROM: Param = Param {
    name: "from",
    location: In::Query,
    required: false,
    ty: "string",
    description: "RFC 3339 or unix milliseconds; not after `to`.",
};
const TO: Param = Param {
    name: "to",
    location: In::Query,
    required: false,
    ty: "string",
    description: "RFC 3339 or unix milliseconds.",
};
const FORWARD_PARAMS: &[Param] = &[RESOURCE, TAIL, SYMBOL, TIMEFRAME, COUNT, FROM, TO];
const FORWARD_ROOT_PARAMS: &[Param] = &[RESOURCE, SYMBOL, TIMEFRAME, COUNT, FROM, TO];
/// The statuses a forwarded request can end with besides success.
const FORWARD_ERRORS: &[u16] = &[400, 404, 409, 413, 502, 503, 504];

const FORWARD_TEXT: &str = "Forwarded to the service that owns `resource` (`/api/{resource}/{tail}` → \
    `http://host:port/{resource}/{tail}`) with the query, body, `Content-Type`, `Accept`, `Accept-Language` and \
    `X-Request-Id`; `Authorization`, cookies and hop-by-hop headers are not passed on. `symbol`, `timeframe`, \
    `count`, `from`/`to` are validated wherever they appear (query or top-level JSON body) and invalid input never \
    reaches the service. A service known to be down answers 503 at once; no answer within its \
    `request_timeout_ms` is 504; a 5xx or a body that is not JSON is 502; a downstream envelope passes through \
    with the gateway's `request_id`, other JSON becomes `data`, and 4xx keep their status. Viewer for GET, \
    operator for other methods.";

macro_rules! forwarded {
    ($method:literal, $pattern:literal, $params:expr) => {
        Operation {
            method: $method,
            pattern: $pattern,
            path: None,
            tag: "forwarding",
            summary: concat!($method, " forwarded to the owning service"),
            description: FORWARD_TEXT,
            params: $params,
            body: None,
            status: 200,
            answer: Answer::AnyData,
            errors: FORWARD_ERRORS,
        }
    };
}

/// Every operation of the gateway. A route without an entry here fails the coverage test.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "GET",
        pattern: "/",
        path: None,
        tag: "page",
        summary: "The built-in dashboard page",
        description: "One self-contained HTML page (services, logs, live ticks, settings). Takes the token from \
                      the URL fragment `#token=…`.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Raw("text/html"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/assets/{file}",
        path: None,
        tag: "page",
        summary: "A static asset of the dashboard page",
        description: "Embedded in the binary; revalidated with `ETag`.",
        params: &[Param { name: "file", location: In::Path, required: true, ty: "string", description: "File name." }],
        body: None,
        status: 200,
        answer: Answer::Raw("application/octet-stream"),
        errors: &[404],
    },
    Operation {
        method: "GET",
        pattern: "/api/health",
        path: None,
        tag: "health",
        summary: "Overall health from the registry",
        description: "`ok` when every service is online, else `degraded`. Never calls a service.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Data("Health"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/api/openapi.json",
        path: None,
        tag: "health",
        summary: "This document",
        description: "OpenAPI 3.1 description of every route: the gateway's own, and every online service's \
                      operations from its own contract under /api/…, tagged by service.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Raw("application/json"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/api/docs",
        path: None,
        tag: "health",
        summary: "Interactive API page",
        description: "A page over /api/openapi.json: every operation, its parameters and body, and a form \
                      that sends it with your token.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Raw("text/html"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/api/services",
        path: None,
        tag: "services",
        summary: "Every service with its live status",
        description: "In configuration order.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::List("ServiceEntry"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/api/services/{name}",
        path: None,
        tag: "services",
        summary: "One service with its live status",
        description: "",
        params: &[NAME],
        body: None,
        status: 200,
        answer: Answer::Data("ServiceEntry"),
        errors: &[404],
    },
    Operation {
        method: "GET",
        pattern: "/api/services/{name}/logs",
        path: None,
        tag: "services",
        summary: "The last captured output lines of a service",
        description: "stdout and stderr, oldest first.",
        params: &[
            NAME,
            Param {
                name: "tail",
                location: In::Query,
                required: false,
                ty: "integer",
                description: "How many lines, 1 to 10000 (default 100).",
            },
        ],
        body: None,
        status: 200,
        answer: Answer::Data("LogLines"),
        errors: &[400, 404],
    },
    Operation {
        method: "POST",
        pattern: "/api/services/{name}/{action}",
        path: None,
        tag: "services",
        summary: "Start, stop or restart a service",
        description: "Answers the new status once the action is done. 409 when it is already in that state or \
                      is external.",
        params: &[
            NAME,
            Param {
                name: "action",
                location: In::Path,
                required: true,
                ty: "string",
                description: "`start`, `stop` or `restart`.",
            },
        ],
        body: None,
        status: 200,
        answer: Answer::Data("ServiceEntry"),
        errors: &[404, 409],
    },
    Operation {
        method: "GET",
        pattern: "/api/settings",
        path: None,
        tag: "settings",
        summary: "Every setting",
        description: "An object keyed by setting key.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Data("SettingsMap"),
        errors: &[],
    },
    Operation {
        method: "PUT",
        pattern: "/api/settings",
        path: None,
        tag: "settings",
        summary: "Change several settings at once",
        description: "One transaction: all or nothing. Pushed to the services that depend on the changed keys.",
        params: &[],
        body: Some("SettingsBatch"),
        status: 200,
        answer: Answer::Data("SettingsMap"),
        errors: &[400, 413],
    },
    Operation {
        method: "GET",
        pattern: "/api/settings/{key}",
        path: None,
        tag: "settings",
        summary: "One setting",
        description: "Also answers `ETag: \"<version>\"`.",
        params: &[KEY],
        body: None,
        status: 200,
        answer: Answer::Data("SettingEntry"),
        errors: &[404],
    },
    Operation {
        method: "PUT",
        pattern: "/api/settings/{key}",
        path: None,
        tag: "settings",
        summary: "Change one setting",
        description: "Validated against the catalogue; pushed to the services that depend on it.",
        params: &[KEY, IF_MATCH],
        body: Some("SettingPut"),
        status: 200,
        answer: Answer::Data("SettingEntry"),
        errors: &[400, 404, 409, 413],
    },
    Operation {
        method: "DELETE",
        pattern: "/api/settings/{key}",
        path: None,
        tag: "settings",
        summary: "Reset a setting to its default",
        description: "",
        params: &[KEY, IF_MATCH],
        body: None,
        status: 200,
        answer: Answer::Data("SettingEntry"),
        errors: &[404, 409],
    },
    Operation {
        method: "GET",
        pattern: "/api/dashboard",
        path: None,
        tag: "dashboard",
        summary: "Account, positions, strategies, patterns and services in one answer",
        description: "Parts are fetched in parallel within 2 s. A failed part is `null` (never omitted) and \
                      `meta.sources` says why; `X-Gateway-Complete: false` then. 503 when every downstream part \
                      failed.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Data("Dashboard"),
        errors: &[503],
    },
    Operation {
        method: "POST",
        pattern: "/api/events",
        path: None,
        tag: "realtime",
        summary: "Publish a batch of events (service role)",
        description: "All or nothing. `topic` defaults to the type, `timestamp` to now.",
        params: &[],
        body: Some("EventBatch"),
        status: 200,
        answer: Answer::Data("Accepted"),
        errors: &[400, 413],
    },
    Operation {
        method: "GET",
        pattern: "/api/events/stream",
        path: None,
        tag: "realtime",
        summary: "Server-Sent Events",
        description: "Events of the given topics (`id:` is `topic@seq`); `Last-Event-ID` replays missed ones; a \
                      comment heartbeat every 15 s. Browsers may pass `?ticket=` instead of a header.",
        params: &[
            Param {
                name: "topics",
                location: In::Query,
                required: true,
                ty: "string",
                description: "Comma-separated topics or patterns (`tick:EURUSD`, `position`, `tick:EUR*`).",
            },
            Param {
                name: "ticket",
                location: In::Query,
                required: false,
                ty: "string",
                description: "A one-time ticket from `POST /api/auth/ticket`.",
            },
            Param {
                name: "Last-Event-ID",
                location: In::Header,
                required: false,
                ty: "string",
                description: "`topic@seq` of the last event seen.",
            },
        ],
        body: None,
        status: 200,
        answer: Answer::Raw("text/event-stream"),
        errors: &[400],
    },
    Operation {
        method: "POST",
        pattern: "/api/auth/ticket",
        path: None,
        tag: "realtime",
        summary: "A one-time ticket for SSE or WebSocket in browsers",
        description: "Valid for 30 s, one use, with the caller's role.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Data("Ticket"),
        errors: &[],
    },
    Operation {
        method: "GET",
        pattern: "/api/hub/clients",
        path: None,
        tag: "realtime",
        summary: "Connected real-time clients",
        description: "With their topics, queue depth and drops.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::List("HubClient"),
        errors: &[],
    },
    Operation {
        method: "POST",
        pattern: "/api/config/reload",
        path: None,
        tag: "services",
        summary: "Apply a changed configuration file",
        description: "Re-reads the file and applies it as a plan: services added (started if autostart), removed \
                      (stopped), restarted only when command, cwd, env, host or port changed, updated in place \
                      otherwise; every other service keeps running with the same pid. An invalid file changes \
                      nothing (400 with `config check`'s message).",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Data("ReloadPlan"),
        errors: &[400],
    },
    Operation {
        method: "POST",
        pattern: "/api/hub/clients/{id}/send",
        path: None,
        tag: "realtime",
        summary: "Send a message to one client",
        description: "The body is any JSON value.",
        params: &[Param { name: "id", location: In::Path, required: true, ty: "string", description: "Client id." }],
        body: Some("AnyJson"),
        status: 200,
        answer: Answer::Data("Sent"),
        errors: &[400, 404],
    },
    Operation {
        method: "GET",
        pattern: "/ws",
        path: None,
        tag: "realtime",
        summary: "WebSocket of events",
        description: "Authenticate within 5 s with `{\"type\": \"auth\", \"token\": …}` (or a ticket), then \
                      subscribe to topics. See docs/PROTOCOL.md.",
        params: &[],
        body: None,
        status: 101,
        answer: Answer::Upgrade,
        errors: &[400],
    },
    Operation {
        method: "GET",
        pattern: "/metrics",
        path: None,
        tag: "health",
        summary: "Prometheus metrics",
        description: "Text format 0.0.4: requests and latency by route and status, upstream latency and errors, \
                      service status and restarts, hub clients and drops.",
        params: &[],
        body: None,
        status: 200,
        answer: Answer::Raw("text/plain"),
        errors: &[],
    },
    Operation {
        method: "POST",
        pattern: "/api/{resource}",
        path: Some("/api/orders"),
        tag: "forwarding",
        summary: "Send an order (forwarded to the MT5 service)",
        description: "The whole body is validated first: `symbol`, `side` buy|sell, `type` market|limit|stop, \
                      `volume` > 0 and ≤ setting `risk.max_volume`, `price` required unless market, `sl`/`tp` \
                      on the right side of the price. Unknown fields are 400.",
        params: &[],
        body: Some("OrderRequest"),
        status: 200,
        answer: Answer::AnyData,
        errors: FORWARD_ERRORS,
    },
    Operation {
        method: "POST",
        pattern: "/api/{resource}",
        path: Some("/api/strategies"),
        tag: "forwarding",
        summary: "Create a strategy (forwarded to the strategy service)",
        description: "The whole body is validated first: `name` 1–64 characters, `symbol`, `timeframe`, \
                      `parameters` an object. Unknown fields are 400.",
        params: &[],
        body: Some("StrategyRequest"),
        status: 201,
        answer: Answer::AnyData,
        errors: FORWARD_ERRORS,
    },
    forwarded!("GET", "/api/{resource}", FORWARD_ROOT_PARAMS),
    forwarded!("POST", "/api/{resource}", FORWARD_ROOT_PARAMS),
    forwarded!("PUT", "/api/{resource}", FORWARD_ROOT_PARAMS),
    forwarded!("PATCH", "/api/{resource}", FORWARD_ROOT_PARAMS),
    forwarded!("DELETE", "/api/{resource}", FORWARD_ROOT_PARAMS),
    forwarded!("GET", "/api/{resource}/{tail:.*}", FORWARD_PARAMS),
    forwarded!("POST", "/api/{resource}/{tail:.*}", FORWARD_PARAMS),
    forwarded!("PUT", "/api/{resource}/{tail:.*}", FORWARD_PARAMS),
    forwarded!("PATCH", "/api/{resource}/{tail:.*}", FORWARD_PARAMS),
    forwarded!("DELETE", "/api/{resource}/{tail:.*}", FORWARD_PARAMS),
];

/// Who may call an operation.
pub fn role_of(op: &Operation) -> &'static str {
    let method = Method::from_bytes(op.method.as_bytes()).unwrap_or(Method::GET);
    match crate::auth::required_access(&method, Some(op.pattern)) {
        Access::Public => "public",
        Access::Read => "viewer",
        Access::Write => "operator",
        Access::Ingest => "service",
    }
}

// Schema helpers.

fn typed(ty: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(ty)
}
fn string() -> RefOr<Schema> {
    typed(Type::String).into()
}
fn integer() -> RefOr<Schema> {
    typed(Type::Integer).into()
}
fn number() -> RefOr<Schema> {
    typed(Type::Number).into()
}
fn boolean() -> RefOr<Schema> {
    typed(Type::Boolean).into()
}
fn any() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue).into()
}
fn nullable(ty: Type) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([ty, Type::Null])).into()
}
fn one_of(values: &[&str]) -> RefOr<Schema> {
    typed(Type::String).enum_values(Some(values.iter().copied())).into()
}
fn schema_ref(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}
fn array(items: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(items).into()
}
fn object(fields: &[(&str, RefOr<Schema>, bool)], description: &str) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new().schema_type(Type::Object).description(Some(description));
    for (name, schema, required) in fields {
        b = b.property(*name, schema.clone());
        if *required {
            b = b.required(*name);
        }
    }
    b.into()
}
fn map_of(values: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(values))
        .into()
}

fn components() -> ComponentsBuilder {
    let envelope = object(
        &[
            ("success", boolean(), true),
            ("data", any(), true),
            ("error", nullable(Type::String), true),
            (
                "code",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .enum_values(Some(gateway_core::ErrorCode::ALL.iter().map(|c| Some(c.as_str())).chain([None])))
                    .into(),
                true,
            ),
            ("request_id", string(), true),
        ],
        "Every /api answer: `data` on success (also for partial aggregates), `error` (the user-facing message, \
         Hungarian by default, English with `Accept-Language: en`) and `code` on failure. The HTTP status is real.",
    );
    let service_entry = object(
        &[
            ("name", string(), true),
            ("display_name", string(), true),
            ("status", one_of(&["stopped", "starting", "online", "offline", "error"]), true),
            ("sub_state", nullable(Type::String), true),
            ("kind", one_of(&["managed", "external", "adopted"]), true),
            ("host", string(), true),
            ("port", integer(), true),
            ("pid", nullable(Type::Integer), true),
            ("uptime_ms", nullable(Type::Integer), true),
            ("restarts", integer(), true),
            ("consecutive_failures", integer(), true),
            ("last_check", any(), true),
            ("last_exit", any(), true),
            ("next_restart_at", nullable(Type::String), true),
            ("last_error", nullable(Type::String), true),
        ],
        "A service and its live status.",
    );
    let health = object(
        &[
            ("status", one_of(&["ok", "degraded"]), true),
            (
                "services",
                array(object(
                    &[
                        ("name", string(), true),
                        ("status", string(), true),
                        ("sub_state", nullable(Type::String), true),
                    ],
                    "",
                )),
                true,
            ),
        ],
        "Overall health.",
    );
    let log_lines = object(
        &[(
            "lines",
            array(object(
                &[("at", string(), true), ("stream", one_of(&["stdout", "stderr"]), true), ("line", string(), true)],
                "",
            )),
            true,
        )],
        "Captured output.",
    );
    let setting = object(
        &[
            ("key", string(), true),
            ("value", any(), true),
            ("default", any(), true),
            ("version", integer(), true),
            ("updated_at", nullable(Type::String), true),
        ],
        "A setting with its default and version.",
    );
    let source = object(
        &[
            ("status", one_of(&["ok", "timeout", "unresponsive", "unavailable", "error"]), true),
            ("latency_ms", integer(), true),
            ("error", string(), false),
        ],
        "How one source of the dashboard did.",
    );
    let dashboard = object(
        &[
            ("account", nullable(Type::Object), true),
            ("positions", nullable(Type::Array), true),
            ("strategies", nullable(Type::Array), true),
            ("patterns", nullable(Type::Array), true),
            ("services", array(schema_ref("ServiceEntry")), true),
            (
                "meta",
                object(
                    &[
                        ("complete", boolean(), true),
                        ("sources", map_of(schema_ref("DashboardSource"), "By service."), true),
                    ],
                    "",
                ),
                true,
            ),
        ],
        "The aggregate; failed parts are null, never omitted.",
    );
    let order = object(
        &[
            ("symbol", string(), true),
            ("side", one_of(&["buy", "sell"]), true),
            ("type", one_of(&["market", "limit", "stop"]), true),
            ("volume", number(), true),
            ("price", number(), false),
            ("sl", number(), false),
            ("tp", number(), false),
            ("deviation", integer(), false),
            ("magic", integer(), false),
            ("comment", string(), false),
        ],
        "An order request (MetaTrader 5 shape).",
    );
    let strategy = object(
        &[
            ("name", string(), true),
            ("symbol", string(), true),
            ("timeframe", string(), true),
            ("parameters", typed(Type::Object).into(), true),
        ],
        "A new strategy.",
    );
    let event = object(
        &[
            ("type", one_of(&["tick", "strategy_signal", "position", "service_status", "system"]), true),
            ("topic", string(), false),
            ("data", any(), true),
            ("timestamp", string(), false),
        ],
        "An event to publish.",
    );
    ComponentsBuilder::new()
        .schema("Envelope", envelope)
        .schema("ServiceEntry", service_entry)
        .schema("Health", health)
        .schema("LogLines", log_lines)
        .schema("SettingEntry", setting)
        .schema("SettingsMap", map_of(schema_ref("SettingEntry"), "Settings by key."))
        .schema("SettingPut", object(&[("value", any(), true)], "The new value."))
        .schema("SettingsBatch", map_of(any(), "New values by key."))
        .schema("DashboardSource", source)
        .schema("Dashboard", dashboard)
        .schema("OrderRequest", order)
        .schema("StrategyRequest", strategy)
        .schema("EventBatch", array(event))
        .schema("Accepted", object(&[("accepted", integer(), true)], "How many events were published."))
        .schema(
            "Ticket",
            object(&[("ticket", string(), true), ("expires_in_ms", integer(), true)], "A one-time ticket."),
        )
        .schema("HubClient", typed(Type::Object).description(Some("A connected client.")))
        .schema("Sent", object(&[("sent", boolean(), true)], "Delivered to the client's queue."))
        .schema("AnyJson", any())
        .schema(
            "ReloadPlan",
            object(
                &[
                    ("added", array(string()), true),
                    ("removed", array(string()), true),
                    ("restarted", array(string()), true),
                    ("updated", array(string()), true),
                    ("unchanged", array(string()), true),
                    ("requires_restart", array(string()), true),
                ],
                "What a reload did: services by name, and the changed fields only a restart applies.",
            ),
        )
        .security_scheme("bearer", SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).build()))
}

fn envelope_with(data: RefOr<Schema>) -> RefOr<Schema> {
    AllOfBuilder::new()
        .item(schema_ref("Envelope"))
        .item(ObjectBuilder::new().schema_type(Type::Object).property("data", data))
        .into()
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "`validation_failed`: the message names the field and the reason",
        401 => "`unauthorized`: no or unknown token",
        403 => "`forbidden`: the token's role does not allow this",
        404 => "`not_found`",
        409 => "`conflict`",
        413 => "`payload_too_large`",
        500 => "`internal`, or `spawn_failed` when a service's program cannot be run",
        502 => "`upstream_error`: the service answered 5xx or something that is not JSON",
        503 => "`service_unavailable`: the service is down",
        504 => "`upstream_timeout`: the service did not answer in time",
        _ => "error",
    }
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn operation(op: &Operation) -> utoipa::openapi::path::Operation {
    let role = role_of(op);
    let description =
        if op.description.is_empty() { format!("Role: {role}.") } else { format!("Role: {role}. {}", op.description) };
    let mut b = OperationBuilder::new().tag(op.tag).summary(Some(op.summary)).description(Some(description));
    for p in op.params {
        let ty = match p.ty {
            "integer" => Type::Integer,
            "number" => Type::Number,
            _ => Type::String,
        };
        b = b.parameter(
            ParameterBuilder::new()
                .name(p.name)
                .parameter_in(match p.location {
                    In::Path => ParameterIn::Path,
                    In::Query => ParameterIn::Query,
                    In::Header => ParameterIn::Header,
                })
                .required(if p.required { Required::True } else { Required::False })
                .description(Some(p.description))
                .schema(Some(typed(ty))),
        );
    }
    if let Some(body) = op.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", Content::new(Some(schema_ref(body))))
                .build(),
        ));
    }
    let ok = match op.answer {
        Answer::Data(name) => ResponseBuilder::new()
            .description("Success")
            .content("application/json", Content::new(Some(envelope_with(schema_ref(name))))),
        Answer::List(name) => ResponseBuilder::new()
            .description("Success")
            .content("application/json", Content::new(Some(envelope_with(array(schema_ref(name)))))),
        Answer::AnyData => ResponseBuilder::new()
            .description("The service's answer in the envelope (status kept)")
            .content("application/json", Content::new(Some(schema_ref("Envelope")))),
        Answer::Raw(content_type) => {
            ResponseBuilder::new().description("Success").content(content_type, Content::new(Some(string())))
        }
        Answer::Upgrade => ResponseBuilder::new().description("Switching to the WebSocket protocol"),
    };
    b = b.response(op.status.to_string(), ok.build());
    let mut errors: Vec<u16> = op.errors.to_vec();
    if role != "public" {
        errors.extend([401, 403]);
    }
    errors.push(500);
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        b = b.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(error_description(status))
                .content("application/json", Content::new(Some(schema_ref("Envelope"))))
                .build(),
        );
    }
    if role != "public" {
        b = b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    b.build()
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut order: Vec<String> = Vec::new();
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for op in OPERATIONS {
        let path = op.doc_path();
        let built = operation(op);
        match items.iter_mut().find(|(p, _)| *p == path) {
            Some((_, item)) => item.merge_operations(PathItem::new(http_method(op.method), built)),
            None => {
                order.push(path.clone());
                items.push((path, PathItem::new(http_method(op.method), built)));
            }
        }
    }
    for (path, item) in items {
        paths = paths.path(path, item);
    }
    let tags = ["health", "services", "settings", "dashboard", "forwarding", "realtime", "page"].map(Tag::new);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Orchestrator API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The gateway of the MT5 trading platform: every /api answer is the envelope \
                     `{success, data, error, code, request_id}`; messages are Hungarian unless \
                     `Accept-Language: en`. Send `Authorization: Bearer <token>`. See docs/API.md.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components().build()))
        .tags(Some(tags))
        .build()
}

/// The document serialised once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document().to_json().unwrap_or_else(|e| {
            log::error!("cannot serialise the OpenAPI document: {e}");
            String::from("{}")
        })
    })
}

/// The gateway's own document as JSON, parsed once (the merge starts from a copy of it).
fn document_value() -> &'static serde_json::Value {
    static VALUE: OnceLock<serde_json::Value> = OnceLock::new();
    VALUE.get_or_init(|| serde_json::from_str(document_json()).unwrap_or_default())
}

/// Registers `GET /api/openapi.json` (before the forwarding catch-all; the page over it,
/// `GET /api/docs`, is served with the dashboard's assets in `page`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi_json));
}

/// The gateway's routes plus every online service's operations from its own contract.
async fn openapi_json(state: web::Data<crate::state::AppState>) -> HttpResponse {
    let merged = state.contracts.merged(document_value(), &state.registry);
    match serde_json::to_vec(&merged) {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body),
        Err(e) => {
            log::error!("cannot serialise the merged OpenAPI document: {e}");
            HttpResponse::Ok().content_type("application/json").body(document_json())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn doc_paths_drop_regex_constraints() {
        assert_eq!(doc_path("/api/{resource}/{tail:.*}"), "/api/{resource}/{tail}");
        assert_eq!(doc_path("/api/settings/{key}"), "/api/settings/{key}");
        assert_eq!(doc_path("/x/{a:[0-9]{2}}/y"), "/x/{a}/y");
    }

    #[test]
    fn every_access_table_entry_is_documented_with_its_role() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
        for (method, pattern, access) in crate::auth::access_table() {
            let op = &doc["paths"][doc_path(pattern)][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {pattern} is not in the OpenAPI document");
            let role = match access {
                Access::Public => "public",
                Access::Read => "viewer",
                Access::Write => "operator",
                Access::Ingest => "service",
            };
            let description = op["description"].as_str().unwrap();
            assert!(description.starts_with(&format!("Role: {role}.")), "{method} {pattern}: {description}");
            assert_eq!(op["security"].is_array(), *access != Access::Public, "{method} {pattern}");
        }
    }

    #[test]
    fn every_answer_is_described_with_the_envelope() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                count += 1;
                for (status, response) in op["responses"].as_object().unwrap() {
                    let json = &response["content"]["application/json"]["schema"];
                    let envelope = json.to_string().contains("#/components/schemas/Envelope");
                    let raw = path == "/api/openapi.json" || path == "/api/docs" || !path.starts_with("/api");
                    let sse = path == "/api/events/stream" && status == "200";
                    assert!(envelope || raw || sse, "{method} {path} {status} is not an envelope: {response}");
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(envelope, "{method} {path} {status}");
                    }
                }
            }
        }
        assert!(count >= OPERATIONS.len() - 2, "{count} operations");
        let envelope = &doc["components"]["schemas"]["Envelope"];
        let mut required: Vec<&str> =
            envelope["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort_unstable();
        assert_eq!(required, ["code", "data", "error", "request_id", "success"]);
    }
}
