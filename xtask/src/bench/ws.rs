//! A minimal WebSocket client (RFC 6455) on std TCP for the hub benchmark: the opening
//! handshake, masked text/pong/close frames out, unfragmented frames in. No extensions.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An inbound frame.
#[derive(Debug)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A ping with its payload.
    Ping(Vec<u8>),
    /// A close with its code (0 when none).
    Close(u16),
    /// Anything else (binary, pong, continuation).
    Other,
}

/// One client connection.
pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    mask_state: u32,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl WsClient {
    /// Connects and performs the opening handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str, timeout: Duration, seed: u32) -> io::Result<WsClient> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes())?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(bad(&format!("handshake refused: {}", head.lines().next().unwrap_or(""))));
        }
        buf.drain(..end + 4);
        Ok(WsClient { stream, buf, mask_state: seed | 1 })
    }

    /// The socket and whatever was read past the last frame.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: any key will do, the server only unmasks.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_le_bytes()
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = self.next_mask();
        self.stream.write_all(&encode_frame(opcode, payload, mask))
    }

    /// Sends a text frame.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(0x1, text.as_bytes())
    }

    /// Answers a ping.
    pub fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(0xA, payload)
    }

    /// Reads the next frame (blocking up to the read timeout). `Ok(None)` at end of stream.
    pub fn recv(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = parse_frame(&mut self.buf)? {
                return Ok(Some(f));
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until a text frame containing `needle` arrives (answering pings).
    pub fn expect_text(&mut self, needle: &str) -> io::Result<String> {
        loop {
            match self.recv()? {
                Some(Frame::Text(t)) if t.contains(needle) => return Ok(t),
                Some(Frame::Text(_)) | Some(Frame::Other) => {}
                Some(Frame::Ping(p)) => self.send_pong(&p)?,
                Some(Frame::Close(code)) => return Err(bad(&format!("closed with {code} while waiting for {needle}"))),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("closed while waiting for {needle}"),
                    ));
                }
            }
        }
    }
}

/// A masked client frame.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Takes one complete frame off the front of `buf`, if there is one.
pub fn parse_frame(buf: &mut Vec<u8>) -> io::Result<Option<Frame>> {
    let b = &*buf;
    if b.len() < 2 {
        return Ok(None);
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[2..10]);
            (usize::try_from(u64::from_be_bytes(l)).map_err(|_| bad("frame too large"))?, 10)
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    let mut mask = None;
    if masked {
        if b.len() < at + 4 {
            return Ok(None);
        }
        mask = Some([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        at += 4;
    }
    if b.len() < at + len {
        return Ok(None);
    }
    let mut payload: Vec<u8> = buf.drain(..at + len).skip(at).collect();
    if let Some(m) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= m[i % 4];
        }
    }
    Ok(Some(match opcode {
        0x1 => Frame::Text(String::from_utf8(payload).map_err(|_| bad("text frame is not UTF-8"))?),
        0x8 => Frame::Close(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 0 }),
        0x9 => Frame::Ping(payload),
        _ => Frame::Other,
    }))
}

/// The unsigned integer after `"key":` in a JSON text (no full parse on the hot path).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let digits: String = text[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers() {
        let t = r#"{"type":"tick","seq":12,"data":{"bench_i":7,"sent_us": 1700000000123456}}"#;
        assert_eq!(json_u64(t, "sent_us"), Some(1_700_000_000_123_456));
        assert_eq!(json_u64(t, "bench_i"), Some(7));
        assert_eq!(json_u64(t, "seq"), Some(12));
        assert_eq!(json_u64(t, "nope"), None);
    }
}
