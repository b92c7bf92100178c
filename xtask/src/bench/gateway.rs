//! `cargo xtask bench gateway`: wrk against one simulated upstream directly, through nginx
//! (1 worker, upstream keepalive), through HAProxy (1 thread, keep-alive and connection reuse to
//! the upstream), through the orchestrator (viewer token: auth, validation and envelope on),
//! through the bare actix-web + awc floor (`xtask/examples/actix_proxy_floor.rs`) and through a
//! minimal FastAPI + uvicorn + httpx proxy, at 50 and 200 connections, plus a paced run at a fixed
//! 5 000 req/s (`paced.rs`, open loop) for every contender but FastAPI, in interleaved rounds;
//! then `GET /api/health` and `GET /api/dashboard` latency with healthy services and with one
//! service hung.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::common::{self, CpuSampler, Ctx, Proc, create_token, free_port, local, wait_for};
use super::http::{Conn, get_once};
use super::paced::{self, Paced};
use super::stats::{Summary, median, range};

/// The forwarded request: a small JSON answer from the data service.
const PATH: &str = "/ticks/latest?symbol=EURUSD";

/// The paced run: requests per second (below every contender's saturation but FastAPI's) and
/// the connections that share them.
const PACED_RATE: f64 = 5000.0;
const PACED_CONNS: usize = 50;

/// One contender of the forwarding runs.
struct Target {
    name: String,
    port: u16,
    path: String,
    headers: Vec<(String, String)>,
    /// Process group of the server under test (its CPU time is divided by the requests).
    pgid: u32,
    /// Whether it takes part in the paced run.
    paced: bool,
}

impl Target {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    fn wrk_headers(&self) -> Vec<String> {
        self.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect()
    }
}

/// One paced run of one contender, reduced.
#[derive(Debug, Clone, Copy)]
struct PacedResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
    bad: u64,
    missed: u64,
}

/// Runs the paced schedule against `t`, with its CPU time per answered request.
fn paced_run(t: &Target, secs: u64) -> (PacedResult, String) {
    let cpu = CpuSampler::start();
    let c0 = common::group_cpu_ns(t.pgid);
    let p: Paced = paced::run(local(t.port), &t.path, &t.headers, PACED_RATE, PACED_CONNS, secs as f64);
    let c1 = common::group_cpu_ns(t.pgid);
    let busy = cpu.finish();
    let sum = Summary::of(&p.lat_ms);
    let answered = p.lat_ms.len() as f64;
    let r = PacedResult {
        rate: p.rate(),
        p50_ms: sum.p50,
        p99_ms: sum.p99,
        cpu_us: c1.saturating_sub(c0) as f64 / 1000.0 / answered.max(1.0),
        bad: p.bad,
        missed: p.missed,
    };
    (r, busy)
}

/// One wrk run.
#[derive(Debug, Clone, Copy)]
struct WrkResult {
    rps: f64,
    /// CPU time of the server under test per request, in µs.
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    bad: u64,
}

fn parse_latency(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|x| x * mult)
}

fn parse_wrk(out: &str) -> anyhow::Result<WrkResult> {
    let mut r = WrkResult { rps: f64::NAN, cpu_us: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, bad: 0 };
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("50%") {
            r.p50_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.bad += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.bad += v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>();
        }
    }
    if r.rps.is_nan() {
        bail!("cannot read wrk's output:\n{out}");
    }
    Ok(r)
}

/// Runs wrk; `sut` is the process group of the server under test, whose CPU time is divided by
/// the requests served (a figure that other load on the machine disturbs much less than req/s).
fn wrk(
    ctx: &Ctx,
    url: &str,
    conns: usize,
    secs: u64,
    headers: &[String],
    sut: Option<u32>,
) -> anyhow::Result<(WrkResult, String)> {
    let wrk = ctx.tools.wrk.clone().context("wrk missing")?;
    let mut cmd = ctx.command(ctx.load_cpu(), wrk);
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "--timeout", "10s", "--latency"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(url);
    let cpu = CpuSampler::start();
    let (c0, t0) = (sut.map(common::group_cpu_ns), Instant::now());
    let out = cmd.output().context("running wrk")?;
    let (c1, wall) = (sut.map(common::group_cpu_ns), t0.elapsed());
    let cpu = cpu.finish();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let mut r = parse_wrk(&text)?;
    if let (Some(a), Some(b)) = (c0, c1) {
        let requests = r.rps * wall.as_secs_f64();
        r.cpu_us = b.saturating_sub(a) as f64 / 1000.0 / requests.max(1.0);
    }
    Ok((r, cpu))
}

