//! The environment overlay (SPEC §2): `ORCHESTRATOR_<SECTION>_<FIELD>` sets one field of the
//! configuration document before it is validated — `ORCHESTRATOR_HEALTH_INTERVAL_MS`,
//! `ORCHESTRATOR_GATEWAY_TIMERS_TICKET_TTL_MS`, `ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS` (every
//! service), `ORCHESTRATOR_SERVICE_DATA_STOP_TIMEOUT_MS` (one service, which wins over the
//! former), `ORCHESTRATOR_BACKOFF_MAX_MS` (every service's backoff).
//!
//! What can be set is read from the sections themselves: every number, flag and text field a
//! section's defaults show (`config print`), nested tables included; lists, maps and a
//! service's `name` cannot. The value is read as the kind of the field's default. An unknown
//! variable is an error naming it; the variables in [`NOT_OVERRIDES`] are not overrides.

use std::collections::HashMap;

use gateway_core::{ConfigError, ServiceName};
use registry::ServiceConfig;
use toml::{Table, Value};

use super::{GatewayConfig, HealthConfig, HubConfig};

/// `ORCHESTRATOR_*` variables that are not configuration overrides: set by the orchestrator
/// for its own helper processes, or read by a subcommand (`service install`) or the tests.
pub const NOT_OVERRIDES: [&str; 5] = [
    "ORCHESTRATOR_KEEPER",
    "ORCHESTRATOR_CTRL",
    "ORCHESTRATOR_SERVICE_PASSWORD",
    "ORCHESTRATOR_BIN",
    "ORCHESTRATOR_TEST_CHILD",
];

const PREFIX: &str = "ORCHESTRATOR_";

/// Where one variable applies.
enum Target {
    /// A field of `[gateway]`, `[health]` or `[hub]`: the keys from the document's root.
    Section(Vec<String>),
    /// A field of one service (by position) or of every service.
    Service(Option<usize>, Vec<String>),
}

/// The defaults of every section, as the document shows them: what may be set, and as what.
struct Shapes {
    sections: Table,
    service: Table,
}

impl Shapes {
    fn new() -> Shapes {
        let table = |v: Result<Table, toml::ser::Error>| v.unwrap_or_default();
        let mut sections = Table::new();
        sections.insert("gateway".into(), Value::Table(table(Table::try_from(GatewayConfig::default()))));
        sections.insert("health".into(), Value::Table(table(Table::try_from(HealthConfig::default()))));
        sections.insert("hub".into(), Value::Table(table(Table::try_from(HubConfig::default()))));
        sections.insert("cluster".into(), Value::Table(table(Table::try_from(super::ClusterConfig::shape()))));
        let mut service = match ServiceName::parse("shape") {
            Ok(name) => table(Table::try_from(ServiceConfig::with_defaults(name, 1))),
            Err(_) => Table::new(),
        };
        service.remove("name");
        Shapes { sections, service }
    }
}

/// The keys of the scalar field `upper` (upper case, `_`-joined) names in `shape`, and its default.
fn field<'s>(upper: &str, shape: &'s Table) -> Option<(Vec<String>, &'s Value)> {
    for (key, default) in shape {
        let key_upper = key.to_ascii_uppercase();
        match default {
            Value::Table(inner) => {
                if let Some(rest) = upper.strip_prefix(&key_upper).and_then(|r| r.strip_prefix('_'))
                    && let Some((mut keys, d)) = field(rest, inner)
                {
                    keys.insert(0, key.clone());
                    return Some((keys, d));
                }
            }
            Value::Array(_) => {}
            scalar if key_upper == upper => return Some((vec![key.clone()], scalar)),
            _ => {}
        }
    }
    None
}

fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

