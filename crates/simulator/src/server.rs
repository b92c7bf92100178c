//! The HTTP service of every role: common routes, the access log, request faults, and [`SimServer`].

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServerHandle, Service as _};
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use crate::args::{Role, SimArgs};
use crate::data::{self, DataState};
use crate::error::{ApiError, SimError};
use crate::events::{EventBus, events_ws};
use crate::mt5::{self, Mt5State};
use crate::pattern::{self, PatternState};
use crate::settings::SettingsUpdate;
use crate::strategy::{self, StrategyState};

/// A JSON response from pre-serialised bytes.
pub(crate) fn json_bytes(body: Bytes) -> HttpResponse {
    HttpResponse::Ok().insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json"))).body(body)
}

/// Parses a JSON request body (whatever its content type); errors name what is wrong.
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid body: {e}")))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not found"))
}

/// A resource whose other methods answer 405 in JSON.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Writes one access-log line (`METHOD PATH STATUS LATENCY`) to stdout, flushed at the newline.
fn access_line(method: &str, path: &str, status: u16, elapsed: Duration) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the supervisor went away) must not take the service down.
    let _ = writeln!(out, "{method} {path} {status} {:.3}ms", elapsed.as_secs_f64() * 1000.0);
}

/// The role-specific state behind the common routes.
#[derive(Clone)]
enum RoleState {
    Data(Arc<DataState>),
    Mt5(Arc<Mt5State>),
    Strategy(Arc<StrategyState>),
    Pattern(Arc<PatternState>),
}

impl RoleState {
    fn new(args: &SimArgs, symbols: &[String], bus: EventBus) -> RoleState {
        match args.role {
            Role::Data => RoleState::Data(Arc::new(DataState::new(symbols, args.tick_rate, bus))),
            Role::Mt5 => RoleState::Mt5(Arc::new(Mt5State::new(symbols, bus))),
            Role::Strategy => RoleState::Strategy(Arc::new(StrategyState::new(bus))),
            Role::Pattern => RoleState::Pattern(Arc::new(PatternState::new(symbols))),
        }
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        match self {
            RoleState::Data(s) => data::configure(cfg, Arc::clone(s)),
            RoleState::Mt5(s) => mt5::configure(cfg, Arc::clone(s)),
            RoleState::Strategy(s) => strategy::configure(cfg, Arc::clone(s)),
            RoleState::Pattern(s) => pattern::configure(cfg, Arc::clone(s)),
        }
    }

    fn apply_settings(&self, update: &SettingsUpdate) -> Result<(), ApiError> {
        match self {
            RoleState::Data(s) => s.apply_settings(update),
            RoleState::Mt5(s) => s.apply_settings(update),
            RoleState::Strategy(_) => Ok(()),
            RoleState::Pattern(s) => s.apply_settings(update),
        }
    }

    fn spawn_tasks(&self) -> Vec<JoinHandle<()>> {
        match self {
            RoleState::Data(s) => s.spawn_tasks(),
            RoleState::Mt5(s) => s.spawn_tasks(),
            RoleState::Strategy(s) => s.spawn_tasks(),
            RoleState::Pattern(_) => Vec::new(),
        }
    }
}

/// What the common routes need.
struct Common {
    health_body: Bytes,
    /// `GET /openapi.json`: the role's contract, or the bytes of `--openapi-file`.
    contract: Bytes,
    started: Instant,
    hang_health_after: Option<Duration>,
    slow_health: Option<Duration>,
    role: RoleState,
}

/// `GET /health`: `{"status":"ok","service":ROLE,"instance":UUID}`, subject to the health faults.
async fn health(common: web::Data<Common>) -> HttpResponse {
    if let Some(after) = common.hang_health_after
        && common.started.elapsed() >= after
    {
        std::future::pending::<()>().await;
    }
    if let Some(d) = common.slow_health {
        actix_rt::time::sleep(d).await;
    }
    json_bytes(common.health_body.clone())
}

/// `GET /openapi.json`: the service's contract.
async fn openapi(common: web::Data<Common>) -> HttpResponse {
    json_bytes(common.contract.clone())
}

/// Every route of a role's service: the common ones and the role's own.
fn routes(cfg: &mut web::ServiceConfig, role: &RoleState) {
    cfg.service(resource("/health").route(web::get().to(health)))
        .service(resource("/settings").route(web::post().to(settings)))
        .service(resource("/events").route(web::get().to(events_ws)))
        .service(resource("/openapi.json").route(web::get().to(openapi)));
    role.configure(cfg);
}

/// The contract served at `/openapi.json`.
fn contract_bytes(args: &SimArgs) -> Result<Bytes, SimError> {
    match &args.openapi_file {
        Some(path) => Ok(Bytes::from(std::fs::read(path)?)),
        None => Ok(Bytes::from(serde_json::to_vec(&crate::contract::document(args.role)).unwrap_or_default())),
    }
}

