//! Data-driven tests of configuration parsing, validation and environment overrides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use gateway_core::ServiceName;
use registry::{BackoffConfig, PortConflictPolicy, RestartPolicy};

const MINIMAL: &str = r#"
[[service]]
name = "data"
port = 5001
routes = ["ticks"]
"#;

#[test]
fn minimal_service_gets_every_default() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.gateway, GatewayConfig::default());
    assert_eq!(c.health, HealthConfig::default());
    let s = &c.services[0];
    assert_eq!(s.name.as_str(), "data");
    assert_eq!(s.host, "127.0.0.1");
    assert_eq!(s.health_path, "/health");
    assert_eq!(s.openapi_path.as_deref(), Some("/openapi.json"));
    assert_eq!(s.request_timeout, Duration::from_millis(10_000));
    assert_eq!(s.restart, RestartPolicy::OnFailure);
    assert_eq!(s.backoff, BackoffConfig::default());
    assert_eq!(s.on_port_conflict, PortConflictPolicy::Fail);
    assert!(s.is_external(), "no command => external");
}

#[test]
fn openapi_path_is_a_path_or_empty_for_none() {
    let with = |v: &str| Config::from_toml(&format!("{MINIMAL}openapi_path = \"{v}\"\n")).unwrap();
    assert_eq!(with("/docs/api.json").services[0].openapi_path.as_deref(), Some("/docs/api.json"));
    assert_eq!(with("").services[0].openapi_path, None);
}

