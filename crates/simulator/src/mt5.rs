//! The `mt5` role: a paper account with market and pending orders, positions, SL/TP and live P/L.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use gateway_core::{EventType, Symbol};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::events::EventBus;
use crate::market::{SymbolSpec, Walk, normal, now_secs, round_to};
use crate::query;
use crate::server::{json_body, resource};
use crate::settings::SettingsUpdate;

const LOGIN: u64 = 51_234_567;
const CURRENCY: &str = "USD";
const LEVERAGE: u32 = 100;
const START_BALANCE: f64 = 10_000.0;
const DEFAULT_MAX_VOLUME: f64 = 1.0;
const MAX_COMMENT: usize = 64;
/// How often prices move, pending orders trigger and stops are checked.
const STEP: Duration = Duration::from_millis(250);
/// At most one price-update event per position per this interval.
const UPDATE_EVENT_EVERY: Duration = Duration::from_secs(1);

/// MT5 trade server return codes.
const RETCODE_PLACED: u32 = 10008;
const RETCODE_DONE: u32 = 10009;
const RETCODE_REQUOTE: u32 = 10004;

/// Direction of an order or position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Side {
    Buy,
    Sell,
}

/// How an order executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OrderKind {
    Market,
    Limit,
    Stop,
}

/// `POST /orders` body (unknown fields are refused: a mistyped `sl` must not pass silently).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderRequest {
    symbol: String,
    side: Side,
    #[serde(rename = "type")]
    kind: OrderKind,
    volume: f64,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    sl: Option<f64>,
    #[serde(default)]
    tp: Option<f64>,
    #[serde(default)]
    deviation: Option<u32>,
    #[serde(default)]
    magic: Option<u64>,
    #[serde(default)]
    comment: Option<String>,
}

/// An order that passed validation (`sl`/`tp` 0 = none).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValidOrder {
    symbol: String,
    side: Side,
    kind: OrderKind,
    volume: f64,
    price: Option<f64>,
    sl: f64,
    tp: f64,
    deviation: Option<u32>,
    magic: u64,
    comment: String,
}

fn positive(name: &str, v: f64) -> Result<f64, ApiError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ApiError::bad(format!("{name}: must be a number greater than 0")))
    }
}

fn stop_level(name: &str, v: Option<f64>) -> Result<f64, ApiError> {
    match v {
        None => Ok(0.0),
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Some(_) => Err(ApiError::bad(format!("{name}: must be a number of at least 0 (0 = none)"))),
    }
}

/// Stops must be on the right side of the reference price: below (sl) and above (tp) for a buy.
fn check_stops(side: Side, reference: f64, sl: f64, tp: f64) -> Result<(), ApiError> {
    let (sl_ok, tp_ok, sl_word, tp_word) = match side {
        Side::Buy => (sl == 0.0 || sl < reference, tp == 0.0 || tp > reference, "below", "above"),
        Side::Sell => (sl == 0.0 || sl > reference, tp == 0.0 || tp < reference, "above", "below"),
    };
    let side = match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    if !sl_ok {
        return Err(ApiError::bad(format!("sl: must be {sl_word} the price ({reference}) for a {side}")));
    }
    if !tp_ok {
        return Err(ApiError::bad(format!("tp: must be {tp_word} the price ({reference}) for a {side}")));
    }
    Ok(())
}

impl OrderRequest {
    /// Checks the order against the rules a broker enforces before it reaches the market.
    pub(crate) fn validate(self, max_volume: f64) -> Result<ValidOrder, ApiError> {
        Symbol::parse(&self.symbol).map_err(|_| ApiError::bad(format!("symbol: invalid symbol {:?}", self.symbol)))?;
        let volume = positive("volume", self.volume)?;
        if volume > max_volume {
            return Err(ApiError::bad(format!("volume: must be at most {max_volume} (risk.max_volume)")));
        }
        let price = match (self.kind, self.price) {
            (OrderKind::Market, None) => None,
            (_, Some(p)) => Some(positive("price", p)?),
            (_, None) => return Err(ApiError::bad("price: required for limit and stop orders")),
        };
        let sl = stop_level("sl", self.sl)?;
        let tp = stop_level("tp", self.tp)?;
        if let (OrderKind::Limit | OrderKind::Stop, Some(p)) = (self.kind, price) {
            check_stops(self.side, p, sl, tp)?;
        }
        let comment = self.comment.unwrap_or_default();
        if comment.chars().count() > MAX_COMMENT {
            return Err(ApiError::bad(format!("comment: at most {MAX_COMMENT} characters")));
        }
        Ok(ValidOrder {
            symbol: self.symbol,
            side: self.side,
            kind: self.kind,
            volume,
            price,
            sl,
            tp,
            deviation: self.deviation,
            magic: self.magic.unwrap_or(0),
            comment,
        })
    }
}

