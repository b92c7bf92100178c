//! The hub's public face: [`Hub::start`], the cloneable [`HubHandle`], client sessions and the
//! value types its calls return. Every call becomes a [`Command`] for the hub task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gateway_core::{Event, EventType, FieldError, Role, Topic, TopicPattern};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{self, BrokerConfig, BrokerState, ClusterLink};
use crate::config::HubConfig;
use crate::error::HubError;
use crate::frame::{Frame, Outbound};
use crate::ingest::{self, Prepared};
use crate::protocol::RequestId;
use crate::queue::ClientQueue;
use crate::task::HubTask;

/// The hub; see [`Hub::start`].
pub struct Hub;

impl Hub {
    /// Spawns the hub task on the current tokio runtime (actix-rt is fine) with a new epoch and
    /// returns its handle. The task ends after [`HubHandle::shutdown`], or when every handle and
    /// every client session is gone.
    pub fn start(config: HubConfig) -> HubHandle {
        let handle = Hub::spawn(config);
        log::info!("hub started, epoch {}", handle.epoch());
        handle
    }

    /// Spawns the hub task and its broker task (see the crate docs, "Cluster"): events are
    /// sequenced in Redis and delivered to the clients of every node sharing `broker`. The hub
    /// starts under a local epoch and switches to the Redis epoch once connected; while Redis is
    /// unreachable it goes on under a local epoch. Never fails: a bad URL is a broker that is down.
    pub fn start_clustered(config: HubConfig, broker: BrokerConfig) -> HubHandle {
        let mut handle = Hub::spawn(config);
        log::info!("hub started (cluster node {}), local epoch {}", broker.node, handle.epoch());
        let cluster = cluster::start(broker, handle.clone());
        handle.cluster = Some(cluster);
        handle
    }

    fn spawn(config: HubConfig) -> HubHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let task = HubTask::new(config.clone(), epoch.clone());
        tokio::spawn(task.run(rx));
        HubHandle { tx, epoch: Arc::new(RwLock::new(epoch)), config, counters, cluster: None }
    }
}

/// Counters updated outside the hub task.
#[derive(Default)]
pub(crate) struct Counters {
    /// Frames handed to adapters.
    pub(crate) frames_sent: AtomicU64,
}

/// A command for the hub task.
pub(crate) enum Command {
    Publish(Prepared),
    PublishMany(Vec<Prepared>),
    /// An event sequenced elsewhere (Redis): store and fan out unless it is a duplicate.
    Deliver {
        topic: Topic,
        seq: u64,
        epoch: Arc<str>,
        text: String,
    },
    /// Switches to another epoch, forgetting every topic's ring, latest event and `seq`.
    SetEpoch {
        epoch: Arc<str>,
    },
    /// `tx` and `counters` let the task build the session itself, so a session lost on the
    /// way back (the caller gave up) still unregisters on drop.
    Connect {
        info: ClientInfo,
        tx: mpsc::UnboundedSender<Command>,
        counters: Arc<Counters>,
        reply: oneshot::Sender<ClientSession>,
    },
    Disconnect {
        id: Arc<str>,
    },
    Subscribe {
        client_id: String,
        request: SubscribeRequest,
        reply: oneshot::Sender<Result<Subscribed, HubError>>,
    },
    Unsubscribe {
        client_id: String,
        patterns: Vec<TopicPattern>,
        ack: Option<Ack>,
        reply: oneshot::Sender<Result<(), HubError>>,
    },
    SendTo {
        client_id: String,
        frame: Frame,
        reply: oneshot::Sender<Result<(), HubError>>,
    },
    Clients {
        reply: oneshot::Sender<Vec<ClientSummary>>,
    },
    Stats {
        reply: oneshot::Sender<HubStats>,
    },
    Latest {
        topic: Topic,
        reply: oneshot::Sender<Option<Frame>>,
    },
    Replay {
        topic: Topic,
        since: u64,
        epoch: Option<String>,
        reply: oneshot::Sender<Replay>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Who an authenticated client is (verified outside the hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Token name (or whatever names the principal).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// WebSocket (`GET /ws`).
    Ws,
    /// Server-Sent Events (`GET /api/events/stream`).
    Sse,
}

/// What the hub records about a client at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The authenticated principal.
    pub principal: Principal,
    /// Peer address, if known.
    pub remote_addr: Option<String>,
    /// The transport.
    pub transport: Transport,
}

/// One connected client, for `GET /api/hub/clients`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientSummary {
    /// Client id.
    pub id: String,
    /// Who it is.
    pub principal: Principal,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// WebSocket or SSE.
    pub transport: Transport,
    /// Subscribed patterns, in subscription order.
    pub topics: Vec<String>,
    /// Frames waiting in its queue.
    pub queue_depth: usize,
    /// Ticks conflated away for this client.
    pub drops: u64,
    /// RFC 3339 connect time.
    pub connected_at: String,
}

