//! `[[service]]` (SPEC §2): what the registry knows of each downstream service, with a default
//! for every field but `name` and `port`.
//!
//! A section arrives as written ([`RawService`], every field optional; unknown fields and wrong
//! types are rejected by serde) and [`validate_services`] checks the rules serde cannot express
//! (names, ports, routes, paths, signals, backoff bounds, dependencies) and names the field of
//! each violation, `service[i].<field>`. The composed configuration (`gateway-http`'s `config`)
//! puts the line on it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::{ConfigError, ServiceName};
use serde::{Deserialize, Serialize, Serializer};
use serde_with::{DurationMilliSeconds, serde_as};

/// Resources the gateway serves itself; no service route may shadow them.
pub const RESERVED_RESOURCES: [&str; 10] =
    ["health", "services", "settings", "dashboard", "events", "auth", "hub", "config", "docs", "openapi.json"];

/// Signals a service may be stopped with.
/// `SIGBREAK` is Windows' CTRL_BREAK (the default `SIGTERM` is too); on Unix it means SIGTERM.
pub const STOP_SIGNALS: [&str; 8] =
    ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGBREAK"];

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
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Delay of the first restart of a failure sequence.
    #[serde(rename = "first_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub first: Duration,
    /// Delay of the second restart; later ones grow by `multiplier`.
    #[serde(rename = "initial_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub initial: Duration,
    /// Growth factor (≥ 1).
    pub multiplier: f64,
    /// Cap.
    #[serde(rename = "max_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub max: Duration,
    /// Random spread, a fraction in 0..=1 (0.1 = ±10 %).
    pub jitter: f64,
    /// Healthy uptime after which the failure sequence starts over.
    #[serde(rename = "reset_after_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            first: Duration::ZERO,
            initial: Duration::from_millis(250),
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.1,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl BackoffConfig {
    /// The rules serde cannot express; `field` is where the table is (`service[0].backoff`).
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let bad = |f: &str, m: &str| ConfigError::invalid(format!("{field}.{f}"), m);
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(bad("multiplier", "must be at least 1.0"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(bad("jitter", "must be between 0.0 and 1.0"));
        }
        if self.initial > self.max || self.first > self.max {
            return Err(bad("max_ms", "must not be smaller than first_ms and initial_ms"));
        }
        Ok(())
    }
}

/// One `[[service]]`, validated, every default filled in.
#[serde_as]
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
    /// The host other cluster nodes reach the service at (SPEC §13); without it, a service on a
    /// loopback or wildcard host is reached by edges through the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_host: Option<String>,
    /// Program and arguments; absent makes the service external.
    pub command: Option<Vec<String>>,
    /// Working directory of the process.
    pub cwd: Option<PathBuf>,
    /// Extra environment of the process.
    pub env: BTreeMap<String, String>,
    /// Health endpoint.
    pub health_path: String,
    /// The service's OpenAPI contract (`/openapi.json` by default); `None` when configured as `""`.
    #[serde(serialize_with = "none_as_empty")]
    pub openapi_path: Option<String>,
    /// WebSocket of the service's events.
    pub events_path: Option<String>,
    /// Where changed settings are POSTed.
    pub settings_path: Option<String>,
    /// Settings keys the service depends on.
    pub settings_keys: Vec<String>,
    /// Timeout of a forwarded request.
    #[serde(rename = "request_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub request_timeout: Duration,
    /// Started when the orchestrator starts.
    pub autostart: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Services that must be online before this one starts.
    pub depends_on: Vec<ServiceName>,
    /// Signal sent to the process group to stop it.
    pub stop_signal: String,
    /// Wait after `stop_signal` before SIGKILL.
    #[serde(rename = "stop_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub stop_timeout: Duration,
    /// Restart delays.
    pub backoff: BackoffConfig,
    /// Failures within `failure_window_ms` that make it a crash loop.
    pub max_failures: u32,
    /// Window for `max_failures`.
    #[serde(rename = "failure_window_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub failure_window: Duration,
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
            advertise_host: None,
            command: None,
            cwd: None,
            env: BTreeMap::new(),
            health_path: "/health".into(),
            openapi_path: Some("/openapi.json".into()),
            events_path: None,
            settings_path: None,
            settings_keys: Vec::new(),
            request_timeout: Duration::from_secs(10),
            autostart: true,
            restart: RestartPolicy::OnFailure,
            depends_on: Vec::new(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            max_failures: 5,
            failure_window: Duration::from_secs(300),
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

    /// The host another machine reaches the service at: `advertise_host`, else `host` unless it
    /// is loopback or a wildcard address (then only this machine can reach it).
    pub fn advertised_host(&self) -> Option<&str> {
        if let Some(host) = &self.advertise_host {
            return Some(host);
        }
        let wildcard = self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        (!self.is_local() && !wildcard).then_some(self.host.as_str())
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

fn none_as_empty<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_deref().unwrap_or(""))
}

