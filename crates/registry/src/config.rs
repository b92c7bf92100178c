//! The orchestrator's configuration (SPEC §2): TOML with a default for every field but a
//! service's `name` and `port`, the built-in default platform, and environment overrides of
//! every duration.
//!
//! Parsing happens in two steps: serde reads a raw, span-carrying form (unknown fields and
//! wrong types are rejected there, with line and column), then [`Config::from_toml`] checks the
//! rules serde cannot express (duplicates, shadowed routes, dependency cycles…) and names the
//! field and line of each violation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use gateway_core::ServiceName;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::ConfigError;

/// Resources the gateway serves itself; no service route may shadow them.
pub const RESERVED_RESOURCES: [&str; 10] =
    ["health", "services", "settings", "dashboard", "events", "auth", "hub", "config", "docs", "openapi.json"];

/// Signals a service may be stopped with.
/// `SIGBREAK` is Windows' CTRL_BREAK (the default `SIGTERM` is too); on Unix it means SIGTERM.
pub const STOP_SIGNALS: [&str; 8] =
    ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGBREAK"];

/// `ORCHESTRATOR_*` variables that are not configuration overrides: set by the orchestrator
/// for its own helper processes, or read by a subcommand (`service install`) or the tests.
pub const NOT_OVERRIDES: [&str; 5] = [
    "ORCHESTRATOR_KEEPER",
    "ORCHESTRATOR_CTRL",
    "ORCHESTRATOR_SERVICE_PASSWORD",
    "ORCHESTRATOR_BIN",
    "ORCHESTRATOR_TEST_CHILD",
];

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    /// The gateway's own settings.
    pub gateway: GatewayConfig,
    /// Health monitoring timers.
    pub health: HealthConfig,
    /// Real-time hub limits and timers.
    pub hub: HubConfig,
    /// The downstream services, in file order.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address (`127.0.0.1:5000`).
    pub bind: String,
    /// Runtime state: `setup.db`, `logs/`, `run/`.
    pub data_dir: PathBuf,
    /// Origins allowed by CORS; empty = same-origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// HTTPS (and `wss://`) with this certificate and key; absent = plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// `[gateway.tls]`: PEM files, re-read on every reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bind: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("data"),
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            tls: None,
        }
    }
}

impl GatewayConfig {
    /// The parsed listen address.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind.parse().map_err(|_| ConfigError::Invalid {
            field: "gateway.bind".into(),
            line: None,
            message: format!("`{}` is not an address like 127.0.0.1:5000", self.bind),
        })
    }
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Monitor loop period.
    pub interval_ms: u64,
    /// Timeout of one health request.
    pub timeout_ms: u64,
    /// Consecutive failures before a service is offline.
    pub failure_threshold: u32,
    /// Longest wait for the first healthy answer after a spawn.
    pub startup_timeout_ms: u64,
    /// Probe period while a service is starting.
    pub startup_probe_interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 5000,
            timeout_ms: 2000,
            failure_threshold: 3,
            startup_timeout_ms: 30_000,
            startup_probe_interval_ms: 25,
        }
    }
}

/// `[hub]`: real-time hub limits (not in the original spec table; defaults follow SPEC §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Events kept per topic for replay.
    pub ring_size: usize,
    /// Oldest event kept for replay.
    pub ring_max_age_ms: u64,
    /// Frames queued per client before ticks are conflated / the client is closed.
    pub client_queue: usize,
    /// Time a WebSocket client has to authenticate.
    pub auth_timeout_ms: u64,
    /// Server ping period.
    pub ping_interval_ms: u64,
    /// Silence after which a client is closed.
    pub idle_timeout_ms: u64,
    /// SSE heartbeat comment period.
    pub sse_heartbeat_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ring_size: 300,
            ring_max_age_ms: 120_000,
            client_queue: 256,
            auth_timeout_ms: 5000,
            ping_interval_ms: 25_000,
            idle_timeout_ms: 35_000,
            sse_heartbeat_ms: 15_000,
        }
    }
}

