//! The lifecycle rules of SPEC §7 as one state machine with no IO: [`Lifecycle::on`] takes an
//! [`Event`] (a command, the port check's answer, a spawn's result, the process's exit, a
//! probe's result, a timer) and the current time, and returns the [`Effect`]s to carry out
//! (check the port, spawn, signal or terminate the tree, probe, update the status, reply, log).
//! [`Lifecycle::poll_timeout`] tells when the next timer is due. The service task
//! (`service.rs`) only carries effects out and feeds their results back, so every rule is
//! tested here with tables of events and expected effects, a fake clock and no process.
//!
//! Phases (the status the API shows is kept beside them and sent as [`Patch`]es):
//! - `Idle`: no process of ours, nothing scheduled (stopped, error, offline without restart).
//! - `Launching`: the port check or the spawn was asked for; its answer comes next.
//! - `Starting`: spawned, probing fast until healthy or `startup_timeout_ms`.
//! - `Running`: our process, probed every `interval_ms` (online, or offline when unhealthy and
//!   the policy does not restart).
//! - `Stopping`: the stop signal (or a kill) was sent; waiting for the tree to be gone, with
//!   what to do afterwards.
//! - `Backoff`: waiting for the next restart.
//! - `Watching`: an adopted or external service: probed, never signalled.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;
use gateway_core::{ServiceKind, ServiceStatus, SubState};
use registry::{PortConflictPolicy, RestartPolicy, ServiceConfig};

use crate::backoff::{BackoffPolicy, RestartSequence};

/// While a fresh process is not yet listening, its port is polled this often…
const FAST_POLL: Duration = Duration::from_millis(2);
/// …for at most this long after the spawn; then every `startup_probe_interval_ms`.
const FAST_POLL_WINDOW: Duration = Duration::from_secs(2);
/// Passive checks (`probe_now`) closer together than this are coalesced into one probe.
const PROBE_COALESCE: Duration = Duration::from_millis(100);
/// How long a tree may take to vanish after each kill before the next step.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Identifies a caller waiting for the answer to a command.
pub(crate) type Ticket = u64;

/// What an operator (or the supervisor's main task) asks of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Manual or automatic start.
    Start,
    /// Manual stop.
    Stop,
    /// Stop if running, then start.
    Restart,
    /// Stop whatever runs, and end.
    Shutdown,
}

/// What happens to a service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// A command; its answer is a [`Effect::Reply`] with the same ticket.
    Command(Command, Ticket),
    /// Begin probing an external service.
    Monitor,
    /// A passive check (a failed forward): probe now, coalesced.
    ProbeNow,
    /// The answer to [`Effect::CheckPort`].
    PortChecked(PortCheck),
    /// The answer to [`Effect::Spawn`]: the service runs with this pid.
    Spawned { pid: u32 },
    /// The answer to [`Effect::Spawn`]: the program could not be run (the OS's reason).
    SpawnFailed { program: String, reason: String },
    /// The service's process ended and nothing is left of its tree.
    Exited(Exit),
    /// The answer to [`Effect::Probe`].
    Probed(ProbeResult),
    /// [`Lifecycle::poll_timeout`] has passed.
    Timer,
    /// The answer to [`Effect::Signal`] when the stop signal could not be raised (e.g. a
    /// console event the platform cannot deliver): the stop goes on with a kill at once.
    SignalFailed { reason: String },
    /// The rules were replaced ([`Lifecycle::reconfigure`]); nothing to do but recompute timers.
    Reconfigured,
}

/// Whether the service's port was free before a spawn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortCheck {
    /// Nothing listens: spawn.
    Free,
    /// Something listens; its answer to a health probe and who it is, if known.
    Taken { answer: ProbeResult, owner: Option<Owner> },
}

/// The process holding a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    pub command: Option<String>,
}

/// How a process ended, with its last output lines (`[stream] line`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Exit {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub output: Vec<String>,
}

impl Exit {
    /// `exit code 3` / `signal SIGKILL`.
    fn describe(&self) -> String {
        match (self.code, &self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "an unknown status".to_owned(),
        }
    }
}

/// The result of a probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeResult {
    /// The TCP connect that comes first while starting was refused.
    NotListening,
    /// An HTTP health check.
    Http(Check),
}