/// A `[[service]]` as written: every field but `name` and `port` may be absent.
#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    name: String,
    display_name: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    host: Option<String>,
    port: i64,
    advertise_host: Option<String>,
    command: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    health_path: Option<String>,
    openapi_path: Option<String>,
    events_path: Option<String>,
    settings_path: Option<String>,
    #[serde(default)]
    settings_keys: Vec<String>,
    #[serde(default)]
    #[serde_as(as = "Option<DurationMilliSeconds<u64>>")]
    request_timeout_ms: Option<Duration>,
    autostart: Option<bool>,
    restart: Option<RestartPolicy>,
    #[serde(default)]
    depends_on: Vec<String>,
    stop_signal: Option<String>,
    #[serde(default)]
    #[serde_as(as = "Option<DurationMilliSeconds<u64>>")]
    stop_timeout_ms: Option<Duration>,
    backoff: Option<BackoffConfig>,
    max_failures: Option<u32>,
    #[serde(default)]
    #[serde_as(as = "Option<DurationMilliSeconds<u64>>")]
    failure_window_ms: Option<Duration>,
    on_port_conflict: Option<PortConflictPolicy>,
}

impl RawService {
    /// Service `i` with every default filled in, or the first rule it breaks.
    fn validate(self, i: usize) -> Result<ServiceConfig, ConfigError> {
        let field = |f: &str| format!("service[{i}].{f}");
        let invalid = |f: &str, message: String| ConfigError::invalid(field(f), message);
        let name = ServiceName::parse(&self.name)
            .map_err(|_| invalid("name", format!("`{}` is not a valid name ([a-z][a-z0-9_-]{{0,31}})", self.name)))?;
        let port = u16::try_from(self.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("port", format!("{} is not a port (1–65535)", self.port)))?;
        let mut svc = ServiceConfig::with_defaults(name, port);
        let host_ok = |host: &str| !host.is_empty() && !host.contains(['/', ' ', '@', '?', '#']);
        if let Some(host) = self.host {
            if !host_ok(&host) {
                return Err(invalid("host", format!("`{host}` is not a host name or address")));
            }
            svc.host = host;
        }
        if let Some(host) = self.advertise_host {
            // Loopback is allowed (several nodes on one machine); a wildcard is no destination.
            let wildcard = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
            if !host_ok(&host) || wildcard {
                return Err(invalid("advertise_host", format!("`{host}` is not a host name or address to connect to")));
            }
            svc.advertise_host = Some(host);
        }
        for route in self.routes {
            let valid = route.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && route.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && route.len() <= 64;
            if !valid {
                return Err(invalid("routes", format!("`{route}` is not a valid resource name")));
            }
            if RESERVED_RESOURCES.contains(&route.as_str()) {
                return Err(invalid("routes", format!("`{route}` shadows the gateway's own /api/{route}")));
            }
            svc.routes.push(route);
        }
        if let Some(display) = self.display_name {
            if display.trim().is_empty() || display.chars().count() > 64 {
                return Err(invalid("display_name", "must be 1–64 characters".into()));
            }
            svc.display_name = display;
        }
        if let Some(cmd) = self.command {
            if cmd.first().is_none_or(|p| p.is_empty()) {
                return Err(invalid("command", "must name a program: [\"program\", \"arg\", …]".into()));
            }
            svc.command = Some(cmd);
        }
        svc.cwd = self.cwd;
        svc.env = self.env;
        let path = |f: &str, v: Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(v) = v else { return Ok(None) };
            if !v.starts_with('/') || v.contains("..") || v.chars().any(|c| c.is_control() || c == ' ') {
                return Err(invalid(f, format!("`{v}` must be an absolute path like /health")));
            }
            Ok(Some(v))
        };
        if let Some(p) = path("health_path", self.health_path)? {
            svc.health_path = p;
        }
        match self.openapi_path {
            Some(p) if p.is_empty() => svc.openapi_path = None,
            p => {
                if let Some(p) = path("openapi_path", p)? {
                    svc.openapi_path = Some(p);
                }
            }
        }
        svc.events_path = path("events_path", self.events_path)?;
        svc.settings_path = path("settings_path", self.settings_path)?;
        svc.settings_keys = self.settings_keys;
        if let Some(v) = self.request_timeout_ms {
            ConfigError::positive(v, &field("request_timeout_ms"))?;
            svc.request_timeout = v;
        }
        if let Some(v) = self.autostart {
            svc.autostart = v;
        }
        if let Some(v) = self.restart {
            svc.restart = v;
        }
        svc.depends_on = self
            .depends_on
            .iter()
            .map(|d| ServiceName::parse(d).map_err(|_| invalid("depends_on", format!("`{d}` is not a service name"))))
            .collect::<Result<_, _>>()?;
        if let Some(sig) = self.stop_signal {
            if !STOP_SIGNALS.contains(&sig.as_str()) {
                return Err(invalid("stop_signal", format!("`{sig}` is not one of {}", STOP_SIGNALS.join(", "))));
            }
            svc.stop_signal = sig;
        }
        if let Some(v) = self.stop_timeout_ms {
            svc.stop_timeout = v;
        }
        if let Some(b) = self.backoff {
            b.validate(&field("backoff"))?;
            svc.backoff = b;
        }
        if let Some(v) = self.max_failures {
            ConfigError::positive(v, &field("max_failures"))?;
            svc.max_failures = v;
        }
        if let Some(v) = self.failure_window_ms {
            ConfigError::positive(v, &field("failure_window_ms"))?;
            svc.failure_window = v;
        }
        if let Some(v) = self.on_port_conflict {
            svc.on_port_conflict = v;
        }
        Ok(svc)
    }
}

