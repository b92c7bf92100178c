//! Hub limits and timers (SPEC §6 defaults); every one can be shrunk by tests.

use std::time::Duration;

/// Limits and timers of the hub and of its client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Events kept per topic for replay.
    pub ring_size: usize,
    /// Events older than this are no longer replayed.
    pub ring_max_age: Duration,
    /// Live frames a client may have queued before ticks are conflated / the client is closed.
    pub client_queue: usize,
    /// Subscription patterns per client.
    pub max_topics_per_client: usize,
    /// Largest inbound message and largest event payload, in bytes.
    pub max_message_bytes: usize,
    /// More than this many inbound messages within the window closes the connection (4009).
    pub flood_limit: (u32, Duration),
    /// Time a new connection has to authenticate (else 4001).
    pub auth_timeout: Duration,
    /// Period of server pings.
    pub ping_interval: Duration,
    /// Nothing received for this long closes the connection (4000).
    pub idle_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ring_size: 300,
            ring_max_age: Duration::from_secs(120),
            client_queue: 256,
            max_topics_per_client: 128,
            max_message_bytes: 64 * 1024,
            flood_limit: (50, Duration::from_secs(1)),
            auth_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(35),
        }
    }
}
