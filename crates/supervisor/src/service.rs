//! One service's lifecycle, owned by one task on the supervisor thread: start/stop/restart
//! requests, the process exit, probe results and timers of a service all arrive here and are
//! handled one at a time, so no race can spawn a second copy or lose a status change.
//!
//! Phases of the task (the registry holds the status the API shows):
//! - `Idle`: no process of ours, nothing scheduled (stopped, error, offline without restart).
//! - `Starting`: spawned, probing fast until healthy or `startup_timeout_ms`.
//! - `Running`: our process, probed every `interval_ms` (online, or offline when unhealthy and
//!   the policy does not restart).
//! - `Backoff`: waiting for `next_restart_at`.
//! - `Watching`: an adopted or external service: probed, never signalled.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gateway_core::{ServiceKind, ServiceStatus, SubState};
use nix::sys::signal::Signal;
use registry::{
    HealthConfig, LastCheck, LastExit, PortConflictPolicy, Registry, RestartPolicy, ServiceConfig, ServiceEntry,
    ServiceState,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backoff::{BackoffPolicy, RestartSequence};
use crate::error::SupervisorError;
use crate::logs::{self, LogLine, ServiceLogs, Stream};
use crate::pidfile::{self, PidRecord};
use crate::probe::{self, HttpProbe, Prober};
use crate::unix;

/// While a fresh process is not yet listening, its port is polled this often…
const FAST_POLL: Duration = Duration::from_millis(2);
/// …for at most this long after the spawn; then every `startup_probe_interval_ms`.
const FAST_POLL_WINDOW: Duration = Duration::from_secs(2);
/// Passive checks (`probe_now`) closer together than this are coalesced into one probe.
const PROBE_COALESCE: Duration = Duration::from_millis(100);
/// Output lines quoted in `last_error` when a service dies while starting.
const LAST_LINES: usize = 5;
/// How long the pipes of a dead process may take to drain before its last lines are quoted.
const DRAIN_WAIT: Duration = Duration::from_millis(250);
/// How long a group may take to vanish after SIGKILL before we give up waiting (and log it).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a keeper asked to kill its service may take before the group gets SIGKILL directly.
const KEEPER_KILL_WAIT: Duration = Duration::from_secs(1);

/// A reply with the entry after the operation.
pub(crate) type Reply = oneshot::Sender<Result<ServiceEntry, SupervisorError>>;

/// What the handle and the supervisor's main task ask of a service task.
pub(crate) enum Command {
    /// Manual or automatic start (a no-op error when already running).
    Start(Reply),
    /// Manual stop.
    Stop(Reply),
    /// Stop if running, then start.
    Restart(Reply),
    /// Begin probing an external service.
    Monitor,
    /// A passive check: probe now (coalesced).
    ProbeNow,
    /// Stop whatever runs and end the task.
    Shutdown(oneshot::Sender<()>),
}

/// Settings shared by every service task.
#[derive(Clone)]
pub(crate) struct Context {
    pub registry: Registry,
    pub health: HealthConfig,
    pub run_dir: PathBuf,
}

enum Phase {
    Idle,
    Starting { spawned: Instant, deadline: Instant, listening: bool, next_probe: Instant, last_error: Option<String> },
    Running { next_probe: Instant },
    Backoff { until: Instant },
    Watching { next_probe: Instant },
}

struct Instance {
    /// The service's own process.
    pid: u32,
    /// Its keeper: our child, leader of the session and process group.
    pgid: u32,
    exit: oneshot::Receiver<io::Result<ExitStatus>>,
    readers: Vec<JoinHandle<()>>,
    /// Sequence number of this instance's first log line.
    log_mark: u64,
    pidfile: PathBuf,
}

enum ProbeOutcome {
    NotListening,
    Http(HttpProbe),
}

type ProbeFuture = Pin<Box<dyn Future<Output = ProbeOutcome>>>;

enum Event {
    Command(Option<Command>),
    Exited(io::Result<ExitStatus>),
    Probed(ProbeOutcome),
    Timer,
}

/// The task owning one service.
pub(crate) struct ServiceActor {
    name: String,
    config: Arc<ServiceConfig>,
    ctx: Context,
    logs: Arc<ServiceLogs>,
    probe_requested: Arc<AtomicBool>,
    rx: mpsc::UnboundedReceiver<Command>,
    seq: RestartSequence,
    kind: ServiceKind,
    phase: Phase,
    instance: Option<Instance>,
    prober: Prober,
    probe: Option<ProbeFuture>,
    probe_started: Option<Instant>,
    /// Consecutive failed health checks of the current instance.
    failures: u32,
}

impl ServiceActor {
    pub(crate) fn new(
        config: Arc<ServiceConfig>,
        ctx: Context,
        logs: Arc<ServiceLogs>,
        probe_requested: Arc<AtomicBool>,
        rx: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let seq = RestartSequence::new(
            BackoffPolicy::from_config(&config.backoff),
            config.max_failures,
            Duration::from_millis(config.failure_window_ms),
        );
        let prober = Prober::new(&config, Duration::from_millis(ctx.health.timeout_ms));
        ServiceActor {
            name: config.name.to_string(),
            kind: if config.is_external() { ServiceKind::External } else { ServiceKind::Managed },
            config,
            ctx,
            logs,
            probe_requested,
            rx,
            seq,
            phase: Phase::Idle,
            instance: None,
            prober,
            probe: None,
            probe_started: None,
            failures: 0,
        }
    }

    /// Runs until shut down (or until every sender is gone, which shuts down too).
    pub(crate) async fn run(mut self) {
        loop {
            let event = self.next_event().await;
            match event {
                Event::Command(None) => {
                    self.shutdown().await;
                    return;
                }
                Event::Command(Some(Command::Shutdown(done))) => {
                    self.shutdown().await;
                    let _ = done.send(());
                    return;
                }
                Event::Command(Some(cmd)) => self.command(cmd).await,
                Event::Exited(status) => self.exited(status).await,
                Event::Probed(outcome) => {
                    self.probe = None;
                    self.probed(outcome).await;
                }
                Event::Timer => self.timer().await,
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let wake = self.next_wake().map(tokio::time::Instant::from_std);
        let rx = &mut self.rx;
        let instance = &mut self.instance;
        let probe = &mut self.probe;
        let exit = async move {
            match instance.as_mut() {
                Some(i) => (&mut i.exit).await.unwrap_or_else(|_| Err(io::Error::other("process watcher ended"))),
                None => std::future::pending().await,
            }
        };
        let probed = async move {
            match probe.as_mut() {
                Some(p) => p.await,
                None => std::future::pending().await,
            }
        };
        let timer = async move {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            cmd = rx.recv() => Event::Command(cmd),
            status = exit => Event::Exited(status),
            outcome = probed => Event::Probed(outcome),
            () = timer => Event::Timer,
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let probing = self.probe.is_some();
        match &self.phase {
            Phase::Idle => None,
            Phase::Starting { deadline, next_probe, .. } => {
                Some(if probing { *deadline } else { (*deadline).min(*next_probe) })
            }
            Phase::Running { next_probe } | Phase::Watching { next_probe } => (!probing).then_some(*next_probe),
            Phase::Backoff { until } => Some(*until),
        }
    }

    // ---- commands ------------------------------------------------------------------------

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Start(reply) => {
                let r = self.start().await;
                let _ = reply.send(r);
            }
            Command::Stop(reply) => {
                let r = self.stop().await;
                let _ = reply.send(r);
            }
            Command::Restart(reply) => {
                let r = self.restart().await;
                let _ = reply.send(r);
            }
            Command::Monitor => {
                if self.kind == ServiceKind::External && matches!(self.phase, Phase::Idle) {
                    self.prober = self.new_prober();
                    self.failures = 0;
                    self.phase = Phase::Watching { next_probe: Instant::now() };
                    self.update(|s| {
                        s.status = ServiceStatus::Starting;
                        s.sub_state = None;
                    });
                }
            }
            Command::ProbeNow => {
                self.probe_requested.store(false, Ordering::Release);
                // A probe in flight answers the request; otherwise probe now, or at the end of
                // the coalescing window when the last probe started very recently.
                if self.probe.is_none()
                    && let Phase::Running { next_probe } | Phase::Watching { next_probe } = &mut self.phase
                {
                    let now = Instant::now();
                    let at = self.probe_started.map_or(now, |t| (t + PROBE_COALESCE).max(now));
                    if at < *next_probe {
                        log::debug!("{}: passive check, probing in {} ms", self.name, (at - now).as_millis());
                        *next_probe = at;
                    }
                }
            }
            Command::Shutdown(done) => {
                // Handled in `run`; kept for exhaustiveness.
                self.shutdown().await;
                let _ = done.send(());
            }
        }
    }

    fn ensure_managed(&self) -> Result<(), SupervisorError> {
        if self.kind == ServiceKind::Managed {
            Ok(())
        } else {
            Err(SupervisorError::NotManaged { service: self.config.display_name.clone() })
        }
    }

    async fn start(&mut self) -> Result<ServiceEntry, SupervisorError> {
        self.ensure_managed()?;
        if self.instance.is_some() {
            return Err(SupervisorError::AlreadyRunning { service: self.config.display_name.clone() });
        }
        // A manual start begins a new failure sequence and ends a crash loop.
        self.seq.reset();
        self.phase = Phase::Idle;
        self.probe = None;
        self.update(|s| {
            s.next_restart_at = None;
            s.sub_state = None;
        });
        self.launch().await?;
        Ok(self.entry())
    }

    async fn stop(&mut self) -> Result<ServiceEntry, SupervisorError> {
        self.ensure_managed()?;
        let status = self.status();
        if self.instance.is_none() && status == ServiceStatus::Stopped {
            return Err(SupervisorError::AlreadyStopped { service: self.config.display_name.clone() });
        }
        if matches!(self.phase, Phase::Backoff { .. }) {
            log::info!("{}: pending restart cancelled by stop", self.name);
        }
        self.phase = Phase::Idle;
        self.probe = None;
        self.stop_instance(true).await;
        self.set_stopped();
        Ok(self.entry())
    }

    async fn restart(&mut self) -> Result<ServiceEntry, SupervisorError> {
        self.ensure_managed()?;
        let was_running = self.instance.is_some();
        self.phase = Phase::Idle;
        self.probe = None;
        if was_running {
            self.stop_instance(true).await;
        }
        self.seq.reset();
        self.update(|s| {
            if was_running {
                s.restarts = s.restarts.saturating_add(1);
            }
            s.next_restart_at = None;
            s.sub_state = None;
        });
        self.launch().await?;
        Ok(self.entry())
    }

    async fn shutdown(&mut self) {
        self.probe = None;
        let waiting = matches!(self.phase, Phase::Backoff { .. });
        self.phase = Phase::Idle;
        if self.instance.is_some() {
            self.stop_instance(true).await;
            self.set_stopped();
        } else if waiting {
            self.set_stopped();
        }
    }

    fn set_stopped(&mut self) {
        self.failures = 0;
        self.update(|s| {
            s.status = ServiceStatus::Stopped;
            s.sub_state = None;
            s.pid = None;
            s.next_restart_at = None;
            s.consecutive_failures = 0;
        });
    }

    // ---- starting ------------------------------------------------------------------------

    /// Port check, then spawn, adopt or report the conflict.
    async fn launch(&mut self) -> Result<(), SupervisorError> {
        if probe::port_taken(&self.config) {
            self.port_in_use().await;
            return Ok(());
        }
        self.spawn_instance()
    }

    async fn port_in_use(&mut self) {
        let prober = self.new_prober();
        let answer = prober.http().await;
        let owner = unix::port_owner(self.config.port);
        let answers_as_us = answer.healthy && answer.service_field.as_deref() == Some(self.name.as_str());
        if answers_as_us && self.config.on_port_conflict == PortConflictPolicy::Adopt {
            let now = Instant::now();
            self.prober = prober;
            self.kind = ServiceKind::Adopted;
            self.failures = 0;
            self.seq.healthy(now);
            self.phase = Phase::Watching { next_probe: now + self.interval() };
            let pid = owner.as_ref().map(|o| o.pid);
            let check = last_check(&answer);
            self.update(|s| {
                s.status = ServiceStatus::Online;
                s.sub_state = Some(SubState::Adopted);
                s.kind = ServiceKind::Adopted;
                s.pid = pid;
                s.consecutive_failures = 0;
                s.last_check = Some(check);
                s.next_restart_at = None;
            });
            log::info!(
                "{}: adopted the instance already running on port {} (pid {})",
                self.name,
                self.config.port,
                pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
            );
            return;
        }
        let who = match &owner {
            Some(o) => format!("pid {} ({})", o.pid, o.command.as_deref().unwrap_or("command unknown")),
            None => "another process (owner not visible)".to_owned(),
        };
        let message = if answers_as_us {
            format!(
                "port {} is held by {who}, which answers as {}; set on_port_conflict = \"adopt\" to adopt it, or stop it and start again",
                self.config.port, self.name
            )
        } else {
            format!("port {} is held by {who}; free the port and start again", self.config.port)
        };
        log::warn!("{}: {message}", self.name);
        self.phase = Phase::Idle;
        self.update(|s| {
            s.status = ServiceStatus::Error;
            s.sub_state = Some(SubState::PortConflict);
            s.pid = None;
            s.next_restart_at = None;
            s.last_error = Some(message);
        });
    }

    fn spawn_instance(&mut self) -> Result<(), SupervisorError> {
        let program = self.config.command.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default();
        let spawned = match unix::spawn(&self.config) {
            Ok(s) => s,
            Err(source) => {
                let message = format!("cannot start `{program}`: {source}");
                log::error!("{}: {message}", self.name);
                self.update(|s| {
                    s.status = ServiceStatus::Error;
                    s.sub_state = None;
                    s.pid = None;
                    s.last_error = Some(message.clone());
                });
                if self.config.restart == RestartPolicy::Never {
                    self.phase = Phase::Idle;
                } else {
                    self.schedule_restart(ServiceStatus::Error, message);
                }
                return Err(SupervisorError::Spawn { service: self.config.display_name.clone(), program, source });
            }
        };
        let unix::Spawned { mut child, pid, pgid } = spawned;
        let log_mark = self.logs.next_seq();
        let mut readers = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push(actix_rt::spawn(logs::capture(out, Stream::Stdout, self.logs.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(actix_rt::spawn(logs::capture(err, Stream::Stderr, self.logs.clone())));
        }
        let (exit_tx, exit_rx) = oneshot::channel();
        actix_rt::spawn(async move {
            let _ = exit_tx.send(child.wait().await);
        });
        let pidfile = pidfile::path(&self.ctx.run_dir, &self.name);
        match PidRecord::of(pid, pgid) {
            Some(rec) => {
                if let Err(e) = pidfile::write(&pidfile, &rec) {
                    log::warn!("{}: cannot write {}: {e}", self.name, pidfile.display());
                }
            }
            None => log::debug!("{}: pid {pid} vanished before its pidfile was written", self.name),
        }
        self.prober = self.new_prober();
        self.instance = Some(Instance { pid, pgid, exit: exit_rx, readers, log_mark, pidfile });
        self.failures = 0;
        self.probe = None;
        let now = Instant::now();
        self.phase = Phase::Starting {
            spawned: now,
            deadline: now + Duration::from_millis(self.ctx.health.startup_timeout_ms),
            listening: false,
            next_probe: now,
            last_error: None,
        };
        let crash_loop = self.seq.in_crash_loop(now);
        self.update(|s| {
            s.status = ServiceStatus::Starting;
            s.sub_state = crash_loop.then_some(SubState::CrashLoop);
            s.kind = ServiceKind::Managed;
            s.pid = Some(pid);
            s.consecutive_failures = 0;
            s.next_restart_at = None;
        });
        log::info!("{}: spawned `{program}` (pid {pid}, keeper and process group {pgid})", self.name);
        Ok(())
    }

    // ---- probes --------------------------------------------------------------------------

    fn launch_probe(&mut self, tcp_first: bool) {
        let prober = self.prober.clone();
        self.probe_started = Some(Instant::now());
        self.probe = Some(Box::pin(async move {
            if tcp_first && !prober.accepts().await {
                return ProbeOutcome::NotListening;
            }
            ProbeOutcome::Http(prober.http().await)
        }));
    }

    async fn timer(&mut self) {
        let now = Instant::now();
        match &self.phase {
            Phase::Starting { deadline, .. } if now >= *deadline => self.startup_timed_out().await,
            Phase::Starting { next_probe, listening, .. } if self.probe.is_none() && now >= *next_probe => {
                let tcp_first = !*listening;
                self.launch_probe(tcp_first);
            }
            Phase::Running { next_probe } | Phase::Watching { next_probe }
                if self.probe.is_none() && now >= *next_probe =>
            {
                self.launch_probe(false);
            }
            Phase::Backoff { until } if now >= *until => self.respawn().await,
            _ => {}
        }
    }

    async fn probed(&mut self, outcome: ProbeOutcome) {
        let now = Instant::now();
        let startup_interval = Duration::from_millis(self.ctx.health.startup_probe_interval_ms);
        let interval = self.interval();
        match (&mut self.phase, outcome) {
            (Phase::Starting { spawned, listening, next_probe, .. }, ProbeOutcome::NotListening) => {
                *listening = false;
                let fast = if spawned.elapsed() < FAST_POLL_WINDOW {
                    FAST_POLL.min(startup_interval)
                } else {
                    startup_interval
                };
                *next_probe = now + fast;
            }
            (Phase::Starting { listening, next_probe, last_error, .. }, ProbeOutcome::Http(p)) => {
                if p.healthy {
                    self.became_online(&p);
                } else {
                    log::debug!("{}: startup probe failed: {}", self.name, p.error.as_deref().unwrap_or("?"));
                    *listening = true;
                    *last_error = p.error;
                    *next_probe = now + startup_interval;
                }
            }
            (Phase::Running { next_probe }, ProbeOutcome::Http(p)) => {
                *next_probe = now + interval;
                self.monitored(p).await;
            }
            (Phase::Watching { next_probe }, ProbeOutcome::Http(p)) => {
                *next_probe = now + interval;
                self.watched(p);
            }
            _ => {}
        }
    }

    fn became_online(&mut self, p: &HttpProbe) {
        let now = Instant::now();
        let took = match &self.phase {
            Phase::Starting { spawned, .. } => spawned.elapsed(),
            _ => Duration::ZERO,
        };
        self.seq.healthy(now);
        self.failures = 0;
        self.phase = Phase::Running { next_probe: now + self.interval() };
        let check = last_check(p);
        self.update(|s| {
            s.status = ServiceStatus::Online;
            s.sub_state = None;
            s.consecutive_failures = 0;
            s.last_check = Some(check);
            s.next_restart_at = None;
        });
        log::info!("{}: healthy {} ms after spawn", self.name, took.as_millis());
    }

    fn log_probe(&self, p: &HttpProbe) {
        match &p.error {
            None => log::debug!("{}: healthy ({} ms)", self.name, p.latency_ms()),
            Some(e) => log::debug!("{}: health check failed after {} ms: {e}", self.name, p.latency_ms()),
        }
    }

    /// A monitoring probe of our own running process.
    async fn monitored(&mut self, p: HttpProbe) {
        self.log_probe(&p);
        let check = last_check(&p);
        let status = self.status();
        if p.healthy {
            self.failures = 0;
            if status != ServiceStatus::Online {
                self.seq.healthy(Instant::now());
            }
            self.update(|s| {
                s.status = ServiceStatus::Online;
                s.sub_state = None;
                s.consecutive_failures = 0;
                s.last_check = Some(check);
            });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let gone_offline = status == ServiceStatus::Online && failures >= self.ctx.health.failure_threshold;
        self.update(|s| {
            s.consecutive_failures = failures;
            s.last_check = Some(check);
            if gone_offline {
                s.status = ServiceStatus::Offline;
                s.sub_state = None;
            }
        });
        if gone_offline && self.config.restart != RestartPolicy::Never {
            let reason = format!(
                "unhealthy: {failures} consecutive failed health checks (last: {})",
                p.error.as_deref().unwrap_or("?")
            );
            log::warn!("{}: {reason}; restarting", self.name);
            self.phase = Phase::Idle;
            self.stop_instance(true).await;
            self.schedule_restart(ServiceStatus::Offline, reason);
        }
    }

    /// A probe of an adopted or external service.
    fn watched(&mut self, p: HttpProbe) {
        self.log_probe(&p);
        let check = last_check(&p);
        let status = self.status();
        let sub_state = (self.kind == ServiceKind::Adopted).then_some(SubState::Adopted);
        if p.healthy {
            self.failures = 0;
            self.update(|s| {
                s.status = ServiceStatus::Online;
                s.sub_state = sub_state;
                s.consecutive_failures = 0;
                s.last_check = Some(check);
            });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let gone_offline = (status == ServiceStatus::Starting)
            || (status == ServiceStatus::Online && failures >= self.ctx.health.failure_threshold);
        let adopted_gone = gone_offline && self.kind == ServiceKind::Adopted;
        self.update(|s| {
            s.consecutive_failures = failures;
            s.last_check = Some(check);
            if gone_offline {
                s.status = ServiceStatus::Offline;
                s.sub_state = None;
            }
            if adopted_gone {
                // Not ours any more: from now on the service is managed again.
                s.kind = ServiceKind::Managed;
                s.pid = None;
            }
        });
        if adopted_gone {
            let reason = format!(
                "the adopted instance stopped answering ({failures} failed health checks, last: {})",
                p.error.as_deref().unwrap_or("?")
            );
            log::warn!("{}: {reason}", self.name);
            self.kind = ServiceKind::Managed;
            self.phase = Phase::Idle;
            if self.config.restart == RestartPolicy::Never {
                self.update(|s| s.last_error = Some(reason));
            } else {
                self.schedule_restart(ServiceStatus::Offline, reason);
            }
        }
    }

    // ---- failures ------------------------------------------------------------------------

    async fn startup_timed_out(&mut self) {
        let last_probe = match &self.phase {
            Phase::Starting { last_error: Some(e), .. } => format!("last health check: {e}"),
            Phase::Starting { listening: false, .. } => "the port never accepted a connection".to_owned(),
            _ => "no health check answered".to_owned(),
        };
        let mark = self.instance.as_ref().map_or(0, |i| i.log_mark);
        self.phase = Phase::Idle;
        self.stop_instance(false).await;
        let lines = self.logs.tail_since(mark, LAST_LINES);
        let message = format!(
            "not healthy within {} ms after spawn ({last_probe}); killed{}",
            self.ctx.health.startup_timeout_ms,
            quote(&lines)
        );
        log::warn!("{}: {message}", self.name);
        self.update(|s| {
            s.status = ServiceStatus::Error;
            s.sub_state = None;
            s.pid = None;
            s.last_error = Some(message.clone());
        });
        if self.config.restart != RestartPolicy::Never {
            self.schedule_restart(ServiceStatus::Error, message);
        }
    }

    /// The process ended by itself.
    async fn exited(&mut self, status: io::Result<ExitStatus>) {
        let Some(instance) = self.instance.take() else { return };
        self.probe = None;
        let during_startup = matches!(self.phase, Phase::Starting { .. });
        self.phase = Phase::Idle;
        let (code, signal) = match &status {
            Ok(st) => unix::describe_exit(st),
            Err(e) => {
                log::error!("{}: lost track of pid {}: {e}", self.name, instance.pid);
                (None, None)
            }
        };
        // Whatever the service left behind in its group dies with it.
        self.kill_group(instance.pgid).await;
        pidfile::remove(&instance.pidfile);
        let how = describe(code, signal.as_deref());
        let clean = code == Some(0);
        let restart = match self.config.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !clean,
            RestartPolicy::Never => false,
        };
        let last_exit = LastExit { at: gateway_core::now_rfc3339(), code, signal };
        let (new_status, message) = if during_startup {
            let _ = tokio::time::timeout(DRAIN_WAIT, futures_util::future::join_all(instance.readers)).await;
            let lines = self.logs.tail_since(instance.log_mark, LAST_LINES);
            (ServiceStatus::Error, format!("exited during startup with {how}{}", quote(&lines)))
        } else {
            (ServiceStatus::Offline, format!("exited unexpectedly with {how}"))
        };
        if clean && !during_startup {
            log::info!("{}: exited with {how}", self.name);
        } else {
            log::warn!("{}: {message}", self.name);
        }
        self.failures = 0;
        self.update(|s| {
            s.status = new_status;
            s.sub_state = None;
            s.pid = None;
            s.last_exit = Some(last_exit);
            if !clean || during_startup {
                s.last_error = Some(message.clone());
            }
        });
        if restart {
            self.schedule_restart(new_status, message);
        }
    }

    /// Plans the next restart after a failure and shows the wait.
    fn schedule_restart(&mut self, base: ServiceStatus, reason: String) {
        let now = Instant::now();
        let plan = self.seq.failure(now);
        self.phase = Phase::Backoff { until: now + plan.delay };
        let next_at = gateway_core::format_rfc3339((SystemTime::now() + plan.delay).into());
        let (status, sub_state, message) = if plan.crash_loop {
            (
                ServiceStatus::Error,
                SubState::CrashLoop,
                format!(
                    "crash loop: {} failures within {} s, retrying every {} ms; last: {reason}",
                    plan.failures_in_window,
                    self.config.failure_window_ms / 1000,
                    self.seq.policy().max().as_millis()
                ),
            )
        } else {
            (base, SubState::Backoff, reason)
        };
        log::info!("{}: restart in {} ms ({status}/{sub_state})", self.name, plan.delay.as_millis());
        self.update(|s| {
            s.status = status;
            s.sub_state = Some(sub_state);
            s.pid = None;
            s.next_restart_at = Some(next_at);
            s.last_error = Some(message);
        });
    }

    async fn respawn(&mut self) {
        self.phase = Phase::Idle;
        self.update(|s| {
            s.restarts = s.restarts.saturating_add(1);
            s.next_restart_at = None;
        });
        if let Err(e) = self.launch().await {
            log::warn!("{}: restart failed: {e}", self.name);
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    /// Stops our process group: `stop_signal` (when graceful) and up to `stop_timeout_ms`,
    /// then SIGKILL; returns once the keeper is reaped and the group is empty.
    async fn stop_instance(&mut self, graceful: bool) {
        let Some(mut instance) = self.instance.take() else { return };
        self.probe = None;
        let pgid = instance.pgid;
        self.update(|s| s.sub_state = Some(SubState::Stopping));
        let mut exit: Option<io::Result<ExitStatus>> = None;
        let signal = unix::parse_signal(&self.config.stop_signal);
        let mut gone = false;
        if graceful && signal != Signal::SIGKILL {
            match unix::signal_group(pgid, signal) {
                Ok(_) => {}
                Err(e) => log::warn!("{}: cannot send {signal} to group {pgid}: {e}", self.name),
            }
            let deadline = Instant::now() + Duration::from_millis(self.config.stop_timeout_ms);
            gone = wait_gone(&mut instance.exit, &mut exit, pgid, deadline).await;
            if !gone {
                log::warn!(
                    "{}: still running {} ms after {signal}; sending SIGKILL to group {pgid}",
                    self.name,
                    self.config.stop_timeout_ms
                );
            }
        }
        if !gone && exit.is_none() {
            // The keeper kills the service, reaps it, then kills the group.
            match unix::request_kill(pgid) {
                Ok(_) => gone = wait_gone(&mut instance.exit, &mut exit, pgid, Instant::now() + KEEPER_KILL_WAIT).await,
                Err(e) => log::warn!("{}: cannot ask keeper {pgid} to kill the service: {e}", self.name),
            }
        }
        if !gone {
            if let Err(e) = unix::signal_group(pgid, Signal::SIGKILL) {
                log::error!("{}: cannot kill group {pgid}: {e}", self.name);
            }
            if !wait_gone(&mut instance.exit, &mut exit, pgid, Instant::now() + KILL_WAIT).await {
                log::error!("{}: group {pgid} still not empty {} s after SIGKILL", self.name, KILL_WAIT.as_secs());
            }
        }
        pidfile::remove(&instance.pidfile);
        if let Some(Ok(status)) = exit {
            let (code, signal) = unix::describe_exit(&status);
            log::info!("{}: stopped ({})", self.name, describe(code, signal.as_deref()));
            self.update(|s| {
                s.last_exit = Some(LastExit { at: gateway_core::now_rfc3339(), code, signal });
                s.pid = None;
            });
        }
    }

    /// SIGKILLs what is left of a group whose keeper has exited and waits until it is empty.
    async fn kill_group(&self, pgid: u32) {
        match unix::signal_group(pgid, Signal::SIGKILL) {
            Ok(false) => {}
            Ok(true) => {
                log::info!("{}: killed the rest of process group {pgid}", self.name);
                if !wait_group_empty(pgid, Instant::now() + KILL_WAIT).await {
                    log::error!("{}: group {pgid} still not empty after SIGKILL", self.name);
                }
            }
            Err(e) => log::warn!("{}: cannot kill group {pgid}: {e}", self.name),
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    fn interval(&self) -> Duration {
        Duration::from_millis(self.ctx.health.interval_ms)
    }

    fn new_prober(&self) -> Prober {
        Prober::new(&self.config, Duration::from_millis(self.ctx.health.timeout_ms))
    }

    fn status(&self) -> ServiceStatus {
        self.ctx.registry.status(&self.name).map_or(ServiceStatus::Stopped, |(s, _)| s)
    }

    fn update<F: FnOnce(&mut ServiceState)>(&self, f: F) {
        self.ctx.registry.update(&self.name, f);
    }

    fn entry(&self) -> ServiceEntry {
        match self.ctx.registry.entry(&self.name) {
            Some(e) => e,
            None => unreachable_entry(&self.config),
        }
    }
}

/// Waits until the keeper has exited (its status in `exit`) and its group is empty, or the
/// deadline passes (false).
async fn wait_gone(
    exit_rx: &mut oneshot::Receiver<io::Result<ExitStatus>>,
    exit: &mut Option<io::Result<ExitStatus>>,
    pgid: u32,
    deadline: Instant,
) -> bool {
    if exit.is_none() {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), &mut *exit_rx).await {
            Ok(r) => *exit = Some(r.unwrap_or_else(|_| Err(io::Error::other("process watcher ended")))),
            Err(_) => return false,
        }
    }
    wait_group_empty(pgid, deadline).await
}

/// Polls until no process of the group is alive (zombies not ours to reap do not count).
async fn wait_group_empty(pgid: u32, deadline: Instant) -> bool {
    let started = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if !unix::group_alive(pgid) {
            return true;
        }
        if started.elapsed() >= Duration::from_millis(100) && !unix::group_has_live_members(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

fn last_check(p: &HttpProbe) -> LastCheck {
    LastCheck { at: gateway_core::now_rfc3339(), latency_ms: p.latency_ms(), error: p.error.clone() }
}

/// `exit code 3` / `signal SIGKILL`.
fn describe(code: Option<i32>, signal: Option<&str>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "an unknown status".to_owned(),
    }
}

/// `; last output:\n[stderr] …` for `last_error`, or nothing.
fn quote(lines: &[LogLine]) -> String {
    if lines.is_empty() {
        return "; no output".to_owned();
    }
    let mut s = String::from("; last output:");
    for l in lines {
        s.push_str(&format!("\n[{}] {}", l.stream, l.line));
    }
    s
}

/// An entry for a service the registry does not know (cannot happen: every task is created
/// from the registry's own configs).
fn unreachable_entry(config: &ServiceConfig) -> ServiceEntry {
    ServiceEntry {
        name: config.name.to_string(),
        display_name: config.display_name.clone(),
        status: ServiceStatus::Stopped,
        sub_state: None,
        kind: ServiceKind::Managed,
        host: config.host.clone(),
        port: config.port,
        pid: None,
        uptime_ms: None,
        restarts: 0,
        consecutive_failures: 0,
        last_check: None,
        last_exit: None,
        next_restart_at: None,
        last_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe(Some(3), None), "exit code 3");
        assert_eq!(describe(None, Some("SIGKILL")), "signal SIGKILL");
        assert_eq!(quote(&[]), "; no output");
        let lines = [LogLine { at: "t".into(), stream: "stderr", line: "boom".into() }];
        assert_eq!(quote(&lines), "; last output:\n[stderr] boom");
    }
}
