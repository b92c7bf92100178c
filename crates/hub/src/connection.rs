//! The per-connection state machine of the WebSocket protocol: authenticate (with a deadline) →
//! active → closed, keepalive timers and flood control. The adapter feeds it inbound messages and
//! performs the [`Action`]s it returns; it holds no protocol logic of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::{Lang, Role};
use tokio::time::Instant;

use crate::close_code;
use crate::error::{HubError, ProtocolError};
use crate::frame::{Frame, Outbound};
use crate::hub::{Ack, ClientInfo, ClientSession, HubHandle, Principal, SubscribeRequest, Transport};
use crate::protocol::{self, ClientMessage, Credential, Limits, RequestId};

/// The future an [`Authenticator`] returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = Option<Principal>> + Send>>;

/// Verifies a token or ticket (outside the hub: tokens live in the settings store, tickets in
/// the gateway). `None` means unknown or expired.
#[derive(Clone)]
pub struct Authenticator(Arc<dyn Fn(Credential) -> AuthFuture + Send + Sync>);

impl Authenticator {
    /// An authenticator from a quick, non-blocking check.
    pub fn new<F>(check: F) -> Authenticator
    where
        F: Fn(&Credential) -> Option<Principal> + Send + Sync + 'static,
    {
        Authenticator(Arc::new(move |credential: Credential| -> AuthFuture {
            Box::pin(std::future::ready(check(&credential)))
        }))
    }

    /// An authenticator that awaits (e.g. a database lookup on a blocking pool).
    pub fn new_async<F, Fut>(check: F) -> Authenticator
    where
        F: Fn(Credential) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Principal>> + Send + 'static,
    {
        Authenticator(Arc::new(move |credential: Credential| -> AuthFuture { Box::pin(check(credential)) }))
    }

    /// Verifies a credential.
    pub async fn authenticate(&self, credential: Credential) -> Option<Principal> {
        (self.0)(credential).await
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

/// What the adapter must do next.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this text frame.
    Send(Frame),
    /// Send a WebSocket ping.
    Ping,
    /// Close the socket with this code and reason, then stop.
    Close {
        /// WebSocket close code (see [`crate::close_code`]).
        code: u16,
        /// Short reason text.
        reason: String,
    },
}

enum State {
    Authenticating { deadline: Instant },
    Active { session: ClientSession },
    Closed,
}

/// Inbound messages per fixed window.
struct Flood {
    limit: u32,
    window: Duration,
    start: Instant,
    count: u32,
}

impl Flood {
    fn hit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count > self.limit
    }
}

enum Wake {
    Item(Option<Outbound>),
    Timer,
}

/// One WebSocket connection's protocol state. Dropping it unregisters the client.
pub struct Connection {
    hub: HubHandle,
    auth: Authenticator,
    remote_addr: Option<String>,
    lang: Lang,
    limits: Limits,
    flood: Flood,
    state: State,
    last_activity: Instant,
    next_ping: Instant,
    /// One timer for every deadline (authentication, ping, idle), created on first use and moved
    /// only when the earliest deadline changes — not a new timer per outgoing frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Authenticating { .. } => "authenticating",
            State::Active { .. } => "active",
            State::Closed => "closed",
        };
        f.debug_struct("Connection").field("state", &state).field("client_id", &self.client_id()).finish()
    }
}

impl Connection {
    /// A new connection: the authentication deadline starts now.
    pub fn new(hub: HubHandle, auth: Authenticator, remote_addr: Option<String>) -> Connection {
        let now = Instant::now();
        let config = hub.config();
        let (limit, window) = (config.flood_messages, config.flood_window);
        let deadline = now + config.auth_timeout;
        let limits = Limits::from(config);
        Connection {
            auth,
            remote_addr,
            lang: Lang::default(),
            limits,
            flood: Flood { limit, window, start: now, count: 0 },
            state: State::Authenticating { deadline },
            last_activity: now,
            next_ping: now + hub.config().ping_interval,
            timer: None,
            hub,
        }
    }

