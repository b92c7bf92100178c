//! Process-level fault flags through real processes.
//!
//! The crate has no binary of its own, so each test re-executes this test executable with only
//! `child_process_entry` selected and the simulator arguments in an environment variable; that
//! entry then *is* the simulated service (`simulator::run`) until it exits.
//!
//! Unix signals and process groups: a Unix suite (the Windows behaviour is exercised through
//! `orchestrator.exe` in `tests/windows.rs`).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};

const CHILD_ARGS: &str = "SIMULATOR_TEST_CHILD_ARGS";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: simulator::SimArgs,
}

/// Not a test of its own: the body of the re-executed child (a no-op in a normal run).
#[test]
fn child_process_entry() {
    let Ok(raw) = std::env::var(CHILD_ARGS) else { return };
    let args: Vec<String> = serde_json::from_str(&raw).unwrap();
    let cli = Cli::parse_from(std::iter::once("sim".to_owned()).chain(args));
    let code = match simulator::run(cli.sim) {
        Ok(()) => 0,
        Err(_) => 2,
    };
    std::process::exit(code);
}

struct Sim {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts a simulated service as its own process group leader.
fn spawn(args: &[&str]) -> Sim {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ARGS, serde_json::to_string(args).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    Sim { child, stdout, stderr }
}

impl Sim {
    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// The next stdout line that contains `needle`.
    fn stdout_line(&self, needle: &str) -> String {
        wait_line(&self.stdout, needle)
    }

    /// The address from `<role> listening on ADDR instance=…`.
    fn listening(&self) -> (SocketAddr, String) {
        let line = self.stdout_line(" listening on ");
        let rest = line.split(" listening on ").nth(1).unwrap();
        let mut words = rest.split_whitespace();
        let addr = words.next().unwrap().parse().unwrap();
        let instance = words.next().unwrap().strip_prefix("instance=").unwrap().to_owned();
        (addr, instance)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_text(&self) -> String {
        let mut out = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn wait_line(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no line with {needle:?} in time"),
            Err(RecvTimeoutError::Disconnected) => panic!("stream ended before a line with {needle:?}"),
        }
    }
}

/// A minimal HTTP/1.1 GET; `None` when nothing comes back within `timeout`.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    match stream.read_to_string(&mut out) {
        Ok(_) if !out.is_empty() => Some(out),
        _ => None,
    }
}

/// Opens `/events` with a raw WebSocket handshake.
fn ws_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads one unmasked server frame: (first byte, payload).
fn read_ws_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut hdr = [0u8; 2];
    stream.read_exact(&mut hdr).unwrap();
    let len = match hdr[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).unwrap();
    (hdr[0], payload)
}

#[test]
fn start_line_access_log_and_graceful_sigterm() {
    let mut sim = spawn(&["data", "--port", "0", "--tick-rate", "5"]);
    let (addr, instance) = sim.listening();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert!(uuid::Uuid::parse_str(&instance).is_ok(), "{instance}");
    let health = http_get(addr, "/health", WAIT).unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(&format!("\"instance\":\"{instance}\"")), "{health}");
    http_get(addr, "/ticks/latest?symbol=NOPE", WAIT).unwrap();
    // The first access line is the tick request's: health probes are not logged.
    let line = sim.stdout_line("GET /");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[..3], ["GET", "/ticks/latest", "404"], "{line}");
    assert!(words[3].ends_with("ms"), "{line}");

    let mut events = ws_connect(addr);
    let first = read_ws_frame(&mut events);
    assert_eq!(first.0, 0x81, "a text frame");
    assert!(String::from_utf8_lossy(&first.1).contains("\"type\":\"tick\""));
    kill(sim.pid(), Signal::SIGTERM).unwrap();
    // the event socket is closed by the service (close frame), not left to time out
    loop {
        let (opcode, _) = read_ws_frame(&mut events);
        if opcode == 0x88 {
            break;
        }
        assert_eq!(opcode, 0x81);
    }
    let status = sim.wait_exit(WAIT).expect("SIGTERM stops the service");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(http_get(addr, "/health", Duration::from_millis(500)).is_none(), "port released");
}

