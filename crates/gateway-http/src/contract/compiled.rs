//! One service's contract, compiled once per load: its paths under the service's own `routes`,
//! each operation's query and path parameters and JSON body with their JSON Schema validators
//! (the `jsonschema` crate; `$ref`s into `components` resolve against the document's own
//! components), and the check a forwarded request goes through before it is sent.

use actix_web::http::Method;
use gateway_core::{JsonType, Problem, Reason};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use registry::ServiceConfig;
use serde_json::{Map, Value};
use std::borrow::Cow;

use super::convert;
use crate::body;

/// The HTTP methods an OpenAPI path item can hold, in its own spelling.
pub const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Why a document is not a usable contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an OpenAPI 3.0 or 3.1 document.
    #[error("not an OpenAPI 3.0 or 3.1 document: {0}")]
    NotOpenApi(String),
    /// A schema the validator cannot compile (`where` names the operation).
    #[error("{place}: {detail}")]
    Schema {
        /// Method and path of the operation, and which part.
        place: String,
        /// The compiler's words.
        detail: String,
    },
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Where a parameter is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Query,
    Path,
}

/// How a parameter's text becomes the JSON value its schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coercion {
    /// Taken as a string.
    Text,
    /// Parsed as a number, integer or boolean (the first of the schema's types is named when it
    /// does not parse).
    Scalar(JsonType),
    /// Every occurrence of the name, each item coerced.
    List(ItemCoercion),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemCoercion {
    Text,
    Scalar(JsonType),
}

struct Parameter {
    name: String,
    location: Location,
    required: bool,
    coercion: Coercion,
    validator: Validator,
}

struct RequestBody {
    required: bool,
    /// `None` when the body is not JSON (not checked).
    validator: Option<Validator>,
}

struct CompiledOperation {
    method: Method,
    parameters: Vec<Parameter>,
    body: Option<RequestBody>,
}

struct PathTemplate {
    segments: Vec<Segment>,
    literals: usize,
    operations: Vec<CompiledOperation>,
}

/// A service's contract, ready to check requests.
pub struct Contract {
    /// The document's `openapi` field (`3.0.3`, `3.1.0` …).
    pub openapi: String,
    /// Operations under the service's routes.
    pub operations: usize,
    paths: Vec<PathTemplate>,
    /// The operations for the merged document: path (under `/api`) → path item.
    pub merged_paths: Map<String, Value>,
    /// The component schemas for the merged document, named `{service}.{name}`.
    pub merged_schemas: Map<String, Value>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").field("openapi", &self.openapi).field("operations", &self.operations).finish()
    }
}

/// What the contract says about one request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The contract has no operation under the service's routes: domain rules only.
    NotCovered,
    /// Checked and accepted.
    Accepted,
}