fn resolve<'s>(rest: &str, shapes: &'s Shapes, services: &[String]) -> Option<(Target, &'s Value)> {
    if let Some(f) = rest.strip_prefix("SERVICE_") {
        for (i, name) in services.iter().enumerate() {
            if let Some(f) = f.strip_prefix(&format!("{}_", env_name(name)))
                && let Some((keys, d)) = field(f, &shapes.service)
            {
                return Some((Target::Service(Some(i), keys), d));
            }
        }
        return field(f, &shapes.service).map(|(keys, d)| (Target::Service(None, keys), d));
    }
    if let Some(f) = rest.strip_prefix("BACKOFF_") {
        return field(&format!("BACKOFF_{f}"), &shapes.service).map(|(keys, d)| (Target::Service(None, keys), d));
    }
    field(rest, &shapes.sections).filter(|(keys, _)| keys.len() > 1).map(|(keys, d)| (Target::Section(keys), d))
}

/// `value` read as the kind of `default`.
fn convert(var: &str, value: &str, default: &Value) -> Result<Value, ConfigError> {
    let bad = |what: String| ConfigError::invalid(var, format!("`{value}` is not {what}"));
    let v = value.trim();
    Ok(match default {
        // At most i64::MAX: the largest integer TOML (and so `config print`) can show.
        Value::Integer(_) => Value::Integer(
            v.parse::<u64>()
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| bad(format!("a whole number from 0 to {}", i64::MAX)))?,
        ),
        Value::Float(_) => {
            Value::Float(v.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| bad("a number".into()))?)
        }
        Value::Boolean(_) => Value::Boolean(v.parse::<bool>().map_err(|_| bad("true or false".into()))?),
        _ => Value::String(value.to_owned()),
    })
}

/// Sets `value` at `keys` under `table`, creating the tables on the way.
fn set(table: &mut Table, keys: &[String], value: Value, var: &str) -> Result<(), ConfigError> {
    let Some((last, parents)) = keys.split_last() else { return Ok(()) };
    let mut at = table;
    for key in parents {
        let entry = at.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        at = match entry {
            Value::Table(t) => t,
            _ => return Err(ConfigError::invalid(var, format!("`{key}` in the file is not a table"))),
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

/// Applies every `ORCHESTRATOR_*` override in `vars` to `document`; returns which variable set
/// each field (`hub.ping_interval_ms`, `service[0].stop_timeout_ms`).
pub(super) fn apply<I>(document: &mut Table, vars: I) -> Result<HashMap<String, String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let shapes = Shapes::new();
    let services: Vec<String> = match document.get("service") {
        Some(Value::Array(list)) => {
            list.iter().map(|s| s.get("name").and_then(Value::as_str).unwrap_or_default().to_owned()).collect()
        }
        _ => Vec::new(),
    };
    let mut targets = Vec::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(PREFIX) else { continue };
        if NOT_OVERRIDES.contains(&var.as_str()) {
            continue;
        }
        let Some((target, default)) = resolve(rest, &shapes, &services) else {
            return Err(ConfigError::invalid(
                &var,
                "not a configuration override: ORCHESTRATOR_GATEWAY_<FIELD>, ORCHESTRATOR_HEALTH_<FIELD>, \
                 ORCHESTRATOR_HUB_<FIELD>, ORCHESTRATOR_SERVICE_[<NAME>_]<FIELD> or ORCHESTRATOR_BACKOFF_<FIELD> \
                 with a field `config print` shows (upper case, nested tables joined by _)",
            ));
        };
        let value = convert(&var, &value, default)?;
        targets.push((var, target, value));
    }
    // Every-service overrides first, so that the one naming a service wins; otherwise by name.
    targets.sort_by(|a, b| {
        let specific = |t: &Target| matches!(t, Target::Service(Some(_), _));
        (specific(&a.1), &a.0).cmp(&(specific(&b.1), &b.0))
    });
    let mut set_by = HashMap::new();
    for (var, target, value) in targets {
        match target {
            Target::Section(keys) => {
                set(document, &keys, value, &var)?;
                set_by.insert(keys.join("."), var);
            }
            Target::Service(which, keys) => {
                let Some(Value::Array(list)) = document.get_mut("service") else { continue };
                for (i, service) in list.iter_mut().enumerate() {
                    if which.is_some_and(|w| w != i) {
                        continue;
                    }
                    if let Value::Table(t) = service {
                        set(t, &keys, value.clone(), &var)?;
                        set_by.insert(format!("service[{i}].{}", keys.join(".")), var.clone());
                    }
                }
            }
        }
    }
    Ok(set_by)
}