    /// Sets the language of `error` messages (Hungarian by default).
    pub fn with_lang(mut self, lang: Lang) -> Connection {
        self.lang = lang;
        self
    }

    /// The client id once authenticated.
    pub fn client_id(&self) -> Option<&str> {
        match &self.state {
            State::Active { session } => Some(&session.id),
            _ => None,
        }
    }

    /// Whether a close has been returned (the adapter should have stopped).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    fn close(&mut self, code: u16, reason: &str) -> Action {
        self.state = State::Closed;
        Action::Close { code, reason: reason.to_owned() }
    }

    /// Bookkeeping for every inbound data message: activity, flood, size.
    fn inbound(&mut self, len: usize) -> Option<Action> {
        let now = Instant::now();
        self.last_activity = now;
        if self.flood.hit(now) {
            log::info!("hub: closing client {:?}: flood", self.client_id());
            return Some(self.close(close_code::POLICY_VIOLATION, "flood"));
        }
        if len > self.limits.max_message_bytes {
            return Some(self.close(close_code::MESSAGE_TOO_BIG, "message too big"));
        }
        None
    }

    /// Any frame or pong from the client: keeps the connection alive.
    pub fn on_activity(&mut self) {
        self.last_activity = Instant::now();
    }

    /// A binary message: not part of the protocol.
    pub fn on_binary(&mut self, len: usize) -> Vec<Action> {
        if self.is_closed() {
            return Vec::new();
        }
        if let Some(close) = self.inbound(len) {
            return vec![close];
        }
        match self.state {
            State::Authenticating { .. } => vec![self.close(close_code::AUTH_FAILED, "authentication required")],
            _ => vec![Action::Send(protocol::error(None, &ProtocolError::Binary, self.lang))],
        }
    }

    /// A text message from the client.
    pub async fn on_text(&mut self, text: &str) -> Vec<Action> {
        if self.is_closed() {
            return Vec::new();
        }
        if let Some(close) = self.inbound(text.len()) {
            return vec![close];
        }
        let authenticating = matches!(self.state, State::Authenticating { .. });
        let message = match protocol::parse(text, self.limits) {
            Ok(message) => message,
            Err(_) if authenticating => {
                return vec![self.close(close_code::AUTH_FAILED, "authentication required")];
            }
            Err(rejected) => return vec![self.error(rejected.id.as_ref(), &rejected.error)],
        };
        match message {
            ClientMessage::Auth { id, credential } if authenticating => self.authenticate(id, credential).await,
            _ if authenticating => vec![self.close(close_code::AUTH_FAILED, "authentication required")],
            ClientMessage::Auth { id, .. } => vec![self.error(id.as_ref(), &ProtocolError::AlreadyAuthenticated)],
            ClientMessage::Subscribe { id, topics, since, epoch } => {
                let request = SubscribeRequest { patterns: topics, since, epoch, ack: Some(Ack { id: id.clone() }) };
                let result = match self.client_id() {
                    Some(client_id) => self.hub.subscribe(client_id, request).await.map(|_| ()),
                    None => Ok(()),
                };
                self.hub_result(id.as_ref(), result)
            }
            ClientMessage::Unsubscribe { id, topics } => {
                let result = match self.client_id() {
                    Some(client_id) => self.hub.unsubscribe(client_id, topics, Some(Ack { id: id.clone() })).await,
                    None => Ok(()),
                };
                self.hub_result(id.as_ref(), result)
            }
            ClientMessage::Ping { id } => vec![Action::Send(protocol::pong(id.as_ref()))],
            ClientMessage::Pong { .. } => Vec::new(),
        }
    }

    fn error(&self, id: Option<&RequestId>, error: &ProtocolError) -> Action {
        Action::Send(protocol::error(id, error, self.lang))
    }

    fn hub_result(&self, id: Option<&RequestId>, result: Result<(), HubError>) -> Vec<Action> {
        match result {
            Ok(()) => Vec::new(),
            Err(HubError::TooManyTopics { max }) => vec![self.error(id, &ProtocolError::TooManyTopics { max })],
            // The hub has just closed this client (slow consumer): its close is next in the outbox.
            Err(HubError::NotFound(_)) => Vec::new(),
            Err(HubError::Invalid(e)) => vec![self.error(id, &ProtocolError::Field(e))],
            Err(HubError::Stopped) => vec![self.error(id, &ProtocolError::Unavailable)],
        }
    }

    async fn authenticate(&mut self, id: Option<RequestId>, credential: Credential) -> Vec<Action> {
        let State::Authenticating { deadline } = self.state else {
            return Vec::new();
        };
        let principal = match tokio::time::timeout_at(deadline, self.auth.authenticate(credential)).await {
            Err(_) => return vec![self.close(close_code::AUTH_FAILED, "authentication timeout")],
            Ok(None) => return vec![self.close(close_code::AUTH_FAILED, "authentication failed")],
            Ok(Some(p)) if p.role == Role::Service => return vec![self.close(close_code::FORBIDDEN, "forbidden")],
            Ok(Some(p)) => p,
        };
        let info = ClientInfo { principal, remote_addr: self.remote_addr.clone(), transport: Transport::Ws };
        match self.hub.connect(info).await {
            Ok(session) => {
                let ping_ms = u64::try_from(self.hub.config().ping_interval.as_millis()).unwrap_or(u64::MAX);
                let frame = protocol::auth_ok(id.as_ref(), &session.id, ping_ms, &self.hub.epoch());
                let now = Instant::now();
                self.next_ping = now + self.hub.config().ping_interval;
                self.last_activity = now;
                self.state = State::Active { session };
                vec![Action::Send(frame)]
            }
            Err(_) => vec![self.close(close_code::INTERNAL_ERROR, "hub unavailable")],
        }
    }

    /// Waits for the next thing to do without input from the client: an outgoing frame, a ping,
    /// or a close (authentication deadline, idle timeout, slow consumer, hub shutdown). Cancel
    /// safe: use it in `tokio::select!` next to the socket read. After a close it never returns.
    pub async fn next_action(&mut self) -> Action {
        let ping_interval = self.hub.config().ping_interval;
        let idle_timeout = self.hub.config().idle_timeout;
        loop {
            let due = match &self.state {
                State::Closed => return std::future::pending().await,
                State::Authenticating { deadline } => *deadline,
                State::Active { .. } => self.next_ping.min(self.last_activity + idle_timeout),
            };
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            let wake = match &mut self.state {
                State::Active { session } => tokio::select! {
                    biased;
                    item = session.outbound.recv() => Wake::Item(item),
                    () = timer.as_mut() => Wake::Timer,
                },
                _ => {
                    timer.as_mut().await;
                    Wake::Timer
                }
            };
            match wake {
                Wake::Item(Some(Outbound::Frame(frame))) => return Action::Send(frame),
                Wake::Item(Some(Outbound::Close { code, reason })) => return self.close(code, &reason),
                Wake::Item(None) => return self.close(close_code::INTERNAL_ERROR, "hub unavailable"),
                Wake::Timer => {}
            }
            let now = Instant::now();
            match self.state {
                State::Authenticating { deadline } if now >= deadline => {
                    log::info!("hub: connection from {:?} did not authenticate in time", self.remote_addr);
                    return self.close(close_code::AUTH_FAILED, "authentication timeout");
                }
                State::Active { .. } if now >= self.last_activity + idle_timeout => {
                    log::info!("hub: closing client {:?}: idle", self.client_id());
                    return self.close(close_code::IDLE_TIMEOUT, "idle timeout");
                }
                State::Active { .. } if now >= self.next_ping => {
                    self.next_ping = now + ping_interval;
                    return Action::Ping;
                }
                // Activity moved the idle deadline on: wait for the new earliest one.
                _ => {}
            }
        }
    }
}