#[test]
fn ignore_sigterm_needs_sigkill() {
    let mut sim = spawn(&["mt5", "--port", "0", "--ignore-sigterm"]);
    let (addr, _) = sim.listening();
    kill(sim.pid(), Signal::SIGTERM).unwrap();
    wait_line(&sim.stderr, "ignoring SIGTERM");
    assert!(sim.child.try_wait().unwrap().is_none(), "still running after SIGTERM");
    let health = http_get(addr, "/health", WAIT).unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    killpg(sim.pid(), Signal::SIGKILL).unwrap();
    let status = sim.wait_exit(WAIT).unwrap();
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn fail_startup_exits_with_the_code_before_binding() {
    let mut sim = spawn(&["strategy", "--port", "0", "--fail-startup", "--exit-code", "3"]);
    let status = sim.wait_exit(WAIT).expect("exits");
    assert_eq!(status.code(), Some(3));
    assert!(sim.stderr_text().contains("start-up failure"));
    let deadline = Instant::now() + WAIT;
    loop {
        match sim.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => assert!(!line.contains("listening on"), "never bound: {line}"),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
        }
    }
}

#[test]
fn crash_after_ms_exits_with_the_code() {
    let started = Instant::now();
    let mut sim = spawn(&["pattern", "--port", "0", "--crash-after-ms", "400", "--exit-code", "7"]);
    let (addr, _) = sim.listening();
    assert!(http_get(addr, "/health", WAIT).is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    let status = sim.wait_exit(WAIT).expect("crashes");
    assert_eq!(status.code(), Some(7));
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn startup_delay_postpones_binding_and_sigterm_during_it_exits() {
    let started = Instant::now();
    let sim = spawn(&["data", "--port", "0", "--startup-delay-ms", "500"]);
    sim.listening();
    assert!(started.elapsed() >= Duration::from_millis(500));
    drop(sim);

    let mut sim = spawn(&["data", "--port", "0", "--startup-delay-ms", "60000"]);
    // the signal handlers are installed before this line is printed
    wait_line(&sim.stderr, "before binding");
    kill(sim.pid(), Signal::SIGTERM).unwrap();
    let status = sim.wait_exit(WAIT).expect("SIGTERM during the delay stops it");
    assert_eq!(status.code(), Some(0));
}

fn alive(pid: Pid) -> bool {
    // a zombie (exited, not yet reaped by its new parent) counts as gone
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn spawned_child_dies_only_with_the_whole_group() {
    let mut sim = spawn(&["data", "--port", "0", "--spawn-child"]);
    let line = sim.stdout_line("spawned child pid=");
    let child = Pid::from_raw(line.rsplit_once('=').unwrap().1.trim().parse().unwrap());
    sim.listening();
    assert_eq!(getpgid(Some(child)).unwrap(), sim.pid(), "same process group as the service");
    // killing the service alone leaves the grandchild behind…
    kill(sim.pid(), Signal::SIGKILL).unwrap();
    sim.wait_exit(WAIT).unwrap();
    assert!(alive(child), "the grandchild has no parent-death signal");
    // …killing the group ends it
    killpg(sim.pid(), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + WAIT;
    while alive(child) {
        assert!(Instant::now() < deadline, "grandchild survived the group kill");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hold_port_accepts_connections_but_never_answers() {
    let sim = spawn(&["data", "--port", "0", "--hold-port"]);
    let (addr, _) = sim.listening();
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connections are accepted");
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    write!(stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    let err = stream.read(&mut buf).expect_err("no answer, not even a close");
    assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err}");
    // the port is really taken
    assert!(std::net::TcpListener::bind(addr).is_err());
}
