//! The primary's side: its claim on the broker, and what it publishes for edges (token hashes,
//! the services they reach directly with their statuses, a copy of the settings).

use std::time::Duration;

use gateway_core::{ServiceKind, ServiceStatus, SubState};
use registry::{Registry, ServiceConfig};
use serde::Serialize;
use settings::SettingsStore;

use super::{Broker, Link};

/// How long a claim lasts without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(10);
/// How often the claim is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often the tables are published (an edge reads them every 250 ms, so a revocation is
/// effective on every edge within about half a second).
const TOKENS_EVERY: Duration = Duration::from_millis(300);
/// How long a publication is valid: edges stop trusting it after this.
const TOKENS_TTL: Duration = Duration::from_secs(5);

/// Why the primary may not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "another primary, `{holder}`, holds the broker {url}; start this node as an edge, or stop `{holder}` (its claim lapses {ttl_s} s after it stops)"
)]
pub struct ClaimRefused {
    /// The node holding the claim.
    pub holder: String,
    /// The broker, without its password.
    pub url: String,
    /// The claim's lifetime, in seconds.
    pub ttl_s: u64,
}

/// Renews the claim if it is ours, takes it if it is free; returns the holder.
const CLAIM_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
";

/// Deletes the claim if it is ours.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

async fn claim_once(broker: &Broker, conn: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<String> {
    redis::Script::new(CLAIM_SCRIPT)
        .key(broker.key("primary"))
        .arg(&broker.config().node)
        .arg(u64::try_from(CLAIM_TTL.as_millis()).unwrap_or(u64::MAX))
        .invoke_async(conn)
        .await
}

/// Claims the primary role at start. A broker that cannot be reached does not stop the start
/// (REST must work without it): the claim is then taken by [`keep_claim`] once it answers.
pub async fn claim(broker: &Broker) -> Result<(), ClaimRefused> {
    let refused = |holder: String| ClaimRefused { holder, url: broker.url(), ttl_s: CLAIM_TTL.as_secs() };
    match broker.connect().await {
        Ok(mut conn) => match claim_once(broker, &mut conn).await {
            Ok(holder) if holder == broker.config().node => {
                log::info!("cluster: node {} is the primary on {}", holder, broker.url());
                Ok(())
            }
            Ok(holder) => Err(refused(holder)),
            Err(e) => {
                log::warn!(
                    "cluster: cannot claim the primary role on {} yet: {}",
                    broker.url(),
                    super::KindLabel::kind_label(&e)
                );
                Ok(())
            }
        },
        Err(e) => {
            log::warn!(
                "cluster: broker {} unreachable at start ({}); serving without it, claiming the primary role once it answers",
                broker.url(),
                super::KindLabel::kind_label(&e)
            );
            Ok(())
        }
    }
}

/// Keeps the claim alive while the process runs; logs an error if another node took it.
pub async fn keep_claim(broker: Broker) {
    let mut link = Link::new(broker.clone());
    let mut lost_to: Option<String> = None;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Some(conn) = link.get().await else { continue };
        match claim_once(&broker, conn).await {
            Ok(holder) if holder == broker.config().node => {
                if lost_to.take().is_some() {
                    log::info!("cluster: node {} holds the primary role again", holder);
                }
            }
            Ok(holder) => {
                if lost_to.as_deref() != Some(holder.as_str()) {
                    log::error!(
                        "cluster: node `{holder}` holds the primary role on {}: two primaries share this broker; stop one of them",
                        broker.url()
                    );
                    lost_to = Some(holder);
                }
            }
            Err(e) => link.failed(&e),
        }
    }
}

/// Gives the claim up (at a clean stop), so a successor need not wait for it to lapse.
pub async fn release(broker: &Broker) {
    if let Ok(mut conn) = broker.connect().await {
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE_SCRIPT)
            .key(broker.key("primary"))
            .arg(&broker.config().node)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = released {
            log::warn!("cluster: cannot release the primary role: {}", super::KindLabel::kind_label(&e));
        }
    }
}

/// One published token: its stored hash and identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PublishedToken {
    /// Lowercase hex SHA-256 of the token.
    pub hash: String,
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: gateway_core::Role,
}

/// The token table as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenTable {
    /// The primary that wrote it.
    pub node: String,
    /// Every token.
    pub tokens: Vec<PublishedToken>,
}

/// One service as edges see it: its configuration at its advertised host, without what only
/// the primary's machine needs (command, working directory, environment, dependencies), and
/// its status as the primary's supervisor last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PublishedService {
    /// A `[[service]]` table (the shape of `config print`).
    pub config: serde_json::Value,
    /// Its status.
    pub status: ServiceStatus,
    /// Its sub-state.
    pub sub_state: Option<SubState>,
    /// Managed, external or adopted (on the primary).
    pub kind: ServiceKind,
}

/// The services edges reach directly, as published.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ServiceTable {
    /// The primary that wrote it.
    pub node: String,
    /// Every service another machine can reach; a service on a loopback or wildcard host without
    /// `advertise_host` is left out (edges send its requests through the primary).
    pub services: Vec<PublishedService>,
}

