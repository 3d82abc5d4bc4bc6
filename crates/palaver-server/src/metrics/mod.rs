//! What an operator measures: the server's metrics, served at `GET /metrics` in the Prometheus text format
//! (or OpenMetrics when the scraper asks for it), and read by `palaver status`.
//!
//! One [`Metrics`] per server (not a process-wide registry), so that several servers in one process, as in the
//! tests, keep their figures apart. Counters and histograms move where things happen (the accept loop, the
//! request middleware in `observe`, both realtime gateways, the dispatchers, [`MeteredStore`]); the depths of
//! the outboxes and the refusals counted by the domain are read when a scrape asks for them.
//!
//! `docs/operations.md` lists every metric and what it means.

mod store;
pub mod text;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palaver_core::Palaver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use store::MeteredStore;

/// The Prometheus text format's content type (version 0.0.4), which `/metrics` answers by default.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The OpenMetrics text format's content type, answered when the scraper's `Accept` names it.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The realtime API a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    /// Palaver's own protocol, `GET /v1/realtime`.
    Realtime = 0,
    /// Twilsock for the official JS SDK, `GET /v3/wsconnect`.
    Twilsock = 1,
}

impl Api {
    fn label(self) -> ApiLabels {
        ApiLabels {
            api: match self {
                Self::Realtime => "realtime",
                Self::Twilsock => "twilsock",
            },
        }
    }
}

/// Which limit refused something (`palaver_rate_limited_total{limit}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request rate of one HTTP connection or realtime socket.
    ConnectionRate,
    /// Open connections from one IP address.
    ConnectionsPerIp,
    /// Open realtime sessions of one identity.
    SessionsPerIdentity,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::ConnectionRate => "connection_rate",
            Self::ConnectionsPerIp => "connections_per_ip",
            Self::SessionsPerIdentity => "sessions_per_identity",
        }
    }
}

/// What became of one attempt to send a channel delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelOutcome {
    /// Handed to the gateway or relay.
    Sent,
    /// Failed; will be tried again.
    Retry,
    /// Failed for good.
    Failed,
}

