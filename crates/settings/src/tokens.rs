//! API tokens (SPEC §3.2): creation, listing, revocation and verification. Only the SHA-256
//! hash of a token is stored; the plaintext is shown once, at creation.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use gateway_core::{FieldError, Reason, Role};
use rand::RngCore as _;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{SettingsError, SettingsStore};

/// Prefix of every token, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "orch_";
/// Longest token name.
pub const MAX_TOKEN_NAME_LEN: usize = 64;
/// Name of the token created on first start.
pub const ADMIN_TOKEN_NAME: &str = "admin";
/// File (inside the data directory) the first admin token is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Longest string [`SettingsStore::verify_token`] will hash; anything longer is not a token.
const MAX_PRESENTED_LEN: usize = 256;
/// `last_used_at` is written at most this often per token.
const LAST_USED_GRANULARITY: time::Duration = time::Duration::seconds(60);

/// An API token as listed: never its hash or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Unique name.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was last accepted (RFC 3339, updated at most once a minute); `null` if never.
    pub last_used_at: Option<String>,
}

/// Validates a token name: 1–64 characters, a letter or digit first, then letters, digits,
/// `_`, `-` or `.`. Errors name the field `name`.
pub fn validate_token_name(name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new("name", Reason::TooShort { min: 1 }));
    }
    if name.chars().count() > MAX_TOKEN_NAME_LEN {
        return Err(FieldError::new("name", Reason::TooLong { max: MAX_TOKEN_NAME_LEN }));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        Ok(())
    } else {
        Err(FieldError::new("name", Reason::Malformed))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The stored form of a token: lowercase hex SHA-256 of its UTF-8 bytes.
pub fn token_hash(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()))
}

fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", to_hex(&bytes))
}

fn token_info(
    name: String,
    role: &str,
    created_at: String,
    last_used_at: Option<String>,
) -> Result<TokenInfo, SettingsError> {
    let role =
        Role::parse(role).ok_or_else(|| SettingsError::Corrupt(format!("token {name} has unknown role {role}")))?;
    Ok(TokenInfo { name, role, created_at, last_used_at })
}

fn insert_token(conn: &Connection, name: &str, role: Role) -> Result<String, SettingsError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM api_tokens WHERE name = ?1")?
        .query_row([name], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Err(SettingsError::TokenExists(name.to_owned()));
    }
    let token = generate_token();
    conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, NULL)",
        params![name, role.as_str(), token_hash(&token), gateway_core::now_rfc3339()],
    )?;
    log::info!("API token {name} ({role}) created");
    Ok(token)
}

/// Writes `contents` to `path` readable by the owner only: a temporary file created that way
/// (mode 0600; on Windows a DACL for the current user alone), fsynced, then renamed over `path`.
fn write_secret_file(path: &Path, contents: &str) -> Result<(), SettingsError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SettingsError + '_ {
        move |source| SettingsError::Io { path: path.to_owned(), source }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".{ADMIN_TOKEN_FILE}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    let mut file = crate::os::create_owner_only(&tmp).map_err(io(&tmp))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Err(e) = crate::os::sync_dir(dir) {
        log::warn!("cannot fsync {}: {e}", dir.display());
    }
    Ok(())
}

impl SettingsStore {
    /// Creates a token and returns its plaintext (shown once; only its SHA-256 hash is stored).
    /// The name must be unique ([`SettingsError::TokenExists`]) and valid
    /// ([`validate_token_name`]).
    pub fn create_token(&self, name: &str, role: Role) -> Result<String, SettingsError> {
        validate_token_name(name)?;
        self.write(|tx| insert_token(tx, name, role))
    }