/// An open position, as MT5's `positions_get` returns it.
#[derive(Debug, Clone, Serialize)]
struct Position {
    ticket: u64,
    symbol: String,
    #[serde(rename = "type")]
    side: Side,
    volume: f64,
    price_open: f64,
    sl: f64,
    tp: f64,
    price_current: f64,
    profit: f64,
    swap: f64,
    time: i64,
    magic: u64,
    comment: String,
    #[serde(skip)]
    last_event: Instant,
    #[serde(skip)]
    last_event_price: f64,
}

/// A pending order, as MT5's `orders_get` returns it.
#[derive(Debug, Clone, Serialize)]
struct PendingOrder {
    ticket: u64,
    symbol: String,
    #[serde(rename = "type")]
    order_type: &'static str,
    volume: f64,
    price_open: f64,
    sl: f64,
    tp: f64,
    price_current: f64,
    time_setup: i64,
    magic: u64,
    comment: String,
    #[serde(skip)]
    side: Side,
    #[serde(skip)]
    kind: OrderKind,
}

/// The answer to a trade request, as MT5's `order_send` returns it.
#[derive(Debug, Clone, Serialize)]
struct TradeResult {
    order: u64,
    deal: u64,
    price: f64,
    volume: f64,
    retcode: u32,
    comment: &'static str,
}

#[derive(Debug, Serialize)]
struct Account {
    login: u64,
    currency: &'static str,
    leverage: u32,
    balance: f64,
    equity: f64,
    margin: f64,
    margin_free: f64,
    margin_level: f64,
}

/// A `position` event: the position plus what happened to it.
#[derive(Serialize)]
struct PositionEvent<'a> {
    #[serde(flatten)]
    position: &'a Position,
    event: &'static str,
}

struct Market {
    spec: Arc<SymbolSpec>,
    walk: Walk,
    bid: f64,
    ask: f64,
}

impl Market {
    fn new(name: &str, t: f64) -> Market {
        let spec = Arc::new(SymbolSpec::for_name(name));
        let walk = Walk::start(&spec, t);
        let (bid, ask) = spec.quote(walk.mid());
        Market { spec, walk, bid, ask }
    }

    fn step(&mut self, t: f64, z: f64) {
        self.walk.step(&self.spec, t, z);
        (self.bid, self.ask) = self.spec.quote(self.walk.mid());
    }

    /// The price a new order on `side` fills at.
    fn entry(&self, side: Side) -> f64 {
        match side {
            Side::Buy => self.ask,
            Side::Sell => self.bid,
        }
    }

    /// The price a position on `side` is valued and closed at.
    fn exit(&self, side: Side) -> f64 {
        match side {
            Side::Buy => self.bid,
            Side::Sell => self.ask,
        }
    }

    /// Profit in the account currency (USD; other profit currencies are converted through the
    /// symbol itself when its base is USD, else taken as is).
    fn profit(&self, side: Side, volume: f64, open: f64, current: f64) -> f64 {
        let diff = match side {
            Side::Buy => current - open,
            Side::Sell => open - current,
        };
        let raw = diff * volume * self.spec.contract_size;
        let usd = if self.spec.currency_profit == CURRENCY || self.spec.currency_base != CURRENCY || current <= 0.0 {
            raw
        } else {
            raw / current
        };
        round_to(usd, 2)
    }

    fn margin(&self, volume: f64, price: f64) -> f64 {
        let notional = volume * self.spec.contract_size;
        let usd = if self.spec.currency_base == CURRENCY { notional } else { notional * price };
        usd / f64::from(LEVERAGE)
    }
}

enum Change {
    Opened,
    Updated,
    Closed,
}

struct Mt5Book {
    balance: f64,
    max_volume: f64,
    markets: HashMap<String, Market>,
    positions: Vec<Position>,
    pending: Vec<PendingOrder>,
    next_ticket: u64,
    rng: SmallRng,
}

impl Mt5Book {
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn market(&mut self, symbol: &str) -> &mut Market {
        self.markets.entry(symbol.to_owned()).or_insert_with(|| Market::new(symbol, now_secs()))
    }

