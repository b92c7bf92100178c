//! The supervisor's error type and its mapping to user-facing problems.

use gateway_core::Problem;

/// What can go wrong when asking the supervisor to do something.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No service of that name is configured.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// Start on a service that is starting or running.
    #[error("{service} is already running")]
    AlreadyRunning {
        /// Display name.
        service: String,
    },
    /// Stop on a stopped service.
    #[error("{service} is already stopped")]
    AlreadyStopped {
        /// Display name.
        service: String,
    },
    /// Start/stop/restart of an external or adopted service (monitored, never signalled).
    #[error("{service} is not managed by this orchestrator (external or adopted)")]
    NotManaged {
        /// Display name.
        service: String,
    },
    /// The service's command could not be spawned.
    #[error("cannot spawn {service} (`{program}`)")]
    Spawn {
        /// Display name.
        service: String,
        /// The program that was to be run.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A filesystem or OS operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The supervisor has shut down and takes no more requests.
    #[error("the supervisor has shut down")]
    ShutDown,
}

impl SupervisorError {
    /// The problem shown to the API user (the cause chain goes to the log, never to the user).
    pub fn problem(&self) -> Problem {
        match self {
            SupervisorError::UnknownService(_) => Problem::NotFound,
            SupervisorError::AlreadyRunning { service } => Problem::AlreadyRunning { service: service.clone() },
            SupervisorError::AlreadyStopped { service } => Problem::AlreadyStopped { service: service.clone() },
            SupervisorError::NotManaged { service } => Problem::NotManaged { service: service.clone() },
            SupervisorError::Spawn { .. } | SupervisorError::Io { .. } | SupervisorError::ShutDown => Problem::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SupervisorError::Io { context: context.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::ErrorCode;

    #[test]
    fn problems() {
        let svc = || "Data Service".to_owned();
        let io = || std::io::Error::other("boom");
        let cases = [
            (SupervisorError::UnknownService("x".into()), ErrorCode::NotFound),
            (SupervisorError::AlreadyRunning { service: svc() }, ErrorCode::Conflict),
            (SupervisorError::AlreadyStopped { service: svc() }, ErrorCode::Conflict),
            (SupervisorError::NotManaged { service: svc() }, ErrorCode::Conflict),
            (SupervisorError::Spawn { service: svc(), program: "p".into(), source: io() }, ErrorCode::Internal),
            (SupervisorError::io("ctx", io()), ErrorCode::Internal),
            (SupervisorError::ShutDown, ErrorCode::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(e.problem().code(), code, "{e}");
        }
        assert_eq!(
            SupervisorError::AlreadyRunning { service: svc() }.problem(),
            Problem::AlreadyRunning { service: svc() }
        );
    }
}
