//! One-time tickets (`POST /api/auth/ticket`): browsers cannot set `Authorization` on a
//! WebSocket or `EventSource`, so they trade their token for a ticket valid once, for
//! `gateway.timers.ticket_ttl_ms` (30 s by default).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::Principal;
use parking_lot::Mutex;
use rand::RngCore;

/// The ticket book, shared by every worker.
#[derive(Clone)]
pub struct Tickets {
    inner: Arc<Mutex<HashMap<String, (Principal, Instant)>>>,
    ttl: Duration,
}

impl Tickets {
    /// A book whose tickets live `ttl` (`gateway.timers.ticket_ttl_ms`).
    pub fn new(ttl: Duration) -> Tickets {
        Tickets { inner: Arc::default(), ttl }
    }

    /// How long a ticket is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a ticket for this principal.
    pub fn issue(&self, principal: Principal) -> String {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let ticket = format!("tk_{ticket}");
        let now = Instant::now();
        let mut map = self.inner.lock();
        map.retain(|_, (_, expires)| *expires > now);
        map.insert(ticket.clone(), (principal, now + self.ttl));
        ticket
    }

    /// Takes a ticket: valid once, within its lifetime.
    pub fn redeem(&self, ticket: &str) -> Option<Principal> {
        let (principal, expires) = self.inner.lock().remove(ticket)?;
        (expires > Instant::now()).then_some(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::Role;

    #[test]
    fn tickets_are_single_use() {
        let book = Tickets::new(Duration::from_secs(30));
        let t = book.issue(Principal { name: "a".into(), role: Role::Viewer });
        assert!(t.starts_with("tk_") && t.len() == 51);
        assert_eq!(book.redeem(&t).map(|p| p.name), Some("a".to_owned()));
        assert!(book.redeem(&t).is_none());
        assert!(book.redeem("tk_nope").is_none());
    }
}
