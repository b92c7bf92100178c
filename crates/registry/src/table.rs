//! The live service table: one slot per configured service holding its status, counters and
//! last results, plus discovery and a broadcast of every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use gateway_core::{ServiceKind, ServiceStatus, SubState};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::ServiceConfig;

/// The last health check of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastCheck {
    /// When it ran (RFC 3339).
    pub at: String,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed; `None` when healthy.
    pub error: Option<String>,
}

/// The last exit of a service's process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastExit {
    /// When it exited (RFC 3339).
    pub at: String,
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal name, when it was killed by a signal (`SIGKILL`).
    pub signal: Option<String>,
}

/// Where a service's OpenAPI contract stands (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    /// Configured, not fetched yet (the service has not been online).
    Pending,
    /// Loaded: forwarded requests are checked against it.
    Loaded,
    /// The service did not serve it (unreachable, or not a 2xx): domain rules only.
    Missing,
    /// Served, but not a usable OpenAPI 3 document: domain rules only.
    Invalid,
}

/// The API view of a service's contract: `contract {status, operations, loaded_at, error}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContractInfo {
    /// Where it stands.
    pub status: ContractStatus,
    /// Operations under the service's own routes.
    pub operations: usize,
    /// When it was last fetched (RFC 3339).
    pub loaded_at: Option<String>,
    /// Why it is missing or invalid.
    pub error: Option<String>,
}

/// Mutable state of one service, written by the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState {
    /// Status.
    pub status: ServiceStatus,
    /// Sub-state, if any.
    pub sub_state: Option<SubState>,
    /// Managed, external or adopted.
    pub kind: ServiceKind,
    /// Process id (managed or adopted, when known).
    pub pid: Option<u32>,
    /// When the service last became online (for uptime).
    pub online_since: Option<Instant>,
    /// Restarts performed by the supervisor since the orchestrator started.
    pub restarts: u32,
    /// Consecutive failed health checks.
    pub consecutive_failures: u32,
    /// Last health check.
    pub last_check: Option<LastCheck>,
    /// Last process exit.
    pub last_exit: Option<LastExit>,
    /// When the next restart is due (RFC 3339), while in backoff.
    pub next_restart_at: Option<String>,
    /// The last error worth showing to an operator (exit during startup with log lines,
    /// port conflict with the owner, crash loop …).
    pub last_error: Option<String>,
    /// The service's contract, written by the gateway; `None` without `openapi_path`.
    pub contract: Option<ContractInfo>,
}

impl ServiceState {
    fn initial(config: &ServiceConfig) -> Self {
        ServiceState {
            status: ServiceStatus::Stopped,
            sub_state: None,
            kind: if config.is_external() { ServiceKind::External } else { ServiceKind::Managed },
            pid: None,
            online_since: None,
            restarts: 0,
            consecutive_failures: 0,
            last_check: None,
            last_exit: None,
            next_restart_at: None,
            last_error: None,
            contract: config.openapi_path.as_ref().map(|_| ContractInfo {
                status: ContractStatus::Pending,
                operations: 0,
                loaded_at: None,
                error: None,
            }),
        }
    }
}

/// A snapshot of one service, as shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceEntry {
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Status.
    pub status: ServiceStatus,
    /// Sub-state.
    pub sub_state: Option<SubState>,
    /// Managed, external or adopted.
    pub kind: ServiceKind,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Process id.
    pub pid: Option<u32>,
    /// Milliseconds since it became online; `None` unless online.
    pub uptime_ms: Option<u64>,
    /// Restarts so far.
    pub restarts: u32,
    /// Consecutive failed health checks.
    pub consecutive_failures: u32,
    /// Last health check.
    pub last_check: Option<LastCheck>,
    /// Last exit.
    pub last_exit: Option<LastExit>,
    /// Next restart (RFC 3339).
    pub next_restart_at: Option<String>,
    /// Last error for the operator.
    pub last_error: Option<String>,
    /// The service's OpenAPI contract; `None` without `openapi_path`.
    pub contract: Option<ContractInfo>,
}

