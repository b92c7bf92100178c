//! Reload without restarts (SPEC §14): re-reads the configuration from its source, compares
//! it with the one in effect ([`Config::reload_plan`]), re-reads the TLS certificate, has the
//! supervisor carry the plan out, follows the event sockets of added services, and publishes a
//! `system` event `config_reloaded`. An invalid file changes nothing. Reloads are serialised;
//! requests in flight are never touched (the listener and the workers stay).

use std::sync::Arc;

use actix_web::web;
use gateway_core::{Problem, Reason};
use registry::ReloadPlan;
use serde_json::json;

use crate::config::{Config, ConfigError};
use crate::edge::error::ApiError;
use crate::state::AppState;

/// Where a reload reads the configuration: the file (or the built-in platform) with the same
/// command-line and environment overrides as at start.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// The configuration in effect and where to read the next one.
pub struct Reloader {
    source: Option<ConfigSource>,
    /// What is in effect: the services and `[health]` of the last reload, the gateway and hub
    /// sections of the start (those need a restart).
    current: tokio::sync::Mutex<Config>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("source", &self.source.is_some()).finish()
    }
}

impl Reloader {
    /// A reloader for the configuration the application started with.
    pub fn new(started_with: Config, source: Option<ConfigSource>) -> Reloader {
        Reloader { source, current: tokio::sync::Mutex::new(started_with) }
    }

    /// Applies the configuration the source gives now; returns the plan that was carried out.
    pub async fn reload(&self, state: &AppState) -> Result<ReloadPlan, ApiError> {
        let mut current = self.current.lock().await;
        let Some(source) = self.source.clone() else {
            let detail = "this orchestrator was started without a configuration source".to_owned();
            return Err(Problem::invalid("config", Reason::InvalidConfig { detail }).into());
        };
        let new = web::block(move || source())
            .await
            .map_err(|e| ApiError::Internal(format!("reading the configuration: {e}")))?;
        let new = new.map_err(|e| {
            log::warn!("reload refused, nothing changed: {e}");
            ApiError::Problem(Problem::invalid("config", Reason::InvalidConfig { detail: e.to_string() }))
        })?;
        if let (Some(certs), Some(tls)) = (&state.tls, &new.gateway.tls) {
            match certs.reload(tls) {
                Ok(true) => log::info!("reload: new TLS certificate from {}", tls.cert.display()),
                Ok(false) => {}
                Err(e) => {
                    log::warn!("reload refused, nothing changed: {e}");
                    let detail = e.to_string();
                    return Err(Problem::invalid("gateway.tls", Reason::InvalidConfig { detail }).into());
                }
            }
        }
        let plan = current.reload_plan(&new);
        log::info!(
            "reload: added {:?}, removed {:?}, restarted {:?}, updated {:?}, unchanged {:?}, requires restart {:?}",
            plan.added,
            plan.removed,
            plan.restarted,
            plan.updated,
            plan.unchanged,
            plan.requires_restart
        );
        if let Some(supervisor) = &state.supervisor {
            supervisor.reload(new.services.clone(), new.health.clone(), plan.clone()).await;
        }
        let reconnect_max = state.config.gateway.timers.ingest_reconnect_max;
        crate::outbound::ingest::follow_services(&state.registry, &state.hub, &plan.added, reconnect_max);
        current.services = new.services;
        current.health = new.health;
        if current.gateway.tls.is_some() && new.gateway.tls.is_some() {
            current.gateway.tls = new.gateway.tls;
        }
        crate::outbound::ingest::system(&state.hub, json!({"kind": "config_reloaded", "plan": plan}));
        Ok(plan)
    }
}

/// SIGHUP (Unix) reloads as `POST /api/config/reload` does; the outcome goes to the log.
pub(crate) async fn reload_on_hangup(state: AppState) {
    let mut hangups = crate::os::Hangups::listen();
    while hangups.next().await {
        match state.reloader.reload(&state).await {
            Ok(_) => log::info!("SIGHUP: configuration reloaded"),
            Err(e) => log::warn!("SIGHUP: reload failed: {e:?}"),
        }
    }
}
