//! The paced (open-loop) load generator of the gateway suite: requests at a fixed rate, below
//! saturation, where users live. wrk cannot pace (it sends as fast as answers come back), so the
//! generator is this small client rather than another tool to install.
//!
//! `conns` keep-alive connections, one thread each, share the rate: connection `k` is due to send
//! its `j`-th request at `t0 + k / rate + j * conns / rate`, so the whole schedule is one request
//! every `1 / rate`, spread evenly. A thread sleeps until its next due time (timer slack 1 µs),
//! sends, and waits for the answer. Latency is measured from the **due** time, not from the
//! moment the request went out: when an answer is late, the next request of that connection
//! leaves late and its wait counts (no coordinated omission, as in wrk2). A connection that fell
//! behind may catch up for 2 s past the end; requests still owed then are counted as `missed`, so
//! a contender that cannot keep the rate shows it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::http::Conn;
use super::sys;

/// What one paced run saw.
#[derive(Debug, Clone, Default)]
pub struct Paced {
    /// Latencies of the 200 answers, from each request's due time, in ms.
    pub lat_ms: Vec<f64>,
    /// Answers other than 200, and transport errors.
    pub bad: u64,
    /// Requests whose due time fell inside the run but that were never sent (the schedule was
    /// behind when the run ended).
    pub missed: u64,
    /// Length of the schedule in seconds.
    pub secs: f64,
}

impl Paced {
    /// 200 answers per second of schedule.
    pub fn rate(&self) -> f64 {
        self.lat_ms.len() as f64 / self.secs.max(1e-9)
    }
}

/// How long past the end of the schedule a connection that fell behind may still catch up.
const GRACE: Duration = Duration::from_secs(2);

/// Runs the schedule: `rate` requests per second over `conns` connections for `secs`.
pub fn run(addr: SocketAddr, path: &str, headers: &[(String, String)], rate: f64, conns: usize, secs: f64) -> Paced {
    let conns = conns.max(1);
    let period = Duration::from_secs_f64(conns as f64 / rate);
    let step = Duration::from_secs_f64(1.0 / rate);
    // Every thread connects first; the schedule starts once they all had time to.
    let t0 = Instant::now() + Duration::from_millis(200);
    let end = t0 + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..conns)
        .map(|k| {
            let path = path.to_owned();
            let headers = headers.to_vec();
            std::thread::spawn(move || {
                let _ = sys::set_timer_slack(1_000);
                let hs: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let mut out = Paced::default();
                let mut conn = Conn::connect(addr, Duration::from_secs(10)).ok();
                let mut due = t0 + step * u32::try_from(k).unwrap_or(0);
                while due < end {
                    let now = Instant::now();
                    if now > end + GRACE {
                        break;
                    }
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if conn.as_ref().is_none_or(Conn::is_closed) {
                        conn = Conn::connect(addr, Duration::from_secs(10)).ok();
                    }
                    match conn.as_mut().map(|c| c.request("GET", &path, &hs, b"")) {
                        Some(Ok(r)) if r.status == 200 => {
                            out.lat_ms.push(due.elapsed().as_secs_f64() * 1000.0);
                        }
                        Some(Ok(_)) => out.bad += 1,
                        Some(Err(_)) | None => {
                            out.bad += 1;
                            conn = None;
                        }
                    }
                    due += period;
                }
                // What this connection's schedule still owed when it stopped (nothing when on time).
                let mut owed = 0;
                let mut d = due;
                while d < end {
                    owed += 1;
                    d += period;
                }
                out.missed = owed;
                out
            })
        })
        .collect();
    let mut all = Paced { secs, ..Paced::default() };
    for h in handles {
        if let Ok(p) = h.join() {
            all.lat_ms.extend(p.lat_ms);
            all.bad += p.bad;
            all.missed += p.missed;
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn keeps_the_rate_and_measures_from_the_due_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let body = "{}";
                        let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if s.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let p = run(addr, "/", &[], 1000.0, 4, 0.5);
        assert_eq!((p.bad, p.missed), (0, 0));
        // 500 due in 0.5 s, give or take the one at each end.
        assert!((495..=505).contains(&p.lat_ms.len()), "{} answers", p.lat_ms.len());
        assert!(p.lat_ms.iter().all(|l| *l >= 0.0 && *l < 1000.0));
    }
}
