//! Windows: a Service Control Manager entry (automatic start at boot, the given account, the
//! absolute paths of the binary, configuration and data directory) or, with `--at-logon`, a
//! Task Scheduler task in the user's own session; and `service-run`, the orchestrator under the
//! SCM dispatcher: `Running` once the gateway listens, a Stop or (pre)shutdown request runs the
//! normal graceful shutdown (services in reverse dependency order), then `Stopped`.

use std::ffi::OsString;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gateway_http::Config;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode, ServiceInfo,
    ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::{DISPLAY_NAME, Launch, RunHooks};

/// The environment variable the service account's password is read from (never an argument,
/// never logged).
const PASSWORD_VAR: &str = "ORCHESTRATOR_SERVICE_PASSWORD";

/// One `service install`.
pub(super) struct Request<'a> {
    pub name: &'a str,
    pub user: Option<&'a str>,
    pub at_logon: bool,
    pub print: bool,
}

type Serve = Box<dyn FnOnce(RunHooks) -> anyhow::Result<()> + Send>;

/// What the dispatcher's thread runs (set before the dispatcher starts, taken once).
static SERVE: Mutex<Option<(String, Duration, Serve)>> = Mutex::new(None);
/// How that run ended, for the main thread once the dispatcher returns.
static OUTCOME: Mutex<Option<anyhow::Result<()>>> = Mutex::new(None);

fn display_name(name: &str) -> String {
    if name == super::DEFAULT_NAME { DISPLAY_NAME.to_owned() } else { format!("{DISPLAY_NAME} ({name})") }
}

/// `DOMAIN\user` of whoever runs `service install` (`.\user` without a domain).
fn current_user() -> Option<String> {
    let user = std::env::var("USERNAME").ok().filter(|u| !u.is_empty())?;
    let domain = std::env::var("USERDOMAIN").ok().filter(|d| !d.is_empty()).unwrap_or_else(|| ".".to_owned());
    Some(format!("{domain}\\{user}"))
}

fn schtasks(args: &[String]) -> anyhow::Result<()> {
    let out = Command::new("schtasks").args(args).output().context("running schtasks")?;
    if !out.status.success() {
        let said = [out.stdout, out.stderr].map(|b| String::from_utf8_lossy(&b).trim().to_owned()).join(" ");
        let said = if said.trim().is_empty() { format!("{} and no message", out.status) } else { said };
        bail!("schtasks {} failed: {}", args.first().map(String::as_str).unwrap_or_default(), said.trim());
    }
    Ok(())
}

