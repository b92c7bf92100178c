//! A node of a cluster (SPEC §13): several orchestrators sharing one hub through Redis.
//!
//! The hub's own traffic (sequencing, history, live delivery) is the hub crate's
//! (`hub::Hub::start_clustered`). This module holds what the gateway adds:
//!
//! * [`primary`]: the primary's claim on the broker (a second primary refuses to start, naming
//!   the holder) and what it publishes for its edges — the token hashes and roles (never a
//!   token), the services other machines can reach with their statuses, the settings;
//! * [`edge`]: an edge's view of that publication ([`PublishedTokens`], with the 60 s rule while
//!   it is stale; its service table; the settings copy) and the middleware that sends what the
//!   edge does not answer itself (by the route table's `on_edge`) to `primary_url` with the
//!   caller's own token;
//! * [`nodes`]: every node's presence and clients, for `GET /api/hub/clients` and `/api/health`.
//!
//! Redis keys, all under `{namespace}:cluster:`:
//!
//! | key | written by | value | lifetime |
//! |---|---|---|---|
//! | `primary` | the primary | its node name | 10 s, renewed every 2 s |
//! | `tokens` | the primary | `{"node":…,"tokens":[{"hash":…,"name":…,"role":…}]}` | 5 s, rewritten every 300 ms |
//! | `services` | the primary | `{"node":…,"services":[{"config":{…},"status":…,"sub_state":…,"kind":…}]}` | 5 s, rewritten every 300 ms |
//! | `settings` | the primary | the data of `GET /api/settings` | 5 s, rewritten every 300 ms |
//! | `nodes` (a set of names), `node:{name}` | every node | `{"node":…,"role":…,"clients":[…]}` | 3 s, rewritten every second |
//!
//! Nothing here is on a request's path to Redis except `GET /api/hub/clients` (bounded by a
//! short timeout; the local clients are always listed).

pub mod edge;
pub mod nodes;
pub mod primary;

use std::time::Duration;

use redis::aio::MultiplexedConnection;

pub use crate::config::{ClusterConfig, NodeRole, redact};
pub use edge::PublishedTokens;

/// How long a connection attempt or a command may take before the broker counts as unreachable.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis client of the gateway's cluster tasks.
#[derive(Clone)]
pub struct Broker {
    client: redis::Client,
    config: ClusterConfig,
    /// The connection requests share (multiplexed), made on first use, dropped after an error.
    shared: std::sync::Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("url", &redact(&self.config.broker)).field("node", &self.config.node).finish()
    }
}

impl Broker {
    /// A client for `config.broker` (nothing is connected yet).
    pub fn new(config: &ClusterConfig) -> Result<Broker, redis::RedisError> {
        Ok(Broker {
            client: redis::Client::open(config.broker.as_str())?,
            config: config.clone(),
            shared: std::sync::Arc::default(),
        })
    }

    /// The connection request handlers share (made on first use, within [`BROKER_TIMEOUT`]).
    pub async fn shared(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut shared = self.shared.lock().await;
        if let Some(conn) = shared.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.connect().await?;
        *shared = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the shared connection after it failed (the next use connects again).
    pub async fn forget_shared(&self) {
        *self.shared.lock().await = None;
    }

    /// The cluster section.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// `{namespace}:cluster:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:cluster:{suffix}", self.config.namespace)
    }

    /// The broker URL without its password.
    pub fn url(&self) -> String {
        redact(&self.config.broker)
    }

    /// A new connection, within [`BROKER_TIMEOUT`] for the connection and for each command.
    pub async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(BROKER_TIMEOUT))
            .set_response_timeout(Some(BROKER_TIMEOUT));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }
}

/// A connection kept by a periodic task: connected on first use, dropped on error, and
/// connected again (at most once per `retry`) on a later use.
pub(crate) struct Link {
    broker: Broker,
    conn: Option<MultiplexedConnection>,
    retry_at: Option<tokio::time::Instant>,
    /// Failed attempts since the last success (the backoff's position).
    failures: u32,
    down_logged: bool,
}

/// Reconnects: 100 ms, then 200 ms doubling to 5 s, each ±20 %, so that nodes that lost the
/// broker together do not come back in step.
fn reconnect_backoff() -> supervisor::BackoffPolicy {
    supervisor::BackoffPolicy::from_config(&registry::BackoffConfig {
        first: Duration::from_millis(100),
        initial: Duration::from_millis(200),
        multiplier: 2.0,
        max: Duration::from_secs(5),
        jitter: 0.2,
        reset_after: Duration::ZERO,
    })
}

impl Link {
    pub(crate) fn new(broker: Broker) -> Link {
        Link { broker, conn: None, retry_at: None, failures: 0, down_logged: false }
    }

    /// The connection, or `None` while the broker is unreachable (then retried with backoff).
    pub(crate) async fn get(&mut self) -> Option<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                return None;
            }
            match self.broker.connect().await {
                Ok(conn) => {
                    if self.down_logged {
                        log::info!("cluster: broker {} reachable again", self.broker.url());
                    }
                    self.conn = Some(conn);
                    self.failures = 0;
                    self.retry_at = None;
                    self.down_logged = false;
                }
                Err(e) => {
                    self.failed(&e);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// Drops the connection after a failed command.
    pub(crate) fn failed(&mut self, e: &redis::RedisError) {
        if !self.down_logged {
            log::warn!("cluster: broker {} unreachable: {}", self.broker.url(), e.kind_label());
            self.down_logged = true;
        }
        self.conn = None;
        self.retry_at = Some(tokio::time::Instant::now() + reconnect_backoff().delay(self.failures));
        self.failures = self.failures.saturating_add(1);
    }
}

trait KindLabel {
    fn kind_label(&self) -> String;
}

impl KindLabel for redis::RedisError {
    /// The error without anything that could echo the URL.
    fn kind_label(&self) -> String {
        if self.is_timeout() {
            "timed out".to_owned()
        } else if self.is_connection_refusal() {
            "connection refused".to_owned()
        } else if self.is_io_error() || self.is_connection_dropped() {
            "connection lost".to_owned()
        } else {
            format!("{:?}", self.kind())
        }
    }
}
