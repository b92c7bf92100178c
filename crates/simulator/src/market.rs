//! The simulated market: symbol specifications, the deterministic price path and live random walks.
//!
//! The price of a symbol at unix time `t` is `exp(ln_base + Σ_k a_k · noise_k(t / P_k))`: value
//! noise at 21 octaves with periods from one minute to about two years, amplitudes scaled like a
//! random walk (`a_k = σ·√(P_k / year)`). It is a pure function of (symbol, t), so history is
//! deterministic and always positive. Live prices are a random walk in log space that
//! mean-reverts to this path.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

const YEAR_SECS: f64 = 365.25 * 86_400.0;
const OCTAVES: usize = 21;
/// Pull of a live walk towards the deterministic path, per step.
const REVERSION: f64 = 0.05;

/// SplitMix64: a fast, well-mixed 64-bit hash step.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes two words into one.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b))
}

/// Maps a hash to `[0, 1)`.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a of a string: the seed of a symbol's price path.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The current unix time in seconds (fractional).
pub(crate) fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The current unix time in milliseconds.
pub(crate) fn now_msc() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Rounds to `digits` decimals.
pub(crate) fn round_to(x: f64, digits: u32) -> f64 {
    let scale = 10f64.powi(i32::try_from(digits).unwrap_or(8));
    (x * scale).round() / scale
}

/// A standard normal sample from two uniforms (Box–Muller).
pub(crate) fn normal(rng: &mut impl rand::Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[derive(Debug, Clone, Copy)]
struct Octave {
    inv_period: f64,
    amp: f64,
    salt: u64,
    offset: f64,
}

/// The deterministic price path of one symbol.
#[derive(Debug, Clone)]
pub(crate) struct PricePath {
    ln_base: f64,
    octaves: [Octave; OCTAVES],
}

fn value_noise(salt: u64, x: f64) -> f64 {
    let i = x.floor();
    let f = x - i;
    let i = i as i64;
    let a = unit(mix(salt, i as u64)) * 2.0 - 1.0;
    let b = unit(mix(salt, i.wrapping_add(1) as u64)) * 2.0 - 1.0;
    let s = f * f * (3.0 - 2.0 * f);
    a + (b - a) * s
}

impl PricePath {
    fn new(seed: u64, base: f64, annual_vol: f64) -> PricePath {
        let mut octaves = [Octave { inv_period: 1.0, amp: 0.0, salt: 0, offset: 0.0 }; OCTAVES];
        for (k, o) in octaves.iter_mut().enumerate() {
            let period = 60.0 * f64::from(1u32 << k);
            let salt = mix(seed, k as u64 + 1);
            *o = Octave {
                inv_period: 1.0 / period,
                amp: annual_vol * (period / YEAR_SECS).sqrt(),
                salt,
                offset: unit(splitmix64(salt)) * 1000.0,
            };
        }
        PricePath { ln_base: base.ln(), octaves }
    }

    /// The natural log of the price at unix time `t` (seconds).
    pub(crate) fn ln_price(&self, t: f64) -> f64 {
        self.octaves.iter().fold(self.ln_base, |acc, o| acc + o.amp * value_noise(o.salt, t * o.inv_period + o.offset))
    }
}

/// What the service knows about a symbol; the first seven fields are MT5's `symbol_info`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SymbolSpec {
    pub name: String,
    pub description: String,
    pub digits: u32,
    pub point: f64,
    /// Spread in points.
    pub spread: u32,
    pub currency_base: String,
    pub currency_profit: String,
    /// Units per lot.
    #[serde(skip)]
    pub contract_size: f64,
    /// Annualised volatility of the history path.
    #[serde(skip)]
    pub annual_vol: f64,
    /// Standard deviation of one live tick's log-price step.
    #[serde(skip)]
    pub tick_step: f64,
    #[serde(skip)]
    pub seed: u64,
    #[serde(skip)]
    path: PricePath,
}

struct Known {
    name: &'static str,
    description: &'static str,
    digits: u32,
    base: f64,
    spread: u32,
    vol: f64,
    contract: f64,
    tick_points: f64,
    currencies: (&'static str, &'static str),
}

#[allow(clippy::too_many_arguments)]
const fn k(
    name: &'static str,
    description: &'static str,
    digits: u32,
    base: f64,
    spread: u32,
    vol: f64,
    contract: f64,
    tick_points: f64,
    currencies: (&'static str, &'static str),
) -> Known {
    Known { name, description, digits, base, spread, vol, contract, tick_points, currencies }
}

