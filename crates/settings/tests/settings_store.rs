//! Black-box tests of the settings store on real temporary SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;

use gateway_core::{FieldError, JsonType, Reason};
use serde_json::{Map, Value, json};
use settings::{SCHEMA_VERSION, SettingEntry, SettingsError, SettingsStore, catalogue};
use tempfile::TempDir;

fn fresh() -> (TempDir, SettingsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SettingsStore::open(&dir.path().join("setup.db")).unwrap();
    (dir, store)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn invalid(err: SettingsError) -> FieldError {
    match err {
        SettingsError::Invalid(e) => e,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn versions(store: &SettingsStore) -> BTreeMap<String, (Value, i64)> {
    store.list().unwrap().into_iter().map(|(k, e)| (k, (e.value, e.version))).collect()
}

#[test]
fn a_fresh_store_lists_every_catalogue_key_at_its_default() {
    let (_dir, store) = fresh();
    let list = store.list().unwrap();
    assert_eq!(list.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut keys: Vec<_> = catalogue::keys().collect();
        keys.sort_unstable();
        keys
    });
    for (key, entry) in &list {
        let default = catalogue::default_of(key).unwrap();
        assert_eq!(
            entry,
            &SettingEntry { key: key.clone(), value: default.clone(), default, version: 0, updated_at: None }
        );
        assert_eq!(&store.get(key).unwrap(), entry);
    }
    let wire = serde_json::to_value(&list["default_timeframe"]).unwrap();
    assert_eq!(
        wire,
        json!({"key": "default_timeframe", "value": "H1", "default": "H1", "version": 0, "updated_at": null})
    );
}

#[test]
fn unknown_keys_are_not_found() {
    let (_dir, store) = fresh();
    for key in ["theme", "ui.never_set", "UI.language", "", "ui.", "symbols "] {
        assert!(matches!(store.get(key), Err(SettingsError::NotFound(k)) if k == key), "{key:?}");
        assert!(matches!(store.reset(key, None), Err(SettingsError::NotFound(k)) if k == key), "{key:?}");
    }
}

#[test]
fn put_validates_and_names_the_field() {
    let (_dir, store) = fresh();
    let cases: Vec<(&str, Value, &str, Reason)> = vec![
        ("symbols", json!([]), "symbols", Reason::TooShort { min: 1 }),
        ("symbols", json!(["EURUSD", "EUR USD"]), "symbols[1]", Reason::InvalidSymbol),
        ("symbols", json!(["A", "B", "A"]), "symbols[2]", Reason::Duplicate { value: "A".into() }),
        ("timeframes", json!(["M1", "X9"]), "timeframes[1]", Reason::InvalidTimeframe),
        ("default_timeframe", json!("H5"), "default_timeframe", Reason::InvalidTimeframe),
        ("risk.max_volume", json!(0), "risk.max_volume", Reason::NotPositive),
        ("risk.max_volume", json!("2"), "risk.max_volume", Reason::WrongType { expected: JsonType::Number }),
        ("ui.language", json!("de"), "ui.language", Reason::NotOneOf { allowed: "hu, en".into() }),
        ("theme", json!("dark"), "theme", Reason::UnknownKey),
        ("ui.bad key", json!(1), "ui.bad key", Reason::Malformed),
    ];
    let before = versions(&store);
    for (key, value, field, reason) in cases {
        let want = FieldError::new(field, reason);
        assert_eq!(invalid(store.put(key, value.clone(), None).unwrap_err()), want, "put {key}");
        let batch = obj(json!({ key: value, "ui.theme": "dark" }));
        assert_eq!(invalid(store.put_batch(&batch).unwrap_err()), want, "batch {key}");
    }
    assert_eq!(versions(&store), before, "a rejected write changed something");
}

#[test]
fn round_trip_and_persistence_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/setup.db");
    let written: Vec<(&str, Value)> = vec![
        ("symbols", json!(["BTCUSD", "US500.cash"])),
        ("timeframes", json!(["M1", "H1", "D1"])),
        ("default_timeframe", json!("D1")),
        ("risk.max_volume", json!(2.5)),
        ("ui.language", json!("en")),
        ("ui.layout", json!({"panels": ["ticks", "log"], "width": 1200, "dark": true, "note": "árvíztűrő"})),
    ];
    let expected: BTreeMap<String, SettingEntry> = {
        let store = SettingsStore::open(&path).unwrap();
        for (key, value) in &written {
            let entry = store.put(key, value.clone(), None).unwrap();
            assert_eq!(&entry.value, value);
            assert_eq!(entry.version, 1);
            assert!(entry.updated_at.as_deref().is_some_and(|t| t.ends_with('Z')));
        }
        store.list().unwrap()
    };
    for _ in 0..3 {
        let store = SettingsStore::open(&path).unwrap();
        assert_eq!(store.list().unwrap(), expected);
        for (key, value) in &written {
            assert_eq!(&store.get(key).unwrap().value, value);
        }
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let user_version: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(user_version, SCHEMA_VERSION);
    let mode: String = raw.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("setup.db");
    drop(SettingsStore::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(raw);
    match SettingsStore::open(&path) {
        Err(SettingsError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn open_fails_cleanly_when_the_path_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(SettingsStore::open(dir.path()).is_err());
}

#[test]
fn versions_increase_with_every_write() {
    let (_dir, store) = fresh();
    let mut last_updated = String::new();
    for (i, volume) in [1.5, 2.0, 2.0, 3.0].into_iter().enumerate() {
        let entry = store.put("risk.max_volume", json!(volume), None).unwrap();
        assert_eq!(entry.version, i64::try_from(i).unwrap() + 1);
        let updated = entry.updated_at.unwrap();
        assert!(updated >= last_updated);
        last_updated = updated;
    }
    assert_eq!(store.reset("risk.max_volume", None).unwrap().version, 5);
    assert_eq!(store.put("risk.max_volume", json!(4), None).unwrap().version, 6);
    let batch = store.put_batch(&obj(json!({"risk.max_volume": 5, "ui.language": "en"}))).unwrap();
    assert_eq!(batch["risk.max_volume"].version, 7);
    assert_eq!(batch["ui.language"].version, 1);
}

#[test]
fn if_match() {
    let (_dir, store) = fresh();
    // (if_match, expected result: Ok(new version) or Err(current version))
    let steps: [(Option<i64>, Result<i64, i64>); 7] = [
        (Some(1), Err(0)),
        (Some(0), Ok(1)),
        (Some(0), Err(1)),
        (Some(1), Ok(2)),
        (None, Ok(3)),
        (Some(2), Err(3)),
        (Some(3), Ok(4)),
    ];
    for (i, (if_match, want)) in steps.into_iter().enumerate() {
        let value = json!(["EURUSD", format!("SYM{i}")]);
        match (store.put("symbols", value.clone(), if_match), want) {
            (Ok(entry), Ok(version)) => {
                assert_eq!((entry.version, entry.value), (version, value), "step {i}");
            }
            (Err(SettingsError::VersionMismatch { key, current }), Err(version)) => {
                assert_eq!((key.as_str(), current), ("symbols", version), "step {i}");
            }
            (got, want) => panic!("step {i}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(store.get("symbols").unwrap().version, 4);
    // Reset honours If-Match too, and the version keeps counting (no ABA).
    assert!(matches!(store.reset("symbols", Some(3)), Err(SettingsError::VersionMismatch { current: 4, .. })));
    let reset = store.reset("symbols", Some(4)).unwrap();
    assert_eq!(reset.version, 5);
    assert_eq!(reset.value, catalogue::default_of("symbols").unwrap());
    assert!(matches!(
        store.put("symbols", json!(["X"]), Some(0)),
        Err(SettingsError::VersionMismatch { current: 5, .. })
    ));
    // Free ui.* keys: a never-set key is version 0.
    assert!(matches!(store.put("ui.x", json!(1), Some(7)), Err(SettingsError::VersionMismatch { current: 0, .. })));
    assert_eq!(store.put("ui.x", json!(1), Some(0)).unwrap().version, 1);
}

#[test]
fn reset_returns_to_the_default_and_keeps_counting() {
    let (_dir, store) = fresh();
    store.put("ui.language", json!("en"), None).unwrap();
    store.put("ui.language", json!("hu"), None).unwrap();
    store.put("ui.language", json!("en"), None).unwrap();
    let entry = store.reset("ui.language", None).unwrap();
    assert_eq!((entry.value, entry.default.clone(), entry.version), (json!("hu"), json!("hu"), 4));
    assert!(entry.updated_at.is_some());
    let got = store.get("ui.language").unwrap();
    assert_eq!((got.value, got.version), (json!("hu"), 4));
    assert_eq!(store.values(&["ui.language".to_string()]).unwrap()["ui.language"], json!("hu"));
    // Resetting a never-set key is a write too.
    assert_eq!(store.reset("risk.max_volume", None).unwrap().version, 1);
    assert_eq!(store.get("risk.max_volume").unwrap().value, json!(1.0));
    assert_eq!(store.put("ui.language", json!("en"), Some(4)).unwrap().version, 5);
}

#[test]
fn free_ui_keys() {
    let (dir, store) = fresh();
    let value = json!({"columns": ["symbol", "bid", "ask"], "sort": {"by": "symbol", "desc": false}});
    let entry = store.put("ui.tick_table.layout-v2", value.clone(), None).unwrap();
    assert_eq!((entry.value.clone(), entry.default.clone(), entry.version), (value.clone(), Value::Null, 1));
    assert_eq!(store.get("ui.tick_table.layout-v2").unwrap(), entry);
    assert_eq!(store.list().unwrap().get("ui.tick_table.layout-v2"), Some(&entry));
    assert_eq!(store.list().unwrap().len(), catalogue::keys().count() + 1);

    // Exactly 64 KiB of compact JSON is accepted, one byte more is not.
    let limit = catalogue::UI_MAX_VALUE_BYTES;
    let at_limit = json!("x".repeat(limit - 2));
    assert_eq!(store.put("ui.big", at_limit.clone(), None).unwrap().value, at_limit);
    let over = json!("x".repeat(limit - 1));
    assert_eq!(
        invalid(store.put("ui.big", over.clone(), None).unwrap_err()),
        FieldError::new("ui.big", Reason::TooLong { max: limit })
    );
    let batch_err = store.put_batch(&obj(json!({"ui.big": over, "ui.small": 1}))).unwrap_err();
    assert_eq!(invalid(batch_err).field, "ui.big");
    assert!(matches!(store.get("ui.small"), Err(SettingsError::NotFound(_))));
    let key_at_limit = format!("ui.{}", "k".repeat(catalogue::UI_MAX_KEY_LEN - 3));
    store.put(&key_at_limit, json!(true), None).unwrap();
    let key_over = format!("ui.{}", "k".repeat(catalogue::UI_MAX_KEY_LEN - 2));
    assert_eq!(
        invalid(store.put(&key_over, json!(true), None).unwrap_err()).reason,
        Reason::TooLong { max: catalogue::UI_MAX_KEY_LEN }
    );

    // A reset free key disappears; setting it again counts on from its last version.
    let reset = store.reset("ui.big", None).unwrap();
    assert_eq!((reset.value, reset.version), (Value::Null, 2));
    assert!(matches!(store.get("ui.big"), Err(SettingsError::NotFound(_))));
    assert!(!store.list().unwrap().contains_key("ui.big"));
    assert!(matches!(store.reset("ui.big", None), Err(SettingsError::NotFound(_))));
    assert!(matches!(store.put("ui.big", json!(1), Some(2)), Err(SettingsError::VersionMismatch { current: 0, .. })));
    assert_eq!(store.put("ui.big", json!(1), Some(0)).unwrap().version, 3);

    // Persisted like any other key.
    let path = dir.path().join("setup.db");
    drop(store);
    let store = SettingsStore::open(&path).unwrap();
    assert_eq!(store.get("ui.tick_table.layout-v2").unwrap().value, value);
    assert_eq!(store.get("ui.big").unwrap().version, 3);
}

#[test]
fn an_empty_batch_is_invalid() {
    let (_dir, store) = fresh();
    assert_eq!(
        invalid(store.put_batch(&Map::new()).unwrap_err()),
        FieldError::new("body", Reason::TooShort { min: 1 })
    );
}

#[test]
fn a_batch_is_all_or_nothing() {
    let (_dir, store) = fresh();
    store.put("risk.max_volume", json!(3), None).unwrap();
    store.put("ui.theme", json!("dark"), None).unwrap();
    let before = versions(&store);
    let bad_batches = [
        json!({"symbols": ["EURUSD"], "risk.max_volume": 500, "ui.theme": "light"}),
        json!({"symbols": ["EURUSD"], "nonsense": 1}),
        json!({"ui.theme": "light", "ui.language": "fr"}),
        json!({"timeframes": ["M1", "M5"], "ui.theme": "light"}), // drops default_timeframe H1
        json!({"default_timeframe": "W1", "risk.max_volume": 2}),
    ];
    for batch in bad_batches {
        let err = store.put_batch(&obj(batch.clone())).unwrap_err();
        assert!(matches!(err, SettingsError::Invalid(_)), "{batch}: {err:?}");
        assert_eq!(versions(&store), before, "{batch} changed something");
    }
    let good = store
        .put_batch(&obj(json!({"symbols": ["EURUSD"], "risk.max_volume": 50, "ui.theme": "light", "ui.new": [1]})))
        .unwrap();
    let got: BTreeMap<&str, i64> = good.iter().map(|(k, e)| (k.as_str(), e.version)).collect();
    assert_eq!(got, BTreeMap::from([("risk.max_volume", 2), ("symbols", 1), ("ui.new", 1), ("ui.theme", 2)]));
    assert_eq!(store.get("risk.max_volume").unwrap().value, json!(50));
}

#[test]
fn cross_key_rules() {
    let not_listed = || FieldError::new("default_timeframe", Reason::NotInSetting { setting: "timeframes".into() });
    enum Op {
        Put(&'static str, Value),
        Batch(Value),
        Reset(&'static str),
    }
    // (setup, operation, expected error)
    let cases: Vec<(Vec<Op>, Op, Option<FieldError>)> = vec![
        (vec![], Op::Put("default_timeframe", json!("M1")), None),
        (vec![], Op::Put("default_timeframe", json!("W1")), Some(not_listed())),
        (vec![], Op::Put("timeframes", json!(["M1", "H1"])), None),
        (vec![], Op::Put("timeframes", json!(["M1", "H4"])), Some(not_listed())),
        (vec![], Op::Batch(json!({"timeframes": ["M1", "H4"], "default_timeframe": "H4"})), None),
        (vec![], Op::Batch(json!({"timeframes": ["W1"], "default_timeframe": "W1"})), None),
        (vec![], Op::Batch(json!({"timeframes": ["M1", "H4"], "default_timeframe": "D1"})), Some(not_listed())),
        (vec![Op::Put("timeframes", json!(["W1", "H1"]))], Op::Put("default_timeframe", json!("W1")), None),
        (
            vec![Op::Batch(json!({"timeframes": ["W1"], "default_timeframe": "W1"}))],
            Op::Reset("timeframes"),
            Some(not_listed()),
        ),
        (
            vec![Op::Batch(json!({"timeframes": ["W1"], "default_timeframe": "W1"}))],
            Op::Reset("default_timeframe"),
            Some(not_listed()),
        ),
        (
            vec![Op::Batch(json!({"timeframes": ["W1", "M5"], "default_timeframe": "W1"}))],
            Op::Batch(json!({"default_timeframe": "M5"})),
            None,
        ),
        (vec![Op::Put("timeframes", json!(["M1", "H1", "H4"]))], Op::Reset("timeframes"), None),
    ];
    let run = |store: &SettingsStore, op: &Op| -> Result<(), SettingsError> {
        match op {
            Op::Put(k, v) => store.put(k, v.clone(), None).map(drop),
            Op::Batch(v) => store.put_batch(&obj(v.clone())).map(drop),
            Op::Reset(k) => store.reset(k, None).map(drop),
        }
    };
    for (i, (setup, op, want)) in cases.into_iter().enumerate() {
        let (_dir, store) = fresh();
        for s in &setup {
            run(&store, s).unwrap();
        }
        let before = versions(&store);
        match (run(&store, &op), want) {
            (Ok(()), None) => {}
            (Err(SettingsError::Invalid(got)), Some(want)) => {
                assert_eq!(got, want, "case {i}");
                assert_eq!(versions(&store), before, "case {i}: a rejected change wrote something");
            }
            (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
        }
        let values = store.values(&["timeframes".into(), "default_timeframe".into()]).unwrap();
        let timeframes = values["timeframes"].as_array().unwrap();
        assert!(timeframes.contains(&values["default_timeframe"]), "case {i}: {values:?}");
    }
}

#[test]
fn values_are_the_effective_ones() {
    let (_dir, store) = fresh();
    store.put("symbols", json!(["EURUSD"]), None).unwrap();
    store.put("ui.theme", json!("dark"), None).unwrap();
    let keys: Vec<String> = ["symbols", "timeframes", "ui.theme", "ui.absent", "nonsense"].map(String::from).to_vec();
    let values = store.values(&keys).unwrap();
    assert_eq!(
        Value::Object(values),
        json!({"symbols": ["EURUSD"], "timeframes": ["M1", "M5", "M15", "H1", "H4", "D1"], "ui.theme": "dark"})
    );
    assert!(store.values(&[]).unwrap().is_empty());
}

/// Several threads on two stores (as two processes would be) write concurrently: batches to a
/// shared key and their own keys, plus read-modify-write increments guarded by If-Match.
#[test]
fn concurrent_writers_lose_nothing() {
    const THREADS: usize = 6;
    const BATCHES: usize = 25;
    const INCREMENTS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("setup.db");
    let stores = [SettingsStore::open(&path).unwrap(), SettingsStore::open(&path).unwrap()];
    stores[0].put("ui.counter", json!(0), None).unwrap();

    thread::scope(|scope| {
        for t in 0..THREADS {
            let store = stores[t % 2].clone();
            scope.spawn(move || {
                for b in 0..BATCHES {
                    let own = format!("ui.thread{t}");
                    store.put_batch(&obj(json!({"ui.shared": [t, b], own: b}))).unwrap();
                }
                let mut done = 0;
                while done < INCREMENTS {
                    let current = store.get("ui.counter").unwrap();
                    let next = json!(current.value.as_i64().unwrap() + 1);
                    match store.put("ui.counter", next, Some(current.version)) {
                        Ok(_) => done += 1,
                        Err(SettingsError::VersionMismatch { .. }) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        }
    });

    let check = |store: &SettingsStore| {
        let total = i64::try_from(THREADS * BATCHES).unwrap();
        assert_eq!(store.get("ui.shared").unwrap().version, total);
        for t in 0..THREADS {
            let entry = store.get(&format!("ui.thread{t}")).unwrap();
            assert_eq!((entry.version, entry.value), (i64::try_from(BATCHES).unwrap(), json!(BATCHES - 1)));
        }
        let counter = store.get("ui.counter").unwrap();
        let increments = i64::try_from(THREADS * INCREMENTS).unwrap();
        assert_eq!((counter.value, counter.version), (json!(increments), increments + 1));
    };
    check(&stores[0]);
    check(&stores[1]);
    drop(stores);
    check(&SettingsStore::open(&path).unwrap());
}

#[test]
fn the_store_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<SettingsStore>();
    let (_dir, store) = fresh();
    let clone = store.clone();
    clone.put("ui.language", json!("en"), None).unwrap();
    assert_eq!(store.get("ui.language").unwrap().value, json!("en"));
    assert_eq!(store.path(), clone.path());
    assert!(Path::new(store.path()).exists());
}
