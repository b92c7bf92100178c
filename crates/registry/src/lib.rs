//! The service table: configuration per service, live status, discovery (name → address,
//! resource → service) and change notifications.
//!
//! The registry is passive: the supervisor writes statuses into it, the gateway reads it, and
//! whoever needs to react to changes (the hub, settings propagation) subscribes.

pub mod config;
mod reload;
mod table;

pub use config::{
    BackoffConfig, PortConflictPolicy, RawService, RestartPolicy, ServiceConfig, builtin_services, validate_services,
};
pub use reload::ReloadPlan;
pub use table::{
    ContractInfo, ContractStatus, HealthSummary, LastCheck, LastExit, Registry, ServiceChange, ServiceEntry,
    ServiceState,
};
