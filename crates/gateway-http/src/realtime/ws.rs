//! `GET /ws`: moves frames between an actix-ws socket and the hub's per-connection state
//! machine. No protocol logic lives here.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use hub::{Action, Connection, close_code};

use crate::context::RequestCtx;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest inbound frame accepted by the codec; the connection itself enforces 64 KiB per
/// message and closes with 1009 beyond it.
const MAX_FRAME: usize = 64 * 1024 + 1024;

pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    ctx: RequestCtx,
) -> Result<HttpResponse, ApiError> {
    let (response, mut session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        log::debug!("websocket handshake refused: {e}");
        ApiError::Problem(gateway_core::Problem::invalid("Upgrade", gateway_core::Reason::Malformed))
    })?;
    let peer = req.peer_addr().map(|a| a.to_string());
    let mut conn = Connection::new(state.hub.clone(), state.authenticator.clone(), peer.clone()).with_lang(ctx.lang);
    let mut stream = stream.max_frame_size(MAX_FRAME);
    actix_rt::spawn(async move {
        let close: Option<CloseReason> = loop {
            let actions = tokio::select! {
                msg = stream.recv() => match msg {
                    Some(Ok(Message::Text(text))) => conn.on_text(&text).await,
                    Some(Ok(Message::Binary(bin))) => conn.on_binary(bin.len()),
                    Some(Ok(Message::Ping(p))) => {
                        conn.on_activity();
                        if session.pong(&p).await.is_err() {
                            break None;
                        }
                        Vec::new()
                    }
                    Some(Ok(Message::Pong(_))) => {
                        conn.on_activity();
                        Vec::new()
                    }
                    Some(Ok(Message::Continuation(_))) => conn.on_binary(MAX_FRAME + 1),
                    Some(Ok(Message::Nop)) => Vec::new(),
                    Some(Ok(Message::Close(reason))) => {
                        log::info!("websocket {} closed by the client: {:?}", peer.as_deref().unwrap_or("-"), reason);
                        break None;
                    }
                    Some(Err(e)) => {
                        log::info!("websocket {} protocol error: {e}", peer.as_deref().unwrap_or("-"));
                        break Some(CloseReason {
                            code: CloseCode::Other(close_code::MESSAGE_TOO_BIG),
                            description: Some("message too big or malformed frame".into()),
                        });
                    }
                    None => break None,
                },
                action = conn.next_action() => vec![action],
            };
            let mut closing = None;
            for action in actions {
                match action {
                    Action::Send(frame) => {
                        if session.text(frame.into_text()).await.is_err() {
                            closing = Some(None);
                            break;
                        }
                    }
                    Action::Ping => {
                        if session.ping(b"").await.is_err() {
                            closing = Some(None);
                            break;
                        }
                    }
                    Action::Close { code, reason } => {
                        closing = Some(Some(CloseReason { code: CloseCode::Other(code), description: Some(reason) }));
                        break;
                    }
                }
            }
            if let Some(reason) = closing {
                break reason;
            }
        };
        // Dropping `conn` unregisters the client from the hub.
        drop(conn);
        if let Some(reason) = close {
            let _ = session.close(Some(reason)).await;
        } else {
            let _ = session.close(None).await;
        }
    });
    Ok(response)
}