impl Contract {
    /// Parses and compiles a contract for `service` (only paths under its `routes` count).
    pub fn parse(bytes: &[u8], service: &ServiceConfig) -> Result<Contract, ContractError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| ContractError::NotJson(e.to_string()))?;
        let openapi = doc.get("openapi").and_then(Value::as_str).unwrap_or_default().to_owned();
        let v3_0 = openapi.starts_with("3.0");
        if !v3_0 && !openapi.starts_with("3.1") {
            let shown = if openapi.is_empty() { "no `openapi` field".to_owned() } else { format!("openapi {openapi}") };
            return Err(ContractError::NotOpenApi(shown));
        }
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Err(ContractError::NotOpenApi("no `paths` object".into()));
        };
        let mut components = doc.get("components").cloned().unwrap_or_else(|| Value::Object(Map::new()));
        if !components.is_object() {
            return Err(ContractError::NotOpenApi("`components` is not an object".into()));
        }
        if v3_0 {
            convert::components_from_3_0(&mut components);
        }
        let ctx = Context { components: &components, v3_0, service };

        let mut contract = Contract {
            openapi,
            operations: 0,
            paths: Vec::new(),
            merged_paths: Map::new(),
            merged_schemas: Map::new(),
        };
        for (path, item) in paths {
            let segments = parse_template(path);
            let Some(Segment::Literal(resource)) = segments.first().cloned() else { continue };
            if !service.routes.contains(&resource) {
                continue;
            }
            let item = ctx.resolve(item);
            let Some(item) = item.as_object() else { continue };
            let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut template = PathTemplate {
                literals: segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count(),
                segments,
                operations: Vec::new(),
            };
            let mut merged_item = Map::new();
            for name in METHODS {
                let Some(op) = item.get(name).and_then(Value::as_object) else { continue };
                let Ok(method) = Method::from_bytes(name.to_ascii_uppercase().as_bytes()) else { continue };
                let place = format!("{} {path}", method.as_str());
                let parameters = ctx.parameters(&shared, op.get("parameters"));
                template.operations.push(ctx.compile(&method, &place, &parameters, op.get("requestBody"))?);
                merged_item.insert(name.to_owned(), ctx.merged_operation(&method, op, &parameters));
                contract.operations += 1;
            }
            contract.merged_paths.insert(format!("/api{path}"), Value::Object(merged_item));
            contract.paths.push(template);
        }
        // The most literal template wins (`/strategies/active` before `/strategies/{id}`).
        contract.paths.sort_by_key(|t| std::cmp::Reverse(t.literals));
        if let Some(Value::Object(schemas)) = components.get("schemas") {
            for (name, schema) in schemas {
                let mut schema = schema.clone();
                ctx.rename_refs(&mut schema);
                contract.merged_schemas.insert(format!("{}.{name}", service.name), schema);
            }
        }
        Ok(contract)
    }

    /// Checks a request to `path` (`/{resource}/…`, as the service will see it) before it is
    /// forwarded. `body` is empty for GET and HEAD.
    pub fn check(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Result<Verdict, Problem> {
        let trimmed = path.trim_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
        if self.paths.is_empty() {
            return Ok(Verdict::NotCovered);
        }
        let template = self.paths.iter().find(|t| {
            t.segments.len() == parts.len()
                && t.segments.iter().zip(&parts).all(|(s, p)| match s {
                    Segment::Literal(l) => l == p,
                    Segment::Param(_) => !p.is_empty(),
                })
        });
        let Some(template) = template else { return Err(Problem::NotFound) };
        let find = |m: &Method| template.operations.iter().find(|o| o.method == *m);
        let op = match find(method) {
            Some(op) => op,
            None if *method == Method::HEAD => find(&Method::GET).ok_or(Problem::MethodNotAllowed)?,
            None => return Err(Problem::MethodNotAllowed),
        };

        if !op.parameters.is_empty() {
            for p in &op.parameters {
                let values: Vec<Cow<str>> = match p.location {
                    Location::Query => form_urlencoded::parse(query.as_bytes())
                        .filter(|(k, _)| *k == p.name.as_str())
                        .map(|(_, v)| v)
                        .collect(),
                    Location::Path => template
                        .segments
                        .iter()
                        .zip(&parts)
                        .filter(|(s, _)| matches!(s, Segment::Param(n) if *n == p.name))
                        .map(|(_, v)| percent_decode(v))
                        .collect(),
                };
                if values.is_empty() {
                    if p.required {
                        return Err(Problem::invalid(p.name.clone(), Reason::Missing));
                    }
                    continue;
                }
                let value = coerce(p.coercion, &values)
                    .map_err(|expected| Problem::invalid(p.name.clone(), Reason::WrongType { expected }))?;
                // The fast answer first; the first error only for a value that fails.
                if !p.validator.is_valid(&value)
                    && let Some(error) = p.validator.iter_errors(&value).next()
                {
                    return Err(problem_of(&error, &p.name));
                }
            }
        }

        if let Some(spec) = &op.body {
            let blank = body.iter().all(u8::is_ascii_whitespace);
            if blank {
                if spec.required {
                    return Err(Problem::invalid("body", Reason::Missing));
                }
            } else if let Some(validator) = &spec.validator {
                let value: Value = body::decode(body).map_err(Problem::Validation)?;
                if !validator.is_valid(&value)
                    && let Some(error) = validator.iter_errors(&value).next()
                {
                    return Err(problem_of(&error, "body"));
                }
            }
        }
        Ok(Verdict::Accepted)
    }
}

/// What compiling needs to know about the document.
struct Context<'a> {
    components: &'a Value,
    v3_0: bool,
    service: &'a ServiceConfig,
}

