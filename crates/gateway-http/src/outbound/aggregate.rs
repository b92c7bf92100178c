//! `GET /api/dashboard` (SPEC §5): parts fetched in parallel within one 2 s budget, failed parts
//! `null` (never omitted), `meta` with per-source status and latency, and the sources suspected
//! of hanging, which are not waited on until a background trial finds them answering again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use gateway_core::{Envelope, Problem, ServiceKind, ServiceStatus, SubState};
use parking_lot::Mutex;
use registry::{ServiceConfig, ServiceState};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::edge::context::RequestCtx;
use crate::outbound::upstream::{self, Call, Failure};
use crate::state::AppState;

/// The overall budget of one dashboard request (`gateway.timers.dashboard_budget_ms`).
fn budget(state: &AppState) -> Duration {
    state.config.gateway.timers.dashboard_budget
}

/// (part name, resource that finds the owning service, path on that service)
const PARTS: [(&str, &str, &str); 4] = [
    ("account", "account", "/account"),
    ("positions", "positions", "/positions"),
    ("strategies", "strategies", "/strategies"),
    ("patterns", "patterns", "/patterns/latest"),
];

/// The resources whose services the dashboard reads.
pub(crate) fn resources() -> impl Iterator<Item = &'static str> {
    PARTS.iter().map(|(_, resource, _)| *resource)
}

/// How one source of the dashboard did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = DashboardSource)]
pub struct SourceStatus {
    /// `ok`, `timeout`, `unresponsive`, `unavailable` or `error`.
    #[schema(schema_with = source_status)]
    pub status: &'static str,
    /// Time spent.
    pub latency_ms: u64,
    /// The user-facing reason, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The schema of [`SourceStatus::status`].
fn source_status() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["ok", "timeout", "unresponsive", "unavailable", "error"]))
}

struct PartResult {
    part: &'static str,
    service: String,
    data: Option<Value>,
    source: SourceStatus,
    problem: Option<Problem>,
}

/// What one call of a part came to.
enum Fetched {
    /// The part's data (a downstream envelope's `data`).
    Data(Option<Value>),
    /// Why there is none: the `meta` status, and the problem.
    Failed(&'static str, Problem),
}

impl Fetched {
    fn timed_out(&self) -> bool {
        matches!(self, Fetched::Failed(_, Problem::UpstreamTimeout { .. }))
    }
}

/// What the registry shows of a service's instance: a change of any of these clears its
/// suspicion (restart, new instance, status change). Check results are left out on purpose:
/// they change with every probe.
#[derive(Debug, Clone, PartialEq)]
struct Instance {
    status: ServiceStatus,
    sub_state: Option<SubState>,
    kind: ServiceKind,
    pid: Option<u32>,
    restarts: u32,
}

impl Instance {
    fn of(state: &ServiceState) -> Instance {
        Instance {
            status: state.status,
            sub_state: state.sub_state,
            kind: state.kind,
            pid: state.pid,
            restarts: state.restarts,
        }
    }
}

/// Sources of the dashboard suspected of hanging: one of their parts ran out of time, while the
/// service may still be online (its `/health` answers). The dashboard does not wait on a suspect:
/// its parts are `null` at once (`unresponsive`), and at most one background trial per source
/// finds out whether it answers again. Calls already in flight to a source when it becomes
/// suspect are given up at that moment, so no dashboard request waits longer than the first one
/// that found the source hanging. A trial that is not a timeout clears the suspicion, and so
/// does any change of the service's instance in the registry. Forwarding knows nothing of this.
#[derive(Debug, Default)]
pub struct Suspects {
    inner: Mutex<SuspectTable>,
    /// Woken whenever a source becomes suspect.
    marked: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct SuspectTable {
    by_service: HashMap<String, Suspect>,
    next_epoch: u64,
}

#[derive(Debug)]
struct Suspect {
    /// The instance that hung.
    instance: Instance,
    /// The deadline it missed.
    timeout: Duration,
    /// Whether a trial is in flight.
    trial: bool,
    /// Tells this suspicion from a later one of the same service, for a trial's verdict.
    epoch: u64,
}

/// Whether the dashboard calls a source now.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Not suspected: call it.
    Call,
    /// Suspected of hanging on `timeout`: do not wait; start the trial with this epoch, if any.
    Skip { timeout: Duration, trial: Option<u64> },
}

impl Suspects {
    /// Whether to call `service` (whose instance is now `instance`); claims the trial when none
    /// is in flight.
    fn verdict(&self, service: &str, instance: &Instance) -> Verdict {
        let mut table = self.inner.lock();
        let Some(suspect) = table.by_service.get_mut(service) else { return Verdict::Call };
        if suspect.instance != *instance {
            log::info!("{service} changed in the registry; the dashboard waits on it again");
            table.by_service.remove(service);
            return Verdict::Call;
        }
        let trial = (!suspect.trial).then(|| {
            suspect.trial = true;
            suspect.epoch
        });
        Verdict::Skip { timeout: suspect.timeout, trial }
    }

