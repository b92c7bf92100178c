//! The cluster engine (SPEC §13): per-topic `seq`, history and live delivery shared by every
//! node through Redis. See the crate docs, "Cluster", for the key layout, the script, the epoch
//! rule and the fault handling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use gateway_core::{EventType, Topic};
use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubStream};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::hub::{Command, HubHandle};
use crate::ingest::{self, Prepared};

/// Where the cluster's broker is and who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// This node's name (in `broker_down` / `broker_up` notices and logs).
    pub node: String,
    /// Prefix of every key (default `orchestrator`).
    pub namespace: String,
}

impl BrokerConfig {
    /// A broker at `url` for `node`, with the default namespace.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> BrokerConfig {
        BrokerConfig { url: url.into(), node: node.into(), namespace: "orchestrator".to_owned() }
    }
}

/// The broker as `/api/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerState {
    /// Whether events currently go through Redis.
    pub connected: bool,
    /// RFC 3339 time of the last change of `connected`.
    pub since: String,
    /// The broker URL without its password.
    pub url_redacted: String,
    /// `redis` (the shared epoch) or `local` (this node's own, while the broker is down).
    pub epoch_source: &'static str,
    /// This node's name.
    pub node: String,
}

/// Most events sent to Redis in one pipeline.
const BATCH: usize = 256;
/// A pipeline (or a connection attempt) that takes longer means the broker is down.
const TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Per event: KEYS none (one Redis, not Redis Cluster); ARGV namespace, epoch key, epoch, type,
/// topic, tail, ring size, stream TTL in ms. Returns the `seq`, or 0 when the epoch key is not
/// the one the node knows (FLUSHALL, another Redis): the node re-derives its epoch.
const SCRIPT: &str = r#"
local ns = ARGV[1]
if redis.call('GET', ns .. ':hub:epoch') ~= ARGV[2] then return 0 end
local epoch = ARGV[3]
local base = ns .. ':hub:' .. epoch
local topic = ARGV[5]
local seq = redis.call('HINCRBY', base .. ':seq', topic, 1)
local frame = '{"type":"' .. ARGV[4] .. '","topic":"' .. topic .. '","seq":' .. seq .. ',"epoch":"' .. epoch .. '"' .. ARGV[6]
local key = base .. ':t:' .. topic
redis.call('XADD', key, 'MAXLEN', '~', ARGV[7], seq .. '-1', 'f', frame)
redis.call('PEXPIRE', key, ARGV[8])
redis.call('PUBLISH', base .. ':events', topic .. '\n' .. seq .. '\n' .. frame)
return seq
"#;

/// What the handles share with the broker task.
pub(crate) struct ClusterLink {
    up: AtomicBool,
    tx: mpsc::UnboundedSender<Vec<Prepared>>,
    state: Mutex<BrokerState>,
}

impl ClusterLink {
    /// Queues events for Redis while the broker is up; gives them back otherwise (the caller
    /// publishes them locally).
    pub(crate) fn offer(&self, prepared: Vec<Prepared>) -> Result<(), Vec<Prepared>> {
        if !self.up.load(Ordering::Acquire) {
            return Err(prepared);
        }
        self.tx.send(prepared).map_err(|e| e.0)
    }

    pub(crate) fn state(&self) -> BrokerState {
        self.state.lock().clone()
    }

    fn set(&self, connected: bool) {
        let mut state = self.state.lock();
        if state.connected != connected {
            state.connected = connected;
            state.since = gateway_core::now_rfc3339();
        }
        state.epoch_source = if connected { "redis" } else { "local" };
        drop(state);
        self.up.store(connected, Ordering::Release);
    }
}

/// The URL with its password (if any) removed.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if user.is_empty() { format!("{scheme}://{host}{path}") } else { format!("{scheme}://{user}@{host}{path}") }
        }
        None => url.to_owned(),
    }
}

