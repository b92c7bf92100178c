//! `[cluster]` (SPEC §13): several orchestrators sharing one hub through Redis. Absent means a
//! single node, exactly as without clustering.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What a node does in a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Supervisor, settings and ingest, as a single node; its events go through the broker.
    #[default]
    Primary,
    /// Real-time clients and REST for the frontends; writes go to the primary.
    Edge,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis the nodes share: `redis://[user:password@]host:port/db`.
    pub broker: String,
    /// This node's name. Default: the host name for a primary (so a restarted primary takes its
    /// own claim back at once), the host name and process id for an edge (several may share a
    /// host).
    #[serde(default)]
    pub node: String,
    /// `primary` (default) or `edge`.
    #[serde(default)]
    pub role: NodeRole,
    /// Edges only: the primary's base URL, where writes, lifecycle commands and log reads go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_url: Option<String>,
    /// Prefix of every Redis key, so that several clusters can share one Redis.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

/// The hub's view of `[cluster]`: the broker, this node and the key prefix.
impl From<&ClusterConfig> for hub::BrokerConfig {
    fn from(cluster: &ClusterConfig) -> hub::BrokerConfig {
        hub::BrokerConfig {
            url: cluster.broker.clone(),
            node: cluster.node.clone(),
            namespace: cluster.namespace.clone(),
        }
    }
}

fn default_node(role: NodeRole) -> String {
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    match role {
        NodeRole::Primary => host,
        NodeRole::Edge => format!("{host}-{}", std::process::id()),
    }
}

fn default_namespace() -> String {
    "orchestrator".to_owned()
}

impl ClusterConfig {
    /// The shape the environment overlay may set (`ORCHESTRATOR_CLUSTER_BROKER`, …).
    pub(crate) fn shape() -> ClusterConfig {
        ClusterConfig {
            broker: String::new(),
            node: String::new(),
            role: NodeRole::Primary,
            primary_url: Some(String::new()),
            namespace: default_namespace(),
        }
    }

    /// Fills in the default node name (see [`ClusterConfig::node`]).
    pub(crate) fn with_default_node(mut self) -> ClusterConfig {
        if self.node.is_empty() {
            self.node = default_node(self.role);
        }
        self
    }

    /// The rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.broker.starts_with("redis://") || self.broker.starts_with("unix://")) {
            return Err(ConfigError::invalid(
                "cluster.broker",
                format!("`{}` is not a Redis URL like redis://127.0.0.1:6379/0", redact(&self.broker)),
            ));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !name_ok(&self.node) {
            return Err(ConfigError::invalid("cluster.node", "must be 1-64 letters, digits, `-`, `_` or `.`"));
        }
        if !name_ok(&self.namespace) {
            return Err(ConfigError::invalid("cluster.namespace", "must be 1-64 letters, digits, `-`, `_` or `.`"));
        }
        match (self.role, self.primary_url.as_deref()) {
            (NodeRole::Edge, None) => Err(ConfigError::invalid(
                "cluster.role",
                "an edge needs `primary_url`, the primary's URL for its writes",
            )),
            (NodeRole::Edge, Some(url)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(ConfigError::invalid("cluster.primary_url", format!("`{url}` is not an http:// or https:// URL")))
            }
            _ => Ok(()),
        }
    }

    /// Whether this node is an edge.
    pub fn is_edge(&self) -> bool {
        self.role == NodeRole::Edge
    }
}

/// A Redis URL without its password, for logs and answers.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}
