//! Helpers for the in-process tests: start a role on port 0, call it with awc, read its events.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use awc::error::WsProtocolError;
use awc::ws::Frame;
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;
use simulator::{Role, SimArgs, SimServer, serve};

/// Ports outside the ephemeral range, never handed out twice in this process (see the file).
#[path = "../../../../tests/support/ports.rs"]
mod ports;

/// Starts `role` on a free port with quiet access logs, after `tweak` adjusts its arguments. The
/// port comes from the shared allocator, so a test that checks the port is released after a
/// shutdown cannot see another test's server bound to it meanwhile.
pub async fn start(role: Role, tweak: impl FnOnce(&mut SimArgs)) -> SimServer {
    let mut args = SimArgs::new(role);
    args.quiet = true;
    tweak(&mut args);
    let listener: TcpListener = ports::unique_listener().unwrap();
    serve(args, listener).await.unwrap()
}

pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(20)).finish()
}

async fn finish(res: Result<awc::ClientResponse, awc::error::SendRequestError>) -> (u16, Value) {
    let mut res = res.unwrap();
    let status = res.status().as_u16();
    let body = res.body().limit(256 << 20).await.unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    };
    (status, value)
}

pub async fn get(srv: &SimServer, path: &str) -> (u16, Value) {
    finish(client().get(format!("{}{path}", srv.url())).send().await).await
}

pub async fn delete(srv: &SimServer, path: &str) -> (u16, Value) {
    finish(client().delete(format!("{}{path}", srv.url())).send().await).await
}

pub async fn post(srv: &SimServer, path: &str, body: &Value) -> (u16, Value) {
    finish(client().post(format!("{}{path}", srv.url())).send_json(body).await).await
}

pub async fn put(srv: &SimServer, path: &str, body: &Value) -> (u16, Value) {
    finish(client().put(format!("{}{path}", srv.url())).send_json(body).await).await
}

/// POSTs a raw body as `application/json`.
pub async fn post_raw(srv: &SimServer, path: &str, body: &'static str) -> (u16, Value) {
    finish(
        client()
            .post(format!("{}{path}", srv.url()))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await,
    )
    .await
}

/// Asserts a JSON error answer with the given status.
pub fn assert_error(got: &(u16, Value), status: u16, context: &str) {
    assert_eq!(got.0, status, "{context}: {:?}", got.1);
    assert!(got.1["error"].as_str().is_some_and(|e| !e.is_empty()), "{context}: {:?}", got.1);
}

/// Connects to `/events`.
pub async fn events(srv: &SimServer) -> impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin + use<> {
    let (res, ws) = client().ws(format!("{}/events", srv.url())).connect().await.unwrap();
    assert_eq!(res.status().as_u16(), 101);
    ws
}

/// The next event frame, parsed; panics after `within`.
pub async fn next_event(
    ws: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin),
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = actix_rt::time::timeout(left, ws.next()).await.expect("no event in time").expect("events closed");
        match frame.unwrap() {
            Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
