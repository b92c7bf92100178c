//! The state shared by every handler.

use std::collections::HashSet;
use std::sync::Arc;

use gateway_core::validate::Limits;
use parking_lot::RwLock;
use registry::{Registry, ServiceConfig};

use crate::config::Config;
use settings::SettingsStore;
use supervisor::SupervisorHandle;

/// The service whose resources only accept symbols listed in the `symbols` setting.
pub const DATA_SERVICE: &str = "data";

/// Everything a handler may need; cloned cheaply into each worker.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The service table.
    pub registry: Registry,
    /// Settings and tokens; `None` on a cluster edge (the primary holds them).
    pub settings: Option<SettingsStore>,
    /// Process lifecycle; `None` on a cluster edge (the primary supervises).
    pub supervisor: Option<SupervisorHandle>,
    /// The settings forwarding validation needs, kept in memory and refreshed on every change
    /// (the API is the only writer of settings).
    pub limits: Arc<RwLock<Arc<CachedLimits>>>,
    /// Pushes committed settings changes to the services that depend on them (not on an edge).
    pub propagation: Option<crate::outbound::propagation::Propagation>,
    /// Real-time fan-out.
    pub hub: hub::HubHandle,
    /// One-time tickets for browsers.
    pub tickets: crate::realtime::Tickets,
    /// Checks WebSocket credentials.
    pub authenticator: hub::Authenticator,
    /// Request and upstream metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bearer tokens, verified against the store and trusted until it changes (HTTP, `/ws`, SSE).
    pub tokens: crate::edge::auth::Tokens,
    /// The cluster's broker, when `[cluster]` is set.
    pub cluster: Option<crate::cluster::Broker>,
    /// On a cluster edge: the primary's copy of the settings, which settings reads answer from.
    pub published_settings: Option<Arc<crate::cluster::edge::PublishedSettings>>,
    /// Dashboard sources suspected of hanging (not waited on until they answer again).
    pub suspects: Arc<crate::outbound::aggregate::Suspects>,
    /// The services' own OpenAPI contracts, checked before forwarding.
    pub contracts: crate::contract::Contracts,
    /// The HTTPS certificate, when `[gateway.tls]` is set (re-read on reload).
    pub tls: Option<Arc<crate::tls::Certificates>>,
    /// The configuration in effect and where a reload reads the next one.
    pub reloader: Arc<crate::reload::Reloader>,
}

/// Validation limits in two flavours: with the symbol list (data service) and without.
#[derive(Debug, Default)]
pub struct CachedLimits {
    /// `symbols` must be listed.
    pub strict: Limits,
    /// Format only.
    pub lenient: Limits,
}

impl CachedLimits {
    /// Reads the settings the limits depend on (blocking: SQLite).
    pub fn load(store: &SettingsStore) -> Result<CachedLimits, settings::SettingsError> {
        Ok(CachedLimits::of(&store.values(&["symbols".to_owned(), "risk.max_volume".to_owned()])?))
    }

    /// The limits of these setting values (`symbols`, `risk.max_volume`).
    pub fn of(values: &serde_json::Map<String, serde_json::Value>) -> CachedLimits {
        let symbols: HashSet<String> = values
            .get("symbols")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let max_volume = values.get("risk.max_volume").and_then(|v| v.as_f64()).unwrap_or(1.0);
        CachedLimits {
            strict: Limits { symbols: Some(symbols), max_volume },
            lenient: Limits { symbols: None, max_volume },
        }
    }
}

/// Borrowed limits for one request.
pub struct LimitsGuard {
    cached: Arc<CachedLimits>,
    strict: bool,
}

impl std::ops::Deref for LimitsGuard {
    type Target = Limits;
    fn deref(&self) -> &Limits {
        if self.strict { &self.cached.strict } else { &self.cached.lenient }
    }
}

impl AppState {
    /// The settings store; on an edge (which sends settings requests to its primary) an error.
    pub fn store(&self) -> Result<&SettingsStore, crate::edge::error::ApiError> {
        self.settings
            .as_ref()
            .ok_or_else(|| crate::edge::error::ApiError::Internal("an edge has no settings store".into()))
    }

    /// The supervisor; on an edge (which sends lifecycle commands to its primary) an error.
    pub fn supervisor(&self) -> Result<&SupervisorHandle, crate::edge::error::ApiError> {
        self.supervisor
            .as_ref()
            .ok_or_else(|| crate::edge::error::ApiError::Internal("an edge has no supervisor".into()))
    }

    /// The validation limits for requests to this service.
    pub fn limits_for(&self, service: &ServiceConfig) -> LimitsGuard {
        LimitsGuard { cached: self.limits.read().clone(), strict: service.name.as_str() == DATA_SERVICE }
    }

    /// Re-reads the limits after a settings change (blocking: SQLite).
    pub fn refresh_limits(&self) {
        let Some(store) = &self.settings else { return };
        match CachedLimits::load(store) {
            Ok(fresh) => *self.limits.write() = Arc::new(fresh),
            Err(e) => log::error!("cannot refresh validation limits from settings: {e}"),
        }
    }
}