/// `POST /settings`: `{"changed": {…}, "all": {…}}` → `{"applied": true}`.
async fn settings(common: web::Data<Common>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let update = SettingsUpdate::parse(&body)?;
    common.role.apply_settings(&update)?;
    Ok(json_bytes(Bytes::from_static(b"{\"applied\":true}")))
}

/// How long a stop waits for requests in flight (a hung `/health` never finishes).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts requests from arrival until their response body is done; wakes a waiter at zero.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(Arc::clone(self))
    }

    /// Resolves once no request is in flight.
    async fn idle(&self) {
        loop {
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in flight until the body is done
/// (sent, or dropped with the connection); for `/events` that is until the socket closes.
struct Guarded<B> {
    inner: B,
    _guard: InFlightGuard,
}

impl<B: MessageBody + Unpin> MessageBody for Guarded<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        let Guarded { inner, _guard } = self;
        inner.try_into_bytes().map_err(|inner| Guarded { inner, _guard })
    }
}

/// A running simulated service (from [`serve`]): its address, its instance id, and a way to stop it.
pub struct SimServer {
    addr: SocketAddr,
    role: Role,
    instance: String,
    handle: ServerHandle,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    in_flight: Arc<InFlight>,
}

impl SimServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ADDR` of the service.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The role it plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The instance id `/health` reports (new at every start).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The actix server handle (pause, resume, stop).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    fn halt_background(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Stops the service gracefully: stops accepting, closes `/events` sockets and background
    /// tasks, waits for in-flight requests (at most one second), then closes every
    /// connection. Idle keep-alive connections do not hold it up (actix's own graceful stop
    /// would wait a full second for them).
    pub async fn stop(mut self) {
        self.handle.pause().await;
        self.halt_background();
        if actix_rt::time::timeout(DRAIN_TIMEOUT, self.in_flight.idle()).await.is_err() {
            log::info!("{}: requests still in flight after {DRAIN_TIMEOUT:?}, closing anyway", self.role);
        }
        self.handle.stop(false).await;
        if let Some(server) = self.server.take()
            && let Ok(Err(e)) = server.await
        {
            log::warn!("{} server stopped with an error: {e}", self.role);
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.halt_background();
    }
}

/// Starts a simulated service on `listener` inside the current actix System and returns at once.
///
/// For in-process use (tests, embedding): no signal handling, and the process-level fault flags
/// (`--startup-delay-ms`, `--fail-startup`, `--crash-after-ms`, `--ignore-sigterm`,
/// `--spawn-child`, `--hold-port`) are ignored; the health, response-delay and fail-requests
/// faults work.
/// Must be called from within an actix System (e.g. `#[actix_web::test]`).
pub async fn serve(args: SimArgs, listener: TcpListener) -> std::io::Result<SimServer> {
    start(&args, listener).map_err(std::io::Error::from)
}

