//! The one JSON envelope every `/api` response is wrapped in.

use serde::{Deserialize, Serialize};

use crate::message::{ErrorCode, Lang, Problem};

/// `{success, data, error, code, request_id}`: every /api answer. `data` on success (also for
/// partial aggregates), `error` (the user-facing message, Hungarian by default, English with
/// `Accept-Language: en`) and `code` on failure. The HTTP status is real.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Whether the request succeeded.
    pub success: bool,
    /// The payload on success (and for partial aggregates).
    #[cfg_attr(feature = "openapi", schema(required = true, schema_with = any_data))]
    pub data: Option<T>,
    /// The user-facing message on failure.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error: Option<String>,
    /// The stable machine-readable code on failure.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub code: Option<ErrorCode>,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
}

/// The schema of [`Envelope::data`]: any JSON value, `null` on failure (each operation of the
/// document narrows it).
#[cfg(feature = "openapi")]
fn any_data() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some("The payload on success (and for partial aggregates)."))
}

impl<T> Envelope<T> {
    /// A successful answer.
    pub fn ok(data: T, request_id: impl Into<String>) -> Self {
        Envelope { success: true, data: Some(data), error: None, code: None, request_id: request_id.into() }
    }

    /// A failed answer with the problem's message in the given language.
    pub fn failure(problem: &Problem, lang: Lang, request_id: impl Into<String>) -> Self {
        Envelope {
            success: false,
            data: None,
            error: Some(problem.message(lang)),
            code: Some(problem.code()),
            request_id: request_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let ok = serde_json::to_value(Envelope::ok(1, "r1")).unwrap_or_default();
        assert_eq!(
            ok,
            serde_json::json!({"success": true, "data": 1, "error": null, "code": null, "request_id": "r1"})
        );
        let e: Envelope<()> = Envelope::failure(&Problem::NotFound, Lang::En, "r2");
        let v = serde_json::to_value(e).unwrap_or_default();
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["success"], false);
        assert_eq!(v["data"], serde_json::Value::Null);
    }
}
