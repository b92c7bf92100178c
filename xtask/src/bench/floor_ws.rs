//! The floor of the hub benchmark: the least work a WebSocket broadcaster can do per event on
//! this machine, run in the hub suite's same slot (alone on the server CPU) so that its figures
//! show what the hardware allows. One thread, one epoll set, level-triggered; it speaks just
//! enough of the orchestrator's client protocol for the benchmark's client (`auth` → `auth_ok`,
//! `subscribe` → `subscribed`, pings answered) and, for every event POSTed to `/events`, encodes
//! one frame and writes it to each subscribed socket with one `send(2)` each. No topics, no
//! queues, no slow-consumer policy, no token check: the cost of one system call per client and
//! nothing else.
//!
//! Started by the hub suite as `cargo xtask bench floor-ws --port N` (the xtask binary itself).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use anyhow::Context;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::sys::Epoll;
use super::ws::{Frame, json_u64, parse_frame};

/// The largest request head or body this server buffers before it drops the connection.
const MAX_BUFFER: usize = 1 << 20;

const LISTENER: u64 = u64::MAX;

struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `Some(subscribed)` once the connection is a WebSocket.
    ws: Option<bool>,
}

/// An unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn http_reply(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let reply =
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    stream.write_all(reply.as_bytes())
}

/// Runs the server until it is killed.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = match args {
        [flag, p] if flag == "--port" => p.parse().with_context(|| format!("--port {p}"))?,
        _ => anyhow::bail!("usage: cargo xtask bench floor-ws --port N"),
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    let mut epoll = Epoll::new(1024)?;
    epoll.add(listener.as_raw_fd(), LISTENER)?;
    let mut peers: HashMap<u64, Peer> = HashMap::new();
    let mut next_id = 0u64;
    let mut seq = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    println!("floor-ws listening on 127.0.0.1:{port}");
    loop {
        for token in epoll.wait(-1)? {
            if token == LISTENER {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    next_id += 1;
                    epoll.add(stream.as_raw_fd(), next_id)?;
                    peers.insert(next_id, Peer { stream, buf: Vec::new(), ws: None });
                }
                continue;
            }
            let Some(peer) = peers.get_mut(&token) else { continue };
            let mut closed = false;
            loop {
                match peer.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => {
                        peer.buf.extend_from_slice(&chunk[..k]);
                        if k < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let mut broadcast = Vec::new();
            if !closed {
                closed = handle(peer, &mut broadcast, &mut seq).is_err() || peer.buf.len() > MAX_BUFFER;
            }
            if closed {
                epoll.remove(peer.stream.as_raw_fd());
                peers.remove(&token);
            }
            for frame in broadcast {
                for p in peers.values() {
                    if p.ws == Some(true) {
                        // One send(2) per client: a full socket buffer just loses this frame.
                        let _ = (&p.stream).write(&frame);
                    }
                }
            }
        }
    }
}

/// Handles what is buffered for one peer; frames to broadcast are appended to `broadcast`.
fn handle(peer: &mut Peer, broadcast: &mut Vec<Vec<u8>>, seq: &mut u64) -> io::Result<()> {
    loop {
        if peer.ws.is_some() {
            let Some(frame) = parse_frame(&mut peer.buf)? else { return Ok(()) };
            match frame {
                Frame::Text(t) => {
                    let id = json_u64(&t, "id").unwrap_or(0);
                    if t.contains(r#""type":"auth""#) {
                        let msg =
                            format!(r#"{{"id":{id},"type":"auth_ok","client_id":"floor","ping_interval_ms":25000}}"#);
                        peer.stream.write_all(&server_frame(0x1, msg.as_bytes()))?;
                    } else if t.contains(r#""type":"subscribe""#) {
                        peer.ws = Some(true);
                        let msg = format!(r#"{{"id":{id},"type":"subscribed","topics":[]}}"#);
                        peer.stream.write_all(&server_frame(0x1, msg.as_bytes()))?;
                    }
                }
                Frame::Ping(p) => peer.stream.write_all(&server_frame(0xA, &p))?,
                Frame::Close(_) => {
                    let _ = peer.stream.write_all(&server_frame(0x8, &1000u16.to_be_bytes()));
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"));
                }
                Frame::Other => {}
            }
            continue;
        }
        let Some(end) = peer.buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(()) };
        let head = String::from_utf8_lossy(&peer.buf[..end]).into_owned();
        let length: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if peer.buf.len() < end + 4 + length {
            return Ok(());
        }
        let body: Vec<u8> = peer.buf.drain(..end + 4 + length).skip(end + 4).collect();
        let line = head.lines().next().unwrap_or("");
        if line.starts_with("GET /ws ") {
            let key = header(&head, "sec-websocket-key").unwrap_or("");
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                accept_key(key)
            );
            peer.stream.write_all(reply.as_bytes())?;
            peer.ws = Some(false);
        } else if line.starts_with("POST /events ") {
            // The benchmark posts a JSON array; each element becomes one event frame.
            let text = String::from_utf8_lossy(&body);
            let items = text.trim().trim_start_matches('[').trim_end_matches(']');
            *seq += 1;
            let msg = format!(r#"{{"seq":{},"event":{items}}}"#, *seq);
            broadcast.push(server_frame(0x1, msg.as_bytes()));
            http_reply(&mut peer.stream, "200 OK", r#"{"success":true,"data":{"accepted":1}}"#)?;
        } else if line.starts_with("GET /health ") {
            http_reply(&mut peer.stream, "200 OK", r#"{"status":"ok"}"#)?;
        } else {
            http_reply(&mut peer.stream, "404 Not Found", r#"{"success":false}"#)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_6455_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn server_frames_are_unmasked_with_the_right_length() {
        let f = server_frame(0x1, b"hi");
        assert_eq!(f, vec![0x81, 2, b'h', b'i']);
        let big = server_frame(0x1, &[b'x'; 300]);
        assert_eq!(&big[..4], &[0x81, 126, 1, 44]);
        assert_eq!(big.len(), 304);
    }
}
