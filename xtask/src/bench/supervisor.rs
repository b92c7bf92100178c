//! `cargo xtask bench supervisor`: time from `kill -9` of a service to its health endpoint
//! answering 200 again (a new instance), polled from outside every 10 ms, under the orchestrator,
//! supervisord and PM2 restarting the same command, plus the floor: the service's own
//! spawn-to-healthy time with no supervisor. Two services: the Rust simulator and a small Python
//! http.server service (the one the reference figures are for).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::common::{self, Ctx, Proc, free_port, kill9, listener_pid, local, rss_kib, wait_for};
use super::http::get_once;
use super::stats::Summary;

/// The outside poller's default period.
const POLL_MS: u64 = 10;
/// Healthy uptime before the next kill: every kill is the first failure of a sequence for every
/// supervisor (supervisord's `startsecs` is 1 s; the orchestrator's config below resets after 1 s).
const SETTLE: Duration = Duration::from_millis(1500);
/// Longest wait for a restart before the kill counts as a failure.
const GIVE_UP: Duration = Duration::from_secs(20);

/// A service command, by port.
struct Service {
    label: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

impl Service {
    fn argv(&self, port: u16) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .collect()
    }
}

/// The 200 body of the health endpoint, if it answers 200.
fn healthy_body(port: u16) -> Option<Vec<u8>> {
    get_once(local(port), "/health", Duration::from_millis(200)).ok().filter(|r| r.status == 200).map(|r| r.body)
}

/// Polls every [`POLL`] from `t0` until the health endpoint answers 200 with a body other than
/// `old`; the elapsed time in ms, or `None` after [`GIVE_UP`].
fn poll_until_healthy(port: u16, t0: Instant, old: Option<&[u8]>, poll: Duration) -> Option<f64> {
    let mut k = 0u32;
    loop {
        if let Some(body) = healthy_body(port)
            && old.is_none_or(|o| o != body.as_slice())
        {
            return Some(common::ms(t0.elapsed()));
        }
        if t0.elapsed() > GIVE_UP {
            return None;
        }
        k += 1;
        let next = t0 + poll * k;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // The attempt overran its slot: keep the 10 ms grid.
            k = u32::try_from(t0.elapsed().as_micros() / poll.as_micros().max(1)).unwrap_or(k);
        }
    }
}

fn poll_period(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.opts.poll_ms.unwrap_or(POLL_MS).max(1))
}

/// `kills` times: wait for stable health, kill -9 whoever listens on the port, time the restart.
fn kill_loop(ctx: &Ctx, who: &str, port: u16, kills: usize) -> anyhow::Result<Vec<f64>> {
    wait_for(&format!("{who}: the service to be healthy"), Duration::from_secs(30), Duration::from_millis(20), || {
        healthy_body(port)
    })?;
    let mut out = Vec::with_capacity(kills);
    for i in 0..kills {
        std::thread::sleep(SETTLE);
        let old = wait_for(
            &format!("{who}: healthy before kill {i}"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || healthy_body(port),
        )?;
        let pid =
            wait_for(&format!("{who}: the listening pid"), Duration::from_secs(5), Duration::from_millis(10), || {
                listener_pid(port)
            })?;
        let t0 = Instant::now();
        kill9(pid)?;
        match poll_until_healthy(port, t0, Some(&old), poll_period(ctx)) {
            Some(ms) => out.push(ms),
            None => {
                ctx.note(&format!("{who}: no restart within {GIVE_UP:?} after kill {i}"));
                out.push(f64::NAN);
            }
        }
    }
    Ok(out)
}

/// The floor: spawn the command ourselves and poll until healthy, `n` times.
fn floor(ctx: &Ctx, svc: &Service, dir: &Path, n: usize) -> anyhow::Result<Vec<f64>> {
    let port = free_port()?;
    let argv = svc.argv(port);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        wait_for("the port to be free", Duration::from_secs(10), Duration::from_millis(10), || {
            listener_pid(port).is_none().then_some(())
        })?;
        let t0 = Instant::now();
        let mut p = Proc::spawn("floor", Command::new(&argv[0]).args(&argv[1..]), &dir.join("floor.log"))?;
        match poll_until_healthy(port, t0, None, poll_period(ctx)) {
            Some(ms) => out.push(ms),
            None => {
                ctx.note(&format!("floor: not healthy within {GIVE_UP:?} (run {i})"));
                out.push(f64::NAN);
            }
        }
        p.stop();
    }
    Ok(out)
}

