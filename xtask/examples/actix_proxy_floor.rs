//! The framework floor of `cargo xtask bench gateway`: a reverse proxy made of actix-web and awc
//! and nothing else (no auth, validation, envelope, metrics or access log), one worker, one pooled
//! awc client. Its CPU per request is the least the orchestrator's stack can spend on a forwarded
//! request; the difference to the orchestrator is what the gateway's own work costs.
//!
//! Built and started by the gateway suite:
//! `cargo build --release -p xtask --example actix_proxy_floor`, then
//! `actix_proxy_floor PORT UPSTREAM_PORT`.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

thread_local! {
    static CLIENT: awc::Client = awc::Client::builder().disable_timeout().no_default_headers().finish();
}

async fn forward(req: HttpRequest, body: web::Bytes, upstream: web::Data<String>) -> HttpResponse {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.get_ref());
    let client = CLIENT.with(Clone::clone);
    let sent = client.request(req.method().clone(), url).send_body(body).await;
    match sent {
        Ok(mut res) => match res.body().limit(1 << 20).await {
            Ok(bytes) => HttpResponse::build(res.status()).content_type("application/json").body(bytes),
            Err(_) => HttpResponse::BadGateway().finish(),
        },
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(up)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: actix_proxy_floor PORT UPSTREAM_PORT");
        std::process::exit(2);
    };
    let port: u16 = port.parse().map_err(std::io::Error::other)?;
    let upstream = web::Data::new(format!("http://127.0.0.1:{up}"));
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || App::new().app_data(upstream.clone()).default_service(web::to(forward)))
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
            .await
    })
}
