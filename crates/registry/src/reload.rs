//! What a reload changes (SPEC §14): [`ReloadPlan::between`] compares the running services
//! with a newly loaded list and says which are added, removed, restarted (what the process runs
//! changed: command, cwd, env, host, port), updated in place (anything else of theirs) or
//! unchanged. The configuration that composes the sections adds what the other sections' changes
//! mean (`health_changed`, `requires_restart`). Pure: the supervisor and the gateway carry it out.

use serde::Serialize;

use crate::config::ServiceConfig;

/// The plan of a reload, as `POST /api/config/reload` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReloadPlan {
    /// New services (started if `autostart`).
    pub added: Vec<String>,
    /// Services no longer configured (stopped).
    pub removed: Vec<String>,
    /// Services whose process must change (restarted if running).
    pub restarted: Vec<String>,
    /// Services changed in place, without a restart.
    pub updated: Vec<String>,
    /// Services exactly as before.
    pub unchanged: Vec<String>,
    /// Fields (`gateway.bind`, `hub.ring_size`…) that changed but take effect only when the
    /// orchestrator restarts.
    pub requires_restart: Vec<String>,
    /// Whether `[health]` changed (applied to every service in place).
    #[serde(skip)]
    pub health_changed: bool,
}

impl ReloadPlan {
    /// Compares the running services with the new list (the other fields stay empty).
    pub fn between(old: &[ServiceConfig], new: &[ServiceConfig]) -> ReloadPlan {
        let find = |list: &'_ [ServiceConfig], name: &str| list.iter().position(|s| s.name.as_str() == name);
        let mut plan = ReloadPlan::default();
        for s in new {
            let name = s.name.to_string();
            match find(old, s.name.as_str()).map(|i| &old[i]) {
                None => plan.added.push(name),
                Some(before) if before == s => plan.unchanged.push(name),
                Some(before) if runs_differently(before, s) => plan.restarted.push(name),
                Some(_) => plan.updated.push(name),
            }
        }
        plan.removed =
            old.iter().filter(|s| find(new, s.name.as_str()).is_none()).map(|s| s.name.to_string()).collect();
        plan
    }

    /// Whether anything at all changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.updated.is_empty()
            && self.requires_restart.is_empty()
            && !self.health_changed
    }
}

/// Whether what the process runs differs (so a running instance must be restarted).
fn runs_differently(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    a.command != b.command || a.cwd != b.cwd || a.env != b.env || a.host != b.host || a.port != b.port
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BASE: &str = r#"
[[service]]
name = "data"
port = 5001
routes = ["ticks"]
command = ["sim", "data"]

[[service]]
name = "mt5"
port = 5002
routes = ["orders"]
command = ["sim", "mt5"]
"#;

    fn services(text: &str) -> Vec<ServiceConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            service: Vec<crate::RawService>,
        }
        let file: File = toml::from_str(text).unwrap();
        crate::validate_services(file.service, "127.0.0.1:5000".parse().unwrap()).unwrap()
    }

    fn plan(new: &str) -> ReloadPlan {
        ReloadPlan::between(&services(BASE), &services(new))
    }

    #[test]
    fn each_kind_of_change_gets_its_place_in_the_plan() {
        let mt5 = "\n[[service]]\nname = \"mt5\"\nport = 5002\nroutes = [\"orders\"]\ncommand = [\"sim\", \"mt5\"]\n";
        let data = |extra: &str| {
            format!(
                "[[service]]\nname = \"data\"\nport = 5001\nroutes = [\"ticks\"]\ncommand = [\"sim\", \"data\"]\n{extra}"
            )
        };
        let cases: Vec<(&str, String, ReloadPlan)> = vec![
            (
                "nothing",
                BASE.to_owned(),
                ReloadPlan { unchanged: vec!["data".into(), "mt5".into()], ..ReloadPlan::default() },
            ),
            (
                "a timeout, routes and the health path change in place",
                format!(
                    "{}{mt5}",
                    data("request_timeout_ms = 500\nhealth_path = \"/h\"\n")
                        .replace("[\"ticks\"]", "[\"ticks\", \"ohlc\"]")
                ),
                ReloadPlan { updated: vec!["data".into()], unchanged: vec!["mt5".into()], ..ReloadPlan::default() },
            ),
            (
                "the command, the environment or the port restart it",
                format!("{}{mt5}", data("env = { A = \"1\" }\n")),
                ReloadPlan { restarted: vec!["data".into()], unchanged: vec!["mt5".into()], ..ReloadPlan::default() },
            ),
            (
                "a port change restarts it",
                format!("{}{mt5}", data("").replace("5001", "5011")),
                ReloadPlan { restarted: vec!["data".into()], unchanged: vec!["mt5".into()], ..ReloadPlan::default() },
            ),
            (
                "added and removed",
                format!("{}\n[[service]]\nname = \"pattern\"\nport = 5004\nroutes = [\"patterns\"]\n", data("")),
                ReloadPlan {
                    added: vec!["pattern".into()],
                    removed: vec!["mt5".into()],
                    unchanged: vec!["data".into()],
                    ..ReloadPlan::default()
                },
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(plan(&text), expected, "{name}");
        }
        assert!(plan(BASE).is_empty());
        assert!(!plan(&data("")).is_empty());
    }
}
