//! Events into the hub from the platform itself: `service_status` on every registry change,
//! `system` notices when a service gives up, and each online service's own `events_path`
//! WebSocket (an awc client that reconnects with backoff while the service is online).

use std::time::Duration;

use futures_util::StreamExt;
use gateway_core::{EventType, ServiceStatus, SubState, Topic};
use hub::HubHandle;
use registry::Registry;
use serde_json::json;
use tokio::sync::broadcast;

/// Largest event frame accepted from a service.
const MAX_EVENT_FRAME: usize = 1024 * 1024;

/// Starts the wiring on the current (actix) thread.
pub fn start(registry: Registry, hub: HubHandle, reconnect_max: Duration) {
    let mut changes = registry.subscribe();
    let publisher = hub.clone();
    let table = registry.clone();
    actix_rt::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => {
                    if !change.status_changed() {
                        continue;
                    }
                    let entry = &change.entry;
                    let Ok(topic) = Topic::of(EventType::ServiceStatus, Some(&entry.name)) else { continue };
                    let data = serde_json::to_value(entry).unwrap_or_default();
                    match publisher.publish(EventType::ServiceStatus, topic, data, None) {
                        Ok(()) => {}
                        // Shutdown: the hub stops before the services do; nobody is listening.
                        Err(hub::HubError::Stopped) => {
                            log::debug!("service_status of {} after the hub stopped", entry.name)
                        }
                        Err(e) => log::warn!("cannot publish service_status of {}: {e}", entry.name),
                    }
                    let gave_up = entry.status == ServiceStatus::Error
                        && change.previous_sub_state != entry.sub_state
                        && matches!(entry.sub_state, Some(SubState::CrashLoop) | Some(SubState::PortConflict) | None);
                    if gave_up {
                        system(
                            &publisher,
                            json!({
                                "kind": "service_gave_up",
                                "service": entry.name,
                                "display_name": entry.display_name,
                                "sub_state": entry.sub_state,
                                "last_error": entry.last_error,
                            }),
                        );
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("service_status publishing missed {n} changes; republishing every service");
                    for entry in table.entries() {
                        if let Ok(topic) = Topic::of(EventType::ServiceStatus, Some(&entry.name)) {
                            let _ = publisher.publish(
                                EventType::ServiceStatus,
                                topic,
                                serde_json::to_value(&entry).unwrap_or_default(),
                                None,
                            );
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    follow_services(&registry, &hub, &registry.names(), reconnect_max);
}

/// Follows the event sockets of these services (at start, and for services a reload adds),
/// each for as long as it is configured with an `events_path`.
pub fn follow_services(registry: &Registry, hub: &HubHandle, names: &[String], reconnect_max: Duration) {
    for name in names {
        if registry.config(name).is_some_and(|c| c.events_path.is_some()) {
            actix_rt::spawn(follow(name.clone(), registry.clone(), hub.clone(), reconnect_max));
        }
    }
}

/// Publishes a `system` notice.
pub fn system(hub: &HubHandle, data: serde_json::Value) {
    let Ok(topic) = Topic::of(EventType::System, None) else { return };
    match hub.publish(EventType::System, topic, data, None) {
        Ok(()) => {}
        Err(hub::HubError::Stopped) => log::debug!("system event after the hub stopped"),
        Err(e) => log::warn!("cannot publish a system event: {e}"),
    }
}

fn online(registry: &Registry, name: &str) -> bool {
    registry.status(name).is_some_and(|(s, _)| s == ServiceStatus::Online)
}

/// The URL of a service's event socket under its current configuration; `None` once the
/// service is gone or has no `events_path` (after a reload).
fn events_url(registry: &Registry, name: &str) -> Option<String> {
    let config = registry.config(name)?;
    Some(format!("ws://{}{}", config.authority(), config.events_path.as_deref()?))
}

/// Follows one service's event socket for as long as it is configured (its address and path
/// are read again before every connection, so a reload that changes them takes effect).
async fn follow(name: String, registry: Registry, hub: HubHandle, reconnect_max: Duration) {
    let mut changes = registry.subscribe();
    // 100 ms, 200 ms, 400 ms … up to `gateway.timers.ingest_reconnect_max_ms`, ±10 % so that
    // many gateways do not reconnect in step; the sequence starts over after a connection.
    let backoff = supervisor::BackoffPolicy::from_config(&registry::BackoffConfig {
        first: Duration::from_millis(100).min(reconnect_max),
        initial: Duration::from_millis(200).min(reconnect_max),
        multiplier: 2.0,
        max: reconnect_max,
        jitter: 0.1,
        reset_after: Duration::ZERO,
    });
    let mut attempt = 0u32;
    loop {
        // Wait until the service is online.
        while !online(&registry, &name) {
            match changes.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        let Some(url) = events_url(&registry, &name) else {
            log::info!("no longer following the events of {name} (no events_path configured)");
            return;
        };
        let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
        match client.ws(url.as_str()).max_frame_size(MAX_EVENT_FRAME).connect().await {
            Ok((_res, mut framed)) => {
                log::info!("following events of {name} at {url}");
                attempt = 0;
                let mut invalid = 0u64;
                while let Some(frame) = framed.next().await {
                    match frame {
                        Ok(awc::ws::Frame::Text(bytes)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                            Ok(item) => {
                                if let Err(e) = hub.publish_raw(item) {
                                    invalid += 1;
                                    if invalid <= 3 || invalid.is_power_of_two() {
                                        log::warn!("{name} sent an invalid event ({invalid} so far): {e}");
                                    }
                                }
                            }
                            Err(e) => log::warn!("{name} sent a frame that is not JSON: {e}"),
                        },
                        Ok(awc::ws::Frame::Close(reason)) => {
                            log::info!("{name} closed its event socket: {reason:?}");
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::info!("event socket of {name} failed: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => log::debug!("cannot connect to the events of {name} ({url}): {e}"),
        }
        // Reconnect with backoff while the service stays online.
        actix_rt::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
