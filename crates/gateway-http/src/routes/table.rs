//! [`ROUTES`]: every route of the gateway, each written once — the router, the access rules and
//! the OpenAPI document are all derived from this table.

use gateway_core::Access;

use super::{Concrete, Methods, OnEdge, Route, RouteAccess};
use crate::openapi::{Answer, Doc, In, Param};

/// The forwarding route of a resource's root (`/api/orders`).
pub const FORWARD_ROOT: &str = "/api/{resource}";
/// The forwarding route of everything below a resource (`/api/ticks/latest`).
pub const FORWARD_TAIL: &str = "/api/{resource}/{tail:.*}";

const PUBLIC: RouteAccess = RouteAccess::Fixed(Access::Public);
const READ: RouteAccess = RouteAccess::Fixed(Access::Read);
const WRITE: RouteAccess = RouteAccess::Fixed(Access::Write);
const INGEST: RouteAccess = RouteAccess::Fixed(Access::Ingest);

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

/// The documentation of a forwarding route (`{method}` in the summary is each documented method).
const fn forwarded(params: &'static [Param]) -> Doc {
    Doc {
        tag: "forwarding",
        summary: "{method} forwarded to the owning service",
        description: FORWARD_TEXT,
        params,
        body: None,
        status: 200,
        answer: Answer::AnyData,
        errors: FORWARD_ERRORS,
    }
}

/// Documentation without parameters, body or extra errors, answering 200.
const fn plain(tag: &'static str, summary: &'static str, description: &'static str, answer: Answer) -> Doc {
    Doc { tag, summary, description, params: &[], body: None, status: 200, answer, errors: &[] }
}

