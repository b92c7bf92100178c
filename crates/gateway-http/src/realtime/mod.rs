//! Real-time adapters (SPEC §6): the `/ws` WebSocket and the SSE stream on top of the
//! transport-agnostic hub, one-time tickets for browsers, hub introspection, event ingest
//! (`POST /api/events` and the services' own `/events` sockets), and the gateway's own
//! `service_status` / `system` events.

mod ingest;
mod routes;
mod sse;
mod tickets;
mod ws;

pub use ingest::{follow_services, start as start_ingest, system as system_event};
pub(crate) use routes::{Accepted, Sent, Ticket, clients, ingest, send, ticket};
pub(crate) use sse::stream;
pub use tickets::Tickets;
pub(crate) use ws::websocket;

use std::net::TcpListener;
use std::time::Duration;

use hub::{Authenticator, Credential, Principal};
use settings::SettingsStore;

/// Makes the kernel drop a connection whose peer has acknowledged nothing we sent for `after`
/// (`TCP_USER_TIMEOUT`, inherited by every accepted socket). This is what finally frees a client
/// that stopped reading: once its socket buffers are full, no close frame can reach it, and
/// actix would otherwise hold the connection until the peer reads again. Linux only (elsewhere
/// the hub's own timeouts are what drop such a client).
pub fn drop_unresponsive_peers(listener: &TcpListener, after: Duration) {
    crate::os::drop_unresponsive_peers(listener, after);
}

/// The hub authenticator: tokens are checked against the store (on the blocking pool),
/// tickets are taken from the ticket book (one use each).
pub fn authenticator(store: SettingsStore, tickets: Tickets) -> Authenticator {
    Authenticator::new_async(move |credential: Credential| {
        let store = store.clone();
        let tickets = tickets.clone();
        async move {
            match credential {
                Credential::Ticket(t) => tickets.redeem(&t),
                Credential::Token(t) => {
                    let verified = tokio::task::spawn_blocking(move || store.verify_token(&t)).await;
                    match verified {
                        Ok(Ok(Some(info))) => Some(Principal { name: info.name, role: info.role }),
                        Ok(Ok(None)) => None,
                        Ok(Err(e)) => {
                            log::error!("verifying a WebSocket token failed: {e}");
                            None
                        }
                        Err(e) => {
                            log::error!("verifying a WebSocket token failed: {e}");
                            None
                        }
                    }
                }
            }
        }
    })
}
