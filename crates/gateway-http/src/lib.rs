//! The HTTP face of the orchestrator: actix-web routes, the auth and request-context
//! middleware, JSON body handling, and the one `ApiError` that turns every library error into
//! the response envelope.
//!
//! Only this crate knows actix-web and HTTP status codes. Handlers are thin: extract, call one
//! library function, map to the envelope.

mod aggregate;
mod auth;
mod body;
pub mod config;
mod context;
pub mod contract;
mod cors;
mod error;
mod forward;
mod metrics;
pub mod openapi;
mod os;
mod page;
mod propagation;
mod realtime;
mod reload;
pub mod routes;
mod screen;
mod startup;
mod state;
mod tls;
mod upstream;
mod wsguard;

pub use auth::{Principal, access_table, required_access};
pub use config::{Config, ConfigError};
pub use context::RequestCtx;
pub use cors::CorsPolicy;
pub use error::ApiError;
pub use reload::ConfigSource;
pub use startup::{Application, StartupError};
pub use state::AppState;
