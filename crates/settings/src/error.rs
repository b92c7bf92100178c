//! The settings crate's error type and its mapping to user-facing problems.

use std::path::PathBuf;

use gateway_core::{FieldError, Problem, Reason};

/// Everything that can go wrong in the settings and token store.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A key or value failed validation (unknown key, wrong type, cross-key rule …).
    #[error("invalid setting: {0}")]
    Invalid(#[source] FieldError),
    /// The key is neither in the catalogue nor a stored `ui.*` key.
    #[error("setting {0} not found")]
    NotFound(String),
    /// `If-Match` named another version than the current one.
    #[error("setting {key} is at version {current}, not the one given in If-Match")]
    VersionMismatch {
        /// The setting key.
        key: String,
        /// Its current version (0 when never set).
        current: i64,
    },
    /// An API token with this name already exists.
    #[error("an API token named {0} already exists")]
    TokenExists(String),
    /// No API token with this name.
    #[error("no API token named {0}")]
    TokenNotFound(String),
    /// The database file was written by a newer orchestrator.
    #[error("the settings database has schema version {found}, newer than the supported {supported}")]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A stored row cannot be read back (not JSON, unknown role …).
    #[error("corrupt row in the settings database: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("settings database error")]
    Db(#[from] rusqlite::Error),
    /// No connection could be taken from the pool.
    #[error("settings database pool error")]
    Pool(#[from] r2d2::Error),
    /// A file or directory operation failed.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SettingsError {
    /// The user-facing problem: validation, not found and version conflicts are the caller's;
    /// everything else is internal (the cause chain belongs in the log, not in the response).
    pub fn problem(&self) -> Problem {
        match self {
            SettingsError::Invalid(e) => Problem::Validation(e.clone()),
            SettingsError::NotFound(_) | SettingsError::TokenNotFound(_) => Problem::NotFound,
            SettingsError::VersionMismatch { key, current } => {
                Problem::VersionMismatch { key: key.clone(), current: *current }
            }
            SettingsError::TokenExists(name) => Problem::invalid("name", Reason::Duplicate { value: name.clone() }),
            SettingsError::SchemaTooNew { .. }
            | SettingsError::Corrupt(_)
            | SettingsError::Db(_)
            | SettingsError::Pool(_)
            | SettingsError::Io { .. } => Problem::Internal,
        }
    }
}

impl From<FieldError> for SettingsError {
    fn from(e: FieldError) -> Self {
        SettingsError::Invalid(e)
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::ErrorCode;

    use super::*;

    #[test]
    fn problems_map_to_the_right_codes() {
        let io = || SettingsError::Io { path: "/x".into(), source: std::io::Error::other("boom") };
        let cases = [
            (
                SettingsError::Invalid(FieldError::new("symbols", Reason::TooShort { min: 1 })),
                ErrorCode::ValidationFailed,
            ),
            (SettingsError::NotFound("x".into()), ErrorCode::NotFound),
            (SettingsError::TokenNotFound("x".into()), ErrorCode::NotFound),
            (SettingsError::VersionMismatch { key: "symbols".into(), current: 3 }, ErrorCode::Conflict),
            (SettingsError::TokenExists("admin".into()), ErrorCode::ValidationFailed),
            (SettingsError::SchemaTooNew { found: 9, supported: 1 }, ErrorCode::Internal),
            (SettingsError::Corrupt("x".into()), ErrorCode::Internal),
            (SettingsError::Db(rusqlite::Error::InvalidQuery), ErrorCode::Internal),
            (io(), ErrorCode::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(err.problem().code(), code, "{err}");
        }
        assert_eq!(
            SettingsError::TokenExists("admin".into()).problem(),
            Problem::invalid("name", Reason::Duplicate { value: "admin".into() })
        );
        assert_eq!(
            SettingsError::VersionMismatch { key: "symbols".into(), current: 3 }.problem(),
            Problem::VersionMismatch { key: "symbols".into(), current: 3 }
        );
    }

    #[test]
    fn source_chains_are_kept() {
        use std::error::Error as _;
        let err = SettingsError::Io { path: "/x".into(), source: std::io::Error::other("boom") };
        assert_eq!(err.source().map(|s| s.to_string()), Some("boom".to_string()));
        let err = SettingsError::Invalid(FieldError::new("symbols", Reason::TooShort { min: 1 }));
        assert!(err.source().is_some());
    }
}
