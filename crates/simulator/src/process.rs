//! A simulated service as a whole process: signals, start-up faults, the crash timer, the
//! grandchild and the port holder.

use std::fmt::Display;
use std::io::Write as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::args::{Role, SimArgs};
use crate::error::SimError;
use crate::os::StopEvents;
use crate::server;

/// At most this many connections are held open by `--hold-port` (older ones are dropped).
const MAX_HELD: usize = 4096;

/// Prints one line on stdout (flushed at the newline).
fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Prints one line on stderr.
fn complain(line: impl Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The platform's stop events (SIGTERM and SIGINT; CTRL_BREAK and CTRL_C on Windows), turned
/// into a stop request, minus the ones `--ignore-sigterm` ignores.
struct StopSignals {
    events: StopEvents,
    ignore_term: bool,
    role: &'static str,
}

impl StopSignals {
    fn new(ignore_term: bool, role: &'static str) -> std::io::Result<StopSignals> {
        Ok(StopSignals { events: StopEvents::new()?, ignore_term, role })
    }

    /// Waits for a signal that stops the service and returns its name.
    async fn wait(&mut self) -> &'static str {
        loop {
            let event = self.events.recv().await;
            if !(self.ignore_term && event.ignorable) {
                return event.name;
            }
            complain(format_args!("{}: ignoring {} (--ignore-sigterm)", self.role, event.name));
        }
    }
}

fn arm_crash_timer(after: Duration, started: Instant, code: i32, role: &'static str) -> std::io::Result<()> {
    std::thread::Builder::new().name("crash-timer".into()).spawn(move || {
        std::thread::sleep(after.saturating_sub(started.elapsed()));
        complain(format_args!("{role}: crashing on purpose (--crash-after-ms), exit code {code}"));
        std::process::exit(code);
    })?;
    Ok(())
}

/// Starts the platform's grandchild (see [`crate::os::spawn_grandchild`]), which only the end of
/// the service's whole process group (job object on Windows) stops. A thread reaps it if it ends
/// first.
fn spawn_grandchild(role: Role) -> std::io::Result<()> {
    let mut child = crate::os::spawn_grandchild(role)?;
    say(format_args!("spawned child pid={}", child.id()));
    std::thread::Builder::new().name("grandchild-reaper".into()).spawn(move || {
        let _ = child.wait();
    })?;
    Ok(())
}

/// Accepts connections on `listener` and never reads, writes or closes them.
fn hold_port(listener: TcpListener) -> std::io::Result<()> {
    std::thread::Builder::new().name("hold-port".into()).spawn(move || {
        let mut held = std::collections::VecDeque::new();
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    if held.len() == MAX_HELD {
                        held.pop_front();
                    }
                    held.push_back(stream);
                }
                Err(e) => log::warn!("hold-port: accept failed: {e}"),
            }
        }
    })?;
    Ok(())
}

/// Runs one simulated service as this process until SIGTERM (unless `--ignore-sigterm`) or SIGINT
/// (on Windows: CTRL_BREAK or CTRL_C, both ignored under `--ignore-sigterm`).
///
/// Builds its own actix System and blocks. Prints `<role> listening on ADDR instance=<uuid>`
/// once bound and one line per request. `--fail-startup` and `--crash-after-ms` end the process
/// with `--exit-code` through [`std::process::exit`].
pub fn run(args: SimArgs) -> std::io::Result<()> {
    let started = Instant::now();
    let role = args.role.as_str();
    if let Err(e) = args.symbol_set() {
        complain(format_args!("{role}: {e}"));
        return Err(e.into());
    }
    if let Some(after) = SimArgs::after(args.crash_after_ms) {
        arm_crash_timer(after, started, args.exit_code, role)?;
    }
    actix_rt::System::new().block_on(run_in_system(args))
}

async fn run_in_system(args: SimArgs) -> std::io::Result<()> {
    let role = args.role.as_str();
    let mut signals = StopSignals::new(args.ignore_sigterm, role)?;
    if let Some(delay) = SimArgs::delay(args.startup_delay_ms) {
        complain(format_args!("{role}: waiting {} ms before binding (--startup-delay-ms)", delay.as_millis()));
        tokio::select! {
            _ = actix_rt::time::sleep(delay) => {}
            sig = signals.wait() => {
                complain(format_args!("{role}: {sig} during start-up delay, exiting"));
                return Ok(());
            }
        }
    }
    if args.fail_startup {
        complain(format_args!("{role}: simulated start-up failure (--fail-startup), exit code {}", args.exit_code));
        std::process::exit(args.exit_code);
    }
    if args.spawn_child {
        spawn_grandchild(args.role)?;
    }
    let asked = format!("{}:{}", args.host, args.effective_port());
    let listener = TcpListener::bind((args.host.as_str(), args.effective_port())).map_err(|source| {
        let e = SimError::Bind { addr: asked, source };
        complain(format_args!(
            "{role}: {e}: {}",
            std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
        ));
        std::io::Error::from(e)
    })?;
    let addr = listener.local_addr()?;
    if args.hold_port {
        hold_port(listener)?;
        say(format_args!(
            "{role} listening on {addr} instance={} (hold-port: accepts connections, never answers)",
            uuid::Uuid::new_v4()
        ));
        let sig = signals.wait().await;
        complain(format_args!("{role}: {sig}, exiting"));
        return Ok(());
    }
    let server = server::start(&args, listener)?;
    say(format_args!("{role} listening on {addr} instance={}", server.instance()));
    let sig = signals.wait().await;
    complain(format_args!("{role}: {sig}, stopping"));
    server.stop().await;
    Ok(())
}
