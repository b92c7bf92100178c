//! Input rules the gateway enforces before forwarding (SPEC §4): query and body fields
//! (`symbol`, `timeframe`, `count`, `from`/`to`), typed order and strategy bodies, and path
//! safety. Pure functions: the caller supplies the settings they depend on.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::message::{FieldError, JsonType, Reason};
use crate::names::{Symbol, Timeframe};

/// What validation needs from the settings.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// When set, `symbol` must be one of these (the data service's resources).
    pub symbols: Option<HashSet<String>>,
    /// The `risk.max_volume` setting.
    pub max_volume: f64,
}

/// Largest `count`.
pub const MAX_COUNT: u64 = 100_000;

/// Parses `from`/`to`: RFC 3339 or unix milliseconds. Returns unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64, Reason> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| Reason::InvalidTime);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Reason::InvalidTime)?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| Reason::InvalidTime)
}

fn check_symbol(field: &str, value: &str, limits: &Limits) -> Result<(), FieldError> {
    Symbol::parse(value).map_err(|r| FieldError::new(field, r))?;
    if let Some(allowed) = &limits.symbols
        && !allowed.contains(value)
    {
        return Err(FieldError::new(field, Reason::NotInSetting { setting: "symbols".into() }));
    }
    Ok(())
}

fn check_count(field: &str, value: &str) -> Result<(), FieldError> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(()),
        _ => Err(FieldError::new(field, Reason::OutOfRange { min: "1".into(), max: MAX_COUNT.to_string() })),
    }
}

/// Validates query parameters (decoded name/value pairs, borrowed or owned): every known name
/// is checked, `from` ≤ `to`, and no name or value carries control characters.
pub fn check_query<I, K, V>(pairs: I, limits: &Limits) -> Result<(), FieldError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut from = None;
    let mut to = None;
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(FieldError::new(name, Reason::Malformed));
        }
        match name {
            "symbol" => check_symbol(name, value, limits)?,
            "timeframe" => {
                Timeframe::parse(value).map_err(|r| FieldError::new(name, r))?;
            }
            "count" => check_count(name, value)?,
            "from" => from = Some(parse_time(value).map_err(|r| FieldError::new(name, r))?),
            "to" => to = Some(parse_time(value).map_err(|r| FieldError::new(name, r))?),
            _ => {}
        }
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(FieldError::new("from", Reason::FromAfterTo));
    }
    Ok(())
}

/// Validates the same fields wherever they appear at the top level of a JSON body.
pub fn check_body_fields(body: &Value, limits: &Limits) -> Result<(), FieldError> {
    let Some(obj) = body.as_object() else { return Ok(()) };
    let mut pairs = Vec::new();
    for name in ["symbol", "timeframe", "count", "from", "to"] {
        let Some(v) = obj.get(name) else { continue };
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) if name == "count" || name == "from" || name == "to" => n.to_string(),
            Value::Null => continue,
            _ => {
                let expected = if name == "count" { JsonType::Integer } else { JsonType::String };
                return Err(FieldError::new(name, Reason::WrongType { expected }));
            }
        };
        pairs.push((name, text));
    }
    check_query(pairs, limits)
}

/// The schemas of the fields whose Rust type is wider than what they accept.
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    fn one_of(values: &[&str], description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .description(Some(description))
    }

    /// `side`.
    pub fn side() -> ObjectBuilder {
        one_of(&["buy", "sell"], "`buy` or `sell`.")
    }

    /// `type`.
    pub fn order_type() -> ObjectBuilder {
        one_of(&["market", "limit", "stop"], "`market`, `limit` or `stop`.")
    }
}

