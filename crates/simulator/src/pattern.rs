//! The `pattern` role: candlestick and chart patterns detected on the generated history.
//!
//! Detection runs on the closed bars of the same deterministic history `/ohlc` serves, so a
//! pattern's bars can be looked up there, and the same request gives the same patterns (with
//! the same ids) until a new bar closes.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use gateway_core::{Symbol, Timeframe};
use parking_lot::RwLock;
use serde::Serialize;

use crate::bars::{self, Bar};
use crate::error::ApiError;
use crate::market::{SymbolSpec, fnv1a, mix, now_secs, round_to};
use crate::query;
use crate::server::resource;
use crate::settings::SettingsUpdate;

/// Closed bars scanned per symbol and timeframe.
const SCAN_BARS: usize = 120;
/// Bars on each side that make a swing high/low.
const SWING: usize = 3;
const DEFAULT_TIMEFRAMES: [Timeframe; 6] =
    [Timeframe::M1, Timeframe::M5, Timeframe::M15, Timeframe::H1, Timeframe::H4, Timeframe::D1];

/// One detected pattern; `time` is the open of the bar that completed it (unix seconds).
#[derive(Debug, Clone, Serialize)]
struct Pattern {
    id: String,
    symbol: String,
    timeframe: Timeframe,
    pattern: &'static str,
    direction: &'static str,
    confidence: f64,
    detected_at: String,
    time: i64,
    price: f64,
    #[serde(skip)]
    detected_unix: i64,
}

struct Hit {
    index: usize,
    pattern: &'static str,
    direction: &'static str,
    confidence: f64,
}

fn body(b: &Bar) -> f64 {
    (b.close - b.open).abs()
}

fn range(b: &Bar) -> f64 {
    b.high - b.low
}

fn confidence(x: f64) -> f64 {
    round_to(x.clamp(0.5, 0.95), 2)
}

fn candle_patterns(bars: &[Bar], avg_range: f64, out: &mut Vec<Hit>) {
    for i in 1..bars.len() {
        let (prev, cur) = (&bars[i - 1], &bars[i]);
        let (b, r) = (body(cur), range(cur));
        if r <= 0.0 {
            continue;
        }
        let bullish = cur.close > cur.open;
        let bearish = cur.close < cur.open;
        if bullish && prev.close < prev.open && cur.close >= prev.open && cur.open <= prev.close && b > body(prev) {
            out.push(Hit {
                index: i,
                pattern: "bullish_engulfing",
                direction: "bullish",
                confidence: confidence(0.5 + 0.2 * b / (body(prev) + f64::EPSILON).max(b / 2.0)),
            });
        } else if bearish
            && prev.close > prev.open
            && cur.close <= prev.open
            && cur.open >= prev.close
            && b > body(prev)
        {
            out.push(Hit {
                index: i,
                pattern: "bearish_engulfing",
                direction: "bearish",
                confidence: confidence(0.5 + 0.2 * b / (body(prev) + f64::EPSILON).max(b / 2.0)),
            });
        }
        let upper = cur.high - cur.open.max(cur.close);
        let lower = cur.open.min(cur.close) - cur.low;
        if b <= 0.08 * r && r >= 0.5 * avg_range {
            out.push(Hit {
                index: i,
                pattern: "doji",
                direction: "neutral",
                confidence: confidence(0.5 + r / avg_range * 0.1),
            });
        } else if i >= 4 && b > 0.0 {
            let falling = bars[i - 1].close < bars[i - 4].close;
            let rising = bars[i - 1].close > bars[i - 4].close;
            if falling && lower >= 2.0 * b && upper <= b {
                out.push(Hit {
                    index: i,
                    pattern: "hammer",
                    direction: "bullish",
                    confidence: confidence(0.45 + 0.05 * lower / b),
                });
            } else if rising && upper >= 2.0 * b && lower <= b {
                out.push(Hit {
                    index: i,
                    pattern: "shooting_star",
                    direction: "bearish",
                    confidence: confidence(0.45 + 0.05 * upper / b),
                });
            }
        }
    }
}

/// Indices of swing highs (`high = true`) or lows: the extreme of the `SWING` bars on each side.
fn swings(bars: &[Bar], high: bool) -> Vec<usize> {
    let value = |b: &Bar| if high { b.high } else { -b.low };
    (SWING..bars.len().saturating_sub(SWING))
        .filter(|&i| {
            let v = value(&bars[i]);
            (i - SWING..i).all(|j| value(&bars[j]) < v) && (i + 1..=i + SWING).all(|j| value(&bars[j]) <= v)
        })
        .collect()
}

