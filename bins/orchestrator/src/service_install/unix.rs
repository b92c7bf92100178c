//! Linux: the systemd unit goes to `/etc/systemd/system/<name>.service`, then `systemctl
//! daemon-reload` and `systemctl enable <name>`; uninstall disables, stops and removes it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use gateway_http::Config;

use super::{Launch, RunHooks};

/// Where system units written by an administrator live.
const UNIT_DIR: &str = "/etc/systemd/system";

/// One `service install`.
pub(super) struct Request<'a> {
    pub name: &'a str,
    pub user: Option<&'a str>,
    pub at_logon: bool,
    pub print: bool,
}

fn unit_file(name: &str) -> PathBuf {
    PathBuf::from(UNIT_DIR).join(format!("{name}.service"))
}

/// Runs `systemctl ARGS`, failing with its own words.
fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = match Command::new("systemctl").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "systemctl was not found: this system does not run systemd; \
             `orchestrator service install --print` prints the unit to install by other means"
        ),
        Err(e) => return Err(e).context("running systemctl"),
    };
    if !out.status.success() {
        bail!("`systemctl {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Fails unless systemd is this machine's init (`/run/systemd/system`, as `sd_booted` checks)
/// and `systemctl` can be run.
fn systemd_running() -> anyhow::Result<()> {
    if !sd_notify::booted().unwrap_or(false) {
        bail!(
            "systemd is not running on this machine (no /run/systemd/system); \
             `orchestrator service install --print` prints the unit to install by other means"
        );
    }
    systemctl(&["--version"])
}

pub(super) fn install(req: &Request<'_>, launch: &Launch, config: &Config) -> anyhow::Result<()> {
    if req.at_logon {
        bail!(
            "--at-logon is for Windows (a logon task in the user's session); on Linux the systemd unit starts at boot"
        );
    }
    let unit = super::systemd::systemd_unit(launch, req.user, config)?;
    if req.print {
        print!("{unit}");
        return Ok(());
    }
    // Before anything is written: without a running systemd nothing would ever read the unit.
    systemd_running()?;
    let path = unit_file(req.name);
    let partial = path.with_extension("service.partial");
    std::fs::write(&partial, unit)
        .and_then(|()| std::fs::rename(&partial, &path))
        .with_context(|| format!("writing {} (this needs root)", path.display()))?;
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", req.name])?;
    println!("installed and enabled {}; start it now with `systemctl start {}`", path.display(), req.name);
    Ok(())
}

pub(super) fn uninstall(name: &str, at_logon: bool) -> anyhow::Result<()> {
    if at_logon {
        bail!("--at-logon is for Windows; on Linux `service uninstall` removes the systemd unit");
    }
    let path = unit_file(name);
    if !path.exists() {
        bail!("{} does not exist: no unit named {name} was installed", path.display());
    }
    // Without a running systemd the unit can only be removed.
    let running = systemd_running().is_ok();
    if running {
        systemctl(&["disable", "--now", name])?;
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {} (this needs root)", path.display()))?;
    if running {
        systemctl(&["daemon-reload"])?;
        println!("stopped, disabled and removed {}", path.display());
    } else {
        println!("removed {} (systemd is not running, so nothing was stopped)", path.display());
    }
    Ok(())
}

pub(super) fn run_under_service_manager(
    _name: &str,
    _stop_hint: std::time::Duration,
    _serve: Box<dyn FnOnce(RunHooks) -> anyhow::Result<()> + Send>,
) -> anyhow::Result<()> {
    bail!(
        "`service-run` is how the Windows Service Control Manager starts the orchestrator; systemd runs `orchestrator` itself"
    )
}
