//! The request-context middleware: request id, language, the envelope for every error, and
//! one access-log line per request.

use std::borrow::Cow;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use gateway_core::{Envelope, Lang};

use crate::edge::error::ProblemReport;
use crate::state::AppState;

/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Per-request context, available to handlers as an extractor.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The request id (the client's when sane, else generated).
    pub request_id: String,
    /// The language of user-facing messages.
    pub lang: Lang,
}

impl RequestCtx {
    /// A successful envelope for this request.
    pub fn ok<T: serde::Serialize>(&self, data: T) -> HttpResponse {
        HttpResponse::Ok().json(Envelope::ok(data, self.request_id.as_str()))
    }
}

/// The router pattern a request matches (`None`: no route), found once by the context
/// middleware for the auth middleware and the metrics.
#[derive(Debug, Clone)]
pub struct RoutePattern(pub Option<Cow<'static, str>>);

use crate::routes::{FORWARD_ROOT, FORWARD_TAIL};

impl RoutePattern {
    /// Calls `f` with the request's pattern (looked up again when the middleware did not run).
    pub fn with<T>(req: &ServiceRequest, f: impl FnOnce(Option<&str>) -> T) -> T {
        if let Some(p) = req.extensions().get::<RoutePattern>() {
            return f(p.0.as_deref());
        }
        f(req.match_pattern().as_deref())
    }

    /// The pattern of a request. The router matches patterns with regexes; the forwarding
    /// routes — most of the traffic — are recognised without: `/api/{resource}…` where a service
    /// owns `resource` (service routes never shadow the gateway's own resources; and were one
    /// to, the forwarding rule, viewer for reads and operator otherwise, is the strictest).
    pub fn of(req: &ServiceRequest, registry: Option<&registry::Registry>) -> RoutePattern {
        if let (Some(rest), Some(registry)) = (req.path().strip_prefix("/api/"), registry) {
            let (resource, tail) = match rest.split_once('/') {
                Some((resource, _)) => (resource, true),
                None => (rest, false),
            };
            let plain = !resource.is_empty()
                && resource.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if plain && registry.route(resource).is_some() {
                return RoutePattern(Some(Cow::Borrowed(if tail { FORWARD_TAIL } else { FORWARD_ROOT })));
            }
        }
        RoutePattern(req.match_pattern().map(Cow::Owned))
    }
}

/// The downstream service a request went to, for the access log.
#[derive(Debug, Clone)]
pub struct ServiceTag(pub std::sync::Arc<registry::ServiceConfig>);

impl FromRequest for RequestCtx {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<RequestCtx>()
            .cloned()
            .unwrap_or_else(|| RequestCtx { request_id: new_request_id(), lang: Lang::default() });
        std::future::ready(Ok(ctx))
    }
}

/// A fresh request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a client-sent request id is safe to echo and log: 1–128 of `[A-Za-z0-9._:-]`.
pub fn sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// The middleware (outermost): sets up [`RequestCtx`], renders error envelopes, adds
/// `X-Request-Id`, and logs the access line.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let lang = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default();
    let ctx = RequestCtx { request_id, lang };
    req.extensions_mut().insert(ctx.clone());
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    let metrics = state.as_ref().map(|s| s.metrics.clone());
    // Once per request, for auth and metrics.
    let pattern = RoutePattern::of(&req, state.as_ref().map(|s| &s.registry));
    req.extensions_mut().insert(pattern);

    // Inner middleware and handlers turn their errors into responses, so an `Err` here is
    // actix's own; it is rendered by actix without our envelope details.
    let res = next.call(req).await?.map_into_boxed_body();
    let report = res.response().extensions().get::<ProblemReport>().cloned();
    let mut res = match report {
        Some(report) => {
            if let Some(cause) = &report.cause {
                // Trouble downstream is the services' (and is expected while one is down).
                if report.problem == gateway_core::Problem::Internal {
                    log::error!("request {} failed: {}", ctx.request_id, cause);
                } else {
                    log::warn!("request {} failed: {}", ctx.request_id, cause);
                }
            }
            let (req, old) = res.into_parts();
            let mut fresh = crate::edge::error::problem_response(&report.problem, ctx.lang, &ctx.request_id);
            for (name, value) in old.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    fresh.headers_mut().append(name.clone(), value.clone());
                }
            }
            ServiceResponse::new(req, fresh)
        }
        None => res,
    };
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    let http_req = res.request();
    let service = http_req.extensions().get::<ServiceTag>().map(|t| t.0.clone());
    let status = res.status().as_u16();
    let latency = started.elapsed();
    if let Some(metrics) = metrics {
        let pattern = http_req.extensions_mut().remove::<RoutePattern>().and_then(|p| p.0);
        metrics.request(http_req.method(), pattern, status, latency);
    }
    log::info!(
        target: "access",
        "{} {}{}{} {} {:.2}ms rid={} service={}",
        http_req.method(),
        http_req.path(),
        if http_req.query_string().is_empty() { "" } else { "?" },
        redacted_query(http_req.query_string()),
        status,
        latency.as_secs_f64() * 1000.0,
        ctx.request_id,
        service.as_ref().map_or("-", |s| s.name.as_str()),
    );
    Ok(res)
}

