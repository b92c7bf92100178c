//! The hub task: the single owner of topics, history rings, clients and the subscription index.
//! Commands are handled one at a time, so subscribe-with-replay is atomic with respect to
//! publishing, and nothing here ever awaits a client.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use gateway_core::{EventType, Topic, TopicPattern};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::close_code;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::frame::Frame;
use crate::hub::{
    Ack, ClientInfo, ClientSession, ClientSummary, Command, HubStats, Outbox, Replay, SubscribeRequest, Subscribed,
};
use crate::index::{SubscriptionIndex, type_index};
use crate::ingest::{self, Prepared};
use crate::protocol;
use crate::queue::{ClientQueue, PushOutcome};

pub(crate) struct HubTask {
    config: Arc<HubConfig>,
    epoch: Arc<str>,
    topics: HashMap<Topic, TopicState>,
    clients: Clients,
    index: SubscriptionIndex,
    /// Incremented per fan-out; a client whose `mark` equals it has already got the frame.
    mark: u64,
    totals: HubStats,
}

struct TopicState {
    name: Arc<str>,
    tick: bool,
    next_seq: u64,
    ring: VecDeque<Stored>,
    latest: Option<Frame>,
}

struct Stored {
    seq: u64,
    at: Instant,
    frame: Frame,
}

impl TopicState {
    fn new(topic: &Topic) -> TopicState {
        TopicState {
            name: Arc::from(topic.as_str()),
            tick: topic.event_type() == EventType::Tick,
            next_seq: 1,
            ring: VecDeque::new(),
            latest: None,
        }
    }

    /// Keeps `frame` as the event `seq`: in the replay ring (expiring what is too old or too
    /// many) and as the latest.
    fn store(&mut self, seq: u64, frame: &Frame, config: &HubConfig) {
        let now = Instant::now();
        self.ring.push_back(Stored { seq, at: now, frame: frame.clone() });
        self.expire(now, config);
        self.latest = Some(frame.clone());
    }

    fn expire(&mut self, now: Instant, config: &HubConfig) {
        while self.ring.len() > config.ring_size
            || self.ring.front().is_some_and(|s| now.saturating_duration_since(s.at) > config.ring_max_age)
        {
            self.ring.pop_front();
        }
    }

    /// The events after `since`, or `None` when the ring does not hold all of them.
    fn replay(&mut self, since: u64, now: Instant, config: &HubConfig) -> Option<Vec<Frame>> {
        let last = self.next_seq - 1;
        if since > last {
            return None;
        }
        if since == last {
            return Some(Vec::new());
        }
        self.expire(now, config);
        let first = self.ring.front()?.seq;
        if first > since + 1 {
            return None;
        }
        let skip = usize::try_from(since + 1 - first).ok()?;
        Some(self.ring.iter().skip(skip).map(|s| s.frame.clone()).collect())
    }
}

struct ClientEntry {
    id: Arc<str>,
    info: ClientInfo,
    queue: Arc<ClientQueue>,
    patterns: Vec<TopicPattern>,
    connected_at: String,
    drops: u64,
    mark: u64,
}

/// Clients in reusable slots (the index refers to slots), plus id → slot.
#[derive(Default)]
struct Clients {
    slots: Vec<Option<ClientEntry>>,
    free: Vec<usize>,
    by_id: HashMap<Arc<str>, usize>,
}

