//! `GET /ws`: moves frames between the socket and the hub's per-connection state machine
//! ([`hub::Connection`]), which owns the protocol, the timers and the limits. What is left here is
//! WebSocket framing: close codes for broken frames and the closing handshake.
//!
//! The connection's loop *is* the response body: the HTTP dispatcher polls it whenever the socket
//! can take more, it waits for the hub's next frame or the client's next message, and yields the
//! encoded frames. No task of its own and no channel between it and the socket: one wake-up per
//! outgoing frame instead of two. A peer that stops reading stops the polling: its frames queue in
//! the hub (ticks conflate, anything else overflows into 4008) and the kernel gives the connection
//! up after the listener's `TCP_USER_TIMEOUT` (the hub's idle timeout, set in `startup`).

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use actix_http::ws::{OpCode, Parser};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::error::PayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use bytes::{Bytes, BytesMut};
use hub::{Action, Connection, close_code};

use crate::edge::context::RequestCtx;
use crate::edge::error::ApiError;
use crate::state::AppState;

/// `GET /ws`: the handshake, and the response whose body is the connection.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let refused = |e: &dyn std::fmt::Display| {
        log::debug!("websocket handshake refused: {e}");
        ApiError::Problem(gateway_core::Problem::invalid("Upgrade", gateway_core::Reason::Malformed))
    };
    let mut handshake = actix_http::ws::handshake(req.head()).map_err(|e| refused(&e))?;
    // actix-ws decodes the client's frames; its own response and session are not used.
    let (_, _, stream) = actix_ws::handle(&req, body).map_err(|e| refused(&e))?;
    let peer = req.peer_addr().map_or_else(|| "-".to_owned(), |a| a.to_string());
    let conn = Connection::new(state.hub.clone(), state.authenticator.clone(), Some(peer.clone())).with_lang(ctx.lang);
    // One frame, or one fragmented message, may be as large as the protocol allows; anything
    // larger fails in the codec (1009) before it is buffered whole.
    let max = state.hub.config().max_message_bytes;
    let stream = stream.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    let close_grace = state.config.gateway.timers.close_grace;
    let socket = Socket { phase: Phase::Open(Box::new(conn)), stream, peer, close_grace };
    let frames = futures_util::stream::unfold(socket, |mut socket| async move {
        let chunk = socket.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), socket))
    });
    let response = handshake.message_body(BodyStream::new(frames).boxed()).map_err(|e| refused(&e))?;
    Ok(response.into())
}

/// Where a connection is.
enum Phase {
    /// Exchanging messages.
    Open(Box<Connection>),
    /// Our close frame is out: waiting (briefly) for the client's.
    Closing,
    /// Nothing more to send: the body ends, and the connection with it.
    Done,
}

/// How the open phase ended.
enum Ending {
    /// We close with this code (protocol decision or a broken frame).
    Close(CloseReason),
    /// The client sent a close frame: echo its code.
    ByClient(Option<CloseReason>),
    /// The connection is gone: no close frame can be delivered.
    Gone,
}

struct Socket {
    phase: Phase,
    stream: AggregatedMessageStream,
    peer: String,
    /// After our close frame, how long we keep reading for the client's close frame before the
    /// TCP connection is dropped (RFC 6455 §7.1.1; `gateway.timers.close_grace_ms`).
    close_grace: Duration,
}

