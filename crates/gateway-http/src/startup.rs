//! `Application::build`: opens the store, builds the registry, starts the supervisor, binds the
//! listener (port 0 works, for tests) and runs until SIGINT/SIGTERM, then stops every service.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{App, HttpServer, middleware, web};
use registry::Registry;

use crate::config::{Config, ConfigError};
use settings::{SettingsError, SettingsStore};
use supervisor::{Supervisor, SupervisorConfig, SupervisorError, SupervisorHandle};

use crate::edge::auth::Tokens;
use crate::os::shutdown_signal;
use crate::state::AppState;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is unusable.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The settings store could not be opened.
    #[error("settings store")]
    Settings(#[from] SettingsError),
    /// The supervisor could not start.
    #[error("supervisor")]
    Supervisor(#[from] SupervisorError),
    /// Another primary holds the cluster's broker.
    #[error("cluster")]
    Claim(#[from] crate::cluster::primary::ClaimRefused),
    /// The broker URL cannot be used.
    #[error("cluster broker {url}")]
    Broker {
        /// The URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: redis::RedisError,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS")]
    Tls(#[from] crate::tls::TlsError),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A built, listening application.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: AppState,
    admin_token: Option<String>,
}

impl Application {
    /// Builds everything and binds the listener; nothing is spawned yet (see
    /// [`Application::start_services`]). Must run inside an actix system. Without a
    /// configuration source, `POST /api/config/reload` refuses (see [`Application::build_reloadable`]).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        Self::build_reloadable(config, None).await
    }

    /// Like [`Application::build`], with the source a reload (the API, `orchestrator reload`,
    /// SIGHUP) reads the next configuration from.
    pub async fn build_reloadable(
        config: Config,
        source: Option<crate::reload::ConfigSource>,
    ) -> Result<Application, StartupError> {
        let bind = config.gateway.bind_addr()?;
        let broker = match &config.cluster {
            Some(cluster) => Some(
                crate::cluster::Broker::new(cluster)
                    .map_err(|source| StartupError::Broker { url: crate::cluster::redact(&cluster.broker), source })?,
            ),
            None => None,
        };
        let edge = config.cluster.as_ref().is_some_and(crate::config::ClusterConfig::is_edge);
        if let Some(broker) = broker.as_ref().filter(|_| !edge) {
            crate::cluster::primary::claim(broker).await?;
        }
        let registry = Registry::new(&config.services);
        let timers = config.gateway.timers.clone();
        // An edge has no store and no supervisor: its writes go to the primary.
        let (settings, admin_token, supervisor, limits, propagation, tokens) = if edge {
            let published = Arc::new(crate::cluster::PublishedTokens::default());
            (None, None, None, crate::state::CachedLimits::default(), None, Tokens::Published(published))
        } else {
            let data_dir = config.gateway.data_dir.clone();
            std::fs::create_dir_all(&data_dir)
                .map_err(|source| StartupError::DataDir { path: data_dir.clone(), source })?;
            let settings = SettingsStore::open(&data_dir.join("setup.db"))?;
            let admin_token = settings.ensure_admin_token(&data_dir)?;
            let supervisor = Supervisor::start(
                SupervisorConfig { health: config.health.clone(), data_dir: data_dir.clone() },
                registry.clone(),
            )?;
            let limits = crate::state::CachedLimits::load(&settings)?;
            let propagation = crate::outbound::propagation::start(registry.clone(), settings.clone());
            let tokens = Tokens::Store(Arc::new(settings::TokenVerifier::new(settings.clone(), timers.token_cache)?));
            (Some(settings), admin_token, Some(supervisor), limits, Some(propagation), tokens)
        };
        let hub = start_hub(&config);
        // An edge ingests nothing itself: the primary's events reach it through the broker.
        if !edge {
            crate::outbound::ingest::start(registry.clone(), hub.clone(), timers.ingest_reconnect_max);
        }
        let contracts = crate::contract::Contracts::default();
        crate::contract::start(registry.clone(), contracts.clone());
        let tickets = crate::realtime::Tickets::new(timers.ticket_ttl);
        crate::outbound::upstream::set_connect_timeout(timers.upstream_connect);
        let authenticator = crate::realtime::authenticator(tokens.clone(), tickets.clone());
        let metrics = Arc::new(crate::metrics::Metrics::new(config.services.iter().map(|s| s.name.as_str())));
        let tls = config.gateway.tls.as_ref().map(crate::tls::Certificates::load).transpose()?.map(Arc::new);
        let config_copy = config.clone();
        let state = AppState {
            config: Arc::new(config),
            registry,
            settings,
            supervisor,
            limits: Arc::new(parking_lot::RwLock::new(Arc::new(limits))),
            propagation,
            hub,
            tickets,
            authenticator,
            metrics,
            tokens,
            cluster: broker,
            published_settings: edge.then(Arc::default),
            suspects: Arc::default(),
            contracts,
            tls,
            reloader: Arc::new(crate::reload::Reloader::new(config_copy, source)),
        };

        let listener =
            TcpListener::bind(bind).map_err(|source| StartupError::Bind { addr: bind.to_string(), source })?;
        crate::realtime::drop_unresponsive_peers(&listener, state.config.hub.idle_timeout);
        if !bind.ip().is_loopback() && state.tls.is_none() {
            log::warn!(
                "listening on {bind} without TLS, reachable from other machines: tokens travel in clear text; set [gateway.tls] cert and key"
            );
        }
        let port =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: bind.to_string(), source })?.port();
        let data = web::Data::new(state.clone());
        let cors = web::Data::new(crate::edge::cors::CorsPolicy::new(&state.config.gateway.cors_allowed_origins));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(cors.clone())
                .configure(crate::routes::configure)
                .wrap(middleware::Condition::new(edge, middleware::from_fn(crate::cluster::edge::forward_to_primary)))
                .wrap(middleware::from_fn(crate::edge::auth::authenticate))
                .wrap(cors.layer())
                .wrap(middleware::from_fn(crate::edge::screen::screen))
                .wrap(middleware::from_fn(crate::edge::context::request_context))
        });
        let server = match &state.tls {
            Some(certs) => server.listen_rustls_0_23(listener, certs.server_config()?),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind { addr: bind.to_string(), source })?
        .shutdown_timeout(3)
        // Signals are ours (see `run_until_stopped`): real-time clients are closed first.
        .disable_signals()
        .run();
        actix_rt::spawn(crate::reload::reload_on_hangup(state.clone()));
        if let Some(broker) = &state.cluster {
            actix_rt::spawn(crate::cluster::nodes::publish_presence(broker.clone(), state.hub.clone()));
            match (&state.tokens, &state.settings) {
                (Tokens::Published(table), _) => {
                    let follow = crate::cluster::edge::Follow {
                        tokens: table.clone(),
                        settings: state.published_settings.clone().unwrap_or_default(),
                        registry: state.registry.clone(),
                        limits: state.limits.clone(),
                        gateway: bind,
                    };
                    actix_rt::spawn(crate::cluster::edge::follow_primary(broker.clone(), follow));
                }
                (Tokens::Store(_), Some(store)) => {
                    actix_rt::spawn(crate::cluster::primary::keep_claim(broker.clone()));
                    actix_rt::spawn(crate::cluster::primary::publish_state(
                        broker.clone(),
                        store.clone(),
                        state.registry.clone(),
                    ));
                }
                (Tokens::Store(_), None) => {}
            }
        }
        Ok(Application { port, server, state, admin_token })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin token, when it was created by this start (first start with no tokens).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The shared state (registry, settings, supervisor).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The supervisor, for embedding tools (`None` on a cluster edge).
    pub fn supervisor(&self) -> Option<&SupervisorHandle> {
        self.state.supervisor.as_ref()
    }

    /// Serves until SIGINT/SIGTERM (or the server is stopped), starting the autostart services in
    /// the background, then stops every managed service.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// [`Application::run_until_stopped`] that also shuts down, the same graceful way, when
    /// `stop` completes (a stop request of the Windows Service Control Manager).
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + 'static) -> std::io::Result<()> {
        let supervisor = self.state.supervisor.clone();
        if let Some(starter) = supervisor.clone() {
            actix_rt::spawn(async move { starter.start_all().await });
        }
        // On SIGINT/SIGTERM, close every WebSocket and SSE client with 1001 first: otherwise
        // their open connections hold the graceful stop for its whole timeout.
        let (server, hub) = (self.server.handle(), self.state.hub.clone());
        actix_rt::spawn(async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stop => log::info!("stop requested"),
            }
            log::info!("shutting down: closing real-time clients, then the HTTP server");
            hub.shutdown().await;
            server.stop(true).await;
        });
        let result = self.server.await;
        log::info!("gateway stopped; stopping services");
        self.state.hub.shutdown().await;
        if let Some(supervisor) = supervisor {
            supervisor.shutdown().await;
            log::info!("all services stopped");
        }
        if let (Some(broker), Some(_)) = (&self.state.cluster, &self.state.settings) {
            crate::cluster::primary::release(broker).await;
        }
        result
    }
}

/// The hub: on its own, or sharing the cluster's broker.
fn start_hub(config: &Config) -> hub::HubHandle {
    match &config.cluster {
        Some(cluster) => hub::Hub::start_clustered(config.hub.clone(), cluster.into()),
        None => hub::Hub::start(config.hub.clone()),
    }
}