/// name, description, digits, base price, spread (points), annual volatility, contract size,
/// live tick step (points), currencies.
#[rustfmt::skip]
const KNOWN: &[Known] = &[
    k("EURUSD", "Euro vs US Dollar", 5, 1.085, 12, 0.07, 100_000.0, 1.5, ("EUR", "USD")),
    k("GBPUSD", "Great Britain Pound vs US Dollar", 5, 1.27, 15, 0.08, 100_000.0, 1.8, ("GBP", "USD")),
    k("USDJPY", "US Dollar vs Japanese Yen", 3, 150.0, 14, 0.09, 100_000.0, 1.5, ("USD", "JPY")),
    k("USDCHF", "US Dollar vs Swiss Franc", 5, 0.88, 16, 0.07, 100_000.0, 1.5, ("USD", "CHF")),
    k("AUDUSD", "Australian Dollar vs US Dollar", 5, 0.66, 12, 0.09, 100_000.0, 1.2, ("AUD", "USD")),
    k("USDCAD", "US Dollar vs Canadian Dollar", 5, 1.36, 18, 0.06, 100_000.0, 1.5, ("USD", "CAD")),
    k("NZDUSD", "New Zealand Dollar vs US Dollar", 5, 0.61, 18, 0.09, 100_000.0, 1.2, ("NZD", "USD")),
    k("EURGBP", "Euro vs Great Britain Pound", 5, 0.855, 16, 0.05, 100_000.0, 1.0, ("EUR", "GBP")),
    k("EURJPY", "Euro vs Japanese Yen", 3, 162.5, 20, 0.09, 100_000.0, 2.0, ("EUR", "JPY")),
    k("GBPJPY", "Great Britain Pound vs Japanese Yen", 3, 190.0, 25, 0.1, 100_000.0, 2.5, ("GBP", "JPY")),
    k("XAUUSD", "Gold vs US Dollar", 2, 2300.0, 25, 0.15, 100.0, 8.0, ("XAU", "USD")),
    k("XAGUSD", "Silver vs US Dollar", 3, 27.5, 30, 0.25, 5_000.0, 3.0, ("XAG", "USD")),
    k("BTCUSD", "Bitcoin vs US Dollar", 2, 65_000.0, 1_500, 0.6, 1.0, 500.0, ("BTC", "USD")),
    k("ETHUSD", "Ethereum vs US Dollar", 2, 3_200.0, 150, 0.7, 1.0, 60.0, ("ETH", "USD")),
    k("US500", "US 500 Cash Index", 2, 5_200.0, 50, 0.16, 1.0, 25.0, ("USD", "USD")),
    k("US30", "US Wall Street 30 Index", 2, 39_000.0, 200, 0.15, 1.0, 150.0, ("USD", "USD")),
    k("GER40", "Germany 40 Index", 2, 18_000.0, 150, 0.17, 1.0, 80.0, ("EUR", "EUR")),
];

impl SymbolSpec {
    /// The specification of a symbol: a known one from the table, else a plausible default
    /// (six letters are read as a currency pair, anything else as a 2-digit CFD).
    pub(crate) fn for_name(name: &str) -> SymbolSpec {
        let seed = fnv1a(name);
        if let Some(k) = KNOWN.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
            return SymbolSpec::build(
                name,
                k.description.to_owned(),
                (k.digits, k.base, k.spread, k.vol, k.contract, k.tick_points),
                (k.currencies.0.to_owned(), k.currencies.1.to_owned()),
                seed,
            );
        }
        let r = unit(splitmix64(seed));
        let is_pair = name.len() == 6 && name.bytes().all(|b| b.is_ascii_alphabetic());
        if is_pair {
            let (base_ccy, quote_ccy) = (name[..3].to_ascii_uppercase(), name[3..].to_ascii_uppercase());
            let description = format!("{base_ccy} vs {quote_ccy}");
            if quote_ccy == "JPY" {
                let base = 80.0 + 120.0 * r;
                SymbolSpec::build(name, description, (3, base, 20, 0.1, 100_000.0, 2.0), (base_ccy, quote_ccy), seed)
            } else {
                let base = 0.5 * 4f64.powf(r); // 0.5 … 2.0
                SymbolSpec::build(name, description, (5, base, 15, 0.08, 100_000.0, 1.5), (base_ccy, quote_ccy), seed)
            }
        } else {
            let base = 10.0 * 100f64.powf(r); // 10 … 1000
            let tick_points = (2e-5 * base / 0.01).max(1.0);
            let description = format!("{name} (simulated)");
            SymbolSpec::build(
                name,
                description,
                (2, base, 20, 0.2, 1.0, tick_points),
                ("USD".to_owned(), "USD".to_owned()),
                seed,
            )
        }
    }

    fn build(
        name: &str,
        description: String,
        (digits, base, spread, vol, contract, tick_points): (u32, f64, u32, f64, f64, f64),
        (currency_base, currency_profit): (String, String),
        seed: u64,
    ) -> SymbolSpec {
        let point = 10f64.powi(-i32::try_from(digits).unwrap_or(5));
        SymbolSpec {
            name: name.to_owned(),
            description,
            digits,
            point,
            spread,
            currency_base,
            currency_profit,
            contract_size: contract,
            annual_vol: vol,
            tick_step: tick_points * point / base,
            seed,
            path: PricePath::new(seed, base, vol),
        }
    }

    /// Rounds a price to the symbol's digits.
    pub(crate) fn round(&self, price: f64) -> f64 {
        round_to(price, self.digits)
    }

    /// The log of the deterministic mid price at unix time `t` (seconds).
    pub(crate) fn ln_price(&self, t: f64) -> f64 {
        self.path.ln_price(t)
    }

    /// The deterministic mid price at unix time `t`, rounded to the symbol's digits.
    pub(crate) fn price_at(&self, t: f64) -> f64 {
        self.round(self.ln_price(t).exp())
    }

    /// Bid and ask around a mid price, rounded, with the symbol's spread.
    pub(crate) fn quote(&self, mid: f64) -> (f64, f64) {
        let spread = f64::from(self.spread) * self.point;
        let bid = self.round(mid - spread / 2.0).max(self.point);
        (bid, self.round(bid + spread))
    }
}

