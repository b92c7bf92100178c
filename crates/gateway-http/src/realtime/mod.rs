//! Real-time adapters (SPEC §6): the `/ws` WebSocket and the SSE stream on top of the
//! transport-agnostic hub, one-time tickets for browsers, hub introspection and
//! `POST /api/events` (the services' own `/events` sockets are followed by
//! `outbound::ingest`).

mod routes;
mod sse;
mod tickets;
mod ws;

pub(crate) use routes::{Accepted, Sent, Ticket, clients, ingest, send, ticket};
pub(crate) use sse::stream;
pub use tickets::Tickets;
pub(crate) use ws::websocket;

use std::net::TcpListener;
use std::time::Duration;

use hub::{Authenticator, Credential, Principal};

/// Makes the kernel drop a connection whose peer has acknowledged nothing we sent for `after`
/// (`TCP_USER_TIMEOUT`, inherited by every accepted socket). This is what finally frees a client
/// that stopped reading: once its socket buffers are full, no close frame can reach it, and
/// actix would otherwise hold the connection until the peer reads again. Linux only (elsewhere
/// the hub's own timeouts are what drop such a client).
pub fn drop_unresponsive_peers(listener: &TcpListener, after: Duration) {
    crate::os::drop_unresponsive_peers(listener, after);
}

/// The hub authenticator: tokens are checked by the verifier (from memory while the store is
/// unchanged, else on the blocking pool), tickets are taken from the ticket book (one use each).
pub fn authenticator(tokens: crate::edge::auth::Tokens, tickets: Tickets) -> Authenticator {
    Authenticator::new_async(move |credential: Credential| {
        let tokens = tokens.clone();
        let tickets = tickets.clone();
        async move {
            match credential {
                Credential::Ticket(t) => tickets.redeem(&t),
                Credential::Token(t) => match tokens.verify(t).await {
                    Ok(info) => info.map(|info| Principal { name: info.name, role: info.role }),
                    Err(e) => {
                        log::error!("verifying a WebSocket token failed: {e}");
                        None
                    }
                },
            }
        }
    })
}
