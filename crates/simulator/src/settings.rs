//! `POST /settings` bodies (`{"changed": {…}, "all": {…}}`) and the keys the roles understand.

use gateway_core::{Symbol, Timeframe};
use serde_json::{Map, Value};

use crate::error::ApiError;

const MAX_SYMBOLS: usize = 200;

/// A settings push: a key is looked up in `changed` first, then in `all`.
#[derive(Debug, Default)]
pub(crate) struct SettingsUpdate {
    changed: Map<String, Value>,
    all: Map<String, Value>,
}

fn object(v: Option<Value>, name: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad(format!("{name}: must be an object"))),
    }
}

impl SettingsUpdate {
    /// Parses a request body.
    pub(crate) fn parse(body: &[u8]) -> Result<SettingsUpdate, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))?;
        let Value::Object(mut root) = v else {
            return Err(ApiError::bad("body: must be an object with `changed` and/or `all`"));
        };
        Ok(SettingsUpdate {
            changed: object(root.remove("changed"), "changed")?,
            all: object(root.remove("all"), "all")?,
        })
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.changed.get(key).or_else(|| self.all.get(key))
    }

    /// `symbols`: 1–200 unique valid symbols.
    pub(crate) fn symbols(&self) -> Result<Option<Vec<String>>, ApiError> {
        let Some(v) = self.value("symbols") else { return Ok(None) };
        let bad = || ApiError::bad(format!("symbols: must be a list of 1 to {MAX_SYMBOLS} unique symbols"));
        let list = v.as_array().ok_or_else(bad)?;
        if list.is_empty() || list.len() > MAX_SYMBOLS {
            return Err(bad());
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for item in list {
            let s = item.as_str().ok_or_else(bad)?;
            Symbol::parse(s).map_err(|_| ApiError::bad(format!("symbols: invalid symbol {s:?}")))?;
            if out.iter().any(|o| o == s) {
                return Err(ApiError::bad(format!("symbols: duplicate symbol {s:?}")));
            }
            out.push(s.to_owned());
        }
        Ok(Some(out))
    }

    /// `timeframes`: a non-empty list of timeframes.
    pub(crate) fn timeframes(&self) -> Result<Option<Vec<Timeframe>>, ApiError> {
        let Some(v) = self.value("timeframes") else { return Ok(None) };
        let bad = || ApiError::bad("timeframes: must be a non-empty list of timeframes");
        let list = v.as_array().filter(|l| !l.is_empty()).ok_or_else(bad)?;
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let s = item.as_str().ok_or_else(bad)?;
            let tf = Timeframe::parse(s).map_err(|_| ApiError::bad(format!("timeframes: invalid timeframe {s:?}")))?;
            if !out.contains(&tf) {
                out.push(tf);
            }
        }
        Ok(Some(out))
    }

    /// `risk.max_volume`: a number with 0 < x ≤ 100.
    pub(crate) fn max_volume(&self) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.value("risk.max_volume") else { return Ok(None) };
        match v.as_f64() {
            Some(x) if x > 0.0 && x <= 100.0 => Ok(Some(x)),
            _ => Err(ApiError::bad("risk.max_volume: must be a number greater than 0 and at most 100")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(s: &str) -> Result<SettingsUpdate, ApiError> {
        SettingsUpdate::parse(s.as_bytes())
    }

    #[test]
    fn changed_wins_over_all() {
        let u = parse(r#"{"changed": {"symbols": ["BTCUSD"]}, "all": {"symbols": ["EURUSD"], "risk.max_volume": 2}}"#)
            .unwrap();
        assert_eq!(u.symbols().unwrap(), Some(vec!["BTCUSD".to_owned()]));
        assert_eq!(u.max_volume().unwrap(), Some(2.0));
        assert_eq!(u.timeframes().unwrap(), None);
        let u = parse(r#"{"all": {"timeframes": ["M1", "H1", "M1"]}}"#).unwrap();
        assert_eq!(u.timeframes().unwrap(), Some(vec![Timeframe::M1, Timeframe::H1]));
        assert!(parse("{}").unwrap().symbols().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_bodies_and_values() {
        for bad in ["", "[]", "nope", r#"{"changed": 1}"#, r#"{"all": []}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"changed": {"symbols": []}}"#,
            r#"{"changed": {"symbols": "EURUSD"}}"#,
            r#"{"changed": {"symbols": ["EUR USD"]}}"#,
            r#"{"changed": {"symbols": ["A", "A"]}}"#,
            r#"{"changed": {"symbols": [1]}}"#,
        ] {
            assert!(parse(bad).unwrap().symbols().is_err(), "{bad}");
        }
        assert!(parse(r#"{"all": {"timeframes": ["H5"]}}"#).unwrap().timeframes().is_err());
        for bad in ["0", "-1", "101", "\"1\""] {
            let body = format!(r#"{{"changed": {{"risk.max_volume": {bad}}}}}"#);
            assert!(parse(&body).unwrap().max_volume().is_err(), "{bad}");
        }
    }
}