/// When a service is restarted after it failed or exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit or failure.
    Always,
    /// After a non-zero exit, a signal or failed health checks (not after exit code 0).
    OnFailure,
    /// Never: the service stays offline/error.
    Never,
}

/// What to do when a service's port is already taken at spawn time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortConflictPolicy {
    /// Report `error` / `port_conflict`.
    Fail,
    /// If the health endpoint answers as this service, monitor it as `adopted`.
    Adopt,
}

/// `backoff = {…}`: restart delays (see the supervisor's `BackoffPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Delay of the first restart of a failure sequence.
    pub first_ms: u64,
    /// Delay of the second restart; later ones grow by `multiplier`.
    pub initial_ms: u64,
    /// Growth factor (≥ 1).
    pub multiplier: f64,
    /// Cap.
    pub max_ms: u64,
    /// Random spread, a fraction in 0..=1 (0.1 = ±10 %).
    pub jitter: f64,
    /// Healthy uptime after which the failure sequence starts over.
    pub reset_after_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            first_ms: 0,
            initial_ms: 250,
            multiplier: 2.0,
            max_ms: 60_000,
            jitter: 0.1,
            reset_after_ms: 60_000,
        }
    }
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// Unique name (`[a-z][a-z0-9_-]{0,31}`).
    pub name: ServiceName,
    /// Name shown to users.
    pub display_name: String,
    /// Resources it owns: `/api/{resource}/…` is forwarded to it.
    pub routes: Vec<String>,
    /// Host; a non-loopback host makes the service external.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Program and arguments; absent makes the service external.
    pub command: Option<Vec<String>>,
    /// Working directory of the process.
    pub cwd: Option<PathBuf>,
    /// Extra environment of the process.
    pub env: BTreeMap<String, String>,
    /// Health endpoint.
    pub health_path: String,
    /// The service's OpenAPI contract (`/openapi.json` by default); `None` when configured as `""`.
    pub openapi_path: Option<String>,
    /// WebSocket of the service's events.
    pub events_path: Option<String>,
    /// Where changed settings are POSTed.
    pub settings_path: Option<String>,
    /// Settings keys the service depends on.
    pub settings_keys: Vec<String>,
    /// Timeout of a forwarded request.
    pub request_timeout_ms: u64,
    /// Started when the orchestrator starts.
    pub autostart: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Services that must be online before this one starts.
    pub depends_on: Vec<ServiceName>,
    /// Signal sent to the process group to stop it.
    pub stop_signal: String,
    /// Wait after `stop_signal` before SIGKILL.
    pub stop_timeout_ms: u64,
    /// Restart delays.
    pub backoff: BackoffConfig,
    /// Failures within `failure_window_ms` that make it a crash loop.
    pub max_failures: u32,
    /// Window for `max_failures`.
    pub failure_window_ms: u64,
    /// Port conflict policy.
    pub on_port_conflict: PortConflictPolicy,
}

impl ServiceConfig {
    /// A service with every default, for the given name, port and routes.
    pub fn with_defaults(name: ServiceName, port: u16) -> ServiceConfig {
        ServiceConfig {
            display_name: name.as_str().to_owned(),
            name,
            routes: Vec::new(),
            host: "127.0.0.1".into(),
            port,
            command: None,
            cwd: None,
            env: BTreeMap::new(),
            health_path: "/health".into(),
            openapi_path: Some("/openapi.json".into()),
            events_path: None,
            settings_path: None,
            settings_keys: Vec::new(),
            request_timeout_ms: 10_000,
            autostart: true,
            restart: RestartPolicy::OnFailure,
            depends_on: Vec::new(),
            stop_signal: "SIGTERM".into(),
            stop_timeout_ms: 10_000,
            backoff: BackoffConfig::default(),
            max_failures: 5,
            failure_window_ms: 300_000,
            on_port_conflict: PortConflictPolicy::Fail,
        }
    }