/// Starts the broker task for `hub`.
pub(crate) fn start(broker: BrokerConfig, hub: HubHandle) -> Arc<ClusterLink> {
    let (tx, rx) = mpsc::unbounded_channel();
    let link = Arc::new(ClusterLink {
        up: AtomicBool::new(false),
        tx,
        state: Mutex::new(BrokerState {
            connected: false,
            since: gateway_core::now_rfc3339(),
            url_redacted: redact(&broker.url),
            epoch_source: "local",
            node: broker.node.clone(),
        }),
    });
    let task = BrokerTask {
        ring_size: hub.config().ring_size,
        ttl_ms: u64::try_from(hub.config().ring_max_age.as_millis().saturating_mul(2)).unwrap_or(u64::MAX).max(1),
        max_bytes: hub.config().max_message_bytes,
        url_redacted: redact(&broker.url),
        broker,
        hub_tx: hub.tx.downgrade(),
        epoch: hub.epoch.clone(),
        link: Arc::downgrade(&link),
        script: redis::Script::new(SCRIPT),
    };
    drop(hub);
    tokio::spawn(task.run(rx));
    link
}

struct BrokerTask {
    broker: BrokerConfig,
    url_redacted: String,
    ring_size: usize,
    ttl_ms: u64,
    max_bytes: usize,
    /// Weak, so the broker task never keeps the hub alive.
    hub_tx: mpsc::WeakUnboundedSender<Command>,
    epoch: Arc<parking_lot::RwLock<Arc<str>>>,
    link: std::sync::Weak<ClusterLink>,
    script: redis::Script,
}

/// A live connection to Redis under one epoch.
struct Session {
    con: MultiplexedConnection,
    events: PubSubStream,
    epoch_key: String,
    epoch: Arc<str>,
    /// Last `seq` delivered per topic.
    last: HashMap<String, u64>,
}

/// Why a session ended.
enum Ended {
    /// Redis is unreachable; these events were not sequenced.
    Down(Vec<Prepared>),
    /// The epoch key changed under us; re-derive and send these again.
    EpochChanged(Vec<Prepared>),
    /// The hub is gone.
    Stopped,
}

impl BrokerTask {
    fn hub(&self) -> Option<mpsc::UnboundedSender<Command>> {
        self.hub_tx.upgrade().filter(|tx| !tx.is_closed())
    }

    fn send_hub(&self, cmd: Command) -> bool {
        self.hub().is_some_and(|tx| tx.send(cmd).is_ok())
    }

    /// Switches the hub to `epoch` and its publishes to Redis (`up`) or to the hub task. Under
    /// the epoch's write lock, which [`HubHandle`]'s publishes hold for reading while they pick
    /// a sequencer: no event reaches the hub task under the shared epoch, none under a stale one.
    fn set_epoch(&self, epoch: Arc<str>, up: bool) -> bool {
        let mut guard = self.epoch.write();
        if let Some(link) = self.link.upgrade() {
            link.set(up);
        }
        *guard = epoch.clone();
        let sent = self.send_hub(Command::SetEpoch { epoch });
        drop(guard);
        sent
    }

    fn notice(&self, event: &str) -> Option<Prepared> {
        let data = json!({"event": event, "node": self.broker.node});
        let topic = Topic::of(EventType::System, None).ok()?;
        ingest::prepare(self.max_bytes, EventType::System, topic, &data, None).ok()
    }

