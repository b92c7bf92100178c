//! Real-time fan-out (SPEC §6): the hub task, per-client queues, history rings and the
//! transport-agnostic client protocol. Sockets live in `gateway-http`; this crate only moves frames.
//!
//! # Shape
//!
//! [`Hub::start`] spawns one tokio task that owns every topic, ring, client and subscription. It
//! is driven through a private command channel by the cloneable [`HubHandle`]; nothing else holds
//! hub state, so there are no locks around it and no lock is ever held across an `await`.
//!
//! * **Publishing** ([`HubHandle::publish`], [`HubHandle::publish_raw`]) never waits: the caller
//!   validates and serialises the payload, the hub task assigns the per-topic `seq` (1, 2, 3 … in
//!   each epoch, no gaps), builds the JSON text **once** into a reference-counted [`Frame`] and
//!   hands a clone of it to every matching client. Matching goes through an index (exact topic,
//!   bare type, prefix), so the cost is O(matching clients) and involves no per-client
//!   serialisation and no `await` on any client.
//! * **Clients** ([`HubHandle::connect`]) get a [`ClientSession`]: an id and an [`Outbox`] the
//!   adapter pulls [`Outbound`] items from. Dropping the outbox unregisters the client (RAII),
//!   so a dropped socket never leaves an entry behind.
//! * **Protocol** ([`protocol`]) parses client messages and serialises replies; [`Connection`]
//!   is the per-WebSocket state machine (authenticate → active → closed, timers, flood control),
//!   so a WebSocket adapter is a loop that moves frames between the socket and the connection:
//!
//! ```text
//! let mut conn = Connection::new(hub.clone(), authenticator.clone(), Some(peer.to_string()));
//! loop {
//!     let actions = tokio::select! {
//!         msg = ws_stream.recv() => match msg {
//!             Some(Ok(Message::Text(text))) => conn.on_text(&text).await,
//!             Some(Ok(Message::Binary(bin))) => conn.on_binary(bin.len()),
//!             Some(Ok(Message::Ping(_) | Message::Pong(_))) => { conn.on_activity(); vec![] }
//!             _ => break, // closed by the client or a protocol error: dropping `conn` unregisters
//!         },
//!         action = conn.next_action() => vec![action],
//!     };
//!     for action in actions {
//!         match action {
//!             Action::Send(frame) => session.text(frame.into_text()).await?,
//!             Action::Ping => session.ping(b"").await?,
//!             Action::Close { code, reason } => return session.close(Some((code, reason).into())).await,
//!         }
//!     }
//! }
//! ```
//!
//! An SSE adapter has no inbound messages: it authenticates with the request, calls
//! [`HubHandle::connect`] (transport [`Transport::Sse`]) and [`HubHandle::subscribe`] with the
//! topics of the query and `since` from `Last-Event-ID` (see [`protocol::parse_sse_id`]), then
//! writes `id: {Frame::sse_id}` / `data: {Frame::as_str}` for every frame of the outbox.
//!
//! # Per-client queues
//!
//! Each client has a bounded queue of `client_queue` frames: a `VecDeque` behind a small
//! `parking_lot` mutex plus a `tokio::sync::Notify` (chosen over an mpsc channel because ticks
//! must be replaced in place). The hub task pushes under the lock without awaiting; the adapter
//! pops under the lock and awaits the `Notify` only when the queue is empty. When the queue is
//! full:
//!
//! * a **tick** replaces the newest queued tick of the same topic in place (the client still sees
//!   each topic's ticks in `seq` order, only older ones are skipped); if no tick of that topic is
//!   queued it is appended anyway, so the queue can exceed its bound by at most one entry per
//!   tick topic. Ticks never disconnect a client. Every replaced tick counts as a *drop*.
//! * any **other event** first compacts the queue (stale ticks are dropped); if it is still full
//!   the client is closed with 4008 `slow consumer` and counted in
//!   [`HubStats::slow_consumer_closes`].
//! * Replies, replayed events and the latest tick sent on subscribe are queued *in order* with
//!   the live events but do not count against the bound.
//!
//! # Cluster
//!
//! [`Hub::start_clustered`] (SPEC §13) adds a *broker task* next to the hub task, so several
//! processes sharing one Redis ([`BrokerConfig`]) give a client the same `seq` and epoch
//! whichever node it is connected to. [`Hub::start`] is the single node, unchanged.
//!
//! **Keys** (`{ns}` = [`BrokerConfig::namespace`], default `orchestrator`; `{epoch}` = the
//! 32-hex cluster epoch):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{ns}:hub:epoch` | string | the epoch key: a uuid written once (`SET NX`) at first use |
//! | `{ns}:hub:{epoch}:seq` | hash | topic → last `seq`; never expires (a `seq` is never reused in an epoch) |
//! | `{ns}:hub:{epoch}:t:{topic}` | stream | the topic's ring: entry id `<seq>-1`, field `f` = the frame text; `MAXLEN ~ ring_size`, `PEXPIRE` 2 × `ring_max_age` at every event |
//! | `{ns}:hub:{epoch}:events` | pubsub channel | every event as `topic\nseq\nframe` |
//!
//! **Epoch rule:** on every (re)connection the node reads `run_id` from `INFO server`, does
//! `SET {ns}:hub:epoch <uuid> NX` then `GET`s it; the epoch is the first 16 characters of that
//! key followed by the first 16 of `run_id`. A Redis restart (new `run_id`: data may be lost or
//! rolled back) or a `FLUSHALL` (new key) therefore always gives a new epoch, and every node
//! derives the same one.
//!
//! **Sequencing:** publishing never waits. While the broker is up, prepared events (everything
//! of the frame after `seq` and `epoch`) go on an unbounded channel; the broker task drains up to
//! 256 and sends them in one pipeline of `EVALSHA` calls (1 s timeout). The Lua script, per
//! event: return 0 unless `GET {ns}:hub:epoch` is the epoch key the node knows (the node then
//! re-derives its epoch and sends the event again); `seq = HINCRBY …:seq topic 1`; build the
//! frame text (`{"type":…,"topic":…,"seq":N,"epoch":…` + tail, byte for byte the single-node
//! frame); `XADD` it to the topic's stream, `PEXPIRE` the stream, `PUBLISH` it; return `seq`.
//!
//! **Delivery:** every node, the publisher included, delivers events only from its subscription
//! to the events channel, to the hub task (which stores and fans out exactly like a local
//! publish). A `seq` at or below a topic's last is a duplicate and ignored; a gap the broker task
//! notices is filled from the stream (`XRANGE`) when it still has the events, and a gap that
//! reaches the hub task clears that topic's ring, so a replay across it answers
//! `recovered: false`, never a partial replay. After each (re)connection the node subscribes,
//! then loads every topic's stream of the epoch (`SCAN MATCH …:t:*`, `XREVRANGE COUNT
//! ring_size`) before the live messages, so a node started later replays what came before it.
//!
//! **Faults:** Redis unreachable (connection refused or timed out, subscription ended, a pipeline
//! failed or timed out): the hub switches to a **local epoch** (a new random id; every ring,
//! latest event and `seq` is forgotten, so no `seq` of the shared epoch is invented), publishes
//! go straight to the hub task (the failed batch too) and its clients get a local `system`
//! event `{"event":"broker_down","node":…}`. The broker task reconnects with backoff (100 ms
//! doubling to 5 s); once connected it switches to the (new) Redis epoch and publishes
//! `{"event":"broker_up","node":…}` through Redis. Clients resuming with an older epoch get
//! `recovered: false`. [`HubHandle::broker_state`] tells `/api/health` about it; logs name the
//! URL without its password.
//!
//! # Close codes
//!
//! | code | constant | when |
//! |---|---|---|
//! | 1000 | [`close_code::NORMAL`] | normal closure |
//! | 1001 | [`close_code::GOING_AWAY`] | the hub is shutting down |
//! | 1002 | [`close_code::PROTOCOL_ERROR`] | a frame that breaks the WebSocket framing rules (set by the adapter) |
//! | 1007 | [`close_code::INVALID_PAYLOAD`] | a text message that is not valid UTF-8 (set by the adapter) |
//! | 1009 | [`close_code::MESSAGE_TOO_BIG`] | an inbound message over `max_message_bytes` (64 KiB) |
//! | 1011 | [`close_code::INTERNAL_ERROR`] | the hub has stopped while the connection was authenticating |
//! | 4000 | [`close_code::IDLE_TIMEOUT`] | nothing (no frame, no pong) received for `idle_timeout` (35 s) |
//! | 4001 | [`close_code::AUTH_FAILED`] | no valid `auth` within `auth_timeout` (5 s), an unknown credential, or another message before `auth` |
//! | 4003 | [`close_code::FORBIDDEN`] | the credential is valid but its role may not subscribe (`service`) |
//! | 4008 | [`close_code::SLOW_CONSUMER`] | the client's queue overflowed with non-tick events |
//! | 4009 | [`close_code::POLICY_VIOLATION`] | flood: more than `flood_messages` messages per `flood_window_ms` |

mod cluster;
mod config;
mod connection;
mod error;
mod frame;
mod hub;
mod index;
mod ingest;
pub mod protocol;
mod queue;
mod task;

pub use cluster::{BrokerConfig, BrokerState};
pub use config::HubConfig;
pub use connection::{Action, AuthFuture, Authenticator, Connection};
pub use error::{HubError, ProtocolError};
pub use frame::{Frame, Outbound};
pub use hub::{
    Ack, ClientInfo, ClientSession, ClientSummary, Hub, HubHandle, HubStats, Outbox, Principal, Replay,
    SubscribeRequest, Subscribed, Transport,
};
pub use protocol::{ClientMessage, Credential, RequestId};

/// WebSocket close codes the hub uses (see the table in the crate docs).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The hub is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket framing rules.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// An inbound message larger than `max_message_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The hub has stopped.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Nothing received for `idle_timeout`.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// Authentication failed or timed out, or a message came before `auth`.
    pub const AUTH_FAILED: u16 = 4001;
    /// Authenticated, but the role may not subscribe.
    pub const FORBIDDEN: u16 = 4003;
    /// The client's queue overflowed with non-tick events.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Flood: too many messages per window.
    pub const POLICY_VIOLATION: u16 = 4009;
}
