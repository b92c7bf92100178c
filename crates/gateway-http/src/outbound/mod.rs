//! The outbound side: everything the gateway sends to the services — the upstream client and
//! its pool, forwarding, the dashboard's aggregation with its suspects, settings propagation,
//! and the ingest of the services' own event sockets (with the platform's own events).

pub mod aggregate;
pub mod forward;
pub mod ingest;
pub mod propagation;
pub mod upstream;
