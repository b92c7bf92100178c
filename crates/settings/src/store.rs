//! The settings store: opening the database, reading effective values, and versioned,
//! validated, transactional writes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{SettingsError, catalogue, schema};

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pooled connections: enough for concurrent readers; writers are serialised anyway.
const POOL_SIZE: u32 = 8;

/// One setting as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingEntry {
    /// The key.
    pub key: String,
    /// The effective value: the stored one, or the default when never set or reset.
    pub value: Value,
    /// The catalogue default (`null` for free `ui.*` keys).
    pub default: Value,
    /// Incremented by every write of this key, resets included; 0 when never written.
    pub version: i64,
    /// When the key was last written (RFC 3339); `null` when never written.
    pub updated_at: Option<String>,
}

/// The SQLite settings and API-token store.
///
/// Cheap to clone (the pool and the write lock are shared) and `Send + Sync`. Every method does
/// blocking SQLite work: call it from a blocking context (`web::block`, a dedicated thread).
///
/// Durability: WAL mode with `synchronous = FULL`, so every acknowledged write has been
/// fsynced and survives `kill -9` and power loss (settings writes are rare; the fsync per commit
/// costs nothing that matters).
///
/// Versions: every write of a key (put, batch, reset) sets its version to the stored version + 1,
/// so versions never repeat and an `If-Match` can never match a different state (no ABA).
/// A reset keeps the row, marked as "default", instead of deleting it; see [`SettingsStore::reset`].
#[derive(Clone)]
pub struct SettingsStore {
    pub(crate) pool: Pool<SqliteConnectionManager>,
    /// Serialises this process's writers, so they queue fairly instead of spinning in SQLite's
    /// busy handler; other processes are kept out by SQLite's lock and the busy timeout.
    write_lock: Arc<Mutex<()>>,
    path: PathBuf,
}

impl fmt::Debug for SettingsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SettingsStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// A change to one key inside a write.
enum Change {
    Set(Value),
    Reset,
}

/// A row of the `settings` table.
struct StoredRow {
    value: Value,
    version: i64,
    updated_at: String,
    is_default: bool,
}