impl Clients {
    fn insert(&mut self, entry: ClientEntry) -> usize {
        let id = entry.id.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    fn slot_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    fn get_mut(&mut self, slot: usize) -> Option<&mut ClientEntry> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn remove(&mut self, slot: usize) -> Option<ClientEntry> {
        let entry = self.slots.get_mut(slot)?.take()?;
        self.by_id.remove(&entry.id);
        self.free.push(slot);
        Some(entry)
    }

    fn iter(&self) -> impl Iterator<Item = &ClientEntry> {
        self.slots.iter().flatten()
    }
}

impl HubTask {
    pub(crate) fn new(config: Arc<HubConfig>, epoch: Arc<str>) -> HubTask {
        HubTask {
            config,
            epoch,
            topics: HashMap::new(),
            clients: Clients::default(),
            index: SubscriptionIndex::default(),
            mark: 0,
            totals: HubStats::default(),
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            if let Command::Shutdown { reply } = cmd {
                self.close_all(close_code::GOING_AWAY, "server shutting down");
                log::info!("hub stopped (epoch {})", self.epoch);
                drop(rx);
                let _ = reply.send(());
                return;
            }
            self.handle(cmd);
        }
        log::debug!("hub: every handle is gone, stopping");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(p) => self.publish(p),
            Command::PublishMany(ps) => ps.into_iter().for_each(|p| self.publish(p)),
            Command::Deliver { topic, seq, epoch, text } => self.deliver(topic, seq, &epoch, text),
            Command::SetEpoch { epoch } => {
                log::info!("hub: epoch {} -> {epoch}", self.epoch);
                self.epoch = epoch;
                self.topics.clear();
            }
            Command::Connect { info, tx, counters, reply } => {
                let (id, queue) = self.connect(info);
                let session = ClientSession { id: id.to_string(), outbound: Outbox::new(id, queue, tx, counters) };
                // If the caller is gone, dropping the session queues its Disconnect.
                let _ = reply.send(session);
            }
            Command::Disconnect { id } => {
                if let Some(slot) = self.clients.slot_of(&id) {
                    self.drop_client(slot, None);
                }
            }
            Command::Subscribe { client_id, request, reply } => {
                let _ = reply.send(self.subscribe(&client_id, request));
            }
            Command::Unsubscribe { client_id, patterns, ack, reply } => {
                let _ = reply.send(self.unsubscribe(&client_id, patterns, ack));
            }
            Command::SendTo { client_id, frame, reply } => {
                let _ = reply.send(self.send_to(&client_id, frame));
            }
            Command::Clients { reply } => {
                let _ = reply.send(self.summaries());
            }
            Command::Stats { reply } => {
                let _ = reply.send(HubStats {
                    clients: self.clients.by_id.len(),
                    topics: self.topics.len(),
                    ..self.totals.clone()
                });
            }
            Command::Latest { topic, reply } => {
                let _ = reply.send(self.topics.get(&topic).and_then(|t| t.latest.clone()));
            }
            Command::Replay { topic, since, epoch, reply } => {
                let _ = reply.send(self.replay(&topic, since, epoch.as_deref()));
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn publish(&mut self, p: Prepared) {
        let ti = type_index(p.ty);
        let state = match self.topics.entry(p.topic) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => {
                let state = TopicState::new(v.key());
                v.insert(state)
            }
        };
        let seq = state.next_seq;
        state.next_seq += 1;
        let name = state.name.clone();
        let text = ingest::frame_text(p.ty, &name, seq, &self.epoch, &p.tail);
        let frame = Frame::event(text, name.clone(), seq, state.tick);
        state.store(seq, &frame, &self.config);
        self.fan_out_event(ti, &name, &frame);
    }

    /// An event sequenced by the broker: a `seq` already seen is a duplicate; a gap clears the
    /// ring first, so a replay across it answers `recovered: false` rather than a partial one.
    fn deliver(&mut self, topic: Topic, seq: u64, epoch: &str, text: String) {
        if epoch != &*self.epoch || seq == 0 {
            return;
        }
        let ti = type_index(topic.event_type());
        let state = match self.topics.entry(topic) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => {
                let state = TopicState::new(v.key());
                v.insert(state)
            }
        };
        if seq < state.next_seq {
            return;
        }
        if seq > state.next_seq {
            state.ring.clear();
        }
        state.next_seq = seq + 1;
        let name = state.name.clone();
        let frame = Frame::event(text, name.clone(), seq, state.tick);
        state.store(seq, &frame, &self.config);
        self.fan_out_event(ti, &name, &frame);
    }

    /// Counts a stored event and queues it for every client subscribed to its topic.
    fn fan_out_event(&mut self, ti: usize, name: &str, frame: &Frame) {
        self.totals.events_published += 1;
        let key = name.split_once(':').map(|(_, k)| k);
        self.fan_out(ti, name, key, frame);
    }

    fn fan_out(&mut self, ti: usize, name: &str, key: Option<&str>, frame: &Frame) {
        self.mark += 1;
        let mark = self.mark;
        let mut overflowed = Vec::new();
        let clients = &mut self.clients;
        let totals = &mut self.totals;
        self.index.for_each_match(ti, name, key, |slot| {
            let Some(client) = clients.get_mut(slot) else { return };
            if client.mark == mark {
                return;
            }
            client.mark = mark;
            match client.queue.push(frame.clone()) {
                PushOutcome::Queued { dropped } => {
                    totals.frames_queued += 1;
                    totals.drops += dropped;
                    client.drops += dropped;
                }
                PushOutcome::Overflow => overflowed.push(slot),
                PushOutcome::Closed => {}
            }
        });
        for slot in overflowed {
            self.totals.slow_consumer_closes += 1;
            self.drop_client(slot, Some((close_code::SLOW_CONSUMER, "slow consumer")));
        }
    }

