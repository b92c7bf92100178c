//! The state shared by every handler.

use std::sync::Arc;

use registry::{Config, Registry};
use settings::SettingsStore;
use supervisor::SupervisorHandle;

/// Everything a handler may need; cloned cheaply into each worker.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The service table.
    pub registry: Registry,
    /// Settings and tokens.
    pub settings: SettingsStore,
    /// Process lifecycle.
    pub supervisor: SupervisorHandle,
}
