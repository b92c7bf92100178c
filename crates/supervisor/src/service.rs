//! The task that owns one service on the supervisor thread: it feeds everything that happens
//! to the service (commands, the process exit, probe results, timers) into the service's
//! [`Lifecycle`] one event at a time and carries out the effects it returns — the port check,
//! the spawn through the OS layer, stop signals and kills, probes, registry updates, replies
//! and log lines. It makes no decision of its own, so no race can spawn a second copy or lose a
//! status change.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::HealthConfig;
use gateway_core::{ServiceKind, ServiceStatus};
use registry::{LastCheck, LastExit, Registry, ServiceConfig, ServiceEntry, ServiceState};
use tokio::sync::{mpsc, oneshot};

use crate::error::SupervisorError;
use crate::lifecycle::{
    self, Check, Effect, Event, Exit, Level, Lifecycle, Outcome, Owner, Patch, PortCheck, ProbeResult, Rules, Ticket,
};
use crate::logs::{self, ServiceLogs, Stream};
use crate::os::{self, Tree};
use crate::pidfile::{self, PidRecord};
use crate::probe::{self, HttpProbe, Prober};

/// Output lines quoted in `last_error` when a service dies while starting.
const LAST_LINES: usize = 5;
/// How long the pipes of a dead process may take to drain before its last lines are quoted.
const DRAIN_WAIT: Duration = Duration::from_millis(250);
/// How long what a service left behind may take to vanish after the kill.
const REAP_WAIT: Duration = Duration::from_secs(5);

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
    /// A reload: the service's new configuration and `[health]`, applied in place.
    Reconfigure(Arc<ServiceConfig>, HealthConfig),
}

/// Settings shared by every service task.
#[derive(Clone)]
pub(crate) struct Context {
    pub registry: Registry,
    pub health: HealthConfig,
    pub run_dir: PathBuf,
}

/// A caller waiting for a command's answer.
enum Waiter {
    Entry(Reply),
    Done(Option<oneshot::Sender<()>>),
}

/// Our running process.
struct Instance {
    tree: Rc<Tree>,
    /// The service's process ended and its tree is gone.
    exit: oneshot::Receiver<Exit>,
    pidfile: PathBuf,
}

type ProbeFuture = Pin<Box<dyn Future<Output = ProbeResult>>>;

/// The task owning one service.
pub(crate) struct ServiceActor {
    name: String,
    config: Arc<ServiceConfig>,
    ctx: Context,
    logs: Arc<ServiceLogs>,
    probe_requested: Arc<AtomicBool>,
    rx: mpsc::UnboundedReceiver<Command>,
    lifecycle: Lifecycle,
    instance: Option<Instance>,
    prober: Prober,
    probe: Option<ProbeFuture>,
    waiters: HashMap<Ticket, Waiter>,
    next_ticket: Ticket,
    /// The cause of the last failed spawn, for the reply.
    spawn_error: Option<io::Error>,
    finished: bool,
}

impl ServiceActor {
    pub(crate) fn new(
        config: Arc<ServiceConfig>,
        ctx: Context,
        logs: Arc<ServiceLogs>,
        probe_requested: Arc<AtomicBool>,
        rx: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let prober = Prober::new(&config, ctx.health.timeout);
        ServiceActor {
            name: config.name.to_string(),
            lifecycle: Lifecycle::new(Rules::of(&config, &ctx.health)),
            config,
            ctx,
            logs,
            probe_requested,
            rx,
            instance: None,
            prober,
            probe: None,
            waiters: HashMap::new(),
            next_ticket: 0,
            spawn_error: None,
            finished: false,
        }
    }

    /// Runs until shut down (or until every sender is gone, which shuts down too).
    pub(crate) async fn run(mut self) {
        while !self.finished {
            let event = self.next_event().await;
            self.handle(event).await;
        }
    }

