//! The SQLite settings store (SPEC §9) and API-token store (SPEC §3.2): schema migrations, the
//! key catalogue with validation and defaults, versioned transactional writes, token hashes.
//!
//! Architecture invariant: this is the only crate that knows rusqlite. Every method of
//! [`SettingsStore`] is synchronous and may block on disk IO or on another writer (busy timeout
//! 5 s); async callers wrap calls in `web::block` or a dedicated thread.

pub mod catalogue;
mod error;
mod os;
mod schema;
mod store;
mod tokens;
mod verifier;

pub use error::SettingsError;
pub use schema::SCHEMA_VERSION;
pub use store::{SettingEntry, SettingsStore};
pub use tokens::{
    ADMIN_TOKEN_FILE, ADMIN_TOKEN_NAME, MAX_TOKEN_NAME_LEN, TOKEN_PREFIX, TokenInfo, token_hash, validate_token_name,
};
pub use verifier::TokenVerifier;