    /// Whether the host is this machine (loopback or `localhost`).
    pub fn is_local(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// External services (another host, or no command) are monitored and routed, never spawned.
    pub fn is_external(&self) -> bool {
        !self.is_local() || self.command.is_none()
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

// ---- raw, span-carrying form -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: Option<Spanned<GatewayConfig>>,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    hub: HubConfig,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    display_name: Option<String>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Spanned<i64>,
    command: Option<Spanned<Vec<String>>>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    health_path: Option<Spanned<String>>,
    openapi_path: Option<Spanned<String>>,
    events_path: Option<Spanned<String>>,
    settings_path: Option<Spanned<String>>,
    #[serde(default)]
    settings_keys: Vec<String>,
    request_timeout_ms: Option<u64>,
    autostart: Option<bool>,
    restart: Option<RestartPolicy>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    stop_timeout_ms: Option<u64>,
    backoff: Option<Spanned<BackoffConfig>>,
    max_failures: Option<u32>,
    failure_window_ms: Option<u64>,
    on_port_conflict: Option<PortConflictPolicy>,
}

/// Maps byte offsets to 1-based lines and columns.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn at(&self, offset: usize) -> (usize, usize) {
        let before = &self.0[..offset.min(self.0.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |i| before[i + 1..].chars().count()) + 1;
        (line, column)
    }

    fn line(&self, span: Range<usize>) -> Option<usize> {
        Some(self.at(span.start).0)
    }
}

impl Config {
    /// The built-in default: the four simulated services on 5001–5004, each run as
    /// `<exe> sim ROLE --port N` from the given executable (normally the orchestrator itself).
    pub fn builtin(exe: &Path) -> Config {
        let exe = exe.to_string_lossy().into_owned();
        type Row<'a> = (&'a str, &'a str, u16, &'a [&'a str], &'a [&'a str]);
        let table: [Row; 4] = [
            ("data", "Data Service", 5001, &["ticks", "ohlc", "symbols"], &["symbols", "timeframes"]),
            ("mt5", "MT5 Service", 5002, &["account", "positions", "orders"], &["symbols", "risk.max_volume"]),
            (
                "strategy",
                "Strategy Service",
                5003,
                &["strategies", "signals"],
                &["symbols", "timeframes", "default_timeframe"],
            ),
            ("pattern", "Pattern Service", 5004, &["patterns"], &["symbols", "timeframes"]),
        ];
        let services = table
            .iter()
            .filter_map(|(name, display, port, routes, keys)| {
                let name = ServiceName::parse(name).ok()?;
                let mut s = ServiceConfig::with_defaults(name.clone(), *port);
                s.display_name = (*display).to_owned();
                s.routes = routes.iter().map(|r| (*r).to_owned()).collect();
                s.command = Some(vec![exe.clone(), "sim".into(), name.to_string(), "--port".into(), port.to_string()]);
                s.events_path = Some("/events".into());
                s.settings_path = Some("/settings".into());
                s.settings_keys = keys.iter().map(|k| (*k).to_owned()).collect();
                s.stop_timeout_ms = 5000;
                Some(s)
            })
            .collect();
        Config { services, ..Config::default() }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Config::from_toml(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let lines = Lines(text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let (l, c) = lines.at(span.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError::Parse { line, column, message: e.message().trim().to_owned() }
        })?;

        let gateway_line = raw.gateway.as_ref().and_then(|g| lines.line(g.span()));
        let gateway = raw.gateway.map(Spanned::into_inner).unwrap_or_default();
        let invalid =
            |field: String, line: Option<usize>, message: String| ConfigError::Invalid { field, line, message };
        let bind = gateway.bind_addr().map_err(|_| {
            invalid(
                "gateway.bind".into(),
                gateway_line,
                format!("`{}` is not an address like 127.0.0.1:5000", gateway.bind),
            )
        })?;
        if gateway.max_body_bytes == 0 {
            return Err(invalid("gateway.max_body_bytes".into(), gateway_line, "must be greater than 0".into()));
        }
        check_health(&raw.health)?;
        check_hub(&raw.hub)?;

        let mut services = Vec::with_capacity(raw.service.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ports: HashMap<(String, u16), String> = HashMap::new();
        let mut routes: HashMap<String, String> = HashMap::new();
        for (i, spanned) in raw.service.into_iter().enumerate() {
            let raw_line = lines.line(spanned.span());
            let s = spanned.into_inner();
            let field = |f: &str| format!("service[{i}].{f}");
            let name_line = lines.line(s.name.span());
            let name = ServiceName::parse(s.name.get_ref()).map_err(|_| {
                invalid(
                    field("name"),
                    name_line,
                    format!("`{}` is not a valid name ([a-z][a-z0-9_-]{{0,31}})", s.name.get_ref()),
                )
            })?;
            if let Some(first) = names.insert(name.to_string(), i) {
                return Err(invalid(
                    field("name"),
                    name_line,
                    format!("duplicate name `{name}` (also service[{first}])"),
                ));
            }
            let port_line = lines.line(s.port.span());
            let port = u16::try_from(*s.port.get_ref()).ok().filter(|p| *p != 0).ok_or_else(|| {
                invalid(field("port"), port_line, format!("{} is not a port (1–65535)", s.port.get_ref()))
            })?;
            let mut svc = ServiceConfig::with_defaults(name.clone(), port);
            if let Some(host) = s.host {
                let line = lines.line(host.span());
                let host = host.into_inner();
                if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
                    return Err(invalid(field("host"), line, format!("`{host}` is not a host name or address")));
                }
                svc.host = host;
            }
            let host_key = if svc.is_local() { "local".to_owned() } else { svc.host.clone() };
            if bind.port() == port && host_key == "local" {
                return Err(invalid(field("port"), port_line, format!("port {port} is the gateway's own port")));
            }
            if let Some(other) = ports.insert((host_key, port), name.to_string()) {
                return Err(invalid(
                    field("port"),
                    port_line,
                    format!("duplicate port {port} (also used by `{other}`)"),
                ));
            }
            for route in s.routes {
                let line = lines.line(route.span());
                let route = route.into_inner();
                let valid = route.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && route.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                    && route.len() <= 64;
                if !valid {
                    return Err(invalid(field("routes"), line, format!("`{route}` is not a valid resource name")));
                }
                if RESERVED_RESOURCES.contains(&route.as_str()) {
                    return Err(invalid(
                        field("routes"),
                        line,
                        format!("`{route}` shadows the gateway's own /api/{route}"),
                    ));
                }
                if let Some(other) = routes.insert(route.clone(), name.to_string()) {
                    return Err(invalid(
                        field("routes"),
                        line,
                        format!("duplicate route `{route}` (also owned by `{other}`)"),
                    ));
                }
                svc.routes.push(route);
            }
            if let Some(display) = s.display_name {
                if display.trim().is_empty() || display.chars().count() > 64 {
                    return Err(invalid(field("display_name"), raw_line, "must be 1–64 characters".into()));
                }
                svc.display_name = display;
            }
            if let Some(cmd) = s.command {
                let line = lines.line(cmd.span());
                let cmd = cmd.into_inner();
                if cmd.first().is_none_or(|p| p.is_empty()) {
                    return Err(invalid(
                        field("command"),
                        line,
                        "must name a program: [\"program\", \"arg\", …]".into(),
                    ));
                }
                svc.command = Some(cmd);
            }
            svc.cwd = s.cwd;
            svc.env = s.env;
            let path = |f: &str, v: Option<Spanned<String>>| -> Result<Option<String>, ConfigError> {
                let Some(v) = v else { return Ok(None) };
                let line = lines.line(v.span());
                let v = v.into_inner();
                if !v.starts_with('/') || v.contains("..") || v.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(invalid(field(f), line, format!("`{v}` must be an absolute path like /health")));
                }
                Ok(Some(v))
            };
            if let Some(p) = path("health_path", s.health_path)? {
                svc.health_path = p;
            }
            match s.openapi_path {
                Some(p) if p.get_ref().is_empty() => svc.openapi_path = None,
                p => {
                    if let Some(p) = path("openapi_path", p)? {
                        svc.openapi_path = Some(p);
                    }
                }
            }
            svc.events_path = path("events_path", s.events_path)?;
            svc.settings_path = path("settings_path", s.settings_path)?;
            svc.settings_keys = s.settings_keys;
            if let Some(v) = s.request_timeout_ms {
                svc.request_timeout_ms = positive(v, field("request_timeout_ms"), raw_line)?;
            }
            if let Some(v) = s.autostart {
                svc.autostart = v;
            }
            if let Some(v) = s.restart {
                svc.restart = v;
            }
            svc.depends_on = s
                .depends_on
                .into_iter()
                .map(|d| {
                    let line = lines.line(d.span());
                    ServiceName::parse(d.get_ref()).map_err(|_| {
                        invalid(field("depends_on"), line, format!("`{}` is not a service name", d.get_ref()))
                    })
                })
                .collect::<Result<_, _>>()?;
            if let Some(sig) = s.stop_signal {
                let line = lines.line(sig.span());
                let sig = sig.into_inner();
                if !STOP_SIGNALS.contains(&sig.as_str()) {
                    return Err(invalid(
                        field("stop_signal"),
                        line,
                        format!("`{sig}` is not one of {}", STOP_SIGNALS.join(", ")),
                    ));
                }
                svc.stop_signal = sig;
            }
            if let Some(v) = s.stop_timeout_ms {
                svc.stop_timeout_ms = v;
            }
            if let Some(b) = s.backoff {
                let line = lines.line(b.span());
                let b = b.into_inner();
                check_backoff(&b, &field("backoff"), line)?;
                svc.backoff = b;
            }
            if let Some(v) = s.max_failures {
                svc.max_failures = u32::try_from(positive(u64::from(v), field("max_failures"), raw_line)?).unwrap_or(v);
            }
            if let Some(v) = s.failure_window_ms {
                svc.failure_window_ms = positive(v, field("failure_window_ms"), raw_line)?;
            }
            if let Some(v) = s.on_port_conflict {
                svc.on_port_conflict = v;
            }
            services.push((svc, raw_line));
        }

        // Cross-service rules: dependencies exist, are not self-references and form no cycle.
        let known: BTreeSet<&str> = services.iter().map(|(s, _)| s.name.as_str()).collect();
        for (i, (s, line)) in services.iter().enumerate() {
            for d in &s.depends_on {
                if d == &s.name {
                    return Err(invalid(format!("service[{i}].depends_on"), *line, format!("`{d}` depends on itself")));
                }
                if !known.contains(d.as_str()) {
                    return Err(invalid(format!("service[{i}].depends_on"), *line, format!("unknown service `{d}`")));
                }
            }
        }
        let services: Vec<ServiceConfig> = services.into_iter().map(|(s, _)| s).collect();
        if let Some(cycle) = find_cycle(&services) {
            return Err(invalid(
                "service.depends_on".into(),
                None,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(Config { gateway, health: raw.health, hub: raw.hub, services })
    }

    /// Applies `ORCHESTRATOR_*` environment overrides (every duration, and the health failure
    /// threshold): `ORCHESTRATOR_HEALTH_INTERVAL_MS`, `ORCHESTRATOR_HUB_PING_INTERVAL_MS`,
    /// `ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS` (every service), `ORCHESTRATOR_SERVICE_DATA_STOP_TIMEOUT_MS`
    /// (one service), `ORCHESTRATOR_BACKOFF_MAX_MS` / `ORCHESTRATOR_SERVICE_DATA_BACKOFF_MAX_MS`, …
    /// An unknown `ORCHESTRATOR_*` name (a typo, or a field with no override) is an error naming
    /// the variable, as is a bad value; the variables in [`NOT_OVERRIDES`] are left alone.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) -> Result<(), ConfigError> {
        let mut vars: Vec<(String, String)> =
            vars.into_iter().filter(|(k, _)| k.starts_with("ORCHESTRATOR_")).collect();
        // Global service overrides first, then per-service ones, so the specific one wins.
        vars.sort_by_key(|(k, _)| self.services.iter().any(|s| k.starts_with(&service_prefix(s))));
        for (key, value) in vars {
            // At most i64::MAX: the largest integer TOML (and so `config print`) can show.
            let number = || -> Result<u64, ConfigError> {
                value.trim().parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
                    ConfigError::Invalid {
                        field: key.clone(),
                        line: None,
                        message: format!("`{value}` is not a whole number from 0 to {}", i64::MAX),
                    }
                })
            };
            let Some(rest) = key.strip_prefix("ORCHESTRATOR_") else { continue };
            match rest {
                "HEALTH_INTERVAL_MS" => self.health.interval_ms = number()?,
                "HEALTH_TIMEOUT_MS" => self.health.timeout_ms = number()?,
                "HEALTH_FAILURE_THRESHOLD" => {
                    self.health.failure_threshold = u32::try_from(number()?).unwrap_or(u32::MAX)
                }
                "HEALTH_STARTUP_TIMEOUT_MS" => self.health.startup_timeout_ms = number()?,
                "HEALTH_STARTUP_PROBE_INTERVAL_MS" => self.health.startup_probe_interval_ms = number()?,
                "HUB_RING_MAX_AGE_MS" => self.hub.ring_max_age_ms = number()?,
                "HUB_AUTH_TIMEOUT_MS" => self.hub.auth_timeout_ms = number()?,
                "HUB_PING_INTERVAL_MS" => self.hub.ping_interval_ms = number()?,
                "HUB_IDLE_TIMEOUT_MS" => self.hub.idle_timeout_ms = number()?,
                "HUB_SSE_HEARTBEAT_MS" => self.hub.sse_heartbeat_ms = number()?,
                _ => {
                    let applied = if let Some(field) = rest.strip_prefix("SERVICE_") {
                        // Known for every service even when none is configured.
                        let known = match ServiceName::parse("probe") {
                            Ok(n) => set_service_duration(&mut ServiceConfig::with_defaults(n, 1), field, &number)?,
                            Err(_) => false,
                        };
                        self.apply_service_env(field, &number)? | known
                    } else if let Some(field) = rest.strip_prefix("BACKOFF_") {
                        let v = number()?;
                        let mut known = BackoffConfig::default();
                        let applies = set_backoff(&mut known, field, v);
                        for s in &mut self.services {
                            set_backoff(&mut s.backoff, field, v);
                        }
                        applies
                    } else {
                        false
                    };
                    if !applied && !NOT_OVERRIDES.contains(&key.as_str()) {
                        return Err(ConfigError::Invalid {
                            field: key.clone(),
                            line: None,
                            message: "not a configuration override: ORCHESTRATOR_HEALTH_<FIELD>, ORCHESTRATOR_HUB_<FIELD>, \
                                      ORCHESTRATOR_SERVICE_[<NAME>_]<FIELD> or ORCHESTRATOR_BACKOFF_<FIELD> with a field \
                                      `config print` shows (upper case)"
                                .into(),
                        });
                    }
                }
            }
        }
        check_health(&self.health)?;
        check_hub(&self.hub)?;
        // The same rules as in the file, so the effective configuration is always one that
        // `config check` accepts (e.g. ORCHESTRATOR_BACKOFF_INITIAL_MS above a file's max_ms).
        for (i, s) in self.services.iter().enumerate() {
            let field = |f: &str| format!("service[{i}].{f}");
            check_backoff(&s.backoff, &field("backoff"), None)?;
            positive(s.request_timeout_ms, field("request_timeout_ms"), None)?;
            positive(u64::from(s.max_failures), field("max_failures"), None)?;
            positive(s.failure_window_ms, field("failure_window_ms"), None)?;
        }
        Ok(())
    }

    fn apply_service_env(
        &mut self,
        field: &str,
        number: &dyn Fn() -> Result<u64, ConfigError>,
    ) -> Result<bool, ConfigError> {
        // Per-service: SERVICE_<NAME>_<FIELD>; names are upper-cased with '-' as '_'.
        for s in &mut self.services {
            let name = s.name.as_str().to_ascii_uppercase().replace('-', "_");
            if let Some(f) = field.strip_prefix(&format!("{name}_"))
                && set_service_duration(s, f, number)?
            {
                return Ok(true);
            }
        }
        let mut any = false;
        for s in &mut self.services {
            any |= set_service_duration(s, field, number)?;
        }
        Ok(any)
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// The effective configuration as TOML (for `orchestrator config print`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn service_prefix(s: &ServiceConfig) -> String {
    format!("ORCHESTRATOR_SERVICE_{}_", s.name.as_str().to_ascii_uppercase().replace('-', "_"))
}

fn set_service_duration(
    s: &mut ServiceConfig,
    field: &str,
    number: &dyn Fn() -> Result<u64, ConfigError>,
) -> Result<bool, ConfigError> {
    match field {
        "REQUEST_TIMEOUT_MS" => s.request_timeout_ms = number()?,
        "STOP_TIMEOUT_MS" => s.stop_timeout_ms = number()?,
        "FAILURE_WINDOW_MS" => s.failure_window_ms = number()?,
        "MAX_FAILURES" => s.max_failures = u32::try_from(number()?).unwrap_or(u32::MAX),
        _ => match field.strip_prefix("BACKOFF_") {
            Some(b) => return Ok(set_backoff(&mut s.backoff, b, number()?)),
            None => return Ok(false),
        },
    }
    Ok(true)
}

fn set_backoff(b: &mut BackoffConfig, field: &str, v: u64) -> bool {
    match field {
        "FIRST_MS" => b.first_ms = v,
        "INITIAL_MS" => b.initial_ms = v,
        "MAX_MS" => b.max_ms = v,
        "RESET_AFTER_MS" => b.reset_after_ms = v,
        _ => return false,
    }
    true
}

fn positive(v: u64, field: String, line: Option<usize>) -> Result<u64, ConfigError> {
    if v == 0 { Err(ConfigError::Invalid { field, line, message: "must be greater than 0".into() }) } else { Ok(v) }
}

fn check_health(h: &HealthConfig) -> Result<(), ConfigError> {
    positive(h.interval_ms, "health.interval_ms".into(), None)?;
    positive(h.timeout_ms, "health.timeout_ms".into(), None)?;
    positive(u64::from(h.failure_threshold), "health.failure_threshold".into(), None)?;
    positive(h.startup_timeout_ms, "health.startup_timeout_ms".into(), None)?;
    positive(h.startup_probe_interval_ms, "health.startup_probe_interval_ms".into(), None)?;
    Ok(())
}

fn check_hub(h: &HubConfig) -> Result<(), ConfigError> {
    positive(h.ring_size as u64, "hub.ring_size".into(), None)?;
    positive(h.client_queue as u64, "hub.client_queue".into(), None)?;
    positive(h.auth_timeout_ms, "hub.auth_timeout_ms".into(), None)?;
    positive(h.ping_interval_ms, "hub.ping_interval_ms".into(), None)?;
    positive(h.sse_heartbeat_ms, "hub.sse_heartbeat_ms".into(), None)?;
    if h.idle_timeout_ms <= h.ping_interval_ms {
        return Err(ConfigError::Invalid {
            field: "hub.idle_timeout_ms".into(),
            line: None,
            message: "must be longer than hub.ping_interval_ms".into(),
        });
    }
    Ok(())
}

fn check_backoff(b: &BackoffConfig, field: &str, line: Option<usize>) -> Result<(), ConfigError> {
    let bad = |f: &str, m: &str| ConfigError::Invalid { field: format!("{field}.{f}"), line, message: m.into() };
    if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
        return Err(bad("multiplier", "must be at least 1.0"));
    }
    if !(0.0..=1.0).contains(&b.jitter) {
        return Err(bad("jitter", "must be between 0.0 and 1.0"));
    }
    if b.initial_ms > b.max_ms || b.first_ms > b.max_ms {
        return Err(bad("max_ms", "must not be smaller than first_ms and initial_ms"));
    }
    Ok(())
}

fn find_cycle(services: &[ServiceConfig]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(name) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        for d in deps.get(name).into_iter().flatten() {
            if let Some(c) = visit(d, deps, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(name, 2);
        None
    }
    let deps: HashMap<&str, Vec<&str>> =
        services.iter().map(|s| (s.name.as_str(), s.depends_on.iter().map(|d| d.as_str()).collect())).collect();
    let mut state = HashMap::new();
    for s in services {
        if let Some(c) = visit(s.name.as_str(), &deps, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests;
