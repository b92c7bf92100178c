//! `orchestrator service install|uninstall`: makes the orchestrator start with the machine — a
//! systemd unit on Linux; a Service Control Manager entry, or with `--at-logon` a Task Scheduler
//! task in the user's session, on Windows. What is registered (the unit text, the command
//! lines) is a pure function of a [`Launch`], unit-tested on every platform; the `unix` and
//! `windows` parts only hand it to the OS, and the Windows part also runs the orchestrator
//! under the Service Control Manager (`service-run`).

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, bail};
use clap::Subcommand;
use gateway_http::Config;
use registry::ServiceConfig;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as sys;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

/// The name the service, unit or task gets unless `--name` says otherwise.
pub const DEFAULT_NAME: &str = "orchestrator";
/// The name people see in the Windows services list and in `systemctl status`.
pub const DISPLAY_NAME: &str = "MT5 Orchestrator";

/// `orchestrator service …`.
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Register the orchestrator to start with the machine (systemd unit; Windows service or,
    /// with --at-logon, a logon task), with the current --config, --bind and --data-dir.
    Install {
        /// Name of the unit, service or task.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Account to run as (Linux: a user name; Windows: `.\user` or `DOMAIN\user`, password
        /// from ORCHESTRATOR_SERVICE_PASSWORD).
        #[arg(long, value_name = "ACCOUNT")]
        user: Option<String>,
        /// Windows: start in the user's own session at logon (Task Scheduler) instead of as a
        /// service in session 0; the MT5 terminal's link needs the user's session.
        #[arg(long)]
        at_logon: bool,
        /// Print what would be registered, change nothing.
        #[arg(long)]
        print: bool,
    },
    /// Stop and remove what `service install` registered.
    Uninstall {
        /// Name of the unit, service or task.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Windows: remove the logon task rather than the service.
        #[arg(long)]
        at_logon: bool,
    },
}

/// The hidden `service-run` subcommand's arguments: how the registered entry starts us.
#[derive(clap::Args, Debug)]
pub struct ServiceRunArgs {
    /// The registered name (the Service Control Manager's entry).
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// The working directory at install time (a service starts in `System32`).
    #[arg(long, value_name = "DIR")]
    pub workdir: PathBuf,
    /// Started by the logon task: run directly, not under the Service Control Manager.
    #[arg(long)]
    pub logon: bool,
}

/// How a run is told to stop, and tells that it listens, beyond SIGINT/SIGTERM.
pub struct RunHooks {
    /// Completes when the host (the Service Control Manager) asks the orchestrator to stop.
    pub stop: Pin<Box<dyn Future<Output = ()>>>,
    /// Called once, when the gateway listens.
    pub on_listening: Box<dyn FnOnce()>,
}

impl RunHooks {
    /// No host: only SIGINT/SIGTERM stop the run.
    pub fn none() -> RunHooks {
        RunHooks { stop: Box::pin(std::future::pending()), on_listening: Box::new(|| ()) }
    }
}

/// What the registered entry runs, every path absolute (resolved at install time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The orchestrator executable.
    pub exe: PathBuf,
    /// `--config`; `None` runs the built-in platform.
    pub config: Option<PathBuf>,
    /// `--bind`, when one was given to `service install`.
    pub bind: Option<String>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The working directory (relative `cwd`s and programs in the config resolve against it).
    pub workdir: PathBuf,
}

impl Launch {
    /// The launch of the current executable with these flags: `config` or else an
    /// `./orchestrator.toml` that exists, `data_dir` as in effect; relative paths are taken
    /// from the current directory.
    pub fn resolve(config: Option<&Path>, bind: Option<&str>, data_dir: &Path) -> anyhow::Result<Launch> {
        let exe = std::env::current_exe().context("locating the orchestrator executable")?;
        let workdir = std::env::current_dir().context("reading the current directory")?;
        let local = Path::new("orchestrator.toml");
        let config = match config {
            Some(c) => Some(c.to_path_buf()),
            None if local.exists() => Some(local.to_path_buf()),
            None => None,
        };
        let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
        Ok(Launch {
            exe: absolute(&exe)?,
            config: config.as_deref().map(absolute).transpose()?,
            bind: bind.map(str::to_owned),
            data_dir: absolute(data_dir)?,
            workdir: absolute(&workdir)?,
        })
    }

