//! OHLC bars: timeframe alignment (incl. Sunday weeks and calendar months) and history generation.

use gateway_core::Timeframe;
use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

use crate::market::{SymbolSpec, mix, splitmix64, unit};

const WEEK_SECS: i64 = 7 * 86_400;
/// 1970-01-04 00:00 UTC, a Sunday: MT5 opens `W1` bars on Sundays.
const FIRST_SUNDAY: i64 = 3 * 86_400;
const YEAR_SECS: f64 = 365.25 * 86_400.0;

/// One bar, as MT5's `copy_rates_*` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Bar {
    /// Bar open time, unix seconds.
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub tick_volume: u64,
    /// Spread in points.
    pub spread: u32,
    pub real_volume: u64,
}

fn month_index(t: i64) -> i64 {
    let d = OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    i64::from(d.year()) * 12 + i64::from(u8::from(d.month())) - 1
}

fn month_start_of_index(idx: i64) -> i64 {
    let year = i32::try_from(idx.div_euclid(12)).unwrap_or(1970);
    let month =
        u8::try_from(idx.rem_euclid(12) + 1).ok().and_then(|m| Month::try_from(m).ok()).unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1).map_or(0, |d| d.midnight().assume_utc().unix_timestamp())
}

/// The open time of the bar of `tf` that contains unix time `t` (seconds).
pub(crate) fn bar_open(tf: Timeframe, t: i64) -> i64 {
    match tf {
        Timeframe::W1 => t - (t - FIRST_SUNDAY).rem_euclid(WEEK_SECS),
        Timeframe::MN1 => month_start_of_index(month_index(t)),
        _ => {
            let secs = i64::try_from(tf.seconds()).unwrap_or(60);
            t - t.rem_euclid(secs)
        }
    }
}

/// The open time of the bar `n` bars after (`n > 0`) or before (`n < 0`) the bar opening at `open`.
pub(crate) fn shift_bars(tf: Timeframe, open: i64, n: i64) -> i64 {
    match tf {
        Timeframe::MN1 => month_start_of_index(month_index(open) + n),
        _ => open + n * i64::try_from(tf.seconds()).unwrap_or(60),
    }
}

