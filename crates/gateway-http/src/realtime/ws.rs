//! `GET /ws`: moves frames between an actix-ws socket and the hub's per-connection state
//! machine ([`hub::Connection`]), which owns the protocol, the timers and the limits. What is left
//! here is WebSocket framing: close codes for broken frames, the closing handshake, and giving up
//! on a peer whose socket takes nothing.

use std::future::Future;
use std::io;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session};
use hub::{Action, Connection, close_code};

use crate::context::RequestCtx;
use crate::error::ApiError;
use crate::state::AppState;

/// After our close frame, how long we keep reading for the client's close frame before the TCP
/// connection is dropped (RFC 6455 §7.1.1: the server closes TCP after the closing handshake).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// `GET /ws`: upgrades and spawns the connection's task.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        log::debug!("websocket handshake refused: {e}");
        ApiError::Problem(gateway_core::Problem::invalid("Upgrade", gateway_core::Reason::Malformed))
    })?;
    let peer = req.peer_addr().map_or_else(|| "-".to_owned(), |a| a.to_string());
    let conn = Connection::new(state.hub.clone(), state.authenticator.clone(), Some(peer.clone())).with_lang(ctx.lang);
    // One frame, or one fragmented message, may be as large as the protocol allows; anything
    // larger fails in the codec (1009) before it is buffered whole.
    let max = state.hub.config().max_message_bytes;
    let stream = stream.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    actix_rt::spawn(run(conn, session, stream, peer));
    Ok(response)
}

/// How a connection ended.
enum Ending {
    /// We close with this code (protocol decision or a broken frame).
    Close(CloseReason),
    /// The client sent a close frame: echo its code.
    ByClient(Option<CloseReason>),
    /// The connection is gone or the peer takes nothing: no close frame can be delivered.
    Gone,
}

async fn run(mut conn: Connection, mut session: Session, mut stream: AggregatedMessageStream, peer: String) {
    let send_timeout = conn.send_timeout();
    let ending = 'run: loop {
        let actions = tokio::select! {
            msg = stream.recv() => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => conn.on_text(&text).await,
                Some(Ok(AggregatedMessage::Binary(bin))) => conn.on_binary(bin.len()),
                Some(Ok(AggregatedMessage::Ping(payload))) => {
                    conn.on_activity();
                    if !deliver(session.pong(&payload), send_timeout, &peer).await {
                        break 'run Ending::Gone;
                    }
                    Vec::new()
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {
                    conn.on_activity();
                    Vec::new()
                }
                Some(Ok(AggregatedMessage::Close(reason))) => break 'run Ending::ByClient(reason),
                Some(Err(e)) => break 'run broken_frame(&e, &peer),
                None => break 'run Ending::Gone,
            },
            action = conn.next_action() => vec![action],
        };
        for action in actions {
            let delivered = match action {
                Action::Send(frame) => deliver(session.text(frame.into_text()), send_timeout, &peer).await,
                Action::Ping => deliver(session.ping(b""), send_timeout, &peer).await,
                Action::Close { code, reason } => {
                    break 'run Ending::Close(CloseReason { code: CloseCode::Other(code), description: Some(reason) });
                }
            };
            if !delivered {
                break 'run Ending::Gone;
            }
        }
    };
    // Unregister from the hub before the (possibly slow) closing handshake.
    drop(conn);
    match ending {
        Ending::Gone => {}
        Ending::ByClient(reason) => {
            log::info!("websocket {peer} closed by the client: {reason:?}");
            let echo = reason.map(|r| CloseReason { code: r.code, description: None });
            let _ = tokio::time::timeout(send_timeout, session.close(echo)).await;
        }
        Ending::Close(reason) => {
            // Keep a handle so the response body stays open until the client has answered.
            let keep_open = session.clone();
            if deliver(session.close(Some(reason)), send_timeout, &peer).await {
                let answered = async {
                    while let Some(Ok(msg)) = stream.recv().await {
                        if matches!(msg, AggregatedMessage::Close(_)) {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(CLOSE_GRACE, answered).await;
            }
            drop(keep_open);
        }
    }
}

/// Hands one frame to the socket. `false` when the connection is gone, or when the peer has not
/// taken anything for `timeout` (its socket buffers are full): it is then given up.
async fn deliver<E>(send: impl Future<Output = Result<(), E>>, timeout: Duration, peer: &str) -> bool {
    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            log::info!("websocket {peer} has not read anything for {timeout:?}; dropping it");
            false
        }
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
        // The frame guard (`crate::wsguard`) stops a frame that announces more than it allows.
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
