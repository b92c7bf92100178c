//! The settings catalogue: every known key with its type, default and validation, the rules for
//! free `ui.*` keys, and the cross-key rules checked against the merged (effective) view.
//!
//! Validation errors name the key as the field (`symbols`), or the list item for list values
//! (`symbols[2]`), with the precise [`Reason`].

use std::collections::HashSet;

use gateway_core::{FieldError, JsonType, Reason, Symbol, Timeframe};
use serde_json::{Map, Value, json};

/// Prefix of the keys the frontend may use freely.
pub const UI_PREFIX: &str = "ui.";
/// Longest `ui.*` key, in characters.
pub const UI_MAX_KEY_LEN: usize = 128;
/// Largest `ui.*` value, in bytes of compact JSON.
pub const UI_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most symbols the `symbols` setting may list.
pub const MAX_SYMBOLS: usize = 200;
/// Upper bound (inclusive) of `risk.max_volume`.
pub const MAX_VOLUME_LIMIT: f64 = 100.0;

/// One catalogue entry: a known key with its default and validator.
#[derive(Debug)]
pub struct KeySpec {
    /// The setting key.
    pub key: &'static str,
    /// The JSON type of its value.
    pub value_type: JsonType,
    /// What the setting does and what it accepts (English, for docs and OpenAPI).
    pub description: &'static str,
    default: fn() -> Value,
    check: fn(&str, &Value) -> Result<(), FieldError>,
}

impl KeySpec {
    /// The default value (used until the key is set, and after a reset).
    pub fn default_value(&self) -> Value {
        (self.default)()
    }

    /// Validates a value for this key on its own (cross-key rules are separate).
    pub fn validate(&self, value: &Value) -> Result<(), FieldError> {
        (self.check)(self.key, value)
    }
}

static SPECS: [KeySpec; 5] = [
    KeySpec {
        key: "symbols",
        value_type: JsonType::Array,
        description: "Symbols the platform trades and streams: 1–200 unique symbols.",
        default: || json!(["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]),
        check: check_symbols,
    },
    KeySpec {
        key: "timeframes",
        value_type: JsonType::Array,
        description: "Chart timeframes offered: a non-empty set of unique MT5 timeframes.",
        default: || json!(["M1", "M5", "M15", "H1", "H4", "D1"]),
        check: check_timeframes,
    },
    KeySpec {
        key: "default_timeframe",
        value_type: JsonType::String,
        description: "Timeframe selected by default; must be listed in `timeframes`.",
        default: || json!("H1"),
        check: check_default_timeframe,
    },
    KeySpec {
        key: "risk.max_volume",
        value_type: JsonType::Number,
        description: "Largest order volume in lots: 0 < x ≤ 100.",
        default: || json!(1.0),
        check: check_max_volume,
    },
    KeySpec {
        key: "ui.language",
        value_type: JsonType::String,
        description: "Language of the user interface: `hu` or `en`.",
        default: || json!("hu"),
        check: check_language,
    },
];

/// Keys whose values are related by a cross-key rule (see [`check_consistency`]).
pub const CROSS_KEYS: [&str; 2] = ["timeframes", "default_timeframe"];

/// Every catalogue entry.
pub fn specs() -> &'static [KeySpec] {
    &SPECS
}

/// The catalogue entry of a key.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    SPECS.iter().find(|s| s.key == key)
}

/// Every catalogue key, in catalogue order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.key)
}

/// Whether the key is in the catalogue.
pub fn is_known(key: &str) -> bool {
    spec(key).is_some()
}

/// The default value of a catalogue key.
pub fn default_of(key: &str) -> Option<Value> {
    spec(key).map(KeySpec::default_value)
}

/// Whether the key is a well-formed free `ui.*` key (not in the catalogue).
pub fn is_free_ui_key(key: &str) -> bool {
    !is_known(key) && check_free_ui_key(key).is_ok()
}

/// Validates a key and a value on their own: catalogue keys with their validator, free `ui.*`
/// keys by key syntax and value size, anything else is [`Reason::UnknownKey`].
pub fn validate(key: &str, value: &Value) -> Result<(), FieldError> {
    if let Some(spec) = spec(key) {
        return spec.validate(value);
    }
    check_free_ui_key(key)?;
    let size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(usize::MAX);
    if size > UI_MAX_VALUE_BYTES {
        return Err(FieldError::new(key, Reason::TooLong { max: UI_MAX_VALUE_BYTES }));
    }
    Ok(())
}

