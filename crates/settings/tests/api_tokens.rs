//! Black-box tests of the API-token store on real temporary SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::thread;

use gateway_core::{ErrorCode, FieldError, Reason, Role};
use serde_json::json;
use settings::{ADMIN_TOKEN_FILE, SettingsError, SettingsStore, TOKEN_PREFIX, token_hash};
use tempfile::TempDir;

fn fresh() -> (TempDir, SettingsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SettingsStore::open(&dir.path().join("setup.db")).unwrap();
    (dir, store)
}

#[test]
fn create_verify_list_revoke() {
    let (_dir, store) = fresh();
    assert_eq!(store.token_count().unwrap(), 0);
    let roles = [("viewer-1", Role::Viewer), ("ops", Role::Operator), ("Data_Service.2", Role::Service)];
    let mut tokens = Vec::new();
    for (name, role) in roles {
        let token = store.create_token(name, role).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX), "{token}");
        tokens.push(token);
    }
    assert_eq!(store.token_count().unwrap(), 3);

    for ((name, role), token) in roles.iter().zip(&tokens) {
        let info = store.verify_token(token).unwrap().unwrap();
        assert_eq!((info.name.as_str(), info.role), (*name, *role));
        assert!(info.last_used_at.is_some(), "use is recorded");
        // Within a minute, a second use does not rewrite the timestamp.
        assert_eq!(store.verify_token(token).unwrap().unwrap().last_used_at, info.last_used_at);
    }
    let rejected = [
        String::new(),
        "x".into(),
        format!("{}x", tokens[0]),
        tokens[0][..tokens[0].len() - 1].to_string(),
        tokens[0].to_uppercase(),
        token_hash(&tokens[0]),
        "a".repeat(10_000),
    ];
    for token in &rejected {
        assert_eq!(store.verify_token(token).unwrap(), None, "{token:.40}");
    }

    let list = store.list_tokens().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Data_Service.2", "ops", "viewer-1"]);
    for info in &list {
        assert!(info.created_at.ends_with('Z') && info.last_used_at.is_some());
        let wire = serde_json::to_value(info).unwrap();
        let keys: Vec<&str> = wire.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["created_at", "last_used_at", "name", "role"]);
    }
    assert_eq!(serde_json::to_value(&list[1]).unwrap()["role"], json!("operator"));

    store.revoke_token("ops").unwrap();
    assert_eq!(store.verify_token(&tokens[1]).unwrap(), None);
    assert!(store.verify_token(&tokens[0]).unwrap().is_some());
    assert_eq!(store.token_count().unwrap(), 2);
    assert!(matches!(store.revoke_token("ops"), Err(SettingsError::TokenNotFound(n)) if n == "ops"));
    assert_eq!(store.revoke_token("ops").unwrap_err().problem().code(), ErrorCode::NotFound);
}

#[test]
fn names_are_unique_and_validated() {
    let (_dir, store) = fresh();
    store.create_token("ci", Role::Viewer).unwrap();
    let err = store.create_token("ci", Role::Operator).unwrap_err();
    assert!(matches!(&err, SettingsError::TokenExists(n) if n == "ci"));
    assert_eq!(err.problem(), gateway_core::Problem::invalid("name", Reason::Duplicate { value: "ci".into() }));
    // The duplicate attempt did not replace the first token's role.
    assert_eq!(store.list_tokens().unwrap()[0].role, Role::Viewer);

    let bad = [
        ("", Reason::TooShort { min: 1 }),
        ("has space", Reason::Malformed),
        ("-lead", Reason::Malformed),
        ("x/y", Reason::Malformed),
    ];
    for (name, reason) in bad {
        match store.create_token(name, Role::Viewer) {
            Err(SettingsError::Invalid(e)) => assert_eq!(e, FieldError::new("name", reason), "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    let too_long = "n".repeat(65);
    assert!(matches!(store.create_token(&too_long, Role::Viewer), Err(SettingsError::Invalid(_))));
    store.create_token(&"n".repeat(64), Role::Viewer).unwrap();
    assert_eq!(store.token_count().unwrap(), 2);
}

/// Reads every file of the database (main file, WAL, shared memory) as bytes.
fn raw_database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("setup.db")) {
            all.extend(fs::read(&path).unwrap());
        }
    }
    all
}

