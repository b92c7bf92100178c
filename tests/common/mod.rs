//! Test harness for the black-box tests: runs the real `orchestrator` binary on a free port
//! with a temporary data directory, and talks to it over real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, as an absolute path of the platform (a Windows build cross-compiled on
/// Linux knows it as `/work/…`; Windows programs need the drive-qualified form).
pub fn exe() -> &'static str {
    static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = env!("CARGO_BIN_EXE_orchestrator");
        std::path::absolute(exe).map(|p| p.display().to_string()).unwrap_or_else(|_| exe.to_owned())
    })
}

#[path = "../support/ports.rs"]
mod ports;

/// A port no other caller in this process has been given (see `tests/support/ports.rs`).
pub fn free_port() -> u16 {
    ports::unique_port().unwrap()
}

/// A listener on such a port, for a test's own server.
pub fn unique_listener() -> std::net::TcpListener {
    ports::unique_listener().unwrap()
}

/// An HTTP client whose idle pooled connections are dropped after 2 s, before the server's 5 s
/// keep-alive closes them: reusing one the server has just closed fails the request.
pub fn http_client() -> awc::Client {
    awc::Client::builder().connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2))).finish()
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ports for the four simulated services plus a config using them.
pub struct Services {
    pub ports: [u16; 4],
}

impl Services {
    pub fn new() -> Self {
        Services { ports: [free_port(), free_port(), free_port(), free_port()] }
    }

    /// `[[service]]` blocks for the four simulated roles; `extra` is appended to each block,
    /// `flags(role)` adds simulator flags.
    pub fn toml(&self, autostart: bool, extra: &str, flags: impl Fn(&str) -> Vec<String>) -> String {
        self.toml_by_role(autostart, |role| (flags(role), extra.to_owned()))
    }

    /// Like [`Services::toml`], with simulator flags and extra TOML lines chosen per role.
    pub fn toml_by_role(&self, autostart: bool, per_role: impl Fn(&str) -> (Vec<String>, String)) -> String {
        let roles = [
            ("data", "Data Service", "[\"ticks\", \"ohlc\", \"symbols\"]", "[\"symbols\", \"timeframes\"]"),
            ("mt5", "MT5 Service", "[\"account\", \"positions\", \"orders\"]", "[\"symbols\", \"risk.max_volume\"]"),
            ("strategy", "Strategy Service", "[\"strategies\", \"signals\"]", "[\"symbols\", \"timeframes\"]"),
            ("pattern", "Pattern Service", "[\"patterns\"]", "[\"symbols\"]"),
        ];
        let mut out = String::new();
        for (i, (role, display, routes, keys)) in roles.iter().enumerate() {
            let port = self.ports[i];
            let (flags, extra) = per_role(role);
            let mut cmd = vec![exe().to_owned(), "sim".into(), (*role).into(), "--port".into(), port.to_string()];
            cmd.extend(flags);
            let cmd = cmd.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
            out.push_str(&format!(
                "[[service]]\nname = \"{role}\"\ndisplay_name = \"{display}\"\nroutes = {routes}\nport = {port}\n\
                 command = [{cmd}]\nevents_path = \"/events\"\nsettings_path = \"/settings\"\nsettings_keys = {keys}\n\
                 autostart = {autostart}\n{extra}\n"
            ));
        }
        out
    }
}

