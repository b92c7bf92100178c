//! `[health]`: the timers of health monitoring, read from the configuration file as they are
//! here (SPEC §2, §7).

use std::time::Duration;

use gateway_core::ConfigError;
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

/// Health monitoring timers, the same for every service.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Probe period of a running service.
    #[serde(rename = "interval_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub interval: Duration,
    /// Timeout of one health request.
    #[serde(rename = "timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub timeout: Duration,
    /// Consecutive failures before a service is offline.
    pub failure_threshold: u32,
    /// Longest wait for the first healthy answer after a spawn.
    #[serde(rename = "startup_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub startup_timeout: Duration,
    /// Probe period while a service is starting.
    #[serde(rename = "startup_probe_interval_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub startup_probe_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failure_threshold: 3,
            startup_timeout: Duration::from_secs(30),
            startup_probe_interval: Duration::from_millis(25),
        }
    }
}

impl HealthConfig {
    /// The rules serde cannot express; fields are named `health.<field>` as in the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::positive(self.interval, "health.interval_ms")?;
        ConfigError::positive(self.timeout, "health.timeout_ms")?;
        ConfigError::positive(self.failure_threshold, "health.failure_threshold")?;
        ConfigError::positive(self.startup_timeout, "health.startup_timeout_ms")?;
        ConfigError::positive(self.startup_probe_interval, "health.startup_probe_interval_ms")
    }
}
