//! Property tests (proptest) of configuration parsing: `Config::from_toml` never panics (on any
//! text, and on valid configurations with random edits), every error points inside the text, and
//! every valid configuration — names, routes, ports, paths, commands, environments, timers,
//! backoff — survives `to_toml` → `from_toml` unchanged (what `orchestrator config print` relies
//! on). `cargo xtask fuzz` runs these with many more cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use gateway_core::ServiceName;
use proptest::prelude::*;
use std::time::Duration;

use gateway_http::config::{Config, ConfigError, GatewayConfig, HealthConfig, HubConfig};
use registry::ServiceConfig;
use registry::config::{BackoffConfig, PortConflictPolicy, RESERVED_RESOURCES, RestartPolicy, STOP_SIGNALS};

/// A TOML integer (i64) that is a sensible duration or count, with the edges.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..100_000, Just(1u64), Just(i64::MAX as u64)]
}

/// Free text: anything a user might type, quotes, backslashes, newlines and all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{1,24}",
        "[a-zA-Z0-9 _./\\\\\"'#=\\[\\]{}\n\t-]{1,24}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty())
    ]
}

fn display_name() -> impl Strategy<Value = String> {
    text().prop_filter("1–64 characters, not blank", |s| !s.trim().is_empty() && s.chars().count() <= 64)
}

fn url_path() -> impl Strategy<Value = String> {
    "/[a-zA-Z0-9_.~-]{0,12}(/[a-zA-Z0-9_~-]{1,8}){0,3}".prop_filter("no ..", |p| !p.contains(".."))
}

fn backoff() -> impl Strategy<Value = BackoffConfig> {
    (0u64..10_000, 0u64..10_000, 1.0f64..10.0, 0u64..100_000, 0.0f64..=1.0, millis()).prop_map(
        |(first_ms, initial_ms, multiplier, extra, jitter, reset_after_ms)| BackoffConfig {
            first: Duration::from_millis(first_ms),
            initial: Duration::from_millis(initial_ms),
            multiplier,
            max: Duration::from_millis(first_ms.max(initial_ms) + extra),
            jitter,
            reset_after: Duration::from_millis(reset_after_ms),
        },
    )
}

/// Everything of one service except its name, port, routes and dependencies.
#[derive(Debug, Clone)]
struct Body {
    display_name: Option<String>,
    host: &'static str,
    command: Option<Vec<String>>,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
    health_path: Option<String>,
    events_path: Option<String>,
    settings_path: Option<String>,
    settings_keys: Vec<String>,
    request_timeout_ms: u64,
    autostart: bool,
    restart: RestartPolicy,
    stop_signal: &'static str,
    stop_timeout_ms: u64,
    backoff: BackoffConfig,
    max_failures: u32,
    failure_window_ms: u64,
    on_port_conflict: PortConflictPolicy,
}

fn body() -> impl Strategy<Value = Body> {
    let command = prop::option::of((text(), prop::collection::vec(prop_oneof![text(), Just(String::new())], 0..4)))
        .prop_map(|c| c.map(|(program, args)| std::iter::once(program).chain(args).collect::<Vec<_>>()));
    (
        (
            prop::option::of(display_name()),
            prop::sample::select(vec!["127.0.0.1", "localhost", "::1", "10.0.0.5", "mt5-box.lan"]),
            command,
            prop::option::of(text()),
            prop::collection::btree_map(
                prop_oneof!["[A-Z_]{1,10}", text()],
                prop_oneof![text(), Just(String::new())],
                0..4,
            ),
            prop::option::of(url_path()),
            prop::option::of(url_path()),
            prop::option::of(url_path()),
            prop::collection::vec(prop_oneof!["[a-z.]{1,20}", text()], 0..4),
        ),
        (
            millis(),
            any::<bool>(),
            prop::sample::select(vec![RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never]),
            prop::sample::select(STOP_SIGNALS.to_vec()),
            prop_oneof![Just(0u64), millis()],
            backoff(),
            1u32..1000,
            millis(),
            prop::sample::select(vec![PortConflictPolicy::Fail, PortConflictPolicy::Adopt]),
        ),
    )
        .prop_map(
            |(
                (display_name, host, command, cwd, env, health_path, events_path, settings_path, settings_keys),
                (
                    request_timeout_ms,
                    autostart,
                    restart,
                    stop_signal,
                    stop_timeout_ms,
                    backoff,
                    max_failures,
                    failure_window_ms,
                    on_port_conflict,
                ),
            )| Body {
                display_name,
                host,
                command,
                cwd,
                env,
                health_path,
                events_path,
                settings_path,
                settings_keys,
                request_timeout_ms,
                autostart,
                restart,
                stop_signal,
                stop_timeout_ms,
                backoff,
                max_failures,
                failure_window_ms,
                on_port_conflict,
            },
        )
}