    async fn next_event(&mut self) -> Event {
        let wake = self.lifecycle.poll_timeout().map(tokio::time::Instant::from_std);
        let accepting = !self.lifecycle.stopping();
        let instance = &mut self.instance;
        let probe = &mut self.probe;
        let exit = async move {
            match instance.as_mut() {
                Some(i) => (&mut i.exit).await.unwrap_or_default(),
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
        enum Woke {
            Command(Option<Command>),
            Exited(Exit),
            Probed(ProbeResult),
            Timer,
        }
        let rx = &mut self.rx;
        let woke = tokio::select! {
            biased;
            cmd = rx.recv(), if accepting => Woke::Command(cmd),
            exit = exit => Woke::Exited(exit),
            outcome = probed => Woke::Probed(outcome),
            () = timer => Woke::Timer,
        };
        match woke {
            Woke::Command(cmd) => self.command(cmd),
            Woke::Exited(exit) => {
                if let Some(i) = self.instance.take() {
                    pidfile::remove(&i.pidfile);
                }
                Event::Exited(exit)
            }
            Woke::Probed(outcome) => {
                self.probe = None;
                Event::Probed(outcome)
            }
            Woke::Timer => Event::Timer,
        }
    }

    /// Turns a command into the machine's event, keeping the caller to answer.
    fn command(&mut self, cmd: Option<Command>) -> Event {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (command, waiter) = match cmd {
            None => (lifecycle::Command::Shutdown, Waiter::Done(None)),
            Some(Command::Shutdown(done)) => (lifecycle::Command::Shutdown, Waiter::Done(Some(done))),
            Some(Command::Start(r)) => (lifecycle::Command::Start, Waiter::Entry(r)),
            Some(Command::Stop(r)) => (lifecycle::Command::Stop, Waiter::Entry(r)),
            Some(Command::Restart(r)) => (lifecycle::Command::Restart, Waiter::Entry(r)),
            Some(Command::Monitor) => {
                self.prober = self.new_prober();
                return Event::Monitor;
            }
            Some(Command::ProbeNow) => {
                self.probe_requested.store(false, Ordering::Release);
                return Event::ProbeNow;
            }
            Some(Command::Reconfigure(config, health)) => {
                self.lifecycle.reconfigure(Rules::of(&config, &health));
                self.config = config;
                self.ctx.health = health;
                self.prober = self.new_prober();
                return Event::Reconfigured;
            }
        };
        self.waiters.insert(ticket, waiter);
        Event::Command(command, ticket)
    }

    /// Feeds an event and carries out the effects, and those of the events they answer with.
    async fn handle(&mut self, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            for effect in self.lifecycle.on(event, Instant::now()) {
                if let Some(answer) = self.carry_out(effect).await {
                    events.push_back(answer);
                }
            }
        }
    }

    async fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::CheckPort => return Some(self.check_port().await),
            Effect::Spawn => return Some(self.spawn()),
            Effect::Signal => {
                if let Some(i) = &self.instance
                    && let Err(e) = i.tree.signal(&self.config.stop_signal)
                {
                    let reason = format!("{} to tree {}: {e}", self.config.stop_signal, i.tree.id());
                    return Some(Event::SignalFailed { reason });
                }
            }
            Effect::Terminate => {
                if let Some(i) = &self.instance
                    && let Err(e) = i.tree.terminate()
                {
                    log::error!("{}: cannot kill tree {}: {e}", self.name, i.tree.id());
                }
            }
            Effect::Abandon => self.instance = None,
            Effect::Probe { tcp_first } => {
                let prober = self.prober.clone();
                self.probe = Some(Box::pin(async move {
                    if tcp_first && !prober.accepts().await {
                        return ProbeResult::NotListening;
                    }
                    ProbeResult::Http(check_of(&prober.http().await))
                }));
            }
            Effect::CancelProbe => self.probe = None,
            Effect::Status(patch) => {
                self.ctx.registry.update(&self.name, |s| apply(patch, s));
            }
            Effect::Reply(ticket, outcome) => self.reply(ticket, outcome),
            Effect::Log(level, line) => {
                let level = match level {
                    Level::Debug => log::Level::Debug,
                    Level::Info => log::Level::Info,
                    Level::Warn => log::Level::Warn,
                    Level::Error => log::Level::Error,
                };
                log::log!(level, "{}: {line}", self.name);
            }
            Effect::Finished => self.finished = true,
        }
        None
    }

    fn reply(&mut self, ticket: Ticket, outcome: Outcome) {
        let Some(waiter) = self.waiters.remove(&ticket) else { return };
        let service = || self.config.display_name.clone();
        match waiter {
            Waiter::Done(done) => {
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Waiter::Entry(reply) => {
                let result = match outcome {
                    Outcome::Done => Ok(self.entry()),
                    Outcome::AlreadyRunning => Err(SupervisorError::AlreadyRunning { service: service() }),
                    Outcome::AlreadyStopped => Err(SupervisorError::AlreadyStopped { service: service() }),
                    Outcome::NotManaged => Err(SupervisorError::NotManaged { service: service() }),
                    Outcome::SpawnFailed => Err(SupervisorError::Spawn {
                        service: service(),
                        program: self.program(),
                        source: self.spawn_error.take().unwrap_or_else(|| io::Error::other("spawn failed")),
                    }),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Whether the port is free; when it is not, who holds it and how it answers.
    async fn check_port(&mut self) -> Event {
        self.prober = self.new_prober();
        if !probe::port_taken(&self.config) {
            return Event::PortChecked(PortCheck::Free);
        }
        let answer = ProbeResult::Http(check_of(&self.prober.http().await));
        let owner = os::port_owner(self.config.port).map(|o| Owner { pid: o.pid, command: o.command });
        Event::PortChecked(PortCheck::Taken { answer, owner })
    }

    fn spawn(&mut self) -> Event {
        let program = self.program();
        let spawned = match os::spawn(&self.config) {
            Ok(s) => s,
            Err(e) => {
                let reason = e.to_string();
                self.spawn_error = Some(e);
                return Event::SpawnFailed { program, reason };
            }
        };
        let os::Spawned { tree, pid, mut child } = spawned;
        let tree = Rc::new(tree);
        let log_mark = self.logs.next_seq();
        let mut readers = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push(actix_rt::spawn(logs::capture(out, Stream::Stdout, self.logs.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(actix_rt::spawn(logs::capture(err, Stream::Stderr, self.logs.clone())));
        }
        let pidfile = pidfile::path(&self.ctx.run_dir, &self.name);
        match PidRecord::of(pid, tree.id()) {
            Some(rec) => {
                if let Err(e) = pidfile::write(&pidfile, &rec) {
                    log::warn!("{}: cannot write {}: {e}", self.name, pidfile.display());
                }
            }
            None => log::debug!("{}: pid {pid} vanished before its pidfile was written", self.name),
        }
        let (exit_tx, exit_rx) = oneshot::channel();
        let (name, logs, watched) = (self.name.clone(), self.logs.clone(), tree.clone());
        actix_rt::spawn(async move {
            let (code, signal) = match child.wait().await {
                Ok(status) => os::exit_of(&status),
                Err(e) => {
                    log::error!("{name}: lost track of pid {pid}: {e}");
                    (None, None)
                }
            };
            // Whatever the service left behind in its tree dies with it.
            reap(&name, &watched).await;
            let _ = tokio::time::timeout(DRAIN_WAIT, futures_util::future::join_all(readers)).await;
            let output =
                logs.tail_since(log_mark, LAST_LINES).iter().map(|l| format!("[{}] {}", l.stream, l.line)).collect();
            let _ = exit_tx.send(Exit { code, signal, output });
        });
        log::info!("{}: spawned `{program}` (pid {pid}, tree {})", self.name, tree.id());
        self.instance = Some(Instance { tree, exit: exit_rx, pidfile });
        Event::Spawned { pid }
    }

    // ---- helpers -------------------------------------------------------------------------

    fn program(&self) -> String {
        self.config.command.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default()
    }

    fn new_prober(&self) -> Prober {
        Prober::new(&self.config, self.ctx.health.timeout)
    }

    fn entry(&self) -> ServiceEntry {
        match self.ctx.registry.entry(&self.name) {
            Some(e) => e,
            None => unreachable_entry(&self.config),
        }
    }
}

/// Kills what is left of a tree whose service has exited and waits (bounded) until it is empty.
async fn reap(name: &str, tree: &Tree) {
    if tree.is_empty() {
        return;
    }
    match tree.terminate() {
        Ok(false) => return,
        Ok(true) => log::info!("{name}: killed the rest of tree {}", tree.id()),
        Err(e) => log::warn!("{name}: cannot kill tree {}: {e}", tree.id()),
    }
    let deadline = Instant::now() + REAP_WAIT;
    let mut delay = Duration::from_millis(1);
    while !tree.is_empty() {
        if Instant::now() >= deadline {
            log::error!("{name}: tree {} still not empty {} s after the kill", tree.id(), REAP_WAIT.as_secs());
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

fn check_of(p: &HttpProbe) -> Check {
    Check { healthy: p.healthy, latency_ms: p.latency_ms(), error: p.error.clone(), service: p.service_field.clone() }
}

/// Writes a patch of the lifecycle into the registry's state, stamping times.
fn apply(patch: Patch, s: &mut ServiceState) {
    if let Some(v) = patch.status {
        s.status = v;
    }
    if let Some(v) = patch.sub_state {
        s.sub_state = v;
    }
    if let Some(v) = patch.kind {
        s.kind = v;
    }
    if let Some(v) = patch.pid {
        s.pid = v;
    }
    if let Some(v) = patch.consecutive_failures {
        s.consecutive_failures = v;
    }
    if let Some(c) = patch.last_check {
        s.last_check = Some(LastCheck { at: gateway_core::now_rfc3339(), latency_ms: c.latency_ms, error: c.error });
    }
    if let Some((code, signal)) = patch.last_exit {
        s.last_exit = Some(LastExit { at: gateway_core::now_rfc3339(), code, signal });
    }
    if let Some(next) = patch.next_restart_in {
        s.next_restart_at = next.map(|d| gateway_core::format_rfc3339((SystemTime::now() + d).into()));
    }
    if let Some(e) = patch.last_error {
        s.last_error = Some(e);
    }
    if patch.restarted {
        s.restarts = s.restarts.saturating_add(1);
    }
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
        contract: None,
    }
}