/// Sequential keep-alive requests on `conns` connections, each paced at one request per
/// `every`, for `secs`: latencies in ms and the number of non-200 answers or errors.
pub fn probe(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    conns: usize,
    every: Duration,
    secs: f64,
) -> (Vec<f64>, usize) {
    let stop_at = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let path = path.to_owned();
            let headers = headers.to_vec();
            std::thread::spawn(move || {
                let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut lat = Vec::new();
                let mut bad = 0usize;
                let mut conn: Option<Conn> = None;
                let mut next = Instant::now();
                while Instant::now() < stop_at {
                    if conn.as_ref().is_none_or(Conn::is_closed) {
                        conn = Conn::connect(addr, Duration::from_secs(10)).ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        bad += 1;
                        std::thread::sleep(every);
                        continue;
                    };
                    let t0 = Instant::now();
                    match c.request("GET", &path, &hs, b"") {
                        Ok(r) if r.status == 200 => lat.push(common::ms(t0.elapsed())),
                        Ok(_) => bad += 1,
                        Err(_) => {
                            bad += 1;
                            conn = None;
                        }
                    }
                    next += every;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                (lat, bad)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut bad = 0;
    for h in handles {
        if let Ok((l, b)) = h.join() {
            all.extend(l);
            bad += b;
        }
    }
    (all, bad)
}

fn nginx_conf(dir: &Path, port: u16, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "# generated by cargo xtask bench gateway: 1 worker, upstream keepalive, access log on (its default)\n\
         worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream sim {{ server 127.0.0.1:{upstream}; keepalive 256; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://sim;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
    )
}

fn haproxy_conf(dir: &Path, port: u16, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "# generated by cargo xtask bench gateway: 1 thread, keep-alive on both sides, idle upstream connections\n\
         # reused by every client (http-reuse always), one log line per request (option httplog) to stdout,\n\
         # which the bench writes to {d}/haproxy.out\n\
         global\n  nbthread 1\n  maxconn 4096\n  log stdout format raw local0 info\n\
         defaults\n  mode http\n  log global\n  option httplog\n  option http-keep-alive\n  http-reuse always\n\
           timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n\
         frontend bench\n  bind 127.0.0.1:{port}\n  default_backend sim\n\
         backend sim\n  server sim 127.0.0.1:{upstream}\n"
    )
}

fn ok_200(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<()> {
    let mut c = Conn::connect(addr, Duration::from_millis(500)).ok()?;
    let r = c.request("GET", path, headers, b"").ok()?;
    (r.status == 200).then_some(())
}

fn repin(ctx: &Ctx, pid: u32, cpu: Option<usize>) {
    if let (Some(cpu), Some(taskset)) = (cpu, &ctx.tools.taskset) {
        let _ = Command::new(taskset).args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()]).output();
    }
}

/// The four simulated services the orchestrator's config points at (external: never spawned).
struct Upstreams {
    ports: [u16; 4],
    procs: Vec<Proc>,
}

const ROLES: [(&str, &str, &str); 4] = [
    ("data", "Data Service", "[\"ticks\", \"ohlc\", \"symbols\"]"),
    ("mt5", "MT5 Service", "[\"account\", \"positions\", \"orders\"]"),
    ("strategy", "Strategy Service", "[\"strategies\", \"signals\"]"),
    ("pattern", "Pattern Service", "[\"patterns\"]"),
];

fn spawn_sim(ctx: &Ctx, dir: &Path, role: &str, port: u16, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut cmd = ctx.command(ctx.load_cpu(), &ctx.orchestrator);
    cmd.args(["sim", role, "--port", &port.to_string(), "--quiet", "--workers", "1"]).args(extra);
    Proc::spawn(&format!("sim {role}"), &mut cmd, &dir.join(format!("sim-{role}-{port}.log")))
}