    /// `service` ran out of `timeout` on a call started while `before` was its instance; `now` is
    /// its instance at the timeout. A call to an instance that has gone since proves nothing.
    fn timed_out(&self, service: &str, before: &Instance, now: Option<&Instance>, timeout: Duration) {
        if now != Some(before) {
            return;
        }
        let mut table = self.inner.lock();
        if table.by_service.contains_key(service) {
            return;
        }
        log::warn!(
            "{service} did not answer the dashboard within {timeout:?}; it is not waited on until it answers again"
        );
        table.next_epoch += 1;
        let epoch = table.next_epoch;
        table.by_service.insert(service.to_owned(), Suspect { instance: before.clone(), timeout, trial: false, epoch });
        drop(table);
        self.marked.notify_waiters();
    }

    /// Resolves when `service` is suspect (at once if it already is).
    async fn until_suspect(&self, service: &str) {
        loop {
            // Created before the check: a suspicion marked in between still wakes it.
            let marked = self.marked.notified();
            if self.inner.lock().by_service.contains_key(service) {
                return;
            }
            marked.await;
        }
    }

    /// The verdict of the trial of suspicion `epoch`: still hanging, or not (answered, or failed
    /// at once).
    fn trial_done(&self, service: &str, epoch: u64, hung: bool) {
        let mut table = self.inner.lock();
        let Some(suspect) = table.by_service.get_mut(service) else { return };
        if suspect.epoch != epoch {
            return;
        }
        if hung {
            suspect.trial = false;
        } else {
            log::info!("{service} answers the dashboard again");
            table.by_service.remove(service);
        }
    }
}

/// The deadline of one part of `service`.
fn part_timeout(state: &AppState, service: &ServiceConfig) -> Duration {
    budget(state).min(service.request_timeout)
}

async fn fetch_part(
    state: &web::Data<AppState>,
    ctx: &RequestCtx,
    part: &'static str,
    resource: &str,
    path: &'static str,
) -> Option<PartResult> {
    let service = state.registry.route(resource)?;
    let name = service.name.as_str();
    let started = Instant::now();
    let timeout = part_timeout(state, &service);
    let instance = state.registry.state(name).map(|s| Instance::of(&s));
    let fetched = match &instance {
        // Fast fail: a service known to be down costs nothing.
        Some(i) if i.status.accepts_requests() => match state.suspects.verdict(name, i) {
            Verdict::Call => {
                let fetched = tokio::select! {
                    fetched = call(state, &service, path, timeout, &ctx.request_id) => fetched,
                    // Another request found it hanging meanwhile: do not wait out the deadline.
                    () = state.suspects.until_suspect(name) => unresponsive(&service, timeout),
                };
                if fetched.timed_out() {
                    let now = state.registry.state(name).map(|s| Instance::of(&s));
                    state.suspects.timed_out(name, i, now.as_ref(), timeout);
                }
                fetched
            }
            Verdict::Skip { timeout, trial } => {
                if let Some(epoch) = trial {
                    start_trial(state, &service, epoch, &ctx.request_id);
                }
                unresponsive(&service, timeout)
            }
        },
        _ => Fetched::Failed(Failure::Connect.label(), Failure::Connect.problem(&service, timeout)),
    };
    let latency_ms = millis(started.elapsed());
    let (data, source, problem) = match fetched {
        Fetched::Data(data) => (data, SourceStatus { status: "ok", latency_ms, error: None }, None),
        Fetched::Failed(status, problem) => {
            let error = Some(problem.message(ctx.lang));
            (None, SourceStatus { status, latency_ms, error }, Some(problem))
        }
    };
    Some(PartResult { part, service: service.name.to_string(), data, source, problem })
}

/// A part not waited on: its source is suspected of hanging on `timeout`.
fn unresponsive(service: &ServiceConfig, timeout: Duration) -> Fetched {
    let timeout_ms = millis(timeout);
    Fetched::Failed("unresponsive", Problem::UpstreamUnresponsive { service: service.display_name.clone(), timeout_ms })
}

/// One call of a part's path on `service`, with metrics and the passive health check.
async fn call(state: &AppState, service: &ServiceConfig, path: &str, timeout: Duration, request_id: &str) -> Fetched {
    let started = Instant::now();
    let name = service.name.as_str();
    let mut headers = Vec::new();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(request_id) {
        headers.push((crate::edge::context::REQUEST_ID, v));
    }
    let call = Call { service, method: Method::GET, path_and_query: path, headers, body: Default::default(), timeout };
    let reply = match upstream::send(call).await {
        Ok(r) => r,
        Err(f) => {
            state.metrics.upstream_failed(name, f.label());
            if let Some(supervisor) = &state.supervisor {
                supervisor.probe_now(name);
            }
            return Fetched::Failed(f.label(), f.problem(service, timeout));
        }
    };
    state.metrics.upstream_answered(name, started.elapsed());
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if !reply.status.is_success() || parsed.is_none() {
        let (kind, problem) = if reply.status.is_success() {
            (
                "invalid",
                Problem::UpstreamInvalid { service: service.display_name.clone(), status: Some(reply.status.as_u16()) },
            )
        } else {
            let detail = format!("HTTP {}", reply.status.as_u16());
            let kind = if reply.status.is_server_error() { "status_5xx" } else { "status_4xx" };
            (kind, Problem::UpstreamError { service: service.display_name.clone(), detail })
        };
        state.metrics.upstream_failed(name, kind);
        return Fetched::Failed("error", problem);
    }
    // A downstream envelope contributes its `data`.
    Fetched::Data(match parsed {
        Some(Value::Object(mut obj))
            if obj.get("success").is_some_and(Value::is_boolean) && obj.contains_key("data") =>
        {
            obj.remove("data")
        }
        other => other,
    })
}

/// Calls every part of a suspect source in the background, on this worker, and reports whether
/// any of them still ran out of time. The dashboard request that started it does not wait.
fn start_trial(state: &web::Data<AppState>, service: &Arc<ServiceConfig>, epoch: u64, request_id: &str) {
    let (state, service, request_id) = (state.clone(), service.clone(), request_id.to_owned());
    actix_rt::spawn(async move {
        let timeout = part_timeout(&state, &service);
        let paths = PARTS
            .iter()
            .filter(|(_, resource, _)| state.registry.route(resource).is_some_and(|s| s.name == service.name));
        let calls = paths.map(|(_, _, path)| call(&state, &service, path, timeout, &request_id));
        let hung = join_all(calls).await.iter().any(Fetched::timed_out);
        state.suspects.trial_done(service.name.as_str(), epoch, hung);
    });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn dashboard(state: web::Data<AppState>, ctx: RequestCtx) -> HttpResponse {
    let results =
        join_all(PARTS.iter().map(|(part, resource, path)| fetch_part(&state, &ctx, part, resource, path))).await;
    let mut data = Map::new();
    let mut sources: BTreeMap<String, SourceStatus> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut attempted = 0;
    for (part, _, _) in PARTS {
        data.insert(part.to_owned(), Value::Null);
    }
    for r in results.into_iter().flatten() {
        attempted += 1;
        data.insert(r.part.to_owned(), r.data.unwrap_or(Value::Null));
        if let Some(p) = r.problem {
            failed.push(p);
        }
        // One entry per service: the worst of its parts, the longest latency.
        match sources.get_mut(&r.service) {
            Some(existing) => {
                existing.latency_ms = existing.latency_ms.max(r.source.latency_ms);
                if existing.status == "ok" && r.source.status != "ok" {
                    existing.status = r.source.status;
                    existing.error = r.source.error;
                }
            }
            None => {
                sources.insert(r.service, r.source);
            }
        }
    }
    data.insert("services".into(), serde_json::to_value(state.registry.entries()).unwrap_or(Value::Null));
    let complete = failed.is_empty();
    data.insert("meta".into(), serde_json::json!({ "complete": complete, "sources": sources }));

    let all_failed = attempted > 0 && failed.len() == attempted;
    let (status, envelope) = if all_failed {
        let names: Vec<String> = failed
            .iter()
            .filter_map(|p| match p {
                Problem::ServiceUnavailable { service }
                | Problem::UpstreamTimeout { service, .. }
                | Problem::UpstreamUnresponsive { service, .. }
                | Problem::UpstreamError { service, .. }
                | Problem::UpstreamInvalid { service, .. } => Some(service.clone()),
                _ => None,
            })
            .fold(Vec::new(), |mut acc, n| {
                if !acc.contains(&n) {
                    acc.push(n);
                }
                acc
            });
        let problem = Problem::ServiceUnavailable { service: names.join(", ") };
        let mut env = Envelope::failure(&problem, ctx.lang, ctx.request_id.as_str());
        env.data = Some(Value::Object(data));
        (StatusCode::SERVICE_UNAVAILABLE, env)
    } else {
        (StatusCode::OK, Envelope::ok(Value::Object(data), ctx.request_id.as_str()))
    };
    HttpResponse::build(status)
        .insert_header(("X-Gateway-Complete", if complete { "true" } else { "false" }))
        .json(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(pid: u32) -> Instance {
        Instance {
            status: ServiceStatus::Online,
            sub_state: None,
            kind: ServiceKind::Managed,
            pid: Some(pid),
            restarts: 0,
        }
    }

    const T: Duration = Duration::from_secs(2);

    fn skip(trial: Option<u64>) -> Verdict {
        Verdict::Skip { timeout: T, trial }
    }

    #[actix_rt::test]
    async fn a_call_in_flight_is_released_when_its_source_becomes_suspect() {
        let s = std::sync::Arc::new(Suspects::default());
        let waiting = actix_rt::spawn({
            let s = s.clone();
            async move { s.until_suspect("pattern").await }
        });
        tokio::task::yield_now().await;
        s.timed_out("mt5", &online(2), Some(&online(2)), T);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another source's suspicion does not release it");
        s.timed_out("pattern", &online(1), Some(&online(1)), T);
        let released = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(released.is_ok_and(|r| r.is_ok()), "released when it becomes suspect");
        // Already suspect: at once.
        let at_once = tokio::time::timeout(Duration::from_secs(5), s.until_suspect("pattern")).await;
        assert!(at_once.is_ok(), "already suspect");
    }

    #[test]
    fn a_timeout_makes_a_suspect_with_one_trial_at_a_time() {
        let s = Suspects::default();
        assert_eq!(s.verdict("pattern", &online(1)), Verdict::Call);
        s.timed_out("pattern", &online(1), Some(&online(1)), T);
        s.timed_out("pattern", &online(1), Some(&online(1)), T);
        assert_eq!(s.verdict("pattern", &online(1)), skip(Some(1)), "the first skip claims the trial");
        assert_eq!(s.verdict("pattern", &online(1)), skip(None), "single flight");
        assert_eq!(s.verdict("mt5", &online(2)), Verdict::Call, "other sources are not affected");
        s.trial_done("pattern", 1, true);
        assert_eq!(s.verdict("pattern", &online(1)), skip(Some(1)), "a hung trial allows the next one");
        s.trial_done("pattern", 1, false);
        assert_eq!(s.verdict("pattern", &online(1)), Verdict::Call, "an answered trial clears it");
    }

    #[test]
    fn a_registry_change_clears_the_suspicion_and_outdates_its_trial() {
        let s = Suspects::default();
        s.timed_out("pattern", &online(1), Some(&online(1)), T);
        assert_eq!(s.verdict("pattern", &online(1)), skip(Some(1)));
        let restarted = Instance { restarts: 1, ..online(7) };
        assert_eq!(s.verdict("pattern", &restarted), Verdict::Call, "a new instance is waited on");
        s.timed_out("pattern", &restarted, Some(&restarted), T);
        s.trial_done("pattern", 1, false);
        assert_eq!(s.verdict("pattern", &restarted), skip(Some(2)), "the old trial says nothing of the new one");
        let degraded = Instance { status: ServiceStatus::Starting, ..restarted.clone() };
        assert_eq!(s.verdict("pattern", &degraded), Verdict::Call, "a status change clears it");
    }

    #[test]
    fn a_timeout_of_a_gone_instance_proves_nothing() {
        let s = Suspects::default();
        s.timed_out("pattern", &online(1), Some(&online(2)), T);
        s.timed_out("pattern", &online(1), None, T);
        assert_eq!(s.verdict("pattern", &online(2)), Verdict::Call);
    }
}