    fn open_position(&mut self, o: &ValidOrder, price: f64, order: u64) -> Position {
        let market = self.market(&o.symbol);
        let current = market.exit(o.side);
        let profit = market.profit(o.side, o.volume, price, current);
        Position {
            ticket: order,
            symbol: o.symbol.clone(),
            side: o.side,
            volume: o.volume,
            price_open: price,
            sl: o.sl,
            tp: o.tp,
            price_current: current,
            profit,
            swap: 0.0,
            time: now_secs() as i64,
            magic: o.magic,
            comment: o.comment.clone(),
            last_event: Instant::now(),
            last_event_price: current,
        }
    }

    /// Executes a validated order: market orders fill now, limit/stop orders wait.
    fn send(&mut self, o: ValidOrder) -> Result<(TradeResult, Option<Position>), ApiError> {
        let market = self.market(&o.symbol);
        let fill = market.entry(o.side);
        let point = market.spec.point;
        let digits = market.spec.digits;
        match (o.kind, o.price) {
            (OrderKind::Market, requested) => {
                if let (Some(p), Some(dev)) = (requested, o.deviation)
                    && ((fill - p).abs() / point).round() > f64::from(dev)
                {
                    let r = TradeResult {
                        order: 0,
                        deal: 0,
                        price: fill,
                        volume: o.volume,
                        retcode: RETCODE_REQUOTE,
                        comment: "Requote",
                    };
                    return Ok((r, None));
                }
                check_stops(o.side, fill, o.sl, o.tp)?;
                let order = self.ticket();
                let deal = self.ticket();
                let position = self.open_position(&o, fill, order);
                self.positions.push(position.clone());
                let r = TradeResult {
                    order,
                    deal,
                    price: fill,
                    volume: o.volume,
                    retcode: RETCODE_DONE,
                    comment: "Request executed",
                };
                Ok((r, Some(position)))
            }
            (kind, Some(price)) => {
                let price = round_to(price, digits);
                let ticket = self.ticket();
                let order_type = match (o.side, kind) {
                    (Side::Buy, OrderKind::Limit) => "buy_limit",
                    (Side::Buy, _) => "buy_stop",
                    (Side::Sell, OrderKind::Limit) => "sell_limit",
                    (Side::Sell, _) => "sell_stop",
                };
                self.pending.push(PendingOrder {
                    ticket,
                    symbol: o.symbol,
                    order_type,
                    volume: o.volume,
                    price_open: price,
                    sl: o.sl,
                    tp: o.tp,
                    price_current: fill,
                    time_setup: now_secs() as i64,
                    magic: o.magic,
                    comment: o.comment,
                    side: o.side,
                    kind,
                });
                let r = TradeResult {
                    order: ticket,
                    deal: 0,
                    price,
                    volume: o.volume,
                    retcode: RETCODE_PLACED,
                    comment: "Order placed",
                };
                Ok((r, None))
            }
            (_, None) => Err(ApiError::bad("price: required for limit and stop orders")),
        }
    }

    /// Closes a position at the market; its profit goes to the balance.
    fn close(&mut self, ticket: u64) -> Option<(TradeResult, Position)> {
        let idx = self.positions.iter().position(|p| p.ticket == ticket)?;
        let mut p = self.positions.remove(idx);
        let market = self.market(&p.symbol);
        p.price_current = market.exit(p.side);
        p.profit = market.profit(p.side, p.volume, p.price_open, p.price_current);
        self.balance = round_to(self.balance + p.profit + p.swap, 2);
        let deal = self.ticket();
        let order = self.ticket();
        let r = TradeResult {
            order,
            deal,
            price: p.price_current,
            volume: p.volume,
            retcode: RETCODE_DONE,
            comment: "Position closed",
        };
        Some((r, p))
    }