impl Upstreams {
    fn start(ctx: &Ctx, dir: &Path) -> anyhow::Result<Upstreams> {
        let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
        let mut procs = Vec::new();
        for (i, (role, _, _)) in ROLES.iter().enumerate() {
            procs.push(spawn_sim(ctx, dir, role, ports[i], &[])?);
        }
        for p in ports {
            wait_for("a simulated service", Duration::from_secs(20), Duration::from_millis(20), || {
                get_once(local(p), "/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
            })?;
        }
        Ok(Upstreams { ports, procs })
    }

    fn config(&self) -> String {
        let mut out = String::from(
            "# generated by cargo xtask bench gateway: the four simulated services, external (started by the bench)\n",
        );
        for (i, (role, display, routes)) in ROLES.iter().enumerate() {
            out.push_str(&format!(
                "[[service]]\nname = \"{role}\"\ndisplay_name = \"{display}\"\nroutes = {routes}\nport = {}\n",
                self.ports[i]
            ));
        }
        out
    }
}

/// Waits (at most 20 s) until the process group uses less than 5 % of a CPU.
fn settle(pgid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let c0 = common::group_cpu_ns(pgid);
        std::thread::sleep(Duration::from_millis(250));
        let used = common::group_cpu_ns(pgid).saturating_sub(c0);
        if used < 12_500_000 {
            return;
        }
    }
}

/// Starts an orchestrator for the gateway runs: (process, port, viewer token).
fn start_orchestrator(ctx: &Ctx, bin: &Path, dir: &Path, ups: &Upstreams) -> anyhow::Result<(Proc, u16, String)> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("orchestrator.toml");
    std::fs::write(&config, ups.config())?;
    let data_dir = dir.join("data");
    let viewer = create_token(bin, &config, &data_dir, "bench-viewer", "viewer")?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), bin);
    cmd.arg("--config").arg(&config).arg("--bind").arg(format!("127.0.0.1:{port}")).arg("--data-dir").arg(&data_dir);
    let proc = Proc::spawn("orchestrator", &mut cmd, &dir.join("orchestrator.log"))?;
    Ok((proc, port, viewer))
}

/// Builds the framework floor proxy (release) and returns its path.
fn build_floor() -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo build --release -p xtask --example actix_proxy_floor");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "xtask", "--example", "actix_proxy_floor"])
        .status()
        .context("running cargo build --release --example actix_proxy_floor")?;
    if !status.success() {
        bail!("building the actix floor proxy failed ({status})");
    }
    Ok(common::super_root().join("target/release/examples/actix_proxy_floor"))
}