fn toml_array(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// (a) the orchestrator with a generated config: one managed service, default health timers.
fn under_orchestrator(ctx: &Ctx, svc: &Service, dir: &Path, kills: usize) -> anyhow::Result<(Vec<f64>, Option<u64>)> {
    let port = free_port()?;
    let config = dir.join("orchestrator.toml");
    std::fs::write(
        &config,
        format!(
            "# generated by cargo xtask bench supervisor: default health timers; the failure sequence\n\
             # resets after 1 s so that every kill is a first failure (restarted at once, SPEC §7)\n\
             [[service]]\nname = \"svc\"\nport = {port}\ncommand = {}\nmax_failures = 1000\n\
             backoff = {{ reset_after_ms = 1000 }}\n",
            toml_array(&svc.argv(port))
        ),
    )?;
    let gw = free_port()?;
    let mut orch = Proc::spawn(
        "orchestrator",
        Command::new(&ctx.orchestrator)
            .arg("--config")
            .arg(&config)
            .arg("--bind")
            .arg(format!("127.0.0.1:{gw}"))
            .arg("--data-dir")
            .arg(dir.join("data")),
        &dir.join("orchestrator.log"),
    )?;
    let times = kill_loop(ctx, "orchestrator", port, kills)?;
    let rss = rss_kib(orch.pid());
    orch.stop();
    Ok((times, rss))
}

/// (b) supervisord (PyPI `supervisor`) in the foreground with a generated config.
fn under_supervisord(ctx: &Ctx, svc: &Service, dir: &Path, kills: usize) -> anyhow::Result<(Vec<f64>, Option<u64>)> {
    let supervisord = ctx.tools.supervisord.clone().context("supervisord missing: cargo xtask bench setup")?;
    let port = free_port()?;
    let d = dir.display();
    let conf = dir.join("supervisord.conf");
    std::fs::write(
        &conf,
        format!(
            "; generated by cargo xtask bench supervisor (defaults except where noted)\n\
             [unix_http_server]\nfile={d}/supervisor.sock\n\
             [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\
             [program:svc]\ncommand={}\nautorestart=true\nstartretries=1000\nstopasgroup=true\nkillasgroup=true\n",
            svc.argv(port).join(" ")
        ),
    )?;
    let mut sup =
        Proc::spawn("supervisord", Command::new(&supervisord).arg("-c").arg(&conf), &dir.join("supervisord.out"))?;
    let times = kill_loop(ctx, "supervisord", port, kills)?;
    let rss = rss_kib(sup.pid());
    sup.stop();
    Ok((times, rss))
}

/// Stops the PM2 daemon of a `PM2_HOME` when dropped.
struct Pm2 {
    pm2: PathBuf,
    home: PathBuf,
    log: PathBuf,
}

impl Pm2 {
    fn run(&self, args: &[String]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let st = Command::new(&self.pm2)
            .args(args)
            .env("PM2_HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running pm2")?;
        if !st.success() {
            bail!("pm2 {} failed ({st}); see {}", args.join(" "), self.log.display());
        }
        Ok(())
    }

    fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.join("pm2.pid")).ok()?.trim().parse().ok()
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let _ = self.run(&["kill".into()]);
    }
}

/// (c) PM2 (npm `pm2`, its own `PM2_HOME`) with `--interpreter none`: the same command.
fn under_pm2(ctx: &Ctx, svc: &Service, dir: &Path, kills: usize) -> anyhow::Result<(Vec<f64>, Option<u64>)> {
    let pm2 = ctx.tools.pm2.clone().context("pm2 missing: cargo xtask bench setup")?;
    let port = free_port()?;
    let pm2 = Pm2 { pm2, home: dir.join("pm2home"), log: dir.join("pm2.log") };
    let argv = svc.argv(port);
    let mut args: Vec<String> =
        vec!["start".into(), argv[0].clone(), "--name".into(), "svc".into(), "--interpreter".into(), "none".into()];
    if argv.len() > 1 {
        args.push("--".into());
        args.extend(argv[1..].iter().cloned());
    }
    pm2.run(&args)?;
    let times = kill_loop(ctx, "pm2", port, kills)?;
    let rss = pm2.daemon_pid().and_then(rss_kib);
    drop(pm2);
    Ok((times, rss))
}