    /// Moves prices, fills triggered pending orders, values positions and applies SL/TP.
    fn step(&mut self, t: f64) -> Vec<(Change, Position)> {
        let Mt5Book { markets, rng, .. } = self;
        for m in markets.values_mut() {
            let z = normal(rng);
            m.step(t, z);
        }
        let mut changes = Vec::new();
        // pending orders
        let mut triggered = Vec::new();
        self.pending.retain_mut(|o| {
            let Some(m) = self.markets.get(&o.symbol) else { return true };
            let price = m.entry(o.side);
            o.price_current = price;
            let hit = match (o.side, o.kind) {
                (Side::Buy, OrderKind::Limit) | (Side::Sell, OrderKind::Stop) => price <= o.price_open,
                (Side::Buy, OrderKind::Stop) | (Side::Sell, OrderKind::Limit) => price >= o.price_open,
                (_, OrderKind::Market) => true,
            };
            if hit {
                triggered.push((o.clone(), price));
            }
            !hit
        });
        for (o, price) in triggered {
            let valid = ValidOrder {
                symbol: o.symbol,
                side: o.side,
                kind: OrderKind::Market,
                volume: o.volume,
                price: None,
                sl: o.sl,
                tp: o.tp,
                deviation: None,
                magic: o.magic,
                comment: o.comment,
            };
            let position = self.open_position(&valid, price, o.ticket);
            changes.push((Change::Opened, position.clone()));
            self.positions.push(position);
        }
        // valuation and stops
        let mut to_close = Vec::new();
        for p in &mut self.positions {
            let Some(m) = self.markets.get(&p.symbol) else { continue };
            p.price_current = m.exit(p.side);
            p.profit = m.profit(p.side, p.volume, p.price_open, p.price_current);
            let stopped = match p.side {
                Side::Buy => (p.sl > 0.0 && p.price_current <= p.sl) || (p.tp > 0.0 && p.price_current >= p.tp),
                Side::Sell => (p.sl > 0.0 && p.price_current >= p.sl) || (p.tp > 0.0 && p.price_current <= p.tp),
            };
            if stopped {
                to_close.push(p.ticket);
            } else if p.last_event.elapsed() >= UPDATE_EVENT_EVERY && p.price_current != p.last_event_price {
                p.last_event = Instant::now();
                p.last_event_price = p.price_current;
                changes.push((Change::Updated, p.clone()));
            }
        }
        for ticket in to_close {
            if let Some((_, p)) = self.close(ticket) {
                changes.push((Change::Closed, p));
            }
        }
        changes
    }

    fn account(&self) -> Account {
        let mut floating = 0.0;
        let mut margin = 0.0;
        for p in &self.positions {
            floating += p.profit + p.swap;
            if let Some(m) = self.markets.get(&p.symbol) {
                margin += m.margin(p.volume, p.price_open);
            }
        }
        let equity = round_to(self.balance + floating, 2);
        let margin = round_to(margin, 2);
        let margin_level = if margin > 0.0 { round_to(equity / margin * 100.0, 2) } else { 0.0 };
        Account {
            login: LOGIN,
            currency: CURRENCY,
            leverage: LEVERAGE,
            balance: self.balance,
            equity,
            margin,
            margin_free: round_to(equity - margin, 2),
            margin_level,
        }
    }
}

/// State of the mt5 role.
pub(crate) struct Mt5State {
    book: Mutex<Mt5Book>,
    bus: EventBus,
}

impl Mt5State {
    pub(crate) fn new(symbols: &[String], bus: EventBus) -> Mt5State {
        let t = now_secs();
        let markets = symbols.iter().map(|s| (s.clone(), Market::new(s, t))).collect();
        let book = Mt5Book {
            balance: START_BALANCE,
            max_volume: DEFAULT_MAX_VOLUME,
            markets,
            positions: Vec::new(),
            pending: Vec::new(),
            next_ticket: 100_000_000,
            rng: SmallRng::from_os_rng(),
        };
        Mt5State { book: Mutex::new(book), bus }
    }

    fn publish(&self, changes: &[(Change, Position)]) {
        for (change, position) in changes {
            let event = match change {
                Change::Opened => "opened",
                Change::Updated => "updated",
                Change::Closed => "closed",
            };
            self.bus.publish(EventType::Position, &position.symbol, &PositionEvent { position, event });
        }
    }

    pub(crate) fn apply_settings(&self, update: &SettingsUpdate) -> Result<(), ApiError> {
        let symbols = update.symbols()?;
        let max_volume = update.max_volume()?;
        let mut book = self.book.lock();
        if let Some(symbols) = symbols {
            for s in &symbols {
                book.market(s);
            }
        }
        if let Some(v) = max_volume {
            book.max_volume = v;
        }
        Ok(())
    }

    pub(crate) fn spawn_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let state = Arc::clone(self);
        vec![actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(STEP);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let changes = state.book.lock().step(now_secs());
                state.publish(&changes);
            }
        })]
    }
}

async fn account(state: web::Data<Mt5State>) -> HttpResponse {
    let account = state.book.lock().account();
    HttpResponse::Ok().json(account)
}