/// `POST /api/orders`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::side))]
    pub side: String,
    /// `market`, `limit` or `stop`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::order_type))]
    pub order_type: String,
    /// Lots, > 0 and ≤ `risk.max_volume`.
    pub volume: f64,
    /// Required unless market.
    pub price: Option<f64>,
    /// Stop loss.
    pub sl: Option<f64>,
    /// Take profit.
    pub tp: Option<f64>,
    /// Allowed slippage in points.
    pub deviation: Option<u32>,
    /// Expert id.
    pub magic: Option<u64>,
    /// Free text.
    pub comment: Option<String>,
}

impl OrderRequest {
    /// Checks every rule of §4; `reference` is the price used to judge sl/tp for market orders
    /// when known.
    pub fn check(&self, limits: &Limits) -> Result<(), FieldError> {
        check_symbol("symbol", &self.symbol, limits)?;
        let buy = match self.side.as_str() {
            "buy" => true,
            "sell" => false,
            _ => return Err(FieldError::new("side", Reason::NotOneOf { allowed: "buy, sell".into() })),
        };
        if !matches!(self.order_type.as_str(), "market" | "limit" | "stop") {
            return Err(FieldError::new("type", Reason::NotOneOf { allowed: "market, limit, stop".into() }));
        }
        if !(self.volume.is_finite() && self.volume > 0.0) {
            return Err(FieldError::new("volume", Reason::NotPositive));
        }
        if self.volume > limits.max_volume {
            return Err(FieldError::new(
                "volume",
                Reason::OutOfRange { min: "0".into(), max: format!("{} (risk.max_volume)", limits.max_volume) },
            ));
        }
        for (name, v) in [("price", self.price), ("sl", self.sl), ("tp", self.tp)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(FieldError::new(name, Reason::NotPositive));
            }
        }
        if self.order_type != "market" && self.price.is_none() {
            return Err(FieldError::new("price", Reason::Missing));
        }
        if let Some(c) = &self.comment
            && c.chars().count() > 31
        {
            return Err(FieldError::new("comment", Reason::TooLong { max: 31 }));
        }
        // Stops must sit on the right side: for a buy, sl < tp (and both around the price).
        let reference = self.price;
        let (below, above) = if buy { (self.sl, self.tp) } else { (self.tp, self.sl) };
        if let (Some(low), Some(high)) = (below, above)
            && low >= high
        {
            return Err(FieldError::new("sl", Reason::InconsistentStops));
        }
        if let Some(p) = reference
            && (below.is_some_and(|low| low >= p) || above.is_some_and(|high| high <= p))
        {
            return Err(FieldError::new(if buy { "sl" } else { "tp" }, Reason::InconsistentStops));
        }
        Ok(())
    }
}

/// `POST /api/strategies`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRequest {
    /// 1–64 characters.
    pub name: String,
    /// Symbol.
    pub symbol: String,
    /// Timeframe.
    pub timeframe: String,
    /// Free parameters (an object).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: Value,
}

impl StrategyRequest {
    /// Checks every rule of §4.
    pub fn check(&self, limits: &Limits) -> Result<(), FieldError> {
        let len = self.name.trim().chars().count();
        if len == 0 {
            return Err(FieldError::new("name", Reason::TooShort { min: 1 }));
        }
        if self.name.chars().count() > 64 {
            return Err(FieldError::new("name", Reason::TooLong { max: 64 }));
        }
        if self.name.chars().any(char::is_control) {
            return Err(FieldError::new("name", Reason::Malformed));
        }
        check_symbol("symbol", &self.symbol, limits)?;
        Timeframe::parse(&self.timeframe).map_err(|r| FieldError::new("timeframe", r))?;
        if !self.parameters.is_object() {
            return Err(FieldError::new("parameters", Reason::WrongType { expected: JsonType::Object }));
        }
        Ok(())
    }
}

