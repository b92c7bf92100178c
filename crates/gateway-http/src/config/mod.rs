//! The orchestrator's configuration (SPEC §2): one TOML file whose sections each belong to the
//! crate that uses them — `[gateway]` to this one, `[health]` to the supervisor
//! ([`HealthConfig`]), `[hub]` to the hub ([`HubConfig`]), `[[service]]` to the registry
//! ([`ServiceConfig`]) — composed here, in one place.
//!
//! Reading a configuration:
//! 1. serde reads the text into the sections' own types: malformed TOML, an unknown field or a
//!    value of the wrong type is an error with line and column;
//! 2. the environment overlay ([`overlay`]) sets `ORCHESTRATOR_<SECTION>_<FIELD>` values in the
//!    document; an unknown variable or a value of the wrong kind is an error naming the variable;
//! 3. each section validates itself, then the services against the gateway's address — once,
//!    after the overlay. An error names the field and the line of the file that holds it, or the
//!    variable that set it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use gateway_core::ConfigError;
pub use hub::HubConfig;
use registry::{RawService, ReloadPlan, ServiceConfig};
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};
pub use supervisor::HealthConfig;

mod cluster;
mod lines;
mod overlay;

pub use cluster::{ClusterConfig, NodeRole, redact};

pub use overlay::NOT_OVERRIDES;

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
    /// Several nodes sharing one hub through Redis; `None` is a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
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
    /// The gateway's own timers.
    pub timers: GatewayTimers,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bind: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("data"),
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            tls: None,
            timers: GatewayTimers::default(),
        }
    }
}

impl GatewayConfig {
    /// The parsed listen address.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind.parse().map_err(|_| {
            ConfigError::invalid("gateway.bind", format!("`{}` is not an address like 127.0.0.1:5000", self.bind))
        })
    }

    /// The rules serde cannot express.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let bind = self.bind_addr()?;
        ConfigError::positive(self.max_body_bytes, "gateway.max_body_bytes")?;
        self.timers.validate()?;
        Ok(bind)
    }
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

/// `[gateway.timers]`: the gateway's own timers, today's values by default.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayTimers {
    /// Overall budget of `GET /api/dashboard` (each part also within its service's timeout).
    #[serde(rename = "dashboard_budget_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub dashboard_budget: Duration,
    /// Lifetime of a one-time SSE/WebSocket ticket.
    #[serde(rename = "ticket_ttl_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub ticket_ttl: Duration,
    /// Longest wait between reconnects to a service's event socket (the first is 100 ms).
    #[serde(rename = "ingest_reconnect_max_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub ingest_reconnect_max: Duration,
    /// Connect timeout of forwarded requests (within the request timeout).
    #[serde(rename = "upstream_connect_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub upstream_connect: Duration,
    /// Longest a verified bearer token is trusted without asking the store again (0: always ask).
    #[serde(rename = "token_cache_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub token_cache: Duration,
    /// How long a closing WebSocket client may take to answer the close frame.
    #[serde(rename = "close_grace_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub close_grace: Duration,
}

impl Default for GatewayTimers {
    fn default() -> Self {
        GatewayTimers {
            dashboard_budget: Duration::from_secs(2),
            ticket_ttl: Duration::from_secs(30),
            ingest_reconnect_max: Duration::from_secs(5),
            upstream_connect: Duration::from_secs(5),
            token_cache: Duration::from_secs(60),
            close_grace: Duration::from_secs(1),
        }
    }
}

impl GatewayTimers {
    fn validate(&self) -> Result<(), ConfigError> {
        let field = |f: &str| format!("gateway.timers.{f}");
        ConfigError::positive(self.dashboard_budget, &field("dashboard_budget_ms"))?;
        ConfigError::positive(self.ticket_ttl, &field("ticket_ttl_ms"))?;
        ConfigError::positive(self.ingest_reconnect_max, &field("ingest_reconnect_max_ms"))?;
        ConfigError::positive(self.upstream_connect, &field("upstream_connect_ms"))?;
        ConfigError::positive(self.close_grace, &field("close_grace_ms"))
    }
}

