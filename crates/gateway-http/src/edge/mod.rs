//! The inbound edge: what every request meets before a handler and what turns the handler's
//! result into the answer — the request context (id, language, envelope, access line), the
//! screen (sizes, content types), CORS, the WebSocket frame guard, authentication and the
//! access each route needs, and `ApiError`, the one mapping of every error to the envelope.

pub mod auth;
pub mod context;
pub mod cors;
pub mod error;
pub mod screen;
pub mod wsguard;
