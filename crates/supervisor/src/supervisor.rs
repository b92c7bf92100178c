//! The supervisor's front: [`Supervisor::start`] creates the supervisor thread (its own
//! current-thread actix runtime, because awc is `!Send`) with one task per service, and the
//! `Send + Sync` [`SupervisorHandle`] talks to it over channels. Start-up (clean-up of a
//! crashed run, dependency order) and shutdown (reverse dependency order) are coordinated by a
//! main task on the same thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::HealthConfig;
use gateway_core::{ServiceKind, ServiceStatus};
use registry::{Registry, ReloadPlan, ServiceConfig, ServiceEntry};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::SupervisorError;
use crate::logs::{self, LOG_FILE_MAX_BYTES, LOG_FILES_KEPT, LogLine, RotatingFile, ServiceLogs};
use crate::os;
use crate::pidfile;
use crate::service::{Command, Context, ServiceActor};

/// Longest wait for the leftovers of a crashed run to vanish after SIGKILL.
const LEFTOVER_WAIT: Duration = Duration::from_secs(5);

/// What the supervisor needs besides the registry.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Probe timers and thresholds.
    pub health: HealthConfig,
    /// Runtime state: logs go to `data_dir/logs`, pidfiles to `data_dir/run`.
    pub data_dir: PathBuf,
}

/// Starts the supervisor.
#[derive(Debug)]
pub struct Supervisor;

#[derive(Clone)]
struct ServiceLink {
    tx: mpsc::UnboundedSender<Command>,
    logs: Arc<ServiceLogs>,
    probe_requested: Arc<AtomicBool>,
}

/// The links of the configured services (replaced in part by a reload).
type Links = Arc<parking_lot::RwLock<HashMap<String, ServiceLink>>>;

enum MainCommand {
    StartAll(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    Reload(Box<Reload>),
}

/// A reload for the main task to carry out.
struct Reload {
    services: Vec<ServiceConfig>,
    health: HealthConfig,
    plan: ReloadPlan,
    done: oneshot::Sender<()>,
}

struct Inner {
    services: Links,
    main: mpsc::UnboundedSender<MainCommand>,
}

/// The way to talk to the supervisor; cheap to clone, usable from any thread and runtime.
#[derive(Clone)]
pub struct SupervisorHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle").field("services", &self.inner.services.read().len()).finish()
    }
}

/// What the supervisor thread is given to build its tasks.
struct Seed {
    config: Arc<ServiceConfig>,
    rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    logs: Arc<ServiceLogs>,
    probe_requested: Arc<AtomicBool>,
}

impl Supervisor {
    /// Creates `data_dir/logs` and `data_dir/run`, the log writer thread and the supervisor
    /// thread with one task per configured service. Nothing is spawned until
    /// [`SupervisorHandle::start_all`] or [`SupervisorHandle::start_service`].
    pub fn start(config: SupervisorConfig, registry: Registry) -> Result<SupervisorHandle, SupervisorError> {
        let logs_dir = config.data_dir.join("logs");
        let run_dir = config.data_dir.join("run");
        for dir in [&logs_dir, &run_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| SupervisorError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let configs = registry.configs();
        let files = configs
            .iter()
            .map(|c| RotatingFile::new(logs::log_path(&logs_dir, c.name.as_str()), LOG_FILE_MAX_BYTES, LOG_FILES_KEPT))
            .collect();
        let writer =
            logs::spawn_writer(files).map_err(|e| SupervisorError::io("cannot start the log writer thread", e))?;

        let mut services = HashMap::new();
        let mut seeds = Vec::new();
        for (i, config) in configs.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let logs = Arc::new(ServiceLogs::new(Some((i, writer.clone()))));
            let probe_requested = Arc::new(AtomicBool::new(false));
            services.insert(
                config.name.to_string(),
                ServiceLink { tx: tx.clone(), logs: logs.clone(), probe_requested: probe_requested.clone() },
            );
            seeds.push(Seed { config, rx, tx, logs, probe_requested });
        }
        drop(writer);

        let services: Links = Arc::new(parking_lot::RwLock::new(services));
        let (main_tx, main_rx) = mpsc::unbounded_channel();
        let ctx = Context { registry, health: config.health, run_dir };
        let main = Main { ctx, links: services.clone(), logs_dir };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                // The supervisor thread lives as long as the supervisor: children are spawned
                // from it, and their parent-death signal fires when it exits.
                let runtime = match actix_rt::Runtime::new() {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(main.run(seeds, main_rx));
                log::debug!("supervisor thread ends");
            })
            .map_err(|e| SupervisorError::io("cannot start the supervisor thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SupervisorError::io("cannot create the supervisor runtime", e)),
            Err(_) => return Err(SupervisorError::ShutDown),
        }
        Ok(SupervisorHandle { inner: Arc::new(Inner { services, main: main_tx }) })
    }
}

