//! Settings propagation (SPEC §9): after a committed change, each service whose
//! `settings_keys` include a changed key gets `POST {settings_path}` with
//! `{"changed": {…}, "all": {…}}`; every time a service becomes online it gets all of its keys,
//! so a service that was down during a change is brought up to date when it returns.
//!
//! One worker per service sends its pushes in order; `all` is read when the push is sent, so the
//! newest values always win.

use std::collections::BTreeMap;

use actix_web::http::{Method, header};
use gateway_core::ServiceStatus;
use registry::Registry;
use serde_json::{Map, Value};
use settings::SettingsStore;
use tokio::sync::{broadcast, mpsc};

use crate::outbound::upstream::{self, Call};

/// Committed changes, key → new value.
pub type SettingsChange = BTreeMap<String, Value>;

/// The sending side, kept in the application state.
#[derive(Clone, Debug)]
pub struct Propagation {
    tx: mpsc::UnboundedSender<SettingsChange>,
}

impl Propagation {
    /// Reports a committed change (never blocks).
    pub fn changed(&self, change: SettingsChange) {
        if self.tx.send(change).is_err() {
            log::warn!("settings propagation is not running; the change reaches services when they next come online");
        }
    }
}

enum Push {
    /// Only these keys changed (plus `all`).
    Changed(Map<String, Value>),
    /// The service came online: send everything.
    All,
}

/// Starts propagation on the current (actix) thread.
pub fn start(registry: Registry, store: SettingsStore) -> Propagation {
    let (tx, mut rx) = mpsc::unbounded_channel::<SettingsChange>();
    let mut workers: BTreeMap<String, mpsc::UnboundedSender<Push>> = BTreeMap::new();
    let registry_for_workers = registry.clone();
    // One worker per notified service, made when first needed: services a reload adds get one
    // too, and each push reads the service's configuration as it is then.
    let mut worker_for = move |name: &str| -> Option<mpsc::UnboundedSender<Push>> {
        let config = registry_for_workers.config(name)?;
        if config.settings_path.is_none() || config.settings_keys.is_empty() {
            return None;
        }
        let tx = workers.entry(name.to_owned()).or_insert_with(|| {
            let (wtx, wrx) = mpsc::unbounded_channel();
            actix_rt::spawn(worker(name.to_owned(), registry_for_workers.clone(), store.clone(), wrx));
            wtx
        });
        Some(tx.clone())
    };
    let mut changes = registry.subscribe();
    actix_rt::spawn(async move {
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some(change) = change else { break };
                    for config in registry.configs() {
                        let relevant: Map<String, Value> = change
                            .iter()
                            .filter(|(k, _)| config.settings_keys.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !relevant.is_empty() && let Some(w) = worker_for(config.name.as_str()) {
                            let _ = w.send(Push::Changed(relevant));
                        }
                    }
                }
                event = changes.recv() => match event {
                    Ok(c) if c.entry.status == ServiceStatus::Online && c.previous != ServiceStatus::Online => {
                        if let Some(w) = worker_for(&c.entry.name) {
                            let _ = w.send(Push::All);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("settings propagation missed {n} status changes; re-sending all settings to online services");
                        for name in registry.names() {
                            if registry.status(&name).is_some_and(|(s, _)| s == ServiceStatus::Online)
                                && let Some(w) = worker_for(&name)
                            {
                                let _ = w.send(Push::All);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    Propagation { tx }
}

async fn worker(name: String, registry: Registry, store: SettingsStore, mut rx: mpsc::UnboundedReceiver<Push>) {
    while let Some(push) = rx.recv().await {
        let Some(config) = registry.config(&name) else { return };
        let Some(path) = config.settings_path.clone() else { continue };
        let accepting = registry.status(config.name.as_str()).is_some_and(|(s, _)| s.accepts_requests());
        if !accepting {
            log::debug!("{} is down; it gets its settings when it comes online", config.name);
            continue;
        }
        let keys = config.settings_keys.clone();
        let reader = store.clone();
        let all = match actix_web::web::block(move || reader.values(&keys)).await {
            Ok(Ok(all)) => all,
            Ok(Err(e)) => {
                log::error!("cannot read settings for {}: {e}", config.name);
                continue;
            }
            Err(e) => {
                log::error!("cannot read settings for {}: {e}", config.name);
                continue;
            }
        };
        let changed = match push {
            Push::Changed(c) => c,
            Push::All => all.clone(),
        };
        let body = serde_json::json!({ "changed": changed, "all": all });
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot encode settings for {}: {e}", config.name);
                continue;
            }
        };
        let call = Call {
            service: &config,
            method: Method::POST,
            path_and_query: &path,
            headers: vec![(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"))],
            body: body.into(),
            timeout: config.request_timeout,
        };
        match upstream::send(call).await {
            Ok(reply) if reply.status.is_success() => {
                log::info!("pushed settings {:?} to {}", changed.keys().collect::<Vec<_>>(), config.name);
            }
            Ok(reply) => log::warn!("{} refused settings: HTTP {}", config.name, reply.status.as_u16()),
            Err(f) => {
                log::warn!("pushing settings to {} failed ({f:?}); it gets them when it next comes online", config.name)
            }
        }
    }
}
