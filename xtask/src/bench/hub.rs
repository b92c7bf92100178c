//! `cargo xtask bench hub`: WebSocket fan-out of the orchestrator's hub side by side with a
//! minimal FastAPI/uvicorn broadcaster, the Node `ws` broadcaster (`xtask/peers/ws_broadcaster.js`)
//! and the floor (`floor_ws.rs`): idle RSS and CPU, event-in → frame-out latency and server CPU per
//! delivered frame at 100 and 1 000 clients with 100 ticks/s, and 5 000 clients held (RSS, every
//! client still receiving).
//!
//! Receivers live in this process: handshakes on a few threads (std TCP and the minimal client
//! of `ws.rs`), then one thread waits on every socket with epoll; it shares the load CPU with the
//! publisher, and the server runs alone on the other CPU.
//! The publisher POSTs one tick per 10 ms carrying its send time (`sent_us`, the realtime clock);
//! each receiver subtracts it from the time its read returned.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::common::{
    self, Ctx, Proc, cpu_ns, create_token, free_port, local, rss_kib, stat_cpu_ns, unix_micros, wait_for,
};
use super::http::{Conn, get_once};
use super::stats::Summary;
use super::sys;
use super::ws::{Frame, WsClient, encode_frame, json_u64, parse_frame};

const TOPIC: &str = "tick:BENCH";

/// The name of the floor contender (`floor_ws.rs`) in the tables.
const FLOOR: &str = "floor (one send(2) per client)";

/// The name of the Node `ws` contender in the tables.
const NODE_WS: &str = "Node ws broadcaster";

/// What a server under test needs from the benchmark.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    /// Path of POST ingest.
    events_path: &'static str,
    viewer: String,
    service: Option<String>,
    proc: Proc,
}

/// What one receiver saw.
#[derive(Default)]
struct ClientOut {
    /// Which of the crowd's servers it is connected to (its index in `Crowd::connect`'s targets).
    node: usize,
    /// (send time µs, latency µs) per frame carrying a send time.
    samples: Vec<(u64, u32)>,
    /// The close code the server sent, if it closed.
    close: Option<u16>,
}