/// Runs the suite.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.tools.require(&["supervisord", "pm2", "python3"])?;
    common::pin_self(ctx, None);
    let kills = ctx.opts.repeat.unwrap_or(if ctx.opts.quick { 5 } else { 20 });
    let python = ctx.tools.service_python().context("python3 missing")?;
    let peers = common::super_root().join("xtask/peers");
    let services = [
        Service {
            label: "Rust simulator (`orchestrator sim data --quiet`)",
            program: ctx.orchestrator.clone(),
            args: ["sim", "data", "--port", "{port}", "--quiet"].iter().map(|s| (*s).to_owned()).collect(),
        },
        Service {
            label: "Python http.server service (`xtask/peers/pyservice.py`)",
            program: python,
            args: vec![peers.join("pyservice.py").display().to_string(), "--port".into(), "{port}".into()],
        },
    ];
    ctx.line(&format!(
        "\n## Supervisor: kill -9 → healthy again\n\n`cargo xtask bench supervisor` — {kills} kills per row, an outside poller \
         GETs `/health` every {} ms (a new connection each time) and stops at the first 200 from a *new* instance; \
         timing starts just before `kill(pid, SIGKILL)`. A {} ms healthy pause precedes every kill, so each one is \
         a first failure for every supervisor. Floor = spawning the command ourselves and polling the same way. No CPU pinning.\n",
        poll_period(ctx).as_millis(),
        SETTLE.as_millis()
    ));
    let mut all_ok = true;
    for (i, svc) in services.iter().enumerate() {
        let dir = ctx.subdir(&format!("supervisor-{i}"))?;
        ctx.note(&format!("{}: floor", svc.label));
        let fl = floor(ctx, svc, &dir, kills)?;
        let mut rows: Vec<(&str, Vec<f64>, Option<u64>)> = vec![("floor (no supervisor)", fl, None)];
        type Runner = fn(&Ctx, &Service, &Path, usize) -> anyhow::Result<(Vec<f64>, Option<u64>)>;
        let runners: [(&str, Runner); 3] =
            [("orchestrator", under_orchestrator), ("supervisord", under_supervisord), ("PM2", under_pm2)];
        for (name, f) in runners {
            ctx.note(&format!("{}: {name}", svc.label));
            let sub = dir.join(name);
            std::fs::create_dir_all(&sub)?;
            let (t, rss) = f(ctx, svc, &sub, kills)?;
            rows.push((name, t, rss));
        }
        ctx.line(&format!("\n### {}\n", svc.label));
        ctx.line("| restarted by | median ms | max ms | min ms | failed | median − floor | supervisor RSS |");
        ctx.line("|---|---:|---:|---:|---:|---:|---:|");
        let floor_med = Summary::of(&rows[0].1).p50;
        for (name, t, rss) in &rows {
            let s = Summary::of(t);
            let failed = t.iter().filter(|v| v.is_nan()).count();
            ctx.line(&format!(
                "| {name} | {:.1} | {:.1} | {:.1} | {failed} | {} | {} |",
                s.p50,
                s.max,
                s.min,
                if *name == "floor (no supervisor)" { "–".into() } else { format!("{:+.1}", s.p50 - floor_med) },
                rss.map(|k| format!("{:.1} MB", k as f64 / 1024.0)).unwrap_or_else(|| "–".into())
            ));
        }
        let orch = Summary::of(&rows[1].1).p50;
        let pm2 = Summary::of(&rows[3].1).p50;
        let within = orch <= floor_med + 25.0;
        let vs_pm2 = orch <= pm2;
        all_ok &= within && vs_pm2;
        ctx.line(&format!(
            "\nTargets: median within floor + 25 ms: **{}** ({orch:.1} vs {:.1}); no slower than PM2: **{}** ({orch:.1} vs {pm2:.1}).",
            if within { "met" } else { "NOT met" },
            floor_med + 25.0,
            if vs_pm2 { "met" } else { "NOT met" },
        ));
    }
    ctx.line(&format!("\nSupervisor targets overall: {}", if all_ok { "met" } else { "see above" }));
    Ok(())
}