/// The `count` most recent bars of `tf` for a symbol at unix time `now` (seconds), oldest first,
/// ending with the current (unfinished) bar. `live_close` replaces the current bar's close (MT5
/// builds bars from bids). History starts at the unix epoch, so fewer bars may come back.
pub(crate) fn history(spec: &SymbolSpec, tf: Timeframe, count: usize, now: f64, live_close: Option<f64>) -> Vec<Bar> {
    let now_secs = now.floor() as i64;
    let current = bar_open(tf, now_secs);
    let mut opens: Vec<i64> = Vec::with_capacity(count.min(100_000));
    let mut t = current;
    while opens.len() < count && t >= 0 {
        opens.push(t);
        t = shift_bars(tf, t, -1);
    }
    opens.reverse();
    let tf_salt = tf.seconds();
    let wick_scale = spec.annual_vol * (tf.seconds() as f64 / YEAR_SECS).sqrt() * 0.6;
    let minutes = (tf.seconds() / 60).max(1);
    let mut bars = Vec::with_capacity(opens.len());
    let mut open_price = opens.first().map_or(0.0, |t| spec.price_at(*t as f64));
    for (i, &t_open) in opens.iter().enumerate() {
        let last = i + 1 == opens.len();
        let close = match (last, opens.get(i + 1)) {
            (false, Some(next)) => spec.price_at(*next as f64),
            _ => live_close.map_or_else(|| spec.price_at(now), |c| spec.round(c)),
        };
        let h = mix(spec.seed ^ tf_salt, t_open as u64);
        let (u_hi, u_lo, u_vol) = (unit(h), unit(splitmix64(h)), splitmix64(h ^ 0x5bd1_e995));
        let high = spec.round(open_price.max(close) * (wick_scale * u_hi).exp());
        let low = spec.round(open_price.min(close) * (-wick_scale * u_lo).exp()).max(spec.point);
        let full_volume = minutes * (30 + u_vol % 90);
        let tick_volume = if last {
            let span = (shift_bars(tf, t_open, 1) - t_open).max(1) as f64;
            ((full_volume as f64) * ((now - t_open as f64) / span).clamp(0.0, 1.0)).ceil().max(1.0) as u64
        } else {
            full_volume
        };
        bars.push(Bar {
            time: t_open,
            open: open_price,
            high,
            low: low.min(open_price.min(close)),
            close,
            tick_volume,
            spread: spec.spread,
            real_volume: 0,
        });
        open_price = close;
    }
    bars
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use gateway_core::TIMEFRAMES;
    use time::macros::datetime;

    use super::*;

    fn ts(dt: OffsetDateTime) -> i64 {
        dt.unix_timestamp()
    }

    #[test]
    fn fixed_timeframes_align_to_their_length() {
        let t = ts(datetime!(2026-03-18 13:47:31 UTC)); // a Wednesday
        assert_eq!(bar_open(Timeframe::M1, t), ts(datetime!(2026-03-18 13:47:00 UTC)));
        assert_eq!(bar_open(Timeframe::M5, t), ts(datetime!(2026-03-18 13:45:00 UTC)));
        assert_eq!(bar_open(Timeframe::M12, t), ts(datetime!(2026-03-18 13:36:00 UTC)));
        assert_eq!(bar_open(Timeframe::H1, t), ts(datetime!(2026-03-18 13:00:00 UTC)));
        assert_eq!(bar_open(Timeframe::H3, t), ts(datetime!(2026-03-18 12:00:00 UTC)));
        assert_eq!(bar_open(Timeframe::H4, t), ts(datetime!(2026-03-18 12:00:00 UTC)));
        assert_eq!(bar_open(Timeframe::H8, t), ts(datetime!(2026-03-18 08:00:00 UTC)));
        assert_eq!(bar_open(Timeframe::D1, t), ts(datetime!(2026-03-18 00:00:00 UTC)));
        for tf in TIMEFRAMES {
            let open = bar_open(tf, t);
            assert!(open <= t && t < shift_bars(tf, open, 1), "{tf}");
            assert_eq!(bar_open(tf, open), open, "{tf} alignment is idempotent");
        }
    }

    #[test]
    fn weeks_open_on_sunday() {
        let wed = ts(datetime!(2026-03-18 13:47:31 UTC));
        assert_eq!(bar_open(Timeframe::W1, wed), ts(datetime!(2026-03-15 00:00:00 UTC)));
        let sunday = ts(datetime!(2026-03-15 00:00:00 UTC));
        assert_eq!(bar_open(Timeframe::W1, sunday), sunday);
        assert_eq!(bar_open(Timeframe::W1, sunday - 1), ts(datetime!(2026-03-08 00:00:00 UTC)));
        let open = bar_open(Timeframe::W1, wed);
        let weekday = OffsetDateTime::from_unix_timestamp(open).unwrap().weekday();
        assert_eq!(weekday, time::Weekday::Sunday);
    }

    #[test]
    fn months_are_calendar_months() {
        let t = ts(datetime!(2024-03-31 23:59:59 UTC));
        let open = bar_open(Timeframe::MN1, t);
        assert_eq!(open, ts(datetime!(2024-03-01 00:00:00 UTC)));
        assert_eq!(shift_bars(Timeframe::MN1, open, -1), ts(datetime!(2024-02-01 00:00:00 UTC)));
        assert_eq!(shift_bars(Timeframe::MN1, open, -3), ts(datetime!(2023-12-01 00:00:00 UTC)));
        assert_eq!(shift_bars(Timeframe::MN1, open, 10), ts(datetime!(2025-01-01 00:00:00 UTC)));
        assert_eq!(
            bar_open(Timeframe::MN1, ts(datetime!(2024-01-01 00:00:00 UTC))),
            ts(datetime!(2024-01-01 00:00:00 UTC))
        );
    }

    fn check_consistent(spec: &SymbolSpec, bars: &[Bar]) {
        for w in bars.windows(2) {
            assert!(w[0].time < w[1].time, "oldest first");
            assert_eq!(w[0].close, w[1].open, "continuous");
        }
        for b in bars {
            assert!(b.high >= b.open.max(b.close), "{b:?}");
            assert!(b.low <= b.open.min(b.close), "{b:?}");
            assert!(b.low > 0.0, "{b:?}");
            for p in [b.open, b.high, b.low, b.close] {
                assert_eq!(spec.round(p), p, "rounded to digits: {b:?}");
            }
            assert!(b.tick_volume >= 1);
        }
    }

    #[test]
    fn history_is_aligned_consistent_and_deterministic() {
        let now = ts(datetime!(2026-03-18 13:47:31.250 UTC)) as f64 + 0.25;
        for name in ["EURUSD", "USDJPY", "XAUUSD", "FOO.bar"] {
            let spec = SymbolSpec::for_name(name);
            for tf in TIMEFRAMES {
                let bars = history(&spec, tf, 300, now, None);
                assert_eq!(bars.len(), 300, "{name} {tf}");
                check_consistent(&spec, &bars);
                let last = bars.last().unwrap();
                assert_eq!(last.time, bar_open(tf, now as i64));
                assert_eq!(last.close, spec.price_at(now));
                for b in &bars {
                    assert_eq!(bar_open(tf, b.time), b.time, "{tf} aligned");
                }
                assert_eq!(bars, history(&spec, tf, 300, now, None), "deterministic");
                // a longer request ends with the same bars
                let more = history(&spec, tf, 400, now, None);
                assert_eq!(&more[100..], &bars[..]);
            }
        }
    }

    #[test]
    fn live_close_and_epoch_limit() {
        let spec = SymbolSpec::for_name("EURUSD");
        let now = 1_750_000_000.5;
        let bars = history(&spec, Timeframe::M1, 3, now, Some(9.0));
        let last = bars.last().unwrap();
        assert_eq!(last.close, 9.0);
        assert!(last.high >= 9.0 && last.low <= last.open);
        let months = history(&spec, Timeframe::MN1, 100_000, now, None);
        assert!(months.len() < 1000 && months.first().unwrap().time == 0, "{}", months.len());
        check_consistent(&spec, &months);
        let minutes = history(&spec, Timeframe::M1, 100_000, now, None);
        assert_eq!(minutes.len(), 100_000);
    }
}
