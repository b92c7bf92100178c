//! The `strategy` role: strategies in memory (CRUD, start/stop) and the signals running ones emit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use gateway_core::{EventType, Symbol, Timeframe};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::events::EventBus;
use crate::market::{SymbolSpec, now_secs, round_to};
use crate::mt5::Side;
use crate::query;
use crate::server::{json_body, resource};

const MAX_NAME: usize = 64;
/// A running strategy emits a signal this often (the first one right after start).
const SIGNAL_EVERY: Duration = Duration::from_secs(2);
const CHECK_EVERY: Duration = Duration::from_millis(250);
const MAX_SIGNALS: usize = 1000;
const YEAR_SECS: f64 = 365.25 * 86_400.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Stopped,
    Running,
}

#[derive(Debug, Clone, Serialize)]
struct Strategy {
    id: String,
    name: String,
    symbol: String,
    timeframe: Timeframe,
    parameters: Map<String, Value>,
    status: Status,
    created_at: String,
    updated_at: String,
    #[serde(skip)]
    next_signal: Option<Instant>,
}

/// One signal; `time` is unix seconds.
#[derive(Debug, Clone, Serialize)]
struct Signal {
    strategy_id: String,
    symbol: String,
    timeframe: Timeframe,
    side: Side,
    price: f64,
    strength: f64,
    time: i64,
}

#[derive(Debug, Deserialize)]
struct NewStrategy {
    name: String,
    symbol: Symbol,
    timeframe: Timeframe,
    #[serde(default)]
    parameters: Value,
}

/// `PUT` body: every field optional; read-only fields a client echoes back (id, status, …) are ignored.
#[derive(Debug, Deserialize)]
struct StrategyPatch {
    name: Option<String>,
    symbol: Option<Symbol>,
    timeframe: Option<Timeframe>,
    parameters: Option<Value>,
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad(format!("name: must be 1 to {MAX_NAME} characters")));
    }
    Ok(name.to_owned())
}

fn valid_parameters(v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad("parameters: must be an object")),
    }
}

/// The signal a strategy gives now: momentum of the symbol's path over `lookback` bars.
fn signal_for(s: &Strategy, now: f64) -> Signal {
    let spec = SymbolSpec::for_name(&s.symbol);
    let lookback = s.parameters.get("lookback").and_then(Value::as_u64).unwrap_or(5).clamp(1, 500);
    let span = lookback as f64 * s.timeframe.seconds() as f64;
    let diff = spec.ln_price(now) - spec.ln_price(now - span);
    let scale = spec.annual_vol * (span / YEAR_SECS).sqrt();
    let strength = if scale > 0.0 { round_to((diff.abs() / scale).clamp(0.01, 1.0), 2) } else { 0.5 };
    Signal {
        strategy_id: s.id.clone(),
        symbol: s.symbol.clone(),
        timeframe: s.timeframe,
        side: if diff >= 0.0 { Side::Buy } else { Side::Sell },
        price: spec.price_at(now),
        strength,
        time: now as i64,
    }
}

#[derive(Default)]
struct StrategyBook {
    strategies: Vec<Strategy>,
    signals: VecDeque<Signal>,
}

impl StrategyBook {
    fn find(&mut self, id: &str) -> Result<&mut Strategy, ApiError> {
        self.strategies
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("strategy {id} not found")))
    }

    /// Signals due now, recorded in the ring.
    fn due_signals(&mut self) -> Vec<Signal> {
        let now = Instant::now();
        let t = now_secs();
        let mut out = Vec::new();
        for s in &mut self.strategies {
            if s.status == Status::Running && s.next_signal.is_some_and(|at| at <= now) {
                s.next_signal = Some(now + SIGNAL_EVERY);
                out.push(signal_for(s, t));
            }
        }
        for sig in &out {
            if self.signals.len() == MAX_SIGNALS {
                self.signals.pop_front();
            }
            self.signals.push_back(sig.clone());
        }
        out
    }
}

/// State of the strategy role.
pub(crate) struct StrategyState {
    book: Mutex<StrategyBook>,
    bus: EventBus,
}

impl StrategyState {
    pub(crate) fn new(bus: EventBus) -> StrategyState {
        StrategyState { book: Mutex::new(StrategyBook::default()), bus }
    }

    pub(crate) fn spawn_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let state = Arc::clone(self);
        vec![actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(CHECK_EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let signals = state.book.lock().due_signals();
                for s in &signals {
                    state.bus.publish(EventType::StrategySignal, &s.strategy_id, s);
                }
            }
        })]
    }
}

async fn list(state: web::Data<StrategyState>) -> HttpResponse {
    let book = state.book.lock();
    HttpResponse::Ok().json(&book.strategies)
}

async fn create(body: web::Bytes, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    let new: NewStrategy = json_body(&body)?;
    let now = gateway_core::now_rfc3339();
    let strategy = Strategy {
        id: uuid::Uuid::new_v4().to_string(),
        name: valid_name(&new.name)?,
        symbol: new.symbol.as_str().to_owned(),
        timeframe: new.timeframe,
        parameters: valid_parameters(new.parameters)?,
        status: Status::Stopped,
        created_at: now.clone(),
        updated_at: now,
        next_signal: None,
    };
    state.book.lock().strategies.push(strategy.clone());
    Ok(HttpResponse::Created().json(strategy))
}