/// Runs the suite.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.tools.require(&["wrk", "nginx", "haproxy", "venv"])?;
    let dir = ctx.subdir("gateway")?;
    let quick = ctx.opts.quick;
    let rounds = ctx.opts.repeat.unwrap_or(if quick { 1 } else { 3 });
    let secs: u64 = if quick { 3 } else { 8 };
    common::pin_self(ctx, ctx.load_cpu());

    let ups = Upstreams::start(ctx, &dir)?;
    let up = ups.ports[0];
    let up_pid = ups.procs[0].pid();

    // nginx
    let ngx_dir = dir.join("nginx");
    std::fs::create_dir_all(&ngx_dir)?;
    let ngx_port = free_port()?;
    std::fs::write(ngx_dir.join("nginx.conf"), nginx_conf(&ngx_dir, ngx_port, up))?;
    let nginx = ctx.tools.nginx.clone().context("nginx missing")?;
    let mut cmd = ctx.command(ctx.sut_cpu(), nginx);
    cmd.arg("-c").arg(ngx_dir.join("nginx.conf")).arg("-p").arg(&ngx_dir);
    let nginx_proc = Proc::spawn("nginx", &mut cmd, &ngx_dir.join("nginx.out"))?;

    // HAProxy (foreground, one process, one thread)
    let hap_dir = dir.join("haproxy");
    std::fs::create_dir_all(&hap_dir)?;
    let hap_port = free_port()?;
    std::fs::write(hap_dir.join("haproxy.cfg"), haproxy_conf(&hap_dir, hap_port, up))?;
    let haproxy = ctx.tools.haproxy.clone().context("haproxy missing")?;
    let mut cmd = ctx.command(ctx.sut_cpu(), haproxy);
    cmd.arg("-db").arg("-f").arg(hap_dir.join("haproxy.cfg"));
    let haproxy_proc = Proc::spawn("haproxy", &mut cmd, &hap_dir.join("haproxy.out"))?;

    // orchestrator (and, for an A/B, a second binary with its own data directory)
    let (orch, orch_port, viewer) = start_orchestrator(ctx, &ctx.orchestrator, &dir.join("orchestrator"), &ups)?;
    let other = match ctx.opts.also_bin.clone() {
        Some(bin) => Some(start_orchestrator(ctx, &bin, &dir.join("orchestrator-b"), &ups)?),
        None => None,
    };

    // The framework floor: actix-web + awc and nothing else (xtask/examples/actix_proxy_floor.rs).
    let floor_bin = build_floor()?;
    let floor_port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), &floor_bin);
    cmd.arg(floor_port.to_string()).arg(up.to_string());
    let floor = Proc::spawn("actix floor proxy", &mut cmd, &dir.join("actix-floor.log"))?;

    // FastAPI + httpx
    let fa_port = free_port()?;
    let python = ctx.tools.venv_python.clone().context("venv missing")?;
    let mut cmd = ctx.command(ctx.sut_cpu(), python);
    cmd.args(["-m", "uvicorn", "fastapi_proxy:app", "--app-dir"])
        .arg(common::super_root().join("xtask/peers"))
        .args(["--host", "127.0.0.1", "--port", &fa_port.to_string(), "--workers", "1"])
        .env("UPSTREAM", format!("http://127.0.0.1:{up}"));
    let fastapi = Proc::spawn("fastapi proxy", &mut cmd, &dir.join("fastapi.log"))?;

    let auth = format!("Bearer {viewer}");
    let auth_h = [("Authorization", auth.as_str())];
    let orch_path = format!("/api{PATH}");
    let auth_b = other.as_ref().map(|o| format!("Bearer {}", o.2)).unwrap_or_default();
    let auth_hb = [("Authorization", auth_b.as_str())];
    let mut ready = vec![
        ("nginx", ngx_port, PATH, &[][..]),
        ("HAProxy", hap_port, PATH, &[][..]),
        ("orchestrator", orch_port, orch_path.as_str(), &auth_h[..]),
        ("actix floor proxy", floor_port, PATH, &[][..]),
        ("FastAPI proxy", fa_port, "/api/ticks/latest?symbol=EURUSD", &[][..]),
    ];
    if let Some(o) = &other {
        ready.push(("second orchestrator", o.1, orch_path.as_str(), &auth_hb[..]));
    }
    for (what, port, path, hs) in ready {
        wait_for(&format!("{what} to forward"), Duration::from_secs(30), Duration::from_millis(50), || {
            ok_200(local(port), path, hs)
        })?;
    }

    let t = |name: &str, port: u16, path: &str, headers: Vec<(String, String)>, pgid: u32, paced: bool| Target {
        name: name.to_owned(),
        port,
        path: path.to_owned(),
        headers,
        pgid,
        paced,
    };
    let bearer = vec![("Authorization".to_owned(), format!("Bearer {viewer}"))];
    let mut targets: Vec<Target> = vec![
        t("direct (upstream alone)", up, PATH, vec![], up_pid, true),
        t("nginx (1 worker, keepalive)", ngx_port, PATH, vec![], nginx_proc.pid(), true),
        t("HAProxy (1 thread, keep-alive)", hap_port, PATH, vec![], haproxy_proc.pid(), true),
        t("orchestrator", orch_port, &orch_path, bearer.clone(), orch.pid(), true),
        t("actix-web + awc floor (no gateway work)", floor_port, PATH, vec![], floor.pid(), true),
        // uvicorn + httpx saturates below the paced rate: a paced run would only measure its queue.
        t("FastAPI + uvicorn + httpx", fa_port, &format!("/api{PATH}"), vec![], fastapi.pid(), false),
    ];
    if let (Some(o), Some(bin)) = (&other, &ctx.opts.also_bin) {
        // Right after the first orchestrator, so that both follow the same neighbours.
        let at = targets.iter().position(|x| x.name == "orchestrator").map_or(targets.len(), |i| i + 1);
        targets.insert(
            at,
            t(
                &format!("orchestrator B (`{}`)", bin.display()),
                o.1,
                &orch_path,
                vec![("Authorization".to_owned(), format!("Bearer {}", o.2))],
                o.0.pid(),
                true,
            ),
        );
    }
    let conns_list = [50usize, 200];
    // results[target][conns] = runs
    let mut results: Vec<Vec<Vec<(WrkResult, String)>>> = vec![vec![Vec::new(); conns_list.len()]; targets.len()];
    let mut paced_results: Vec<Vec<(PacedResult, String)>> = vec![Vec::new(); targets.len()];
    ctx.note("warming up");
    for (i, target) in targets.iter().enumerate() {
        if i == 0 {
            repin(ctx, up_pid, ctx.sut_cpu());
        }
        wrk(ctx, &target.url(), 50, 1, &target.wrk_headers(), None)?;
        if i == 0 {
            repin(ctx, up_pid, ctx.load_cpu());
        }
    }
    for round in 0..rounds {
        for (ci, conns) in conns_list.iter().enumerate() {
            for (ti, target) in targets.iter().enumerate() {
                ctx.note(&format!("round {}/{rounds}: {}, {conns} connections", round + 1, target.name));
                if ti == 0 {
                    repin(ctx, up_pid, ctx.sut_cpu());
                }
                let r = wrk(ctx, &target.url(), *conns, secs, &target.wrk_headers(), Some(target.pgid));
                if ti == 0 {
                    repin(ctx, up_pid, ctx.load_cpu());
                }
                // A slow server may still be working off queued requests: let it finish first.
                settle(target.pgid);
                results[ti][ci].push(r?);
            }
        }
        for (ti, target) in targets.iter().enumerate().filter(|(_, t)| t.paced) {
            ctx.note(&format!(
                "round {}/{rounds}: {}, paced at {PACED_RATE:.0} req/s on {PACED_CONNS} connections",
                round + 1,
                target.name
            ));
            if ti == 0 {
                repin(ctx, up_pid, ctx.sut_cpu());
            }
            let r = paced_run(target, secs);
            if ti == 0 {
                repin(ctx, up_pid, ctx.load_cpu());
            }
            settle(target.pgid);
            paced_results[ti].push(r);
        }
    }

    ctx.line(&format!(
        "\n## Gateway: forwarding `GET {PATH}`\n\n`cargo xtask bench gateway` — wrk 1 thread, {secs} s per run, {rounds} interleaved \
         round(s); medians over rounds, [min–max] in brackets. Upstream: `orchestrator sim data --quiet --workers 1` \
         (one actix worker, no per-request log line). The proxy under test runs alone on one CPU; wrk and the upstream \
         share the other (in the direct row the upstream has the first CPU to itself). Every proxy logs each request \
         to a file, as it does by default (nginx access_log, the orchestrator's `access` log at info, uvicorn's access log). \
         The orchestrator is given a viewer token: auth, query validation (symbol in the `symbols` setting) and the envelope are on. \
         The actix-web + awc floor (`xtask/examples/actix_proxy_floor.rs`) is the orchestrator's stack with nothing of the gateway: \
         one handler that forwards with a pooled awc client, no middleware, no log. HAProxy (Debian's) runs `nbthread 1` \
         with keep-alive to the upstream and `http-reuse always`, logging each request (`option httplog`) to a file. \
         The *paced* rows send {PACED_RATE:.0} req/s on {PACED_CONNS} keep-alive connections, open loop (`xtask/src/bench/paced.rs`: \
         each request has a due time on a fixed schedule and its latency counts from that time, so a late answer also \
         delays what follows it — no coordinated omission); req/s is answered requests per second of schedule, errors \
         include requests still owed 2 s after the schedule ended. FastAPI has no paced row: it saturates below that rate.\n"
    ));
    ctx.line("| path | conns | req/s | p50 ms | p99 ms | server CPU µs/request | errors | CPU busy (last round) |");
    ctx.line("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut med = vec![vec![(0.0, 0.0, 0.0); conns_list.len()]; targets.len()];
    let mut paced_med = vec![None; targets.len()];
    for (ti, target) in targets.iter().enumerate() {
        let name = &target.name;
        for (ci, conns) in conns_list.iter().enumerate() {
            let runs = &results[ti][ci];
            let rps: Vec<f64> = runs.iter().map(|r| r.0.rps).collect();
            let p50: Vec<f64> = runs.iter().map(|r| r.0.p50_ms).collect();
            let p99: Vec<f64> = runs.iter().map(|r| r.0.p99_ms).collect();
            let bad: u64 = runs.iter().map(|r| r.0.bad).sum();
            let cpu: Vec<f64> = runs.iter().map(|r| r.0.cpu_us).collect();
            med[ti][ci] = (median(&rps), median(&p99), median(&cpu));
            ctx.line(&format!(
                "| {name} | {conns} | {:.0} [{}] | {:.2} | {:.2} [{}] | {:.1} [{}] | {bad} | {} |",
                median(&rps),
                range(&rps, 0),
                median(&p50),
                median(&p99),
                range(&p99, 2),
                median(&cpu),
                range(&cpu, 1),
                runs.last().map(|r| r.1.as_str()).unwrap_or("")
            ));
        }
        let runs = &paced_results[ti];
        if !runs.is_empty() {
            let rate: Vec<f64> = runs.iter().map(|r| r.0.rate).collect();
            let p50: Vec<f64> = runs.iter().map(|r| r.0.p50_ms).collect();
            let p99: Vec<f64> = runs.iter().map(|r| r.0.p99_ms).collect();
            let cpu: Vec<f64> = runs.iter().map(|r| r.0.cpu_us).collect();
            let bad: u64 = runs.iter().map(|r| r.0.bad + r.0.missed).sum();
            paced_med[ti] = Some((median(&p50), median(&p99), median(&cpu)));
            ctx.line(&format!(
                "| {name} | {PACED_CONNS}, paced {PACED_RATE:.0}/s | {:.0} [{}] | {:.3} [{}] | {:.3} [{}] | {:.1} [{}] | {bad} | {} |",
                median(&rate),
                range(&rate, 0),
                median(&p50),
                range(&p50, 3),
                median(&p99),
                range(&p99, 3),
                median(&cpu),
                range(&cpu, 1),
                runs.last().map(|r| r.1.as_str()).unwrap_or("")
            ));
        }
    }
    let find = |prefix: &str| targets.iter().position(|t| t.name.starts_with(prefix));
    let (Some(oi), Some(ni)) = (find("orchestrator"), find("nginx")) else {
        bail!("the orchestrator and nginx rows are missing")
    };
    for (ci, conns) in conns_list.iter().enumerate() {
        let (o_rps, o_p99, o_cpu) = med[oi][ci];
        let (n_rps, n_p99, n_cpu) = med[ni][ci];
        ctx.line(&format!(
            "\nAt {conns} connections: throughput ≥ nginx: **{}** ({o_rps:.0} vs {n_rps:.0} req/s, {:.0} %); p99 ≤ nginx: **{}** ({o_p99:.2} vs {n_p99:.2} ms); \
             CPU per request {o_cpu:.1} vs {n_cpu:.1} µs ({:.2}× nginx's; ≤ 1.5×: **{}**).",
            if o_rps >= n_rps { "met" } else { "NOT met" },
            100.0 * o_rps / n_rps,
            if o_p99 <= n_p99 { "met" } else { "NOT met" },
            o_cpu / n_cpu,
            if o_cpu <= 1.5 * n_cpu { "met" } else { "NOT met" },
        ));
        if let Some(hi) = find("HAProxy") {
            let (h_rps, h_p99, h_cpu) = med[hi][ci];
            ctx.line(&format!(
                "HAProxy (1 thread): {h_rps:.0} req/s ({:.0} % of nginx, the orchestrator at {:.0} % of it), p99 {h_p99:.2} ms, {h_cpu:.1} µs of CPU per request ({:.2}× nginx's).",
                100.0 * h_rps / n_rps,
                100.0 * o_rps / h_rps,
                h_cpu / n_cpu,
            ));
        }
        if let Some(fi) = find("actix-web + awc floor") {
            let (f_rps, f_p99, _) = med[fi][ci];
            ctx.line(&format!(
                "The framework floor (actix-web + awc, no gateway work): {f_rps:.0} req/s ({:.0} % of nginx, the orchestrator at {:.0} % of it), p99 {f_p99:.2} ms.",
                100.0 * f_rps / n_rps,
                100.0 * o_rps / f_rps,
            ));
        }
    }
    if let (Some((_, o_p99, o_cpu)), Some((_, n_p99, n_cpu))) = (paced_med[oi], paced_med[ni]) {
        let others: Vec<String> = targets
            .iter()
            .zip(&paced_med)
            .enumerate()
            .filter(|(i, _)| *i != oi && *i != ni)
            .filter_map(|(_, (t, m))| m.map(|(_, p99, cpu)| format!("{} {p99:.3} ms at {cpu:.1} µs", t.name)))
            .collect();
        ctx.line(&format!(
            "\nPaced at {PACED_RATE:.0} req/s: p99 ≤ nginx's + 0.3 ms: **{}** ({o_p99:.3} vs {n_p99:.3} ms); CPU per request {o_cpu:.1} vs {n_cpu:.1} µs \
             ({:.2}× nginx's). Others, p99 and CPU per request: {}.",
            if o_p99 <= n_p99 + 0.3 { "met" } else { "NOT met" },
            o_cpu / n_cpu,
            others.join("; "),
        ));
    }
    drop(haproxy_proc);

    // Health and dashboard latency.
    let probe_secs = if quick { 3.0 } else { 10.0 };
    let orch_addr = local(orch_port);
    let hdr = vec![("Authorization".to_owned(), format!("Bearer {viewer}"))];
    ctx.note("GET /api/health latency");
    let (h, h_bad) = probe(orch_addr, "/api/health", &[], 4, Duration::from_millis(2), probe_secs);
    let (hw, _) = wrk(ctx, &format!("http://127.0.0.1:{orch_port}/api/health"), 50, secs, &[], Some(orch.pid()))?;
    let hw_b = match &other {
        Some(o) => Some(wrk(ctx, &format!("http://127.0.0.1:{}/api/health", o.1), 50, secs, &[], Some(o.0.pid()))?.0),
        None => None,
    };
    ctx.note("GET /api/dashboard latency, healthy");
    let (d, d_bad) = probe(orch_addr, "/api/dashboard", &hdr, 4, Duration::from_millis(10), probe_secs);
    ctx.note("the dashboard's parts directly on their services");
    let mut parts = Vec::new();
    for (label, port, path) in [
        ("mt5 `GET /account`", ups.ports[1], "/account"),
        ("mt5 `GET /positions`", ups.ports[1], "/positions"),
        ("strategy `GET /strategies`", ups.ports[2], "/strategies"),
        ("pattern `GET /patterns/latest`", ups.ports[3], "/patterns/latest"),
    ] {
        let (l, bad) = probe(local(port), path, &[], 4, Duration::from_millis(10), probe_secs.min(3.0));
        parts.push((label, l, bad));
    }
    let mut ups = ups;
    // One service hung: its routes never answer in time, its health stays fine (so it stays online).
    let pattern_port = ups.ports[3];
    let mut old = ups.procs.remove(3);
    old.stop();
    let hung = spawn_sim(ctx, &dir, "pattern", pattern_port, &["--response-delay-ms", "600000"])?;
    wait_for("the hung pattern service", Duration::from_secs(20), Duration::from_millis(20), || {
        get_once(local(pattern_port), "/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    wait_for("pattern online again", Duration::from_secs(30), Duration::from_millis(100), || {
        let hs: Vec<(&str, &str)> = hdr.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut c = Conn::connect(orch_addr, Duration::from_secs(1)).ok()?;
        let r = c.request("GET", "/api/services/pattern", &hs, b"").ok()?;
        String::from_utf8_lossy(&r.body).contains("\"status\":\"online\"").then_some(())
    })?;
    ctx.note("GET /api/dashboard latency, one service hung (routes never answer)");
    let (dh, dh_bad) = probe(orch_addr, "/api/dashboard", &hdr, 8, Duration::from_millis(10), probe_secs.max(6.0));
    drop(hung);
    // One service hung including its health: offline after the failure threshold, then fast fail.
    let hung2 = spawn_sim(
        ctx,
        &dir,
        "pattern",
        pattern_port,
        &["--response-delay-ms", "600000", "--hang-health-after-ms", "0"],
    )?;
    ctx.note("waiting for the orchestrator to mark the hung service offline (3 failed probes, default timers)");
    wait_for("pattern offline", Duration::from_secs(60), Duration::from_millis(200), || {
        let hs: Vec<(&str, &str)> = hdr.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut c = Conn::connect(orch_addr, Duration::from_secs(1)).ok()?;
        let r = c.request("GET", "/api/services/pattern", &hs, b"").ok()?;
        let body = String::from_utf8_lossy(&r.body);
        (body.contains("\"status\":\"offline\"") || body.contains("\"status\":\"error\"")).then_some(())
    })?;
    let (dh2, dh2_bad) = probe(orch_addr, "/api/dashboard", &hdr, 4, Duration::from_millis(10), probe_secs);
    drop(hung2);
    drop(orch);
    drop(other);

    let row = |ctx: &mut Ctx, what: &str, s: &[f64], bad: usize, target: &str, limit: f64| {
        let sum = Summary::of(s);
        ctx.line(&format!(
            "| {what} | {} | {:.3} | {:.3} | {:.3} | {bad} | {target}: **{}** |",
            sum.n,
            sum.p50,
            sum.p99,
            sum.max,
            if sum.p99 < limit { "met" } else { "NOT met" }
        ));
    };
    ctx.line(&format!(
        "\n### Health and dashboard latency\n\nKeep-alive connections, each sending one request, waiting for the answer, \
         then pacing to a fixed period ({probe_secs:.0} s; health: 4 connections × every 2 ms; dashboard: 4 connections \
         × every 10 ms, 8 with the hung service). Latency as the client sees it.\n"
    ));
    ctx.line("| request | n | p50 ms | p99 ms | max ms | errors | target |");
    ctx.line("|---|---:|---:|---:|---:|---:|---|");
    row(ctx, "`GET /api/health`", &h, h_bad, "p99 < 1 ms", 1.0);
    row(ctx, "`GET /api/dashboard`, all healthy", &d, d_bad, "p99 < 10 ms", 10.0);
    for (label, l, bad) in &parts {
        let sum = Summary::of(l);
        ctx.line(&format!(
            "| part alone: {label} on the simulator | {} | {:.3} | {:.3} | {:.3} | {bad} | (the floor of the dashboard) |",
            sum.n, sum.p50, sum.p99, sum.max
        ));
    }
    row(ctx, "`GET /api/dashboard`, pattern hung (routes never answer, health ok)", &dh, dh_bad, "p99 < 15 ms", 15.0);
    row(
        ctx,
        "`GET /api/dashboard`, pattern hung and marked offline by its health checks",
        &dh2,
        dh2_bad,
        "p99 < 15 ms",
        15.0,
    );
    ctx.line(&format!(
        "\n`GET /api/health` saturated by wrk at 50 connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs of orchestrator CPU per request.",
        hw.rps, hw.p50_ms, hw.p99_ms, hw.cpu_us
    ));
    if let Some(b) = hw_b {
        ctx.line(&format!(
            "The same for orchestrator B: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs of CPU per request.",
            b.rps, b.p50_ms, b.p99_ms, b.cpu_us
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 5s test @ http://x\n  Latency Distribution\n     50%  617.00us\n     75%  698.00us\n     99%    3.78ms\n\
                   329439 requests in 5.01s, 64.68MB read\n  Socket errors: connect 0, read 2, write 0, timeout 3\n\
                   Non-2xx or 3xx responses: 4\nRequests/sec:  65717.91\n";
        let r = parse_wrk(out).unwrap_or_else(|e| panic!("{e}"));
        assert!((r.rps - 65717.91).abs() < 1e-6);
        assert!((r.p50_ms - 0.617).abs() < 1e-9);
        assert!((r.p99_ms - 3.78).abs() < 1e-9);
        assert_eq!(r.bad, 9);
        assert_eq!(parse_latency("1.02s"), Some(1020.0));
    }

    #[test]
    fn haproxy_accepts_its_config() {
        let Some(haproxy) = common::Tools::discover().haproxy else {
            // CI installs it (.ci/run); a developer machine without it cannot check the config.
            eprintln!("haproxy is not installed: its generated config is not checked");
            return;
        };
        let dir = std::env::temp_dir().join(format!("xtask-haproxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_conf(&dir, 1, 2)).unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(haproxy).arg("-c").arg("-f").arg(&cfg).output().unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