    fn connect(&mut self, info: ClientInfo) -> (Arc<str>, Arc<ClientQueue>) {
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let queue = Arc::new(ClientQueue::new(self.config.client_queue));
        log::info!(
            "hub: client {id} connected ({} {:?}, {:?} from {})",
            info.principal.name,
            info.principal.role,
            info.transport,
            info.remote_addr.as_deref().unwrap_or("?")
        );
        self.clients.insert(ClientEntry {
            id: id.clone(),
            info,
            queue: queue.clone(),
            patterns: Vec::new(),
            connected_at: gateway_core::now_rfc3339(),
            drops: 0,
            mark: 0,
        });
        (id, queue)
    }

    /// Unregisters a client; with `close`, its adapter receives that close next.
    fn drop_client(&mut self, slot: usize, close: Option<(u16, &str)>) {
        let Some(entry) = self.clients.remove(slot) else { return };
        for p in &entry.patterns {
            self.index.remove(p, slot);
        }
        match close {
            Some((code, reason)) => {
                log::info!("hub: closing client {} ({code} {reason})", entry.id);
                entry.queue.close(code, reason);
            }
            None => log::info!("hub: client {} disconnected", entry.id),
        }
    }

    fn close_all(&mut self, code: u16, reason: &str) {
        let slots: Vec<usize> = self.clients.by_id.values().copied().collect();
        for slot in slots {
            self.drop_client(slot, Some((code, reason)));
        }
    }

    fn subscribe(&mut self, client_id: &str, request: SubscribeRequest) -> Result<Subscribed, HubError> {
        let slot = self.clients.slot_of(client_id).ok_or_else(|| HubError::NotFound(client_id.to_owned()))?;
        let max = self.config.max_topics_per_client;
        let now = Instant::now();
        let SubscribeRequest { patterns, since, epoch, ack } = request;

        let mut requested: Vec<TopicPattern> = Vec::with_capacity(patterns.len());
        let mut seen = HashSet::with_capacity(patterns.len());
        for p in patterns {
            if seen.insert(p.as_str().to_owned()) {
                requested.push(p);
            }
        }
        let Some(client) = self.clients.get_mut(slot) else {
            return Err(HubError::NotFound(client_id.to_owned()));
        };
        let held: HashSet<&str> = client.patterns.iter().map(TopicPattern::as_str).collect();
        let added: Vec<TopicPattern> = requested.iter().filter(|p| !held.contains(p.as_str())).cloned().collect();
        if client.patterns.len() + added.len() > max {
            return Err(HubError::TooManyTopics { max });
        }

        // Work out the replay first, so nothing is queued unless all of it is known.
        let epoch_ok = epoch.as_deref().is_none_or(|e| e == &*self.epoch);
        let mut recovered = BTreeMap::new();
        let mut replayed = Vec::new();
        for (topic, &seq) in &since {
            let frames = if !epoch_ok {
                None
            } else {
                match self.topics.get_mut(topic) {
                    Some(state) => state.replay(seq, now, &self.config),
                    None if seq == 0 => Some(Vec::new()),
                    None => None,
                }
            };
            recovered.insert(topic.as_str().to_owned(), frames.is_some());
            replayed.extend(frames.unwrap_or_default());
        }
        // The latest tick of each exact `tick:X` pattern, unless a replay already brought X up to date.
        let latest_ticks: Vec<Frame> = requested
            .iter()
            .filter_map(|p| p.exact())
            .filter(|t| t.event_type() == EventType::Tick && recovered.get(t.as_str()) != Some(&true))
            .filter_map(|t| self.topics.get(&t).and_then(|s| s.latest.clone()))
            .collect();

        let topics: Vec<String> = requested.iter().map(|p| p.as_str().to_owned()).collect();
        let Some(client) = self.clients.get_mut(slot) else {
            return Err(HubError::NotFound(client_id.to_owned()));
        };
        let mut queued = 0;
        if let Some(ack) = ack {
            let frame = protocol::subscribed(ack.id.as_ref(), &topics, &recovered);
            queued += u64::from(client.queue.push_forced(frame) != PushOutcome::Closed);
        }
        for frame in replayed.into_iter().chain(latest_ticks) {
            queued += u64::from(client.queue.push_forced(frame) != PushOutcome::Closed);
        }
        for p in &added {
            self.index.add(p, slot);
        }
        client.patterns.extend(added);
        self.totals.frames_queued += queued;
        log::debug!("hub: client {client_id} subscribed to {topics:?}, recovered {recovered:?}");
        Ok(Subscribed { topics, recovered })
    }

