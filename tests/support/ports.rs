//! Ports for tests and benchmarks, shared by the test harnesses and xtask (each includes this
//! file with `#[path]`).
//!
//! `bind("127.0.0.1:0")` alone can hand one port to two parallel tests in turn, give the
//! gateway's own port to a service, or land on a port that an outgoing connection (or a TCP
//! self-connect) takes once its listener is dropped. These ports are outside the kernel's
//! ephemeral range (32768–60999 on Linux) and never handed out twice in one process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000;

/// A listener on 127.0.0.1 on a port no other caller in this process has been given.
pub fn unique_listener() -> std::io::Result<TcpListener> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes start at different places in the range.
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n >= SPAN {
            return Err(std::io::Error::other(format!("no free port left in {FIRST}..{}", FIRST + SPAN)));
        }
        let port = u16::try_from(FIRST + (start + n) % SPAN).map_err(std::io::Error::other)?;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener);
        }
    }
}

/// A port no other caller in this process has been given, free when handed out.
#[allow(dead_code)] // not every includer needs both
pub fn unique_port() -> std::io::Result<u16> {
    Ok(unique_listener()?.local_addr()?.port())
}
