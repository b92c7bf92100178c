//! Errors: start-up problems ([`SimError`]) and request errors (`ApiError`, a JSON `{"error"}` with a 4xx).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Why a simulated service could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A `--symbols` entry is not a valid symbol.
    #[error("invalid symbol {0:?} in --symbols")]
    InvalidSymbol(String),
    /// `--symbols` named no symbol at all.
    #[error("--symbols names no symbol")]
    NoSymbols,
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Any other IO failure while starting or running.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<SimError> for std::io::Error {
    fn from(e: SimError) -> std::io::Error {
        match e {
            SimError::Io(e) => e,
            SimError::Bind { addr, source } => {
                std::io::Error::new(source.kind(), format!("cannot listen on {addr}: {source}"))
            }
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// A request the service refuses, answered as `{"error": message}` with the matching status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the request is malformed or invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// 500: something failed inside the simulator (details go to the log, not the client).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    pub(crate) fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::NotFound(msg.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({ "error": self.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ApiError::bad("x").status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::not_found("x").status_code(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::Conflict("x".into()).status_code(), StatusCode::CONFLICT);
        assert_eq!(ApiError::MethodNotAllowed.status_code(), StatusCode::METHOD_NOT_ALLOWED);
        let io: std::io::Error = SimError::InvalidSymbol("a b".into()).into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    }
}
