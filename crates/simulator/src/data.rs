//! The `data` role: live ticks for a switchable symbol set, generated OHLC history, symbol info.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_rt::task::JoinHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use gateway_core::{EventType, Symbol, Timeframe};
use parking_lot::RwLock;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::bars;
use crate::error::ApiError;
use crate::events::{self, EventBus};
use crate::market::{SymbolSpec, Walk, normal, now_msc, now_secs};
use crate::query;
use crate::server::{json_bytes, resource};
use crate::settings::SettingsUpdate;

/// The largest `count` `/ohlc` accepts.
const MAX_COUNT: u64 = 100_000;
/// Above this many bars, history is generated off the async worker.
const INLINE_BARS: u64 = 5_000;

/// One tick, as MT5's `symbol_info_tick` returns it (plus the symbol).
#[derive(Debug, Serialize)]
struct Tick<'a> {
    symbol: &'a str,
    time_msc: i64,
    bid: f64,
    ask: f64,
    last: f64,
    volume: u64,
}

struct LiveSymbol {
    spec: Arc<SymbolSpec>,
    walk: Walk,
    /// The latest tick, serialised once and shared by every `/ticks/latest` answer.
    latest: Bytes,
    bid: f64,
}

impl LiveSymbol {
    fn new(name: &str, rng: &mut SmallRng) -> LiveSymbol {
        let spec = Arc::new(SymbolSpec::for_name(name));
        let walk = Walk::start(&spec, now_secs());
        let mut live = LiveSymbol { spec, walk, latest: Bytes::new(), bid: 0.0 };
        live.record(now_msc(), rng.random_range(1..=5));
        live
    }

    /// Serialises the current price as the latest tick.
    fn record(&mut self, time_msc: i64, volume: u64) {
        let (bid, ask) = self.spec.quote(self.walk.mid());
        let tick = Tick { symbol: &self.spec.name, time_msc, bid, ask, last: bid, volume };
        match serde_json::to_vec(&tick) {
            Ok(json) => {
                self.latest = Bytes::from(json);
                self.bid = bid;
            }
            Err(e) => log::warn!("cannot serialise tick of {}: {e}", self.spec.name),
        }
    }
}

struct DataBook {
    symbols: Vec<LiveSymbol>,
    index: HashMap<String, usize>,
    rng: SmallRng,
}

impl DataBook {
    fn get(&self, name: &str) -> Option<&LiveSymbol> {
        self.index.get(name).and_then(|i| self.symbols.get(*i))
    }

    /// Switches to a new symbol set: kept symbols keep their walk, new ones start ticking at once.
    fn set_symbols(&mut self, names: &[String]) {
        let mut old: HashMap<String, LiveSymbol> = self.symbols.drain(..).map(|s| (s.spec.name.clone(), s)).collect();
        for name in names {
            let live = old.remove(name).unwrap_or_else(|| LiveSymbol::new(name, &mut self.rng));
            self.symbols.push(live);
        }
        self.index = self.symbols.iter().enumerate().map(|(i, s)| (s.spec.name.clone(), i)).collect();
    }
}

/// State of the data role.
pub(crate) struct DataState {
    book: RwLock<DataBook>,
    bus: EventBus,
    tick_rate: u32,
}

impl DataState {
    pub(crate) fn new(symbols: &[String], tick_rate: u32, bus: EventBus) -> DataState {
        let mut book = DataBook { symbols: Vec::new(), index: HashMap::new(), rng: SmallRng::from_os_rng() };
        book.set_symbols(symbols);
        DataState { book: RwLock::new(book), bus, tick_rate }
    }

    /// Moves every symbol one tick and publishes the ticks.
    fn step(&self) {
        let t = now_secs();
        let msc = now_msc();
        let listening = self.bus.has_listeners();
        let mut frames = Vec::new();
        {
            let mut book = self.book.write();
            let DataBook { symbols, rng, .. } = &mut *book;
            for s in symbols.iter_mut() {
                let z = normal(rng);
                s.walk.step(&s.spec, t, z);
                s.record(msc, rng.random_range(1..=5));
                if listening {
                    let json = std::str::from_utf8(&s.latest).unwrap_or("{}");
                    frames.push(events::frame(EventType::Tick, &s.spec.name, json));
                }
            }
        }
        for f in frames {
            self.bus.send_frame(f);
        }
    }

    pub(crate) fn apply_settings(&self, update: &SettingsUpdate) -> Result<(), ApiError> {
        if let Some(symbols) = update.symbols()? {
            self.book.write().set_symbols(&symbols);
            log::info!("data: now serving {}", symbols.join(","));
        }
        Ok(())
    }