/// Every route of the gateway, in the order the router tries them: the forwarding catch-alls
/// last. A request no route takes is 404, and needs [`super::by_method`] access.
pub const ROUTES: &[Route] = &[
    Route {
        methods: Methods::Get,
        pattern: "/api/health",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: plain(
            "health",
            "Overall health from the registry",
            "`ok` when every service is online, else `degraded`. Never calls a service.",
            Answer::Data("Health"),
        ),
        concrete: &[],
        handler: |r| r.to(super::health::health),
    },
    Route {
        methods: Methods::Post,
        pattern: "/api/config/reload",
        access: WRITE,
        on_edge: OnEdge::Local,
        doc: Doc {
            errors: &[400],
            ..plain(
                "services",
                "Apply a changed configuration file",
                "Re-reads the file and applies it as a plan: services added (started if autostart), removed \
                 (stopped), restarted only when command, cwd, env, host or port changed, updated in place \
                 otherwise; every other service keeps running with the same pid. An invalid file changes \
                 nothing (400 with `config check`'s message).",
                Answer::Data("ReloadPlan"),
            )
        },
        concrete: &[],
        handler: |r| r.to(super::config::reload),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/services",
        access: READ,
        on_edge: OnEdge::Primary,
        doc: plain(
            "services",
            "Every service with its live status",
            "In configuration order.",
            Answer::List("ServiceEntry"),
        ),
        concrete: &[],
        handler: |r| r.to(super::services::list),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/services/{name}",
        access: READ,
        on_edge: OnEdge::Primary,
        doc: Doc {
            params: &[NAME],
            errors: &[404],
            ..plain("services", "One service with its live status", "", Answer::Data("ServiceEntry"))
        },
        concrete: &[],
        handler: |r| r.to(super::services::one),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/services/{name}/logs",
        access: READ,
        on_edge: OnEdge::Primary,
        doc: Doc {
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
            errors: &[400, 404],
            ..plain(
                "services",
                "The last captured output lines of a service",
                "stdout and stderr, oldest first.",
                Answer::Data("LogLines"),
            )
        },
        concrete: &[],
        handler: |r| r.to(super::services::logs),
    },
    Route {
        methods: Methods::Post,
        pattern: "/api/services/{name}/{action}",
        access: WRITE,
        on_edge: OnEdge::Primary,
        doc: Doc {
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
            errors: &[404, 409],
            ..plain(
                "services",
                "Start, stop or restart a service",
                "Answers the new status once the action is done. 409 when it is already in that state or is \
                 external.",
                Answer::Data("ServiceEntry"),
            )
        },
        concrete: &[],
        handler: |r| r.to(super::services::action),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/settings",
        access: READ,
        on_edge: OnEdge::Local,
        doc: plain("settings", "Every setting", "An object keyed by setting key.", Answer::Data("SettingsMap")),
        concrete: &[],
        handler: |r| r.to(super::settings::list),
    },
    Route {
        methods: Methods::Put,
        pattern: "/api/settings",
        access: WRITE,
        on_edge: OnEdge::Primary,
        doc: Doc {
            body: Some("SettingsBatch"),
            errors: &[400, 413],
            ..plain(
                "settings",
                "Change several settings at once",
                "One transaction: all or nothing. Pushed to the services that depend on the changed keys.",
                Answer::Data("SettingsMap"),
            )
        },
        concrete: &[],
        handler: |r| r.to(super::settings::put_batch),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/settings/{key}",
        access: READ,
        on_edge: OnEdge::Local,
        doc: Doc {
            params: &[KEY],
            errors: &[404],
            ..plain("settings", "One setting", "Also answers `ETag: \"<version>\"`.", Answer::Data("SettingEntry"))
        },
        concrete: &[],
        handler: |r| r.to(super::settings::get),
    },
    Route {
        methods: Methods::Put,
        pattern: "/api/settings/{key}",
        access: WRITE,
        on_edge: OnEdge::Primary,
        doc: Doc {
            params: &[KEY, IF_MATCH],
            body: Some("SettingPut"),
            errors: &[400, 404, 409, 413],
            ..plain(
                "settings",
                "Change one setting",
                "Validated against the catalogue; pushed to the services that depend on it.",
                Answer::Data("SettingEntry"),
            )
        },
        concrete: &[],
        handler: |r| r.to(super::settings::put),
    },
    Route {
        methods: Methods::Delete,
        pattern: "/api/settings/{key}",
        access: WRITE,
        on_edge: OnEdge::Primary,
        doc: Doc {
            params: &[KEY, IF_MATCH],
            errors: &[404, 409],
            ..plain("settings", "Reset a setting to its default", "", Answer::Data("SettingEntry"))
        },
        concrete: &[],
        handler: |r| r.to(super::settings::reset),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/dashboard",
        access: READ,
        on_edge: OnEdge::Direct,
        doc: Doc {
            errors: &[503],
            ..plain(
                "dashboard",
                "Account, positions, strategies, patterns and services in one answer",
                "Parts are fetched in parallel within 2 s. A failed part is `null` (never omitted) and \
                 `meta.sources` says why; `X-Gateway-Complete: false` then. 503 when every downstream part \
                 failed.",
                Answer::Data("Dashboard"),
            )
        },
        concrete: &[],
        handler: |r| r.to(crate::outbound::aggregate::dashboard),
    },
    Route {
        methods: Methods::Get,
        pattern: "/ws",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: Doc {
            status: 101,
            errors: &[400],
            ..plain(
                "realtime",
                "WebSocket of events",
                "Authenticate within 5 s with `{\"type\": \"auth\", \"token\": …}` (or a ticket), then subscribe \
                 to topics. See docs/PROTOCOL.md.",
                Answer::Upgrade,
            )
        },
        concrete: &[],
        handler: |r| r.to(crate::realtime::websocket),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/events/stream",
        access: READ,
        on_edge: OnEdge::Local,
        doc: Doc {
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
            errors: &[400],
            ..plain(
                "realtime",
                "Server-Sent Events",
                "Events of the given topics (`id:` is `topic@seq`); `Last-Event-ID` replays missed ones; a \
                 comment heartbeat every 15 s. Browsers may pass `?ticket=` instead of a header.",
                Answer::Raw("text/event-stream"),
            )
        },
        concrete: &[],
        handler: |r| r.to(crate::realtime::stream),
    },
    Route {
        methods: Methods::Post,
        pattern: "/api/events",
        access: INGEST,
        on_edge: OnEdge::Local,
        doc: Doc {
            body: Some("EventBatch"),
            errors: &[400, 413],
            ..plain(
                "realtime",
                "Publish a batch of events (service role)",
                "All or nothing. `topic` defaults to the type, `timestamp` to now.",
                Answer::Data("Accepted"),
            )
        },
        concrete: &[],
        handler: |r| r.to(crate::realtime::ingest),
    },
    Route {
        methods: Methods::Post,
        pattern: "/api/auth/ticket",
        access: READ,
        on_edge: OnEdge::Local,
        doc: plain(
            "realtime",
            "A one-time ticket for SSE or WebSocket in browsers",
            "Valid for 30 s, one use, with the caller's role.",
            Answer::Data("Ticket"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::realtime::ticket),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/hub/clients",
        access: READ,
        on_edge: OnEdge::Local,
        doc: plain(
            "realtime",
            "Connected real-time clients",
            "With their topics, queue depth and drops.",
            Answer::List("HubClient"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::realtime::clients),
    },
    Route {
        methods: Methods::Post,
        pattern: "/api/hub/clients/{id}/send",
        access: WRITE,
        on_edge: OnEdge::Local,
        doc: Doc {
            params: &[Param {
                name: "id",
                location: In::Path,
                required: true,
                ty: "string",
                description: "Client id.",
            }],
            body: Some("AnyJson"),
            errors: &[400, 404],
            ..plain("realtime", "Send a message to one client", "The body is any JSON value.", Answer::Data("Sent"))
        },
        concrete: &[],
        handler: |r| r.to(crate::realtime::send),
    },
    Route {
        methods: Methods::GetOrHead,
        pattern: "/",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: plain(
            "page",
            "The built-in dashboard page",
            "One self-contained HTML page (services, logs, live ticks, settings). Takes the token from the URL \
             fragment `#token=…`.",
            Answer::Raw("text/html"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::page::index),
    },
    Route {
        methods: Methods::GetOrHead,
        pattern: "/api/docs",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: plain(
            "health",
            "Interactive API page",
            "A page over /api/openapi.json: every operation, its parameters and body, and a form that sends it \
             with your token.",
            Answer::Raw("text/html"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::page::docs),
    },
    Route {
        methods: Methods::GetOrHead,
        pattern: "/assets/{file}",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: Doc {
            params: &[Param {
                name: "file",
                location: In::Path,
                required: true,
                ty: "string",
                description: "File name.",
            }],
            errors: &[404],
            ..plain(
                "page",
                "A static asset of the dashboard page",
                "Embedded in the binary; revalidated with `ETag`.",
                Answer::Raw("application/octet-stream"),
            )
        },
        concrete: &[],
        handler: |r| r.to(crate::page::asset),
    },
    Route {
        methods: Methods::Get,
        pattern: "/metrics",
        access: READ,
        on_edge: OnEdge::Local,
        doc: plain(
            "health",
            "Prometheus metrics",
            "Text format 0.0.4: requests and latency by route and status, upstream latency and errors, service \
             status and restarts, hub clients and drops.",
            Answer::Raw("text/plain"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::metrics::metrics),
    },
    Route {
        methods: Methods::Get,
        pattern: "/api/openapi.json",
        access: PUBLIC,
        on_edge: OnEdge::Local,
        doc: plain(
            "health",
            "This document",
            "OpenAPI 3.1 description of every route: the gateway's own, and every online service's operations \
             from its own contract under /api/…, tagged by service.",
            Answer::Raw("application/json"),
        ),
        concrete: &[],
        handler: |r| r.to(crate::openapi::openapi_json),
    },
    // Last: the catch-all forwarding routes (SPEC §4); the usual shape first, so that a
    // forwarded request runs one regular expression in the router.
    Route {
        methods: Methods::Any,
        pattern: FORWARD_TAIL,
        access: RouteAccess::ByMethod,
        on_edge: OnEdge::Direct,
        doc: forwarded(&[RESOURCE, TAIL, SYMBOL, TIMEFRAME, COUNT, FROM, TO]),
        concrete: &[],
        handler: |r| r.to(crate::outbound::forward::forward),
    },
    Route {
        methods: Methods::Any,
        pattern: FORWARD_ROOT,
        access: RouteAccess::ByMethod,
        on_edge: OnEdge::Direct,
        doc: forwarded(&[RESOURCE, SYMBOL, TIMEFRAME, COUNT, FROM, TO]),
        concrete: &[
            Concrete {
                method: "POST",
                path: "/api/orders",
                doc: Doc {
                    tag: "forwarding",
                    summary: "Send an order (forwarded to the MT5 service)",
                    description: "The whole body is validated first: `symbol`, `side` buy|sell, `type` \
                                  market|limit|stop, `volume` > 0 and ≤ setting `risk.max_volume`, `price` required \
                                  unless market, `sl`/`tp` on the right side of the price. Unknown fields are 400.",
                    params: &[],
                    body: Some("OrderRequest"),
                    status: 200,
                    answer: Answer::AnyData,
                    errors: FORWARD_ERRORS,
                },
            },
            Concrete {
                method: "POST",
                path: "/api/strategies",
                doc: Doc {
                    tag: "forwarding",
                    summary: "Create a strategy (forwarded to the strategy service)",
                    description: "The whole body is validated first: `name` 1–64 characters, `symbol`, \
                                  `timeframe`, `parameters` an object. Unknown fields are 400.",
                    params: &[],
                    body: Some("StrategyRequest"),
                    status: 201,
                    answer: Answer::AnyData,
                    errors: FORWARD_ERRORS,
                },
            },
        ],
        handler: |r| r.to(crate::outbound::forward::forward),
    },
];