/// A service's configuration as published, or `None` if no other machine can reach it.
pub fn publishable(config: &ServiceConfig) -> Option<serde_json::Value> {
    let host = config.advertised_host()?.to_owned();
    let mut value = serde_json::to_value(config).ok()?;
    let table = value.as_object_mut()?;
    for key in ["command", "cwd", "env", "depends_on", "advertise_host"] {
        table.remove(key);
    }
    table.insert("host".into(), host.into());
    Some(value)
}

/// The service table of this registry.
pub fn service_table(node: &str, registry: &Registry) -> ServiceTable {
    let services = registry
        .configs()
        .iter()
        .filter_map(|config| {
            let published = publishable(config)?;
            let entry = registry.entry(config.name.as_str())?;
            Some(PublishedService {
                config: published,
                status: entry.status,
                sub_state: entry.sub_state,
                kind: entry.kind,
            })
        })
        .collect();
    ServiceTable { node: node.to_owned(), services }
}

/// What the primary reads from its store for each publication (blocking: SQLite).
fn read_store(store: &SettingsStore) -> Result<(Vec<PublishedToken>, String), settings::SettingsError> {
    let tokens = store
        .token_hashes()?
        .into_iter()
        .map(|(hash, info)| PublishedToken { hash, name: info.name, role: info.role })
        .collect();
    let settings = serde_json::to_string(&store.list()?).unwrap_or_default();
    Ok((tokens, settings))
}

/// Publishes, every 300 ms (5 s lifetime) while the process runs: the token table, the service
/// table with statuses, and a copy of every setting (the answer of `GET /api/settings`).
pub async fn publish_state(broker: Broker, store: SettingsStore, registry: Registry) {
    let mut link = Link::new(broker.clone());
    let ttl = u64::try_from(TOKENS_TTL.as_millis()).unwrap_or(u64::MAX);
    let node = broker.config().node.clone();
    loop {
        let read = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || read_store(&store)).await
        };
        let (tokens, settings) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                log::error!("cluster: cannot read the tokens and settings to publish: {e}");
                tokio::time::sleep(TOKENS_EVERY).await;
                continue;
            }
            Err(_) => return,
        };
        let tokens = serde_json::to_string(&TokenTable { node: node.clone(), tokens });
        let services = serde_json::to_string(&service_table(&node, &registry));
        if let (Ok(tokens), Ok(services), Some(conn)) = (tokens, services, link.get().await) {
            let mut pipe = redis::pipe();
            for (key, text) in [("tokens", tokens), ("services", services), ("settings", settings)] {
                pipe.cmd("SET").arg(broker.key(key)).arg(text).arg("PX").arg(ttl).ignore();
            }
            let set: redis::RedisResult<()> = pipe.query_async(conn).await;
            if let Err(e) = set {
                link.failed(&e);
            }
        }
        tokio::time::sleep(TOKENS_EVERY).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SERVICES: &str = r#"
[[service]]
name = "mt5"
routes = ["account", "orders"]
port = 5002
advertise_host = "mt5.internal"
command = ["mt5-service", "--secret-flag"]
env = { MT5_PASSWORD = "hunter2" }
depends_on = ["data"]

[[service]]
name = "data"
routes = ["ticks"]
port = 5001
command = ["data-service"]

[[service]]
name = "pattern"
routes = ["patterns"]
host = "10.0.0.7"
port = 5004
"#;

    #[test]
    fn the_published_table_has_the_reachable_services_without_what_only_the_primary_needs() {
        let config = Config::from_toml(SERVICES).unwrap();
        let registry = Registry::new(&config.services);
        let table = service_table("gw-1", &registry);
        let names: Vec<_> = table.services.iter().map(|s| s.config["name"].as_str().unwrap_or("")).collect();
        assert_eq!(names, ["mt5", "pattern"], "data is on loopback without advertise_host");
        let text = serde_json::to_string(&table).unwrap();
        for secret in ["hunter2", "MT5_PASSWORD", "--secret-flag", "mt5-service"] {
            assert!(!text.contains(secret), "{secret} published: {text}");
        }
        // An edge reads it back as configuration: at the advertised host, external (no command).
        let raw: Vec<registry::RawService> =
            table.services.iter().map(|s| serde_json::from_value(s.config.clone()).unwrap()).collect();
        let configs = registry::validate_services(raw, "127.0.0.1:8080".parse().unwrap()).unwrap();
        assert_eq!(configs[0].authority(), "mt5.internal:5002");
        assert_eq!(configs[0].routes, ["account", "orders"]);
        assert!(configs[0].is_external() && configs[0].depends_on.is_empty());
        assert_eq!(configs[1].authority(), "10.0.0.7:5004");
        assert_eq!(table.services[0].status, ServiceStatus::Stopped);
    }

    #[test]
    fn a_wildcard_advertise_host_is_refused() {
        let text = "[[service]]\nname = \"x\"\nport = 5009\nadvertise_host = \"0.0.0.0\"\n";
        let e = Config::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("advertise_host"), "{e}");
    }
}