/// A whole valid configuration: unique names, ports and routes, no reserved route, dependencies
/// only on earlier services (so never a cycle), the gateway on a port no local service uses.
fn config() -> impl Strategy<Value = Config> {
    let names = prop::collection::btree_set("[a-z][a-z0-9_-]{0,31}", 0..6);
    let routes = prop::collection::btree_set("[a-z][a-z0-9_-]{0,20}", 0..16);
    (
        names,
        routes,
        prop::collection::vec(body(), 6),
        prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..3), 6),
        prop::collection::vec(any::<prop::sample::Index>(), 16),
        (
            prop::sample::select(vec!["127.0.0.1", "[::1]", "0.0.0.0"]),
            prop::option::of(text()),
            prop::collection::vec(text(), 0..3),
            1usize..1 << 30,
        ),
        (millis(), millis(), 1u32..100, millis(), millis()),
        (1usize..100_000, millis(), 1usize..100_000, millis(), 1u64..1_000_000, 1u64..1_000_000, millis()),
    )
        .prop_map(|(names, routes, bodies, deps, owners, gateway, health, hub)| {
            let names: Vec<String> = names.into_iter().collect();
            let routes: Vec<String> =
                routes.into_iter().filter(|r| !RESERVED_RESOURCES.contains(&r.as_str())).collect();
            let mut services: Vec<ServiceConfig> = names
                .iter()
                .zip(bodies)
                .enumerate()
                .map(|(i, (name, b))| {
                    let mut s = ServiceConfig::with_defaults(ServiceName::parse(name).unwrap(), 20_000 + i as u16);
                    if let Some(d) = b.display_name {
                        s.display_name = d;
                    }
                    s.host = b.host.to_owned();
                    s.command = b.command;
                    s.cwd = b.cwd.map(PathBuf::from);
                    s.env = b.env;
                    if let Some(p) = b.health_path {
                        s.health_path = p;
                    }
                    s.events_path = b.events_path;
                    s.settings_path = b.settings_path;
                    s.settings_keys = b.settings_keys;
                    s.request_timeout = Duration::from_millis(b.request_timeout_ms);
                    s.autostart = b.autostart;
                    s.restart = b.restart;
                    s.stop_signal = b.stop_signal.to_owned();
                    s.stop_timeout = Duration::from_millis(b.stop_timeout_ms);
                    s.backoff = b.backoff;
                    s.max_failures = b.max_failures;
                    s.failure_window = Duration::from_millis(b.failure_window_ms);
                    s.on_port_conflict = b.on_port_conflict;
                    s
                })
                .collect();
            for (i, picks) in deps.iter().enumerate().take(services.len()) {
                if i == 0 {
                    continue;
                }
                let mut d: Vec<ServiceName> = picks.iter().map(|p| services[p.index(i)].name.clone()).collect();
                d.dedup();
                services[i].depends_on = d;
            }
            if !services.is_empty() {
                for (route, owner) in routes.into_iter().zip(owners) {
                    let n = services.len();
                    services[owner.index(n)].routes.push(route);
                }
            }
            let (host, data_dir, cors, max_body_bytes) = gateway;
            let (interval_ms, timeout_ms, failure_threshold, startup_timeout_ms, startup_probe_interval_ms) = health;
            let (ring_size, ring_max_age_ms, client_queue, auth_timeout_ms, ping, extra, sse_heartbeat_ms) = hub;
            Config {
                gateway: GatewayConfig {
                    bind: format!("{host}:5000"),
                    data_dir: data_dir.map_or_else(|| PathBuf::from("data"), PathBuf::from),
                    cors_allowed_origins: cors,
                    max_body_bytes,
                    tls: None,
                    timers: Default::default(),
                },
                health: HealthConfig {
                    interval: Duration::from_millis(interval_ms),
                    timeout: Duration::from_millis(timeout_ms),
                    failure_threshold,
                    startup_timeout: Duration::from_millis(startup_timeout_ms),
                    startup_probe_interval: Duration::from_millis(startup_probe_interval_ms),
                },
                hub: HubConfig {
                    ring_size,
                    ring_max_age: Duration::from_millis(ring_max_age_ms),
                    client_queue,
                    auth_timeout: Duration::from_millis(auth_timeout_ms),
                    ping_interval: Duration::from_millis(ping),
                    idle_timeout: Duration::from_millis(ping + extra),
                    sse_heartbeat: Duration::from_millis(sse_heartbeat_ms),
                    ..HubConfig::default()
                },
                services,
                cluster: None,
            }
        })
}

/// Snippets that break TOML, or our rules, in interesting ways.
const SNIPPETS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[service]]",
    "[gateway]",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "\n",
    "#",
    "{",
    "}",
    ",",
    "\\",
    "\\u0000",
    "\u{0}",
    "é",
    "port = 99999999999999999999",
    "port = -1",
    "port = 0",
    "name = \"Data\"",
    "name = \"data\"",
    "routes = [\"health\"]",
    "depends_on = [\"nope\"]",
    "inf",
    "nan",
    "1e400",
    "0x10",
    "true",
    "[service.env]",
    "backoff = { multiplier = 0.5 }",
    "jitter = 2.0",
    "bind = \"nope\"",
    "unknown = 1",
    "\r\n",
    "\t",
    "= =",
];

