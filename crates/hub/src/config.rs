//! `[hub]`: limits and timers of the hub and of its client connections (SPEC §6 defaults).
//! The section is read from the configuration file as it is here; every one can be shrunk by
//! tests.

use std::time::Duration;

use gateway_core::ConfigError;
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

/// Limits and timers of the hub and of its client connections.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Events kept per topic for replay.
    pub ring_size: usize,
    /// Events older than this are no longer replayed.
    #[serde(rename = "ring_max_age_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub ring_max_age: Duration,
    /// Live frames a client may have queued before ticks are conflated / the client is closed.
    pub client_queue: usize,
    /// Subscription patterns per client.
    pub max_topics_per_client: usize,
    /// Largest inbound message and largest event payload, in bytes.
    pub max_message_bytes: usize,
    /// More than this many inbound messages within `flood_window` closes the connection (4009).
    pub flood_messages: u32,
    /// The window of `flood_messages`.
    #[serde(rename = "flood_window_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub flood_window: Duration,
    /// Time a new connection has to authenticate (else 4001).
    #[serde(rename = "auth_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub auth_timeout: Duration,
    /// Period of server pings.
    #[serde(rename = "ping_interval_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub ping_interval: Duration,
    /// Nothing received for this long closes the connection (4000).
    #[serde(rename = "idle_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub idle_timeout: Duration,
    /// Period of the SSE heartbeat comment.
    #[serde(rename = "sse_heartbeat_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub sse_heartbeat: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ring_size: 300,
            ring_max_age: Duration::from_secs(120),
            client_queue: 256,
            max_topics_per_client: 128,
            max_message_bytes: 64 * 1024,
            flood_messages: 50,
            flood_window: Duration::from_secs(1),
            auth_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(35),
            sse_heartbeat: Duration::from_secs(15),
        }
    }
}

impl HubConfig {
    /// The rules serde cannot express; fields are named `hub.<field>` as in the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::positive(self.ring_size, "hub.ring_size")?;
        ConfigError::positive(self.client_queue, "hub.client_queue")?;
        ConfigError::positive(self.max_topics_per_client, "hub.max_topics_per_client")?;
        ConfigError::positive(self.max_message_bytes, "hub.max_message_bytes")?;
        ConfigError::positive(self.flood_messages, "hub.flood_messages")?;
        ConfigError::positive(self.flood_window, "hub.flood_window_ms")?;
        ConfigError::positive(self.auth_timeout, "hub.auth_timeout_ms")?;
        ConfigError::positive(self.ping_interval, "hub.ping_interval_ms")?;
        ConfigError::positive(self.sse_heartbeat, "hub.sse_heartbeat_ms")?;
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::invalid("hub.idle_timeout_ms", "must be longer than hub.ping_interval_ms"));
        }
        Ok(())
    }
}