impl SupervisorHandle {
    fn link(&self, name: &str) -> Result<ServiceLink, SupervisorError> {
        self.inner.services.read().get(name).cloned().ok_or_else(|| SupervisorError::UnknownService(name.to_owned()))
    }

    async fn ask(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<Result<ServiceEntry, SupervisorError>>) -> Command,
    ) -> Result<ServiceEntry, SupervisorError> {
        let link = self.link(name)?;
        let (tx, rx) = oneshot::channel();
        link.tx.send(make(tx)).map_err(|_| SupervisorError::ShutDown)?;
        rx.await.map_err(|_| SupervisorError::ShutDown)?
    }

    /// Kills what a crashed previous run left behind (found through the pidfiles), starts the
    /// autostart services and begins monitoring the external ones. Services without
    /// dependencies are started in parallel; this returns once they are spawned (status
    /// `starting`, or adopted / port conflict). A service with `depends_on` is started in the
    /// background as soon as all its dependencies are online.
    pub async fn start_all(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.main.send(MainCommand::StartAll(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Starts a managed service (port check, then spawn or adopt); returns once it is spawned.
    /// Resets the failure sequence and a crash loop. Errors: `AlreadyRunning` while a process
    /// of ours runs, `NotManaged` for external/adopted services.
    pub async fn start_service(&self, name: &str) -> Result<ServiceEntry, SupervisorError> {
        self.ask(name, Command::Start).await
    }

    /// Stops a managed service (`stop_signal` to its group, SIGKILL after `stop_timeout_ms`)
    /// and returns once the group is empty; also cancels a pending restart. Errors:
    /// `AlreadyStopped`, `NotManaged`.
    pub async fn stop_service(&self, name: &str) -> Result<ServiceEntry, SupervisorError> {
        self.ask(name, Command::Stop).await
    }

    /// Stops the service if it runs, then starts it.
    pub async fn restart_service(&self, name: &str) -> Result<ServiceEntry, SupervisorError> {
        self.ask(name, Command::Restart).await
    }

    /// The last `tail` captured output lines of a service, oldest first.
    pub fn logs(&self, name: &str, tail: usize) -> Result<Vec<LogLine>, SupervisorError> {
        Ok(self.link(name)?.logs.tail(tail))
    }

    /// A passive check (e.g. after a failed forward): probe the service now. Bursts are
    /// coalesced; unknown names are ignored.
    pub fn probe_now(&self, name: &str) {
        if let Some(link) = self.inner.services.read().get(name)
            && !link.probe_requested.swap(true, Ordering::AcqRel)
            && link.tx.send(Command::ProbeNow).is_err()
        {
            link.probe_requested.store(false, Ordering::Release);
        }
    }

    /// Carries out a reload's plan (see [`ReloadPlan`]): removed services are stopped
    /// (dependents first) and forgotten; the registry gets the new service table; updated
    /// services (and every service when `[health]` changed) take their new configuration in
    /// place; restarted ones do too and, when a process of theirs runs, are restarted, in
    /// configuration order; added services get a task of their own and are started when
    /// `autostart` (after their dependencies). Unchanged services are not touched: same
    /// process, same pid. Returns once every step is done.
    pub async fn reload(&self, services: Vec<ServiceConfig>, health: HealthConfig, plan: ReloadPlan) {
        let (done, rx) = oneshot::channel();
        let reload = Box::new(Reload { services, health, plan, done });
        if self.inner.main.send(MainCommand::Reload(reload)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops every managed service, dependents before their dependencies, independent ones in
    /// parallel, logging every second which ones still hold shutdown up. Adopted and external
    /// services are never signalled. Afterwards the supervisor takes no more requests
    /// (`ShutDown`).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.main.send(MainCommand::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The main task's state: what it needs to create service tasks after start-up (a reload).
struct Main {
    ctx: Context,
    links: Links,
    logs_dir: PathBuf,
}

/// The configured services, in configuration order, with their task's channel.
type Tasks = Vec<(Arc<ServiceConfig>, mpsc::UnboundedSender<Command>)>;

impl Main {
    /// Creates the service tasks, then serves start-all, reloads and shutdown.
    async fn run(mut self, seeds: Vec<Seed>, mut rx: mpsc::UnboundedReceiver<MainCommand>) {
        let mut services: Tasks = Vec::new();
        let mut tasks = Vec::new();
        for seed in seeds {
            services.push((seed.config.clone(), seed.tx));
            let actor = ServiceActor::new(seed.config, self.ctx.clone(), seed.logs, seed.probe_requested, seed.rx);
            tasks.push(actix_rt::spawn(actor.run()));
        }
        let (cancel_tx, cancel_rx) = watch::channel(false);
        loop {
            match rx.recv().await {
                Some(MainCommand::StartAll(done)) => {
                    clean_up_leftovers(&self.ctx.run_dir).await;
                    start_services(&self.ctx, &services, &cancel_rx).await;
                    let _ = done.send(());
                }
                Some(MainCommand::Reload(reload)) => {
                    let Reload { services: configs, health, plan, done } = *reload;
                    services = self.reload(services, configs, health, &plan, &mut tasks, &cancel_rx).await;
                    let _ = done.send(());
                }
                Some(MainCommand::Shutdown(done)) => {
                    let _ = cancel_tx.send(true);
                    shutdown(&services).await;
                    let _ = done.send(());
                    break;
                }
                None => {
                    // Every handle is gone: nobody can stop the services any more, so stop them now.
                    let _ = cancel_tx.send(true);
                    shutdown(&services).await;
                    break;
                }
            }
        }
        drop(services);
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn reload(
        &mut self,
        running: Tasks,
        configs: Vec<ServiceConfig>,
        health: HealthConfig,
        plan: &ReloadPlan,
        tasks: &mut Vec<actix_rt::task::JoinHandle<()>>,
        cancel: &watch::Receiver<bool>,
    ) -> Tasks {
        let named = |list: &[String], c: &ServiceConfig| list.iter().any(|n| n == c.name.as_str());
        let (removed, mut kept): (Tasks, Tasks) = running.into_iter().partition(|(c, _)| named(&plan.removed, c));
        if !removed.is_empty() {
            log::info!("reload: stopping the removed services {}", plan.removed.join(", "));
            shutdown(&removed).await;
            let mut links = self.links.write();
            for (c, _) in &removed {
                links.remove(c.name.as_str());
            }
        }
        self.ctx.registry.replace(&configs);
        self.ctx.health = health.clone();
        let mut next: Tasks = Vec::with_capacity(configs.len());
        for config in configs {
            let changed = plan.health_changed || named(&plan.updated, &config) || named(&plan.restarted, &config);
            let config = Arc::new(config);
            if let Some(pos) = kept.iter().position(|(c, _)| c.name == config.name) {
                let (_, tx) = kept.swap_remove(pos);
                if changed {
                    let _ = tx.send(Command::Reconfigure(config.clone(), health.clone()));
                }
                next.push((config, tx));
            } else {
                let tx = self.add(config.clone(), tasks);
                next.push((config, tx));
            }
        }
        // Restarts in configuration order, one at a time, only of services with a process.
        for (config, tx) in &next {
            let name = config.name.as_str();
            let has_process =
                self.ctx.registry.entry(name).is_some_and(|e| e.pid.is_some() && e.kind == ServiceKind::Managed);
            if named(&plan.restarted, config) && has_process {
                log::info!("reload: restarting {name} (what its process runs changed)");
                let (reply, rx) = oneshot::channel();
                if tx.send(Command::Restart(reply)).is_ok() {
                    report_autostart(name, rx.await.unwrap_or(Err(SupervisorError::ShutDown)));
                }
            }
        }
        let added: Tasks = next.iter().filter(|(c, _)| named(&plan.added, c)).cloned().collect();
        if !added.is_empty() {
            log::info!("reload: starting the added services {}", plan.added.join(", "));
            start_services(&self.ctx, &added, cancel).await;
        }
        next
    }

    /// A task for a service added by a reload, with a writer of its own for its log file.
    fn add(
        &self,
        config: Arc<ServiceConfig>,
        tasks: &mut Vec<actix_rt::task::JoinHandle<()>>,
    ) -> mpsc::UnboundedSender<Command> {
        let path = logs::log_path(&self.logs_dir, config.name.as_str());
        let writer = match logs::spawn_writer(vec![RotatingFile::new(path, LOG_FILE_MAX_BYTES, LOG_FILES_KEPT)]) {
            Ok(w) => Some((0, w)),
            Err(e) => {
                log::warn!("{}: no log file (cannot start its writer: {e})", config.name);
                None
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let logs = Arc::new(ServiceLogs::new(writer));
        let probe_requested = Arc::new(AtomicBool::new(false));
        self.links.write().insert(
            config.name.to_string(),
            ServiceLink { tx: tx.clone(), logs: logs.clone(), probe_requested: probe_requested.clone() },
        );
        let actor = ServiceActor::new(config, self.ctx.clone(), logs, probe_requested, rx);
        tasks.push(actix_rt::spawn(actor.run()));
        tx
    }
}

/// Starts the autostart services (those without dependencies in parallel, the others in the
/// background once their dependencies are online) and begins monitoring the external ones.
async fn start_services(
    ctx: &Context,
    services: &[(Arc<ServiceConfig>, mpsc::UnboundedSender<Command>)],
    cancel: &watch::Receiver<bool>,
) {
    let mut replies = Vec::new();
    for (config, tx) in services {
        if config.is_external() {
            let _ = tx.send(Command::Monitor);
        } else if !config.autostart {
            continue;
        } else if config.depends_on.is_empty() {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Start(reply)).is_ok() {
                replies.push((config.name.to_string(), rx));
            }
        } else {
            actix_rt::spawn(start_when_ready(ctx.registry.clone(), config.clone(), tx.clone(), cancel.clone()));
        }
    }
    for (name, rx) in replies {
        report_autostart(&name, rx.await.unwrap_or(Err(SupervisorError::ShutDown)));
    }
}

fn report_autostart(name: &str, result: Result<ServiceEntry, SupervisorError>) {
    match result {
        Ok(entry) => log::debug!("autostart {name}: {}", entry.status),
        Err(e @ (SupervisorError::AlreadyRunning { .. } | SupervisorError::NotManaged { .. })) => {
            log::debug!("autostart {name}: {e}")
        }
        Err(e) => log::warn!("autostart of {name} failed: {e}"),
    }
}

/// Kills the leftovers named by pidfiles and waits (bounded) until they are gone.
async fn clean_up_leftovers(run_dir: &Path) {
    let pending = pidfile::kill_leftovers(run_dir);
    let deadline = Instant::now() + LEFTOVER_WAIT;
    for (sid, path) in pending {
        while os::leftovers_remain(sid) {
            if Instant::now() >= deadline {
                log::error!("leftovers of session {sid} survive SIGKILL; leaving {}", path.display());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !os::leftovers_remain(sid) {
            pidfile::remove(&path);
        }
    }
}

/// Starts a service once all of its dependencies are online (or gives up on shutdown).
async fn start_when_ready(
    registry: Registry,
    config: Arc<ServiceConfig>,
    tx: mpsc::UnboundedSender<Command>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut changes = registry.subscribe();
    let mut last_waiting: Vec<String> = Vec::new();
    loop {
        let waiting: Vec<String> = config
            .depends_on
            .iter()
            .filter(|d| registry.status(d.as_str()).map(|(s, _)| s) != Some(ServiceStatus::Online))
            .map(|d| d.to_string())
            .collect();
        if waiting.is_empty() {
            break;
        }
        if waiting != last_waiting {
            log::info!("{} waits for {} to be online", config.name, waiting.join(", "));
            last_waiting = waiting;
        }
        tokio::select! {
            r = changes.recv() => if let Err(RecvError::Closed) = r { return },
            _ = cancel.changed() => return,
        }
        if *cancel.borrow() {
            return;
        }
    }
    let (reply, rx) = oneshot::channel();
    if tx.send(Command::Start(reply)).is_ok() {
        report_autostart(config.name.as_str(), rx.await.unwrap_or(Err(SupervisorError::ShutDown)));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StopState {
    WaitingForDependents,
    Stopping,
    Done,
}

/// Stops every service task: dependents first, independent ones in parallel.
async fn shutdown(services: &[(Arc<ServiceConfig>, mpsc::UnboundedSender<Command>)]) {
    let names: Vec<String> = services.iter().map(|(c, _)| c.name.to_string()).collect();
    let states = Rc::new(RefCell::new(vec![StopState::WaitingForDependents; services.len()]));
    let mut done_tx = Vec::new();
    let mut done_rx = HashMap::new();
    for name in &names {
        let (tx, rx) = watch::channel(false);
        done_tx.push(tx);
        done_rx.insert(name.clone(), rx);
    }
    let mut tasks = Vec::new();
    for (i, ((config, tx), done)) in services.iter().zip(done_tx).enumerate() {
        // Services that depend on this one stop first.
        let dependents: Vec<watch::Receiver<bool>> = services
            .iter()
            .filter(|(other, _)| other.depends_on.iter().any(|d| d == &config.name))
            .filter_map(|(other, _)| done_rx.get(other.name.as_str()).cloned())
            .collect();
        let tx = tx.clone();
        let states = states.clone();
        tasks.push(actix_rt::spawn(async move {
            for mut d in dependents {
                let _ = d.wait_for(|stopped| *stopped).await;
            }
            if let Some(s) = states.borrow_mut().get_mut(i) {
                *s = StopState::Stopping;
            }
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Shutdown(reply)).is_ok() {
                let _ = rx.await;
            }
            if let Some(s) = states.borrow_mut().get_mut(i) {
                *s = StopState::Done;
            }
            let _ = done.send(true);
        }));
    }
    let all = futures_util::future::join_all(tasks);
    tokio::pin!(all);
    let started = Instant::now();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = ticker.tick() => {
                let states = states.borrow();
                let describe = |want: StopState| -> Vec<&str> {
                    names.iter().zip(states.iter()).filter(|(_, s)| **s == want).map(|(n, _)| n.as_str()).collect()
                };
                log::info!(
                    "shutdown: {} s, still stopping: [{}], waiting for their dependents: [{}]",
                    started.elapsed().as_secs(),
                    describe(StopState::Stopping).join(", "),
                    describe(StopState::WaitingForDependents).join(", ")
                );
            }
        }
    }
    log::info!("shutdown: every service stopped in {} ms", started.elapsed().as_millis());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}

    /// The handle and its futures can be used from any thread (actix-web workers, tokio tasks).
    #[allow(dead_code)]
    fn handle_is_send_and_sync(h: SupervisorHandle) {
        send_sync(&h);
        send(h.start_all());
        send(h.start_service("x"));
        send(h.stop_service("x"));
        send(h.restart_service("x"));
        send(h.shutdown());
    }

    #[test]
    fn unknown_services_and_logs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::new(&[]);
        let config = SupervisorConfig { health: HealthConfig::default(), data_dir: dir.path().join("data") };
        let handle = Supervisor::start(config, registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(dir.path().join("data/logs").is_dir() && dir.path().join("data/run").is_dir());
        assert!(matches!(handle.logs("nope", 5), Err(SupervisorError::UnknownService(_))));
        handle.probe_now("nope");
        actix_rt::System::new().block_on(async {
            assert!(matches!(handle.stop_service("nope").await, Err(SupervisorError::UnknownService(_))));
            handle.start_all().await;
            handle.shutdown().await;
            handle.shutdown().await; // a second shutdown is a no-op
        });
    }
}