#[test]
fn only_hashes_are_stored() {
    let (dir, store) = fresh();
    let token = store.create_token("secret-holder", Role::Operator).unwrap();
    assert!(store.verify_token(&token).unwrap().is_some());

    let bytes = raw_database_bytes(dir.path());
    assert!(!bytes.is_empty());
    let secret = &token[TOKEN_PREFIX.len()..];
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "plaintext token found in the database files"
    );
    let hash = token_hash(&token);
    assert!(bytes.windows(hash.len()).any(|w| w == hash.as_bytes()), "the hash itself is stored");

    let raw = rusqlite::Connection::open(dir.path().join("setup.db")).unwrap();
    let stored: String =
        raw.query_row("SELECT token_hash FROM api_tokens WHERE name = 'secret-holder'", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, hash);
    assert_eq!(stored.len(), 64);
}

#[test]
fn changes_by_another_process_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("setup.db");
    let server = SettingsStore::open(&path).unwrap();
    let cli = SettingsStore::open(&path).unwrap();
    assert!(server.verify_token("orch_nothing").unwrap().is_none());
    let token = cli.create_token("late", Role::Viewer).unwrap();
    assert_eq!(server.verify_token(&token).unwrap().map(|i| i.role), Some(Role::Viewer));
    cli.revoke_token("late").unwrap();
    assert!(server.verify_token(&token).unwrap().is_none());
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ensure_admin_token_writes_a_private_file_exactly_once() {
    let (dir, store) = fresh();
    let data_dir = dir.path().join("data");
    let file = data_dir.join(ADMIN_TOKEN_FILE);

    let token = store.ensure_admin_token(&data_dir).unwrap().unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{token}\n"));
    #[cfg(unix)]
    assert_eq!(mode_of(&file), 0o600);
    let info = store.verify_token(&token).unwrap().unwrap();
    assert_eq!((info.name.as_str(), info.role), ("admin", Role::Operator));

    // Second start: nothing new, the file is left alone.
    assert_eq!(store.ensure_admin_token(&data_dir).unwrap(), None);
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{token}\n"));
    assert_eq!(store.token_count().unwrap(), 1);

    // Still none once other tokens exist, even without `admin`.
    store.create_token("other", Role::Viewer).unwrap();
    store.revoke_token("admin").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    assert_eq!(store.ensure_admin_token(&elsewhere).unwrap(), None);
    assert!(!elsewhere.join(ADMIN_TOKEN_FILE).exists());
    let entries: Vec<_> = fs::read_dir(&data_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, [ADMIN_TOKEN_FILE], "no temporary file left behind");
}

#[cfg(unix)]
#[test]
fn a_stale_world_readable_token_file_is_replaced_by_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = fresh();
    let file = dir.path().join(ADMIN_TOKEN_FILE);
    fs::write(&file, "old token\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let token = store.ensure_admin_token(dir.path()).unwrap().unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{token}\n"));
    assert_eq!(mode_of(&file), 0o600);
}

#[test]
fn a_failed_token_file_write_creates_no_token() {
    let (dir, store) = fresh();
    let not_a_dir = dir.path().join("plain-file");
    fs::write(&not_a_dir, "").unwrap();
    assert!(matches!(store.ensure_admin_token(&not_a_dir), Err(SettingsError::Io { .. })));
    assert_eq!(store.token_count().unwrap(), 0);
    assert!(store.ensure_admin_token(dir.path()).unwrap().is_some());
}

#[test]
fn concurrent_first_starts_create_one_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("setup.db");
    let stores: Vec<SettingsStore> = (0..4).map(|_| SettingsStore::open(&path).unwrap()).collect();
    let created: Vec<Option<String>> = thread::scope(|scope| {
        let handles: Vec<_> =
            stores.iter().map(|s| scope.spawn(|| s.ensure_admin_token(dir.path()).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let tokens: Vec<&String> = created.iter().flatten().collect();
    assert_eq!(tokens.len(), 1, "{created:?}");
    assert_eq!(fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap(), format!("{}\n", tokens[0]));
    assert_eq!(stores[0].token_count().unwrap(), 1);
}

#[test]
fn token_hashes_are_what_a_primary_publishes_and_never_the_tokens() {
    let (_dir, store) = fresh();
    let a = store.create_token("ops", Role::Operator).unwrap();
    let b = store.create_token("viewer", Role::Viewer).unwrap();
    let hashes = store.token_hashes().unwrap();
    let listed: Vec<(String, &str, Role)> = hashes.iter().map(|(h, i)| (h.clone(), i.name.as_str(), i.role)).collect();
    assert_eq!(listed, vec![(token_hash(&a), "ops", Role::Operator), (token_hash(&b), "viewer", Role::Viewer)]);
    assert!(hashes.iter().all(|(h, _)| h != &a && h != &b));
    store.revoke_token("ops").unwrap();
    assert_eq!(store.token_hashes().unwrap().len(), 1);
}