/// One HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Check {
    /// 2xx within the timeout.
    pub healthy: bool,
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The `service` field of a JSON body, if any.
    pub service: Option<String>,
}

/// A change of the status the registry shows; unset fields stay as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Patch {
    pub status: Option<ServiceStatus>,
    pub sub_state: Option<Option<SubState>>,
    pub kind: Option<ServiceKind>,
    pub pid: Option<Option<u32>>,
    pub consecutive_failures: Option<u32>,
    /// A health check to record (the driver stamps the time).
    pub last_check: Option<Check>,
    /// An exit to record (the driver stamps the time).
    pub last_exit: Option<(Option<i32>, Option<String>)>,
    /// The next restart is due this long from now (`Some(None)` clears it).
    pub next_restart_in: Option<Option<Duration>>,
    pub last_error: Option<String>,
    /// Count one more restart.
    pub restarted: bool,
}

/// Log levels of [`Effect::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; the answer is the service's entry.
    Done,
    AlreadyRunning,
    AlreadyStopped,
    NotManaged,
    /// The program could not be run.
    SpawnFailed,
}

/// What the service task is to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Check the port; answer with [`Event::PortChecked`].
    CheckPort,
    /// Spawn the command; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Send `stop_signal` to the tree; answer with [`Event::SignalFailed`] if it cannot be sent.
    Signal,
    /// Kill every process of the tree.
    Terminate,
    /// Give up on a tree that does not die: forget it (its pidfile stays for the next start).
    Abandon,
    /// Start a probe (a TCP connect first when `tcp_first`); answer with [`Event::Probed`].
    Probe { tcp_first: bool },
    /// Drop the probe in flight.
    CancelProbe,
    /// Update the registry.
    Status(Patch),
    /// Answer a command.
    Reply(Ticket, Outcome),
    /// A log line (the driver prefixes the service's name).
    Log(Level, String),
    /// The task ends (after a shutdown).
    Finished,
}

/// What a stop leads to once the tree is gone.
#[derive(Debug, Clone, PartialEq)]
enum AfterStop {
    /// A manual stop: `stopped`, then the reply.
    Stopped(Ticket),
    /// A manual restart (of a running service when true): launch again, then the reply.
    Restart(Ticket, bool),
    /// Unhealthy: back off and restart.
    Backoff(ServiceStatus, String),
    /// Not healthy in time: `error` with this detail, and back off.
    StartupFailed(String),
    /// The orchestrator shuts down.
    Shutdown(Ticket),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Launching { ticket: Option<Ticket> },
    Starting { spawned: Instant, deadline: Instant, listening: bool, next_probe: Instant, last_error: Option<String> },
    Running { next_probe: Instant },
    Stopping { deadline: Instant, kills: u8, then: AfterStop },
    Backoff { until: Instant },
    Watching { next_probe: Instant },
}

/// The timers and policies of one service (from its config and `[health]`).
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub name: String,
    pub restart: RestartPolicy,
    pub on_port_conflict: PortConflictPolicy,
    pub port: u16,
    pub interval: Duration,
    pub failure_threshold: u32,
    pub startup_timeout: Duration,
    pub startup_probe_interval: Duration,
    pub stop_timeout: Duration,
    /// `stop_signal` is SIGKILL: a stop kills at once.
    pub stop_kills: bool,
    pub failure_window: Duration,
    pub backoff: BackoffPolicy,
    pub max_failures: u32,
    pub external: bool,
}

impl Rules {
    /// The rules of a configured service.
    pub(crate) fn of(config: &ServiceConfig, health: &HealthConfig) -> Rules {
        Rules {
            name: config.name.to_string(),
            restart: config.restart,
            on_port_conflict: config.on_port_conflict,
            port: config.port,
            interval: health.interval,
            failure_threshold: health.failure_threshold,
            startup_timeout: health.startup_timeout,
            startup_probe_interval: health.startup_probe_interval,
            stop_timeout: config.stop_timeout,
            stop_kills: config.stop_signal == "SIGKILL",
            failure_window: config.failure_window,
            backoff: BackoffPolicy::from_config(&config.backoff),
            max_failures: config.max_failures,
            external: config.is_external(),
        }
    }
}

