//! Query-string lookup without allocation (unless a value is percent-encoded).

use std::borrow::Cow;

use crate::error::ApiError;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex)?;
                let lo = bytes.get(i + 2).copied().and_then(hex)?;
                out.push(hi * 16 + lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The first value of `key` in a query string. A malformed value is a 400.
pub(crate) fn get<'a>(query: &'a str, key: &str) -> Result<Option<Cow<'a, str>>, ApiError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return decode(v).map(Some).ok_or_else(|| ApiError::bad(format!("{key}: malformed query value")));
        }
    }
    Ok(None)
}

/// A required value of `key`: missing or empty is a 400.
pub(crate) fn required<'a>(query: &'a str, key: &str) -> Result<Cow<'a, str>, ApiError> {
    match get(query, key)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad(format!("{key}: required"))),
    }
}

/// An optional integer `key` in `min..=max` (default when absent).
pub(crate) fn int_in(query: &str, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    match get(query, key)? {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(format!("{key}: must be an integer from {min} to {max}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lookup_and_decoding() {
        let q = "symbol=EURUSD&timeframe=H1&count=10&x";
        assert_eq!(get(q, "symbol").unwrap().as_deref(), Some("EURUSD"));
        assert!(matches!(get(q, "symbol").unwrap(), Some(Cow::Borrowed(_))));
        assert_eq!(get(q, "x").unwrap().as_deref(), Some(""));
        assert_eq!(get(q, "missing").unwrap(), None);
        assert_eq!(get("symbol=BTC%23&a=b+c", "symbol").unwrap().as_deref(), Some("BTC#"));
        assert_eq!(get("a=b+c", "a").unwrap().as_deref(), Some("b c"));
        assert!(get("symbol=%zz", "symbol").is_err());
        assert!(get("symbol=%ff", "symbol").is_err(), "not UTF-8");
        assert!(get("symbol=%4", "symbol").is_err());
        assert_eq!(get("", "symbol").unwrap(), None);
        assert!(required("symbol=", "symbol").is_err());
        assert_eq!(int_in("count=5", "count", 1, 1, 10).unwrap(), 5);
        assert_eq!(int_in("", "count", 3, 1, 10).unwrap(), 3);
        for bad in ["count=0", "count=11", "count=-1", "count=x", "count="] {
            assert!(int_in(bad, "count", 1, 1, 10).is_err(), "{bad}");
        }
    }
}
