//! Service statuses and sub-states (§7), service kinds, and API roles.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The status of a downstream service.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Not running (never started, or stopped on purpose).
    Stopped,
    /// Spawned (or adopted) and not yet healthy.
    Starting,
    /// Healthy.
    Online,
    /// Failed `failure_threshold` consecutive health checks, or exited.
    Offline,
    /// Gave up for now: startup failure, port conflict or crash loop.
    Error,
}

impl ServiceStatus {
    /// Every status.
    pub const ALL: [ServiceStatus; 5] = [
        ServiceStatus::Stopped,
        ServiceStatus::Starting,
        ServiceStatus::Online,
        ServiceStatus::Offline,
        ServiceStatus::Error,
    ];

    /// The status as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Stopped => "stopped",
            ServiceStatus::Starting => "starting",
            ServiceStatus::Online => "online",
            ServiceStatus::Offline => "offline",
            ServiceStatus::Error => "error",
        }
    }

    /// Whether a request can be forwarded to a service in this status (anything but
    /// offline/error/stopped; a starting service may already answer).
    pub fn accepts_requests(self) -> bool {
        matches!(self, ServiceStatus::Online | ServiceStatus::Starting)
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a service is doing within its status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubState {
    /// Waiting for the next restart (`next_restart_at`).
    Backoff,
    /// A stop is under way.
    Stopping,
    /// Failed `max_failures` times within `failure_window_ms`; still retrying at the cap.
    CrashLoop,
    /// Its port is held by a process that is not this service.
    PortConflict,
    /// Found already running on its port and adopted: monitored, never signalled.
    Adopted,
}

impl SubState {
    /// The sub-state as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::Backoff => "backoff",
            SubState::Stopping => "stopping",
            SubState::CrashLoop => "crash_loop",
            SubState::PortConflict => "port_conflict",
            SubState::Adopted => "adopted",
        }
    }
}

impl fmt::Display for SubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the orchestrator relates to a service.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Spawned and stopped by the supervisor.
    Managed,
    /// On another host or without a command: monitored and routed, never spawned.
    External,
    /// Found running on its port at start and adopted: monitored, never signalled.
    Adopted,
}

/// The role attached to an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only: GET routes and subscriptions.
    Viewer,
    /// Everything.
    Operator,
    /// Event ingest only.
    Service,
}

/// What a route needs from the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// No token needed.
    Public,
    /// Reading and subscribing.
    Read,
    /// Changing state.
    Write,
    /// Pushing events.
    Ingest,
}

impl Role {
    /// The role as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Service => "service",
        }
    }

    /// Parses `viewer`, `operator` or `service`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "service" => Some(Role::Service),
            _ => None,
        }
    }

    /// Whether this role may do what a route needs.
    pub fn permits(self, access: Access) -> bool {
        matches!(
            (self, access),
            (_, Access::Public) | (Role::Operator, _) | (Role::Viewer, Access::Read) | (Role::Service, Access::Ingest)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Access::*;
        let table = [
            (Role::Viewer, [true, true, false, false]),
            (Role::Operator, [true, true, true, true]),
            (Role::Service, [true, false, false, true]),
        ];
        for (role, expect) in table {
            for (access, want) in [Public, Read, Write, Ingest].into_iter().zip(expect) {
                assert_eq!(role.permits(access), want, "{role} {access:?}");
            }
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn wire_names() {
        assert_eq!(serde_json::to_string(&SubState::CrashLoop).unwrap_or_default(), "\"crash_loop\"");
        assert_eq!(serde_json::to_string(&ServiceStatus::Online).unwrap_or_default(), "\"online\"");
        assert!(ServiceStatus::Starting.accepts_requests());
        assert!(!ServiceStatus::Offline.accepts_requests());
    }
}