    /// The global flags: `--config C` (if any), `--bind B` (if any), `--data-dir D`.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(c) = &self.config {
            args.extend([OsString::from("--config"), c.clone().into_os_string()]);
        }
        if let Some(b) = &self.bind {
            args.extend([OsString::from("--bind"), OsString::from(b)]);
        }
        args.extend([OsString::from("--data-dir"), self.data_dir.clone().into_os_string()]);
        args
    }

    /// The arguments of a Windows entry: the global flags, then `service-run --name N --workdir
    /// W`, plus `--logon` for the logon task.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn service_run_args(&self, name: &str, logon: bool) -> Vec<OsString> {
        let mut args = self.global_args();
        args.extend([
            OsString::from("service-run"),
            OsString::from("--name"),
            OsString::from(name),
            OsString::from("--workdir"),
            self.workdir.clone().into_os_string(),
        ]);
        if logon {
            args.push(OsString::from("--logon"));
        }
        args
    }
}

/// The registered name: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting with `-` or `.` (a unit
/// file name, a service name and a task name alike).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['-', '.']) {
        bail!("invalid name `{name}`: use 1 to 64 letters, digits, `_`, `-` or `.`");
    }
    Ok(())
}

/// The account: printable, no quotes or spaces at its ends (it is written into a unit file or
/// handed to the OS as one value).
pub fn check_user(user: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.trim() != user || user.chars().any(|c| c.is_control() || c == '"') {
        bail!("invalid account `{}`", user.escape_debug());
    }
    Ok(())
}

/// `service install`: prints (`--print`) or registers the entry for `launch`.
pub fn install(
    name: &str,
    user: Option<&str>,
    at_logon: bool,
    print: bool,
    launch: &Launch,
    config: &Config,
) -> anyhow::Result<()> {
    check_name(name)?;
    if let Some(u) = user {
        check_user(u)?;
    }
    sys::install(&sys::Request { name, user, at_logon, print }, launch, config)
}

/// `service uninstall`: stops and removes the entry.
pub fn uninstall(name: &str, at_logon: bool) -> anyhow::Result<()> {
    check_name(name)?;
    sys::uninstall(name, at_logon)
}

/// `service-run`: runs `serve` under the Service Control Manager (or, for the logon task,
/// directly). The caller has entered `workdir` before reading the configuration.
pub fn run(
    args: &ServiceRunArgs,
    config: &Config,
    serve: Box<dyn FnOnce(RunHooks) -> anyhow::Result<()> + Send>,
) -> anyhow::Result<()> {
    if args.logon {
        return serve(RunHooks::none());
    }
    sys::run_under_service_manager(&args.name, stop_budget(config), serve)
}

/// Where a run under the Service Control Manager logs, having no console:
/// `<data dir>/orchestrator.log`, appended to (beside `logs/`, whose `NAME.log` are the services'). `None` for the logon task (its console shows
/// the log) or when the file cannot be opened (then the log is lost, the service still runs).
pub fn service_log(args: &ServiceRunArgs, data_dir: Option<&Path>) -> Option<std::fs::File> {
    if args.logon {
        return None;
    }
    let dir = data_dir?;
    std::fs::create_dir_all(dir).ok()?;
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join("orchestrator.log")).ok()
}

/// How long a graceful stop may take: the slowest `stop_timeout_ms` chain plus 15 s.
pub fn stop_budget(config: &Config) -> std::time::Duration {
    std::time::Duration::from_millis(slowest_stop_chain_ms(&config.services).saturating_add(15_000))
}

/// The longest sum of `stop_timeout_ms` along a `depends_on` chain of spawned services: the
/// orchestrator stops dependents before their dependencies, independent ones in parallel.
pub fn slowest_stop_chain_ms(services: &[ServiceConfig]) -> u64 {
    fn chain(s: &ServiceConfig, all: &[ServiceConfig], depth: usize) -> u64 {
        let own = if s.is_external() { 0 } else { u64::try_from(s.stop_timeout.as_millis()).unwrap_or(u64::MAX) };
        // Cycles are rejected by the configuration; the depth bound keeps this total anyway.
        if depth > all.len() {
            return own;
        }
        let below = s
            .depends_on
            .iter()
            .filter_map(|d| all.iter().find(|c| c.name == *d))
            .map(|d| chain(d, all, depth + 1))
            .max()
            .unwrap_or(0);
        own.saturating_add(below)
    }
    services.iter().map(|s| chain(s, services, 0)).max().unwrap_or(0)
}

