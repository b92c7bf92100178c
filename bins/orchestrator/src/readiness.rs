//! Readiness for the service manager: systemd's `READY=1` once the gateway listens and every
//! autostart service has come online or given up (`error`), and `WATCHDOG=1` at half the
//! interval systemd asks for. Nothing happens without `NOTIFY_SOCKET` (not under systemd) or
//! on Windows, where the Service Control Manager is told through `service_install`.

use std::time::Duration;

use gateway_core::ServiceStatus;
use registry::{Registry, ServiceConfig};

#[cfg(unix)]
mod sys {
    use std::time::Duration;

    use sd_notify::NotifyState;

    /// Whether a service manager listens for notifications.
    pub fn enabled() -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }

    /// `READY=1` with a status line.
    pub fn ready(status: &str) -> std::io::Result<()> {
        sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
    }

    /// `WATCHDOG=1`.
    pub fn watchdog() -> std::io::Result<()> {
        sd_notify::notify(&[NotifyState::Watchdog])
    }

    /// The watchdog interval systemd expects pings within, if it set one for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
}

#[cfg(not(unix))]
mod sys {
    use std::time::Duration;

    pub fn enabled() -> bool {
        false
    }

    pub fn ready(_status: &str) -> std::io::Result<()> {
        Ok(())
    }

    pub fn watchdog() -> std::io::Result<()> {
        Ok(())
    }

    pub fn watchdog_interval() -> Option<Duration> {
        None
    }
}

/// Whether every autostart service the orchestrator spawns is `online` or has given up:
/// `error`, or waiting on a dependency that has given up or will never start.
pub fn settled(services: &[impl AsRef<ServiceConfig>], status: impl Fn(&str) -> Option<ServiceStatus>) -> bool {
    // A service that cannot come up any more (depth bounds a cycle the config would reject).
    fn stuck(
        s: &ServiceConfig,
        all: &[&ServiceConfig],
        status: &dyn Fn(&str) -> Option<ServiceStatus>,
        depth: usize,
    ) -> bool {
        match status(s.name.as_str()) {
            Some(ServiceStatus::Online) => false,
            Some(ServiceStatus::Error) => true,
            Some(ServiceStatus::Stopped) if !s.autostart && !s.is_external() => true,
            _ => {
                depth < 64
                    && s.depends_on.iter().any(|d| {
                        all.iter().find(|c| c.name == *d).is_some_and(|dep| stuck(dep, all, status, depth + 1))
                    })
            }
        }
    }
    let all: Vec<&ServiceConfig> = services.iter().map(AsRef::as_ref).collect();
    all.iter()
        .filter(|s| s.autostart && !s.is_external())
        .all(|s| status(s.name.as_str()) == Some(ServiceStatus::Online) || stuck(s, &all, &status, 0))
}

/// Call once the gateway listens (inside the actix system): sends `READY=1` when the services
/// have settled, and starts the watchdog pings if systemd asked for them.
pub fn report(registry: Registry) {
    if !sys::enabled() {
        return;
    }
    if let Some(interval) = sys::watchdog_interval() {
        actix_rt::spawn(watchdog(interval / 2));
    }
    actix_rt::spawn(async move {
        // Subscribed before the first look, so no change falls between the two.
        let mut changes = registry.subscribe();
        let configs = registry.configs();
        loop {
            if settled(&configs, |name| registry.status(name).map(|(s, _)| s)) {
                break;
            }
            match changes.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
        let entries = registry.entries();
        let online = entries.iter().filter(|e| e.status == ServiceStatus::Online).count();
        let status = format!("{online} of {} services online", entries.len());
        match sys::ready(&status) {
            Ok(()) => log::info!("reported readiness to systemd: {status}"),
            Err(e) => log::warn!("cannot report readiness to systemd: {e}"),
        }
    });
}

async fn watchdog(every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        if let Err(e) = sys::watchdog() {
            log::warn!("cannot ping the systemd watchdog: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gateway_core::ServiceName;
    use std::collections::HashMap;

    fn service(name: &str, autostart: bool, deps: &[&str]) -> ServiceConfig {
        let mut s = ServiceConfig::with_defaults(ServiceName::parse(name).unwrap(), 5001);
        s.command = Some(vec!["python".into()]);
        s.autostart = autostart;
        s.depends_on = deps.iter().map(|d| ServiceName::parse(d).unwrap()).collect();
        s
    }

    fn check(services: &[ServiceConfig], statuses: &[(&str, ServiceStatus)]) -> bool {
        let map: HashMap<String, ServiceStatus> = statuses.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
        let boxed: Vec<Box<ServiceConfig>> = services.iter().cloned().map(Box::new).collect();
        settled(&boxed, |name| map.get(name).copied())
    }

    #[test]
    fn ready_when_every_autostart_service_is_online_or_in_error() {
        use ServiceStatus::*;
        let services = [service("data", true, &[]), service("mt5", true, &[])];
        assert!(!check(&services, &[("data", Starting), ("mt5", Stopped)]));
        assert!(!check(&services, &[("data", Online), ("mt5", Starting)]));
        assert!(!check(&services, &[("data", Online), ("mt5", Offline)]));
        assert!(check(&services, &[("data", Online), ("mt5", Online)]));
        assert!(check(&services, &[("data", Online), ("mt5", Error)]));
        assert!(check(&[], &[]));
    }

    #[test]
    fn services_not_started_by_us_are_not_waited_for() {
        use ServiceStatus::*;
        let mut external = service("remote", true, &[]);
        external.command = None;
        let services = [service("data", true, &[]), service("manual", false, &[]), external];
        assert!(check(&services, &[("data", Online), ("manual", Stopped), ("remote", Offline)]));
    }

    #[test]
    fn a_dependent_of_a_service_that_gave_up_has_given_up_too() {
        use ServiceStatus::*;
        let services =
            [service("data", true, &[]), service("strategy", true, &["data"]), service("ui", true, &["strategy"])];
        assert!(!check(&services, &[("data", Starting), ("strategy", Stopped), ("ui", Stopped)]));
        assert!(check(&services, &[("data", Error), ("strategy", Stopped), ("ui", Stopped)]));
        let manual = [service("data", false, &[]), service("strategy", true, &["data"])];
        assert!(check(&manual, &[("data", Stopped), ("strategy", Stopped)]));
        assert!(!check(&manual, &[("data", Starting), ("strategy", Stopped)]));
    }
}