    fn unsubscribe(&mut self, client_id: &str, patterns: Vec<TopicPattern>, ack: Option<Ack>) -> Result<(), HubError> {
        let slot = self.clients.slot_of(client_id).ok_or_else(|| HubError::NotFound(client_id.to_owned()))?;
        let Some(client) = self.clients.get_mut(slot) else {
            return Err(HubError::NotFound(client_id.to_owned()));
        };
        let mut topics = Vec::with_capacity(patterns.len());
        for p in patterns {
            if let Some(i) = client.patterns.iter().position(|q| q.as_str() == p.as_str()) {
                let removed = client.patterns.remove(i);
                self.index.remove(&removed, slot);
            }
            if !topics.iter().any(|t: &String| t == p.as_str()) {
                topics.push(p.as_str().to_owned());
            }
        }
        if let Some(ack) = ack
            && client.queue.push_forced(protocol::unsubscribed(ack.id.as_ref(), &topics)) != PushOutcome::Closed
        {
            self.totals.frames_queued += 1;
        }
        Ok(())
    }

    fn send_to(&mut self, client_id: &str, frame: Frame) -> Result<(), HubError> {
        let slot = self.clients.slot_of(client_id).ok_or_else(|| HubError::NotFound(client_id.to_owned()))?;
        let client = self.clients.get_mut(slot).ok_or_else(|| HubError::NotFound(client_id.to_owned()))?;
        if client.queue.push_forced(frame) == PushOutcome::Closed {
            return Err(HubError::NotFound(client_id.to_owned()));
        }
        self.totals.frames_queued += 1;
        Ok(())
    }

    fn summaries(&self) -> Vec<ClientSummary> {
        let mut out: Vec<ClientSummary> = self
            .clients
            .iter()
            .map(|c| ClientSummary {
                id: c.id.to_string(),
                principal: c.info.principal.clone(),
                remote_addr: c.info.remote_addr.clone(),
                transport: c.info.transport,
                topics: c.patterns.iter().map(|p| p.as_str().to_owned()).collect(),
                queue_depth: c.queue.len(),
                drops: c.drops,
                connected_at: c.connected_at.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn replay(&mut self, topic: &Topic, since: u64, epoch: Option<&str>) -> Replay {
        if epoch.is_some_and(|e| e != &*self.epoch) {
            return Replay::default();
        }
        let frames = match self.topics.get_mut(topic) {
            Some(state) => state.replay(since, Instant::now(), &self.config),
            None if since == 0 => Some(Vec::new()),
            None => None,
        };
        match frames {
            Some(frames) => Replay { recovered: true, frames },
            None => Replay::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> String {
        ingest::frame_text(
            EventType::Position,
            "position:X",
            seq,
            "e",
            r#","timestamp":"2026-01-01T00:00:00Z","data":{}}"#,
        )
    }

    #[test]
    fn delivered_duplicates_are_ignored_and_a_gap_is_never_replayed_in_part() {
        let mut task = HubTask::new(Arc::new(HubConfig::default()), Arc::from("e"));
        let t = Topic::parse("position:X").unwrap_or_else(|_| unreachable!());
        task.deliver(t.clone(), 1, "e", frame(1));
        task.deliver(t.clone(), 2, "e", frame(2));
        task.deliver(t.clone(), 2, "e", frame(2));
        task.deliver(t.clone(), 3, "another", frame(3));
        let r = task.replay(&t, 0, Some("e"));
        assert_eq!((r.recovered, r.frames.len()), (true, 2));
        task.deliver(t.clone(), 5, "e", frame(5));
        assert!(!task.replay(&t, 2, None).recovered, "3 and 4 are missing");
        let r = task.replay(&t, 4, None);
        assert_eq!((r.recovered, r.frames.iter().filter_map(Frame::seq).collect::<Vec<_>>()), (true, vec![5]));
        task.handle(Command::SetEpoch { epoch: Arc::from("f") });
        assert!(!task.replay(&t, 5, Some("f")).recovered, "a new epoch forgets every seq");
        assert_eq!(task.totals.events_published, 3);
    }
}