pub(super) fn install(req: &Request<'_>, launch: &Launch, config: &Config) -> anyhow::Result<()> {
    let args = launch.service_run_args(req.name, req.at_logon);
    let line = super::command_line::windows_command_line(&launch.exe, &args);
    if req.at_logon {
        let user = match req.user {
            Some(u) => u.to_owned(),
            None => current_user().context("name the account with --user (USERNAME is not set)")?,
        };
        let task = super::command_line::schtasks_create_args(req.name, &line, &user)?;
        if req.print {
            println!("Task Scheduler task {}", req.name);
            println!(
                "  trigger:  at the logon of {user}, in that user's own session (limited rights, no stored password)"
            );
            println!("  command:  {line}");
            return Ok(());
        }
        schtasks(&task)?;
        println!("registered the logon task {}: it starts the orchestrator when {user} logs on", req.name);
        return Ok(());
    }
    let account = req.user.unwrap_or("LocalSystem");
    let password = req.user.and_then(|_| std::env::var_os(PASSWORD_VAR));
    if req.print {
        println!("Windows service {} ({})", req.name, display_name(req.name));
        println!("  start:    automatic, at boot");
        println!("  account:  {account}");
        if req.user.is_some() {
            let from = if password.is_some() { "from" } else { "none: not set in" };
            println!("  password: {from} {PASSWORD_VAR}");
        }
        println!("  command:  {line}");
        return Ok(());
    }
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("connecting to the Service Control Manager (this needs an elevated prompt)")?;
    let info = ServiceInfo {
        name: OsString::from(req.name),
        display_name: OsString::from(display_name(req.name)),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: launch.exe.clone(),
        launch_arguments: args,
        dependencies: Vec::new(),
        account_name: req.user.map(OsString::from),
        account_password: password,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .with_context(|| format!("registering the service {}", req.name))?;
    service
        .set_description("Gateway, supervisor, real-time hub and settings store of the MT5 trading platform")
        .context("setting the service's description")?;
    // At machine shutdown the services get this long to stop in dependency order.
    service.set_preshutdown_timeout(super::stop_budget(config)).context("setting the preshutdown timeout")?;
    println!("registered the service {} as {account}; start it now with `sc start {}`", req.name, req.name);
    Ok(())
}

pub(super) fn uninstall(name: &str, at_logon: bool) -> anyhow::Result<()> {
    if at_logon {
        schtasks(&super::command_line::schtasks_delete_args(name))?;
        println!("removed the logon task {name}");
        return Ok(());
    }
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("connecting to the Service Control Manager (this needs an elevated prompt)")?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE)
        .with_context(|| format!("opening the service {name}"))?;
    let state = service.query_status().context("querying the service")?.current_state;
    if state != ServiceState::Stopped {
        if state != ServiceState::StopPending
            && let Err(e) = service.stop()
        {
            eprintln!("stopping {name}: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while service.query_status().context("querying the service")?.current_state != ServiceState::Stopped {
            if Instant::now() > deadline {
                bail!("{name} did not stop within 10 minutes; it is left registered");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service.delete().with_context(|| format!("removing the service {name}"))?;
    println!("stopped and removed the service {name}");
    Ok(())
}

pub(super) fn run_under_service_manager(name: &str, stop_hint: Duration, serve: Serve) -> anyhow::Result<()> {
    if let Ok(mut slot) = SERVE.lock() {
        *slot = Some((name.to_owned(), stop_hint, serve));
    }
    entry::start(name).context(
        "connecting to the Service Control Manager's dispatcher: `service-run` is started by the SCM, not from a prompt",
    )?;
    OUTCOME.lock().ok().and_then(|mut o| o.take()).unwrap_or(Ok(()))
}

/// The FFI entry point the dispatcher calls on its own thread; the macro's glue is the only
/// unsafe code of the binary.
#[allow(unsafe_code)]
mod entry {
    use super::service_main;

    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// Blocks until the service has stopped.
    pub(super) fn start(name: &str) -> windows_service::Result<()> {
        windows_service::service_dispatcher::start(name, ffi_service_main)
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some((name, stop_hint, serve)) = SERVE.lock().ok().and_then(|mut s| s.take()) else { return };
    let outcome = run_service(&name, stop_hint, serve);
    if let Err(e) = &outcome {
        log::error!("{e:#}");
    }
    if let Ok(mut slot) = OUTCOME.lock() {
        *slot = Some(outcome);
    }
}

fn status(state: ServiceState, accept: ServiceControlAccept, wait_hint: Duration, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: if exit == 0 { ServiceExitCode::Win32(0) } else { ServiceExitCode::ServiceSpecific(exit) },
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

fn report(handle: ServiceStatusHandle, s: ServiceStatus) {
    if let Err(e) = handle.set_service_status(s) {
        log::warn!("cannot report the service's status: {e}");
    }
}

fn run_service(name: &str, stop_hint: Duration, serve: Serve) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Preshutdown | ServiceControl::Shutdown => {
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(name, handler).context("registering the service control handler")?;
    report(handle, status(ServiceState::StartPending, ServiceControlAccept::empty(), Duration::from_secs(60), 0));
    let label = name.to_owned();
    let on_listening = Box::new(move || {
        let accept = ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN;
        report(handle, status(ServiceState::Running, accept, Duration::ZERO, 0));
        log::info!("running as the Windows service {label}");
    });
    let stop = Box::pin(async move {
        if stop_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        log::info!("the Service Control Manager asked to stop");
        report(handle, status(ServiceState::StopPending, ServiceControlAccept::empty(), stop_hint, 0));
    });
    let result = serve(RunHooks { stop, on_listening });
    let exit = if result.is_ok() { 0 } else { 1 };
    report(handle, status(ServiceState::Stopped, ServiceControlAccept::empty(), Duration::ZERO, exit));
    result
}
