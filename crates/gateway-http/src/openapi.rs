//! `GET /api/openapi.json`: the OpenAPI document of every route (built with `utoipa`'s model
//! from the route table, [`crate::routes::ROUTES`]), each answer described with the envelope.
//! The access each operation needs is the route's own, the one the auth middleware enforces.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::web;
use gateway_core::Access;
use gateway_core::validate::{OrderRequest, StrategyRequest};
use gateway_core::{Envelope, ErrorCode, EventType, ServiceKind, ServiceStatus, SubState};
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, Tag,
};

use crate::routes::{ROUTES, Route};

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

/// The documentation of one operation (a route's, for each of its methods).
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    /// Grouping.
    pub tag: &'static str,
    /// One line (`{method}` stands for the documented method).
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

/// One documented operation: a method and path of a route of [`ROUTES`], or a concrete path
/// one of them serves.
#[derive(Debug, Clone)]
pub struct Operation {
    /// HTTP method.
    pub method: &'static str,
    /// The route that serves it.
    pub route: &'static Route,
    /// The documented path.
    pub path: String,
    /// Who may call it.
    pub access: Access,
    /// Its documentation.
    pub doc: &'static Doc,
}

/// Every documented operation, derived from [`ROUTES`]: each route once per documented method,
/// then the concrete paths it serves.
pub fn operations() -> Vec<Operation> {
    let mut out = Vec::new();
    for route in ROUTES {
        for method in route.methods.documented() {
            let access = route.access.for_method(method);
            out.push(Operation { method, route, path: doc_path(route.pattern), access, doc: &route.doc });
        }
        for concrete in route.concrete {
            let access = route.access.for_method(concrete.method);
            let path = concrete.path.to_owned();
            out.push(Operation { method: concrete.method, route, path, access, doc: &concrete.doc });
        }
    }
    out
}

/// The role an access is documented as.
pub fn role_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Read => "viewer",
        Access::Write => "operator",
        Access::Ingest => "service",
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

/// A reference to the component schema of `T`.
fn ref_to<T: ToSchema>() -> RefOr<Schema> {
    Ref::from_schema_name(T::name()).into()
}

/// A reference to the component schema of `T`, or null.
fn nullable_ref<T: ToSchema>() -> RefOr<Schema> {
    OneOfBuilder::new().item(typed(Type::Null)).item(ref_to::<T>()).into()
}

/// Adds the component schema of `T` and those it refers to.
fn derived<T: ToSchema>(components: ComponentsBuilder) -> ComponentsBuilder {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    components.schema_from::<T>().schemas_from_iter(referenced)
}