/// Pragmas every connection gets.
fn configure(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

fn open_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

impl SettingsStore {
    /// Opens (or creates) the database at `path`: creates the parent directories, switches to WAL,
    /// sets the busy timeout (5 s), foreign keys and `synchronous = FULL` on every connection, and
    /// runs the pending schema migrations. Reopening an up-to-date file changes nothing.
    pub fn open(path: &Path) -> Result<SettingsStore, SettingsError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SettingsError::Io { path: parent.to_owned(), source })?;
        }
        // One plain connection first: fails fast with the real cause (the pool would retry for
        // its whole connection timeout and keep only a message).
        let mut conn = Connection::open_with_flags(path, open_flags())?;
        configure(&mut conn)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("settings database {} runs in journal mode {mode}, not WAL", path.display());
        }
        schema::migrate(&mut conn)?;
        drop(conn);

        let manager = SqliteConnectionManager::file(path).with_flags(open_flags()).with_init(configure);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        log::debug!("settings database {} open (schema version {})", path.display(), schema::SCHEMA_VERSION);
        Ok(SettingsStore { pool, write_lock: Arc::new(Mutex::new(())), path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own, outside the pool, that never writes: [`crate::TokenVerifier`]
    /// watches `PRAGMA data_version` on it.
    pub(crate) fn watcher(&self) -> Result<Connection, SettingsError> {
        let mut conn = Connection::open_with_flags(&self.path, open_flags())?;
        configure(&mut conn)?;
        Ok(conn)
    }

    pub(crate) fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>, SettingsError> {
        Ok(self.pool.get()?)
    }

    pub(crate) fn lock_writers(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one IMMEDIATE transaction (the write lock is taken at `BEGIN`, so what `f`
    /// reads cannot change before it writes) and commits when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, SettingsError>,
    ) -> Result<T, SettingsError> {
        let _writers = self.lock_writers();
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Every setting: each catalogue key (its default when never set) and each stored `ui.*` key.
    pub fn list(&self) -> Result<BTreeMap<String, SettingEntry>, SettingsError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT key, value, version, updated_at, is_default FROM settings")?;
        let mut rows: BTreeMap<String, StoredRow> = BTreeMap::new();
        let mut query = stmt.query([])?;
        while let Some(row) = query.next()? {
            let key: String = row.get(0)?;
            let stored = stored_row(&key, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)?;
            rows.insert(key, stored);
        }
        let mut out = BTreeMap::new();
        for key in catalogue::keys() {
            let row = rows.remove(key);
            if let Some(entry) = entry_of(key, row) {
                out.insert(key.to_owned(), entry);
            }
        }
        for (key, row) in rows {
            if let Some(entry) = entry_of(&key, Some(row)) {
                out.insert(key, entry);
            }
        }
        Ok(out)
    }

    /// One setting. A key outside the catalogue that is not a stored `ui.*` key is
    /// [`SettingsError::NotFound`].
    pub fn get(&self, key: &str) -> Result<SettingEntry, SettingsError> {
        let conn = self.conn()?;
        let row = read_row(&conn, key)?;
        entry_of(key, row).ok_or_else(|| SettingsError::NotFound(key.to_owned()))
    }

    /// The effective values of `keys` (stored or default), e.g. to push to a service. Keys that
    /// are neither in the catalogue nor stored are left out. One consistent snapshot.
    pub fn values(&self, keys: &[String]) -> Result<Map<String, Value>, SettingsError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let mut out = Map::new();
        for key in keys {
            if let Some(entry) = entry_of(key, read_row(&tx, key)?) {
                out.insert(key.clone(), entry.value);
            }
        }
        tx.finish()?;
        Ok(out)
    }

    /// Sets one key. The value is validated (including cross-key rules against the other
    /// current values); `if_match`, when given, must equal the current version (0 when never
    /// set), else [`SettingsError::VersionMismatch`]. Returns the new entry.
    pub fn put(&self, key: &str, value: Value, if_match: Option<i64>) -> Result<SettingEntry, SettingsError> {
        catalogue::validate(key, &value)?;
        let mut changed = self.apply(vec![(key.to_owned(), Change::Set(value))], if_match)?;
        changed.remove(key).ok_or_else(|| SettingsError::Corrupt(format!("write of {key} returned nothing")))
    }

    /// Sets several keys at once, all or nothing. Every key and value is validated first; then,
    /// in one IMMEDIATE transaction, the cross-key rules are checked against the merged view
    /// (current values with these changes applied) and everything is written. On any error
    /// nothing is changed. Returns the written entries. An empty batch is invalid (field `body`).
    pub fn put_batch(&self, changes: &Map<String, Value>) -> Result<BTreeMap<String, SettingEntry>, SettingsError> {
        if changes.is_empty() {
            return Err(SettingsError::Invalid(gateway_core::FieldError::new(
                "body",
                gateway_core::Reason::TooShort { min: 1 },
            )));
        }
        for (key, value) in changes {
            catalogue::validate(key, value)?;
        }
        let changes = changes.iter().map(|(k, v)| (k.clone(), Change::Set(v.clone()))).collect();
        self.apply(changes, None)
    }

    /// Resets a key to its default (HTTP `DELETE`). The row is kept, marked as "default", with
    /// version + 1 rather than deleted, so the version never goes back to a number an old
    /// `If-Match` could hold. The effective value of a reset catalogue key follows the catalogue
    /// default; a reset free `ui.*` key disappears from [`list`](Self::list) and
    /// [`get`](Self::get) (its version counts on when it is set again; an `If-Match: 0` matches
    /// it, as for a key never set). The cross-key rules apply (resetting `timeframes` while
    /// `default_timeframe` is not among the defaults is rejected). Unknown keys are
    /// [`SettingsError::NotFound`]. Returns the entry after the reset (`value` and `default`
    /// are `null` for a free `ui.*` key).
    pub fn reset(&self, key: &str, if_match: Option<i64>) -> Result<SettingEntry, SettingsError> {
        if !catalogue::is_known(key) && !catalogue::is_free_ui_key(key) {
            return Err(SettingsError::NotFound(key.to_owned()));
        }
        let mut changed = self.apply(vec![(key.to_owned(), Change::Reset)], if_match)?;
        changed.remove(key).ok_or_else(|| SettingsError::Corrupt(format!("reset of {key} returned nothing")))
    }

    /// Writes validated changes in one IMMEDIATE transaction. `if_match` applies to a
    /// single-key change.
    fn apply(
        &self,
        changes: Vec<(String, Change)>,
        if_match: Option<i64>,
    ) -> Result<BTreeMap<String, SettingEntry>, SettingsError> {
        self.write(|tx| {
            let now = gateway_core::now_rfc3339();
            let mut rows = Vec::with_capacity(changes.len());
            for (key, change) in &changes {
                let row = read_row(tx, key)?;
                let visible = visible_version(key, row.as_ref());
                if matches!(change, Change::Reset) && visible.is_none() {
                    return Err(SettingsError::NotFound(key.clone()));
                }
                let current = visible.unwrap_or(0);
                if let Some(expected) = if_match
                    && expected != current
                {
                    return Err(SettingsError::VersionMismatch { key: key.clone(), current });
                }
                rows.push(row);
            }

            if changes.iter().any(|(key, _)| catalogue::CROSS_KEYS.contains(&key.as_str())) {
                let mut effective = Map::new();
                for key in catalogue::CROSS_KEYS {
                    if let Some(entry) = entry_of(key, read_row(tx, key)?) {
                        effective.insert(key.to_owned(), entry.value);
                    }
                }
                for (key, change) in &changes {
                    if catalogue::CROSS_KEYS.contains(&key.as_str()) {
                        let value = match change {
                            Change::Set(v) => v.clone(),
                            Change::Reset => catalogue::default_of(key).unwrap_or(Value::Null),
                        };
                        effective.insert(key.clone(), value);
                    }
                }
                catalogue::check_consistency(&effective)?;
            }

            let mut stmt = tx.prepare_cached(
                "INSERT INTO settings (key, value, version, updated_at, is_default) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,
                     updated_at = excluded.updated_at, is_default = excluded.is_default",
            )?;
            let mut out = BTreeMap::new();
            for ((key, change), row) in changes.into_iter().zip(rows) {
                let version = row.as_ref().map_or(0, |r| r.version) + 1;
                let (value, is_default) = match change {
                    Change::Set(v) => (v, false),
                    Change::Reset => (catalogue::default_of(&key).unwrap_or(Value::Null), true),
                };
                let text = serde_json::to_string(&value)
                    .map_err(|e| SettingsError::Corrupt(format!("value of {key} cannot be serialised: {e}")))?;
                stmt.execute(params![key, text, version, now, is_default])?;
                log::debug!("setting {key} {} (version {version})", if is_default { "reset" } else { "set" });
                let default = catalogue::default_of(&key).unwrap_or(Value::Null);
                let entry = SettingEntry { key: key.clone(), value, default, version, updated_at: Some(now.clone()) };
                out.insert(key, entry);
            }
            Ok(out)
        })
    }
}

fn stored_row(
    key: &str,
    text: String,
    version: i64,
    updated_at: String,
    is_default: bool,
) -> Result<StoredRow, SettingsError> {
    let value = serde_json::from_str(&text)
        .map_err(|e| SettingsError::Corrupt(format!("value of setting {key} is not JSON: {e}")))?;
    Ok(StoredRow { value, version, updated_at, is_default })
}

fn read_row(conn: &Connection, key: &str) -> Result<Option<StoredRow>, SettingsError> {
    let raw = conn
        .prepare_cached("SELECT value, version, updated_at, is_default FROM settings WHERE key = ?1")?
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .optional()?;
    raw.map(|(text, version, updated_at, is_default)| stored_row(key, text, version, updated_at, is_default))
        .transpose()
}

/// The version the API shows for a key and its row (`None` when the key is not visible,
/// see [`entry_of`]).
fn visible_version(key: &str, row: Option<&StoredRow>) -> Option<i64> {
    if catalogue::is_known(key) {
        return Some(row.map_or(0, |r| r.version));
    }
    match row {
        Some(r) if !r.is_default && catalogue::is_free_ui_key(key) => Some(r.version),
        _ => None,
    }
}

/// The entry the API shows for a key and its row, or `None` when the key is not visible
/// (unknown, or a free `ui.*` key never set or reset).
fn entry_of(key: &str, row: Option<StoredRow>) -> Option<SettingEntry> {
    if let Some(default) = catalogue::default_of(key) {
        return Some(match row {
            None => SettingEntry { key: key.to_owned(), value: default.clone(), default, version: 0, updated_at: None },
            Some(r) => SettingEntry {
                key: key.to_owned(),
                value: if r.is_default { default.clone() } else { r.value },
                default,
                version: r.version,
                updated_at: Some(r.updated_at),
            },
        });
    }
    match row {
        Some(r) if !r.is_default && catalogue::is_free_ui_key(key) => Some(SettingEntry {
            key: key.to_owned(),
            value: r.value,
            default: Value::Null,
            version: r.version,
            updated_at: Some(r.updated_at),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_pooled_connection_is_configured_for_durability() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::open(&dir.path().join("setup.db")).unwrap();
        // Hold several connections at once so the pool has to create fresh ones.
        let conns: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
        for conn in &conns {
            let pragma = |name: &str| -> String {
                conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                    .map(|v| match v {
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .unwrap()
            };
            assert_eq!(pragma("journal_mode"), "wal");
            assert_eq!(pragma("synchronous"), "2", "FULL");
            assert_eq!(pragma("foreign_keys"), "1");
            assert_eq!(pragma("busy_timeout"), "5000");
        }
    }
}
