//! Every node's presence and real-time clients, published under `node:{name}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Broker, Link, NodeRole};

/// How often a node rewrites its entry.
const EVERY: Duration = Duration::from_secs(1);
/// How long an entry outlives its node.
const TTL: Duration = Duration::from_secs(3);

/// One node's published entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its name.
    pub node: String,
    /// Its role.
    pub role: NodeRole,
    /// Its real-time clients.
    pub clients: Vec<serde_json::Value>,
}

/// Publishes this node's entry every second while the process runs.
pub async fn publish_presence(broker: Broker, hub: hub::HubHandle) {
    let mut link = Link::new(broker.clone());
    let key = broker.key(&format!("node:{}", broker.config().node));
    let members = broker.key("nodes");
    let ttl = u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX);
    loop {
        let clients = hub.clients().await;
        let entry = NodeEntry {
            node: broker.config().node.clone(),
            role: broker.config().role,
            clients: clients.into_iter().filter_map(|c| serde_json::to_value(c).ok()).collect(),
        };
        if let (Ok(text), Some(conn)) = (serde_json::to_string(&entry), link.get().await) {
            let set: redis::RedisResult<()> = redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(text)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("SADD")
                .arg(&members)
                .arg(&broker.config().node)
                .ignore()
                .query_async(conn)
                .await;
            if let Err(e) = set {
                link.failed(&e);
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The entries of every other live node, or `None` when the broker does not answer in time.
pub async fn others(broker: &Broker) -> Option<Vec<NodeEntry>> {
    let read = async {
        let mut conn = broker.shared().await.ok()?;
        let members = broker.key("nodes");
        let names: Vec<String> = redis::cmd("SMEMBERS").arg(&members).query_async(&mut conn).await.ok()?;
        let names: Vec<String> = names.into_iter().filter(|n| *n != broker.config().node).collect();
        if names.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| broker.key(&format!("node:{n}"))).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.ok()?;
        // A node whose entry lapsed is gone: forget it.
        let gone: Vec<&String> = names.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| n).collect();
        if !gone.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("SREM").arg(&members).arg(gone).query_async(&mut conn).await;
        }
        Some(values.into_iter().flatten().filter_map(|v| serde_json::from_str(&v).ok()).collect())
    };
    let read = tokio::time::timeout(super::BROKER_TIMEOUT, read).await.ok().flatten();
    if read.is_none() {
        broker.forget_shared().await;
    }
    read
}
