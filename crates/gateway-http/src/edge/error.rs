//! `ApiError`: every error a handler can return, mapped to the envelope, status and code.
//!
//! The response built here carries the [`Problem`] in its extensions; the request-context
//! middleware renders the final body in the caller's language with the request id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use gateway_core::{Lang, Problem};

/// Any failure of a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A problem the user can understand (validation, auth, conflicts, upstream trouble).
    #[error("{0}")]
    Problem(Problem),
    /// The settings store failed or refused.
    #[error("settings store")]
    Settings(#[from] settings::SettingsError),
    /// The supervisor refused or failed.
    #[error("supervisor")]
    Supervisor(#[from] supervisor::SupervisorError),
    /// The hub refused (invalid event, unknown client) or has stopped.
    #[error("hub")]
    Hub(#[from] hub::HubError),
    /// A blocking task could not run (thread pool gone).
    #[error("blocking task failed")]
    Blocking(#[from] actix_web::error::BlockingError),
    /// Anything else unexpected.
    #[error("{0}")]
    Internal(String),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(p)
    }
}

impl From<gateway_core::FieldError> for ApiError {
    fn from(e: gateway_core::FieldError) -> Self {
        ApiError::Problem(Problem::Validation(e))
    }
}

impl ApiError {
    /// What the user is told.
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Problem(p) => p.clone(),
            ApiError::Settings(e) => e.problem(),
            ApiError::Supervisor(supervisor::SupervisorError::Spawn { service, source, .. }) => {
                Problem::SpawnFailed { service: service.clone(), reason: short_os_error(source) }
            }
            ApiError::Supervisor(e) => e.problem(),
            ApiError::Hub(e) => match e {
                hub::HubError::Invalid(f) => Problem::Validation(f.clone()),
                hub::HubError::NotFound(_) => Problem::NotFound,
                hub::HubError::TooManyTopics { max } => {
                    Problem::invalid("topics", gateway_core::Reason::TooLong { max: *max })
                }
                hub::HubError::Stopped => Problem::Internal,
            },
            ApiError::Blocking(_) | ApiError::Internal(_) => Problem::Internal,
        }
    }
}

/// The `<ok>` of `spawn_failed`: the OS error alone (`No such file or directory (os error 2)`),
/// its first line cut to 200 characters; the program's path is in the log, not here.
fn short_os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

/// Attached to error responses so the context middleware can render them.
#[derive(Debug, Clone)]
pub(crate) struct ProblemReport {
    pub problem: Problem,
    /// The full cause chain, logged for 5xx (never sent to the client).
    pub cause: Option<String>,
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        let cause = (problem.http_status() >= 500).then(|| cause_chain(self));
        let mut res = problem_response(&problem, Lang::Hu, "");
        res.extensions_mut().insert(ProblemReport { problem, cause });
        res
    }
}

/// The envelope for a problem (used directly where no middleware runs, e.g. WebSocket upgrade).
pub(crate) fn problem_response(problem: &Problem, lang: Lang, request_id: &str) -> HttpResponse {
    let status = StatusCode::from_u16(problem.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let envelope: gateway_core::Envelope<()> = gateway_core::Envelope::failure(problem, lang, request_id);
    HttpResponse::build(status).json(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_failure_is_spawn_failed_with_the_short_os_error() {
        let e = ApiError::from(supervisor::SupervisorError::Spawn {
            service: "Data Service".into(),
            program: "/nonexistent/program".into(),
            source: std::io::Error::from_raw_os_error(2),
        });
        let problem = e.problem();
        assert_eq!(problem.code(), gateway_core::ErrorCode::SpawnFailed);
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let hu = problem.message(Lang::Hu);
        assert!(hu.starts_with("A(z) Data Service nem indítható: "), "{hu}");
        assert!(hu.contains("os error 2") && !hu.contains("nonexistent"), "{hu}");
    }

    #[test]
    fn a_long_or_multiline_reason_is_cut() {
        let long = std::io::Error::other(format!("{}\nsecond line", "x".repeat(500)));
        let reason = short_os_error(&long);
        assert_eq!(reason.chars().count(), 201);
        assert!(!reason.contains("second"));
    }
}
