//! `GET /metrics` in the Prometheus text format (`prometheus-client`): requests and their latency
//! by route pattern and status, upstream latency and errors per service, and — read when scraped
//! — service status and restarts from the registry and the hub's counters.
//!
//! Recording is cheap: request metrics cost one lookup in a read-locked map plus a counter and a
//! histogram update; upstream handles are created per service at start-up, so recording one
//! needs no allocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use gateway_core::ServiceStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use registry::ServiceEntry;

use crate::edge::error::ApiError;
use crate::state::AppState;

/// Latency buckets in seconds: 100 µs to 10 s.
const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The label of requests that matched no route (their raw paths would explode the series).
pub const UNMATCHED: &str = "unmatched";

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Labels of one request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Cow<'static, str>,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    service: String,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    service: String,
    status: &'static str,
}

/// The kinds of upstream errors, each a series per service from the start (so a rate over them
/// never starts from nothing).
pub const ERROR_KINDS: [&str; 6] = ["unavailable", "timeout", "error", "invalid", "status_5xx", "status_4xx"];

/// Pre-made handles of one service.
struct UpstreamHandles {
    latency: Histogram,
    errors: [(&'static str, Counter); ERROR_KINDS.len()],
}

/// The gateway's own metrics (the rest is read when scraped).
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    request_latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    upstream_latency: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<ErrorLabels, Counter>,
    upstreams: HashMap<String, UpstreamHandles>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("services", &self.upstreams.len()).finish()
    }
}

/// A method as a static label (anything unusual is `OTHER`).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    /// Metrics for these services.
    pub fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> Metrics {
        let upstream_latency: Family<ServiceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let upstream_errors: Family<ErrorLabels, Counter> = Family::default();
        let upstreams = services
            .into_iter()
            .map(|name| {
                let latency = upstream_latency.get_or_create_owned(&ServiceLabels { service: name.to_owned() });
                let errors = ERROR_KINDS.map(|kind| {
                    (kind, upstream_errors.get_or_create_owned(&ErrorLabels { service: name.to_owned(), kind }))
                });
                (name.to_owned(), UpstreamHandles { latency, errors })
            })
            .collect();
        Metrics {
            requests: Family::default(),
            request_latency: Family::new_with_constructor(latency_histogram),
            upstream_latency,
            upstream_errors,
            upstreams,
        }
    }

    /// Records one answered request. `route` is the router pattern it matched (`None`: none).
    pub fn request(&self, method: &Method, route: Option<Cow<'static, str>>, status: u16, elapsed: Duration) {
        let labels =
            RequestLabels { method: method_label(method), route: route.unwrap_or(Cow::Borrowed(UNMATCHED)), status };
        self.requests.get_or_create(&labels).inc();
        self.request_latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records a downstream answer (whatever its status) and how long it took.
    pub fn upstream_answered(&self, service: &str, elapsed: Duration) {
        if let Some(h) = self.upstreams.get(service) {
            h.latency.observe(elapsed.as_secs_f64());
        }
    }

    /// Records a failed call to a service, by kind (see [`ERROR_KINDS`]).
    pub fn upstream_failed(&self, service: &str, kind: &str) {
        if let Some((_, counter)) = self.upstreams.get(service).and_then(|h| h.errors.iter().find(|(k, _)| *k == kind))
        {
            counter.inc();
        }
    }

    /// The Prometheus text of everything: the recorded series plus a snapshot of the registry
    /// and the hub.
    pub fn render(&self, services: &[ServiceEntry], hub: &hub::HubStats) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("orchestrator");
        registry.register(
            "http_requests",
            "Requests answered, by method, route pattern and status",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by method, route pattern and status",
            self.request_latency.clone(),
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Time until a downstream service answered, per service",
            self.upstream_latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed calls to downstream services, per service and kind (unavailable, timeout, error, invalid, status_5xx, status_4xx)",
            self.upstream_errors.clone(),
        );

        let status: Family<StatusLabels, Gauge> = Family::default();
        let up: Family<ServiceLabels, Gauge> = Family::default();
        let restarts: Family<ServiceLabels, Counter> = Family::default();
        let failures: Family<ServiceLabels, Gauge> = Family::default();
        for s in services {
            let service = ServiceLabels { service: s.name.clone() };
            for candidate in ServiceStatus::ALL {
                let value = i64::from(s.status == candidate);
                status.get_or_create(&StatusLabels { service: s.name.clone(), status: candidate.as_str() }).set(value);
            }
            up.get_or_create(&service).set(i64::from(s.status == ServiceStatus::Online));
            restarts.get_or_create(&service).inc_by(u64::from(s.restarts));
            failures.get_or_create(&service).set(i64::from(s.consecutive_failures));
        }
        registry.register("service_status", "1 for the status each service is in, 0 for the others", status);
        registry.register("service_up", "1 when the service is online", up);
        registry.register("service_restarts", "Restarts performed by the supervisor", restarts);
        registry.register("service_consecutive_failures", "Consecutive failed health checks", failures);

        let gauge = |v: usize| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        let counter = |v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            c
        };
        registry.register("hub_clients", "Connected WebSocket and SSE clients", gauge(hub.clients));
        registry.register("hub_topics", "Topics with at least one event this epoch", gauge(hub.topics));
        registry.register("hub_events_published", "Events published this epoch", counter(hub.events_published));
        registry.register("hub_frames_sent", "Frames taken from client queues", counter(hub.frames_sent));
        registry.register("hub_drops", "Ticks conflated away in slow clients' queues", counter(hub.drops));
        registry.register(
            "hub_slow_consumer_closes",
            "Clients closed with 4008 because their queue overflowed",
            counter(hub.slow_consumer_closes),
        );

        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

