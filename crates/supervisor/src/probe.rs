//! Health probes (HTTP GET of the health path with awc, a cheap TCP connect while a service
//! starts) and the port check made before spawning.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

use registry::ServiceConfig;

/// Largest health body read.
const BODY_LIMIT: usize = 64 * 1024;

/// The result of one HTTP health probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpProbe {
    /// 2xx within the timeout.
    pub healthy: bool,
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
    /// The `service` field of a JSON body, if any.
    pub service_field: Option<String>,
}

impl HttpProbe {
    pub(crate) fn latency_ms(&self) -> u64 {
        u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX)
    }
}

/// An HTTP client for one service instance. A fresh one per spawned process, so a pooled
/// connection to a previous (dead) instance is never reused.
#[derive(Clone)]
pub(crate) struct Prober {
    client: awc::Client,
    url: String,
    authority: String,
    /// The address resolved once, so fast startup polling never waits for a resolver.
    addr: Option<SocketAddr>,
    timeout: Duration,
}

impl Prober {
    pub(crate) fn new(config: &ServiceConfig, timeout: Duration) -> Prober {
        let client = awc::Client::builder()
            .disable_redirects()
            .timeout(timeout)
            .connector(awc::Connector::new().timeout(timeout).conn_keep_alive(Duration::from_secs(30)))
            .finish();
        let authority = config.authority();
        let addr = (config.host.as_str(), config.port).to_socket_addrs().ok().and_then(|mut a| a.next());
        Prober { client, url: format!("http://{authority}{}", config.health_path), authority, addr, timeout }
    }

    /// GET the health path: 2xx within the timeout is healthy.
    pub(crate) async fn http(&self) -> HttpProbe {
        let started = Instant::now();
        let fail = |error: String| HttpProbe {
            healthy: false,
            latency: started.elapsed(),
            error: Some(error),
            service_field: None,
        };
        let mut response = match self.client.get(&self.url).send().await {
            Ok(r) => r,
            Err(awc::error::SendRequestError::Timeout) => {
                return fail(format!("no answer within {} ms", self.timeout.as_millis()));
            }
            Err(e) => return fail(e.to_string()),
        };
        let status = response.status();
        let body = response.body().limit(BODY_LIMIT).await;
        let service_field = body.as_ref().ok().and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(b)
                .ok()
                .and_then(|v| v.get("service").and_then(|s| s.as_str()).map(str::to_owned))
        });
        let latency = started.elapsed();
        if status.is_success() {
            HttpProbe { healthy: true, latency, error: None, service_field }
        } else {
            HttpProbe { healthy: false, latency, error: Some(format!("HTTP {}", status.as_u16())), service_field }
        }
    }

    /// Whether something accepts TCP connections on the service's address.
    pub(crate) async fn accepts(&self) -> bool {
        let connected = match self.addr {
            Some(addr) => tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await,
            None => tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(self.authority.as_str())).await,
        };
        matches!(connected, Ok(Ok(_)))
    }
}

/// Whether the service's port can be bound (std sets SO_REUSEADDR, so connections in
/// TIME_WAIT do not count). Errors other than "in use" (e.g. an unresolvable host) count as
/// free: the spawn will then report the real problem.
pub(crate) fn port_taken(config: &ServiceConfig) -> bool {
    let addrs = match (config.host.as_str(), config.port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => {
            log::warn!("cannot resolve {}: {e}", config.authority());
            return false;
        }
    };
    addrs.iter().any(|addr| match TcpListener::bind(addr) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => true,
        Err(e) => {
            log::debug!("port check of {addr}: {e}");
            false
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use gateway_core::ServiceName;

    /// A child another test forks at that moment holds a copy of every descriptor of this
    /// process until it execs or closes them (a keeper closes them right after its own fork), so
    /// a dropped listener may live on for a few milliseconds: wait for it, with a deadline.
    fn within_a_second(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            if cond() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn port_check() {
        let listener = crate::test_listener();
        let port = listener.local_addr().unwrap().port();
        let cfg = ServiceConfig::with_defaults(ServiceName::parse("p").unwrap(), port);
        assert!(port_taken(&cfg));
        drop(listener);
        assert!(within_a_second(|| !port_taken(&cfg)));
    }

    #[test]
    fn probes_a_real_listener() {
        actix_rt::System::new().block_on(async {
            let listener = crate::test_listener();
            let port = listener.local_addr().unwrap().port();
            let cfg = ServiceConfig::with_defaults(ServiceName::parse("p").unwrap(), port);
            let prober = Prober::new(&cfg, Duration::from_millis(200));
            // Accepts connections (the kernel does), but never answers: a timeout.
            assert!(prober.accepts().await);
            let p = prober.http().await;
            assert!(!p.healthy);
            assert!(p.error.unwrap().contains("200 ms"));
            drop(listener);
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while prober.accepts().await {
                assert!(std::time::Instant::now() < deadline, "the closed port still accepts");
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            let p = prober.http().await;
            assert!(!p.healthy && p.error.is_some());
        });
    }
}
