//! Simulated downstream services (§10): `data`, `mt5`, `strategy` and `pattern`, with fault injection.
//!
//! Each role is a real actix-web HTTP service with the same routes and MetaTrader5-shaped JSON a
//! real MT5-backed service would have, so the orchestrator, its tests and its benchmarks run
//! against real sockets. Bodies are plain JSON (the gateway wraps them in its envelope); errors are
//! `{"error": "…"}` with a real 4xx status.
//!
//! Decisions worth knowing:
//! - Price history is a deterministic function of symbol and time (multi-scale value noise in log
//!   space), so `/ohlc` answers the same bars to every caller, every timeframe agrees on the price
//!   at a bar boundary, and live ticks mean-revert to the same path (data and mt5 stay close).
//! - Markets trade 24/7 (no weekend gap). `W1` bars open on Sunday 00:00 UTC (as MT5 does),
//!   `MN1` bars on the first day of the month; history starts at the unix epoch, so a very large
//!   `count` on `D1`/`W1`/`MN1` returns fewer bars, as MT5's `copy_rates` does.
//! - Field names ending in `_at` are RFC 3339 strings; fields named `time` are unix seconds (MT5).
//! - `GET /events` is a WebSocket; every event is one text frame
//!   `{"type", "topic", "data", "timestamp"}`; slow listeners skip missed events.
//! - Every request prints one line on stdout (`METHOD PATH STATUS LATENCY`) unless `--quiet`.

mod args;
mod bars;
pub mod contract;
mod data;
mod error;
mod events;
mod market;
mod mt5;
mod os;
mod pattern;
mod process;
mod query;
mod server;
mod settings;
mod strategy;

pub use args::{DEFAULT_SYMBOLS, Role, SimArgs};
pub use error::SimError;
pub use process::run;
pub use server::{SimServer, serve};
