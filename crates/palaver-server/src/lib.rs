//! Palaver's HTTP edge: the only crate that knows HTTP.
//!
//! - [`router`] lists every route of the Twilio-compatible REST API v1 in one place;
//! - `http/<resource>.rs` holds one handler per endpoint, each headed by its `METHOD /path`;
//! - [`error`] maps domain errors to HTTP statuses and Twilio error codes, in one place;
//! - `auth` checks HTTP Basic credentials (account SID + auth token, or API key SID + secret);
//! - [`metrics`] counts and times what an operator watches (`GET /metrics`), `observe` gives each request an
//!   id, a log span and its figures.
//!
//! [`run`] serves a bound listener until a shutdown future completes, so the binary and the tests share one
//! entry point. It also runs the conversation timer scheduler and the webhook dispatcher for as long as it
//! serves.

mod auth;
pub mod channels;
mod console;
pub mod error;
mod form;
mod gateway;
mod http;
pub mod limits;
mod listener;
pub mod media;
pub mod metrics;
mod observe;
mod paging;
pub mod push;
mod resources;
mod scope;
pub mod token;
mod twilsock;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use palaver_api::sid::AccountSid;
use palaver_core::Palaver;
use tokio::net::TcpListener;

pub use http::router;

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The domain.
    pub palaver: Palaver,
    /// The account this server belongs to.
    pub credentials: Arc<Credentials>,
    /// Set to true when the server shuts down, so realtime sessions close cleanly.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// Flow-control limits of realtime connections.
    pub realtime: RealtimeLimits,
    /// How non-chat participants are reached.
    pub channels: Arc<channels::ChannelSettings>,
    /// Where media bytes live.
    pub media: media::MediaStore,
    /// The cluster bus, when this node is one of several (see [`AppState::join_cluster`]).
    pub cluster: Option<palaver_cluster::ClusterBus>,
    /// Set when the server was asked to stop: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// How long a stopping server keeps serving (with `/readyz` answering 503) before it closes realtime
    /// sessions and stops accepting requests, so a load balancer can take it out of rotation first.
    pub drain_delay: std::time::Duration,
    /// Rates, caps and timeouts that keep one client from taking the server from the others (set them with
    /// [`AppState::with_limits`]).
    pub limits: Arc<limits::ServerLimits>,
    /// Open realtime sessions per user, for [`limits::ServerLimits::max_sessions_per_identity`].
    pub sessions: Arc<limits::SessionsPerIdentity>,
    /// Where push services are and how they are reached.
    pub push: Arc<push::PushSettings>,
    /// This server's metrics (`GET /metrics`); the store handed to the domain records into them too.
    pub metrics: Arc<metrics::Metrics>,
}

/// Why a node could not join a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterSetupError {
    /// The embedded database belongs to one process; nodes must share a PostgreSQL database.
    #[error("cluster mode (--nats) needs a shared database: start the node with --database postgres://…")]
    NeedsSharedStore,
    /// The bus could not be joined.
    #[error(transparent)]
    Bus(#[from] palaver_cluster::ClusterError),
}

impl AppState {
    /// Applies `limits`: the action rates to the domain, the rest to the server. Call before [`run`] and before
    /// cloning the state.
    pub fn with_limits(mut self, limits: limits::ServerLimits) -> Self {
        self.palaver = self.palaver.clone().with_action_rates(limits.action_rates());
        self.limits = Arc::new(limits);
        self
    }

    /// Joins the cluster whose nodes talk over the NATS server(s) at `nats_url`, on subjects starting with
    /// `subject_prefix`: from then on this node relays its commits, typing and cache invalidations to the
    /// others and hears theirs. Call before [`run`].
    ///
    /// # Errors
    /// [`ClusterSetupError::NeedsSharedStore`] on the embedded database; [`ClusterSetupError::Bus`] when NATS
    /// cannot be reached.
    pub async fn join_cluster(&mut self, nats_url: &str, subject_prefix: &str) -> Result<(), ClusterSetupError> {
        if self.palaver.store().committed_here().is_none() {
            return Err(ClusterSetupError::NeedsSharedStore);
        }
        let bus = palaver_cluster::ClusterBus::connect(nats_url, subject_prefix).await?;
        tracing::info!(node = bus.node_id(), "joined the cluster bus");
        self.palaver = self.palaver.clone().with_peers(bus.peers());
        self.cluster = Some(bus);
        Ok(())
    }
}

/// How much a realtime connection may buffer for a client, and for how long a full buffer may wait.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeLimits {
    /// Frames queued for one connection at most.
    pub send_queue: usize,
    /// How long a full queue waits for the client to read before the client is cut off as too slow.
    pub slow_consumer_grace: std::time::Duration,
}

impl Default for RealtimeLimits {
    fn default() -> Self {
        Self { send_queue: 4096, slow_consumer_grace: std::time::Duration::from_secs(5) }
    }
}

/// The account's primary credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `AC…`, the user name of HTTP Basic auth and the `sub` of access tokens.
    pub account_sid: AccountSid,
    /// The password of HTTP Basic auth, and the key that signs webhooks.
    pub auth_token: String,
}

/// Where the embedded database lives inside a data directory.
pub const DATABASE_FILE: &str = "palaver.sqlite3";

/// Opens (creating if needed) the embedded SQLite database in `data_dir`, bootstraps it, and returns the state
/// the server runs on.
///
/// # Errors
/// When the directory or database cannot be opened.
pub async fn open_embedded(
    data_dir: &std::path::Path,
    credentials: Credentials,
    settings: palaver_core::service::Settings,
) -> Result<AppState, palaver_core::Error> {
    open(data_dir, None, credentials, settings).await
}