/// A live price: a random walk in log space that mean-reverts to the symbol's path.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    ln_mid: f64,
}

impl Walk {
    /// Starts at the path's price at unix time `t`.
    pub(crate) fn start(spec: &SymbolSpec, t: f64) -> Walk {
        Walk { ln_mid: spec.ln_price(t) }
    }

    /// One step: `z` is a standard normal sample, `t` the current unix time.
    pub(crate) fn step(&mut self, spec: &SymbolSpec, t: f64, z: f64) {
        let anchor = spec.ln_price(t);
        self.ln_mid += REVERSION * (anchor - self.ln_mid) + z * spec.tick_step;
    }

    /// The current mid price (always positive).
    pub(crate) fn mid(&self) -> f64 {
        self.ln_mid.exp()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn known_symbols_have_realistic_prices_and_digits() {
        let now = 1_750_000_000.0;
        for (name, digits, lo, hi) in [
            ("EURUSD", 5, 0.8, 1.4),
            ("USDJPY", 3, 110.0, 200.0),
            ("XAUUSD", 2, 1700.0, 3100.0),
            ("GBPUSD", 5, 1.0, 1.6),
        ] {
            let spec = SymbolSpec::for_name(name);
            assert_eq!(spec.digits, digits, "{name}");
            let p = spec.price_at(now);
            assert!(p > lo && p < hi, "{name} {p}");
            assert_eq!(spec.round(p), p);
        }
    }

    #[test]
    fn unknown_symbols_get_plausible_defaults() {
        let fx = SymbolSpec::for_name("SEKNOK");
        assert_eq!((fx.digits, fx.currency_base.as_str(), fx.currency_profit.as_str()), (5, "SEK", "NOK"));
        let jpy = SymbolSpec::for_name("CADJPY");
        assert_eq!(jpy.digits, 3);
        let cfd = SymbolSpec::for_name("US500.cash");
        assert_eq!(cfd.digits, 2);
        for spec in [fx, jpy, cfd] {
            let p = spec.price_at(1_700_000_000.0);
            assert!(p.is_finite() && p > 0.0, "{} {p}", spec.name);
        }
    }

    #[test]
    fn path_is_deterministic_and_continuous() {
        let a = SymbolSpec::for_name("EURUSD");
        let b = SymbolSpec::for_name("EURUSD");
        let t = 1_700_000_123.5;
        assert_eq!(a.ln_price(t), b.ln_price(t));
        // one second apart: a tiny move; a year apart: a real one
        let d1 = (a.ln_price(t + 1.0) - a.ln_price(t)).abs();
        let dy = (a.ln_price(t + YEAR_SECS) - a.ln_price(t)).abs();
        assert!(d1 < 1e-3, "{d1}");
        assert!(dy > d1);
        assert_ne!(SymbolSpec::for_name("GBPUSD").ln_price(t), a.ln_price(t) + (1.27f64 / 1.085).ln());
    }

    #[test]
    fn random_walk_stays_positive_and_near_the_path() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for name in ["EURUSD", "USDJPY", "XAUUSD", "BTCUSD", "ZZZ", "TINY1"] {
            let spec = SymbolSpec::for_name(name);
            let mut t = 1_700_000_000.0;
            let mut walk = Walk::start(&spec, t);
            for _ in 0..200_000 {
                // extreme shocks too: the walk is multiplicative, so it can never cross zero
                let z = normal(&mut rng) * 5.0;
                walk.step(&spec, t, z);
                t += 0.1;
                let mid = walk.mid();
                assert!(mid.is_finite() && mid > 0.0, "{name}: {mid}");
                let (bid, ask) = spec.quote(mid);
                assert!(bid > 0.0 && ask > bid, "{name}: {bid} {ask}");
            }
            let drift = (walk.mid().ln() - spec.ln_price(t)).abs();
            assert!(drift < 0.05, "{name} wandered off its path: {drift}");
        }
    }

    #[test]
    fn normal_samples_have_unit_variance() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let n = 100_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let z = normal(&mut rng);
            sum += z;
            sq += z * z;
        }
        let mean = sum / f64::from(n);
        let var = sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{mean} {var}");
    }

    #[test]
    fn rounding() {
        assert_eq!(round_to(1.0850349, 5), 1.08503);
        assert_eq!(round_to(150.1236, 3), 150.124);
        assert_eq!(round_to(2300.0051, 2), 2300.01);
    }
}
