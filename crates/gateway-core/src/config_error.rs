//! Configuration errors, each naming the field and, where known, the line.

use std::fmt;
use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown field or a value of the wrong type.
    #[error("{}", Located { line: *.line, column: *.column, field: "", message })]
    Parse {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed but not acceptable (duplicate, out of range, shadowing…).
    #[error("{}", Located { line: *.line, column: None, field, message })]
    Invalid {
        /// The field, e.g. `service[1].port` or `gateway.bind`.
        field: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A value of `field` that is not acceptable; the line is filled in by whoever knows the text.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { field: field.into(), line: None, message: message.into() }
    }

    /// `Ok` when `value` is not zero, else "must be greater than 0" for `field`.
    pub fn positive<T: Default + PartialEq>(value: T, field: &str) -> Result<(), ConfigError> {
        if value == T::default() { Err(ConfigError::invalid(field, "must be greater than 0")) } else { Ok(()) }
    }

    /// The line the error points at, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

struct Located<'a> {
    line: Option<usize>,
    column: Option<usize>,
    field: &'a str,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
            (Some(l), None) => write!(f, "line {l}: ")?,
            _ => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(self.message)
    }
}