/// Whether a store operation reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbKind {
    /// Reads only.
    Read,
    /// Changes something (or claims work, which writes a lease).
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChannelOutcomeLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DbLabels {
    operation: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 0.25 ms to about 16 s, doubling: a request or a delivery on a quiet server takes well under a
/// millisecond, and one stuck behind a slow disk or client seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// Database operations from 50 µs (a read on SQLite) to about 3 s.
fn db_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_connections: Gauge,
    realtime_sessions: Family<ApiLabels, Gauge>,
    http_requests: Family<RequestLabels, Counter>,
    http_request_duration: HistogramFamily<RouteLabels>,
    events_committed: Family<KindLabels, Counter>,
    events_delivered: Family<ApiLabels, Counter>,
    delivery_latency: HistogramFamily<ApiLabels>,
    /// The two series of each of the above, by [`Api`], held directly: they move once per frame sent, the
    /// hottest path measured, and a family lookup (a lock and a hash) would cost more than the count.
    delivered_by_api: [(Counter, Histogram); 2],
    webhook_outbox: Family<StateLabels, Gauge>,
    webhook_backlog: Gauge,
    db_pool_connections: Family<StateLabels, Gauge>,
    db_pool_max: Gauge,
    db_pool_waiting: Gauge,
    webhook_attempts: Family<OutcomeLabels, Counter>,
    channel_outbox: Family<ChannelLabels, Gauge>,
    channel_attempts: Family<ChannelOutcomeLabels, Counter>,
    db_duration: HistogramFamily<DbLabels>,
    db_errors: Family<DbLabels, Counter>,
    group_commit_writes: Histogram,
    group_commit_duration: Histogram,
    rate_limited: Family<LimitLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under `palaver_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palaver");
        let metrics = Self {
            http_connections: Gauge::default(),
            realtime_sessions: Family::default(),
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(latency_histogram),
            events_committed: Family::default(),
            events_delivered: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram),
            delivered_by_api: [Counter::default(), Counter::default()].map(|c| (c, latency_histogram())),
            webhook_outbox: Family::default(),
            webhook_backlog: Gauge::default(),
            db_pool_connections: Family::default(),
            db_pool_max: Gauge::default(),
            db_pool_waiting: Gauge::default(),
            webhook_attempts: Family::default(),
            channel_outbox: Family::default(),
            channel_attempts: Family::default(),
            db_duration: Family::new_with_constructor(db_histogram),
            db_errors: Family::default(),
            group_commit_writes: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            group_commit_duration: db_histogram(),
            rate_limited: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_connections",
            "Open TCP connections, WebSockets upgraded from them included",
            metrics.http_connections.clone(),
        );
        registry.register(
            "realtime_sessions",
            "Open realtime sessions (authenticated WebSockets) by API: realtime (/v1/realtime) or twilsock (/v3/wsconnect)",
            metrics.realtime_sessions.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status class",
            metrics.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's head to its response's head, by route template",
            Unit::Seconds,
            metrics.http_request_duration.clone(),
        );
        registry.register(
            "events_committed",
            "Events committed to the event log (by any node of a cluster), as this node's live feed saw them, by kind",
            metrics.events_committed.clone(),
        );
        registry.register(
            "events_delivered",
            "Event frames sent to realtime sessions (live and replayed), by API",
            metrics.events_delivered.clone(),
        );
        registry.register_with_unit(
            "event_delivery_latency",
            "From a change's timestamp (taken just before its commit) to its live frame being queued for a session",
            Unit::Seconds,
            metrics.delivery_latency.clone(),
        );
        registry.register(
            "webhook_outbox",
            "Webhook requests in the outbox: pending (waiting for an attempt) or dead (out of attempts)",
            metrics.webhook_outbox.clone(),
        );
        registry.register(
            "webhook_backlog_events",
            "Events in the log not yet planned into the webhook outbox",
            metrics.webhook_backlog.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook requests sent by this node, by outcome (delivered or failed)",
            metrics.webhook_attempts.clone(),
        );
        registry.register(
            "channel_outbox",
            "Queued SMS, WhatsApp and email deliveries waiting for an attempt, by channel",
            metrics.channel_outbox.clone(),
        );
        registry.register(
            "channel_attempts",
            "Channel delivery attempts by this node, by channel and outcome (sent, retry, failed)",
            metrics.channel_attempts.clone(),
        );
        registry.register_with_unit(
            "db_operation_duration",
            "Time of each store operation, by operation (the Store method) and kind (read or write)",
            Unit::Seconds,
            metrics.db_duration.clone(),
        );
        registry.register(
            "db_operation_errors",
            "Store operations that failed, expected refusals (not found, conflicts) included",
            metrics.db_errors.clone(),
        );
        registry.register(
            "db_pool_connections",
            "PostgreSQL connections of this node's pool: busy (lent to an operation) or idle",
            metrics.db_pool_connections.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "PostgreSQL connections this node's pool opens at most",
            metrics.db_pool_max.clone(),
        );
        registry.register(
            "db_pool_waiting",
            "Store operations waiting for a PostgreSQL connection of this node's pool",
            metrics.db_pool_waiting.clone(),
        );
        registry.register(
            "sqlite_group_commit_writes",
            "Writes committed together in one SQLite transaction (one fsync)",
            metrics.group_commit_writes.clone(),
        );
        registry.register_with_unit(
            "sqlite_group_commit_duration",
            "Time of one SQLite group commit, from BEGIN to COMMIT returning",
            Unit::Seconds,
            metrics.group_commit_duration.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests and connections refused by a limit: conversation, service (Twilio's action rates), \
             connection_rate, connections_per_ip, sessions_per_identity",
            metrics.rate_limited.clone(),
        );
        // The series known in advance start at zero, so that a rate over them is defined from the first scrape.
        for api in [Api::Realtime, Api::Twilsock] {
            drop(metrics.realtime_sessions.get_or_create(&api.label()));
        }
        for outcome in ["delivered", "failed"] {
            drop(metrics.webhook_attempts.get_or_create(&OutcomeLabels { outcome }));
        }
        for channel in ["sms", "whatsapp", "email"] {
            for outcome in ["sent", "retry", "failed"] {
                drop(metrics.channel_attempts.get_or_create(&ChannelOutcomeLabels { channel, outcome }));
            }
        }
        for limit in ["conversation", "service"].into_iter().chain(
            [Refusal::ConnectionRate, Refusal::ConnectionsPerIp, Refusal::SessionsPerIdentity].map(Refusal::label),
        ) {
            drop(metrics.rate_limited.get_or_create(&LimitLabels { limit }));
        }
        let delivered_by_api = [Api::Realtime, Api::Twilsock].map(|api| {
            (
                metrics.events_delivered.get_or_create_owned(&api.label()),
                metrics.delivery_latency.get_or_create_owned(&api.label()),
            )
        });
        Self { registry, delivered_by_api, ..metrics }
    }

    /// Counts an open connection until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> Open {
        Open::new(self.http_connections.clone())
    }

    /// Counts an open realtime session until the guard is dropped.
    pub(crate) fn session_opened(&self, api: Api) -> Open {
        Open::new(self.realtime_sessions.get_or_create(&api.label()).clone())
    }

    /// Records an answered HTTP request. `route` is the matched route template, never the raw path, so the
    /// number of series stays bounded.
    pub(crate) fn request_answered(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests
            .get_or_create(&RequestLabels { method: method.to_string(), route: route.to_string(), status })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels { route: route.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts `count` committed events of `kind`.
    pub(crate) fn events_committed(&self, kind: &'static str, count: u64) {
        self.events_committed.get_or_create(&KindLabels { kind }).inc_by(count);
    }

    /// Counts an event frame sent to a session; `live` carries the event's time for the latency histogram
    /// (replayed events carry none: their age is the client's absence, not the server's delay).
    pub(crate) fn event_delivered(&self, api: Api, live: Option<time::OffsetDateTime>) {
        let (delivered, latency) = &self.delivered_by_api[api as usize];
        delivered.inc();
        if let Some(at) = live {
            latency.observe((time::OffsetDateTime::now_utc() - at).as_seconds_f64().max(0.0));
        }
    }

    /// Counts a webhook request sent, delivered (`true`, a 2xx answer) or failed.
    pub(crate) fn webhook_attempted(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.webhook_attempts.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a channel delivery attempt.
    pub(crate) fn channel_attempted(&self, channel: &'static str, outcome: ChannelOutcome) {
        let outcome = match outcome {
            ChannelOutcome::Sent => "sent",
            ChannelOutcome::Retry => "retry",
            ChannelOutcome::Failed => "failed",
        };
        self.channel_attempts.get_or_create(&ChannelOutcomeLabels { channel, outcome }).inc();
    }

    /// Records one store operation.
    pub(crate) fn db_operation(&self, operation: &'static str, kind: DbKind, elapsed: Duration, ok: bool) {
        let labels = DbLabels {
            operation,
            kind: match kind {
                DbKind::Read => "read",
                DbKind::Write => "write",
            },
        };
        self.db_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if !ok {
            self.db_errors.get_or_create(&labels).inc();
        }
    }

    /// Records one SQLite group commit (the hook of `SqliteStore::on_group_commit`).
    pub fn group_committed(&self, writes: usize, elapsed: Duration) {
        self.group_commit_writes.observe(writes as f64);
        self.group_commit_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a refusal by one of the server's own limits.
    pub(crate) fn refused(&self, refusal: Refusal) {
        self.rate_limited.get_or_create(&LimitLabels { limit: refusal.label() }).inc();
    }

    /// Reads what is measured at scrape time (the outboxes' depths, the domain's refusal counts) and renders
    /// every metric, in OpenMetrics when `openmetrics`, else in the Prometheus text format.
    pub async fn render(&self, palaver: &Palaver, openmetrics: bool) -> String {
        self.refresh(palaver).await;
        let mut text = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        };
        if let Err(err) = encoded {
            tracing::error!(%err, "could not render the metrics");
        }
        text
    }

    async fn refresh(&self, palaver: &Palaver) {
        let rates = palaver.action_rates();
        for (limit, rate) in [("conversation", &rates.conversation), ("service", &rates.service)] {
            let refused = rate.as_ref().map_or(0, |rate| rate.refused());
            // The domain keeps the count; the counter shows it.
            self.rate_limited.get_or_create(&LimitLabels { limit }).inner().store(refused, Ordering::Relaxed);
        }
        let store = palaver.store();
        if let Some(pool) = store.connection_pool() {
            let idle = pool.idle.min(pool.open);
            self.db_pool_connections.get_or_create(&StateLabels { state: "busy" }).set(count(pool.open - idle));
            self.db_pool_connections.get_or_create(&StateLabels { state: "idle" }).set(count(idle));
            self.db_pool_max.set(count(pool.max));
            self.db_pool_waiting.set(count(pool.waiting));
        }
        // A scrape must answer even while the database does not: the figures it could not read are left as
        // they were last read.
        let read = async {
            let depths = store.outbox_depths().await?;
            let backlog = store.last_log_id().await? - store.webhook_cursor().await?;
            Ok::<_, palaver_core::Error>((depths, backlog))
        };
        match tokio::time::timeout(SCRAPE_READ_TIMEOUT, read).await {
            Ok(Ok((depths, backlog))) => {
                self.webhook_outbox
                    .get_or_create(&StateLabels { state: "pending" })
                    .set(gauge(depths.webhooks_pending));
                self.webhook_outbox.get_or_create(&StateLabels { state: "dead" }).set(gauge(depths.webhooks_dead));
                self.webhook_backlog.set(backlog.max(0));
                for (channel, pending) in depths.channels_pending {
                    self.channel_outbox.get_or_create(&ChannelLabels { channel: channel.as_str() }).set(gauge(pending));
                }
            }
            Ok(Err(err)) => tracing::warn!(%err, "could not read the outboxes' depths for /metrics"),
            Err(_) => tracing::warn!("reading the outboxes' depths for /metrics took too long"),
        }
    }
}

/// How long a scrape waits for the database before answering with the figures it has.
const SCRAPE_READ_TIMEOUT: Duration = Duration::from_secs(2);

fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn count(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Holds one in a gauge of open things (connections, sessions); dropping it lets go.
#[derive(Debug)]
pub(crate) struct Open {
    gauge: Gauge,
}

impl Open {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Counts the events this node's live feed publishes, by kind, until `shutdown` completes.
pub(crate) async fn count_committed_events(
    metrics: Arc<Metrics>,
    palaver: Palaver,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::pin!(shutdown);
    let mut feed = palaver.feed().subscribe();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            item = feed.recv() => match item {
                Ok(item) => metrics.events_committed(item.event.kind.as_str(), 1),
                // Their kinds are lost with them; the total stays right.
                Err(RecvError::Lagged(skipped)) => metrics.events_committed("unknown", skipped),
                Err(RecvError::Closed) => return,
            },
        }
    }
}