/// The file as serde reads it: each section in its owner's type, services as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    gateway: GatewayConfig,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    hub: HubConfig,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    cluster: Option<ClusterConfig>,
}

impl Config {
    /// The built-in default: the four simulated services on 5001–5004, each run as
    /// `<exe> sim ROLE --port N` from the given executable (normally the orchestrator itself).
    pub fn builtin(exe: &Path) -> Config {
        Config { services: registry::builtin_services(exe), ..Config::default() }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, std::iter::empty())
    }

    /// Reads a config file, applies the environment overlay and validates the result.
    pub fn load_with_env<I>(path: &Path, vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Config::from_toml_with_env(&text, vars)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses TOML text, applies the environment overlay and validates the result.
    pub fn from_toml_with_env<I>(text: &str, vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let lines = lines::Lines::index(text);
        // The shape of the file as written, so that its errors carry line and column.
        toml::from_str::<Sections>(text).map_err(|e| lines.parse_error(&e))?;
        let document: toml::Table = toml::from_str(text).map_err(|e| lines.parse_error(&e))?;
        compose(document, vars, Some(&lines))
    }

    /// Applies `ORCHESTRATOR_*` environment overrides to this configuration and validates the
    /// result (see [`overlay`]); on error, `self` is unchanged.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) -> Result<(), ConfigError> {
        let document = toml::Table::try_from(&*self).map_err(|e| ConfigError::Parse {
            line: None,
            column: None,
            message: e.to_string(),
        })?;
        *self = compose(document, vars, None)?;
        Ok(())
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// The effective configuration as TOML (for `orchestrator config print`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// What a reload from `self` to `new` changes: the services' plan, whether `[health]`
    /// changed (applied in place), and the fields only a restart of the orchestrator applies.
    pub fn reload_plan(&self, new: &Config) -> ReloadPlan {
        let mut plan = ReloadPlan::between(&self.services, &new.services);
        plan.health_changed = self.health != new.health;
        let (g, h) = (&self.gateway, &new.gateway);
        for (changed, field) in [
            (g.bind != h.bind, "gateway.bind"),
            (g.data_dir != h.data_dir, "gateway.data_dir"),
            (g.cors_allowed_origins != h.cors_allowed_origins, "gateway.cors_allowed_origins"),
            (g.max_body_bytes != h.max_body_bytes, "gateway.max_body_bytes"),
            // Turning TLS on or off changes the listener; new files for it are re-read in place.
            (g.tls.is_some() != h.tls.is_some(), "gateway.tls"),
            (g.timers != h.timers, "gateway.timers"),
            (self.hub != new.hub, "hub"),
            (self.cluster != new.cluster, "cluster"),
        ] {
            if changed {
                plan.requires_restart.push(field.to_owned());
            }
        }
        plan
    }
}

/// Overlay, then the one validation of every section.
fn compose<I>(mut document: toml::Table, vars: I, lines: Option<&lines::Lines>) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let set_by = overlay::apply(&mut document, vars)?;
    let sections: Sections = document.try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
        line: None,
        column: None,
        message: format!("after the environment overrides: {}", e.message().trim()),
    })?;
    let validated = (|| {
        let bind = sections.gateway.validate()?;
        sections.health.validate()?;
        sections.hub.validate()?;
        let services = registry::validate_services(sections.service, bind)?;
        let cluster = sections.cluster.map(ClusterConfig::with_default_node);
        if let Some(cluster) = &cluster {
            cluster.validate()?;
            if cluster.is_edge() && !services.is_empty() {
                return Err(ConfigError::invalid(
                    "service",
                    "an edge has no services of its own: it uses the ones its primary publishes",
                ));
            }
        }
        Ok(Config { gateway: sections.gateway, health: sections.health, hub: sections.hub, services, cluster })
    })();
    validated.map_err(|e| match e {
        ConfigError::Invalid { field, line: None, message } => match set_by.get(&field) {
            Some(var) => ConfigError::Invalid { message: format!("{message} (set by {var})"), field, line: None },
            None => ConfigError::Invalid { line: lines.and_then(|l| l.of(&field)), field, message },
        },
        other => other,
    })
}

#[cfg(test)]
mod tests;
