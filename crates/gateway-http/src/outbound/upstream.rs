//! Calls to downstream services: one pooled awc client per worker thread, deadlines, the one
//! retry of an idempotent GET that failed to connect, and the classification of failures into
//! 503 / 504 / 502 problems that name the service.

use std::time::Duration;

use actix_web::error::ParseError;
use actix_web::http::{Method, StatusCode, header};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;
use gateway_core::Problem;
use registry::ServiceConfig;

/// Largest downstream body the gateway accepts (bigger answers are a 502).
pub const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// How long an idle pooled connection to a service is reused.
pub const UPSTREAM_KEEP_ALIVE: Duration = Duration::from_secs(4);

/// The connect timeout of forwarded requests (`gateway.timers.upstream_connect_ms`), set once
/// at start before any worker makes its client; 5 s when never set.
static CONNECT_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the connect timeout of every worker's client (the first call wins).
pub fn set_connect_timeout(timeout: Duration) {
    let _ = CONNECT_TIMEOUT.set(timeout);
}

thread_local! {
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .connector(
            awc::Connector::new()
                .timeout(CONNECT_TIMEOUT.get().copied().unwrap_or(Duration::from_secs(5)))
                .limit(1024)
                // Below the idle timeout of the usual servers (actix-web, uvicorn: 5 s). awc
                // notices a pooled connection the service has closed, but not one it closes
                // while the request is being written; a POST failed that way is not retried.
                .conn_keep_alive(UPSTREAM_KEEP_ALIVE)
                .conn_lifetime(Duration::from_secs(300)),
        )
        .finish();
}

/// This worker's client (connections are pooled per worker).
pub fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}

/// A downstream answer.
#[derive(Debug)]
pub struct UpstreamReply {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

/// Why a call failed, before it is turned into a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens, or a pooled connection was found dead when the request went out: 503.
    Connect,
    /// The connection was closed or reset before any byte of an answer: 502 (a GET is retried
    /// once first, since nothing was answered).
    Reset,
    /// No complete answer within the deadline: 504.
    Timeout,
    /// The connection broke in the middle of the answer: 502.
    Broken,
    /// The answer is unusable (too large, or not JSON): 502.
    Invalid(StatusCode),
}

impl Failure {
    /// The user-facing problem for this failure of `service`.
    pub fn problem(self, service: &ServiceConfig, timeout: Duration) -> Problem {
        let name = service.display_name.clone();
        match self {
            Failure::Connect => Problem::ServiceUnavailable { service: name },
            Failure::Timeout => Problem::UpstreamTimeout {
                service: name,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            Failure::Reset | Failure::Broken => Problem::UpstreamInvalid { service: name, status: None },
            Failure::Invalid(status) => Problem::UpstreamInvalid { service: name, status: Some(status.as_u16()) },
        }
    }

    /// A short label for metrics and `meta.sources`.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "unavailable",
            Failure::Timeout => "timeout",
            Failure::Reset | Failure::Broken | Failure::Invalid(_) => "error",
        }
    }

    /// Whether a GET may be sent again: nothing was answered.
    fn retryable(self) -> bool {
        matches!(self, Failure::Connect | Failure::Reset)
    }
}

fn classify(e: &SendRequestError) -> Failure {
    match e {
        SendRequestError::Connect(ConnectError::Timeout) | SendRequestError::Timeout => Failure::Timeout,
        SendRequestError::Connect(_) => Failure::Connect,
        // A pooled keep-alive connection the service closed (e.g. it restarted): nothing was
        // processed, so this counts as a connect failure.
        SendRequestError::Send(_) => Failure::Connect,
        // Closed or reset before the status line: the service died or dropped the request.
        SendRequestError::Response(ParseError::Io(_) | ParseError::Incomplete) => Failure::Reset,
        _ => Failure::Broken,
    }
}

/// One outgoing request.
pub struct Call<'a> {
    /// The service.
    pub service: &'a ServiceConfig,
    /// Method.
    pub method: Method,
    /// `/resource/tail?query`, already safe.
    pub path_and_query: &'a str,
    /// Headers to pass on (content type, accept, request id…).
    pub headers: Vec<(header::HeaderName, header::HeaderValue)>,
    /// Body (empty for none).
    pub body: Bytes,
    /// The whole budget of this call, connect to last byte.
    pub timeout: Duration,
}

/// Sends the call; a GET that failed to connect is retried once within the same deadline. One
/// timer covers the whole call (connect, request, answer and retry).
pub async fn send(call: Call<'_>) -> Result<UpstreamReply, Failure> {
    let deadline = tokio::time::Instant::now() + call.timeout;
    tokio::time::timeout_at(deadline, attempts(&call)).await.unwrap_or(Err(Failure::Timeout))
}

async fn attempts(call: &Call<'_>) -> Result<UpstreamReply, Failure> {
    let (host, port, path) = (&call.service.host, call.service.port, call.path_and_query);
    let url = if host.contains(':') {
        format!("http://[{host}]:{port}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    };
    let retries = if call.method == Method::GET { 1 } else { 0 };
    let mut attempt = 0;
    loop {
        let mut req = client().request(call.method.clone(), &url);
        for (name, value) in &call.headers {
            req = req.insert_header((name.clone(), value.clone()));
        }
        let sent = if call.body.is_empty() && call.method == Method::GET {
            req.send().await
        } else {
            req.send_body(call.body.clone()).await
        };
        match sent {
            Ok(mut res) => {
                let status = res.status();
                let body = match res.body().limit(MAX_UPSTREAM_BODY).await {
                    Ok(body) => body,
                    Err(PayloadError::Overflow) => {
                        log::warn!("{} answered more than {MAX_UPSTREAM_BODY} bytes", call.service.name);
                        return Err(Failure::Invalid(status));
                    }
                    Err(e) => {
                        log::debug!("reading the answer of {} failed: {e}", call.service.name);
                        return Err(Failure::Broken);
                    }
                };
                return Ok(UpstreamReply { status, body });
            }
            Err(e) => {
                let failure = classify(&e);
                log::debug!("{} {} failed: {e} ({failure:?})", call.method, url);
                if failure.retryable() && attempt < retries {
                    attempt += 1;
                    continue;
                }
                return Err(failure);
            }
        }
    }
}