/// Opens the state the server runs on, with its data in PostgreSQL when `database` is a `postgres://` URL
/// (migrated at open), else in the embedded SQLite database of `data_dir`. Media files are kept in `data_dir`
/// either way (unless the caller points them elsewhere).
///
/// # Errors
/// When the database cannot be opened, migrated or bootstrapped.
pub async fn open(
    data_dir: &std::path::Path,
    database: Option<&str>,
    credentials: Credentials,
    settings: palaver_core::service::Settings,
) -> Result<AppState, palaver_core::Error> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| palaver_core::Error::Storage(format!("cannot create {}: {e}", data_dir.display())))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let store: Arc<dyn palaver_core::store::Store> = match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(palaver_store_postgres::PostgresStore::open(url).await?)
        }
        Some(other) => {
            return Err(palaver_core::Error::Storage(format!(
                "unsupported database URL {other:?}: use postgres://… (or none for the embedded database)"
            )));
        }
        None => {
            let store = palaver_store_sqlite::SqliteStore::open(&data_dir.join(DATABASE_FILE))?;
            let recorder = Arc::clone(&metrics);
            store.on_group_commit(move |commit| recorder.group_committed(commit.writes, commit.elapsed));
            Arc::new(store)
        }
    };
    let store = Arc::new(metrics::MeteredStore::new(store, Arc::clone(&metrics)));
    let palaver = Palaver::new(store, Arc::new(palaver_core::SystemClock), settings);
    palaver.bootstrap().await?;
    Ok(AppState {
        palaver,
        credentials: Arc::new(credentials),
        shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        realtime: RealtimeLimits::default(),
        channels: Arc::new(channels::ChannelSettings::default()),
        media: media::MediaStore::local(&data_dir.join("media"))
            .map_err(|e| palaver_core::Error::Storage(format!("cannot open the media directory: {e}")))?,
        cluster: None,
        draining: Arc::default(),
        drain_delay: std::time::Duration::ZERO,
        limits: Arc::default(),
        sessions: Arc::default(),
        push: Arc::default(),
        metrics,
    }
    .with_limits(limits::ServerLimits::default()))
}

/// Serves the REST API on `listener` until `shutdown` completes, then finishes in-flight requests and returns.
/// The timer scheduler runs alongside and stops with it.
///
/// # Errors
/// When the listener fails.
pub async fn run(
    listener: TcpListener,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.shutdown.clone();
    let stop_background = state.shutdown.clone();
    let watcher = stopping.clone();
    let until_stopped = move || {
        let mut stopped = watcher.subscribe();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let relay = state.cluster.clone().map(|bus| {
        let palaver = state.palaver.clone();
        let stopped = until_stopped();
        tokio::spawn(async move {
            if let Err(err) = bus.run(palaver, stopped).await {
                tracing::error!(%err, "the cluster relay stopped; other nodes' changes arrive by polling only");
            }
        })
    });
    let scheduler = tokio::spawn(palaver_core::timers::run_timer_scheduler(state.palaver.clone(), until_stopped()));
    let feed = tokio::spawn(state.palaver.feed().clone().run(state.palaver.store().clone(), until_stopped()));
    let webhook_config = Arc::new(webhooks::WebhookConfigCache::new(
        state.palaver.store().clone(),
        state.palaver.webhook_epoch_counter(),
    ));
    let sender = webhooks::WebhookSender::new(&state.credentials.auth_token);
    let account_sid = state.credentials.account_sid.to_string();
    state.palaver = state.palaver.clone().with_pre_hooks(Arc::new(webhooks::HttpPreHooks::new(
        webhook_config.clone(),
        sender.clone(),
        account_sid.clone(),
    )));
    let dispatcher = tokio::spawn(webhooks::run_dispatcher(
        state.palaver.clone(),
        webhook_config,
        sender,
        account_sid,
        state.metrics.clone(),
        until_stopped(),
    ));
    let channel_dispatcher = tokio::spawn(channels::run_channel_dispatcher(
        state.palaver.clone(),
        (*state.channels).clone(),
        state.media.clone(),
        state.credentials.auth_token.clone(),
        state.metrics.clone(),
        until_stopped(),
    ));
    let push_dispatcher =
        tokio::spawn(push::run_push_dispatcher(state.palaver.clone(), (*state.push).clone(), until_stopped()));
    let event_counter =
        tokio::spawn(metrics::count_committed_events(state.metrics.clone(), state.palaver.clone(), until_stopped()));
    let draining = state.draining.clone();
    let drain_delay = state.drain_delay;
    let limits = state.limits.clone();
    let metrics = state.metrics.clone();
    let app: Router = router(state);
    let signal = async move {
        shutdown.await;
        // Out of the load balancer's rotation first (`/readyz` says 503), while still serving.
        draining.store(true, std::sync::atomic::Ordering::Release);
        if !drain_delay.is_zero() {
            tracing::info!(seconds = drain_delay.as_secs_f64(), "draining before stopping");
            tokio::time::sleep(drain_delay).await;
        }
        // Realtime sessions are not HTTP requests in flight: tell them to close so the graceful shutdown
        // does not wait on them.
        let _ = stopping.send(true);
    };
    let served = listener::serve(listener, app, limits, metrics, signal).await;
    // Also when serving failed rather than being asked to stop.
    let _ = stop_background.send(true);
    let _ = scheduler.await;
    let _ = feed.await;
    let _ = dispatcher.await;
    let _ = channel_dispatcher.await;
    let _ = push_dispatcher.await;
    let _ = event_counter.await;
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    served
}