async fn positions(req: HttpRequest, state: web::Data<Mt5State>) -> Result<HttpResponse, ApiError> {
    let symbol = query::get(req.query_string(), "symbol")?;
    let book = state.book.lock();
    let list: Vec<&Position> =
        book.positions.iter().filter(|p| symbol.as_deref().is_none_or(|s| p.symbol == s)).collect();
    Ok(HttpResponse::Ok().json(list))
}

fn ticket(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::bad("ticket: must be a positive integer"))
}

async fn close_position(path: web::Path<String>, state: web::Data<Mt5State>) -> Result<HttpResponse, ApiError> {
    let ticket = ticket(&path)?;
    let closed = state.book.lock().close(ticket);
    let (result, position) = closed.ok_or_else(|| ApiError::not_found(format!("position {ticket} not found")))?;
    state.publish(&[(Change::Closed, position)]);
    Ok(HttpResponse::Ok().json(result))
}

async fn send_order(body: web::Bytes, state: web::Data<Mt5State>) -> Result<HttpResponse, ApiError> {
    let request: OrderRequest = json_body(&body)?;
    let (result, opened) = {
        let mut book = state.book.lock();
        let order = request.validate(book.max_volume)?;
        book.send(order)?
    };
    if let Some(p) = opened {
        state.publish(&[(Change::Opened, p)]);
    }
    Ok(HttpResponse::Ok().json(result))
}

async fn pending_orders(state: web::Data<Mt5State>) -> HttpResponse {
    let book = state.book.lock();
    HttpResponse::Ok().json(&book.pending)
}

