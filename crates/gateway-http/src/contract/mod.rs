//! Service contracts (SPEC §4): each service's OpenAPI document, fetched from its
//! `openapi_path` every time it comes online, compiled once per load ([`compiled`]), kept per
//! service, checked before a covered request is forwarded, shown in the service's registry entry
//! (`contract {status, operations, loaded_at, error}`) and merged into `GET /api/openapi.json`.
//!
//! A contract that is missing or broken is a warning: the service is forwarded with the domain
//! rules only, as if it published none.

pub mod compiled;
pub mod convert;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, header};
use gateway_core::ServiceStatus;
use parking_lot::RwLock;
use registry::{ContractInfo, ContractStatus, Registry, ServiceConfig};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

pub use compiled::{Contract, ContractError, Verdict};

use crate::outbound::upstream::{self, Call};

/// The longest a contract fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The loaded contracts, by service name. Cheap to clone; every clone shares the table.
#[derive(Clone, Default)]
pub struct Contracts {
    by_service: Arc<RwLock<HashMap<String, Arc<Contract>>>>,
}

impl std::fmt::Debug for Contracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contracts").field("services", &self.by_service.read().len()).finish()
    }
}

impl Contracts {
    /// The contract of a service, if one is loaded.
    pub fn get(&self, service: &str) -> Option<Arc<Contract>> {
        self.by_service.read().get(service).cloned()
    }

    fn set(&self, service: &str, contract: Option<Contract>) {
        let mut table = self.by_service.write();
        match contract {
            Some(c) => table.insert(service.to_owned(), Arc::new(c)),
            None => table.remove(service),
        };
    }

    /// The merged document: the gateway's own `document` plus every online service's
    /// operations under `/api/…`, tagged by service, with its component schemas as
    /// `{service}.{name}`.
    pub fn merged(&self, document: &Value, registry: &Registry) -> Value {
        let mut doc = document.clone();
        let table = self.by_service.read();
        for config in registry.configs() {
            let name = config.name.as_str();
            let online = registry.status(name).is_some_and(|(s, _)| s.accepts_requests());
            let Some(contract) = table.get(name).filter(|_| online) else { continue };
            if let Some(Value::Object(paths)) = doc.get_mut("paths") {
                for (path, item) in &contract.merged_paths {
                    paths.insert(path.clone(), item.clone());
                }
            }
            if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
                for (schema_name, schema) in &contract.merged_schemas {
                    schemas.insert(schema_name.clone(), schema.clone());
                }
            }
            let tag = serde_json::json!({
                "name": name,
                "description": format!("{} (its own contract, OpenAPI {}, checked before forwarding)",
                    config.display_name, contract.openapi),
            });
            match doc.get_mut("tags") {
                Some(Value::Array(tags)) => tags.push(tag),
                _ => {
                    if let Some(obj) = doc.as_object_mut() {
                        obj.insert("tags".into(), Value::Array(vec![tag]));
                    }
                }
            }
        }
        doc
    }
}

/// Starts the loading on the current (actix) thread: each time a service becomes online, its
/// contract is fetched again. One loader per service (made at its first online transition, so
/// services a reload adds are covered too) keeps the loads of that service in order.
pub fn start(registry: Registry, contracts: Contracts) {
    let mut changes = registry.subscribe();
    let mut loaders: HashMap<String, mpsc::UnboundedSender<()>> = HashMap::new();
    let mut wake = move |registry: &Registry, name: &str| {
        let loader = loaders.entry(name.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            actix_rt::spawn(loader(name.to_owned(), registry.clone(), contracts.clone(), rx));
            tx
        });
        let _ = loader.send(());
    };
    actix_rt::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(c) if c.entry.status == ServiceStatus::Online && c.previous != ServiceStatus::Online => {
                    wake(&registry, &c.entry.name);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("contract loading missed {n} status changes; reloading every online service's contract");
                    for name in registry.names() {
                        if registry.status(&name).is_some_and(|(s, _)| s == ServiceStatus::Online) {
                            wake(&registry, &name);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Loads one service's contract each time it is asked to (requests that pile up while a load
/// runs are folded into one more load, so the newest document always wins), with the service's
/// configuration of that moment.
async fn loader(name: String, registry: Registry, contracts: Contracts, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        while rx.try_recv().is_ok() {}
        let Some(config) = registry.config(&name) else { continue };
        let Some(path) = config.openapi_path.clone() else {
            contracts.set(&name, None);
            continue;
        };
        let (contract, info) = fetch(&config, &path).await;
        match (&contract, &info.error) {
            (Some(c), _) => log::info!(
                "contract of {name} loaded from {path}: OpenAPI {}, {} operations under its routes",
                c.openapi,
                c.operations
            ),
            (None, Some(e)) => {
                log::warn!("contract of {name} not used ({path}): {e}; forwarding with the domain rules only")
            }
            (None, None) => {}
        }
        contracts.set(&name, contract);
        registry.update(&name, |s| s.contract = Some(info));
    }
}

/// Fetches and compiles a contract; the info says what happened.
async fn fetch(config: &ServiceConfig, path: &str) -> (Option<Contract>, ContractInfo) {
    let loaded_at = Some(gateway_core::now_rfc3339());
    let failed = |status, error: String| {
        (None, ContractInfo { status, operations: 0, loaded_at: loaded_at.clone(), error: Some(error) })
    };
    let call = Call {
        service: config,
        method: Method::GET,
        path_and_query: path,
        headers: vec![(header::ACCEPT, header::HeaderValue::from_static("application/json"))],
        body: bytes::Bytes::new(),
        timeout: FETCH_TIMEOUT.min(config.request_timeout),
    };
    let reply = match upstream::send(call).await {
        Ok(reply) => reply,
        Err(f) => return failed(ContractStatus::Missing, format!("cannot fetch it ({})", f.label())),
    };
    if !reply.status.is_success() {
        return failed(ContractStatus::Missing, format!("HTTP {}", reply.status.as_u16()));
    }
    match Contract::parse(&reply.body, config) {
        Ok(contract) => {
            let operations = contract.operations;
            // A contract with nothing under the service's routes checks nothing (and says so).
            let error = (operations == 0).then(|| {
                format!(
                    "no operation under its routes ({}): forwarded with the domain rules only",
                    config.routes.join(", ")
                )
            });
            (Some(contract), ContractInfo { status: ContractStatus::Loaded, operations, loaded_at, error })
        }
        Err(e) => failed(ContractStatus::Invalid, cut(&e.to_string())),
    }
}

fn cut(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests;