#[test]
fn tls_names_a_certificate_and_a_key() {
    let c = Config::from_toml(&format!("[gateway.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.gateway.tls, Some(TlsConfig { cert: "c.pem".into(), key: "k.pem".into() }));
    let err = Config::from_toml("[gateway.tls]\ncert = \"c.pem\"\n").unwrap_err().to_string();
    assert!(err.contains("key"), "{err}");
    let err = Config::from_toml("[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("unknown field `ca`"), "{err}");
}

#[test]
fn full_example_from_the_spec_parses() {
    let text = r#"
[gateway]
bind = "127.0.0.1:5000"
data_dir = "data"
cors_allowed_origins = []
max_body_bytes = 1048576

[health]
interval_ms = 5000
timeout_ms = 2000
failure_threshold = 3
startup_timeout_ms = 30000
startup_probe_interval_ms = 25

[[service]]
name = "data"
display_name = "Data Service"
routes = ["ticks", "ohlc", "symbols"]
host = "127.0.0.1"
port = 5001
command = ["python", "-m", "data_service"]
cwd = "services/data"
env = { LOG_LEVEL = "info" }
health_path = "/health"
openapi_path = "/openapi.json"
events_path = "/events"
settings_path = "/settings"
settings_keys = ["symbols", "timeframes"]
request_timeout_ms = 10000
autostart = true
restart = "on-failure"
depends_on = []
stop_signal = "SIGTERM"
stop_timeout_ms = 10000
backoff = { first_ms = 0, initial_ms = 250, multiplier = 2.0, max_ms = 60000, jitter = 0.1, reset_after_ms = 60000 }
max_failures = 5
failure_window_ms = 300000
on_port_conflict = "fail"
"#;
    let c = Config::from_toml(text).unwrap();
    let s = &c.services[0];
    assert_eq!(s.display_name, "Data Service");
    assert_eq!(s.command.as_deref().map(<[String]>::len), Some(3));
    assert_eq!(s.env.get("LOG_LEVEL").map(String::as_str), Some("info"));
    assert!(!s.is_external());
}

/// (name, toml, expected field or message fragment, expected line)
#[test]
fn invalid_configs_name_the_field_and_line() {
    let cases: &[(&str, &str, &str, Option<usize>)] = &[
        ("unknown top-level", "[gatway]\nbind = \"x\"\n", "unknown field `gatway`", Some(1)),
        (
            "unknown service field",
            "[[service]]\nname = \"a\"\nport = 1\ncolor = \"red\"\n",
            "unknown field `color`",
            Some(4),
        ),
        ("unknown gateway field", "[gateway]\nbindd = \"127.0.0.1:1\"\n", "unknown field `bindd`", Some(2)),
        ("missing name", "[[service]]\nport = 5001\n", "missing field `name`", Some(1)),
        ("missing port", "[[service]]\nname = \"a\"\n", "missing field `port`", Some(1)),
        ("wrong type", "[[service]]\nname = \"a\"\nport = \"5001\"\n", "invalid type", Some(3)),
        ("bad name", "[[service]]\nname = \"Data\"\nport = 1\n", "service[0].name", Some(2)),
        ("port zero", "[[service]]\nname = \"a\"\nport = 0\n", "service[0].port", Some(3)),
        ("port too big", "[[service]]\nname = \"a\"\nport = 70000\n", "service[0].port", Some(3)),
        (
            "duplicate name",
            "[[service]]\nname = \"a\"\nport = 1\n[[service]]\nname = \"a\"\nport = 2\n",
            "duplicate name `a`",
            Some(5),
        ),
        (
            "duplicate port",
            "[[service]]\nname = \"a\"\nport = 1\n[[service]]\nname = \"b\"\nport = 1\n",
            "duplicate port 1",
            Some(6),
        ),
        (
            "duplicate route",
            "[[service]]\nname = \"a\"\nport = 1\nroutes = [\"x\"]\n[[service]]\nname = \"b\"\nport = 2\nroutes = [\"y\", \"x\"]\n",
            "duplicate route `x`",
            Some(8),
        ),
        ("shadowed route", "[[service]]\nname = \"a\"\nport = 1\nroutes = [\"settings\"]\n", "shadows", Some(4)),
        (
            "shadowed openapi",
            "[[service]]\nname = \"a\"\nport = 1\nroutes = [\"openapi.json\"]\n",
            "service[0].routes",
            Some(4),
        ),
        ("gateway port", "[[service]]\nname = \"a\"\nport = 5000\n", "gateway's own port", Some(3)),
        ("bad bind", "[gateway]\nbind = \"localhost\"\n", "gateway.bind", Some(2)),
        (
            "bad signal",
            "[[service]]\nname = \"a\"\nport = 1\nstop_signal = \"SIGFOO\"\n",
            "service[0].stop_signal",
            Some(4),
        ),
        ("bad restart", "[[service]]\nname = \"a\"\nport = 1\nrestart = \"sometimes\"\n", "unknown variant", Some(4)),
        ("bad jitter", "[[service]]\nname = \"a\"\nport = 1\nbackoff = { jitter = 2.0 }\n", "backoff.jitter", Some(4)),
        (
            "bad multiplier",
            "[[service]]\nname = \"a\"\nport = 1\nbackoff = { multiplier = 0.5 }\n",
            "backoff.multiplier",
            Some(4),
        ),
        (
            "unknown backoff field",
            "[[service]]\nname = \"a\"\nport = 1\nbackoff = { nope = 1 }\n",
            "unknown field `nope`",
            Some(4),
        ),
        ("empty command", "[[service]]\nname = \"a\"\nport = 1\ncommand = []\n", "service[0].command", Some(4)),
        (
            "relative health path",
            "[[service]]\nname = \"a\"\nport = 1\nhealth_path = \"health\"\n",
            "service[0].health_path",
            Some(4),
        ),
        (
            "relative openapi path",
            "[[service]]\nname = \"a\"\nport = 1\nopenapi_path = \"openapi.json\"\n",
            "service[0].openapi_path",
            Some(4),
        ),
        (
            "unknown dependency",
            "[[service]]\nname = \"a\"\nport = 1\ndepends_on = [\"b\"]\n",
            "unknown service `b`",
            Some(4),
        ),
        (
            "self dependency",
            "[[service]]\nname = \"a\"\nport = 1\ndepends_on = [\"a\"]\n",
            "depends on itself",
            Some(4),
        ),
        (
            "cycle",
            "[[service]]\nname = \"a\"\nport = 1\ndepends_on = [\"b\"]\n[[service]]\nname = \"b\"\nport = 2\ndepends_on = [\"a\"]\n",
            "dependency cycle",
            None,
        ),
        ("zero interval", "[health]\ninterval_ms = 0\n", "health.interval_ms", Some(2)),
        ("malformed toml", "[[service]\nname = 1\n", "", Some(1)),
        (
            "zero timeout",
            "[[service]]\nname = \"a\"\nport = 1\nrequest_timeout_ms = 0\n",
            "request_timeout_ms",
            Some(4),
        ),
    ];
    for (what, text, fragment, line) in cases {
        match Config::from_toml(text) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(fragment), "{what}: {msg:?} lacks {fragment:?}");
                assert_eq!(e.line(), *line, "{what}: {msg}");
            }
        }
    }
}

