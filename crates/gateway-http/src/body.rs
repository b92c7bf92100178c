//! Request bodies: read with a size limit, decoded as JSON with errors that name the field and
//! the problem (malformed JSON with line and column, invalid UTF-8, wrong type, unknown or
//! missing field).

use actix_web::web;
use futures_util::StreamExt;
use gateway_core::{FieldError, JsonType, Problem, Reason};
use serde::de::DeserializeOwned;

use crate::edge::error::ApiError;

/// Reads the whole body, refusing more than `limit` bytes (413), also when the declared
/// `Content-Length` already says so.
pub async fn read_limited(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::PayloadTooLarge.into());
    }
    let mut body = web::BytesMut::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::Problem(Problem::PayloadTooLarge),
            other => ApiError::Problem(Problem::invalid("body", Reason::Malformed)).with_log(&other),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::PayloadTooLarge.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl ApiError {
    fn with_log(self, cause: &dyn std::fmt::Display) -> Self {
        log::debug!("reading request body failed: {cause}");
        self
    }
}

/// Decodes JSON into `T`, mapping every failure to a validation problem naming the field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(FieldError::new("body", Reason::InvalidUtf8));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldError::new("body", Reason::Missing));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| classify(&e))?;
    de.end().map_err(|e| FieldError::new("body", Reason::MalformedJson { line: e.line(), column: e.column() }))?;
    Ok(value)
}

/// Like [`decode`] for bodies that must be a JSON object: serde would otherwise also build a
/// struct from an array of its field values (`["EURUSD", "buy", …]`).
pub fn decode_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && std::str::from_utf8(bytes).is_ok() {
        // Let syntax errors be reported as such; only well-formed non-objects are a type error.
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Err(FieldError::new("body", Reason::WrongType { expected: JsonType::Object }));
        }
    }
    decode(bytes)
}

fn classify(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let inner = e.inner();
    let path = e.path().to_string();
    let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
    match inner.classify() {
        serde_json::error::Category::Syntax => {
            FieldError::new("body", Reason::MalformedJson { line: inner.line(), column: inner.column() })
        }
        serde_json::error::Category::Eof => FieldError::new("body", Reason::TruncatedJson),
        serde_json::error::Category::Io => FieldError::new("body", Reason::Malformed),
        serde_json::error::Category::Data => data_error(&field, &inner.to_string()),
    }
}

/// Maps serde's data-error texts (stable across serde versions) to reasons.
fn data_error(field: &str, message: &str) -> FieldError {
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_owned);
    // The path may already end with the offending key (serde_path_to_error records it for some
    // structs and not for others).
    let join = |name: &str| {
        if field == "body" {
            name.to_owned()
        } else if field == name || field.ends_with(&format!(".{name}")) {
            field.to_owned()
        } else {
            format!("{field}.{name}")
        }
    };
    if message.starts_with("unknown field") {
        let name = quoted(message).unwrap_or_default();
        return FieldError::new(join(&name), Reason::UnknownField);
    }
    if message.starts_with("missing field") {
        let name = quoted(message).unwrap_or_default();
        return FieldError::new(join(&name), Reason::Missing);
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let expected = message.split("expected ").nth(1).unwrap_or("");
        let expected = expected.split(" at line").next().unwrap_or(expected);
        let ty = if expected.contains("string") || expected.contains("char") {
            Some(JsonType::String)
        } else if expected.contains("sequence") || expected.contains("array") {
            Some(JsonType::Array)
        } else if expected.contains("map") || expected.contains("struct") || expected.contains("object") {
            Some(JsonType::Object)
        } else if expected.contains("bool") {
            Some(JsonType::Boolean)
        } else if expected.contains("integer") || expected.starts_with('u') || expected.starts_with('i') {
            Some(JsonType::Integer)
        } else if expected.contains("f64") || expected.contains("f32") || expected.contains("number") {
            Some(JsonType::Number)
        } else {
            None
        };
        return match ty {
            Some(expected) => FieldError::new(field, Reason::WrongType { expected }),
            None => FieldError::new(field, Reason::Malformed),
        };
    }
    FieldError::new(field, Reason::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        symbol: String,
        volume: f64,
        tags: Option<Vec<String>>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn errors_name_field_and_problem() {
        let cases: &[(&[u8], &str, Reason)] = &[
            (b"{\"symbol\": \"EURUSD\", ", "body", Reason::TruncatedJson),
            (b"{\"symbol\" \"EURUSD\"}", "body", Reason::MalformedJson { line: 1, column: 11 }),
            (b"{\n  \"symbol\": 'x'\n}", "body", Reason::MalformedJson { line: 2, column: 13 }),
            (b"\xff\xfe", "body", Reason::InvalidUtf8),
            (b"", "body", Reason::Missing),
            (b"   ", "body", Reason::Missing),
            (b"{\"symbol\": \"A\", \"volume\": 1, \"x\": 1}", "x", Reason::UnknownField),
            (b"{\"volume\": 1}", "symbol", Reason::Missing),
            (b"{\"symbol\": 5, \"volume\": 1}", "symbol", Reason::WrongType { expected: JsonType::String }),
            (b"{\"symbol\": \"A\", \"volume\": \"1\"}", "volume", Reason::WrongType { expected: JsonType::Number }),
            (
                b"{\"symbol\": \"A\", \"volume\": 1, \"tags\": \"a\"}",
                "tags",
                Reason::WrongType { expected: JsonType::Array },
            ),
            (
                b"{\"symbol\": \"A\", \"volume\": 1, \"inner\": {\"count\": -1}}",
                "inner.count",
                Reason::WrongType { expected: JsonType::Integer },
            ),
            (b"{\"symbol\": \"A\", \"volume\": 1, \"inner\": {\"z\": 1}}", "inner.z", Reason::UnknownField),
            (b"[1]", "body", Reason::WrongType { expected: JsonType::Object }),
            (b"{\"symbol\": \"A\", \"volume\": 1} x", "body", Reason::MalformedJson { line: 1, column: 30 }),
        ];
        for (input, field, reason) in cases {
            let err = decode_object::<Order>(input).unwrap_err();
            assert_eq!((err.field.as_str(), &err.reason), (*field, reason), "{}", String::from_utf8_lossy(input));
        }
        assert!(decode_object::<Order>(b"{\"symbol\": \"A\", \"volume\": 1.5}").is_ok());
        // Plain `decode` follows serde, which also builds a struct from an array.
        assert!(decode::<Order>(br#"["A", 1, null, null]"#).is_ok());
        assert!(decode_object::<Order>(br#"["A", 1, null, null]"#).is_err());
        // A typed gateway body: the unknown key is named once.
        let e = decode::<gateway_core::validate::OrderRequest>(br#"{"symbol": "EURUSD", "leverage": 5}"#).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason), ("leverage", Reason::UnknownField));
        let e = decode::<gateway_core::validate::OrderRequest>(br#"{"symbol": "EURUSD"}"#).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason), ("side", Reason::Missing));
    }
}