pub(crate) async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hub = state.hub.stats().await;
    let text = state
        .metrics
        .render(&state.registry.entries(), &hub)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE).body(text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(name: &str, status: ServiceStatus, restarts: u32) -> ServiceEntry {
        ServiceEntry {
            name: name.into(),
            display_name: name.into(),
            status,
            sub_state: None,
            kind: gateway_core::ServiceKind::Managed,
            host: "127.0.0.1".into(),
            port: 1,
            pid: None,
            uptime_ms: None,
            restarts,
            consecutive_failures: 2,
            last_check: None,
            last_exit: None,
            next_restart_at: None,
            last_error: None,
            contract: None,
        }
    }

    #[test]
    fn renders_every_family_in_prometheus_text() {
        let m = Metrics::new(["data", "mt5"]);
        let ms = Duration::from_millis;
        m.request(&Method::GET, Some(Cow::Borrowed("/api/{resource}/{tail:.*}")), 200, ms(3));
        m.request(&Method::GET, Some(Cow::Owned("/api/{resource}/{tail:.*}".to_owned())), 200, ms(30));
        m.request(&Method::from_bytes(b"BREW").unwrap(), None, 404, ms(1));
        m.upstream_answered("data", ms(2));
        m.upstream_failed("mt5", "timeout");
        m.upstream_failed("mt5", "no-such-kind");
        m.upstream_failed("nobody", "timeout");
        let hub = hub::HubStats { clients: 3, drops: 7, slow_consumer_closes: 1, ..Default::default() };
        let text =
            m.render(&[entry("data", ServiceStatus::Online, 0), entry("mt5", ServiceStatus::Error, 4)], &hub).unwrap();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        has(r#"orchestrator_http_requests_total{method="GET",route="/api/{resource}/{tail:.*}",status="200"} 2"#);
        has(r#"orchestrator_http_requests_total{method="OTHER",route="unmatched",status="404"} 1"#);
        has(
            r#"orchestrator_http_request_duration_seconds_bucket{method="GET",route="/api/{resource}/{tail:.*}",status="200",le="0.005"} 1"#,
        );
        has(
            r#"orchestrator_http_request_duration_seconds_count{method="GET",route="/api/{resource}/{tail:.*}",status="200"} 2"#,
        );
        has(r#"orchestrator_upstream_request_duration_seconds_count{service="data"} 1"#);
        has(r#"orchestrator_upstream_request_duration_seconds_count{service="mt5"} 0"#);
        has(r#"orchestrator_upstream_errors_total{service="mt5",kind="timeout"} 1"#);
        has(r#"orchestrator_upstream_errors_total{service="data",kind="timeout"} 0"#);
        has(r#"orchestrator_service_status{service="mt5",status="error"} 1"#);
        has(r#"orchestrator_service_status{service="mt5",status="online"} 0"#);
        has(r#"orchestrator_service_up{service="data"} 1"#);
        has(r#"orchestrator_service_restarts_total{service="mt5"} 4"#);
        has(r#"orchestrator_service_consecutive_failures{service="mt5"} 2"#);
        has("orchestrator_hub_clients 3");
        has("orchestrator_hub_drops_total 7");
        has("orchestrator_hub_slow_consumer_closes_total 1");
        has("# TYPE orchestrator_http_request_duration_seconds histogram");
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }
}
