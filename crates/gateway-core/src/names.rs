//! Validated names: services, symbols and MT5 timeframes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::message::Reason;

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = Reason;
            fn from_str(s: &str) -> Result<Self, Reason> {
                Self::parse(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(|r| serde::de::Error::custom(r.render(crate::Lang::En)))
            }
        }
    };
}

/// A service name: `[a-z][a-z0-9_-]{0,31}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);
string_newtype!(ServiceName);

impl ServiceName {
    /// Validates a service name.
    pub fn parse(s: &str) -> Result<Self, Reason> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if first_ok && rest_ok && s.len() <= 32 { Ok(Self(s.to_owned())) } else { Err(Reason::InvalidServiceName) }
    }
}

/// A trading symbol: `^[A-Za-z0-9][A-Za-z0-9._#@-]{0,31}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(String);
string_newtype!(Symbol);

impl Symbol {
    /// Validates a symbol.
    pub fn parse(s: &str) -> Result<Self, Reason> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '#' | '@' | '-'));
        if first_ok && rest_ok && s.len() <= 32 { Ok(Self(s.to_owned())) } else { Err(Reason::InvalidSymbol) }
    }
}

/// One of the 21 MetaTrader 5 chart timeframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Timeframe {
    M1,
    M2,
    M3,
    M4,
    M5,
    M6,
    M10,
    M12,
    M15,
    M20,
    M30,
    H1,
    H2,
    H3,
    H4,
    H6,
    H8,
    H12,
    D1,
    W1,
    MN1,
}

/// Every timeframe, shortest first.
pub const TIMEFRAMES: [Timeframe; 21] = [
    Timeframe::M1,
    Timeframe::M2,
    Timeframe::M3,
    Timeframe::M4,
    Timeframe::M5,
    Timeframe::M6,
    Timeframe::M10,
    Timeframe::M12,
    Timeframe::M15,
    Timeframe::M20,
    Timeframe::M30,
    Timeframe::H1,
    Timeframe::H2,
    Timeframe::H3,
    Timeframe::H4,
    Timeframe::H6,
    Timeframe::H8,
    Timeframe::H12,
    Timeframe::D1,
    Timeframe::W1,
    Timeframe::MN1,
];

impl Timeframe {
    /// The MT5 name (`M1` … `MN1`).
    pub fn as_str(self) -> &'static str {
        use Timeframe::*;
        match self {
            M1 => "M1",
            M2 => "M2",
            M3 => "M3",
            M4 => "M4",
            M5 => "M5",
            M6 => "M6",
            M10 => "M10",
            M12 => "M12",
            M15 => "M15",
            M20 => "M20",
            M30 => "M30",
            H1 => "H1",
            H2 => "H2",
            H3 => "H3",
            H4 => "H4",
            H6 => "H6",
            H8 => "H8",
            H12 => "H12",
            D1 => "D1",
            W1 => "W1",
            MN1 => "MN1",
        }
    }

    /// Validates a timeframe name (exact, case-sensitive, never defaulted).
    pub fn parse(s: &str) -> Result<Self, Reason> {
        TIMEFRAMES.iter().copied().find(|t| t.as_str() == s).ok_or(Reason::InvalidTimeframe)
    }

    /// Nominal length in seconds; `MN1` counts as 30 days (calendar months are the caller's
    /// concern when aligning bars).
    pub fn seconds(self) -> u64 {
        use Timeframe::*;
        let minutes: u64 = match self {
            M1 => 1,
            M2 => 2,
            M3 => 3,
            M4 => 4,
            M5 => 5,
            M6 => 6,
            M10 => 10,
            M12 => 12,
            M15 => 15,
            M20 => 20,
            M30 => 30,
            H1 => 60,
            H2 => 120,
            H3 => 180,
            H4 => 240,
            H6 => 360,
            H8 => 480,
            H12 => 720,
            D1 => 1440,
            W1 => 10080,
            MN1 => 43200,
        };
        minutes * 60
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Timeframe {
    type Err = Reason;
    fn from_str(s: &str) -> Result<Self, Reason> {
        Self::parse(s)
    }
}

impl Serialize for Timeframe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Timeframe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|r| serde::de::Error::custom(r.render(crate::Lang::En)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        let good = ["data", "mt5", "a", "strategy_2", "x-y", "abcdefghijklmnopqrstuvwxyz012345"];
        let bad =
            ["", "Data", "1data", "-x", "data service", "dätä", "abcdefghijklmnopqrstuvwxyz0123456", "a/b", "a.b"];
        for s in good {
            assert!(ServiceName::parse(s).is_ok(), "{s} should be valid");
        }
        for s in bad {
            assert_eq!(ServiceName::parse(s), Err(Reason::InvalidServiceName), "{s:?} should be invalid");
        }
    }

    #[test]
    fn symbols() {
        let good = [
            "EURUSD",
            "XAUUSD",
            "eurusd",
            "US500.cash",
            "BTC#",
            "GER40@m",
            "A",
            "1ABC",
            "ab_c-d",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        ];
        let bad = [
            "",
            ".EUR",
            "_A",
            "-A",
            "EUR USD",
            "EUR/USD",
            "EUR\u{0}",
            "ÁRFOLYAM",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            "../etc",
            "a%2e",
        ];
        for s in good {
            assert!(Symbol::parse(s).is_ok(), "{s} should be valid");
        }
        for s in bad {
            assert_eq!(Symbol::parse(s), Err(Reason::InvalidSymbol), "{s:?} should be invalid");
        }
    }

    #[test]
    fn all_21_timeframes_round_trip_and_nothing_else_parses() {
        assert_eq!(TIMEFRAMES.len(), 21);
        for t in TIMEFRAMES {
            assert_eq!(Timeframe::parse(t.as_str()), Ok(t));
        }
        for s in ["", "m1", "H5", "D2", "MN", "W", "1H", "H1 ", "MN2", "M60"] {
            assert_eq!(Timeframe::parse(s), Err(Reason::InvalidTimeframe), "{s:?}");
        }
        let mut secs: Vec<u64> = TIMEFRAMES.iter().map(|t| t.seconds()).collect();
        let sorted = secs.clone();
        secs.sort_unstable();
        assert_eq!(secs, sorted, "TIMEFRAMES is ordered shortest first");
        assert_eq!(Timeframe::H4.seconds(), 4 * 3600);
    }

    #[test]
    fn serde_validates() {
        let s: Result<Symbol, _> = serde_json::from_str("\"EURUSD\"");
        assert!(s.is_ok());
        let s: Result<Symbol, _> = serde_json::from_str("\"EUR USD\"");
        assert!(s.is_err());
        let t: Timeframe = serde_json::from_str("\"MN1\"").unwrap_or(Timeframe::M1);
        assert_eq!(t, Timeframe::MN1);
    }
}