#[test]
fn builtin_default_is_the_four_simulated_services() {
    let c = Config::builtin(Path::new("/usr/bin/orchestrator"));
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["data", "mt5", "strategy", "pattern"]);
    let ports: Vec<u16> = c.services.iter().map(|s| s.port).collect();
    assert_eq!(ports, [5001, 5002, 5003, 5004]);
    for s in &c.services {
        let cmd = s.command.clone().unwrap();
        assert_eq!(cmd[0], "/usr/bin/orchestrator");
        assert_eq!(cmd[1], "sim");
        assert_eq!(cmd[2], s.name.as_str());
        assert!(!s.is_external());
    }
    assert_eq!(c.services[0].routes, ["ticks", "ohlc", "symbols"]);
    // The built-in default survives its own validation when printed and parsed again.
    let again = Config::from_toml(&c.to_toml()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn external_detection() {
    let mk = |host: &str, cmd: bool| {
        let mut s = ServiceConfig::with_defaults(ServiceName::parse("a").unwrap(), 1);
        s.host = host.into();
        s.command = cmd.then(|| vec!["x".into()]);
        s
    };
    assert!(!mk("127.0.0.1", true).is_external());
    assert!(!mk("localhost", true).is_external());
    assert!(!mk("::1", true).is_external());
    assert!(mk("10.1.2.3", true).is_external());
    assert!(mk("mt5-host.lan", true).is_external());
    assert!(mk("127.0.0.1", false).is_external());
    assert_eq!(mk("::1", true).authority(), "[::1]:1");
}

#[test]
fn environment_overrides_every_duration() {
    let text = "[[service]]\nname = \"data\"\nport = 1\n[[service]]\nname = \"mt5-x\"\nport = 2\n";
    let mut c = Config::from_toml(text).unwrap();
    let vars = [
        ("ORCHESTRATOR_HEALTH_INTERVAL_MS", "100"),
        ("ORCHESTRATOR_HEALTH_TIMEOUT_MS", "50"),
        ("ORCHESTRATOR_HEALTH_STARTUP_TIMEOUT_MS", "3000"),
        ("ORCHESTRATOR_HEALTH_STARTUP_PROBE_INTERVAL_MS", "5"),
        ("ORCHESTRATOR_HEALTH_FAILURE_THRESHOLD", "2"),
        ("ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS", "500"),
        ("ORCHESTRATOR_SERVICE_MT5_X_STOP_TIMEOUT_MS", "700"),
        ("ORCHESTRATOR_SERVICE_REQUEST_TIMEOUT_MS", "900"),
        ("ORCHESTRATOR_BACKOFF_INITIAL_MS", "10"),
        ("ORCHESTRATOR_SERVICE_DATA_BACKOFF_MAX_MS", "40"),
        ("ORCHESTRATOR_HUB_PING_INTERVAL_MS", "1000"),
        ("ORCHESTRATOR_HUB_IDLE_TIMEOUT_MS", "2000"),
        ("PATH", "/bin"),
    ];
    c.apply_env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).unwrap();
    assert_eq!(c.health.interval, Duration::from_millis(100));
    assert_eq!(c.health.timeout, Duration::from_millis(50));
    assert_eq!(c.health.startup_timeout, Duration::from_millis(3000));
    assert_eq!(c.health.startup_probe_interval, Duration::from_millis(5));
    assert_eq!(c.health.failure_threshold, 2);
    assert_eq!(c.services[0].stop_timeout, Duration::from_millis(500));
    assert_eq!(c.services[1].stop_timeout, Duration::from_millis(700), "the per-service override wins");
    assert_eq!(c.services[1].request_timeout, Duration::from_millis(900));
    assert_eq!(c.services[0].backoff.initial, Duration::from_millis(10));
    assert_eq!(c.services[1].backoff.initial, Duration::from_millis(10));
    assert_eq!(c.services[0].backoff.max, Duration::from_millis(40));
    assert_eq!(c.services[1].backoff.max, Duration::from_millis(60_000));
    assert_eq!(c.hub.ping_interval, Duration::from_millis(1000));

    let err = c.apply_env([("ORCHESTRATOR_HEALTH_INTERVAL_MS".to_owned(), "soon".to_owned())]).unwrap_err();
    assert!(err.to_string().contains("ORCHESTRATOR_HEALTH_INTERVAL_MS"), "{err}");
    let err = c.apply_env([("ORCHESTRATOR_HEALTH_INTERVAL_MS".to_owned(), "0".to_owned())]).unwrap_err();
    assert!(err.to_string().contains("health.interval_ms"), "{err}");
}