/// Validates the `[[service]]` list, in file order, beside a gateway listening on `gateway`:
/// each entry's own rules, then unique names, ports and routes, the gateway's own port, and
/// dependencies that exist and form no cycle.
pub fn validate_services(raw: Vec<RawService>, gateway: SocketAddr) -> Result<Vec<ServiceConfig>, ConfigError> {
    let mut services = Vec::with_capacity(raw.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ports: HashMap<(String, u16), String> = HashMap::new();
    let mut routes: HashMap<String, String> = HashMap::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let svc = raw.validate(i)?;
        let field = |f: &str| format!("service[{i}].{f}");
        let name = svc.name.to_string();
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(ConfigError::invalid(
                field("name"),
                format!("duplicate name `{name}` (also service[{first}])"),
            ));
        }
        let host_key = if svc.is_local() { "local".to_owned() } else { svc.host.clone() };
        if gateway.port() == svc.port && host_key == "local" {
            return Err(ConfigError::invalid(field("port"), format!("port {} is the gateway's own port", svc.port)));
        }
        if let Some(other) = ports.insert((host_key, svc.port), name.clone()) {
            return Err(ConfigError::invalid(
                field("port"),
                format!("duplicate port {} (also used by `{other}`)", svc.port),
            ));
        }
        for route in &svc.routes {
            if let Some(other) = routes.insert(route.clone(), name.clone()) {
                return Err(ConfigError::invalid(
                    field("routes"),
                    format!("duplicate route `{route}` (also owned by `{other}`)"),
                ));
            }
        }
        services.push(svc);
    }
    let known: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for (i, s) in services.iter().enumerate() {
        for d in &s.depends_on {
            let field = format!("service[{i}].depends_on");
            if d == &s.name {
                return Err(ConfigError::invalid(field, format!("`{d}` depends on itself")));
            }
            if !known.contains(d.as_str()) {
                return Err(ConfigError::invalid(field, format!("unknown service `{d}`")));
            }
        }
    }
    if let Some(cycle) = find_cycle(&services) {
        return Err(ConfigError::invalid("service.depends_on", format!("dependency cycle: {}", cycle.join(" -> "))));
    }
    Ok(services)
}

/// The built-in platform: the four simulated services on 5001–5004, each run as
/// `<exe> sim ROLE --port N` from the given executable (normally the orchestrator itself).
pub fn builtin_services(exe: &Path) -> Vec<ServiceConfig> {
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
    table
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
            s.stop_timeout = Duration::from_secs(5);
            Some(s)
        })
        .collect()
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