/// One service's lifecycle.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    rules: Rules,
    seq: RestartSequence,
    kind: ServiceKind,
    status: ServiceStatus,
    phase: Phase,
    /// A probe is in flight.
    probing: bool,
    probe_started: Option<Instant>,
    /// Consecutive failed health checks of the current instance.
    failures: u32,
    effects: Vec<Effect>,
}

impl Lifecycle {
    /// A stopped service.
    pub(crate) fn new(rules: Rules) -> Lifecycle {
        let seq = RestartSequence::new(rules.backoff.clone(), rules.max_failures, rules.failure_window);
        Lifecycle {
            kind: if rules.external { ServiceKind::External } else { ServiceKind::Managed },
            rules,
            seq,
            status: ServiceStatus::Stopped,
            phase: Phase::Idle,
            probing: false,
            probe_started: None,
            failures: 0,
            effects: Vec::new(),
        }
    }

    /// New timers and policies from a reload, in place: the phase, the failure history and a
    /// probe in flight stay; the next timer and decision use the new rules.
    pub(crate) fn reconfigure(&mut self, rules: Rules) {
        self.seq.reconfigure(rules.backoff.clone(), rules.max_failures, rules.failure_window);
        if rules.external != self.rules.external && self.phase == Phase::Idle && self.kind != ServiceKind::Adopted {
            self.kind = if rules.external { ServiceKind::External } else { ServiceKind::Managed };
        }
        self.rules = rules;
    }