#[test]
fn an_unknown_override_is_an_error_that_names_it() {
    let mut c = Config::from_toml(MINIMAL).unwrap();
    for bad in [
        "ORCHESTRATOR_HEALTH_INTERVAL",
        "ORCHESTRATOR_NOT_A_THING",
        "ORCHESTRATOR_SERVICE_DATA_NOPE_MS",
        "ORCHESTRATOR_SERVICE_STOP_TIMEOUT",
        "ORCHESTRATOR_BACKOFF_MAXIMUM_MS",
    ] {
        let e = c.apply_env([(bad.to_owned(), "5".to_owned())]).unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains("not a configuration override"), "{bad}: {e}");
    }
    for fine in ["ORCHESTRATOR_SERVICE_DATA_STOP_TIMEOUT_MS", "ORCHESTRATOR_BACKOFF_MAX_MS", "ORCHESTRATOR_KEEPER"] {
        c.apply_env([(fine.to_owned(), "60000".to_owned())]).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    c.apply_env([("OTHER_VARIABLE".to_owned(), "x".to_owned())]).unwrap();
    // A service override is known even when no service is configured.
    let mut empty = Config::from_toml("").unwrap();
    empty.apply_env([("ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS".to_owned(), "5".to_owned())]).unwrap();
}

#[test]
fn overrides_are_applied_before_the_one_validation() {
    // Alone, this file breaks a rule (idle timeout not above the ping period)…
    let text = "[hub]\nping_interval_ms = 40000\n";
    let e = Config::from_toml(text).unwrap_err();
    assert_eq!((e.to_string().contains("hub.idle_timeout_ms"), e.line()), (true, None), "{e}");
    // …and the environment that fixes it makes it valid: the rules see the overlaid document.
    let vars = [("ORCHESTRATOR_HUB_IDLE_TIMEOUT_MS".to_owned(), "50000".to_owned())];
    let c = Config::from_toml_with_env(text, vars).unwrap();
    assert_eq!((c.hub.ping_interval, c.hub.idle_timeout), (Duration::from_secs(40), Duration::from_secs(50)));
    // A value that breaks a rule names the variable that set it.
    let text = "[[service]]\nname = \"data\"\nport = 5001\n";
    let vars = [("ORCHESTRATOR_SERVICE_DATA_FAILURE_WINDOW_MS".to_owned(), "0".to_owned())];
    let e = Config::from_toml_with_env(text, vars).unwrap_err().to_string();
    assert!(
        e.contains("service[0].failure_window_ms") && e.contains("ORCHESTRATOR_SERVICE_DATA_FAILURE_WINDOW_MS"),
        "{e}"
    );
}

