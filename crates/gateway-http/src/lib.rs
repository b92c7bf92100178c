//! The HTTP face of the orchestrator: actix-web routes, the auth and request-context
//! middleware, JSON body handling, and the one `ApiError` that turns every library error into
//! the response envelope.
//!
//! Only this crate knows actix-web and HTTP status codes. Handlers are thin: extract, call one
//! library function, map to the envelope.

mod body;
pub mod cluster;
pub mod config;
pub mod contract;
mod edge;
mod metrics;
pub mod openapi;
mod os;
mod outbound;
mod page;
mod realtime;
mod reload;
pub mod routes;
mod startup;
mod state;
mod tls;

pub use config::{Config, ConfigError};
pub use edge::auth::{Principal, access_table, required_access};
pub use edge::context::RequestCtx;
pub use edge::cors::CorsPolicy;
pub use edge::error::ApiError;
pub use reload::ConfigSource;
pub use startup::{Application, StartupError};
pub use state::AppState;