// ---- what systemd is given ----------------------------------------------------------------

/// The systemd unit (used on unix; compiled and tested everywhere).
#[cfg_attr(not(unix), allow(dead_code))]
pub mod systemd {
    use super::*;

    /// One argument of `ExecStart=`: quoted when it holds a space, quote, backslash or `;`, with
    /// `%` and `$` escaped (systemd's specifiers and variables).
    fn systemd_arg(arg: &str) -> String {
        let escaped = arg.replace('%', "%%").replace('$', "$$");
        if !escaped.is_empty() && !escaped.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
        {
            return escaped;
        }
        let mut out = String::from("\"");
        for c in escaped.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    /// A path as UTF-8 without line breaks (a unit file is line-based text).
    fn unit_path(p: &Path) -> anyhow::Result<String> {
        match p.to_str() {
            Some(s) if !s.contains(['\n', '\r']) => Ok(s.to_owned()),
            _ => bail!("{} cannot be written into a systemd unit (not UTF-8, or a line break)", p.display()),
        }
    }

    /// The systemd unit for `launch` (`Type=notify`: `READY=1` once the gateway listens and every
    /// autostart service is online or has given up; `WATCHDOG=1` at half of `WatchdogSec`).
    pub fn systemd_unit(launch: &Launch, user: Option<&str>, config: &Config) -> anyhow::Result<String> {
        let exe = unit_path(&launch.exe)?;
        let mut exec = vec![systemd_arg(&exe)];
        for arg in launch.global_args() {
            let arg = arg.into_string().map_err(|a| anyhow::anyhow!("{} is not UTF-8", a.to_string_lossy()))?;
            exec.push(systemd_arg(&unit_path(Path::new(&arg))?));
        }
        let exec = exec.join(" ");
        let stop_secs = stop_budget(config).as_millis().div_ceil(1000).max(30);
        let mut unit = String::new();
        unit.push_str("# Written by `orchestrator service install`; `orchestrator service uninstall` removes it.\n");
        unit.push_str(&format!("[Unit]\nDescription={DISPLAY_NAME} (gateway, supervisor, hub, settings)\n"));
        unit.push_str("After=network-online.target\nWants=network-online.target\n\n");
        unit.push_str("[Service]\n");
        unit.push_str("# READY=1 once it listens and every autostart service is online or has given up (error).\n");
        unit.push_str("Type=notify\nNotifyAccess=main\n");
        if let Some(user) = user {
            unit.push_str(&format!("User={user}\n"));
        }
        unit.push_str(&format!("WorkingDirectory={}\n", unit_path(&launch.workdir)?.replace('%', "%%")));
        if let Some(config) = &launch.config {
            let check = format!("{} config check {}", systemd_arg(&exe), systemd_arg(&unit_path(config)?));
            unit.push_str(&format!(
                "# Rejects a broken configuration before anything is stopped or started.\nExecStartPre={check}\n"
            ));
        }
        unit.push_str(&format!("ExecStart={exec}\n"));
        unit.push_str("Environment=RUST_LOG=info\n");
        unit.push_str("# The watchdog is pinged every 15 s by the gateway's own runtime: a wedged one is restarted.\n");
        unit.push_str("WatchdogSec=30s\n");
        unit.push_str("Restart=on-failure\nRestartSec=2s\n");
        unit.push_str(
            "# A slow service gives up on its own (startup_timeout_ms, max_failures); a running platform is\n\
             # never killed for it.\nTimeoutStartSec=infinity\n",
        );
        unit.push_str(
            "# The orchestrator stops its services itself, dependents first: SIGTERM goes to it alone,\n\
             # and only what is left after TimeoutStopSec is killed.\nKillMode=mixed\nKillSignal=SIGTERM\n",
        );
        unit.push_str(&format!(
            "# The slowest chain of stop_timeout_ms along depends_on, plus 15 s.\nTimeoutStopSec={stop_secs}s\n"
        ));
        unit.push_str("# Each WebSocket client is a file descriptor.\nLimitNOFILE=65536\n\n");
        unit.push_str("[Install]\nWantedBy=multi-user.target\n");
        Ok(unit)
    }
}

// ---- what Windows is given ----------------------------------------------------------------

/// Windows command lines and `schtasks` arguments (used on Windows; compiled and tested everywhere).
#[cfg_attr(not(windows), allow(dead_code))]
pub mod command_line {
    use super::*;

