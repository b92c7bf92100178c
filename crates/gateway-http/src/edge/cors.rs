//! Cross-origin requests (`gateway.cors_allowed_origins`): same-origin only by default.
//!
//! Two layers: [`check`] (called by the `screen` middleware, inside the request context) refuses
//! any request or preflight whose `Origin` is neither the gateway's own origin nor a configured
//! one with a 403 envelope, so a refused origin never reaches a handler; `actix-cors` ([`CorsPolicy::layer`])
//! then answers the preflights of allowed origins and adds the `Access-Control-*` headers to
//! their responses. Requests without `Origin` (curl, services, same-origin GETs) pass untouched.
//!
//! Configured entries are exact origins (`https://app.example.com`, `http://localhost:3000`;
//! compared case-insensitively, a trailing `/` ignored) or `*` for any origin. Tokens travel in
//! the `Authorization` header, never in cookies, so credentials are not enabled.

use actix_web::dev::{RequestHead, ServiceRequest};
use actix_web::http::{Method, header};
use actix_web::web;
use gateway_core::{Problem, Reason};

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Normalised configured origins.
    origins: Vec<String>,
    /// `*` was configured.
    any: bool,
}

/// Whether `s` looks like an origin: `http(s)://host[:port]`, nothing after.
fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")) else { return false };
    !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

fn normalise(s: &str) -> String {
    let s = s.trim();
    s.strip_suffix('/').unwrap_or(s).to_ascii_lowercase()
}

impl CorsPolicy {
    /// The policy for the configured list; malformed entries are logged and ignored.
    pub fn new(configured: &[String]) -> CorsPolicy {
        let mut policy = CorsPolicy::default();
        for entry in configured {
            let origin = normalise(entry);
            if origin == "*" {
                policy.any = true;
            } else if is_origin(&origin) {
                policy.origins.push(origin);
            } else {
                log::warn!(
                    "gateway.cors_allowed_origins: `{entry}` is not an origin like https://app.example.com; ignored"
                );
            }
        }
        if policy.any {
            log::warn!("gateway.cors_allowed_origins contains `*`: any web page may call the API with a token");
        }
        policy
    }

    /// Whether a browser on `origin` may call the gateway reached as `host` (the `Host` header).
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalise(origin);
        if self.any && is_origin(&origin) {
            return true;
        }
        if let Some(host) = host {
            let host = host.trim().to_ascii_lowercase();
            if !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}")) {
                return true;
            }
        }
        self.origins.contains(&origin)
    }

    fn allows_head(&self, origin: &header::HeaderValue, head: &RequestHead) -> bool {
        let host = head.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        origin.to_str().is_ok_and(|o| self.allows(o, host))
    }

    /// The `actix-cors` layer for this policy: answers preflights of allowed origins and adds
    /// the `Access-Control-*` headers (refusals are [`check`]'s job).
    pub fn layer(&self) -> actix_cors::Cors {
        let policy = self.clone();
        actix_cors::Cors::default()
            .allowed_origin_fn(move |origin, head| policy.allows_head(origin, head))
            .allow_any_method()
            .allow_any_header()
            .expose_headers([
                header::ETAG,
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("x-gateway-complete"),
            ])
            .max_age(600)
            .block_on_origin_mismatch(false)
    }
}

/// Whether the request may proceed as far as CORS is concerned: a request or preflight from an
/// origin the policy does not allow is refused with 403 `forbidden`, a preflight without `Origin`
/// is a 400. Requests without `Origin` pass.
pub fn check(req: &ServiceRequest) -> Result<(), Problem> {
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return if preflight { Err(Problem::invalid("Origin", Reason::Missing)) } else { Ok(()) };
    };
    if req.app_data::<web::Data<CorsPolicy>>().is_some_and(|p| p.allows_head(origin, req.head())) {
        return Ok(());
    }
    log::info!(
        "refused a cross-origin {} {} from {:?}",
        req.method(),
        req.path(),
        String::from_utf8_lossy(origin.as_bytes())
    );
    Err(Problem::Forbidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_only_by_default() {
        let p = CorsPolicy::new(&[]);
        assert!(p.allows("http://127.0.0.1:5000", Some("127.0.0.1:5000")));
        assert!(p.allows("HTTP://127.0.0.1:5000/", Some("127.0.0.1:5000")));
        assert!(p.allows("https://gw.example.com", Some("gw.example.com")));
        for (origin, host) in [
            ("http://evil.example", Some("127.0.0.1:5000")),
            ("http://127.0.0.1:5001", Some("127.0.0.1:5000")),
            ("http://localhost:5000", Some("127.0.0.1:5000")),
            ("null", Some("127.0.0.1:5000")),
            ("http://127.0.0.1:5000", None),
            ("http://127.0.0.1:5000", Some("")),
            ("", Some("")),
        ] {
            assert!(!p.allows(origin, host), "{origin} via {host:?}");
        }
    }

    #[test]
    fn configured_origins_and_wildcard() {
        let p = CorsPolicy::new(&["https://App.Example.com/".into(), "not an origin".into(), "ftp://x".into()]);
        assert_eq!(p.origins, vec!["https://app.example.com".to_owned()]);
        assert!(p.allows("https://app.example.com", Some("127.0.0.1:5000")));
        assert!(!p.allows("https://app.example.com.evil.example", Some("127.0.0.1:5000")));
        assert!(!p.allows("http://app.example.com", Some("127.0.0.1:5000")));
        let any = CorsPolicy::new(&["*".into()]);
        assert!(any.allows("http://anything.example:8080", None));
        assert!(!any.allows("null", None), "opaque origins are never allowed");
    }
}