/// A change of one service (published on every update that alters what the API shows,
/// except the ever-growing uptime).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceChange {
    /// The status before the change.
    pub previous: ServiceStatus,
    /// The sub-state before the change.
    pub previous_sub_state: Option<SubState>,
    /// The entry after the change.
    pub entry: ServiceEntry,
    /// When it changed.
    pub at: SystemTime,
}

impl ServiceChange {
    /// Whether status or sub-state changed (as opposed to counters or check results).
    pub fn status_changed(&self) -> bool {
        self.previous != self.entry.status || self.previous_sub_state != self.entry.sub_state
    }
}

/// `GET /api/health` in one read: overall status and each service's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSummary {
    /// `ok` when every service is online, else `degraded`.
    pub status: &'static str,
    /// `{name, status, sub_state}` per service.
    pub services: Vec<HealthItem>,
}

/// One service in [`HealthSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthItem {
    /// Name.
    pub name: String,
    /// Status.
    pub status: ServiceStatus,
    /// Sub-state.
    pub sub_state: Option<SubState>,
}

struct Slot {
    config: Arc<ServiceConfig>,
    /// Shared with the slot of the same service in the next table (see [`Registry::replace`]).
    state: Arc<RwLock<ServiceState>>,
}

/// One generation of the table: the services of one configuration.
struct Table {
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    by_route: HashMap<String, usize>,
}

impl Table {
    fn new(slots: Vec<Slot>) -> Table {
        let by_name = slots.iter().enumerate().map(|(i, s)| (s.config.name.to_string(), i)).collect();
        let by_route =
            slots.iter().enumerate().flat_map(|(i, s)| s.config.routes.iter().map(move |r| (r.clone(), i))).collect();
        Table { slots, by_name, by_route }
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.by_name.get(name).and_then(|i| self.slots.get(*i))
    }
}

struct Inner {
    table: RwLock<Arc<Table>>,
    changes: broadcast::Sender<ServiceChange>,
}

/// The service table. Cheap to clone; all clones share one table.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("services", &self.table().slots.len()).finish()
    }
}

impl Registry {
    /// A table of these services, all `stopped` (external ones too until first checked).
    pub fn new(services: &[ServiceConfig]) -> Registry {
        let slots = services
            .iter()
            .map(|c| Slot { state: Arc::new(RwLock::new(ServiceState::initial(c))), config: Arc::new(c.clone()) })
            .collect();
        let (changes, _) = broadcast::channel(1024);
        Registry { inner: Arc::new(Inner { table: RwLock::new(Arc::new(Table::new(slots))), changes }) }
    }

    /// Replaces the configured services (a reload): a service that stays keeps its live state
    /// under its new configuration (routes, timeouts and paths take effect at once), a new one
    /// starts `stopped`, a removed one is gone from every lookup.
    pub fn replace(&self, services: &[ServiceConfig]) {
        let mut table = self.inner.table.write();
        let slots = services
            .iter()
            .map(|c| Slot {
                state: table
                    .slot(c.name.as_str())
                    .map_or_else(|| Arc::new(RwLock::new(ServiceState::initial(c))), |s| s.state.clone()),
                config: Arc::new(c.clone()),
            })
            .collect();
        *table = Arc::new(Table::new(slots));
    }

    fn table(&self) -> Arc<Table> {
        self.inner.table.read().clone()
    }