#[test]
fn every_gateway_timer_and_limit_is_configurable() {
    let text = "[gateway.timers]\ndashboard_budget_ms = 700\nticket_ttl_ms = 9000\n[hub]\nflood_messages = 7\n";
    let vars = [
        ("ORCHESTRATOR_GATEWAY_TIMERS_UPSTREAM_CONNECT_MS", "300"),
        ("ORCHESTRATOR_GATEWAY_TIMERS_TOKEN_CACHE_MS", "0"),
        ("ORCHESTRATOR_GATEWAY_TIMERS_CLOSE_GRACE_MS", "250"),
        ("ORCHESTRATOR_GATEWAY_TIMERS_INGEST_RECONNECT_MAX_MS", "800"),
        ("ORCHESTRATOR_HUB_FLOOD_WINDOW_MS", "2000"),
        ("ORCHESTRATOR_GATEWAY_MAX_BODY_BYTES", "4096"),
    ];
    let c = Config::from_toml_with_env(text, vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).unwrap();
    let t = &c.gateway.timers;
    let ms = Duration::from_millis;
    assert_eq!(
        (t.dashboard_budget, t.ticket_ttl, t.upstream_connect, t.token_cache, t.close_grace, t.ingest_reconnect_max),
        (ms(700), ms(9000), ms(300), ms(0), ms(250), ms(800))
    );
    assert_eq!((c.hub.flood_messages, c.hub.flood_window, c.gateway.max_body_bytes), (7, ms(2000), 4096));
    // `config print` shows them all, and what it prints reads back the same.
    let printed = c.to_toml();
    for field in [
        "dashboard_budget_ms",
        "ticket_ttl_ms",
        "upstream_connect_ms",
        "token_cache_ms",
        "close_grace_ms",
        "ingest_reconnect_max_ms",
        "flood_messages",
        "flood_window_ms",
        "sse_heartbeat_ms",
        "max_message_bytes",
    ] {
        assert!(printed.contains(field), "{field} missing from:\n{printed}");
    }
    assert_eq!(Config::from_toml(&printed).unwrap(), c);
    let e = Config::from_toml("[gateway.timers]\nticket_ttl_ms = 0\n").unwrap_err();
    assert_eq!((e.to_string().contains("gateway.timers.ticket_ttl_ms"), e.line()), (true, Some(2)), "{e}");
    let e = Config::from_toml("[gateway.timers]\nticket_ttl = 5\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `ticket_ttl`"), "{e}");
    let kinds = [("ORCHESTRATOR_GATEWAY_TIMERS_TICKET_TTL_MS", "-1"), ("ORCHESTRATOR_SERVICE_AUTOSTART", "yes")];
    for (var, value) in kinds {
        let e = Config::from_toml_with_env(MINIMAL, [(var.to_owned(), value.to_owned())]).unwrap_err().to_string();
        assert!(e.contains(var), "{e}");
    }
}

#[test]
fn reload_plan_names_what_only_a_restart_applies() {
    let base = Config::from_toml(MINIMAL).unwrap();
    let changed = format!(
        "[gateway]\nbind = \"127.0.0.1:6000\"\n[gateway.timers]\nticket_ttl_ms = 1\n[hub]\nring_size = 10\n[health]\ninterval_ms = 100\n{MINIMAL}"
    );
    let plan = base.reload_plan(&Config::from_toml(&changed).unwrap());
    assert_eq!(
        plan,
        ReloadPlan {
            unchanged: vec!["data".into()],
            requires_restart: vec!["gateway.bind".into(), "gateway.timers".into(), "hub".into()],
            health_changed: true,
            ..ReloadPlan::default()
        }
    );
    assert!(base.reload_plan(&base).is_empty());
}