    /// Whether a stop is under way (commands wait until it is over, so they are serialised).
    pub(crate) fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// When [`Event::Timer`] is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle | Phase::Launching { .. } => None,
            Phase::Starting { deadline, next_probe, .. } => {
                Some(if self.probing { *deadline } else { (*deadline).min(*next_probe) })
            }
            Phase::Running { next_probe } | Phase::Watching { next_probe } => (!self.probing).then_some(*next_probe),
            Phase::Stopping { deadline, .. } => Some(*deadline),
            Phase::Backoff { until } => Some(*until),
        }
    }

    /// Handles one event; returns what to do, in order.
    pub(crate) fn on(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::Command(cmd, ticket) => self.command(cmd, ticket, now),
            Event::Monitor => {
                if self.kind == ServiceKind::External && self.phase == Phase::Idle {
                    self.failures = 0;
                    self.phase = Phase::Watching { next_probe: now };
                    self.patch(Patch {
                        status: Some(ServiceStatus::Starting),
                        sub_state: Some(None),
                        ..Patch::default()
                    });
                }
            }
            Event::ProbeNow => self.probe_now(now),
            Event::PortChecked(check) => self.port_checked(check, now),
            Event::Spawned { pid } => self.spawned(pid, now),
            Event::SpawnFailed { program, reason } => self.spawn_failed(program, reason, now),
            Event::Exited(exit) => self.exited(exit, now),
            Event::Probed(result) => {
                self.probing = false;
                self.probed(result, now);
            }
            Event::Timer => self.timer(now),
            Event::Reconfigured => {}
            Event::SignalFailed { reason } => {
                if let Phase::Stopping { deadline, kills: kills @ 0, .. } = &mut self.phase {
                    *kills = 1;
                    *deadline = now + KILL_WAIT;
                    self.log(Level::Warn, format!("cannot send the stop signal ({reason}); killing it"));
                    self.effects.push(Effect::Terminate);
                }
            }
        }
        std::mem::take(&mut self.effects)
    }

    // ---- commands ------------------------------------------------------------------------

    fn command(&mut self, cmd: Command, ticket: Ticket, now: Instant) {
        if cmd != Command::Shutdown && self.kind != ServiceKind::Managed {
            self.effects.push(Effect::Reply(ticket, Outcome::NotManaged));
            return;
        }
        let running = self.has_process();
        match cmd {
            Command::Start if running => self.effects.push(Effect::Reply(ticket, Outcome::AlreadyRunning)),
            Command::Start => {
                // A manual start begins a new failure sequence and ends a crash loop.
                self.seq.reset();
                self.cancel_probe();
                self.patch(Patch { next_restart_in: Some(None), sub_state: Some(None), ..Patch::default() });
                self.launch(Some(ticket));
            }
            Command::Stop if !running && self.status == ServiceStatus::Stopped => {
                self.effects.push(Effect::Reply(ticket, Outcome::AlreadyStopped));
            }
            Command::Stop => {
                if matches!(self.phase, Phase::Backoff { .. }) {
                    self.log(Level::Info, "pending restart cancelled by stop".to_owned());
                }
                self.stop_or(AfterStop::Stopped(ticket), true, now);
            }
            Command::Restart => self.stop_or(AfterStop::Restart(ticket, running), true, now),
            Command::Shutdown => {
                if running {
                    self.stop_or(AfterStop::Shutdown(ticket), true, now);
                } else {
                    self.cancel_probe();
                    if matches!(self.phase, Phase::Backoff { .. }) {
                        self.set_stopped();
                    }
                    self.phase = Phase::Idle;
                    self.effects.push(Effect::Reply(ticket, Outcome::Done));
                    self.effects.push(Effect::Finished);
                }
            }
        }
    }

    fn probe_now(&mut self, now: Instant) {
        // A probe in flight answers the request; otherwise probe now, or at the end of the
        // coalescing window when the last probe started very recently.
        if self.probing {
            return;
        }
        let at = self.probe_started.map_or(now, |t| (t + PROBE_COALESCE).max(now));
        if let Phase::Running { next_probe } | Phase::Watching { next_probe } = &mut self.phase
            && at < *next_probe
        {
            *next_probe = at;
            let ms = at.saturating_duration_since(now).as_millis();
            self.log(Level::Debug, format!("passive check, probing in {ms} ms"));
        }
    }

    /// Whether a process of ours runs (or is being stopped).
    fn has_process(&self) -> bool {
        matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. } | Phase::Stopping { .. })
    }

    /// Stops the running process and then does `then`, or does `then` at once when nothing runs.
    fn stop_or(&mut self, then: AfterStop, graceful: bool, now: Instant) {
        self.cancel_probe();
        if !self.has_process() {
            self.phase = Phase::Idle;
            self.after_stop(then, now);
            return;
        }
        self.patch(Patch { sub_state: Some(Some(SubState::Stopping)), ..Patch::default() });
        if graceful && !self.rules.stop_kills {
            self.effects.push(Effect::Signal);
            self.phase = Phase::Stopping { deadline: now + self.rules.stop_timeout, kills: 0, then };
        } else {
            self.effects.push(Effect::Terminate);
            self.phase = Phase::Stopping { deadline: now + KILL_WAIT, kills: 1, then };
        }
    }

    fn after_stop(&mut self, then: AfterStop, now: Instant) {
        match then {
            AfterStop::Stopped(ticket) => {
                self.set_stopped();
                self.effects.push(Effect::Reply(ticket, Outcome::Done));
            }
            AfterStop::Shutdown(ticket) => {
                self.set_stopped();
                self.effects.push(Effect::Reply(ticket, Outcome::Done));
                self.effects.push(Effect::Finished);
            }
            AfterStop::Restart(ticket, was_running) => {
                self.seq.reset();
                self.patch(Patch {
                    restarted: was_running,
                    next_restart_in: Some(None),
                    sub_state: Some(None),
                    ..Patch::default()
                });
                self.launch(Some(ticket));
            }
            AfterStop::Backoff(base, reason) => self.schedule_restart(base, reason, now),
            AfterStop::StartupFailed(message) => self.failed_to_start(Level::Warn, message, now),
        }
    }

    fn set_stopped(&mut self) {
        self.failures = 0;
        self.patch(Patch {
            status: Some(ServiceStatus::Stopped),
            sub_state: Some(None),
            pid: Some(None),
            next_restart_in: Some(None),
            consecutive_failures: Some(0),
            ..Patch::default()
        });
    }

    // ---- starting ------------------------------------------------------------------------

    fn launch(&mut self, ticket: Option<Ticket>) {
        self.phase = Phase::Launching { ticket };
        self.effects.push(Effect::CheckPort);
    }

    fn take_ticket(&mut self) -> Option<Ticket> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Launching { ticket } => ticket,
            other => {
                self.phase = other;
                None
            }
        }
    }

    fn reply(&mut self, ticket: Option<Ticket>, outcome: Outcome) {
        if let Some(t) = ticket {
            self.effects.push(Effect::Reply(t, outcome));
        }
    }

    fn port_checked(&mut self, check: PortCheck, now: Instant) {
        if !matches!(self.phase, Phase::Launching { .. }) {
            return;
        }
        let (answer, owner) = match check {
            PortCheck::Free => {
                self.effects.push(Effect::Spawn);
                return;
            }
            PortCheck::Taken { answer, owner } => (answer, owner),
        };
        let ticket = self.take_ticket();
        let check = match answer {
            ProbeResult::Http(c) => c,
            ProbeResult::NotListening => Check::default(),
        };
        let answers_as_us = check.healthy && check.service.as_deref() == Some(self.rules.name.as_str());
        let port = self.rules.port;
        if answers_as_us && self.rules.on_port_conflict == PortConflictPolicy::Adopt {
            self.kind = ServiceKind::Adopted;
            self.failures = 0;
            self.seq.healthy(now);
            self.phase = Phase::Watching { next_probe: now + self.rules.interval };
            let pid = owner.as_ref().map(|o| o.pid);
            self.patch(Patch {
                status: Some(ServiceStatus::Online),
                sub_state: Some(Some(SubState::Adopted)),
                kind: Some(ServiceKind::Adopted),
                pid: Some(pid),
                consecutive_failures: Some(0),
                last_check: Some(check),
                next_restart_in: Some(None),
                ..Patch::default()
            });
            let pid = pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            self.log(Level::Info, format!("adopted the instance already running on port {port} (pid {pid})"));
            self.reply(ticket, Outcome::Done);
            return;
        }
        let who = match &owner {
            Some(o) => format!("pid {} ({})", o.pid, o.command.as_deref().unwrap_or("command unknown")),
            None => "another process (owner not visible)".to_owned(),
        };
        let message = if answers_as_us {
            format!(
                "port {port} is held by {who}, which answers as {}; set on_port_conflict = \"adopt\" to adopt it, or stop it and start again",
                self.rules.name
            )
        } else {
            format!("port {port} is held by {who}; free the port and start again")
        };
        self.log(Level::Warn, message.clone());
        self.patch(Patch {
            status: Some(ServiceStatus::Error),
            sub_state: Some(Some(SubState::PortConflict)),
            pid: Some(None),
            next_restart_in: Some(None),
            last_error: Some(message),
            ..Patch::default()
        });
        self.reply(ticket, Outcome::Done);
    }

    fn spawned(&mut self, pid: u32, now: Instant) {
        let ticket = self.take_ticket();
        self.failures = 0;
        self.phase = Phase::Starting {
            spawned: now,
            deadline: now + self.rules.startup_timeout,
            listening: false,
            next_probe: now,
            last_error: None,
        };
        let crash_loop = self.seq.in_crash_loop(now);
        self.patch(Patch {
            status: Some(ServiceStatus::Starting),
            sub_state: Some(crash_loop.then_some(SubState::CrashLoop)),
            kind: Some(ServiceKind::Managed),
            pid: Some(Some(pid)),
            consecutive_failures: Some(0),
            next_restart_in: Some(None),
            ..Patch::default()
        });
        self.reply(ticket, Outcome::Done);
    }

    fn spawn_failed(&mut self, program: String, reason: String, now: Instant) {
        let ticket = self.take_ticket();
        self.failed_to_start(Level::Error, format!("cannot start `{program}`: {reason}"), now);
        self.reply(ticket, Outcome::SpawnFailed);
    }

    /// `error` with the message, then a restart with backoff unless the policy is `never`.
    fn failed_to_start(&mut self, level: Level, message: String, now: Instant) {
        self.log(level, message.clone());
        self.patch(Patch {
            status: Some(ServiceStatus::Error),
            sub_state: Some(None),
            pid: Some(None),
            last_error: Some(message.clone()),
            ..Patch::default()
        });
        if self.rules.restart != RestartPolicy::Never {
            self.schedule_restart(ServiceStatus::Error, message, now);
        }
    }

    // ---- timers and probes ---------------------------------------------------------------

    fn timer(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Starting { deadline, .. } if now >= *deadline => self.startup_timed_out(now),
            Phase::Starting { next_probe, listening, .. } if !self.probing && now >= *next_probe => {
                let tcp_first = !*listening;
                self.launch_probe(tcp_first, now);
            }
            Phase::Running { next_probe } | Phase::Watching { next_probe } if !self.probing && now >= *next_probe => {
                self.launch_probe(false, now);
            }
            Phase::Backoff { until } if now >= *until => {
                self.patch(Patch { restarted: true, next_restart_in: Some(None), ..Patch::default() });
                self.launch(None);
            }
            Phase::Stopping { deadline, kills, .. } if now >= *deadline => {
                let kills_before = *kills;
                *kills += 1;
                *deadline = now + KILL_WAIT;
                match kills_before {
                    0 => {
                        let ms = self.rules.stop_timeout.as_millis();
                        self.log(Level::Warn, format!("still running {ms} ms after the stop signal; killing it"));
                        self.effects.push(Effect::Terminate);
                    }
                    1 => {
                        self.log(Level::Warn, "still not gone after a kill; killing the whole tree".to_owned());
                        self.effects.push(Effect::Terminate);
                    }
                    _ => {
                        let s = KILL_WAIT.as_secs();
                        self.log(
                            Level::Error,
                            format!("processes of the tree survive a kill for {s} s; giving up on them"),
                        );
                        self.effects.push(Effect::Abandon);
                        self.tree_gone(Exit::default(), now);
                    }
                }
            }
            _ => {}
        }
    }

    fn launch_probe(&mut self, tcp_first: bool, now: Instant) {
        self.probing = true;
        self.probe_started = Some(now);
        self.effects.push(Effect::Probe { tcp_first });
    }

    fn cancel_probe(&mut self) {
        if self.probing {
            self.probing = false;
            self.effects.push(Effect::CancelProbe);
        }
    }

    fn probed(&mut self, result: ProbeResult, now: Instant) {
        let startup_interval = self.rules.startup_probe_interval;
        let interval = self.rules.interval;
        match (&mut self.phase, result) {
            (Phase::Starting { spawned, listening, next_probe, .. }, ProbeResult::NotListening) => {
                *listening = false;
                let fast = if now.saturating_duration_since(*spawned) < FAST_POLL_WINDOW {
                    FAST_POLL.min(startup_interval)
                } else {
                    startup_interval
                };
                *next_probe = now + fast;
            }
            (Phase::Starting { spawned, listening, next_probe, last_error, .. }, ProbeResult::Http(c)) => {
                if c.healthy {
                    let took = now.saturating_duration_since(*spawned).as_millis();
                    self.seq.healthy(now);
                    self.failures = 0;
                    self.phase = Phase::Running { next_probe: now + interval };
                    self.patch(Patch {
                        status: Some(ServiceStatus::Online),
                        sub_state: Some(None),
                        consecutive_failures: Some(0),
                        last_check: Some(c),
                        next_restart_in: Some(None),
                        ..Patch::default()
                    });
                    self.log(Level::Info, format!("healthy {took} ms after spawn"));
                } else {
                    *listening = true;
                    *next_probe = now + startup_interval;
                    *last_error = c.error.clone();
                    self.log(Level::Debug, format!("startup probe failed: {}", c.error.as_deref().unwrap_or("?")));
                }
            }
            (Phase::Running { next_probe }, ProbeResult::Http(c)) => {
                *next_probe = now + interval;
                self.monitored(c, now);
            }
            (Phase::Watching { next_probe }, ProbeResult::Http(c)) => {
                *next_probe = now + interval;
                self.watched(c, now);
            }
            _ => {}
        }
    }

    fn log_check(&mut self, c: &Check) {
        let line = match &c.error {
            None => format!("healthy ({} ms)", c.latency_ms),
            Some(e) => format!("health check failed after {} ms: {e}", c.latency_ms),
        };
        self.log(Level::Debug, line);
    }

    /// A monitoring probe of our own running process.
    fn monitored(&mut self, c: Check, now: Instant) {
        self.log_check(&c);
        if c.healthy {
            self.failures = 0;
            if self.status != ServiceStatus::Online {
                self.seq.healthy(now);
            }
            self.patch(Patch {
                status: Some(ServiceStatus::Online),
                sub_state: Some(None),
                consecutive_failures: Some(0),
                last_check: Some(c),
                ..Patch::default()
            });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let gone_offline = self.status == ServiceStatus::Online && failures >= self.rules.failure_threshold;
        let reason = format!(
            "unhealthy: {failures} consecutive failed health checks (last: {})",
            c.error.as_deref().unwrap_or("?")
        );
        let mut patch = Patch { consecutive_failures: Some(failures), last_check: Some(c), ..Patch::default() };
        if gone_offline {
            patch.status = Some(ServiceStatus::Offline);
            patch.sub_state = Some(None);
        }
        self.patch(patch);
        if gone_offline && self.rules.restart != RestartPolicy::Never {
            self.log(Level::Warn, format!("{reason}; restarting"));
            self.stop_or(AfterStop::Backoff(ServiceStatus::Offline, reason), true, now);
        }
    }

    /// A probe of an adopted or external service.
    fn watched(&mut self, c: Check, now: Instant) {
        self.log_check(&c);
        let sub_state = (self.kind == ServiceKind::Adopted).then_some(SubState::Adopted);
        if c.healthy {
            self.failures = 0;
            self.patch(Patch {
                status: Some(ServiceStatus::Online),
                sub_state: Some(sub_state),
                consecutive_failures: Some(0),
                last_check: Some(c),
                ..Patch::default()
            });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let gone_offline = self.status == ServiceStatus::Starting
            || (self.status == ServiceStatus::Online && failures >= self.rules.failure_threshold);
        let adopted_gone = gone_offline && self.kind == ServiceKind::Adopted;
        let reason = format!(
            "the adopted instance stopped answering ({failures} failed health checks, last: {})",
            c.error.as_deref().unwrap_or("?")
        );
        let mut patch = Patch { consecutive_failures: Some(failures), last_check: Some(c), ..Patch::default() };
        if gone_offline {
            patch.status = Some(ServiceStatus::Offline);
            patch.sub_state = Some(None);
        }
        if adopted_gone {
            // Not ours any more: from now on the service is managed again.
            patch.kind = Some(ServiceKind::Managed);
            patch.pid = Some(None);
        }
        self.patch(patch);
        if adopted_gone {
            self.log(Level::Warn, reason.clone());
            self.kind = ServiceKind::Managed;
            self.phase = Phase::Idle;
            if self.rules.restart == RestartPolicy::Never {
                self.patch(Patch { last_error: Some(reason), ..Patch::default() });
            } else {
                self.schedule_restart(ServiceStatus::Offline, reason, now);
            }
        }
    }

    // ---- failures ------------------------------------------------------------------------

    fn startup_timed_out(&mut self, now: Instant) {
        let last_probe = match &self.phase {
            Phase::Starting { last_error: Some(e), .. } => format!("last health check: {e}"),
            Phase::Starting { listening: false, .. } => "the port never accepted a connection".to_owned(),
            _ => "no health check answered".to_owned(),
        };
        let detail = format!(
            "not healthy within {} ms after spawn ({last_probe}); killed",
            self.rules.startup_timeout.as_millis()
        );
        self.stop_or(AfterStop::StartupFailed(detail), false, now);
    }

    /// The process ended and its tree is gone.
    fn exited(&mut self, exit: Exit, now: Instant) {
        if !self.has_process() {
            return;
        }
        self.tree_gone(exit, now);
    }

    fn tree_gone(&mut self, exit: Exit, now: Instant) {
        self.cancel_probe();
        let how = exit.describe();
        let last_exit = Some((exit.code, exit.signal.clone()));
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Stopping { then, .. } => {
                if exit.code.is_some() || exit.signal.is_some() {
                    self.log(Level::Info, format!("stopped ({how})"));
                    self.patch(Patch { last_exit, pid: Some(None), ..Patch::default() });
                }
                let then = match then {
                    AfterStop::StartupFailed(detail) => {
                        AfterStop::StartupFailed(format!("{detail}{}", quote(&exit.output)))
                    }
                    other => other,
                };
                self.after_stop(then, now);
            }
            phase => {
                let during_startup = matches!(phase, Phase::Starting { .. });
                let clean = exit.code == Some(0);
                let restart = match self.rules.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !clean,
                    RestartPolicy::Never => false,
                };
                let (status, message) = if during_startup {
                    (ServiceStatus::Error, format!("exited during startup with {how}{}", quote(&exit.output)))
                } else {
                    (ServiceStatus::Offline, format!("exited unexpectedly with {how}"))
                };
                if clean && !during_startup {
                    self.log(Level::Info, format!("exited with {how}"));
                } else {
                    self.log(Level::Warn, message.clone());
                }
                self.failures = 0;
                self.patch(Patch {
                    status: Some(status),
                    sub_state: Some(None),
                    pid: Some(None),
                    last_exit,
                    last_error: (!clean || during_startup).then(|| message.clone()),
                    ..Patch::default()
                });
                if restart {
                    self.schedule_restart(status, message, now);
                }
            }
        }
    }

    /// Plans the next restart after a failure and shows the wait.
    fn schedule_restart(&mut self, base: ServiceStatus, reason: String, now: Instant) {
        let plan = self.seq.failure(now);
        self.phase = Phase::Backoff { until: now + plan.delay };
        let (status, sub_state, message) = if plan.crash_loop {
            (
                ServiceStatus::Error,
                SubState::CrashLoop,
                format!(
                    "crash loop: {} failures within {} s, retrying every {} ms; last: {reason}",
                    plan.failures_in_window,
                    self.rules.failure_window.as_secs(),
                    self.seq.policy().max().as_millis()
                ),
            )
        } else {
            (base, SubState::Backoff, reason)
        };
        self.log(Level::Info, format!("restart in {} ms ({status}/{sub_state})", plan.delay.as_millis()));
        self.patch(Patch {
            status: Some(status),
            sub_state: Some(Some(sub_state)),
            pid: Some(None),
            next_restart_in: Some(Some(plan.delay)),
            last_error: Some(message),
            ..Patch::default()
        });
    }

    // ---- helpers -------------------------------------------------------------------------

    fn patch(&mut self, patch: Patch) {
        if let Some(s) = patch.status {
            self.status = s;
        }
        if let Some(k) = patch.kind {
            self.kind = k;
        }
        self.effects.push(Effect::Status(patch));
    }

    fn log(&mut self, level: Level, line: String) {
        self.effects.push(Effect::Log(level, line));
    }
}

