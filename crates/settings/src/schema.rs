//! Schema migrations, versioned by `PRAGMA user_version`.
//!
//! Migration `n` (1-based) brings the schema from version `n - 1` to `n`. Migrations are only
//! ever appended, never edited: a released file may be at any earlier version.

use rusqlite::{Connection, TransactionBehavior};

use crate::SettingsError;

/// The migrations in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: settings and API tokens.
    //
    // `settings.is_default = 1` marks a key that was reset: its effective value is the
    // catalogue default (so a later release's new default applies to it), while the row keeps
    // the version counter monotonic. `value` then holds the default as of the reset.
    r#"
    CREATE TABLE settings (
        key        TEXT    NOT NULL PRIMARY KEY,
        value      TEXT    NOT NULL CHECK (json_valid(value)),
        version    INTEGER NOT NULL CHECK (version > 0),
        updated_at TEXT    NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1))
    ) STRICT;
    CREATE TABLE api_tokens (
        name         TEXT NOT NULL PRIMARY KEY,
        role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'service')),
        token_hash   TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        last_used_at TEXT
    ) STRICT;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`] in one IMMEDIATE transaction, so two processes
/// opening a fresh file at once cannot both migrate. Idempotent; refuses a newer schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), SettingsError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(SettingsError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql)?;
        log::info!("settings database migrated to schema version {}", index + 1);
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}