/// Connects one client and takes it through `auth` and `subscribe`.
fn setup(addr: SocketAddr, token: &str, seed: u32) -> std::io::Result<WsClient> {
    let mut ws = WsClient::connect(addr, "/ws", Duration::from_secs(20), seed)?;
    ws.send_text(&format!(r#"{{"id":1,"type":"auth","token":"{token}"}}"#))?;
    ws.expect_text("auth_ok")?;
    ws.send_text(&format!(r#"{{"id":2,"type":"subscribe","topics":["{TOPIC}"]}}"#))?;
    ws.expect_text("subscribed")?;
    Ok(ws)
}

/// One receiving socket of the poller.
struct Slot {
    stream: TcpStream,
    buf: Vec<u8>,
    out: ClientOut,
    mask: [u8; 4],
}

/// The receivers: one thread waits on every socket with epoll, reads the ready ones without
/// blocking, stamps each read with the realtime clock and answers pings.
fn poll_loop(mut slots: Vec<Slot>, stop: Arc<AtomicBool>) -> Vec<ClientOut> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let Ok(mut epoll) = sys::Epoll::new(1024) else {
        return slots.into_iter().map(|s| s.out).collect();
    };
    for (i, s) in slots.iter().enumerate() {
        if epoll.add(s.stream.as_raw_fd(), i as u64).is_err() {
            return slots.into_iter().map(|s| s.out).collect();
        }
    }
    let mut chunk = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let ready = match epoll.wait(50) {
            Ok(r) => r,
            Err(_) => break,
        };
        for token in ready {
            let Some(slot) = usize::try_from(token).ok().and_then(|i| slots.get_mut(i)) else { continue };
            let mut done = false;
            loop {
                match slot.stream.read(&mut chunk) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(k) => {
                        let now = unix_micros();
                        slot.buf.extend_from_slice(&chunk[..k]);
                        loop {
                            match parse_frame(&mut slot.buf) {
                                Ok(Some(Frame::Text(t))) => {
                                    if let Some(sent) = json_u64(&t, "sent_us") {
                                        let lat = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
                                        slot.out.samples.push((sent, lat));
                                    }
                                }
                                Ok(Some(Frame::Ping(p))) => {
                                    let _ = slot.stream.write_all(&encode_frame(0xA, &p, slot.mask));
                                }
                                Ok(Some(Frame::Close(code))) => {
                                    slot.out.close = Some(code);
                                    done = true;
                                    break;
                                }
                                Ok(Some(Frame::Other)) => {}
                                Ok(None) => break,
                                Err(_) => {
                                    done = true;
                                    break;
                                }
                            }
                        }
                        if done || k < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            if done {
                epoll.remove(slot.stream.as_raw_fd());
            }
        }
    }
    slots.into_iter().map(|s| s.out).collect()
}

/// A crowd of subscribed receivers.
struct Crowd {
    stop: Arc<AtomicBool>,
    poller: JoinHandle<Vec<ClientOut>>,
    subscribed: usize,
}

impl Crowd {
    /// Connects `n` clients (16 threads doing handshakes, auth and subscribe), then hands every
    /// socket to the poller thread.
    fn connect(ctx: &Ctx, server: &Server, n: usize, timeout: Duration) -> anyhow::Result<Crowd> {
        Crowd::connect_spread(ctx, &[(server, n)], timeout)
    }

    /// Connects `n` clients to each `(server, n)` of `targets` (the same 16 handshake threads),
    /// then hands every socket, whichever server it belongs to, to the one poller thread.
    fn connect_spread(ctx: &Ctx, targets: &[(&Server, usize)], timeout: Duration) -> anyhow::Result<Crowd> {
        let n: usize = targets.iter().map(|t| t.1).sum();
        // Client i goes to the target whose cumulative count first exceeds i.
        let plan: Arc<Vec<(SocketAddr, String, usize)>> =
            Arc::new(targets.iter().map(|(s, k)| (s.addr, s.viewer.clone(), *k)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<Result<(usize, WsClient), String>>();
        let workers: Vec<JoinHandle<()>> = (0..16.min(n))
            .map(|_| {
                let (next, tx, plan) = (next.clone(), tx.clone(), plan.clone());
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let (mut node, mut below) = (0, 0);
                        while node + 1 < plan.len() && i >= below + plan[node].2 {
                            below += plan[node].2;
                            node += 1;
                        }
                        let (addr, token, _) = &plan[node];
                        let seed = 0x9E37_79B9 ^ (i as u32).wrapping_mul(2_654_435_761);
                        let r = setup(*addr, token, seed).map(|c| (node, c)).map_err(|e| e.to_string());
                        if tx.send(r).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let deadline = Instant::now() + timeout;
        let mut clients = Vec::with_capacity(n);
        let mut first_error = None;
        let mut errors = 0;
        while clients.len() + errors < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(c)) => clients.push(c),
                Ok(Err(e)) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        // Stop handing out work; a worker stuck in a connect ends by its own timeout.
        next.store(n, Ordering::SeqCst);
        for w in workers {
            let _ = w.join();
        }
        let subscribed = clients.len();
        if subscribed < n {
            ctx.note(&format!(
                "{}: only {subscribed} of {n} clients subscribed ({errors} failed, first: {})",
                targets.iter().map(|t| t.0.name).collect::<Vec<_>>().join(" + "),
                first_error.as_deref().unwrap_or("timeout")
            ));
        }
        let mut slots = Vec::with_capacity(subscribed);
        for (i, (node, c)) in clients.into_iter().enumerate() {
            let (stream, buf) = c.into_parts();
            stream.set_nonblocking(true)?;
            slots.push(Slot {
                stream,
                buf,
                out: ClientOut { node, ..ClientOut::default() },
                mask: (i as u32 | 1).wrapping_mul(0x0101_0101).to_le_bytes(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let poller = std::thread::Builder::new()
            .name("receivers".into())
            .spawn(move || poll_loop(slots, flag))
            .context("spawning the receiver thread")?;
        Ok(Crowd { stop, poller, subscribed })
    }

    fn subscribed(&self) -> usize {
        self.subscribed
    }

    /// Stops the poller and collects what the receivers saw (dropping the sockets closes them).
    fn finish(self) -> Vec<ClientOut> {
        self.stop.store(true, Ordering::SeqCst);
        self.poller.join().unwrap_or_default()
    }
}

/// Publishes one tick per `period` for `secs`; returns (sent, errors, round-trip times in ms).
fn publish(server: &Server, period: Duration, secs: f64, first_i: u64) -> anyhow::Result<(u64, u64, Vec<f64>)> {
    let mut conn = Conn::connect(server.addr, Duration::from_secs(10)).context("publisher connect")?;
    let auth = server.service.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut next = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut rtt = Vec::new();
    let mut i = first_i;
    while Instant::now() < stop {
        let body = format!(
            r#"[{{"type":"tick","topic":"{TOPIC}","data":{{"symbol":"BENCH","bid":1.1,"ask":1.2,"bench_i":{i},"sent_us":{}}}}}]"#,
            unix_micros()
        );
        let t0 = Instant::now();
        match conn.request("POST", server.events_path, &headers, body.as_bytes()) {
            Ok(r) if r.status == 200 => {
                sent += 1;
                rtt.push(common::ms(t0.elapsed()));
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                conn = Conn::connect(server.addr, Duration::from_secs(10)).context("publisher reconnect")?;
            }
        }
        i += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok((sent, errors, rtt))
}

/// CPU% of one core used by `pid` while `f` runs, and `f`'s result.
fn cpu_during<T>(pid: u32, f: impl FnOnce() -> T) -> (f64, T) {
    let (c0, t0) = (cpu_ns(pid).unwrap_or(0), Instant::now());
    let r = f();
    let (c1, dt) = (cpu_ns(pid).unwrap_or(0), t0.elapsed());
    (100.0 * c1.saturating_sub(c0) as f64 / dt.as_nanos().max(1) as f64, r)
}

struct LatencyRow {
    clients: usize,
    subscribed: usize,
    rate: f64,
    summary: Summary,
    delivered: f64,
    /// CPU % of one core of every server the clients are spread over, summed.
    server_cpu: f64,
    /// Server CPU time per delivered frame, µs (publishing window and the drain after it; every
    /// server the clients are spread over).
    cpu_per_frame_us: f64,
    receiver_cpu: f64,
    rss_kib: Option<u64>,
    closed: usize,
    post: Summary,
    machine: String,
    /// (busy %, of which steal %) of each CPU during the publish window (`machine` shows busy).
    busy: Vec<(f64, f64)>,
    /// Ticks published in the measured window.
    sent: u64,
    /// Per server the clients are spread over: (clients subscribed, CPU %, p99 ms, RSS KiB).
    nodes: Vec<(usize, f64, f64, Option<u64>)>,
    /// Per extra pid (not a server of clients, e.g. redis-server), during the publish window:
    /// (CPU ns from schedstat, CPU ns from /proc/PID/stat utime + stime, CPU % from schedstat).
    extra: Vec<(u64, u64, f64)>,
    /// Per extra pid: CPU % (schedstat) over a quiet window before the warm-up, clients
    /// connected and no ticks (its background work).
    extra_idle: Vec<f64>,
}

fn latency_run(ctx: &Ctx, server: &Server, n: usize, secs: f64) -> anyhow::Result<LatencyRow> {
    latency_spread(ctx, &[(server, n)], server, &[], secs)
}

/// The latency row with the clients spread over `targets` (`(server, clients)`), ticks published
/// to `publisher`, and the CPU of the `extra` pids read over the publish window. With one target
/// that is also the publisher and no extra pid, this is the single-server row.
fn latency_spread(
    ctx: &Ctx,
    targets: &[(&Server, usize)],
    publisher: &Server,
    extra: &[u32],
    secs: f64,
) -> anyhow::Result<LatencyRow> {
    let n: usize = targets.iter().map(|t| t.1).sum();
    let crowd = Crowd::connect_spread(ctx, targets, Duration::from_secs(120))?;
    let subscribed = crowd.subscribed();
    // The extra pids' background CPU: 3 s with the clients connected and no ticks.
    let extra_idle: Vec<f64> = if extra.is_empty() {
        Vec::new()
    } else {
        let (a, t) = (extra.iter().map(|p| cpu_ns(*p).unwrap_or(0)).collect::<Vec<_>>(), Instant::now());
        std::thread::sleep(Duration::from_secs(3));
        let dt = t.elapsed().as_nanos().max(1) as f64;
        extra.iter().zip(a).map(|(p, a)| 100.0 * cpu_ns(*p).unwrap_or(0).saturating_sub(a) as f64 / dt).collect()
    };
    // Warm-up (not measured), then the measured window.
    let period = Duration::from_secs_f64(1.0 / f64::from(ctx.opts.tick_rate()));
    publish(publisher, period, 1.0, 0)?;
    let from = unix_micros();
    let me = std::process::id();
    let pids: Vec<u32> = targets.iter().map(|t| t.0.proc.pid()).collect();
    let machine = common::CpuSampler::start();
    let server_ns0: Vec<u64> = pids.iter().map(|p| cpu_ns(*p).unwrap_or(0)).collect();
    // The receivers (this process), each server and each extra pid, before and after publishing.
    let read = || {
        let cpu: Vec<u64> = std::iter::once(me).chain(pids.iter().copied()).map(|p| cpu_ns(p).unwrap_or(0)).collect();
        let ext: Vec<(u64, u64)> =
            extra.iter().map(|p| (cpu_ns(*p).unwrap_or(0), stat_cpu_ns(*p).unwrap_or(0))).collect();
        (cpu, ext)
    };
    let ((c0, e0), t0) = (read(), Instant::now());
    let res = publish(publisher, period, secs, 1_000_000);
    let ((c1, e1), dt) = (read(), t0.elapsed());
    let pct = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / dt.as_nanos().max(1) as f64;
    let receiver_cpu = pct(c0[0], c1[0]);
    let node_cpu: Vec<f64> = (1..c0.len()).map(|i| pct(c0[i], c1[i])).collect();
    let extra_cpu: Vec<(u64, u64, f64)> =
        e0.iter().zip(&e1).map(|(a, b)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1), pct(a.0, b.0))).collect();
    let busy = machine.finish_detail();
    let machine = common::CpuSampler::format(&busy.iter().map(|b| b.0).collect::<Vec<_>>());
    let (sent, _errors, rtt) = res?;
    let until = unix_micros();
    std::thread::sleep(Duration::from_millis(1500));
    // Everything the servers spent on the measured events, their delivery included.
    let server_ns: u64 =
        pids.iter().zip(&server_ns0).map(|(p, ns0)| cpu_ns(*p).unwrap_or(0).saturating_sub(*ns0)).sum();
    let node_rss: Vec<Option<u64>> = pids.iter().map(|p| rss_kib(*p)).collect();
    let outs = crowd.finish();
    let in_window = |o: &ClientOut| -> Vec<f64> {
        o.samples.iter().filter(|(s, _)| *s >= from && *s <= until).map(|(_, l)| f64::from(*l) / 1000.0).collect()
    };
    let mut lat = Vec::new();
    let mut per_node: Vec<(usize, Vec<f64>)> = vec![(0, Vec::new()); targets.len()];
    for o in &outs {
        let l = in_window(o);
        if let Some(node) = per_node.get_mut(o.node) {
            node.0 += 1;
            node.1.extend_from_slice(&l);
        }
        lat.extend(l);
    }
    let closed = outs.iter().filter(|o| o.close.is_some_and(|c| c != 1000)).count();
    let expected = (sent as f64) * subscribed as f64;
    let nodes = per_node
        .iter()
        .zip(&node_cpu)
        .zip(&node_rss)
        .map(|(((k, l), cpu), rss)| (*k, *cpu, Summary::of(l).p99, *rss))
        .collect();
    Ok(LatencyRow {
        clients: n,
        subscribed,
        rate: sent as f64 / secs,
        delivered: if expected > 0.0 { 100.0 * lat.len() as f64 / expected } else { 0.0 },
        summary: Summary::of(&lat),
        server_cpu: node_cpu.iter().sum(),
        cpu_per_frame_us: server_ns as f64 / 1000.0 / (lat.len().max(1) as f64),
        receiver_cpu,
        rss_kib: node_rss.iter().copied().sum(),
        closed,
        post: Summary::of(&rtt),
        machine,
        busy,
        sent,
        nodes,
        extra: extra_cpu,
        extra_idle,
    })
}

struct HoldRow {
    wanted: usize,
    subscribed: usize,
    all_received: usize,
    rss_kib: Option<u64>,
    connect_secs: f64,
}

fn hold_run(ctx: &Ctx, server: &Server, n: usize) -> anyhow::Result<HoldRow> {
    let t0 = Instant::now();
    let crowd = Crowd::connect(ctx, server, n, Duration::from_secs(180))?;
    let connect_secs = t0.elapsed().as_secs_f64();
    let subscribed = crowd.subscribed();
    let from = unix_micros();
    let (sent, _, _) = publish(server, Duration::from_secs(1), 5.0, 2_000_000)?;
    let until = unix_micros();
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(server.proc.pid());
    let outs = crowd.finish();
    let all_received = outs
        .iter()
        .filter(|o| o.samples.iter().filter(|(s, _)| *s >= from && *s <= until).count() as u64 >= sent && sent > 0)
        .count();
    Ok(HoldRow { wanted: n, subscribed, all_received, rss_kib: rss, connect_secs })
}

fn idle(pid: u32, secs: f64) -> (f64, Option<u64>) {
    let (cpu, ()) = cpu_during(pid, || std::thread::sleep(Duration::from_secs_f64(secs)));
    (cpu, rss_kib(pid))
}

fn start_orchestrator(ctx: &Ctx, dir: &Path, config_text: &str) -> anyhow::Result<Server> {
    start_orchestrator_bin(ctx, &ctx.orchestrator, dir, config_text)
}

/// [`start_orchestrator`] with another binary (`--also-bin`).
fn start_orchestrator_bin(ctx: &Ctx, bin: &Path, dir: &Path, config_text: &str) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("orchestrator.toml");
    std::fs::write(&config, config_text)?;
    let data = dir.join("data");
    let viewer = create_token(bin, &config, &data, "bench-viewer", "viewer")?;
    let service = create_token(bin, &config, &data, "bench-publisher", "service")?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), bin);
    cmd.arg("--config").arg(&config).arg("--bind").arg(format!("127.0.0.1:{port}")).arg("--data-dir").arg(&data);
    let proc = Proc::spawn("orchestrator", &mut cmd, &dir.join("orchestrator.log"))?;
    wait_for("the orchestrator", Duration::from_secs(30), Duration::from_millis(20), || {
        get_once(local(port), "/api/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    Ok(Server {
        name: "orchestrator",
        addr: local(port),
        events_path: "/api/events",
        viewer,
        service: Some(service),
        proc,
    })
}

fn start_fastapi(ctx: &Ctx, dir: &Path) -> anyhow::Result<Server> {
    let python = ctx.tools.venv_python.clone().context("venv missing")?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), python);
    cmd.args(["-m", "uvicorn", "fastapi_broadcaster:app", "--app-dir"])
        .arg(common::super_root().join("xtask/peers"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1", "--no-access-log"]);
    let proc = Proc::spawn("fastapi broadcaster", &mut cmd, &dir.join("fastapi-broadcaster.log"))?;
    wait_for("the FastAPI broadcaster", Duration::from_secs(30), Duration::from_millis(50), || {
        get_once(local(port), "/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    Ok(Server {
        name: "FastAPI broadcaster",
        addr: local(port),
        events_path: "/events",
        viewer: "x".into(),
        service: None,
        proc,
    })
}

fn start_node_ws(ctx: &Ctx, dir: &Path) -> anyhow::Result<Server> {
    let node = ctx.tools.node.clone().context("node missing")?;
    let modules = ctx.tools.node_ws.clone().context("the npm package ws is missing: cargo xtask bench setup")?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), node);
    cmd.arg(common::super_root().join("xtask/peers/ws_broadcaster.js"))
        .env("NODE_PATH", modules)
        .env("PORT", port.to_string())
        .env("NODE_ENV", "production");
    let proc = Proc::spawn("node ws broadcaster", &mut cmd, &dir.join("node-ws-broadcaster.log"))?;
    wait_for("the Node ws broadcaster", Duration::from_secs(30), Duration::from_millis(50), || {
        get_once(local(port), "/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    Ok(Server { name: NODE_WS, addr: local(port), events_path: "/events", viewer: "x".into(), service: None, proc })
}

fn start_floor(ctx: &Ctx, dir: &Path) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), exe);
    cmd.args(["bench", "floor-ws", "--port", &port.to_string()]);
    let proc = Proc::spawn("floor broadcaster", &mut cmd, &dir.join("floor-ws.log"))?;
    wait_for("the floor broadcaster", Duration::from_secs(30), Duration::from_millis(20), || {
        get_once(local(port), "/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    Ok(Server { name: "floor", addr: local(port), events_path: "/events", viewer: "x".into(), service: None, proc })
}

fn mb(k: Option<u64>) -> String {
    k.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "–".into())
}

/// Runs the suite.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.tools.require(&["venv", "node", "ws"])?;
    let quick = ctx.opts.quick;
    let hold_n = if quick { 1000 } else { 5000 };
    if let Some(limit) = common::open_files_limit()
        && limit < (hold_n as u64) + 500
    {
        bail!(
            "open files limit is {limit}: run `ulimit -n 20000` (as root or within the hard limit) before the hub bench"
        );
    }
    common::pin_self(ctx, ctx.load_cpu());
    let dir = ctx.subdir("hub")?;
    let idle_secs = if quick { 5.0 } else { 30.0 };
    let secs = if quick { 3.0 } else { 10.0 };
    let counts = [100usize, 1000];

    // Idle with the four simulated services managed (ticks flowing in, nobody connected).
    ctx.note("idle: orchestrator with the four simulated services");
    let mut managed = String::from("# generated by cargo xtask bench hub: the built-in platform on free ports\n");
    for (role, routes) in [
        ("data", "[\"ticks\", \"ohlc\", \"symbols\"]"),
        ("mt5", "[\"account\", \"positions\", \"orders\"]"),
        ("strategy", "[\"strategies\", \"signals\"]"),
        ("pattern", "[\"patterns\"]"),
    ] {
        let port = free_port()?;
        managed.push_str(&format!(
            "[[service]]\nname = \"{role}\"\nroutes = {routes}\nport = {port}\ncommand = [{:?}, \"sim\", \"{role}\", \"--port\", \"{port}\"]\n\
             events_path = \"/events\"\nsettings_path = \"/settings\"\n",
            ctx.orchestrator.display().to_string()
        ));
    }
    let platform = start_orchestrator(ctx, &dir.join("orchestrator-platform"), &managed)?;
    std::thread::sleep(Duration::from_secs(3));
    let (platform_cpu, platform_rss) = idle(platform.proc.pid(), idle_secs);
    drop(platform);

    let mut results = Vec::new();
    for which in ["orchestrator", "FastAPI broadcaster", NODE_WS, FLOOR] {
        let server = match which {
            "orchestrator" => start_orchestrator(
                ctx,
                &dir.join("orchestrator"),
                "# generated by cargo xtask bench hub: no services\n",
            )?,
            FLOOR => start_floor(ctx, &dir)?,
            NODE_WS => start_node_ws(ctx, &dir)?,
            _ => start_fastapi(ctx, &dir)?,
        };
        std::thread::sleep(Duration::from_secs(2));
        ctx.note(&format!("{which}: idle for {idle_secs} s"));
        let (idle_cpu, idle_rss) = idle(server.proc.pid(), idle_secs);
        let mut rows = Vec::new();
        for n in counts {
            ctx.note(&format!("{which}: {n} clients, 100 ticks/s for {secs} s"));
            rows.push(latency_run(ctx, &server, n, secs)?);
            std::thread::sleep(Duration::from_secs(2));
        }
        ctx.note(&format!("{which}: holding {hold_n} clients"));
        let hold = hold_run(ctx, &server, hold_n)?;
        results.push((which, idle_cpu, idle_rss, rows, hold));
        drop(server);
        std::thread::sleep(Duration::from_secs(2));
    }

    ctx.line(&format!(
        "\n## Hub: WebSocket fan-out\n\n`cargo xtask bench hub` — the server alone on one CPU; publisher and receivers (one \
         thread in the xtask process waiting on every socket with epoll, a minimal RFC 6455 client) on the other. Ticks are POSTed one \
         per 10 ms (`POST /api/events` with a service token; `/events` on the peer) carrying their send time; latency = \
         receive time − send time, so it includes the HTTP ingest. {secs:.0} s measured after a 1 s warm-up. The FastAPI \
         peer is `xtask/peers/fastapi_broadcaster.py` (uvicorn, 1 worker, access log off): the FastAPI docs' \
         ConnectionManager loop, no auth check, no topics, no queues. The Node peer is `xtask/peers/ws_broadcaster.js` \
         (npm `ws`, the most used WebSocket server: the broadcast loop of its README on Node's `http` server, same protocol subset). \
         Server CPU µs/frame is the server's CPU time from the first measured POST until 1.5 s after the last, divided by the \
         frames delivered. The floor is `xtask/src/bench/floor_ws.rs` in the same slot: \
         one thread, epoll, and for each event one pre-encoded frame written with one `send(2)` per client, nothing else — what \
         this machine allows.\n"
    ));
    ctx.line("| server | clients | ticks/s achieved | p50 ms | p99 ms | max ms | delivered | POST p50/p99 ms | server CPU | server CPU µs/frame | receivers' CPU | RSS MB | closed | CPUs busy |");
    ctx.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (which, _, _, rows, _) in &results {
        for r in rows {
            ctx.line(&format!(
                "| {which} | {}{} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} % | {:.2} / {:.2} | {:.0} % | {:.2} | {:.0} % | {} | {} | {} |",
                r.clients,
                if r.subscribed < r.clients { format!(" ({} subscribed)", r.subscribed) } else { String::new() },
                r.rate,
                r.summary.p50,
                r.summary.p99,
                r.summary.max,
                r.delivered,
                r.post.p50,
                r.post.p99,
                r.server_cpu,
                r.cpu_per_frame_us,
                r.receiver_cpu,
                mb(r.rss_kib),
                r.closed,
                r.machine
            ));
        }
    }
    ctx.line(
        "\n| server | clients wanted | subscribed | received all 5 probes | connect time s | RSS MB at that load |",
    );
    ctx.line("|---|---:|---:|---:|---:|---:|");
    for (which, _, _, _, h) in &results {
        ctx.line(&format!(
            "| {which} | {} | {} | {} | {:.1} | {} |",
            h.wanted,
            h.subscribed,
            h.all_received,
            h.connect_secs,
            mb(h.rss_kib)
        ));
    }
    ctx.line(&format!("\n| idle ({idle_secs:.0} s, no clients) | CPU % of one core | RSS MB |\n|---|---:|---:|"));
    for (which, cpu, rss, _, _) in &results {
        ctx.line(&format!("| {which}, no services | {cpu:.3} | {} |", mb(*rss)));
    }
    ctx.line(&format!(
        "| orchestrator with the 4 simulated services managed (health checks, ~40 ticks/s ingested) | {platform_cpu:.3} | {} |",
        mb(platform_rss)
    ));

    let orch = &results[0];
    let p99_1000 = orch.3.iter().find(|r| r.clients == 1000).map(|r| r.summary.p99).unwrap_or(f64::NAN);
    let hold = &orch.4;
    let hold_rss = hold.rss_kib.map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN);
    let idle_rss = orch.2.map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    ctx.line(&format!(
        "\nTargets (orchestrator): {hold_n} clients held: **{}** ({} received every probe); p99 < 5 ms at 1 000 clients: **{}** \
         ({p99_1000:.2} ms); RSS < 150 MB at {hold_n} clients: **{}** ({hold_rss:.1} MB); RSS < 20 MB idle: **{}** ({idle_rss:.1} MB); \
         idle CPU < 0.1 %: **{}** ({:.3} %).",
        verdict(hold.all_received >= hold_n),
        hold.all_received,
        verdict(p99_1000 < 5.0),
        verdict(hold_rss < 150.0),
        verdict(idle_rss < 20.0),
        verdict(orch.1 < 0.1),
        orch.1
    ));
    // At 1 000 clients, against the floor and the Node `ws` broadcaster (SPEC §11).
    let at_1000 =
        |name: &str| results.iter().find(|r| r.0 == name).and_then(|r| r.3.iter().find(|row| row.clients == 1000));
    if let (Some(o), Some(f)) = (at_1000("orchestrator"), at_1000(FLOOR)) {
        let node = at_1000(NODE_WS);
        ctx.line(&format!(
            "At 1 000 clients (ticks/s achieved: orchestrator {:.0}, floor {:.0}{}): p99 {:.2} ms = {:.2}× the floor's ({:.2} ms; target ≤ 1.25×: **{}**){}; \
             server CPU per delivered frame {:.2} µs = {:.2}× the floor's ({:.2} µs; target ≤ 1.3×: **{}**){}.",
            o.rate,
            f.rate,
            node.map(|n| format!(", Node ws {:.0}", n.rate)).unwrap_or_default(),
            o.summary.p99,
            o.summary.p99 / f.summary.p99,
            f.summary.p99,
            verdict(o.summary.p99 <= 1.25 * f.summary.p99),
            node.map(|n| format!(
                ", Node ws {:.2} ms (target ≤ Node ws: **{}**)",
                n.summary.p99,
                verdict(o.summary.p99 <= n.summary.p99)
            ))
            .unwrap_or_default(),
            o.cpu_per_frame_us,
            o.cpu_per_frame_us / f.cpu_per_frame_us,
            f.cpu_per_frame_us,
            verdict(o.cpu_per_frame_us <= 1.3 * f.cpu_per_frame_us),
            node.map(|n| format!(", Node ws {:.2} µs", n.cpu_per_frame_us)).unwrap_or_default(),
        ));
    }
    Ok(())
}

/// A two-node cluster: redis-server, a primary (`gw-1`) and an edge (`gw-2`), all on the CPU of
/// the system under test. Dropped edge first, then the primary, then Redis.
struct Cluster {
    edge: Server,
    primary: Server,
    redis: Proc,
    redis_port: u16,
}

/// `INFO section` of the Redis on `port` (RESP inline command, one bulk-string answer).
fn redis_info(port: u16, section: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&local(port), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("INFO {section}\r\n").as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // `$<len>\r\n<text>\r\n`: read until the announced length has arrived.
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        out.extend_from_slice(&buf[..k]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n")
            && let Some(len) = head.strip_prefix('$').and_then(|l| l.parse::<usize>().ok())
            && body.len() >= len
        {
            return Ok(body[..len].to_owned());
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn cluster_section(redis_port: u16, node: &str, role: &str, primary_url: Option<&str>) -> String {
    let primary_url = primary_url.map(|u| format!("primary_url = \"{u}\"\n")).unwrap_or_default();
    format!(
        "\n[cluster]\nbroker = \"redis://127.0.0.1:{redis_port}/0\"\nnode = \"{node}\"\nrole = \"{role}\"\n{primary_url}"
    )
}

/// `redis-server` on a free port, no persistence, its files in `dir/redis`.
fn start_redis(ctx: &Ctx, dir: &Path) -> anyhow::Result<(Proc, u16)> {
    let exe = ctx.tools.redis_server.clone().context("redis-server is missing: apt-get install -y redis-server")?;
    let data = dir.join("redis");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), exe);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&data);
    let proc = Proc::spawn("redis-server", &mut cmd, &dir.join("redis-server.log"))?;
    wait_for("redis-server", Duration::from_secs(15), Duration::from_millis(20), || {
        TcpStream::connect_timeout(&local(port), Duration::from_millis(300)).ok()
    })?;
    Ok((proc, port))
}

fn start_cluster(ctx: &Ctx, dir: &Path) -> anyhow::Result<Cluster> {
    let (redis, redis_port) = start_redis(ctx, dir)?;
    let mut primary = start_orchestrator(
        ctx,
        &dir.join("primary"),
        &format!(
            "# generated by cargo xtask bench hub --cluster: the primary, no services\n{}",
            cluster_section(redis_port, "gw-1", "primary", None)
        ),
    )?;
    primary.name = "primary";
    let edge_dir = dir.join("edge");
    std::fs::create_dir_all(&edge_dir)?;
    let config = edge_dir.join("orchestrator.toml");
    std::fs::write(
        &config,
        format!(
            "# generated by cargo xtask bench hub --cluster: an edge\n{}",
            cluster_section(redis_port, "gw-2", "edge", Some(&format!("http://{}", primary.addr)))
        ),
    )?;
    let port = free_port()?;
    let mut cmd = ctx.command(ctx.sut_cpu(), &ctx.orchestrator);
    cmd.arg("--config")
        .arg(&config)
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(edge_dir.join("data"));
    let proc = Proc::spawn("edge", &mut cmd, &edge_dir.join("orchestrator.log"))?;
    wait_for("the edge", Duration::from_secs(30), Duration::from_millis(20), || {
        get_once(local(port), "/api/health", Duration::from_millis(300)).ok().filter(|r| r.status == 200)
    })?;
    // The edge knows the primary's tokens once it has read the table the primary publishes to
    // Redis every 300 ms: wait until the viewer token authenticates on the edge's /ws.
    let viewer = primary.viewer.clone();
    wait_for(
        "the edge to accept the primary's viewer token",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            let mut ws = WsClient::connect(local(port), "/ws", Duration::from_secs(2), 7).ok()?;
            ws.send_text(&format!(r#"{{"id":1,"type":"auth","token":"{viewer}"}}"#)).ok()?;
            ws.expect_text("auth_ok").ok()
        },
    )?;
    let edge = Server { name: "edge", addr: local(port), events_path: "/api/events", viewer, service: None, proc };
    Ok(Cluster { edge, primary, redis, redis_port })
}

/// Of the server CPU (CPU 0, when pinning) in a row's publish window: (the busy share that is
/// neither the server side's own CPU — the nodes', Redis' — nor steal, the steal share): other
/// people's work on a shared machine, and the hypervisor's.
fn other_load(ctx: &Ctx, r: &LatencyRow) -> Option<(f64, f64)> {
    let own = r.server_cpu + r.extra.iter().map(|e| e.2).sum::<f64>();
    match (ctx.sut_cpu(), r.busy.first()) {
        (Some(0), Some((busy, steal))) => Some(((busy - steal - own).max(0.0), *steal)),
        _ => None,
    }
}

/// `cargo xtask bench hub --cluster`: the 1 000-client latency row on a single node (no
/// `[cluster]`), then the same 1 000 clients spread 500/500 over a primary and an edge sharing a
/// redis-server, ticks POSTed to the primary at the same rate; `--repeat N` interleaved rounds.
pub fn run_cluster(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.tools.require(&["redis-server"])?;
    let n = 1000usize;
    if let Some(limit) = common::open_files_limit()
        && limit < (n as u64) + 500
    {
        bail!("open files limit is {limit}: run `ulimit -n 20000` before the hub bench");
    }
    common::pin_self(ctx, ctx.load_cpu());
    let dir = ctx.subdir("hub-cluster")?;
    let secs = if ctx.opts.quick { 3.0 } else { 10.0 };
    let rounds = ctx.opts.repeat.unwrap_or(1).max(1);
    let rate = ctx.opts.tick_rate();
    let mut single = Vec::new();
    let mut cluster = Vec::new();
    // `--also-bin`: the single-node row of another binary too, in the same rounds (an A/B).
    let also = ctx.opts.also_bin.clone();
    let mut other_bin = Vec::new();
    for round in 1..=rounds {
        if let Some(bin) = &also {
            let server = start_orchestrator_bin(
                ctx,
                bin,
                &dir.join(format!("also-bin-{round}")),
                "# generated by cargo xtask bench hub --cluster: one node (--also-bin), no services, no [cluster]\n",
            )?;
            std::thread::sleep(Duration::from_secs(2));
            ctx.note(&format!(
                "round {round}/{rounds}: single node (--also-bin), {n} clients, {rate} ticks/s for {secs} s"
            ));
            other_bin.push(latency_run(ctx, &server, n, secs)?);
            drop(server);
            std::thread::sleep(Duration::from_secs(2));
        }
        {
            let server = start_orchestrator(
                ctx,
                &dir.join(format!("single-{round}")),
                "# generated by cargo xtask bench hub --cluster: one node, no services, no [cluster]\n",
            )?;
            std::thread::sleep(Duration::from_secs(2));
            ctx.note(&format!("round {round}/{rounds}: single node, {n} clients, {rate} ticks/s for {secs} s"));
            single.push(latency_run(ctx, &server, n, secs)?);
        }
        std::thread::sleep(Duration::from_secs(2));
        {
            let c = start_cluster(ctx, &dir.join(format!("cluster-{round}")))?;
            std::thread::sleep(Duration::from_secs(2));
            ctx.note(&format!(
                "round {round}/{rounds}: cluster, {} clients on the primary + {} on the edge, {rate} ticks/s to the primary for {secs} s",
                n / 2,
                n - n / 2
            ));
            let row =
                latency_spread(ctx, &[(&c.primary, n / 2), (&c.edge, n - n / 2)], &c.primary, &[c.redis.pid()], secs)?;
            cluster.push(row);
            // Which Redis commands the run cost (warm-up, measured window and background together).
            let stats = redis_info(c.redis_port, "commandstats").unwrap_or_else(|e| format!("INFO failed: {e}\n"));
            std::fs::write(dir.join(format!("cluster-{round}/redis-commandstats.txt")), stats)?;
            drop(c);
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    ctx.line(&format!(
        "\n## Hub across two nodes (cluster)\n\n`cargo xtask bench hub --cluster{}` — {n} clients, {rate} ticks/s POSTed (`POST /api/events`, \
         service token), {secs:.0} s measured after a 1 s warm-up, {rounds} round(s), single node and cluster interleaved. \
         **single node**: one orchestrator without `[cluster]` (the 1 000-client row of `cargo xtask bench hub`). \
         **cluster**: redis-server (no persistence), a primary `gw-1` and an edge `gw-2`; {} clients on each, ticks POSTed to the primary \
         and delivered to the edge's clients through Redis. The server side (the one orchestrator, or redis-server + primary + edge) runs \
         on the system-under-test CPU; publisher and receivers (one epoll thread over all {n} sockets) on the other. Latency = \
         receive time − send time over all clients. Nodes' CPU µs/frame: the orchestrators' CPU time from the first measured POST until \
         1.5 s after the last, divided by the frames delivered (Redis not included). Redis CPU: redis-server's CPU time during the \
         publish window divided by the ticks published (schedstat of all its threads; in brackets `/proc/PID/stat` utime + stime, \
         10 ms steps); its CPU % in the publish window and (in brackets) over 3 s before the warm-up with the clients connected and \
         no ticks (the token table, the primary's claim, the nodes' client lists); \"above idle\" charges only the difference to the \
         ticks. Other load on the server CPU: CPU 0's busy share in the publish window minus the server side's own CPU \
         (the orchestrators', Redis') and minus steal (the hypervisor running someone else, shown apart): other people's work \
         on this shared machine (and kernel work not charged to a process). The verdict uses the rounds where other load + steal \
         stayed ≤ 10 % in both rows.\n",
        if ctx.opts.rate.is_some() { format!(" --rate {rate}") } else { String::new() },
        n / 2
    ));
    ctx.line("| setup | round | clients | ticks/s achieved | p50 ms | p99 ms | max ms | delivered | POST p50/p99 ms | nodes' CPU | nodes' CPU µs/frame | Redis CPU µs/event | Redis CPU (idle) | Redis µs/event above idle | receivers' CPU | RSS MB | closed | CPUs busy | other load on the server CPU |");
    ctx.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|");
    let names = ["primary", "edge"];
    for round in 0..rounds {
        let mut rows = vec![("single node", &single[round]), ("cluster", &cluster[round])];
        if let Some(r) = other_bin.get(round) {
            rows.insert(0, ("single node (--also-bin)", r));
        }
        for (setup, r) in rows {
            let other = match other_load(ctx, r) {
                Some((other, steal)) => format!("{other:.0} % (steal {steal:.0} %)"),
                None => "–".to_owned(),
            };
            let (nodes_cpu, rss, redis_us, redis_cpu, redis_net) = if setup == "cluster" {
                let cpu =
                    r.nodes.iter().zip(names).map(|(nd, name)| format!("{name} {:.0} %", nd.1)).collect::<Vec<_>>();
                let rss =
                    r.nodes.iter().zip(names).map(|(nd, name)| format!("{name} {}", mb(nd.3))).collect::<Vec<_>>();
                let (ns, stat_ns, pct) = r.extra.first().copied().unwrap_or((0, 0, f64::NAN));
                let idle = r.extra_idle.first().copied().unwrap_or(f64::NAN);
                let sent = r.sent.max(1) as f64;
                // CPU % of one core = 10 000 µs per second; events per second = sent / secs.
                let net = (pct - idle) * 10_000.0 / (sent / secs);
                (
                    cpu.join(", "),
                    rss.join(", "),
                    format!("{:.1} ({:.1})", ns as f64 / 1000.0 / sent, stat_ns as f64 / 1000.0 / sent),
                    format!("{pct:.1} % ({idle:.1} %)"),
                    format!("{net:.1}"),
                )
            } else {
                (format!("{:.0} %", r.server_cpu), mb(r.rss_kib), "–".to_owned(), "–".to_owned(), "–".to_owned())
            };
            ctx.line(&format!(
                "| {setup} | {} | {}{} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} % | {:.2} / {:.2} | {nodes_cpu} | {:.2} | {redis_us} | {redis_cpu} | {redis_net} | {:.0} % | {rss} | {} | {} | {other} |",
                round + 1,
                r.clients,
                if r.subscribed < r.clients { format!(" ({} subscribed)", r.subscribed) } else { String::new() },
                r.rate,
                r.summary.p50,
                r.summary.p99,
                r.summary.max,
                r.delivered,
                r.post.p50,
                r.post.p99,
                r.cpu_per_frame_us,
                r.receiver_cpu,
                r.closed,
                r.machine
            ));
        }
    }
    for (round, r) in cluster.iter().enumerate() {
        let per = r
            .nodes
            .iter()
            .zip(names)
            .map(|(nd, name)| format!("the {name}'s {} clients {:.2} ms", nd.0, nd.2))
            .collect::<Vec<_>>();
        ctx.line(&format!("\nCluster round {}: p99 per node: {}.", round + 1, per.join(", ")));
    }
    // Rounds where neither row had more than 10 % of other load on the server CPU.
    let calm = |r: &LatencyRow| other_load(ctx, r).is_none_or(|(other, steal)| other + steal <= 10.0);
    let clean: Vec<usize> = (0..rounds).filter(|&i| calm(&single[i]) && calm(&cluster[i])).collect();
    let (used, which) = if clean.is_empty() {
        (
            (0..rounds).collect::<Vec<_>>(),
            "over all rounds, since every one was disturbed (> 10 % other load + steal on the server CPU):".to_owned(),
        )
    } else {
        let list = clean.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ");
        (clean, format!("over the undisturbed round(s) {list} of"))
    };
    let p99 =
        |rows: &[LatencyRow]| super::stats::median(&used.iter().map(|&i| rows[i].summary.p99).collect::<Vec<_>>());
    let (single_p99, cluster_p99) = (p99(&single), p99(&cluster));
    let ratio = cluster_p99 / single_p99;
    ctx.line(&format!(
        "\nVerdict ({} {rounds}): cluster p99 {cluster_p99:.2} ms vs single-node p99 {single_p99:.2} ms = {ratio:.2}× (target ≤ 1.5×): **{}**.",
        if used.len() > 1 { format!("medians {which}") } else { which.clone() },
        if ratio <= 1.5 { "PASS" } else { "MISS" }
    ));
    if let Some(bin) = &also {
        let cpu = |rows: &[LatencyRow]| {
            super::stats::median(&used.iter().map(|&i| rows[i].cpu_per_frame_us).collect::<Vec<_>>())
        };
        let other_p99 = p99(&other_bin);
        ctx.line(&format!(
            "\nSingle node A/B (same rounds): this build p99 {single_p99:.2} ms, {:.2} CPU µs/frame; `{}` p99 {other_p99:.2} ms, {:.2} CPU µs/frame ({:.2}× and {:.2}×).",
            cpu(&single),
            bin.display(),
            cpu(&other_bin),
            single_p99 / other_p99,
            cpu(&single) / cpu(&other_bin),
        ));
    }
    Ok(())
}