fn chart_patterns(bars: &[Bar], avg_range: f64, out: &mut Vec<Hit>) {
    if avg_range <= 0.0 {
        return;
    }
    for high in [true, false] {
        let value = |i: usize| if high { bars[i].high } else { -bars[i].low };
        let points = swings(bars, high);
        let (double, hs, direction) = if high {
            ("double_top", "head_and_shoulders", "bearish")
        } else {
            ("double_bottom", "inverse_head_and_shoulders", "bullish")
        };
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let gap = (value(a) - value(b)).abs();
            let valley =
                (a + 1..b).map(|j| if high { bars[j].low } else { -bars[j].high }).fold(f64::INFINITY, f64::min);
            let depth = value(a).min(value(b)) - valley;
            if b - a >= 5 && gap <= 0.3 * avg_range && depth >= 2.0 * avg_range {
                let conf = 0.6 + 0.1 * (depth / avg_range).min(3.0) - gap / avg_range * 0.3;
                out.push(Hit { index: b + SWING, pattern: double, direction, confidence: confidence(conf) });
            }
        }
        for w in points.windows(3) {
            let (l, h, r) = (w[0], w[1], w[2]);
            let shoulders = value(l).max(value(r));
            let gap = (value(l) - value(r)).abs();
            if value(h) > shoulders + avg_range && gap <= 0.5 * avg_range {
                let conf = 0.6 + 0.1 * ((value(h) - shoulders) / avg_range).min(3.0) - gap / avg_range * 0.2;
                out.push(Hit { index: r + SWING, pattern: hs, direction, confidence: confidence(conf) });
            }
        }
    }
}

/// Patterns on the closed bars of `symbol`/`tf` at unix time `now`.
fn detect(symbol: &str, tf: Timeframe, now: f64) -> Vec<Pattern> {
    let spec = SymbolSpec::for_name(symbol);
    let mut bars = bars::history(&spec, tf, SCAN_BARS + 1, now, None);
    bars.pop(); // the current bar is not finished
    if bars.len() < 2 {
        return Vec::new();
    }
    let avg_range = bars.iter().map(range).sum::<f64>() / bars.len() as f64;
    let mut hits = Vec::new();
    candle_patterns(&bars, avg_range, &mut hits);
    chart_patterns(&bars, avg_range, &mut hits);
    let tf_salt = fnv1a(tf.as_str());
    hits.into_iter()
        .filter_map(|h| {
            let bar = bars.get(h.index)?;
            let closed = bars::shift_bars(tf, bar.time, 1);
            let a = mix(spec.seed, tf_salt);
            let b = mix(bar.time as u64, fnv1a(h.pattern));
            Some(Pattern {
                id: uuid::Uuid::from_u64_pair(a, b).to_string(),
                symbol: symbol.to_owned(),
                timeframe: tf,
                pattern: h.pattern,
                direction: h.direction,
                confidence: h.confidence,
                detected_at: gateway_core::format_unix_ms(closed.saturating_mul(1000)),
                time: bar.time,
                price: bar.close,
                detected_unix: closed,
            })
        })
        .collect()
}

fn newest_first(mut list: Vec<Pattern>, limit: usize) -> Vec<Pattern> {
    list.sort_by(|a, b| b.detected_unix.cmp(&a.detected_unix).then(b.confidence.total_cmp(&a.confidence)));
    list.truncate(limit);
    list
}

/// State of the pattern role: which symbols and timeframes it watches.
pub(crate) struct PatternState {
    watch: RwLock<(Vec<String>, Vec<Timeframe>)>,
}

impl PatternState {
    pub(crate) fn new(symbols: &[String]) -> PatternState {
        PatternState { watch: RwLock::new((symbols.to_vec(), DEFAULT_TIMEFRAMES.to_vec())) }
    }

    pub(crate) fn apply_settings(&self, update: &SettingsUpdate) -> Result<(), ApiError> {
        let symbols = update.symbols()?;
        let timeframes = update.timeframes()?;
        let mut watch = self.watch.write();
        if let Some(s) = symbols {
            watch.0 = s;
        }
        if let Some(t) = timeframes {
            watch.1 = t;
        }
        Ok(())
    }