    pub(crate) fn spawn_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        if self.tick_rate == 0 {
            return Vec::new();
        }
        let state = Arc::clone(self);
        let period = Duration::from_secs(1) / self.tick_rate;
        vec![actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            interval.tick().await;
            loop {
                interval.tick().await;
                state.step();
            }
        })]
    }
}

fn served_symbol<'q>(q: &'q str) -> Result<std::borrow::Cow<'q, str>, ApiError> {
    let symbol = query::required(q, "symbol")?;
    Symbol::parse(&symbol).map_err(|_| ApiError::bad(format!("symbol: invalid symbol {symbol:?}")))?;
    Ok(symbol)
}

fn not_served(symbol: &str) -> ApiError {
    ApiError::not_found(format!("symbol {symbol} is not served"))
}

/// `GET /ticks/latest?symbol=S`.
async fn ticks_latest(req: HttpRequest, state: web::Data<DataState>) -> Result<HttpResponse, ApiError> {
    let symbol = served_symbol(req.query_string())?;
    let latest = state.book.read().get(&symbol).map(|s| s.latest.clone());
    latest.map(json_bytes).ok_or_else(|| not_served(&symbol))
}

/// `GET /ohlc?symbol=S&timeframe=TF&count=N`.
async fn ohlc(req: HttpRequest, state: web::Data<DataState>) -> Result<HttpResponse, ApiError> {
    let q = req.query_string();
    let symbol = served_symbol(q)?;
    let tf_raw = query::required(q, "timeframe")?;
    let tf =
        Timeframe::parse(&tf_raw).map_err(|_| ApiError::bad(format!("timeframe: invalid timeframe {tf_raw:?}")))?;
    let count = query::int_in(q, "count", 100, 1, MAX_COUNT)?;
    let (spec, bid) = {
        let book = state.book.read();
        let live = book.get(&symbol).ok_or_else(|| not_served(&symbol))?;
        (Arc::clone(&live.spec), live.bid)
    };
    let now = now_secs();
    let count = usize::try_from(count).unwrap_or(100);
    let bars = if count as u64 <= INLINE_BARS {
        bars::history(&spec, tf, count, now, Some(bid))
    } else {
        web::block(move || bars::history(&spec, tf, count, now, Some(bid))).await.map_err(|e| {
            log::warn!("history generation failed: {e}");
            ApiError::Internal
        })?
    };
    Ok(HttpResponse::Ok().json(bars))
}

/// `GET /symbols`.
async fn symbols(state: web::Data<DataState>) -> HttpResponse {
    let json = {
        let book = state.book.read();
        let specs: Vec<&SymbolSpec> = book.symbols.iter().map(|s| &*s.spec).collect();
        serde_json::to_vec(&specs)
    };
    match json {
        Ok(json) => json_bytes(Bytes::from(json)),
        Err(e) => {
            log::warn!("cannot serialise symbols: {e}");
            actix_web::ResponseError::error_response(&ApiError::Internal)
        }
    }
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: Arc<DataState>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/ticks/latest").route(web::get().to(ticks_latest)))
        .service(resource("/ohlc").route(web::get().to(ohlc)))
        .service(resource("/symbols").route(web::get().to(symbols)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn names(state: &DataState) -> Vec<String> {
        state.book.read().symbols.iter().map(|s| s.spec.name.clone()).collect()
    }

    #[test]
    fn switching_symbols_keeps_survivors_and_starts_new_ones() {
        let state = DataState::new(&["EURUSD".into(), "XAUUSD".into()], 10, EventBus::default());
        state.step();
        let before = state.book.read().get("EURUSD").map(|s| s.latest.clone()).unwrap();
        let update = SettingsUpdate::parse(br#"{"changed": {"symbols": ["BTCUSD", "EURUSD"]}}"#).unwrap();
        state.apply_settings(&update).unwrap();
        assert_eq!(names(&state), vec!["BTCUSD", "EURUSD"]);
        let book = state.book.read();
        assert_eq!(book.get("EURUSD").map(|s| s.latest.clone()), Some(before), "survivor kept its state");
        assert!(book.get("XAUUSD").is_none());
        let tick: serde_json::Value = serde_json::from_slice(&book.get("BTCUSD").unwrap().latest).unwrap();
        assert_eq!(tick["symbol"], "BTCUSD");
        assert!(tick["ask"].as_f64().unwrap() > tick["bid"].as_f64().unwrap());
    }
}
