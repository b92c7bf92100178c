//! Command-line arguments of `orchestrator sim ROLE`: the role, where to listen, and the fault flags.

use std::fmt;
use std::time::Duration;

use gateway_core::Symbol;

use crate::error::SimError;

/// The symbols a simulated service starts with when `--symbols` is not given.
pub const DEFAULT_SYMBOLS: [&str; 4] = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"];

/// Which simulated service to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Market data: ticks, OHLC bars, symbols.
    Data,
    /// A paper trading account: account, positions, orders.
    Mt5,
    /// Strategy CRUD and signals.
    Strategy,
    /// Chart pattern detection.
    Pattern,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Data, Role::Mt5, Role::Strategy, Role::Pattern];

    /// The role's name, which is also the service name it reports in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Mt5 => "mt5",
            Role::Strategy => "strategy",
            Role::Pattern => "pattern",
        }
    }

    /// The port the role listens on by default (§1 table).
    pub fn default_port(self) -> u16 {
        match self {
            Role::Data => 5001,
            Role::Mt5 => 5002,
            Role::Strategy => 5003,
            Role::Pattern => 5004,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Arguments of one simulated service (`orchestrator sim ROLE …`).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct SimArgs {
    /// The service to simulate.
    #[arg(value_enum)]
    pub role: Role,
    /// Port to listen on (default by role: data 5001, mt5 5002, strategy 5003, pattern 5004; 0 = any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Number of HTTP worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Symbols to serve (comma separated; default EURUSD,GBPUSD,USDJPY,XAUUSD).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Ticks per second per symbol (data role; 0 = no live ticks).
    #[arg(long, default_value_t = 10)]
    pub tick_rate: u32,
    /// Do not print a line per request on stdout (the start line is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Fault: wait this long before binding the port.
    #[arg(long, value_name = "MS")]
    pub startup_delay_ms: Option<u64>,
    /// Fault: print an error on stderr and exit with --exit-code before binding.
    #[arg(long)]
    pub fail_startup: bool,
    /// Fault: exit with --exit-code this long after start (0 = at once).
    #[arg(long, value_name = "MS")]
    pub crash_after_ms: Option<u64>,
    /// Exit code for --fail-startup and --crash-after-ms.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub exit_code: i32,
    /// Fault: after this long (0 = from the start), `GET /health` never answers (other routes keep working).
    #[arg(long, value_name = "MS")]
    pub hang_health_after_ms: Option<u64>,
    /// Fault: `GET /health` waits this long before answering.
    #[arg(long, value_name = "MS")]
    pub slow_health_ms: Option<u64>,
    /// Fault: every route but `/health` waits this long before answering.
    #[arg(long, value_name = "MS")]
    pub response_delay_ms: Option<u64>,
    /// Fault: every route but `/health`, `/settings` and `/events` answers 500 `{"error": …}`.
    #[arg(long)]
    pub fail_requests: bool,
    /// Fault: ignore SIGTERM (only SIGKILL or SIGINT stops the service; on Windows CTRL_BREAK and CTRL_C are ignored, only terminating the job stops it).
    #[arg(long)]
    pub ignore_sigterm: bool,
    /// Fault: spawn a grandchild process (`sleep`; on Windows this executable as a quiet service on a free port) in the same process group (job) and print its pid.
    #[arg(long)]
    pub spawn_child: bool,
    /// Fault: bind the port and accept connections but never answer anything.
    #[arg(long)]
    pub hold_port: bool,
    /// Serve this file at `/openapi.json` instead of the role's own contract (read at start; any
    /// bytes, so a broken or different contract can be tested).
    #[arg(long, value_name = "FILE")]
    pub openapi_file: Option<std::path::PathBuf>,
}

impl SimArgs {
    /// The arguments `orchestrator sim ROLE` gets with no flags.
    pub fn new(role: Role) -> SimArgs {
        SimArgs {
            role,
            port: None,
            host: String::from("127.0.0.1"),
            workers: 1,
            symbols: Vec::new(),
            tick_rate: 10,
            quiet: false,
            startup_delay_ms: None,
            fail_startup: false,
            crash_after_ms: None,
            exit_code: 1,
            hang_health_after_ms: None,
            slow_health_ms: None,
            response_delay_ms: None,
            fail_requests: false,
            ignore_sigterm: false,
            spawn_child: false,
            hold_port: false,
            openapi_file: None,
        }
    }

    /// The port to bind: `--port`, else the role's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.role.default_port())
    }

    /// The validated symbol set: `--symbols` (deduplicated, order kept), else [`DEFAULT_SYMBOLS`].
    pub fn symbol_set(&self) -> Result<Vec<String>, SimError> {
        if self.symbols.is_empty() {
            return Ok(DEFAULT_SYMBOLS.iter().map(|s| (*s).to_owned()).collect());
        }
        let mut out: Vec<String> = Vec::with_capacity(self.symbols.len());
        for raw in &self.symbols {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            Symbol::parse(raw).map_err(|_| SimError::InvalidSymbol(raw.to_owned()))?;
            if !out.iter().any(|s| s == raw) {
                out.push(raw.to_owned());
            }
        }
        if out.is_empty() {
            return Err(SimError::NoSymbols);
        }
        Ok(out)
    }

    /// A delay flag: absent or 0 means no delay.
    pub(crate) fn delay(v: Option<u64>) -> Option<Duration> {
        v.filter(|ms| *ms > 0).map(Duration::from_millis)
    }

    /// A deadline flag: 0 means at once.
    pub(crate) fn after(v: Option<u64>) -> Option<Duration> {
        v.map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).map(|c| c.sim)
    }

    #[test]
    fn defaults_match_new() {
        for role in Role::ALL {
            assert_eq!(parse(&[role.as_str()]).unwrap(), SimArgs::new(role));
            assert_eq!(SimArgs::new(role).effective_port(), role.default_port());
        }
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "mt5",
            "--port",
            "0",
            "--symbols",
            "EURUSD,BTCUSD",
            "--crash-after-ms",
            "50",
            "--exit-code",
            "-3",
            "--ignore-sigterm",
            "--spawn-child",
            "--hold-port",
            "--hang-health-after-ms",
            "10",
            "--slow-health-ms",
            "5",
            "--response-delay-ms",
            "7",
            "--fail-startup",
            "--startup-delay-ms",
            "9",
            "--workers",
            "2",
            "--tick-rate",
            "0",
            "--quiet",
            "--fail-requests",
        ])
        .unwrap();
        assert_eq!(a.role, Role::Mt5);
        assert_eq!(a.effective_port(), 0);
        assert_eq!(a.symbol_set().unwrap(), vec!["EURUSD", "BTCUSD"]);
        assert_eq!((a.crash_after_ms, a.exit_code), (Some(50), -3));
        assert!(a.ignore_sigterm && a.spawn_child && a.hold_port && a.fail_startup && a.quiet && a.fail_requests);
        assert_eq!((a.hang_health_after_ms, a.slow_health_ms, a.response_delay_ms), (Some(10), Some(5), Some(7)));
        assert_eq!((a.startup_delay_ms, a.workers, a.tick_rate), (Some(9), 2, 0));
        assert!(parse(&["nope"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn symbol_set_validates_and_dedupes() {
        let mut a = SimArgs::new(Role::Data);
        assert_eq!(a.symbol_set().unwrap(), DEFAULT_SYMBOLS.to_vec());
        a.symbols = vec!["EURUSD".into(), "EURUSD".into(), "XAUUSD".into()];
        assert_eq!(a.symbol_set().unwrap(), vec!["EURUSD", "XAUUSD"]);
        a.symbols = vec!["EUR USD".into()];
        assert!(matches!(a.symbol_set(), Err(SimError::InvalidSymbol(s)) if s == "EUR USD"));
        a.symbols = vec![" ".into()];
        assert!(matches!(a.symbol_set(), Err(SimError::NoSymbols)));
    }
}