impl Socket {
    /// The next bytes for the socket (one or more encoded frames); `None` ends the connection.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Closing => {
                    let answered = async {
                        while let Some(Ok(msg)) = self.stream.recv().await {
                            if matches!(msg, AggregatedMessage::Close(_)) {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(self.close_grace, answered).await;
                    return None;
                }
                Phase::Open(mut conn) => {
                    let mut out = BytesMut::new();
                    match self.exchange(&mut conn, &mut out).await {
                        None => self.phase = Phase::Open(conn),
                        Some(ending) => {
                            // Unregister from the hub before the closing handshake.
                            drop(conn);
                            match ending {
                                Ending::Gone => {}
                                Ending::ByClient(reason) => {
                                    log::info!("websocket {} closed by the client: {reason:?}", self.peer);
                                    let echo = reason.map(|r| CloseReason { code: r.code, description: None });
                                    Parser::write_close(&mut out, echo, false);
                                }
                                Ending::Close(reason) => {
                                    Parser::write_close(&mut out, Some(reason), false);
                                    self.phase = Phase::Closing;
                                }
                            }
                        }
                    }
                    if !out.is_empty() {
                        return Some(out.freeze());
                    }
                }
            }
        }
    }

    /// Waits for the next thing to send and encodes it into `out`; `Some` when the open phase
    /// is over (anything encoded before the ending is still sent).
    async fn exchange(&mut self, conn: &mut Connection, out: &mut BytesMut) -> Option<Ending> {
        let actions = tokio::select! {
            msg = self.stream.recv() => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => conn.on_text(&text).await,
                Some(Ok(AggregatedMessage::Binary(bin))) => conn.on_binary(bin.len()),
                Some(Ok(AggregatedMessage::Ping(payload))) => {
                    conn.on_activity();
                    Parser::write_message(out, &payload, OpCode::Pong, true, false);
                    Vec::new()
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {
                    conn.on_activity();
                    Vec::new()
                }
                Some(Ok(AggregatedMessage::Close(reason))) => return Some(Ending::ByClient(reason)),
                Some(Err(e)) => return Some(broken_frame(&e, &self.peer)),
                None => return Some(Ending::Gone),
            },
            action = conn.next_action() => vec![action],
        };
        for action in actions {
            match action {
                Action::Send(frame) => {
                    Parser::write_message(out, frame.into_text().as_bytes(), OpCode::Text, true, false)
                }
                Action::Ping => Parser::write_message(out, b"", OpCode::Ping, true, false),
                Action::Close { code, reason } => {
                    return Some(Ending::Close(CloseReason {
                        code: CloseCode::Other(code),
                        description: Some(reason),
                    }));
                }
            }
        }
        None
    }
}

/// The close for a frame the codec could not accept.
fn broken_frame(e: &ProtocolError, peer: &str) -> Ending {
    let (code, description) = match e {
        ProtocolError::Overflow => (close_code::MESSAGE_TOO_BIG, "message too big"),
        ProtocolError::Io(io) if not_utf8(io) => (close_code::INVALID_PAYLOAD, "text is not valid UTF-8"),
        // Other invalid data: reserved bits set on a frame.
        ProtocolError::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
            (close_code::PROTOCOL_ERROR, "protocol error")
        }
        // The frame guard (`crate::edge::wsguard`) stops a frame that announces more than it allows.
        ProtocolError::Io(io)
            if io
                .get_ref()
                .and_then(|e| e.downcast_ref::<PayloadError>())
                .is_some_and(|p| matches!(p, PayloadError::Overflow)) =>
        {
            (close_code::MESSAGE_TOO_BIG, "message too big")
        }
        // actix-ws reports an oversized fragmented message as an I/O error of its own.
        ProtocolError::Io(io) if io.to_string().contains("continuation size") => {
            (close_code::MESSAGE_TOO_BIG, "message too big")
        }
        ProtocolError::Io(io) => {
            log::info!("websocket {peer} connection failed: {io}");
            return Ending::Gone;
        }
        _ => (close_code::PROTOCOL_ERROR, "protocol error"),
    };
    log::info!("websocket {peer}: {e}; closing with {code}");
    Ending::Close(CloseReason { code: CloseCode::Other(code), description: Some(description.to_owned()) })
}

/// Whether an I/O error of the codec is a text message that is not UTF-8 (a `Utf8Error` for one
/// frame, its text for a reassembled fragmented message).
fn not_utf8(io: &io::Error) -> bool {
    io.kind() == io::ErrorKind::InvalidData
        && io
            .get_ref()
            .is_some_and(|e| e.is::<std::str::Utf8Error>() || e.to_string().to_ascii_lowercase().contains("utf-8"))
}