/// Hub counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HubStats {
    /// Connected clients.
    pub clients: usize,
    /// Topics that have had at least one event this epoch.
    pub topics: usize,
    /// Events published this epoch.
    pub events_published: u64,
    /// Frames queued for clients (events, replays, replies).
    pub frames_queued: u64,
    /// Frames taken from the queues by the adapters.
    pub frames_sent: u64,
    /// Ticks conflated away (replaced by a newer tick of the same topic).
    pub drops: u64,
    /// Clients closed with 4008 because their queue overflowed.
    pub slow_consumer_closes: u64,
}

/// Queue a reply to a subscribe/unsubscribe in the client's stream, ahead of what it causes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ack {
    /// The request id to echo.
    pub id: Option<RequestId>,
}

/// A subscription request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeRequest {
    /// Patterns to add (duplicates of held patterns are ignored).
    pub patterns: Vec<TopicPattern>,
    /// Replay after these sequence numbers (topic → last seen seq).
    pub since: BTreeMap<Topic, u64>,
    /// The epoch the client last saw; a different one means nothing is recovered.
    pub epoch: Option<String>,
    /// Queue a `subscribed` reply before the replayed events.
    pub ack: Option<Ack>,
}

/// The outcome of a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subscribed {
    /// The patterns of the request, deduplicated.
    pub topics: Vec<String>,
    /// For each `since` topic: whether every missed event was replayed.
    pub recovered: BTreeMap<String, bool>,
}

/// The events of one topic after a sequence number.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Whether the ring holds every event after `since` in this epoch; if not, `frames` is empty.
    pub recovered: bool,
    /// The missed events, in order.
    pub frames: Vec<Frame>,
}

/// The handle to the hub task: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct HubHandle {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) epoch: Arc<RwLock<Arc<str>>>,
    config: Arc<HubConfig>,
    counters: Arc<Counters>,
    cluster: Option<Arc<ClusterLink>>,
}

impl std::fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubHandle").field("epoch", &self.epoch()).finish_non_exhaustive()
    }
}

impl HubHandle {
    /// The hub's current epoch: a new random id at every start; in a cluster, the Redis epoch
    /// while the broker is reachable and a local one while it is not.
    pub fn epoch(&self) -> Arc<str> {
        self.epoch.read().clone()
    }

    /// The broker's state (`None` on a single node), for `/api/health`.
    pub fn broker_state(&self) -> Option<BrokerState> {
        self.cluster.as_ref().map(|c| c.state())
    }

    /// Sends a prepared event to its sequencer: the broker while it is up, else the hub task.
    fn dispatch(&self, prepared: Vec<Prepared>) -> Result<(), HubError> {
        let Some(link) = &self.cluster else { return self.publish_locally(prepared) };
        // Held while the sequencer is picked, so an epoch switch never falls in between.
        let _epoch = self.epoch.read();
        match link.offer(prepared) {
            Ok(()) => Ok(()),
            Err(back) => self.publish_locally(back),
        }
    }

