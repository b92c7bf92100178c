//! The primary's side: its claim on the broker and the token table it publishes.

use std::time::Duration;

use serde::Serialize;
use settings::SettingsStore;

use super::{Broker, Link};

/// How long a claim lasts without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(10);
/// How often the claim is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often the token table is published (an edge reads it every 250 ms, so a revocation is
/// effective on every edge within about half a second).
const TOKENS_EVERY: Duration = Duration::from_millis(300);
/// How long a published token table is valid: edges stop trusting it after this.
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

/// Publishes the token table every 300 ms (5 s lifetime) while the process runs.
pub async fn publish_tokens(broker: Broker, store: SettingsStore) {
    let mut link = Link::new(broker.clone());
    let key = broker.key("tokens");
    let ttl = u64::try_from(TOKENS_TTL.as_millis()).unwrap_or(u64::MAX);
    loop {
        let read = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.token_hashes()).await
        };
        let tokens = match read {
            Ok(Ok(rows)) => {
                rows.into_iter().map(|(hash, info)| PublishedToken { hash, name: info.name, role: info.role }).collect()
            }
            Ok(Err(e)) => {
                log::error!("cluster: cannot read the tokens to publish: {e}");
                tokio::time::sleep(TOKENS_EVERY).await;
                continue;
            }
            Err(_) => return,
        };
        let table = TokenTable { node: broker.config().node.clone(), tokens };
        if let (Ok(text), Some(conn)) = (serde_json::to_string(&table), link.get().await) {
            let set: redis::RedisResult<()> =
                redis::cmd("SET").arg(&key).arg(text).arg("PX").arg(ttl).query_async(conn).await;
            if let Err(e) = set {
                link.failed(&e);
            }
        }
        tokio::time::sleep(TOKENS_EVERY).await;
    }
}