async fn cancel_order(path: web::Path<String>, state: web::Data<Mt5State>) -> Result<HttpResponse, ApiError> {
    let ticket = ticket(&path)?;
    let mut book = state.book.lock();
    let idx = book
        .pending
        .iter()
        .position(|o| o.ticket == ticket)
        .ok_or_else(|| ApiError::not_found(format!("order {ticket} not found")))?;
    let o = book.pending.remove(idx);
    let r = TradeResult {
        order: o.ticket,
        deal: 0,
        price: o.price_open,
        volume: o.volume,
        retcode: RETCODE_DONE,
        comment: "Order cancelled",
    };
    Ok(HttpResponse::Ok().json(r))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: Arc<Mt5State>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/account").route(web::get().to(account)))
        .service(resource("/positions").route(web::get().to(positions)))
        .service(resource("/positions/{ticket}").route(web::delete().to(close_position)))
        .service(resource("/orders").route(web::get().to(pending_orders)).route(web::post().to(send_order)))
        .service(resource("/orders/{ticket}").route(web::delete().to(cancel_order)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn order(json: &str) -> Result<ValidOrder, ApiError> {
        let req: OrderRequest = serde_json::from_str(json).map_err(|e| ApiError::bad(format!("invalid order: {e}")))?;
        req.validate(1.0)
    }

    #[test]
    fn valid_orders() {
        let o = order(r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1}"#).unwrap();
        assert_eq!((o.side, o.kind, o.volume, o.sl, o.tp, o.magic), (Side::Buy, OrderKind::Market, 0.1, 0.0, 0.0, 0));
        let o = order(
            r#"{"symbol":"EURUSD","side":"sell","type":"limit","volume":1,"price":1.2,"sl":1.3,"tp":1.1,"deviation":5,"magic":7,"comment":"x"}"#,
        )
        .unwrap();
        assert_eq!((o.price, o.sl, o.tp, o.magic, o.comment.as_str()), (Some(1.2), 1.3, 1.1, 7, "x"));
        assert!(
            order(r#"{"symbol":"EURUSD","side":"buy","type":"stop","volume":0.5,"price":1.2,"sl":1.1,"tp":1.3}"#)
                .is_ok()
        );
    }

    #[test]
    fn invalid_orders_are_refused_with_the_field_named() {
        let cases = [
            (r#"{"side":"buy","type":"market","volume":0.1}"#, "symbol"),
            (r#"{"symbol":"EUR USD","side":"buy","type":"market","volume":0.1}"#, "symbol"),
            (r#"{"symbol":"EURUSD","side":"hold","type":"market","volume":0.1}"#, "hold"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"fok","volume":0.1}"#, "fok"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0}"#, "volume"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":-1}"#, "volume"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":2}"#, "volume"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":"1"}"#, "invalid type"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"limit","volume":0.1}"#, "price"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"limit","volume":0.1,"price":0}"#, "price"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"limit","volume":0.1,"price":1.1,"sl":1.2}"#, "sl"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"limit","volume":0.1,"price":1.1,"tp":1.0}"#, "tp"),
            (r#"{"symbol":"EURUSD","side":"sell","type":"stop","volume":0.1,"price":1.1,"sl":1.0}"#, "sl"),
            (r#"{"symbol":"EURUSD","side":"sell","type":"stop","volume":0.1,"price":1.1,"tp":1.2}"#, "tp"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"sl":-1}"#, "sl"),
            (r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"stoploss":1}"#, "stoploss"),
        ];
        for (json, needle) in cases {
            let err = order(json).expect_err(json);
            assert!(matches!(err, ApiError::BadRequest(_)), "{json}");
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
        let long = format!(
            r#"{{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"comment":"{}"}}"#,
            "x".repeat(65)
        );
        assert!(order(&long).is_err());
    }

    fn book() -> Mt5Book {
        Mt5Book {
            balance: START_BALANCE,
            max_volume: 1.0,
            markets: HashMap::new(),
            positions: Vec::new(),
            pending: Vec::new(),
            next_ticket: 0,
            rng: SmallRng::seed_from_u64(3),
        }
    }

    #[test]
    fn market_orders_open_positions_that_follow_the_price() {
        let mut b = book();
        let o = order(r#"{"symbol":"EURUSD","side":"buy","type":"market","volume":1}"#).unwrap();
        let (r, p) = b.send(o).unwrap();
        assert_eq!(r.retcode, RETCODE_DONE);
        let p = p.unwrap();
        assert_eq!((p.ticket, p.price_open, p.volume), (r.order, r.price, 1.0));
        // opened at the ask, valued at the bid: a spread's loss
        assert!(p.profit < 0.0, "{p:?}");
        let a = b.account();
        assert_eq!(a.balance, START_BALANCE);
        assert!(a.margin > 0.0 && a.equity < a.balance && a.margin_free < a.equity);
        for i in 0..40 {
            b.step(1_750_000_000.0 + f64::from(i));
        }
        let p = &b.positions[0];
        let m = &b.markets["EURUSD"];
        assert_eq!(p.price_current, m.bid);
        assert_eq!(p.profit, m.profit(Side::Buy, 1.0, p.price_open, m.bid));
        let (closed, p) = b.close(p.ticket).unwrap();
        assert_eq!(closed.retcode, RETCODE_DONE);
        assert_eq!(b.balance, round_to(START_BALANCE + p.profit, 2));
        assert!(b.positions.is_empty() && b.close(p.ticket).is_none());
    }

    #[test]
    fn pending_orders_trigger_and_stops_close() {
        let mut b = book();
        let ask = b.market("EURUSD").ask;
        // a buy stop just below the ask is triggered at once; its stop-loss far away
        let o = ValidOrder {
            symbol: "EURUSD".into(),
            side: Side::Buy,
            kind: OrderKind::Stop,
            volume: 0.1,
            price: Some(ask / 2.0),
            sl: 0.0,
            tp: 0.0,
            deviation: None,
            magic: 0,
            comment: String::new(),
        };
        let (r, p) = b.send(o.clone()).unwrap();
        assert_eq!((r.retcode, p.is_none(), b.pending.len()), (RETCODE_PLACED, true, 1));
        let changes = b.step(now_secs());
        assert!(matches!(changes.first(), Some((Change::Opened, p)) if p.ticket == r.order));
        assert!(b.pending.is_empty() && b.positions.len() == 1);
        // a take-profit already reached closes the position on the next step
        b.positions[0].tp = b.positions[0].price_current / 2.0;
        let changes = b.step(now_secs());
        assert!(changes.iter().any(|(c, _)| matches!(c, Change::Closed)));
        assert!(b.positions.is_empty());
        // a buy limit far below the market waits
        let (r, _) = b.send(ValidOrder { kind: OrderKind::Limit, price: Some(ask / 2.0), ..o }).unwrap();
        b.step(now_secs());
        assert_eq!(b.pending.first().map(|p| p.ticket), Some(r.order));
    }

    #[test]
    fn requote_beyond_deviation() {
        let mut b = book();
        let ask = b.market("EURUSD").ask;
        let o = order(&format!(
            r#"{{"symbol":"EURUSD","side":"buy","type":"market","volume":0.1,"price":{},"deviation":3}}"#,
            ask + 0.001
        ))
        .unwrap();
        let (r, p) = b.send(o).unwrap();
        assert_eq!((r.retcode, r.order, p.is_none()), (RETCODE_REQUOTE, 0, true));
        assert!(b.positions.is_empty());
    }
}