/// `; last output:\n[stderr] …` for `last_error`, or `; no output`.
fn quote(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; no output".to_owned();
    }
    let mut s = String::from("; last output:");
    for l in lines {
        s.push('\n');
        s.push_str(l);
    }
    s
}

/// A compact rendering for tests and debug logs: `status=online sub=- pid=42`.
impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::CheckPort => f.write_str("check-port"),
            Effect::Spawn => f.write_str("spawn"),
            Effect::Signal => f.write_str("signal"),
            Effect::Terminate => f.write_str("terminate"),
            Effect::Abandon => f.write_str("abandon"),
            Effect::Probe { tcp_first: true } => f.write_str("probe-tcp"),
            Effect::Probe { tcp_first: false } => f.write_str("probe-http"),
            Effect::CancelProbe => f.write_str("cancel-probe"),
            Effect::Finished => f.write_str("finished"),
            Effect::Reply(t, o) => write!(f, "reply#{t}={o:?}"),
            Effect::Log(level, line) => write!(f, "log-{level:?}:{line}"),
            Effect::Status(p) => {
                let mut parts: Vec<String> = Vec::new();
                if let Some(s) = p.status {
                    parts.push(format!("status={s}"));
                }
                if let Some(s) = p.sub_state {
                    parts.push(format!("sub={}", s.map_or_else(|| "-".to_owned(), |s| s.to_string())));
                }
                if let Some(k) = p.kind {
                    parts.push(format!("kind={k:?}"));
                }
                if let Some(pid) = p.pid {
                    parts.push(format!("pid={}", pid.map_or_else(|| "-".to_owned(), |p| p.to_string())));
                }
                if let Some(n) = p.consecutive_failures {
                    parts.push(format!("failures={n}"));
                }
                if p.last_check.is_some() {
                    parts.push("check".to_owned());
                }
                if let Some((code, signal)) = &p.last_exit {
                    parts.push(format!("exit={code:?}/{signal:?}"));
                }
                if let Some(next) = p.next_restart_in {
                    parts.push(format!(
                        "next={}",
                        next.map_or_else(|| "-".to_owned(), |d| format!("{}ms", d.as_millis()))
                    ));
                }
                if let Some(e) = &p.last_error {
                    parts.push(format!("error={e}"));
                }
                if p.restarted {
                    parts.push("restarted".to_owned());
                }
                write!(f, "[{}]", parts.join(" "))
            }
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