/// The query string as the access log shows it: the values of `ticket` and `token` (whatever
/// their case or percent-encoding) replaced by `***`, so that no log line carries a secret.
pub(crate) fn redacted_query(query: &str) -> Cow<'_, str> {
    fn secret(pair: &str) -> bool {
        let key = pair.split('=').next().unwrap_or("");
        let key: Cow<'_, str> = if key.contains(['%', '+']) {
            form_urlencoded::parse(key.as_bytes()).next().map_or(Cow::Borrowed(""), |(k, _)| Cow::Owned(k.into_owned()))
        } else {
            Cow::Borrowed(key)
        };
        key.eq_ignore_ascii_case("ticket") || key.eq_ignore_ascii_case("token")
    }
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|p| {
            if secret(p) { Cow::Owned(format!("{}=***", p.split('=').next().unwrap_or(""))) } else { Cow::Borrowed(p) }
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_dropped_from_logged_queries() {
        for (query, logged) in [
            ("", ""),
            ("topics=tick", "topics=tick"),
            ("topics=system&ticket=tk_abc", "topics=system&ticket=***"),
            ("token=secret&a=1", "token=***&a=1"),
            ("TOKEN=x&Ticket=y", "TOKEN=***&Ticket=***"),
            ("%74oken=x", "%74oken=***"),
            ("ticket", "ticket=***"),
            ("tokens=1&ticketing=2", "tokens=1&ticketing=2"),
        ] {
            assert_eq!(redacted_query(query), logged, "{query}");
        }
    }

    #[actix_rt::test]
    async fn the_quick_route_pattern_agrees_with_the_router() {
        use actix_web::dev::Service as _;
        #[allow(clippy::unwrap_used)]
        let mut data = registry::ServiceConfig::with_defaults(gateway_core::ServiceName::parse("data").unwrap(), 1);
        data.routes = vec!["ticks".into(), "ohlc".into()];
        let registry = registry::Registry::new(&[data]);
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        let app = actix_web::test::init_service(actix_web::App::new().configure(crate::routes::configure).wrap_fn(
            move |req, srv| {
                let quick = RoutePattern::of(&req, Some(&registry)).0.map(Cow::into_owned);
                log.borrow_mut().push((req.path().to_owned(), quick, req.match_pattern()));
                srv.call(req)
            },
        ))
        .await;
        let paths = [
            "/api/ticks",
            "/api/ticks/",
            "/api/ticks/latest",
            "/api/ohlc/a/b/c",
            "/api/%74icks/latest",
            "/api/nowhere/x",
            "/api/health",
            "/api/settings/symbols",
            "/api/services/data/logs",
            "/api/openapi.json",
            "/api/",
            "/api",
            "/metrics",
            "/",
        ];
        for path in paths {
            let req = actix_web::test::TestRequest::get().uri(path).to_request();
            let _ = actix_web::test::try_call_service(&app, req).await;
        }
        let seen = seen.borrow();
        assert_eq!(seen.len(), paths.len());
        for (path, quick, router) in seen.iter() {
            assert_eq!(quick, router, "{path}");
        }
    }

    #[test]
    fn request_ids() {
        for good in ["abc", "1234-5678", "req_1.2:3", &"a".repeat(128)] {
            assert!(sane_request_id(good), "{good}");
        }
        for bad in ["", "a b", "x\ny", "é", &"a".repeat(129), "<script>"] {
            assert!(!sane_request_id(bad), "{bad:?}");
        }
        assert_eq!(new_request_id().len(), 32);
    }
}