#[test]
fn cluster_is_absent_by_default_and_parsed_when_present() {
    assert_eq!(Config::from_toml(MINIMAL).unwrap().cluster, None);
    let c =
        Config::from_toml(&format!("{MINIMAL}\n[cluster]\nbroker = \"redis://127.0.0.1:6379/0\"\nnode = \"gw-1\"\n"))
            .unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.role, NodeRole::Primary);
    assert_eq!(cluster.node, "gw-1");
    assert_eq!(cluster.namespace, "orchestrator");
    // A primary is named after its host (a restart reclaims its own claim), an edge after its
    // host and process (several may share a host).
    let primary = Config::from_toml("[cluster]\nbroker = \"redis://h:1/0\"\n").unwrap().cluster.unwrap();
    let edge = "[cluster]\nbroker = \"redis://h:1/0\"\nrole = \"edge\"\nprimary_url = \"http://h:5000\"\n";
    let edge = Config::from_toml(edge).unwrap().cluster.unwrap();
    assert!(!primary.node.is_empty() && !primary.node.ends_with(&format!("-{}", std::process::id())));
    assert_eq!(edge.node, format!("{}-{}", primary.node, std::process::id()));
}

#[test]
fn invalid_cluster_sections_name_the_field_and_line() {
    for (text, field, line) in [
        ("[cluster]\nbroker = \"http://h:1\"\n", "cluster.broker", 2),
        ("[cluster]\nbroker = \"redis://h:1\"\nrole = \"edge\"\n", "cluster.role", 3),
        (
            "[cluster]\nbroker = \"redis://h:1\"\nrole = \"edge\"\nprimary_url = \"10.0.0.5:5000\"\n",
            "cluster.primary_url",
            4,
        ),
        ("[cluster]\nbroker = \"redis://h:1\"\nnode = \"a b\"\n", "cluster.node", 3),
    ] {
        match Config::from_toml(text) {
            Err(ConfigError::Invalid { field: f, line: l, .. }) => {
                assert_eq!((f.as_str(), l), (field, Some(line)), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let edge_with_services =
        format!("{MINIMAL}\n[cluster]\nbroker = \"redis://h:1\"\nrole = \"edge\"\nprimary_url = \"http://p:5000\"\n");
    assert!(
        matches!(Config::from_toml(&edge_with_services), Err(ConfigError::Invalid { field, .. }) if field == "service")
    );
    assert!(matches!(Config::from_toml("[cluster]\nrole = \"edge\"\n"), Err(ConfigError::Parse { .. })));
}

#[test]
fn the_cluster_can_be_set_from_the_environment_and_requires_a_restart() {
    let vars = [
        ("ORCHESTRATOR_CLUSTER_BROKER".to_owned(), "redis://127.0.0.1:7000/1".to_owned()),
        ("ORCHESTRATOR_CLUSTER_ROLE".to_owned(), "edge".to_owned()),
        ("ORCHESTRATOR_CLUSTER_PRIMARY_URL".to_owned(), "http://10.0.0.5:5000".to_owned()),
    ];
    let c = Config::from_toml_with_env("", vars).unwrap();
    let cluster = c.cluster.clone().unwrap();
    assert_eq!((cluster.broker.as_str(), cluster.role), ("redis://127.0.0.1:7000/1", NodeRole::Edge));
    assert_eq!(cluster.primary_url.as_deref(), Some("http://10.0.0.5:5000"));
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c, "config print round-trips");
    let plan = Config::default().reload_plan(&c);
    assert!(plan.requires_restart.contains(&"cluster".to_owned()), "{:?}", plan.requires_restart);
    assert_eq!(redact("redis://user:secret@h:1/0"), "redis://user:***@h:1/0");
    assert!(!redact("redis://:secret@h:1/0").contains("secret"));
}