    /// Service names in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.table().slots.iter().map(|s| s.config.name.to_string()).collect()
    }

    /// Configurations in configuration order.
    pub fn configs(&self) -> Vec<Arc<ServiceConfig>> {
        self.table().slots.iter().map(|s| s.config.clone()).collect()
    }

    /// The configuration of a service.
    pub fn config(&self, name: &str) -> Option<Arc<ServiceConfig>> {
        self.table().slot(name).map(|s| s.config.clone())
    }

    /// The service that owns `/api/{resource}/…`.
    pub fn route(&self, resource: &str) -> Option<Arc<ServiceConfig>> {
        let table = self.table();
        table.by_route.get(resource).and_then(|i| table.slots.get(*i)).map(|s| s.config.clone())
    }

    /// `host:port` of a service.
    pub fn address(&self, name: &str) -> Option<String> {
        self.table().slot(name).map(|s| s.config.authority())
    }

    /// A copy of a service's live state.
    pub fn state(&self, name: &str) -> Option<ServiceState> {
        self.table().slot(name).map(|s| s.state.read().clone())
    }

    /// Status and sub-state of a service.
    pub fn status(&self, name: &str) -> Option<(ServiceStatus, Option<SubState>)> {
        self.table().slot(name).map(|s| {
            let st = s.state.read();
            (st.status, st.sub_state)
        })
    }

    /// The API view of one service.
    pub fn entry(&self, name: &str) -> Option<ServiceEntry> {
        self.table().slot(name).map(|s| snapshot(&s.config, &s.state.read()))
    }

    /// The API view of every service, in configuration order.
    pub fn entries(&self) -> Vec<ServiceEntry> {
        self.table().slots.iter().map(|s| snapshot(&s.config, &s.state.read())).collect()
    }

    /// The answer of `GET /api/health`.
    pub fn health(&self) -> HealthSummary {
        let services: Vec<HealthItem> = self
            .table()
            .slots
            .iter()
            .map(|s| {
                let st = s.state.read();
                HealthItem { name: s.config.name.to_string(), status: st.status, sub_state: st.sub_state }
            })
            .collect();
        let all_online = services.iter().all(|s| s.status == ServiceStatus::Online);
        HealthSummary { status: if all_online { "ok" } else { "degraded" }, services }
    }

    /// Changes a service's state under its lock and publishes the change when anything
    /// visible changed. Returns the new entry, or `None` for an unknown service.
    pub fn update<F: FnOnce(&mut ServiceState)>(&self, name: &str, f: F) -> Option<ServiceEntry> {
        let table = self.table();
        let slot = table.slot(name)?;
        let (before, after, entry) = {
            let mut st = slot.state.write();
            let before = st.clone();
            f(&mut st);
            if st.status == ServiceStatus::Online && st.online_since.is_none() {
                st.online_since = Some(Instant::now());
            }
            if st.status != ServiceStatus::Online {
                st.online_since = None;
            }
            (before, st.clone(), snapshot(&slot.config, &st))
        };
        if before != after {
            if before.status != after.status || before.sub_state != after.sub_state {
                log::info!(
                    "service {} {}{} -> {}{}",
                    name,
                    before.status,
                    before.sub_state.map(|s| format!("/{s}")).unwrap_or_default(),
                    after.status,
                    after.sub_state.map(|s| format!("/{s}")).unwrap_or_default()
                );
            }
            // No receiver is fine: nobody listens yet.
            let _ = self.inner.changes.send(ServiceChange {
                previous: before.status,
                previous_sub_state: before.sub_state,
                entry: entry.clone(),
                at: SystemTime::now(),
            });
        }
        Some(entry)
    }

    /// Subscribes to changes. A receiver that lags loses the oldest changes (and is told so
    /// by `RecvError::Lagged`); re-read [`Registry::entries`] then.
    pub fn subscribe(&self) -> broadcast::Receiver<ServiceChange> {
        self.inner.changes.subscribe()
    }
}

