//! The gateway embedded as a library: `Application::build` binds its own listener on port 0,
//! and the API answers over a real socket with a temporary data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_http::Application;
use gateway_http::Config;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::from_toml(
        "[gateway]\nbind = \"127.0.0.1:0\"\n\n[[service]]\nname = \"data\"\nport = 1\nroutes = [\"ticks\"]\nautostart = false\ncommand = [\"/bin/false\"]\n",
    )
    .unwrap();
    config.gateway.data_dir = dir.to_path_buf();
    config
}

#[actix_rt::test]
async fn builds_on_port_zero_and_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = Application::build(config(dir.path())).await.unwrap();
    let port = app.port();
    assert_ne!(port, 0);
    let token = app.admin_token().expect("first start creates the admin token").to_owned();
    let supervisor = app.supervisor().expect("a single node supervises").clone();
    actix_rt::spawn(app.run_until_stopped());

    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let mut res = client.get(format!("http://127.0.0.1:{port}/api/health")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"]["services"][0]["status"], "stopped");

    let res = client.get(format!("http://127.0.0.1:{port}/api/services")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let mut res = client
        .get(format!("http://127.0.0.1:{port}/api/services/data"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"]["name"], "data");
    // A service that is down answers 503 at once, without a connection attempt.
    let mut res = client
        .get(format!("http://127.0.0.1:{port}/api/ticks/latest?symbol=EURUSD"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "service_unavailable");
    supervisor.shutdown().await;
}