/// Checks the cross-key rules on the effective values of the catalogue keys (stored or
/// default, with a pending change applied):
/// `default_timeframe` must be listed in `timeframes`. A violation is always reported on the
/// field `default_timeframe` with [`Reason::NotInSetting`] `{ setting: "timeframes" }`, both when
/// `default_timeframe` is set to an unlisted timeframe and when a `timeframes` change would drop
/// the current `default_timeframe`: change both in one batch to move them together.
pub fn check_consistency(effective: &Map<String, Value>) -> Result<(), FieldError> {
    let (Some(Value::Array(timeframes)), Some(default)) =
        (effective.get("timeframes"), effective.get("default_timeframe"))
    else {
        return Ok(());
    };
    if timeframes.contains(default) {
        Ok(())
    } else {
        Err(FieldError::new("default_timeframe", Reason::NotInSetting { setting: "timeframes".into() }))
    }
}

/// The key as it may appear in an error message: overlong keys are cut short.
fn shown_key(key: &str) -> String {
    if key.chars().count() <= UI_MAX_KEY_LEN {
        key.to_owned()
    } else {
        let mut cut: String = key.chars().take(64).collect();
        cut.push('…');
        cut
    }
}

fn check_free_ui_key(key: &str) -> Result<(), FieldError> {
    let Some(rest) = key.strip_prefix(UI_PREFIX) else {
        return Err(FieldError::new(shown_key(key), Reason::UnknownKey));
    };
    if key.chars().count() > UI_MAX_KEY_LEN {
        return Err(FieldError::new(shown_key(key), Reason::TooLong { max: UI_MAX_KEY_LEN }));
    }
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(FieldError::new(shown_key(key), Reason::Malformed));
    }
    Ok(())
}

fn wrong_type(field: impl Into<String>, expected: JsonType) -> FieldError {
    FieldError::new(field, Reason::WrongType { expected })
}

/// An array of unique strings with `min..=max` items; each item is checked by `item`.
fn check_string_list(
    key: &str,
    value: &Value,
    min: usize,
    max: usize,
    item: fn(&str) -> Result<(), Reason>,
) -> Result<(), FieldError> {
    let Value::Array(items) = value else {
        return Err(wrong_type(key, JsonType::Array));
    };
    if items.len() < min {
        return Err(FieldError::new(key, Reason::TooShort { min }));
    }
    if items.len() > max {
        return Err(FieldError::new(key, Reason::TooLong { max }));
    }
    let mut seen = HashSet::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let field = || format!("{key}[{i}]");
        let Value::String(s) = v else {
            return Err(wrong_type(field(), JsonType::String));
        };
        item(s).map_err(|reason| FieldError::new(field(), reason))?;
        if !seen.insert(s.as_str()) {
            return Err(FieldError::new(field(), Reason::Duplicate { value: s.clone() }));
        }
    }
    Ok(())
}

fn check_symbols(key: &str, value: &Value) -> Result<(), FieldError> {
    check_string_list(key, value, 1, MAX_SYMBOLS, |s| Symbol::parse(s).map(drop))
}

fn check_timeframes(key: &str, value: &Value) -> Result<(), FieldError> {
    // A 22nd item is always a duplicate or not a timeframe, so no separate length limit.
    check_string_list(key, value, 1, usize::MAX, |s| Timeframe::parse(s).map(drop))
}

fn check_default_timeframe(key: &str, value: &Value) -> Result<(), FieldError> {
    let Value::String(s) = value else {
        return Err(wrong_type(key, JsonType::String));
    };
    Timeframe::parse(s).map(drop).map_err(|reason| FieldError::new(key, reason))
}

fn check_max_volume(key: &str, value: &Value) -> Result<(), FieldError> {
    let Some(x) = value.as_f64().filter(|_| value.is_number()) else {
        return Err(wrong_type(key, JsonType::Number));
    };
    if x <= 0.0 {
        Err(FieldError::new(key, Reason::NotPositive))
    } else if x > MAX_VOLUME_LIMIT {
        Err(FieldError::new(key, Reason::OutOfRange { min: "0".into(), max: "100".into() }))
    } else {
        Ok(())
    }
}