/// A running orchestrator.
pub struct TestApp {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub token: String,
    pub child: Option<Child>,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl TestApp {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Starts the binary with this config text (services usually with `autostart = false`).
    pub async fn spawn(config: &str) -> TestApp {
        Self::spawn_with_env(config, &[]).await
    }

    pub async fn spawn_with_env(config: &str, env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("orchestrator.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut app = TestApp {
            port: 0,
            dir,
            token: String::new(),
            child: None,
            config: config_path,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        app.start().await;
        app
    }

    /// (Re)starts the process on a new port with the same data dir and config.
    pub async fn start(&mut self) {
        self.port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("orchestrator.log"))
            .unwrap();
        let child = Command::new(exe())
            .arg("--config")
            .arg(&self.config)
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "info,access=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url("/api/health");
        let client = http_client();
        eventually("the orchestrator to answer /api/health", Duration::from_secs(20), || {
            let req = client.get(&url).timeout(Duration::from_millis(500));
            async move { req.send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        // A cluster edge has no data dir of its own: its token is the primary's (set by the test).
        if let Ok(token) = std::fs::read_to_string(self.data_dir().join("admin.token")) {
            self.token = token.trim().to_owned();
        }
    }

    /// The orchestrator's own log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orchestrator.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal and waits for the process to exit; returns its exit status.
    #[cfg(unix)]
    pub fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("orchestrator did not exit within {timeout:?} after {signal}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Creates a token with the CLI against this app's data dir.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = Command::new(exe())
            .args(["--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["token", "create", name, "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn client(&self) -> Api {
        Api { base: format!("http://127.0.0.1:{}", self.port), token: Some(self.token.clone()), client: http_client() }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            ask_to_stop(&mut child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks the orchestrator to shut down: SIGTERM.
#[cfg(unix)]
fn ask_to_stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
}

/// Asks the orchestrator to shut down: a test cannot raise a console event in another console,
/// so it is terminated (its services' job objects end with it).
#[cfg(windows)]
fn ask_to_stop(child: &mut Child) {
    let _ = child.kill();
}

/// A small HTTP client for the API.
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    pub client: awc::Client,
}

/// A response: status, headers we look at, and the JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Asserts the envelope shape and returns `data`.
    pub fn data(&self) -> &Value {
        assert_envelope(&self.body);
        assert_eq!(self.body["success"], true, "{:?}", self.body);
        &self.body["data"]
    }

    /// Asserts a failed envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_envelope(&self.body);
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["success"], false, "{:?}", self.body);
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{:?}", self.body);
    }
}

pub fn assert_envelope(body: &Value) {
    let obj = body.as_object().unwrap_or_else(|| panic!("not an object: {body}"));
    for key in ["success", "data", "error", "code", "request_id"] {
        assert!(obj.contains_key(key), "envelope lacks {key}: {body}");
    }
    assert_eq!(obj.len(), 5, "envelope has extra fields: {body}");
}

impl Api {
    pub fn anonymous(&self) -> Api {
        Api { base: self.base.clone(), token: None, client: http_client() }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api { base: self.base.clone(), token: Some(token.to_owned()), client: http_client() }
    }

    pub fn request(&self, method: &str, path: &str) -> awc::ClientRequest {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{}", self.base, path)).timeout(Duration::from_secs(30));
        if let Some(t) = &self.token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        req
    }

    pub async fn send(&self, req: awc::ClientRequest, body: Option<Vec<u8>>) -> Reply {
        let mut res = match body {
            Some(b) => req.send_body(b).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.body().limit(64 * 1024 * 1024).await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, body, headers }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request("GET", path), None).await
    }

    pub async fn json(&self, method: &str, path: &str, body: &Value) -> Reply {
        let req = self.request(method, path).insert_header(("Content-Type", "application/json"));
        self.send(req, Some(serde_json::to_vec(body).unwrap())).await
    }

    pub async fn raw(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let req = self.request(method, path).insert_header(("Content-Type", "application/json"));
        self.send(req, Some(body.to_vec())).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.send(self.request("POST", path), None).await
    }
}

/// Processes whose command line contains `needle` (from /proc), excluding zombies.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

/// Whether a process is a zombie.
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Zombie children of a process.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// One simulated service of `role` named like the role, on `port`, with simulator flags and
/// extra TOML lines.
pub fn one_service(role: &str, port: u16, flags: &[&str], extra: &str) -> String {
    let mut cmd = vec![exe().to_owned(), "sim".into(), role.into(), "--port".into(), port.to_string()];
    cmd.extend(flags.iter().map(|f| (*f).to_owned()));
    let cmd = cmd.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[[service]]\nname = \"{role}\"\ndisplay_name = \"{role} service\"\nroutes = [\"{role}-res\"]\nport = {port}\n\
         command = [{cmd}]\n{extra}\n"
    )
}

/// Timers shrunk so supervision tests run in seconds.
pub const FAST: &[(&str, &str)] = &[
    ("ORCHESTRATOR_HEALTH_INTERVAL_MS", "200"),
    ("ORCHESTRATOR_HEALTH_TIMEOUT_MS", "300"),
    ("ORCHESTRATOR_HEALTH_FAILURE_THRESHOLD", "2"),
    ("ORCHESTRATOR_HEALTH_STARTUP_TIMEOUT_MS", "10000"),
    ("ORCHESTRATOR_BACKOFF_INITIAL_MS", "50"),
    ("ORCHESTRATOR_BACKOFF_MAX_MS", "400"),
    ("ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS", "1500"),
];

impl Api {
    /// Waits until the service's entry satisfies `pred`; returns it.
    pub async fn wait_service(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/services/{name}");
        let mut last = Value::Null;
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(&path).await;
            if r.status == 200 {
                last = r.body["data"].clone();
                if pred(&last) {
                    return last;
                }
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {name} {what}; last: {last}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Value {
        self.wait_service(name, status, timeout, |e| e["status"] == status).await
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Sends raw bytes as one HTTP/1.1 request (for paths an HTTP client would normalise) and
/// returns the status and the body (JSON when it parses, else a string).
pub fn raw_http(port: u16, request: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())))
}

/// `GET {target}` over a raw socket with a bearer token, closing the connection after it.
pub fn raw_get(port: u16, target: &str, token: &str) -> (u16, Value) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    raw_http(port, request.as_bytes())
}

impl Api {
    /// The captured output lines of a service (the whole ring).
    pub async fn service_log(&self, name: &str) -> Vec<String> {
        let r = self.get(&format!("/api/services/{name}/logs?tail=10000")).await;
        r.data()["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap_or("").to_owned()).collect()
    }
}

/// Resident set size of a process in KiB (from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}