    fn publish_locally(&self, mut prepared: Vec<Prepared>) -> Result<(), HubError> {
        match prepared.len() {
            0 => Ok(()),
            1 => match prepared.pop() {
                Some(p) => self.send(Command::Publish(p)),
                None => Ok(()),
            },
            _ => self.send(Command::PublishMany(prepared)),
        }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn send(&self, cmd: Command) -> Result<(), HubError> {
        self.tx.send(cmd).map_err(|_| HubError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, HubError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        rx.await.map_err(|_| HubError::Stopped)
    }

    /// Publishes an event without waiting. The payload is serialised here, once; the hub task
    /// assigns the topic's next `seq` and fans the frame out. `timestamp` defaults to now.
    pub fn publish(&self, ty: EventType, topic: Topic, data: Value, timestamp: Option<String>) -> Result<(), HubError> {
        let prepared = ingest::prepare(self.config.max_message_bytes, ty, topic, &data, timestamp)?;
        self.dispatch(vec![prepared])
    }

    /// Validates and publishes one ingest item `{type, topic?, data, timestamp?}`; the error
    /// names the offending field.
    pub fn publish_raw(&self, item: Value) -> Result<(), HubError> {
        let prepared = self.prepare_raw(item)?;
        self.dispatch(vec![prepared])
    }

    /// Validates every item of a batch, then publishes them all in order (all or nothing).
    /// Field names carry the index: `[2].topic`. Returns the number published.
    pub fn publish_raw_batch(&self, items: Vec<Value>) -> Result<usize, HubError> {
        let prepared = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                self.prepare_raw(item).map_err(|e| match e {
                    HubError::Invalid(f) => HubError::Invalid(FieldError::new(format!("[{i}].{}", f.field), f.reason)),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = prepared.len();
        if n > 0 {
            self.dispatch(prepared)?;
        }
        Ok(n)
    }

    fn prepare_raw(&self, item: Value) -> Result<Prepared, HubError> {
        let raw = ingest::validate_raw(item)?;
        Ok(ingest::prepare(self.config.max_message_bytes, raw.ty, raw.topic, &raw.data, raw.timestamp)?)
    }

    /// Registers a client and returns its session. The registration lasts as long as the
    /// session's [`Outbox`].
    pub async fn connect(&self, info: ClientInfo) -> Result<ClientSession, HubError> {
        let (tx, counters) = (self.tx.clone(), self.counters.clone());
        self.ask(|reply| Command::Connect { info, tx, counters, reply }).await
    }

    /// Adds patterns to a client's subscription. Replay, the `ack`, the latest tick of exact
    /// `tick:X` patterns and the registration happen in one step of the hub task, so the client
    /// sees: ack, replayed events, then live events — none lost, none twice.
    pub async fn subscribe(&self, client_id: &str, request: SubscribeRequest) -> Result<Subscribed, HubError> {
        let client_id = client_id.to_owned();
        self.ask(|reply| Command::Subscribe { client_id, request, reply }).await?
    }

    /// Removes patterns from a client's subscription; with `ack`, queues an `unsubscribed` reply
    /// after which no event of those patterns follows.
    pub async fn unsubscribe(
        &self,
        client_id: &str,
        patterns: Vec<TopicPattern>,
        ack: Option<Ack>,
    ) -> Result<(), HubError> {
        let client_id = client_id.to_owned();
        self.ask(|reply| Command::Unsubscribe { client_id, patterns, ack, reply }).await?
    }

    /// Sends a `system` frame to one client:
    /// `{"type":"system","topic":"system","epoch":…,"timestamp":…,"data":…,"direct":true}`
    /// (no `seq`: it is not part of the topic's sequence).
    pub async fn send_to(&self, client_id: &str, data: Value) -> Result<(), HubError> {
        let tail = ingest::tail(self.config.max_message_bytes, &data, None, true)?;
        let epoch = self.epoch();
        let frame = Frame::reply(format!("{{\"type\":\"system\",\"topic\":\"system\",\"epoch\":\"{epoch}\"{tail}"));
        let client_id = client_id.to_owned();
        self.ask(|reply| Command::SendTo { client_id, frame, reply }).await?
    }

    /// The connected clients.
    pub async fn clients(&self) -> Vec<ClientSummary> {
        self.ask(|reply| Command::Clients { reply }).await.unwrap_or_default()
    }

    /// Counters for metrics.
    pub async fn stats(&self) -> HubStats {
        let mut stats = self.ask(|reply| Command::Stats { reply }).await.unwrap_or_default();
        stats.frames_sent = self.counters.frames_sent.load(Ordering::Relaxed);
        stats
    }

    /// The latest event of a topic (kept even after it has aged out of the ring).
    pub async fn latest(&self, topic: &Topic) -> Option<Event> {
        let topic = topic.clone();
        self.ask(|reply| Command::Latest { topic, reply }).await.ok().flatten()?.to_event()
    }

    /// The events of `topic` after `since`, if the ring still holds all of them in this epoch.
    /// (To replay into a client without losing or doubling events use [`HubHandle::subscribe`]
    /// with `since`.)
    pub async fn replay(&self, topic: &Topic, since: u64, epoch: Option<&str>) -> Replay {
        let topic = topic.clone();
        let epoch = epoch.map(str::to_owned);
        self.ask(|reply| Command::Replay { topic, since, epoch, reply }).await.unwrap_or_default()
    }

    /// Closes every client with 1001 and stops the hub task; later calls fail with `Stopped`.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// A registered client: its id and the outbox its adapter pulls frames from.
pub struct ClientSession {
    /// Client id (`GET /api/hub/clients`, targeted sends).
    pub id: String,
    /// Outgoing frames; dropping it unregisters the client.
    pub outbound: Outbox,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ClientSession {
    /// The next outgoing item (see [`Outbox::recv`]).
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.outbound.recv().await
    }

    /// Unregisters the client (the same as dropping the session).
    pub fn close(self) {}
}

/// The receiving end of a client's queue. Dropping it unregisters the client.
pub struct Outbox {
    id: Arc<str>,
    queue: Arc<ClientQueue>,
    tx: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    ended: bool,
}

impl Outbox {
    pub(crate) fn new(
        id: Arc<str>,
        queue: Arc<ClientQueue>,
        tx: mpsc::UnboundedSender<Command>,
        counters: Arc<Counters>,
    ) -> Outbox {
        Outbox { id, queue, tx, counters, ended: false }
    }

    /// Waits for the next item: a frame to send, or a close (after which it returns `None`).
    /// Cancel safe: use it in `tokio::select!`.
    pub async fn recv(&mut self) -> Option<Outbound> {
        if self.ended {
            return None;
        }
        let item = self.queue.pop().await;
        self.account(&item);
        item
    }

    /// The next item if one is ready: `Some(Some(_))` an item, `Some(None)` the end, `None` nothing yet.
    pub fn try_recv(&mut self) -> Option<Option<Outbound>> {
        if self.ended {
            return Some(None);
        }
        let item = self.queue.try_pop()?;
        self.account(&item);
        Some(item)
    }

    /// Moves up to `max` ready frames into `buf` under one lock (batching for the adapter);
    /// returns how many. A pending close is left for [`Outbox::recv`].
    pub fn drain_into(&mut self, buf: &mut Vec<Frame>, max: usize) -> usize {
        let n = self.queue.pop_frames(buf, max);
        self.counters.frames_sent.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn account(&mut self, item: &Option<Outbound>) {
        match item {
            Some(Outbound::Frame(_)) => {
                self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            Some(Outbound::Close { .. }) | None => self.ended = true,
        }
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.queue.detach();
        // Fails only when the hub has stopped, which has already forgotten the client.
        let _ = self.tx.send(Command::Disconnect { id: self.id.clone() });
    }
}