async fn get(path: web::Path<String>, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    let mut book = state.book.lock();
    Ok(HttpResponse::Ok().json(&*book.find(&path)?))
}

async fn update(
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<StrategyState>,
) -> Result<HttpResponse, ApiError> {
    let patch: StrategyPatch = json_body(&body)?;
    let name = patch.name.as_deref().map(valid_name).transpose()?;
    let parameters = patch.parameters.map(valid_parameters).transpose()?;
    let mut book = state.book.lock();
    let s = book.find(&path)?;
    if let Some(name) = name {
        s.name = name;
    }
    if let Some(symbol) = patch.symbol {
        s.symbol = symbol.as_str().to_owned();
    }
    if let Some(tf) = patch.timeframe {
        s.timeframe = tf;
    }
    if let Some(p) = parameters {
        s.parameters = p;
    }
    s.updated_at = gateway_core::now_rfc3339();
    Ok(HttpResponse::Ok().json(&*s))
}

async fn delete(path: web::Path<String>, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    let mut book = state.book.lock();
    let idx = book
        .strategies
        .iter()
        .position(|s| s.id == *path)
        .ok_or_else(|| ApiError::not_found(format!("strategy {path} not found")))?;
    let s = book.strategies.remove(idx);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": s.id, "deleted": true })))
}

fn set_status(state: &StrategyState, id: &str, status: Status) -> Result<HttpResponse, ApiError> {
    let mut book = state.book.lock();
    let s = book.find(id)?;
    if s.status == status {
        let what = if status == Status::Running { "running" } else { "stopped" };
        return Err(ApiError::Conflict(format!("strategy {id} is already {what}")));
    }
    s.status = status;
    s.next_signal = (status == Status::Running).then(Instant::now);
    s.updated_at = gateway_core::now_rfc3339();
    Ok(HttpResponse::Ok().json(&*s))
}

async fn start(path: web::Path<String>, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    set_status(&state, &path, Status::Running)
}

async fn stop(path: web::Path<String>, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    set_status(&state, &path, Status::Stopped)
}

/// `GET /signals?limit=N&strategy_id=ID`: the most recent signals, newest first.
async fn signals(req: HttpRequest, state: web::Data<StrategyState>) -> Result<HttpResponse, ApiError> {
    let q = req.query_string();
    let limit = usize::try_from(query::int_in(q, "limit", 50, 1, MAX_SIGNALS as u64)?).unwrap_or(50);
    let only = query::get(q, "strategy_id")?;
    let book = state.book.lock();
    let list: Vec<&Signal> = book
        .signals
        .iter()
        .rev()
        .filter(|s| only.as_deref().is_none_or(|id| s.strategy_id == id))
        .take(limit)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: Arc<StrategyState>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/strategies").route(web::get().to(list)).route(web::post().to(create)))
        .service(
            resource("/strategies/{id}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/strategies/{id}/start").route(web::post().to(start)))
        .service(resource("/strategies/{id}/stop").route(web::post().to(stop)))
        .service(resource("/signals").route(web::get().to(signals)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn strategy(symbol: &str, tf: Timeframe) -> Strategy {
        Strategy {
            id: "s1".into(),
            name: "n".into(),
            symbol: symbol.into(),
            timeframe: tf,
            parameters: Map::new(),
            status: Status::Running,
            created_at: String::new(),
            updated_at: String::new(),
            next_signal: Some(Instant::now()),
        }
    }

    #[test]
    fn signals_are_sane() {
        for (sym, tf) in [("EURUSD", Timeframe::M1), ("XAUUSD", Timeframe::H4), ("USDJPY", Timeframe::MN1)] {
            let s = signal_for(&strategy(sym, tf), 1_750_000_000.0);
            assert!(s.price > 0.0 && (0.01..=1.0).contains(&s.strength), "{s:?}");
            assert_eq!((s.symbol.as_str(), s.timeframe, s.time), (sym, tf, 1_750_000_000));
        }
    }

    #[test]
    fn running_strategies_signal_once_per_interval() {
        let mut book = StrategyBook::default();
        book.strategies.push(strategy("EURUSD", Timeframe::H1));
        let mut stopped = strategy("GBPUSD", Timeframe::H1);
        stopped.status = Status::Stopped;
        book.strategies.push(stopped);
        assert_eq!(book.due_signals().len(), 1);
        assert!(book.due_signals().is_empty(), "not due again before the interval");
        assert_eq!(book.signals.len(), 1);
    }

    #[test]
    fn names_and_parameters() {
        assert!(valid_name("").is_err() && valid_name("   ").is_err() && valid_name(&"é".repeat(65)).is_err());
        assert_eq!(valid_name(" ma cross ").unwrap(), "ma cross");
        assert!(valid_name(&"é".repeat(64)).is_ok());
        assert!(valid_parameters(Value::Null).unwrap().is_empty());
        assert!(valid_parameters(serde_json::json!([1])).is_err());
    }
}
