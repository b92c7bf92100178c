//! [`TokenVerifier`]: bearer tokens verified once and then trusted from memory until the
//! database changes — used by HTTP, WebSocket and SSE alike.
//!
//! "Changed" is SQLite's own `PRAGMA data_version`, read on a connection of the verifier's own
//! that never writes: its value changes whenever *another* connection commits — the store's pool
//! (a revocation through the API), or another process (`orchestrator token revoke`). It is read
//! at most once per [`TokenVerifier::RECHECK`], so a hot path costs a clock read and a map lookup,
//! and a revocation is effective within that. An entry is also dropped after `max_age`, so
//! `last_used_at` stays fresh (it is recorded at most once a minute anyway).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::SettingsError;
use crate::store::SettingsStore;
use crate::tokens::{TokenInfo, token_hash};

/// Verifies tokens against a [`SettingsStore`], remembering the ones it accepted.
pub struct TokenVerifier {
    store: SettingsStore,
    /// The watching connection, its last `data_version` and when it was read.
    watch: Mutex<Watch>,
    /// Accepted tokens by hash (never the token itself).
    entries: RwLock<HashMap<String, Cached>>,
    max_age: Duration,
}

struct Watch {
    conn: Connection,
    version: i64,
    read_at: Instant,
}

#[derive(Clone)]
struct Cached {
    info: TokenInfo,
    version: i64,
    verified_at: Instant,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// How often, at most, the database is asked whether anything was committed.
    pub const RECHECK: Duration = Duration::from_millis(1);
    /// Most entries kept (a full cache is emptied; tokens are few).
    const MAX_ENTRIES: usize = 1024;

    /// A verifier over `store` trusting an accepted token for at most `max_age` (zero: every
    /// request asks the store).
    pub fn new(store: SettingsStore, max_age: Duration) -> Result<TokenVerifier, SettingsError> {
        let conn = store.watcher()?;
        let version = data_version(&conn)?;
        let watch = Mutex::new(Watch { conn, version, read_at: Instant::now() });
        Ok(TokenVerifier { store, watch, entries: RwLock::default(), max_age })
    }

    /// The database's `data_version`, read again when the last read is older than `RECHECK`
    /// (or when `fresh`). A failed read counts as a change.
    fn version(&self, fresh: bool) -> i64 {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if fresh || watch.read_at.elapsed() >= Self::RECHECK {
            watch.version = data_version(&watch.conn).unwrap_or(watch.version.wrapping_add(1));
            watch.read_at = Instant::now();
        }
        watch.version
    }

    /// The token's identity if it was accepted since the last change of the database, without
    /// asking the store (cheap enough for an async thread).
    pub fn cached(&self, token: &str) -> Option<TokenInfo> {
        if self.max_age.is_zero() {
            return None;
        }
        let key = token_hash(token);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let cached = entries.get(&key)?;
        (cached.verified_at.elapsed() < self.max_age && cached.version == self.version(false))
            .then(|| cached.info.clone())
    }

    /// The token's identity: from memory when still valid, else from the store (blocking: call
    /// it off the async threads). Unknown tokens are never remembered.
    pub fn verify(&self, token: &str) -> Result<Option<TokenInfo>, SettingsError> {
        if let Some(info) = self.cached(token) {
            return Ok(Some(info));
        }
        // Read before asking: a change committed meanwhile makes the entry stale at once.
        let version = self.version(true);
        let info = self.store.verify_token(token)?;
        if let Some(info) = &info
            && !self.max_age.is_zero()
        {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(token_hash(token), Cached { info: info.clone(), version, verified_at: Instant::now() });
        }
        Ok(info)
    }
}

fn data_version(conn: &Connection) -> Result<i64, SettingsError> {
    Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gateway_core::Role;

    /// `verify` that also says whether the store was asked.
    fn check(v: &TokenVerifier, token: &str) -> (Option<String>, bool) {
        match v.cached(token) {
            Some(info) => (Some(info.name), false),
            None => (v.verify(token).unwrap().map(|i| i.name), true),
        }
    }

    #[test]
    fn accepted_tokens_are_trusted_until_any_commit_by_this_or_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("setup.db");
        let store = SettingsStore::open(&db).unwrap();
        // A second store on the same file stands for another process (the CLI).
        let cli = SettingsStore::open(&db).unwrap();
        let v = TokenVerifier::new(store.clone(), Duration::from_secs(60)).unwrap();
        let token = store.create_token("dash", Role::Viewer).unwrap();
        // A fresh look at `data_version`, as happens at least every RECHECK.
        let settle = || {
            v.version(true);
        };

        // The first use records last_used_at (a commit), so the second asks the store again;
        // from then on the store is not asked while nothing changes.
        assert_eq!(check(&v, &token), (Some("dash".into()), true));
        settle();
        assert_eq!(check(&v, &token), (Some("dash".into()), true));
        for _ in 0..3 {
            settle();
            assert_eq!(check(&v, &token), (Some("dash".into()), false));
        }
        // Unknown tokens are never remembered.
        assert_eq!(check(&v, "orch_nope"), (None, true));
        assert_eq!(check(&v, "orch_nope"), (None, true));

        // A commit by another process sends the next check to the store.
        cli.create_token("other", Role::Operator).unwrap();
        settle();
        assert_eq!(check(&v, &token), (Some("dash".into()), true), "re-verified after a foreign commit");
        // So does a commit through this store's own pool (the API revoking a token).
        store.revoke_token("dash").unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while v.cached(&token).is_some() {
            assert!(Instant::now() < deadline, "the revocation was not seen");
            std::thread::yield_now();
        }
        assert_eq!(check(&v, &token), (None, true));
    }

    #[test]
    fn a_zero_max_age_asks_the_store_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::open(&dir.path().join("setup.db")).unwrap();
        let v = TokenVerifier::new(store.clone(), Duration::ZERO).unwrap();
        let token = store.create_token("dash", Role::Viewer).unwrap();
        for _ in 0..3 {
            assert_eq!(check(&v, &token), (Some("dash".into()), true));
        }
    }
}