/// Checks a raw (still percent-encoded) request path for traversal and smuggling: `..` or `.`
/// segments, encoded dots or slashes, backslashes (raw or encoded), NUL and control
/// characters (raw or encoded), and double encoding of any of these.
pub fn check_path(raw: &str) -> Result<(), Reason> {
    let lower = raw.to_ascii_lowercase();
    if raw.chars().any(|c| c.is_control() || c == '\\') {
        return Err(Reason::UnsafePath);
    }
    // Encoded '.', '/', '\', '%' (double encoding) and control bytes.
    let mut bytes = lower.as_bytes().windows(3);
    if bytes.any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2]),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c') | (b'2', b'5') | (b'0', _) | (b'1', _) | (b'7', b'f')
            )
    }) {
        return Err(Reason::UnsafePath);
    }
    if raw.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(Reason::UnsafePath);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits { symbols: Some(["EURUSD", "XAUUSD"].iter().map(|s| (*s).to_owned()).collect()), max_volume: 2.0 }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn query_rules() {
        let good: &[&[(&str, &str)]] = &[
            &[("symbol", "EURUSD")],
            &[("symbol", "EURUSD"), ("timeframe", "H1"), ("count", "100")],
            &[("count", "1")],
            &[("count", "100000")],
            &[("from", "2024-01-01T00:00:00Z"), ("to", "2024-01-02T00:00:00+02:00")],
            &[("from", "1700000000000"), ("to", "1700000000000")],
            &[("other", "anything")],
        ];
        for pairs in good {
            assert!(check_query(q(pairs), &limits()).is_ok(), "{pairs:?}");
        }
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Reason);
        let bad: &[Case] = &[
            (&[("symbol", "EUR USD")], "symbol", Reason::InvalidSymbol),
            (&[("symbol", "GBPUSD")], "symbol", Reason::NotInSetting { setting: "symbols".into() }),
            (&[("symbol", "")], "symbol", Reason::InvalidSymbol),
            (&[("timeframe", "H5")], "timeframe", Reason::InvalidTimeframe),
            (&[("timeframe", "")], "timeframe", Reason::InvalidTimeframe),
            (&[("timeframe", "h1")], "timeframe", Reason::InvalidTimeframe),
            (&[("count", "0")], "count", Reason::OutOfRange { min: "1".into(), max: "100000".into() }),
            (&[("count", "100001")], "count", Reason::OutOfRange { min: "1".into(), max: "100000".into() }),
            (&[("count", "-5")], "count", Reason::OutOfRange { min: "1".into(), max: "100000".into() }),
            (&[("count", "ten")], "count", Reason::OutOfRange { min: "1".into(), max: "100000".into() }),
            (&[("from", "yesterday")], "from", Reason::InvalidTime),
            (&[("to", "2024-13-01T00:00:00Z")], "to", Reason::InvalidTime),
            (&[("from", "1700000000001"), ("to", "1700000000000")], "from", Reason::FromAfterTo),
            (&[("note", "a\u{1}b")], "note", Reason::Malformed),
        ];
        for (pairs, field, reason) in bad {
            let e = check_query(q(pairs), &limits()).unwrap_err();
            assert_eq!((e.field.as_str(), &e.reason), (*field, reason), "{pairs:?}");
        }
        // Without a symbol list only the format counts.
        assert!(check_query(q(&[("symbol", "GBPUSD")]), &Limits::default()).is_ok());
    }

    #[test]
    fn body_fields() {
        assert!(check_body_fields(&json!({"symbol": "EURUSD", "count": 5}), &limits()).is_ok());
        assert!(check_body_fields(&json!([1, 2]), &limits()).is_ok());
        let e = check_body_fields(&json!({"symbol": 5}), &limits()).unwrap_err();
        assert_eq!(e.reason, Reason::WrongType { expected: JsonType::String });
        let e = check_body_fields(&json!({"timeframe": "X"}), &limits()).unwrap_err();
        assert_eq!(e.field, "timeframe");
    }

    #[test]
    fn orders() {
        let order = |v: Value| serde_json::from_value::<OrderRequest>(v).unwrap();
        let ok = [
            json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1}),
            json!({"symbol": "EURUSD", "side": "buy", "type": "limit", "volume": 2.0, "price": 1.05, "sl": 1.04, "tp": 1.07}),
            json!({"symbol": "EURUSD", "side": "sell", "type": "stop", "volume": 1, "price": 1.05, "sl": 1.06, "tp": 1.01}),
            json!({"symbol": "EURUSD", "side": "sell", "type": "market", "volume": 1, "sl": 1.2, "tp": 1.0}),
        ];
        for o in ok {
            assert!(order(o.clone()).check(&limits()).is_ok(), "{o}");
        }
        let bad = [
            (json!({"symbol": "GBPUSD", "side": "buy", "type": "market", "volume": 1}), "symbol"),
            (json!({"symbol": "EURUSD", "side": "long", "type": "market", "volume": 1}), "side"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "fok", "volume": 1}), "type"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0}), "volume"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": -1}), "volume"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 2.5}), "volume"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "limit", "volume": 1}), "price"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "limit", "volume": 1, "price": -1}), "price"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 1, "sl": 1.1, "tp": 1.0}), "sl"),
            (json!({"symbol": "EURUSD", "side": "buy", "type": "limit", "volume": 1, "price": 1.0, "sl": 1.01}), "sl"),
            (json!({"symbol": "EURUSD", "side": "sell", "type": "limit", "volume": 1, "price": 1.0, "sl": 0.9}), "tp"),
            (
                json!({"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 1, "comment": "x".repeat(40)}),
                "comment",
            ),
        ];
        for (o, field) in bad {
            let e = order(o.clone()).check(&limits()).unwrap_err();
            assert_eq!(e.field, field, "{o}");
        }
        assert!(serde_json::from_value::<OrderRequest>(json!({"symbol": "EURUSD"})).is_err());
    }

    #[test]
    fn strategies() {
        let s = |v: Value| serde_json::from_value::<StrategyRequest>(v).unwrap();
        let good = json!({"name": "MA cross", "symbol": "EURUSD", "timeframe": "H1", "parameters": {"fast": 5}});
        assert!(s(good).check(&limits()).is_ok());
        let bad = [
            (json!({"name": "", "symbol": "EURUSD", "timeframe": "H1", "parameters": {}}), "name"),
            (json!({"name": "x".repeat(65), "symbol": "EURUSD", "timeframe": "H1", "parameters": {}}), "name"),
            (json!({"name": "a", "symbol": "EUR/USD", "timeframe": "H1", "parameters": {}}), "symbol"),
            (json!({"name": "a", "symbol": "EURUSD", "timeframe": "H7", "parameters": {}}), "timeframe"),
            (json!({"name": "a", "symbol": "EURUSD", "timeframe": "H1", "parameters": [1]}), "parameters"),
        ];
        for (v, field) in bad {
            assert_eq!(s(v.clone()).check(&limits()).unwrap_err().field, field, "{v}");
        }
    }

    #[test]
    fn path_safety() {
        for good in [
            "/api/ticks/latest",
            "/api/ohlc",
            "/api/strategies/3f2a-11/start",
            "/api/a.b/c",
            "/api/x/..a/b..",
            "/api/x%20y",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        let bad = [
            "/api/ticks/../settings",
            "/api/ticks/..",
            "/api/ticks/./x",
            "/api/ticks/%2e%2e/settings",
            "/api/ticks/%2E%2E/settings",
            "/api/ticks/.%2e/x",
            "/api/ticks/%252e%252e/x",
            "/api/ticks/a%2fb",
            "/api/ticks/a\\b",
            "/api/ticks/a%5cb",
            "/api/ticks/a%5Cb",
            "/api/ticks/a%00b",
            "/api/ticks/a%0ab",
            "/api/ticks/a%7fb",
            "/api/ticks/a\u{0}b",
        ];
        for b in bad {
            assert_eq!(check_path(b), Err(Reason::UnsafePath), "{b:?}");
        }
    }
}