/// The component schemas: derived from the Rust types where this crate or `gateway-core` owns
/// them (`ToSchema`), written here for the answers of the crates below, which stay free of
/// utoipa (their enums are the derived ones).
fn components() -> ComponentsBuilder {
    let service_entry = object(
        &[
            ("name", string(), true),
            ("display_name", string(), true),
            ("status", ref_to::<ServiceStatus>(), true),
            ("sub_state", nullable_ref::<SubState>(), true),
            ("kind", ref_to::<ServiceKind>(), true),
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
            (
                "contract",
                OneOfBuilder::new()
                    .item(typed(Type::Null))
                    .item(object(
                        &[
                            ("status", one_of(&["pending", "loaded", "missing", "invalid"]), true),
                            ("operations", integer(), true),
                            ("loaded_at", nullable(Type::String), true),
                            ("error", nullable(Type::String), true),
                        ],
                        "The service's own OpenAPI contract.",
                    ))
                    .into(),
                true,
            ),
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
                        ("status", ref_to::<ServiceStatus>(), true),
                        ("sub_state", nullable_ref::<SubState>(), true),
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
                        ("sources", map_of(ref_to::<crate::outbound::aggregate::SourceStatus>(), "By service."), true),
                    ],
                    "",
                ),
                true,
            ),
        ],
        "The aggregate; failed parts are null, never omitted.",
    );
    let event = object(
        &[
            ("type", ref_to::<EventType>(), true),
            ("topic", string(), false),
            ("data", any(), true),
            ("timestamp", string(), false),
        ],
        "An event to publish.",
    );
    let mut components = ComponentsBuilder::new()
        .schema("ServiceEntry", service_entry)
        .schema("Health", health)
        .schema("LogLines", log_lines)
        .schema("SettingEntry", setting)
        .schema("SettingsMap", map_of(schema_ref("SettingEntry"), "Settings by key."))
        .schema("SettingsBatch", map_of(any(), "New values by key."))
        .schema("Dashboard", dashboard)
        .schema("EventBatch", array(event))
        .schema("HubClient", typed(Type::Object).description(Some("A connected client.")))
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
        );
    components = derived::<Envelope<serde_json::Value>>(components);
    components = derived::<ErrorCode>(components);
    components = derived::<ServiceStatus>(components);
    components = derived::<SubState>(components);
    components = derived::<ServiceKind>(components);
    components = derived::<EventType>(components);
    components = derived::<OrderRequest>(components);
    components = derived::<StrategyRequest>(components);
    components = derived::<crate::outbound::aggregate::SourceStatus>(components);
    components = derived::<crate::routes::settings::SettingPut>(components);
    components = derived::<crate::realtime::Accepted>(components);
    components = derived::<crate::realtime::Ticket>(components);
    components = derived::<crate::realtime::Sent>(components);
    components.security_scheme("bearer", SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).build()))
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
    let role = role_name(op.access);
    let doc = op.doc;
    let description = if doc.description.is_empty() {
        format!("Role: {role}.")
    } else {
        format!("Role: {role}. {}", doc.description)
    };
    let summary = doc.summary.replace("{method}", op.method);
    let mut b = OperationBuilder::new().tag(doc.tag).summary(Some(summary)).description(Some(description));
    for p in doc.params {
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
    if let Some(body) = doc.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", Content::new(Some(schema_ref(body))))
                .build(),
        ));
    }
    let ok = match doc.answer {
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
    b = b.response(doc.status.to_string(), ok.build());
    let mut errors: Vec<u16> = doc.errors.to_vec();
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
    for op in operations() {
        let path = op.path.clone();
        let built = operation(&op);
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

/// The gateway's routes plus every online service's operations from its own contract.
pub(crate) async fn openapi_json(state: web::Data<crate::state::AppState>) -> HttpResponse {
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
    fn every_operation_is_documented_with_the_role_the_middleware_enforces() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
        let ops = operations();
        for op in &ops {
            let documented = &doc["paths"][&op.path][op.method.to_ascii_lowercase()];
            assert!(documented.is_object(), "{} {} is not in the OpenAPI document", op.method, op.path);
            // The role in the document is the one the auth middleware decides by.
            let enforced = crate::edge::auth::required_access(
                &actix_web::http::Method::from_bytes(op.method.as_bytes()).unwrap(),
                Some(op.route.pattern),
            );
            assert_eq!(op.access, enforced, "{} {}", op.method, op.path);
            let role = role_name(enforced);
            let description = documented["description"].as_str().unwrap();
            assert!(description.starts_with(&format!("Role: {role}.")), "{} {}: {description}", op.method, op.path);
            assert_eq!(documented["security"].is_array(), enforced != Access::Public, "{} {}", op.method, op.path);
            assert!(!documented["summary"].as_str().unwrap().contains('{'), "{} {}", op.method, op.path);
        }
        // Nothing else: the document's operations are exactly the table's.
        let count: usize = doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(count, ops.len());
        assert_eq!(doc["paths"]["/api/{resource}/{tail}"].as_object().unwrap().len(), 5, "forwarded methods");
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
        assert!(count >= ROUTES.len(), "{count} operations");
        let envelope = &doc["components"]["schemas"]["Envelope"];
        let mut required: Vec<&str> =
            envelope["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort_unstable();
        assert_eq!(required, ["code", "data", "error", "request_id", "success"]);
    }

    /// Checks `value` against the component schema `name` (with every component in scope), and
    /// that each top-level field of an object value is declared (the schemas written here for
    /// the crates below must not fall behind their types).
    fn conforms(components: &serde_json::Value, name: &str, value: &serde_json::Value) {
        let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}"), "components": components});
        let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} refuses {value}: {errors:?}");
        if let (Some(fields), Some(declared)) =
            (value.as_object(), components["schemas"][name]["properties"].as_object())
        {
            for field in fields.keys() {
                assert!(declared.contains_key(field), "{name} does not declare `{field}` of {value}");
            }
        }
    }

    #[test]
    fn the_schemas_describe_what_the_handlers_send() {
        let doc = serde_json::to_value(document()).unwrap();
        let components = &doc["components"];
        let mut config = registry::ServiceConfig::with_defaults(gateway_core::ServiceName::parse("data").unwrap(), 1);
        config.openapi_path = Some("/openapi.json".into());
        let plain = registry::ServiceConfig::with_defaults(gateway_core::ServiceName::parse("mt5").unwrap(), 2);
        let registry = registry::Registry::new(&[config, plain]);
        for entry in registry.entries() {
            conforms(components, "ServiceEntry", &serde_json::to_value(entry).unwrap());
        }
        conforms(components, "Health", &serde_json::to_value(registry.health()).unwrap());

        let dir = tempfile::tempdir().unwrap();
        let store = settings::SettingsStore::open(&dir.path().join("setup.db")).unwrap();
        let all = serde_json::to_value(store.list().unwrap()).unwrap();
        conforms(components, "SettingsMap", &all);
        conforms(components, "SettingEntry", &all["symbols"]);

        let envelope = |data: serde_json::Value| serde_json::to_value(Envelope::ok(data, "r1")).unwrap();
        conforms(components, "Envelope", &envelope(serde_json::json!([1, 2])));
        for code in ErrorCode::ALL {
            let failed =
                serde_json::json!({"success": false, "data": null, "error": "x", "code": code, "request_id": "r"});
            conforms(components, "Envelope", &failed);
        }
        let ticket = crate::realtime::Ticket { ticket: "t".into(), expires_in_ms: 30_000 };
        conforms(components, "Ticket", &serde_json::to_value(ticket).unwrap());
        conforms(components, "Accepted", &serde_json::to_value(crate::realtime::Accepted { accepted: 3 }).unwrap());
        conforms(components, "Sent", &serde_json::to_value(crate::realtime::Sent { sent: true }).unwrap());
        let source =
            crate::outbound::aggregate::SourceStatus { status: "timeout", latency_ms: 2000, error: Some("x".into()) };
        conforms(components, "DashboardSource", &serde_json::to_value(source).unwrap());

        // The request bodies the gateway validates itself: accepted and refused alike.
        let order = serde_json::json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1});
        conforms(components, "OrderRequest", &order);
        let strategy = serde_json::json!({"name": "s", "symbol": "EURUSD", "timeframe": "H1", "parameters": {}});
        conforms(components, "StrategyRequest", &strategy);
        let refuses = |name: &str, value: serde_json::Value| {
            let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}"), "components": components});
            let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).unwrap();
            assert!(!validator.is_valid(&value), "{name} accepts {value}");
        };
        refuses("OrderRequest", serde_json::json!({"symbol": "EURUSD", "side": "up", "type": "market", "volume": 1}));
        refuses(
            "OrderRequest",
            serde_json::json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 1, "x": 1}),
        );
        refuses("SettingPut", serde_json::json!({"value": 1, "extra": 2}));
    }

    #[test]
    fn the_error_codes_are_the_enum() {
        let doc = serde_json::to_value(document()).unwrap();
        let listed = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, &serde_json::json!(all));
        assert_eq!(
            doc["components"]["schemas"]["Envelope"]["properties"]["code"].to_string(),
            serde_json::json!({"oneOf": [
                {"$ref": "#/components/schemas/ErrorCode", "description": "The stable machine-readable code on failure."},
                {"type": "null"}
            ]})
            .to_string()
        );
    }
}