pub(crate) fn start(args: &SimArgs, listener: TcpListener) -> Result<SimServer, SimError> {
    let symbols = args.symbol_set()?;
    let addr = listener.local_addr()?;
    let instance = uuid::Uuid::new_v4().to_string();
    let health_body = format!(r#"{{"status":"ok","service":"{}","instance":"{instance}"}}"#, args.role.as_str());
    let bus = EventBus::default();
    let role = RoleState::new(args, &symbols, bus.clone());
    let background = role.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let common = web::Data::new(Common {
        health_body: Bytes::from(health_body),
        contract: contract_bytes(args)?,
        started: Instant::now(),
        hang_health_after: SimArgs::after(args.hang_health_after_ms),
        slow_health: SimArgs::delay(args.slow_health_ms),
        role: role.clone(),
    });
    let bus = web::Data::new(bus);
    let shutdown_rx = web::Data::new(shutdown_rx);
    let log_requests = !args.quiet;
    let response_delay = SimArgs::delay(args.response_delay_ms);
    let fail_requests = args.fail_requests;

    let in_flight = Arc::new(InFlight::default());
    let counter = Arc::clone(&in_flight);
    let server = HttpServer::new(move || {
        let role = role.clone();
        let in_flight = Arc::clone(&counter);
        App::new()
            .app_data(common.clone())
            .app_data(bus.clone())
            .app_data(shutdown_rx.clone())
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let guard = in_flight.enter();
                let delay = if req.path() == "/health" { None } else { response_delay };
                let fail = fail_requests && !matches!(req.path(), "/health" | "/settings" | "/events");
                // `--fail-requests` answers before the route runs, so nothing changes state.
                let call = if fail {
                    let res = actix_web::ResponseError::error_response(&ApiError::Internal);
                    futures_util::future::Either::Left(req.into_response(res))
                } else {
                    futures_util::future::Either::Right(srv.call(req))
                };
                async move {
                    let res = match call {
                        futures_util::future::Either::Left(res) => res,
                        futures_util::future::Either::Right(call) => call.await?.map_into_boxed_body(),
                    };
                    if let Some(d) = delay {
                        actix_rt::time::sleep(d).await;
                    }
                    // The supervisor's health probes (every few seconds) are not logged: they
                    // would fill the log tail an operator reads.
                    if log_requests && res.request().path() != "/health" {
                        let req = res.request();
                        access_line(req.method().as_str(), req.path(), res.status().as_u16(), started.elapsed());
                    }
                    Ok(res.map_body(|_, inner| Guarded { inner, _guard: guard }))
                }
            })
            .configure(|cfg| routes(cfg, &role))
            .default_service(web::to(not_found))
    })
    .workers(args.workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let server = actix_rt::spawn(server);
    let tasks = background.spawn_tasks();
    Ok(SimServer {
        addr,
        role: args.role,
        instance,
        handle,
        server: Some(server),
        tasks,
        shutdown: shutdown_tx,
        in_flight,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use actix_web::http::{Method, StatusCode};
    use actix_web::test as http;

    use super::*;

    /// Every pattern of a flat resource map (`Single("…")` in its `Debug` text: the simulator
    /// registers resources only, no scopes).
    fn patterns(rmap: &actix_web::dev::ResourceMap) -> BTreeSet<String> {
        let text = format!("{rmap:?}");
        text.split("Single(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|p| !p.is_empty()) // the root
            .map(str::to_owned)
            .collect()
    }

    fn concrete(pattern: &str) -> String {
        pattern.split('/').map(|s| if s.starts_with('{') { "1" } else { s }).collect::<Vec<_>>().join("/")
    }

    /// The contract is complete and true: every route the simulator registers, with exactly the
    /// methods it answers, is an operation of its `/openapi.json`, and nothing more.
    #[actix_web::test]
    async fn every_registered_route_and_method_is_in_the_contract() {
        for role in Role::ALL {
            let args = SimArgs::new(role);
            let bus = EventBus::default();
            let state = RoleState::new(&args, &args.symbol_set().unwrap(), bus.clone());
            let doc = crate::contract::document(role);
            let (_tx, rx) = watch::channel(false);
            let common = web::Data::new(Common {
                health_body: Bytes::from_static(b"{}"),
                contract: Bytes::from(serde_json::to_vec(&doc).unwrap()),
                started: Instant::now(),
                hang_health_after: None,
                slow_health: None,
                role: state.clone(),
            });
            let seen: Rc<RefCell<Option<actix_web::dev::ResourceMap>>> = Rc::default();
            let grab = seen.clone();
            let routed = state.clone();
            let app = http::init_service(
                App::new()
                    .app_data(common)
                    .app_data(web::Data::new(bus))
                    .app_data(web::Data::new(rx))
                    .configure(move |cfg| routes(cfg, &routed))
                    .default_service(web::to(not_found))
                    .wrap_fn(move |req, srv| {
                        *grab.borrow_mut() = Some(req.resource_map().clone());
                        srv.call(req)
                    }),
            )
            .await;
            let res = http::call_service(&app, http::TestRequest::get().uri("/openapi.json").to_request()).await;
            assert_eq!(res.status(), StatusCode::OK);
            let served: serde_json::Value = http::read_body_json(res).await;
            assert_eq!(served, doc, "{role}: /openapi.json serves the document");

            let registered = patterns(&seen.borrow().clone().unwrap());
            let paths = doc["paths"].as_object().unwrap();
            let documented: BTreeSet<String> = paths.keys().cloned().collect();
            assert_eq!(registered, documented, "{role}: registered routes vs the contract's paths");

            for pattern in &registered {
                for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                    if pattern == "/events" && method == Method::GET {
                        // A WebSocket upgrade: plain GET answers 400, it is routed all the same.
                        assert!(paths[pattern].get("get").is_some());
                        continue;
                    }
                    let req = http::TestRequest::default()
                        .method(method.clone())
                        .uri(&concrete(pattern))
                        .insert_header(("content-type", "application/json"))
                        .set_payload("{}")
                        .to_request();
                    let status = http::call_service(&app, req).await.status();
                    let answered = status != StatusCode::METHOD_NOT_ALLOWED;
                    let in_doc = paths[pattern].get(method.as_str().to_ascii_lowercase()).is_some();
                    assert_eq!(answered, in_doc, "{role}: {method} {pattern} answered {status}");
                }
            }
        }
    }
}
