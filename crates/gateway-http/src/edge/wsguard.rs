//! A guard on the raw bytes of an upgraded WebSocket: it reads each frame header as the bytes
//! go by and fails the stream as soon as a frame *declares* a payload longer than the limit.
//!
//! Why: `actix-ws` buffers inbound bytes until a whole frame has arrived and only then compares
//! its length with `max_frame_size`, so a client (authenticated or not: the upgrade is public)
//! that declares a huge frame and keeps sending made the gateway buffer without bound (300 MiB
//! sent → +200 MB RSS). With this guard the stream fails right after such a header and the
//! connection is dropped, so at most [`MAX_WS_FRAME`] bytes of one frame are ever buffered. The
//! limit is well above the hub's 64 KiB message limit, so frames between the two still get the
//! adapter's own 1009 close.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Largest frame a WebSocket client may even announce.
pub(crate) const MAX_WS_FRAME: usize = 1024 * 1024;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a frame header (`have` bytes so far).
    Header { have: usize },
    /// Skipping this many payload bytes.
    Payload { left: u64 },
    /// A frame was too long; the stream has failed.
    Failed,
}

/// Scans frame headers; pure, so it is tested on its own.
#[derive(Debug, Clone)]
pub(crate) struct FrameScanner {
    max_payload: u64,
    state: State,
    header: [u8; MAX_HEADER],
}

/// The header length announced by its first two bytes.
fn header_len(b0_b1: [u8; 2]) -> usize {
    let masked = b0_b1[1] & 0x80 != 0;
    let ext = match b0_b1[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if masked { 4 } else { 0 }
}

fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            u64::from_be_bytes([header[2], header[3], header[4], header[5], header[6], header[7], header[8], header[9]])
        }
        n => u64::from(n),
    }
}

impl FrameScanner {
    /// A scanner that fails on any frame declaring more than `max_payload` bytes.
    pub(crate) fn new(max_payload: usize) -> FrameScanner {
        FrameScanner { max_payload: max_payload as u64, state: State::Header { have: 0 }, header: [0; MAX_HEADER] }
    }

    /// Feeds the next bytes; `Err(declared)` when a frame declares too long a payload.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), u64> {
        while !bytes.is_empty() {
            match self.state {
                State::Failed => return Err(0),
                State::Payload { left } => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[usize::try_from(n).unwrap_or(bytes.len())..];
                    self.state = if n == left { State::Header { have: 0 } } else { State::Payload { left: left - n } };
                }
                State::Header { mut have } => {
                    let want = if have < 2 { 2 } else { header_len([self.header[0], self.header[1]]) };
                    let n = (want - have).min(bytes.len());
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    have += n;
                    bytes = &bytes[n..];
                    if have < 2 || have < header_len([self.header[0], self.header[1]]) {
                        self.state = State::Header { have };
                        continue;
                    }
                    let declared = payload_len(&self.header[..have]);
                    if declared > self.max_payload {
                        self.state = State::Failed;
                        return Err(declared);
                    }
                    self.state =
                        if declared == 0 { State::Header { have: 0 } } else { State::Payload { left: declared } };
                }
            }
        }
        Ok(())
    }
}

/// The inbound payload of a WebSocket, failing with [`PayloadError::Overflow`] on an oversized
/// frame header.
pub(crate) struct FrameGuard<S> {
    inner: S,
    scanner: FrameScanner,
}

impl<S> FrameGuard<S> {
    /// Guards `inner`, allowing frames of at most `max_payload` bytes.
    pub(crate) fn new(inner: S, max_payload: usize) -> FrameGuard<S> {
        FrameGuard { inner, scanner: FrameScanner::new(max_payload) }
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.scanner.state == State::Failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => match this.scanner.feed(&bytes) {
                Ok(()) => Poll::Ready(Some(Ok(bytes))),
                Err(declared) => {
                    log::info!(
                        "websocket frame declares {declared} bytes (at most {}): closing",
                        this.scanner.max_payload
                    );
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u64, masked: bool) -> Vec<u8> {
        let mut out = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        if len < 126 {
            out.push(m | len as u8);
        } else if len <= u64::from(u16::MAX) {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend(std::iter::repeat_n(b'x', usize::try_from(len.min(1 << 20)).unwrap_or(0)));
        out
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_split() {
        let mut stream = Vec::new();
        for len in [0, 1, 125, 126, 1000, 65_535, 65_536, 70_000] {
            stream.extend(frame(len, true));
        }
        stream.extend(frame(5, false));
        for chunk in [1, 2, 3, 7, 13, 64, 4096, stream.len()] {
            let mut s = FrameScanner::new(70_000);
            for part in stream.chunks(chunk) {
                assert_eq!(s.feed(part), Ok(()), "chunk size {chunk}");
            }
            assert_eq!(s.state, State::Header { have: 0 }, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_oversized_declaration_fails_at_the_header() {
        for declared in [70_001_u64, 1 << 20, 1 << 40, u64::MAX] {
            for chunk in [1, 3, 14] {
                let mut bytes = frame(3, true);
                let mut big = vec![0x82, 0x80 | 127];
                big.extend_from_slice(&declared.to_be_bytes());
                big.extend_from_slice(&[9, 9, 9, 9]);
                bytes.extend(big);
                let mut s = FrameScanner::new(70_000);
                let result = bytes.chunks(chunk).try_for_each(|part| s.feed(part));
                assert_eq!(result, Err(declared), "{declared} fed by {chunk}");
                assert_eq!(s.feed(b"more"), Err(0), "stays failed");
            }
        }
        let mut s = FrameScanner::new(125);
        assert_eq!(s.feed(&[0x81, 0x80 | 126, 0, 126]), Ok(()), "the mask is still to come");
        assert_eq!(s.feed(&[1, 2, 3, 4]), Err(126));
    }
}