    /// One argument quoted for a Windows command line, as `CommandLineToArgvW` and the C runtime
    /// split it back: quoted when empty or holding a space, tab or quote; backslashes doubled
    /// before a quote and before the closing quote.
    pub fn windows_arg(arg: &str) -> String {
        if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '"']) {
            return arg.to_owned();
        }
        let mut out = String::from("\"");
        let mut backslashes = 0;
        for c in arg.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    out.push_str(&"\\".repeat(backslashes * 2 + 1));
                    out.push('"');
                    backslashes = 0;
                }
                _ => {
                    out.push_str(&"\\".repeat(backslashes));
                    out.push(c);
                    backslashes = 0;
                }
            }
        }
        out.push_str(&"\\".repeat(backslashes * 2));
        out.push('"');
        out
    }

    /// A whole Windows command line: the executable and its arguments, each quoted as needed.
    pub fn windows_command_line(exe: &Path, args: &[OsString]) -> String {
        std::iter::once(exe.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(|a| windows_arg(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `schtasks` refuses a `/TR` command longer than this.
    pub const SCHTASKS_MAX_COMMAND: usize = 261;

    /// The `schtasks /Create` arguments of the logon task: at the logon of `user`, in that user's
    /// session (`/IT`: no password is stored), with limited rights.
    pub fn schtasks_create_args(name: &str, command_line: &str, user: &str) -> anyhow::Result<Vec<String>> {
        if command_line.chars().count() > SCHTASKS_MAX_COMMAND {
            bail!(
                "the task's command line is {} characters, more than the {SCHTASKS_MAX_COMMAND} schtasks accepts; \
                 install the orchestrator, its configuration and data directory under shorter paths",
                command_line.chars().count()
            );
        }
        Ok(["/Create", "/TN", name, "/SC", "ONLOGON", "/RL", "LIMITED", "/RU", user, "/IT", "/TR", command_line, "/F"]
            .map(str::to_owned)
            .to_vec())
    }

    /// The `schtasks /Delete` arguments of the logon task.
    pub fn schtasks_delete_args(name: &str) -> Vec<String> {
        ["/Delete", "/TN", name, "/F"].map(str::to_owned).to_vec()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::command_line::*;
    use super::systemd::*;
    use super::*;
    use gateway_core::ServiceName;

    fn launch() -> Launch {
        Launch {
            exe: PathBuf::from("/opt/mt5/bin/orchestrator"),
            config: Some(PathBuf::from("/etc/orchestrator/orchestrator.toml")),
            bind: None,
            data_dir: PathBuf::from("/var/lib/orchestrator"),
            workdir: PathBuf::from("/srv/desk"),
        }
    }

    fn service(name: &str, stop_ms: u64, deps: &[&str]) -> ServiceConfig {
        let mut s = ServiceConfig::with_defaults(ServiceName::parse(name).unwrap(), 5001);
        s.command = Some(vec!["python".into()]);
        s.stop_timeout = std::time::Duration::from_millis(stop_ms);
        s.depends_on = deps.iter().map(|d| ServiceName::parse(d).unwrap()).collect();
        s
    }

    fn lines(unit: &str) -> Vec<&str> {
        unit.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn the_unit_runs_the_absolute_paths_as_a_notify_service() {
        let unit = systemd_unit(&launch(), None, &Config::default()).unwrap();
        let l = lines(&unit);
        for want in [
            "Type=notify",
            "NotifyAccess=main",
            "ExecStart=/opt/mt5/bin/orchestrator --config /etc/orchestrator/orchestrator.toml --data-dir /var/lib/orchestrator",
            "ExecStartPre=/opt/mt5/bin/orchestrator config check /etc/orchestrator/orchestrator.toml",
            "WorkingDirectory=/srv/desk",
            "WatchdogSec=30s",
            "Restart=on-failure",
            "KillMode=mixed",
            "TimeoutStopSec=30s",
            "WantedBy=multi-user.target",
        ] {
            assert!(l.contains(&want), "{want} missing from\n{unit}");
        }
        assert!(!unit.contains("User="), "{unit}");
    }

    #[test]
    fn the_unit_names_the_user_and_the_bind_address() {
        let mut l = launch();
        l.bind = Some("0.0.0.0:5000".into());
        let unit = systemd_unit(&l, Some("trader"), &Config::default()).unwrap();
        assert!(lines(&unit).contains(&"User=trader"), "{unit}");
        assert!(unit.contains("--bind 0.0.0.0:5000 --data-dir /var/lib/orchestrator\n"), "{unit}");
    }

    #[test]
    fn without_a_config_the_unit_runs_the_builtin_platform() {
        let mut l = launch();
        l.config = None;
        let unit = systemd_unit(&l, None, &Config::default()).unwrap();
        assert!(lines(&unit).contains(&"ExecStart=/opt/mt5/bin/orchestrator --data-dir /var/lib/orchestrator"));
        assert!(!unit.contains("--config") && !unit.contains("ExecStartPre"), "{unit}");
    }

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        let mut l = launch();
        l.data_dir = PathBuf::from("/srv/my desk/100%/$HOME");
        let unit = systemd_unit(&l, None, &Config::default()).unwrap();
        assert!(unit.contains("--data-dir \"/srv/my desk/100%%/$$HOME\"\n"), "{unit}");
        l.data_dir = PathBuf::from("/srv/a\nb");
        assert!(systemd_unit(&l, None, &Config::default()).is_err());
    }

    #[test]
    fn the_stop_timeout_covers_the_slowest_dependency_chain() {
        let services = vec![
            service("data", 10_000, &[]),
            service("mt5", 5_000, &["data"]),
            service("strategy", 20_000, &["mt5"]),
            service("pattern", 30_000, &[]),
        ];
        assert_eq!(slowest_stop_chain_ms(&services), 35_000);
        let config = Config { services, ..Config::default() };
        let unit = systemd_unit(&launch(), None, &config).unwrap();
        assert!(lines(&unit).contains(&"TimeoutStopSec=50s"), "{unit}");
        let mut external = service("remote", 90_000, &[]);
        external.command = None;
        assert_eq!(slowest_stop_chain_ms(&[external]), 0);
    }

    #[test]
    fn names_and_accounts_are_checked() {
        for ok in ["orchestrator", "mt5-desk.2", "A_b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a\\b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for ok in ["trader", ".\\trader", "DESK\\trader"] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", " trader", "tra\nder", "a\"b"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn windows_arguments_survive_the_command_line() {
        let cases = [
            ("plain", "plain"),
            ("", "\"\""),
            ("C:\\Program Files\\MT5\\orchestrator.exe", "\"C:\\Program Files\\MT5\\orchestrator.exe\""),
            ("C:\\data dir\\", "\"C:\\data dir\\\\\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("C:\\no\\spaces\\", "C:\\no\\spaces\\"),
        ];
        for (arg, want) in cases {
            assert_eq!(windows_arg(arg), want, "{arg}");
        }
    }

    #[test]
    fn the_windows_entry_runs_service_run_with_absolute_paths() {
        let l = Launch {
            exe: PathBuf::from("C:\\Program Files\\MT5\\orchestrator.exe"),
            config: Some(PathBuf::from("C:\\desk\\orchestrator.toml")),
            bind: None,
            data_dir: PathBuf::from("C:\\desk\\data"),
            workdir: PathBuf::from("C:\\desk"),
        };
        let line = windows_command_line(&l.exe, &l.service_run_args("orchestrator", false));
        assert_eq!(
            line,
            "\"C:\\Program Files\\MT5\\orchestrator.exe\" --config C:\\desk\\orchestrator.toml --data-dir C:\\desk\\data \
             service-run --name orchestrator --workdir C:\\desk"
        );
        let logon = windows_command_line(&l.exe, &l.service_run_args("orchestrator", true));
        assert!(logon.ends_with(" --logon"), "{logon}");
    }

    #[test]
    fn the_logon_task_runs_in_the_users_session() {
        let args = schtasks_create_args("orchestrator", "C:\\o.exe service-run --logon", "DESK\\trader").unwrap();
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "/Create /TN orchestrator /SC ONLOGON /RL LIMITED /RU DESK\\trader /IT /TR C:\\o.exe service-run --logon /F"
        );
        assert!(schtasks_create_args("o", &"x".repeat(SCHTASKS_MAX_COMMAND + 1), "u").is_err());
        assert_eq!(schtasks_delete_args("o"), ["/Delete", "/TN", "o", "/F"]);
    }
}