impl Context<'_> {
    /// Follows a local `$ref` (`#/components/{kind}/{name}`, a few levels deep) to its target.
    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        let mut current = value;
        for _ in 0..8 {
            let Some(target) = current.get("$ref").and_then(Value::as_str) else { return current };
            let Some(pointer) = target.strip_prefix("#/components") else { return current };
            match self.components.pointer(pointer) {
                Some(next) => current = next,
                None => return current,
            }
        }
        current
    }

    /// The operation's parameters: the path item's, overridden by the operation's own (same
    /// name and location), `$ref`s resolved.
    fn parameters(&self, shared: &[Value], own: Option<&Value>) -> Vec<Value> {
        let mut out: Vec<Value> = shared.iter().map(|p| self.resolve(p).clone()).collect();
        for p in own.and_then(Value::as_array).into_iter().flatten() {
            let p = self.resolve(p).clone();
            let key = |v: &Value| (v.get("name").cloned(), v.get("in").cloned());
            out.retain(|q| key(q) != key(&p));
            out.push(p);
        }
        out
    }

    /// A schema of this document as JSON Schema 2020-12 (converted from 3.0 when needed).
    fn schema(&self, schema: Option<&Value>) -> Value {
        let mut schema = schema.cloned().unwrap_or(Value::Bool(true));
        if self.v3_0 {
            convert::schema_from_3_0(&mut schema);
        }
        schema
    }

    /// A validator for one schema of the document, its `$ref`s resolving into `components`.
    fn validator(&self, schema: &Value, place: &str) -> Result<Validator, ContractError> {
        let root = match schema {
            Value::Object(obj) => {
                let mut root = obj.clone();
                root.insert("components".into(), self.components.clone());
                Value::Object(root)
            }
            other => other.clone(),
        };
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .build(&root)
            .map_err(|e| ContractError::Schema { place: place.to_owned(), detail: e.to_string() })
    }

    fn compile(
        &self,
        method: &Method,
        place: &str,
        parameters: &[Value],
        body: Option<&Value>,
    ) -> Result<CompiledOperation, ContractError> {
        let mut compiled = Vec::new();
        for p in parameters {
            let location = match p.get("in").and_then(Value::as_str) {
                Some("query") => Location::Query,
                Some("path") => Location::Path,
                _ => continue, // headers and cookies are the gateway's business
            };
            let Some(name) = p.get("name").and_then(Value::as_str) else { continue };
            let schema = self.schema(p.get("schema"));
            let validator = self.validator(&schema, &format!("{place} parameter {name}"))?;
            compiled.push(Parameter {
                name: name.to_owned(),
                location,
                required: location == Location::Path || p.get("required") == Some(&Value::Bool(true)),
                coercion: self.coercion(&schema),
                validator,
            });
        }
        let body = match body.map(|b| self.resolve(b)) {
            None => None,
            Some(b) => {
                let json = b
                    .get("content")
                    .and_then(Value::as_object)
                    .and_then(|content| content.iter().find(|(media, _)| is_json(media)).map(|(_, m)| m.get("schema")));
                let validator = match json {
                    Some(schema) => Some(self.validator(&self.schema(schema), &format!("{place} request body"))?),
                    None => None,
                };
                Some(RequestBody { required: b.get("required") == Some(&Value::Bool(true)), validator })
            }
        };
        Ok(CompiledOperation { method: method.clone(), parameters: compiled, body })
    }

    /// The JSON types a schema admits (through `$ref`, `anyOf`, `oneOf`, `allOf`).
    fn types(&self, schema: &Value, depth: usize, out: &mut Vec<String>) {
        if depth > 8 {
            return;
        }
        let schema = self.resolve(schema);
        match schema.get("type") {
            Some(Value::String(t)) => out.push(t.clone()),
            Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for sub in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.types(sub, depth + 1, out);
            }
        }
    }

    fn coercion(&self, schema: &Value) -> Coercion {
        let mut types = Vec::new();
        self.types(schema, 0, &mut types);
        if types.iter().any(|t| t == "array") {
            let mut items = Vec::new();
            let resolved = self.resolve(schema);
            if let Some(item) = resolved.get("items") {
                self.types(item, 0, &mut items);
            }
            return Coercion::List(match scalar(&items) {
                Some(t) => ItemCoercion::Scalar(t),
                None => ItemCoercion::Text,
            });
        }
        match scalar(&types) {
            Some(t) => Coercion::Scalar(t),
            None => Coercion::Text,
        }
    }

    /// Rewrites `#/components/schemas/X` to the merged document's `#/components/schemas/{service}.X`.
    fn rename_refs(&self, value: &mut Value) {
        match value {
            Value::Object(obj) => {
                for (k, v) in obj.iter_mut() {
                    if k == "$ref"
                        && let Value::String(target) = v
                        && let Some(name) = target.strip_prefix("#/components/schemas/")
                    {
                        *target = format!("#/components/schemas/{}.{name}", self.service.name);
                    } else {
                        self.rename_refs(v);
                    }
                }
            }
            Value::Array(list) => list.iter_mut().for_each(|v| self.rename_refs(v)),
            _ => {}
        }
    }

    /// The operation as the merged document shows it: under `/api`, tagged by service, each
    /// JSON answer inside the envelope, the gateway's own errors added, bearer auth.
    fn merged_operation(&self, method: &Method, op: &Map<String, Value>, parameters: &[Value]) -> Value {
        let mut out = Map::new();
        let name = self.service.name.as_str();
        out.insert("tags".into(), Value::Array(vec![Value::String(name.to_owned())]));
        for key in ["summary", "deprecated"] {
            if let Some(v) = op.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        let role = if *method == Method::GET || *method == Method::HEAD { "viewer" } else { "operator" };
        let own = op.get("description").and_then(Value::as_str).unwrap_or_default();
        out.insert(
            "description".into(),
            Value::String(format!("Role: {role}. Forwarded to {}. {own}", self.service.display_name).trim().to_owned()),
        );
        if let Some(id) = op.get("operationId").and_then(Value::as_str) {
            out.insert("operationId".into(), Value::String(format!("{name}_{id}")));
        }
        let params: Vec<Value> = parameters
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(schema) = p.get_mut("schema") {
                    *schema = self.schema(Some(schema));
                }
                self.rename_refs(&mut p);
                p
            })
            .collect();
        if !params.is_empty() {
            out.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = op.get("requestBody") {
            let mut body = self.resolve(body).clone();
            self.convert_content(&mut body);
            self.rename_refs(&mut body);
            out.insert("requestBody".into(), body);
        }
        let mut responses = Map::new();
        for (status, response) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
            let mut response = self.resolve(response).clone();
            self.convert_content(&mut response);
            // The service's own names first; the gateway's `Envelope` is added after.
            self.rename_refs(&mut response);
            if let Some(Value::Object(content)) = response.get_mut("content") {
                for (media, m) in content.iter_mut() {
                    if !is_json(media) {
                        continue;
                    }
                    let data = m.get("schema").cloned().unwrap_or(Value::Bool(true));
                    let success = status.starts_with('2');
                    m["schema"] = if success {
                        serde_json::json!({"allOf": [
                            {"$ref": "#/components/schemas/Envelope"},
                            {"type": "object", "properties": {"data": data}}
                        ]})
                    } else {
                        serde_json::json!({"$ref": "#/components/schemas/Envelope"})
                    };
                }
            }
            responses.insert(status.clone(), response);
        }
        for (status, what) in [
            ("400", "`validation_failed`: checked against the service's contract and the domain rules"),
            ("401", "`unauthorized`"),
            ("403", "`forbidden`"),
            ("404", "`not_found`: a path the contract does not have"),
            ("405", "`method_not_allowed`: a method the path does not have"),
            ("502", "`upstream_error`"),
            ("503", "`service_unavailable`"),
            ("504", "`upstream_timeout`"),
        ] {
            responses.entry(status.to_owned()).or_insert_with(|| {
                serde_json::json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}})
            });
        }
        out.insert("responses".into(), Value::Object(responses));
        out.insert("security".into(), serde_json::json!([{"bearer": []}]));
        Value::Object(out)
    }

    /// Converts the schemas under a request body's or response's `content` (3.0 only).
    fn convert_content(&self, value: &mut Value) {
        if let Some(Value::Object(content)) = value.get_mut("content") {
            for m in content.values_mut() {
                if let Some(schema) = m.get_mut("schema") {
                    *schema = self.schema(Some(schema));
                }
                if let Some(obj) = m.as_object_mut() {
                    obj.remove("example");
                }
            }
        }
    }
}