fn check_language(key: &str, value: &Value) -> Result<(), FieldError> {
    match value {
        Value::String(s) if s == "hu" || s == "en" => Ok(()),
        Value::String(_) => Err(FieldError::new(key, Reason::NotOneOf { allowed: "hu, en".into() })),
        _ => Err(wrong_type(key, JsonType::String)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn err(field: &str, reason: Reason) -> Result<(), FieldError> {
        Err(FieldError::new(field, reason))
    }

    #[test]
    fn validators() {
        let many_symbols: Vec<String> = (0..MAX_SYMBOLS).map(|i| format!("SYM{i}")).collect();
        let too_many: Vec<String> = (0..=MAX_SYMBOLS).map(|i| format!("SYM{i}")).collect();
        let all_timeframes: Vec<&str> = gateway_core::TIMEFRAMES.iter().map(|t| t.as_str()).collect();
        let big_ui = "x".repeat(UI_MAX_VALUE_BYTES - 2); // plus the two quotes = exactly the limit
        let too_big_ui = "x".repeat(UI_MAX_VALUE_BYTES - 1);
        let long_key = format!("ui.{}", "k".repeat(UI_MAX_KEY_LEN - 3));
        let too_long_key = format!("ui.{}", "k".repeat(UI_MAX_KEY_LEN - 2));
        let str_ = || Reason::WrongType { expected: JsonType::String };
        let cases: Vec<(&str, Value, Result<(), FieldError>)> = vec![
            // symbols
            ("symbols", json!(["EURUSD"]), Ok(())),
            ("symbols", json!(["EURUSD", "US500.cash", "BTC#", "GER40@m"]), Ok(())),
            ("symbols", json!(many_symbols), Ok(())),
            ("symbols", json!(too_many), err("symbols", Reason::TooLong { max: 200 })),
            ("symbols", json!([]), err("symbols", Reason::TooShort { min: 1 })),
            ("symbols", json!("EURUSD"), err("symbols", Reason::WrongType { expected: JsonType::Array })),
            ("symbols", json!(null), err("symbols", Reason::WrongType { expected: JsonType::Array })),
            ("symbols", json!(["EURUSD", 5]), err("symbols[1]", str_())),
            ("symbols", json!(["EURUSD", "GBPUSD", "EUR USD"]), err("symbols[2]", Reason::InvalidSymbol)),
            ("symbols", json!(["../etc"]), err("symbols[0]", Reason::InvalidSymbol)),
            (
                "symbols",
                json!(["EURUSD", "GBPUSD", "EURUSD"]),
                err("symbols[2]", Reason::Duplicate { value: "EURUSD".into() }),
            ),
            // timeframes
            ("timeframes", json!(["H1"]), Ok(())),
            ("timeframes", json!(all_timeframes), Ok(())),
            ("timeframes", json!([]), err("timeframes", Reason::TooShort { min: 1 })),
            ("timeframes", json!({"a": 1}), err("timeframes", Reason::WrongType { expected: JsonType::Array })),
            ("timeframes", json!(["M1", "H5"]), err("timeframes[1]", Reason::InvalidTimeframe)),
            ("timeframes", json!(["m1"]), err("timeframes[0]", Reason::InvalidTimeframe)),
            ("timeframes", json!(["M1", true]), err("timeframes[1]", str_())),
            ("timeframes", json!(["M1", "H1", "M1"]), err("timeframes[2]", Reason::Duplicate { value: "M1".into() })),
            // default_timeframe
            ("default_timeframe", json!("MN1"), Ok(())),
            ("default_timeframe", json!("H5"), err("default_timeframe", Reason::InvalidTimeframe)),
            ("default_timeframe", json!(["H1"]), err("default_timeframe", str_())),
            ("default_timeframe", json!(60), err("default_timeframe", str_())),
            // risk.max_volume
            ("risk.max_volume", json!(0.01), Ok(())),
            ("risk.max_volume", json!(100), Ok(())),
            ("risk.max_volume", json!(100.0), Ok(())),
            ("risk.max_volume", json!(1), Ok(())),
            ("risk.max_volume", json!(0), err("risk.max_volume", Reason::NotPositive)),
            ("risk.max_volume", json!(-1.5), err("risk.max_volume", Reason::NotPositive)),
            (
                "risk.max_volume",
                json!(100.0001),
                err("risk.max_volume", Reason::OutOfRange { min: "0".into(), max: "100".into() }),
            ),
            ("risk.max_volume", json!("1.0"), err("risk.max_volume", Reason::WrongType { expected: JsonType::Number })),
            ("risk.max_volume", json!(true), err("risk.max_volume", Reason::WrongType { expected: JsonType::Number })),
            ("risk.max_volume", json!(null), err("risk.max_volume", Reason::WrongType { expected: JsonType::Number })),
            // ui.language
            ("ui.language", json!("hu"), Ok(())),
            ("ui.language", json!("en"), Ok(())),
            ("ui.language", json!("de"), err("ui.language", Reason::NotOneOf { allowed: "hu, en".into() })),
            ("ui.language", json!("HU"), err("ui.language", Reason::NotOneOf { allowed: "hu, en".into() })),
            ("ui.language", json!(1), err("ui.language", str_())),
            // free ui.* keys
            ("ui.theme", json!("dark"), Ok(())),
            ("ui.layout.main-panel_2", json!({"cols": [1, 2], "x": null}), Ok(())),
            ("ui.x", json!(null), Ok(())),
            ("ui.big", json!(big_ui), Ok(())),
            ("ui.big", json!(too_big_ui), err("ui.big", Reason::TooLong { max: UI_MAX_VALUE_BYTES })),
            (&long_key, json!(1), Ok(())),
            (&too_long_key, json!(1), Err(FieldError::new(shown_key(&too_long_key), Reason::TooLong { max: 128 }))),
            ("ui.", json!(1), err("ui.", Reason::Malformed)),
            ("ui.a b", json!(1), err("ui.a b", Reason::Malformed)),
            ("ui.a/b", json!(1), err("ui.a/b", Reason::Malformed)),
            ("ui.é", json!(1), err("ui.é", Reason::Malformed)),
            // unknown keys
            ("theme", json!("dark"), err("theme", Reason::UnknownKey)),
            ("UI.theme", json!("dark"), err("UI.theme", Reason::UnknownKey)),
            ("risk.other", json!(1), err("risk.other", Reason::UnknownKey)),
            ("", json!(1), err("", Reason::UnknownKey)),
        ];
        for (key, value, want) in cases {
            let got = validate(key, &value);
            assert_eq!(
                got,
                want,
                "{key} = {}",
                serde_json::to_string(&value).unwrap_or_default().chars().take(80).collect::<String>()
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_consistent() {
        let mut effective = Map::new();
        for spec in specs() {
            let value = spec.default_value();
            assert_eq!(validate(spec.key, &value), Ok(()), "{}", spec.key);
            assert_eq!(default_of(spec.key), Some(value.clone()));
            assert!(is_known(spec.key));
            assert!(!is_free_ui_key(spec.key));
            effective.insert(spec.key.to_owned(), value);
        }
        assert_eq!(check_consistency(&effective), Ok(()));
        assert_eq!(
            keys().collect::<Vec<_>>(),
            ["symbols", "timeframes", "default_timeframe", "risk.max_volume", "ui.language"]
        );
        assert_eq!(default_of("symbols"), Some(json!(["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"])));
        assert_eq!(default_of("timeframes"), Some(json!(["M1", "M5", "M15", "H1", "H4", "D1"])));
        assert_eq!(default_of("default_timeframe"), Some(json!("H1")));
        assert_eq!(default_of("risk.max_volume"), Some(json!(1.0)));
        assert_eq!(default_of("ui.language"), Some(json!("hu")));
        assert_eq!(default_of("ui.theme"), None);
        assert!(is_free_ui_key("ui.theme"));
        assert!(!is_free_ui_key("theme"));
    }

    #[test]
    fn cross_key_rules() {
        let not_listed = err("default_timeframe", Reason::NotInSetting { setting: "timeframes".into() });
        let cases = [
            (json!(["M1", "H1"]), json!("H1"), Ok(())),
            (json!(["M1", "H1"]), json!("M1"), Ok(())),
            (json!(["M1", "H4"]), json!("H1"), not_listed.clone()),
            (json!(["D1"]), json!("MN1"), not_listed),
        ];
        for (timeframes, default, want) in cases {
            let mut effective = Map::new();
            effective.insert("timeframes".into(), timeframes.clone());
            effective.insert("default_timeframe".into(), default.clone());
            assert_eq!(check_consistency(&effective), want, "{timeframes} / {default}");
        }
        assert_eq!(check_consistency(&Map::new()), Ok(()));
    }
}