fn snapshot(config: &ServiceConfig, st: &ServiceState) -> ServiceEntry {
    ServiceEntry {
        name: config.name.to_string(),
        display_name: config.display_name.clone(),
        status: st.status,
        sub_state: st.sub_state,
        kind: st.kind,
        host: config.host.clone(),
        port: config.port,
        pid: st.pid,
        uptime_ms: st.online_since.map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
        restarts: st.restarts,
        consecutive_failures: st.consecutive_failures,
        last_check: st.last_check.clone(),
        last_exit: st.last_exit.clone(),
        next_restart_at: st.next_restart_at.clone(),
        last_error: st.last_error.clone(),
        contract: st.contract.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::builtin_services;
    use std::path::Path;

    fn registry() -> Registry {
        Registry::new(&builtin_services(Path::new("/bin/orchestrator")))
    }

    #[test]
    fn discovery() {
        let r = registry();
        assert_eq!(r.names(), ["data", "mt5", "strategy", "pattern"]);
        let cases =
            [("ticks", "data"), ("ohlc", "data"), ("orders", "mt5"), ("signals", "strategy"), ("patterns", "pattern")];
        for (resource, service) in cases {
            assert_eq!(r.route(resource).map(|c| c.name.to_string()).as_deref(), Some(service));
        }
        assert!(r.route("settings").is_none());
        assert!(r.route("nope").is_none());
        assert_eq!(r.address("mt5").as_deref(), Some("127.0.0.1:5002"));
        assert!(r.entry("nope").is_none());
    }

    #[test]
    fn a_replaced_table_keeps_the_state_of_the_services_that_stay() {
        let r = registry();
        r.update("data", |s| {
            s.status = ServiceStatus::Online;
            s.restarts = 3;
        });
        let mut services = builtin_services(Path::new("/bin/orchestrator"));
        services.retain(|s| s.name.as_str() != "mt5");
        services[0].routes.push("history".into());
        let mut extra = ServiceConfig::with_defaults(gateway_core::ServiceName::parse("extra").unwrap(), 6000);
        extra.routes = vec!["extras".into()];
        services.push(extra);
        r.replace(&services);
        assert_eq!(r.names(), ["data", "strategy", "pattern", "extra"]);
        let data = r.entry("data").unwrap();
        assert_eq!((data.status, data.restarts), (ServiceStatus::Online, 3), "the live state stays");
        assert_eq!(r.route("history").unwrap().name.as_str(), "data", "a new route takes effect");
        assert!(r.route("orders").is_none() && r.entry("mt5").is_none(), "a removed service is gone");
        assert_eq!(r.entry("extra").unwrap().status, ServiceStatus::Stopped);
        // Updates reach the state the new table shares.
        r.update("data", |s| s.restarts = 4);
        assert_eq!(r.entry("data").unwrap().restarts, 4);
    }

    #[test]
    fn starts_stopped_and_degraded() {
        let r = registry();
        let h = r.health();
        assert_eq!(h.status, "degraded");
        assert!(h.services.iter().all(|s| s.status == ServiceStatus::Stopped));
        let e = r.entry("data").unwrap();
        assert_eq!(e.kind, ServiceKind::Managed);
        assert_eq!(e.uptime_ms, None);
    }

    #[test]
    fn updates_publish_changes_and_track_uptime() {
        let r = registry();
        let mut rx = r.subscribe();
        for name in r.names() {
            r.update(&name, |s| s.status = ServiceStatus::Online);
        }
        assert_eq!(r.health().status, "ok");
        let change = rx.try_recv().unwrap();
        assert_eq!(change.previous, ServiceStatus::Stopped);
        assert_eq!(change.entry.status, ServiceStatus::Online);
        assert!(change.status_changed());
        assert!(r.entry("data").unwrap().uptime_ms.is_some());

        // A counter change is published, but is not a status change.
        let mut rx = r.subscribe();
        r.update("data", |s| s.consecutive_failures = 1);
        assert!(!rx.try_recv().unwrap().status_changed());
        // No visible change, nothing published.
        r.update("data", |s| s.consecutive_failures = 1);
        assert!(rx.try_recv().is_err());

        r.update("data", |s| {
            s.status = ServiceStatus::Error;
            s.sub_state = Some(SubState::CrashLoop);
        });
        let e = r.entry("data").unwrap();
        assert_eq!(e.uptime_ms, None);
        assert_eq!(serde_json::to_value(&e).unwrap()["sub_state"], "crash_loop");
        assert_eq!(r.health().status, "degraded");
    }
}