    /// Every token, by name: name, role and timestamps, never the hash.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, SettingsError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let role: String = row.get(1)?;
            out.push(token_info(row.get(0)?, &role, row.get(2)?, row.get(3)?)?);
        }
        Ok(out)
    }

    /// Deletes a token; it stops working at once, in every process using this database.
    pub fn revoke_token(&self, name: &str) -> Result<(), SettingsError> {
        let deleted = self.write(|tx| Ok(tx.execute("DELETE FROM api_tokens WHERE name = ?1", [name])?))?;
        if deleted == 0 {
            return Err(SettingsError::TokenNotFound(name.to_owned()));
        }
        log::info!("API token {name} revoked");
        Ok(())
    }

    /// Checks a presented token: `Some` with its info when valid, `None` otherwise.
    ///
    /// The presented token is hashed and looked up by hash (one indexed query, every call, so
    /// tokens created or revoked by another process count at once); the stored hash is then
    /// compared with [`ConstantTimeEq`]. Looking up by hash leaks no timing information about
    /// any stored token. `last_used_at` is refreshed at most once a minute per token; a failure
    /// to record it is logged and does not fail the check.
    pub fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>, SettingsError> {
        if token.is_empty() || token.len() > MAX_PRESENTED_LEN {
            return Ok(None);
        }
        let hash = token_hash(token);
        let conn = self.conn()?;
        let found = conn
            .prepare_cached(
                "SELECT name, role, created_at, last_used_at, token_hash FROM api_tokens WHERE token_hash = ?1",
            )?
            .query_row([&hash], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        let Some((name, role, created_at, last_used_at, stored)) = found else {
            return Ok(None);
        };
        if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        let mut info = token_info(name, &role, created_at, last_used_at)?;

        let now = time::OffsetDateTime::now_utc();
        let cutoff = gateway_core::format_rfc3339(now - LAST_USED_GRANULARITY);
        if info.last_used_at.as_deref().is_none_or(|at| at < cutoff.as_str()) {
            let now = gateway_core::format_rfc3339(now);
            let updated = conn.execute(
                "UPDATE api_tokens SET last_used_at = ?1 WHERE name = ?2 AND (last_used_at IS NULL OR last_used_at < ?3)",
                params![now, info.name, cutoff],
            );
            match updated {
                Ok(_) => info.last_used_at = Some(now),
                Err(e) => log::warn!("cannot record the use of API token {}: {e}", info.name),
            }
        }
        Ok(Some(info))
    }

    /// Every token's stored hash with its identity, for a cluster primary to publish to its
    /// edges (SPEC §13): hashes and roles only, never a token.
    pub fn token_hashes(&self) -> Result<Vec<(String, TokenInfo)>, SettingsError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT token_hash, name, role, created_at, last_used_at FROM api_tokens ORDER BY name")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let role: String = row.get(2)?;
            out.push((row.get(0)?, token_info(row.get(1)?, &role, row.get(3)?, row.get(4)?)?));
        }
        Ok(out)
    }

    /// How many tokens exist.
    pub fn token_count(&self) -> Result<usize, SettingsError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM api_tokens", [], |row| row.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// First start: when there are no tokens at all, creates the `admin` operator token, writes
    /// it to `data_dir/admin.token` (owner only — mode 0600, or a
    /// current-user DACL on Windows — created that way, replacing any stale file) and
    /// returns it; otherwise does nothing and returns `None`. The check, the insert and the file
    /// write happen inside one transaction, so two processes starting at once create one token,
    /// and a failed file write creates none.
    pub fn ensure_admin_token(&self, data_dir: &Path) -> Result<Option<String>, SettingsError> {
        self.write(|tx| {
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM api_tokens", [], |row| row.get(0))?;
            if n > 0 {
                return Ok(None);
            }
            let token = insert_token(tx, ADMIN_TOKEN_NAME, Role::Operator)?;
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            write_secret_file(&path, &format!("{token}\n"))?;
            log::info!("initial admin token written to {}", path.display());
            Ok(Some(token))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names() {
        let long = "a".repeat(MAX_TOKEN_NAME_LEN);
        let too_long = "a".repeat(MAX_TOKEN_NAME_LEN + 1);
        let cases: [(&str, Option<Reason>); 12] = [
            ("admin", None),
            ("CI-Bot_2", None),
            ("9lives", None),
            ("svc.data", None),
            (&long, None),
            ("", Some(Reason::TooShort { min: 1 })),
            (&too_long, Some(Reason::TooLong { max: 64 })),
            ("-x", Some(Reason::Malformed)),
            ("_x", Some(Reason::Malformed)),
            ("a b", Some(Reason::Malformed)),
            ("a/b", Some(Reason::Malformed)),
            ("árvíz", Some(Reason::Malformed)),
        ];
        for (name, want) in cases {
            assert_eq!(validate_token_name(name), want.map_or(Ok(()), |r| Err(FieldError::new("name", r))), "{name:?}");
        }
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let t = generate_token();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64, "{t}");
        assert_ne!(t, generate_token());
    }
}