fn is_json(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or("").trim();
    media == "application/json" || media.ends_with("+json")
}

/// The scalar type a parameter is parsed as, when its schema admits no string.
fn scalar(types: &[String]) -> Option<JsonType> {
    if types.iter().any(|t| t == "string") || types.is_empty() {
        return None;
    }
    types.iter().find_map(|t| match t.as_str() {
        "integer" => Some(JsonType::Integer),
        "number" => Some(JsonType::Number),
        "boolean" => Some(JsonType::Boolean),
        _ => None,
    })
}

fn parse_template(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => Segment::Param(name.to_owned()),
            None => Segment::Literal(s.to_owned()),
        })
        .collect()
}

fn coerce_one(item: ItemCoercion, text: &str) -> Result<Value, JsonType> {
    match item {
        ItemCoercion::Text => Ok(Value::String(text.to_owned())),
        ItemCoercion::Scalar(JsonType::Boolean) => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(JsonType::Boolean),
        },
        ItemCoercion::Scalar(t) => match serde_json::from_str::<Value>(text.trim()) {
            Ok(v @ Value::Number(_)) => Ok(v),
            _ => Err(t),
        },
    }
}

fn coerce(c: Coercion, values: &[Cow<str>]) -> Result<Value, JsonType> {
    match c {
        Coercion::Text => Ok(Value::String(values.first().map(|v| v.to_string()).unwrap_or_default())),
        Coercion::Scalar(t) => coerce_one(ItemCoercion::Scalar(t), values.first().map_or("", |v| v)),
        Coercion::List(item) => {
            values.iter().map(|v| coerce_one(item, v)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
    }
}

fn percent_decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `/orders/0/volume` under `body` → `body.orders[0].volume`; a parameter's own name for its root.
fn field_of(root: &str, error: &ValidationError, extra: Option<&str>) -> String {
    let mut field = if root == "body" { String::new() } else { root.to_owned() };
    let segments = error.instance_path().iter().map(|s| s.to_string()).chain(extra.map(str::to_owned));
    for s in segments {
        if s.parse::<usize>().is_ok() {
            field.push_str(&format!("[{s}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&s);
        }
    }
    if field.is_empty() { root.to_owned() } else { field }
}

fn json_type(t: jsonschema::JsonType) -> Option<JsonType> {
    Some(match t {
        jsonschema::JsonType::String => JsonType::String,
        jsonschema::JsonType::Number => JsonType::Number,
        jsonschema::JsonType::Integer => JsonType::Integer,
        jsonschema::JsonType::Boolean => JsonType::Boolean,
        jsonschema::JsonType::Array => JsonType::Array,
        jsonschema::JsonType::Object => JsonType::Object,
        jsonschema::JsonType::Null => return None,
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The user-facing problem for the validator's first error, naming the field.
fn problem_of(error: &ValidationError, root: &str) -> Problem {
    use ValidationErrorKind as K;
    let field = |extra: Option<&str>| field_of(root, error, extra);
    let reason = match error.kind() {
        K::Required { property } => return Problem::invalid(field(Some(&plain(property))), Reason::Missing),
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            return Problem::invalid(field(unexpected.first().map(String::as_str)), Reason::UnknownField);
        }
        K::AnyOf { context } | K::OneOfNotValid { context } => {
            // `Optional[T]` is `anyOf: [T, null]`: the branch that is not about `null` says why.
            let branch = context.iter().find(|errors| {
                errors.first().is_some_and(|e| {
                    !matches!(e.kind(), K::Type { kind: TypeKind::Single(jsonschema::JsonType::Null) })
                })
            });
            if let Some(first) = branch.and_then(|errors| errors.first()) {
                return problem_of(first, root);
            }
            Reason::ContractViolation { detail: short(error) }
        }
        K::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => json_type(*t),
                TypeKind::Multiple(set) => set.iter().find_map(json_type),
            };
            match expected {
                Some(expected) => Reason::WrongType { expected },
                None => Reason::ContractViolation { detail: short(error) },
            }
        }
        K::Enum { options } => Reason::NotOneOf {
            allowed: options
                .as_array()
                .map_or_else(|| plain(options), |list| list.iter().map(plain).collect::<Vec<_>>().join(", ")),
        },
        K::Constant { expected_value } => Reason::NotOneOf { allowed: plain(expected_value) },
        K::Minimum { limit } => Reason::BelowMinimum { min: plain(limit), exclusive: false },
        K::ExclusiveMinimum { limit } => Reason::BelowMinimum { min: plain(limit), exclusive: true },
        K::Maximum { limit } => Reason::AboveMaximum { max: plain(limit), exclusive: false },
        K::ExclusiveMaximum { limit } => Reason::AboveMaximum { max: plain(limit), exclusive: true },
        K::MinLength { limit } | K::MinItems { limit } => {
            Reason::TooShort { min: usize::try_from(*limit).unwrap_or(usize::MAX) }
        }
        K::MaxLength { limit } | K::MaxItems { limit } => {
            Reason::TooLong { max: usize::try_from(*limit).unwrap_or(usize::MAX) }
        }
        K::Pattern { pattern } => Reason::PatternMismatch { pattern: pattern.clone() },
        _ => Reason::ContractViolation { detail: short(error) },
    };
    Problem::invalid(field(None), reason)
}

/// The validator's own message, cut to 160 characters.
fn short(error: &ValidationError) -> String {
    error.to_string().chars().filter(|c| !c.is_control()).take(160).collect()
}
