//! `Application::build` prepares everything (database, keys, seeds, socket) and fails
//! with one clear line; `run_until_stopped` serves until SIGINT/SIGTERM and lets
//! in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::accounts::{AccountError, Accounts, PasswordHasher};
use crate::clients::{ClientError, Clients};
use crate::config::{Config, redact_url};
use crate::http::{AppState, app, metrics::Metrics};
use crate::keys::{KeyError, KeyRing};
use crate::oidc::discovery::provider_metadata;
use crate::sessions::Sessions;
use crate::storage::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error("cannot migrate the database: {0}")]
    Migrate(StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("cannot seed [[clients]]: {0}")]
    Clients(#[from] ClientError),
    #[error("cannot seed [[users]]: {0}")]
    Users(#[from] AccountError),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Opens and migrates the database named by the config.
pub async fn open_store(config: &Config) -> Result<Store, StartupError> {
    use secrecy::ExposeSecret;
    let store = Store::connect(&config.database.url, config.database.max_connections)
        .await
        .map_err(|source| StartupError::Database {
            url: redact_url(config.database.url.expose_secret()),
            source,
        })?;
    store.migrate().await.map_err(StartupError::Migrate)?;
    Ok(store)
}

/// The password hasher sized to the machine.
pub fn password_hasher() -> Result<PasswordHasher, StartupError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    PasswordHasher::new(cores).map_err(|e| StartupError::Other(e.to_string()))
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    /// `server.metrics_bind`'s listener and port.
    management: Option<(TcpListener, u16)>,
    state: AppState,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        // Bind first: a taken port should fail before anything is created on disk.
        let listener = TcpListener::bind(&config.server.bind)
            .await
            .map_err(|source| StartupError::Bind {
                bind: config.server.bind.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                bind: config.server.bind.clone(),
                source,
            })?
            .port();
        let management = match &config.server.metrics_bind {
            Some(bind) => {
                let failed = |source| StartupError::Bind {
                    bind: bind.clone(),
                    source,
                };
                let listener = TcpListener::bind(bind).await.map_err(failed)?;
                let port = listener.local_addr().map_err(failed)?.port();
                Some((listener, port))
            }
            None => None,
        };
        let store = open_store(&config).await?;
        let keys = KeyRing::load(store.clone(), &config.keys.dir).await?;
        let declared = config
            .client_records()
            .map_err(|e| StartupError::Other(e.to_string()))?;
        Clients::new(store.clone()).sync_declared(&declared).await?;
        if !config.users.is_empty() {
            Accounts::new(store.clone(), password_hasher()?)
                .seed(&config.seed_users())
                .await?;
        }
        let discovery = serde_json::to_vec(&provider_metadata(
            &config.server.issuer,
            config.accounts.allow_registration,
        ))
        .map_err(|e| StartupError::Other(e.to_string()))?;
        let shutdown_timeout = Duration::from_secs(config.server.shutdown_timeout_seconds);
        let trusted_proxies: Arc<Vec<_>> = Arc::new(
            config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::ratelimit::client_ip::Block::parse(p))
                .collect(),
        );
        let flood =
            crate::ratelimit::flood::Flood::from_config(&config.ratelimit, trusted_proxies.clone())
                .map(Arc::new);
        let rates = crate::ratelimit::Rates {
            failures_per_user: config.ratelimit.password_failures_per_minute,
            failures_per_ip: config.ratelimit.password_failures_per_minute_per_ip,
            requests_per_ip: config.ratelimit.requests_per_minute_per_ip,
        };
        let limits = match config.ratelimit.backend {
            crate::config::RateLimitBackend::Database => {
                crate::ratelimit::Limits::database(store.clone(), rates)
            }
            crate::config::RateLimitBackend::Redis => {
                use secrecy::ExposeSecret;
                let url = config
                    .ratelimit
                    .redis_url
                    .as_ref()
                    .map(|u| u.expose_secret().to_string())
                    .unwrap_or_default();
                let redis = crate::ratelimit::RedisLimits::connect(
                    &url,
                    &config.ratelimit.redis_key_prefix,
                    rates,
                )
                .await
                .map_err(|e| {
                    StartupError::Other(format!("cannot connect to ratelimit.redis_url: {e}"))
                })?;
                crate::ratelimit::Limits::Redis(redis)
            }
            crate::config::RateLimitBackend::Memory => crate::ratelimit::Limits::memory(rates),
        };
        let accounts = Accounts::new(store.clone(), password_hasher()?)
            .requiring_verified_email(config.accounts.require_verified_email);
        let mailer = crate::email::Mailer::from_config(&config.email)
            .map_err(|e| StartupError::Other(e.to_string()))?;
        let logout_wake = Arc::new(tokio::sync::Notify::new());
        let sessions = Sessions::from_config(store.clone(), &config, logout_wake.clone());
        let selfservice = crate::accounts::SelfService::new(
            accounts.clone(),
            store.clone(),
            sessions.clone(),
            mailer,
            &config.server.issuer,
        );
        let templates = crate::http::pages::templates()
            .map_err(|e| StartupError::Other(format!("templates: {e}")))?;
        let clients = crate::clients::ClientCache::new(
            store.clone(),
            Duration::from_secs(config.database.client_cache_seconds),
        );
        let cookies = crate::http::pages::CookieNames::for_issuer(&config.server.issuer);
        let limits = Arc::new(limits);
        let audit = crate::audit::Audit::new();
        let metrics = Metrics::new();
        let sign_in = crate::authn::SignIn::new(
            store.clone(),
            accounts.clone(),
            limits.clone(),
            audit.clone(),
            metrics.clone(),
        );
        let config = Arc::new(config);
        let grants = crate::grants::Grants::new(
            config.clone(),
            store.clone(),
            sessions.clone(),
            keys.clone(),
            sign_in.clone(),
            audit.clone(),
        );
        let state = AppState::new(crate::http::Shared {
            grants,
            sign_in,
            cookies,
            logout_wake,
            clients: Arc::new(clients),
            selfservice,
            config,
            store,
            keys,
            discovery: discovery.into(),
            metrics,
            accounts,
            sessions,
            templates: Arc::new(templates),
            trusted_proxies,
            flood,
            limits,
            audit,
        });
        Ok(Self {
            listener,
            port,
            management,
            state,
            shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management listener's port (`server.metrics_bind`), when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.management.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then stops accepting, lets in-flight requests
    /// finish, and gives up on them after `server.shutdown_timeout_seconds`.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let reloader = tokio::spawn(reload_keys(
            self.state.keys.clone(),
            Duration::from_secs(self.state.config.keys.reload_seconds),
        ));
        let flood_pruner = self
            .state
            .flood
            .clone()
            .map(|flood| tokio::spawn(prune_flood_periodically(flood)));
        let purger = tokio::spawn(purge_periodically(
            self.state.store.clone(),
            Duration::from_secs(self.state.config.database.purge_interval_minutes * 60),
            self.state.config.audit.retention_days as i64 * 86_400,
        ));
        let logouts = match crate::sessions::backchannel::LogoutSender::new(
            self.state.store.clone(),
            self.state.keys.clone(),
            &self.state.config.server.issuer,
            self.state.logout_wake.clone(),
        ) {
            Ok(sender) => Some(tokio::spawn(sender.run(LOGOUT_POLL))),
            Err(e) => {
                tracing::error!(error = %e, "back-channel logout cannot send: no HTTP client");
                None
            }
        };
        let audit_stop = Arc::new(tokio::sync::Notify::new());
        let audit_writer = tokio::spawn(
            self.state
                .audit
                .clone()
                .run_writer(self.state.store.clone(), audit_stop.clone()),
        );
        let stopping = Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        // One signal stops both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stop_on_signal = tokio::spawn(async move {
            signal.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop.send(true);
            notify.notify_one();
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let router = app(self.state.clone());
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(until_stopped(stopped.clone()));
        let mut server = tokio::spawn(async move { server.await });
        let management = self.management.map(|(listener, _)| {
            let server = axum::serve(listener, crate::http::management(self.state.clone()))
                .with_graceful_shutdown(until_stopped(stopped.clone()));
            tokio::spawn(async move { server.await })
        });
        let timeout = self.shutdown_timeout;
        let result = tokio::select! {
            joined = &mut server => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = async { stopping.notified().await; tokio::time::sleep(timeout).await } => {
                tracing::warn!(seconds = timeout.as_secs(), "shutdown timeout reached; dropping remaining requests");
                server.abort();
                Ok(())
            }
        };
        if let Some(mut management) = management {
            // Probes answer at once; do not wait for a stuck scrape beyond the timeout.
            if tokio::time::timeout(timeout, &mut management)
                .await
                .is_err()
            {
                management.abort();
            }
        }
        stop_on_signal.abort();
        if let Some(pruner) = flood_pruner {
            pruner.abort();
        }
        reloader.abort();
        purger.abort();
        if let Some(logouts) = logouts {
            logouts.abort();
        }
        // Events of the requests that just finished are written before the pool closes.
        audit_stop.notify_one();
        if tokio::time::timeout(Duration::from_secs(5), audit_writer)
            .await
            .is_err()
        {
            tracing::warn!("audit writer did not finish within 5 s");
        }
        self.state.store.close().await;
        result
    }
}

/// How often queued back-channel logouts are looked for when nothing wakes the sender
/// (retries, and sessions ended by another instance).
const LOGOUT_POLL: Duration = Duration::from_secs(2);

/// Picks up keys rotated or retired by the CLI or another instance.
async fn reload_keys(keys: KeyRing, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = keys.reload().await {
            tracing::warn!(error = %e, "signing keys not reloaded");
        }
    }
}

/// Drops the flood-control buckets of addresses that have gone quiet, so memory follows
/// the active clients, not every address ever seen.
async fn prune_flood_periodically(flood: Arc<crate::ratelimit::flood::Flood>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        flood.prune();
    }
}

/// Deletes expired rows now and then; several instances may all run it (the deletes are
/// idempotent).
async fn purge_periodically(store: Store, every: Duration, audit_retention: i64) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = crate::storage::unix_now();
        match store.purge_expired(now).await {
            Ok(purged) if purged.total() > 0 => tracing::info!(?purged, "expired rows purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
        match store.purge_audit(now - audit_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "audit events past retention purged"),
            Err(e) => tracing::warn!(error = %e, "audit purge failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