fn mutated() -> impl Strategy<Value = String> {
    (
        config(),
        prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, prop::sample::select(SNIPPETS.to_vec())), 1..4),
    )
        .prop_map(|(config, edits)| {
            let mut text = config.to_toml();
            for (at, remove, insert) in edits {
                // Edit on character boundaries, like an editor would.
                let chars: Vec<(usize, char)> = text.char_indices().collect();
                let start = if chars.is_empty() { 0 } else { chars[at.index(chars.len())].0 };
                let end = text[start..].char_indices().nth(remove).map_or(text.len(), |(i, _)| start + i);
                text.replace_range(start..end, insert);
            }
            text
        })
}

fn assert_points_inside(text: &str, e: &ConfigError) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1);
    if let Some(line) = e.line() {
        prop_assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}: {e}");
    }
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

/// 64 cases by default (generating a whole configuration is the slow part), `PROPTEST_CASES`
/// when set (as `cargo xtask fuzz` does).
fn config_cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config_cases())]

    #[test]
    fn valid_configurations_round_trip_through_to_toml(config in config()) {
        let text = config.to_toml();
        prop_assert!(!text.starts_with("# cannot render"), "{}", text);
        match Config::from_toml(&text) {
            Ok(parsed) => prop_assert_eq!(parsed, config, "{}", text),
            Err(e) => prop_assert!(false, "{e}\n{text}"),
        }
    }

    #[test]
    fn parsing_never_panics_on_any_text(text in any::<String>()) {
        if let Err(e) = Config::from_toml(&text) {
            assert_points_inside(&text, &e)?;
        }
    }

    #[test]
    fn parsing_never_panics_on_edited_configurations(text in mutated()) {
        match Config::from_toml(&text) {
            Err(e) => assert_points_inside(&text, &e)?,
            // Whatever still parses is valid: it renders and parses back to itself.
            Ok(config) => prop_assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config),
        }
    }

    #[test]
    fn environment_overrides_never_panic_and_keep_the_config_printable(
        config in config(),
        vars in prop::collection::vec((env_name(), prop_oneof![any::<u64>().prop_map(|n| n.to_string()), millis().prop_map(|n| n.to_string()), ".{0,8}"]), 0..6),
    ) {
        let mut c = config;
        if c.apply_env(vars.clone()).is_ok() {
            let text = c.to_toml();
            prop_assert!(!text.starts_with("# cannot render"), "{vars:?}: {text}");
            prop_assert_eq!(Config::from_toml(&text).unwrap(), c);
        }
    }
}

fn env_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "ORCHESTRATOR_HEALTH_INTERVAL_MS",
        "ORCHESTRATOR_HEALTH_TIMEOUT_MS",
        "ORCHESTRATOR_HEALTH_FAILURE_THRESHOLD",
        "ORCHESTRATOR_HEALTH_STARTUP_TIMEOUT_MS",
        "ORCHESTRATOR_HUB_PING_INTERVAL_MS",
        "ORCHESTRATOR_HUB_IDLE_TIMEOUT_MS",
        "ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS",
        "ORCHESTRATOR_SERVICE_REQUEST_TIMEOUT_MS",
        "ORCHESTRATOR_SERVICE_MAX_FAILURES",
        "ORCHESTRATOR_BACKOFF_INITIAL_MS",
        "ORCHESTRATOR_BACKOFF_MAX_MS",
        "ORCHESTRATOR_SERVICE_A_BACKOFF_FIRST_MS",
        "ORCHESTRATOR_NOT_A_THING",
        "OTHER",
    ])
    .prop_map(String::from)
}

/// Regressions found by `environment_overrides_never_panic_and_keep_the_config_printable`.
#[test]
fn environment_overrides_obey_the_file_rules() {
    let text = "[[service]]\nname = \"data\"\nport = 5001\nbackoff = { initial_ms = 100, max_ms = 400 }\n";
    let set = |k: &str, v: &str| {
        let mut c = Config::from_toml(text).unwrap();
        c.apply_env([(k.to_owned(), v.to_owned())]).map(|()| c)
    };
    assert!(set("ORCHESTRATOR_BACKOFF_INITIAL_MS", "300").is_ok());
    let e = set("ORCHESTRATOR_BACKOFF_INITIAL_MS", "1000").unwrap_err();
    assert!(e.to_string().contains("backoff.max_ms"), "{e}");
    let e = set("ORCHESTRATOR_SERVICE_REQUEST_TIMEOUT_MS", "0").unwrap_err();
    assert!(e.to_string().contains("request_timeout_ms"), "{e}");
    let e = set("ORCHESTRATOR_HEALTH_INTERVAL_MS", &u64::MAX.to_string()).unwrap_err();
    assert!(e.to_string().contains("ORCHESTRATOR_HEALTH_INTERVAL_MS"), "{e}");
    let c = set("ORCHESTRATOR_HEALTH_INTERVAL_MS", &i64::MAX.to_string()).unwrap();
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
}