    fn scan(&self, symbols: Option<&str>, timeframe: Option<Timeframe>) -> Vec<Pattern> {
        let (syms, tfs) = {
            let watch = self.watch.read();
            let syms = symbols.map_or_else(|| watch.0.clone(), |s| vec![s.to_owned()]);
            let tfs = timeframe.map_or_else(|| watch.1.clone(), |t| vec![t]);
            (syms, tfs)
        };
        let now = now_secs();
        syms.iter().flat_map(|s| tfs.iter().flat_map(move |tf| detect(s, *tf, now))).collect()
    }
}

/// `GET /patterns?symbol=S&timeframe=TF&limit=N` (both filters optional; default: every watched one).
async fn patterns(req: HttpRequest, state: web::Data<PatternState>) -> Result<HttpResponse, ApiError> {
    let q = req.query_string();
    let symbol = query::get(q, "symbol")?;
    if let Some(s) = &symbol {
        Symbol::parse(s).map_err(|_| ApiError::bad(format!("symbol: invalid symbol {s:?}")))?;
    }
    let timeframe = query::get(q, "timeframe")?
        .map(|t| Timeframe::parse(&t).map_err(|_| ApiError::bad(format!("timeframe: invalid timeframe {t:?}"))))
        .transpose()?;
    let limit = usize::try_from(query::int_in(q, "limit", 50, 1, 1000)?).unwrap_or(50);
    let list = state.scan(symbol.as_deref(), timeframe);
    Ok(HttpResponse::Ok().json(newest_first(list, limit)))
}

/// `GET /patterns/latest?limit=N`: the most recent patterns across watched symbols and timeframes.
async fn latest(req: HttpRequest, state: web::Data<PatternState>) -> Result<HttpResponse, ApiError> {
    let limit = usize::try_from(query::int_in(req.query_string(), "limit", 20, 1, 1000)?).unwrap_or(20);
    Ok(HttpResponse::Ok().json(newest_first(state.scan(None, None), limit)))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: Arc<PatternState>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/patterns").route(web::get().to(patterns)))
        .service(resource("/patterns/latest").route(web::get().to(latest)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn bar(time: i64, open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar { time, open, high, low, close, tick_volume: 1, spread: 1, real_volume: 0 }
    }

    #[test]
    fn engulfing_and_doji() {
        let bars =
            [bar(0, 1.10, 1.11, 1.05, 1.06), bar(60, 1.06, 1.13, 1.05, 1.12), bar(120, 1.12, 1.15, 1.09, 1.1201)];
        let mut hits = Vec::new();
        candle_patterns(&bars, 0.06, &mut hits);
        let names: Vec<_> = hits.iter().map(|h| (h.index, h.pattern, h.direction)).collect();
        assert_eq!(names, vec![(1, "bullish_engulfing", "bullish"), (2, "doji", "neutral")]);
        assert!(hits.iter().all(|h| (0.5..=0.95).contains(&h.confidence)));
    }

    #[test]
    fn double_top_and_head_and_shoulders() {
        // highs: a double top at 5 and 12, a head at 20 between shoulders at 12 and 28
        let highs = [
            1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0,
            1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.1, 1.0, 1.0, 1.0, 1.0,
        ];
        let bars: Vec<Bar> =
            highs.iter().enumerate().map(|(i, h)| bar(i as i64 * 60, h - 0.1, *h, h - 0.3, h - 0.2)).collect();
        let mut hits = Vec::new();
        chart_patterns(&bars, 0.3, &mut hits);
        let found: Vec<_> = hits.iter().map(|h| (h.pattern, h.index)).collect();
        assert!(found.contains(&("double_top", 12 + SWING)), "{found:?}");
        assert!(found.contains(&("head_and_shoulders", 28 + SWING)), "{found:?}");
        assert!(hits.iter().all(|h| h.direction == "bearish"));
    }

    #[test]
    fn detection_is_deterministic_and_well_formed() {
        let now = 1_750_000_123.0;
        let mut total = 0;
        for tf in DEFAULT_TIMEFRAMES {
            let a = detect("EURUSD", tf, now);
            let b = detect("EURUSD", tf, now);
            assert_eq!(a.iter().map(|p| &p.id).collect::<Vec<_>>(), b.iter().map(|p| &p.id).collect::<Vec<_>>());
            for p in &a {
                assert!(p.detected_unix as f64 <= now, "{p:?}");
                assert_eq!(bars::bar_open(tf, p.time), p.time);
            }
            total += a.len();
        }
        assert!(total > 0, "120 bars × 6 timeframes yield some pattern");
    }
}