    fn publish_locally(&self, prepared: Vec<Prepared>) -> bool {
        prepared.is_empty() || self.send_hub(Command::PublishMany(prepared))
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Vec<Prepared>>) {
        let client = redis::Client::open(self.broker.url.as_str());
        let mut backoff = BACKOFF_MIN;
        // Events to send first in the next session.
        let mut pending: Vec<Prepared> = Vec::new();
        // Whether `broker_down` was announced (so the next connection announces `broker_up`).
        let mut down = false;
        // The local epoch in use while the broker is down.
        let mut local: Option<Arc<str>> = None;
        loop {
            if self.hub().is_none() {
                return;
            }
            let attempt = match &client {
                Ok(client) => self.connect(client).await,
                Err(e) => Err(e.to_string()),
            };
            match attempt {
                Ok(session) => {
                    backoff = BACKOFF_MIN;
                    log::info!("hub broker {}: connected, epoch {}", self.url_redacted, session.epoch);
                    if down && let Some(up) = self.notice("broker_up") {
                        pending.push(up);
                    }
                    down = false;
                    match self.serve(session, &mut rx, std::mem::take(&mut pending)).await {
                        Ended::Stopped => return,
                        Ended::EpochChanged(back) => {
                            log::warn!("hub broker {}: the epoch key changed, re-deriving", self.url_redacted);
                            pending = back;
                            continue;
                        }
                        Ended::Down(back) => {
                            pending = back;
                        }
                    }
                }
                Err(e) => log::warn!("hub broker {}: unreachable: {e}", self.url_redacted),
            }
            // Down: a local epoch of our own, so no seq of the shared one is invented.
            // (Also after a failed bootstrap, which may already have switched to a Redis epoch.)
            let current = self.epoch.read().clone();
            if local.as_ref() != Some(&current) {
                let fresh: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
                log::warn!("hub broker {}: down, local epoch {fresh}", self.url_redacted);
                if !self.set_epoch(fresh.clone(), false) {
                    return;
                }
                local = Some(fresh);
            }
            if !down {
                down = true;
                pending.extend(self.notice("broker_down"));
            }
            let unsent = std::mem::take(&mut pending);
            if !self.publish_locally(unsent) {
                return;
            }
            // Back off, publishing locally whatever was queued before the switch.
            let sleep = tokio::time::sleep(jittered(backoff));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    got = rx.recv() => match got {
                        Some(batch) => if !self.publish_locally(batch) { return },
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects, derives the epoch, subscribes and bootstraps (the bootstrap is delivered to
    /// the hub before the session starts taking live messages).
    async fn connect(&self, client: &redis::Client) -> Result<Session, String> {
        let work = async {
            let mut con = client.get_multiplexed_async_connection().await?;
            let pubsub = client.get_async_pubsub().await?;
            let info: String = redis::cmd("INFO").arg("server").query_async(&mut con).await?;
            let candidate = uuid::Uuid::new_v4().simple().to_string();
            let key = format!("{}:hub:epoch", self.broker.namespace);
            let _: Option<String> = redis::cmd("SET").arg(&key).arg(&candidate).arg("NX").query_async(&mut con).await?;
            let epoch_key: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await?;
            self.script.prepare_invoke().load_async(&mut con).await?;
            Ok::<_, redis::RedisError>((con, pubsub, info, epoch_key))
        };
        let (mut con, mut pubsub, info, epoch_key) = tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let run_id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(str::trim)
            .ok_or_else(|| "INFO server has no run_id".to_owned())?;
        let epoch_key = epoch_key.ok_or_else(|| "the epoch key vanished".to_owned())?;
        let epoch: Arc<str> = Arc::from(format!("{}{}", prefix16(&epoch_key), prefix16(run_id)));
        let channel = format!("{}:hub:{epoch}:events", self.broker.namespace);
        tokio::time::timeout(TIMEOUT, pubsub.subscribe(&channel))
            .await
            .map_err(|_| "subscribe timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (_sink, events) = pubsub.split();
        let mut session = Session { con: con.clone(), events, epoch_key, epoch, last: HashMap::new() };
        // The hub must be under this epoch before the bootstrap is delivered.
        if !self.set_epoch(session.epoch.clone(), true) {
            return Err("the hub has stopped".to_owned());
        }
        // Bootstrap: every topic's stream of this epoch, in order.
        let pattern = format!("{}:hub:{}:t:*", self.broker.namespace, session.epoch);
        let prefix_len = pattern.len() - 1;
        let keys = tokio::time::timeout(TIMEOUT * 5, async {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut con)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    return Ok::<_, redis::RedisError>(keys);
                }
                cursor = next;
            }
        })
        .await
        .map_err(|_| "bootstrap timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        for key in keys {
            let Some(topic) = key.get(prefix_len..).map(str::to_owned) else { continue };
            let entries: Vec<(String, Vec<String>)> = tokio::time::timeout(
                TIMEOUT,
                redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(self.ring_size)
                    .query_async(&mut con),
            )
            .await
            .map_err(|_| "bootstrap timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            for (id, fields) in entries.into_iter().rev() {
                if !self.deliver(&mut session, &topic, &id, fields) {
                    return Err("the hub has stopped".to_owned());
                }
            }
        }
        Ok(session)
    }

    /// Hands one stream entry (`<seq>-1`, `f <frame>`) to the hub.
    fn deliver(&self, session: &mut Session, topic: &str, id: &str, fields: Vec<String>) -> bool {
        let Some(seq) = id.split('-').next().and_then(|s| s.parse::<u64>().ok()) else { return true };
        let Some(frame) = fields.into_iter().nth(1) else { return true };
        self.deliver_frame(session, topic, seq, frame)
    }

    fn deliver_frame(&self, session: &mut Session, topic: &str, seq: u64, text: String) -> bool {
        let Ok(parsed) = Topic::parse(topic) else { return true };
        let last = session.last.entry(topic.to_owned()).or_insert(0);
        if seq <= *last {
            return true;
        }
        *last = seq;
        self.send_hub(Command::Deliver { topic: parsed, seq, epoch: session.epoch.clone(), text })
    }

    /// Runs a connected session: live messages in, batches of events out.
    async fn serve(
        &self,
        mut session: Session,
        rx: &mut mpsc::UnboundedReceiver<Vec<Prepared>>,
        pending: Vec<Prepared>,
    ) -> Ended {
        let mut queue: Vec<Prepared> = pending;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            if !queue.is_empty() {
                // Drain what is queued, up to a batch.
                while queue.len() < BATCH {
                    match rx.try_recv() {
                        Ok(more) => queue.extend(more),
                        Err(_) => break,
                    }
                }
                let rest = if queue.len() > BATCH { queue.split_off(BATCH) } else { Vec::new() };
                let batch = std::mem::replace(&mut queue, rest);
                match self.sequence(&mut session, batch).await {
                    Ok(()) => {}
                    Err(ended) => {
                        return match ended {
                            Ended::Down(mut back) => {
                                back.append(&mut queue);
                                Ended::Down(back)
                            }
                            Ended::EpochChanged(mut back) => {
                                back.append(&mut queue);
                                Ended::EpochChanged(back)
                            }
                            Ended::Stopped => Ended::Stopped,
                        };
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                msg = session.events.next() => match msg {
                    None => {
                        log::warn!("hub broker {}: the subscription ended", self.url_redacted);
                        return Ended::Down(Vec::new());
                    }
                    Some(msg) => {
                        if !self.on_message(&mut session, msg.get_payload_bytes()).await {
                            return Ended::Stopped;
                        }
                    }
                },
                got = rx.recv() => match got {
                    Some(batch) => queue = batch,
                    None => return Ended::Stopped,
                },
                _ = check.tick() => {
                    if self.hub().is_none() {
                        return Ended::Stopped;
                    }
                    if let Some(ended) = self.probe(&mut session).await {
                        return ended;
                    }
                }
            }
        }
    }

    /// Once a second: is Redis still there (a silent network loss never ends the subscription)
    /// and is the epoch key still ours (`FLUSHALL`, even on a node that is not publishing)?
    async fn probe(&self, session: &mut Session) -> Option<Ended> {
        let key = format!("{}:hub:epoch", self.broker.namespace);
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let got = tokio::time::timeout(TIMEOUT, get.query_async::<Option<String>>(&mut session.con)).await;
        match got {
            Ok(Ok(Some(k))) if k == session.epoch_key => None,
            Ok(Ok(_)) => Some(Ended::EpochChanged(Vec::new())),
            Ok(Err(e)) => {
                log::warn!("hub broker {}: probe failed: {e}", self.url_redacted);
                Some(Ended::Down(Vec::new()))
            }
            Err(_) => {
                log::warn!("hub broker {}: probe timed out", self.url_redacted);
                Some(Ended::Down(Vec::new()))
            }
        }
    }

    /// Sequences a batch in one pipeline of EVALSHA calls. A Redis that lost the script
    /// (`SCRIPT FLUSH`, a replica promoted) answers NOSCRIPT to every call, so nothing ran: the
    /// script is loaded again and the batch sent once more.
    async fn sequence(&self, session: &mut Session, batch: Vec<Prepared>) -> Result<(), Ended> {
        let mut reloaded = false;
        let seqs = loop {
            let result: Result<Result<Vec<u64>, redis::RedisError>, _> =
                tokio::time::timeout(TIMEOUT, self.pipeline(session, &batch).query_async(&mut session.con)).await;
            match result {
                Ok(Ok(seqs)) => break seqs,
                Ok(Err(e)) if !reloaded && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    log::info!("hub broker {}: the sequencing script was gone; loading it again", self.url_redacted);
                    reloaded = true;
                    let invocation = self.script.prepare_invoke();
                    let load = invocation.load_async(&mut session.con);
                    if !matches!(tokio::time::timeout(TIMEOUT, load).await, Ok(Ok(_))) {
                        log::warn!("hub broker {}: cannot load the sequencing script", self.url_redacted);
                        return Err(Ended::Down(batch));
                    }
                }
                Ok(Err(e)) => {
                    log::warn!("hub broker {}: sequencing failed: {e}", self.url_redacted);
                    return Err(Ended::Down(batch));
                }
                Err(_) => {
                    log::warn!("hub broker {}: sequencing timed out", self.url_redacted);
                    return Err(Ended::Down(batch));
                }
            }
        };
        let rejected: Vec<Prepared> = batch
            .into_iter()
            .zip(seqs.iter().copied().chain(std::iter::repeat(0)))
            .filter(|(_, s)| *s == 0)
            .map(|(p, _)| p)
            .collect();
        if rejected.is_empty() { Ok(()) } else { Err(Ended::EpochChanged(rejected)) }
    }

    /// One EVALSHA of the script per event of the batch.
    fn pipeline(&self, session: &Session, batch: &[Prepared]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let hash = self.script.get_hash();
        for p in batch {
            pipe.cmd("EVALSHA")
                .arg(hash)
                .arg(0)
                .arg(&self.broker.namespace)
                .arg(&session.epoch_key)
                .arg(&*session.epoch)
                .arg(p.ty.as_str())
                .arg(p.topic.as_str())
                .arg(&p.tail)
                .arg(self.ring_size)
                .arg(self.ttl_ms);
        }
        pipe
    }

    /// A live message `topic\nseq\nframe`: fills a gap from the topic's stream, then delivers.
    async fn on_message(&self, session: &mut Session, payload: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(payload) else { return true };
        let mut parts = text.splitn(3, '\n');
        let (Some(topic), Some(seq), Some(frame)) = (parts.next(), parts.next(), parts.next()) else { return true };
        let Ok(seq) = seq.parse::<u64>() else { return true };
        let last = session.last.get(topic).copied().unwrap_or(0);
        if seq <= last {
            return true;
        }
        if seq > last + 1 {
            let key = format!("{}:hub:{}:t:{topic}", self.broker.namespace, session.epoch);
            let fill = tokio::time::timeout(
                TIMEOUT,
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("{}-1", last + 1))
                    .arg(format!("{}-1", seq - 1))
                    .query_async::<Vec<(String, Vec<String>)>>(&mut session.con),
            )
            .await;
            if let Ok(Ok(entries)) = fill {
                for (id, fields) in entries {
                    if !self.deliver(session, topic, &id, fields) {
                        return false;
                    }
                }
            }
        }
        self.deliver_frame(session, topic, seq, frame.to_owned())
    }
}

/// `d` times a random factor in 0.8..=1.2, so that nodes that lost the broker together do not
/// reconnect in step.
fn jittered(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::rng().random_range(0.8..=1.2))
}

fn prefix16(s: &str) -> &str {
    s.get(..16).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn the_password_is_removed() {
        assert_eq!(redact("redis://:secret@10.0.0.5:6379/0"), "redis://10.0.0.5:6379/0");
        assert_eq!(redact("redis://user:secret@host/1"), "redis://user@host/1");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("rediss://u:p@h:1/2?x=y"), "rediss://u@h:1/2?x=y");
    }
}
