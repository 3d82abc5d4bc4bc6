//! Webhook delivery: signing requests as Twilio does, the dispatcher that turns the event log into outbox
//! entries and delivers them with retries, and the pre-event hook caller that SDK actions wait on.
//!
//! Durability: every change is committed together with its event; the dispatcher plans events into the
//! outbox and moves its cursor in one transaction, and removes an entry only after a 2xx answer. A restart at
//! any point therefore re-plans or re-sends, and never forgets; an entry answered with 2xx is never sent again.
//!
//! Clusters: every node runs a dispatcher over the one shared log and outbox. The cursor moves by
//! compare-and-set, so each event is planned by one node exactly once (see [`run_dispatcher`]), and sending
//! claims entries for [`WEBHOOK_LEASE`], so two nodes do not send one entry at once and the entries of a node
//! that died are sent by another when their lease ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use palaver_api::sid::ServiceSid;
use palaver_core::webhook::*;
use palaver_core::{Palaver, Store};
use serde_json::Value;
use sha1::Sha1;
use time::OffsetDateTime;

/// Twilio's limit for a webhook answer.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed webhook outbox entry belongs to the node that claimed it: other nodes' claims skip it
/// until then, and take it over after, as the entry of a node that died. It must outlast an attempt (bounded
/// by [`WEBHOOK_TIMEOUT`]), or a slow attempt would be repeated by another node while it runs; beyond that,
/// shorter is better: it is how long a dead node's webhooks wait.
pub const WEBHOOK_LEASE: Duration = Duration::from_secs(15);
const _: () = assert!(2 * WEBHOOK_TIMEOUT.as_secs() <= WEBHOOK_LEASE.as_secs(), "a lease outlasts two attempts");
/// Attempts before an outbox entry is given up (kept as dead).
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Events read from the log per planning step.
const PLAN_BATCH: u32 = 500;
/// Outbox entries sent per delivery round.
const DELIVERY_BATCH: u32 = 64;

/// `X-Twilio-Signature` for a request to `url` with form `params`: base64 of HMAC-SHA1, keyed with the auth
/// token, over the URL followed by every parameter name and value, sorted by name (then value).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Sends signed webhook requests.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    auth_token: Arc<str>,
}

/// Why a webhook request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer (connection refused, timeout…).
    #[error("no answer: {0}")]
    Unreachable(String),
    /// An answer that is not 2xx.
    #[error("answered {0}")]
    Status(u16),
}

impl WebhookSender {
    /// A sender signing with `auth_token`.
    pub fn new(auth_token: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .user_agent(concat!("Palaver/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client, auth_token: Arc::from(auth_token) }
    }

    /// Sends `params` to `url`; returns the body of a 2xx answer.
    ///
    /// # Errors
    /// When there is no 2xx answer within [`WEBHOOK_TIMEOUT`].
    pub async fn send(&self, url: &str, method: HookMethod, params: &[(String, String)]) -> Result<String, SendError> {
        let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
        let request = match method {
            HookMethod::Post => self
                .client
                .post(url)
                .header("X-Twilio-Signature", signature(&self.auth_token, url, params))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encoded),
            HookMethod::Get => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let full = format!("{url}{separator}{encoded}");
                self.client.get(&full).header("X-Twilio-Signature", signature(&self.auth_token, &full, &[]))
            }
        };
        let response = request.send().await.map_err(|e| SendError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SendError::Status(status.as_u16()));
        }
        response.text().await.map_err(|e| SendError::Unreachable(e.to_string()))
    }
}

/// Every webhook setting, reloaded when the domain says a setting changed (and every few seconds, for
/// changes made by another process sharing the database).
#[derive(Debug)]
pub struct WebhookConfigCache {
    store: Arc<dyn Store>,
    epoch: Arc<AtomicU64>,
    cached: RwLock<Option<(u64, Instant, Arc<WebhookConfig>)>>,
}

const CONFIG_MAX_AGE: Duration = Duration::from_secs(5);

impl WebhookConfigCache {
    /// A cache over `store`, invalidated by `epoch`.
    pub fn new(store: Arc<dyn Store>, epoch: Arc<AtomicU64>) -> Self {
        Self { store, epoch, cached: RwLock::new(None) }
    }

    /// The current settings.
    ///
    /// # Errors
    /// When they cannot be read.
    pub async fn get(&self) -> palaver_core::Result<Arc<WebhookConfig>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some((seen, at, config)) = &*self.cached.read().unwrap_or_else(|e| e.into_inner())
            && *seen == epoch
            && at.elapsed() < CONFIG_MAX_AGE
        {
            return Ok(config.clone());
        }
        let config = Arc::new(self.store.webhook_config().await?);
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some((epoch, Instant::now(), config.clone()));
        Ok(config)
    }
}

/// Calls pre-event webhooks over HTTP.
#[derive(Debug)]
pub struct HttpPreHooks {
    config: Arc<WebhookConfigCache>,
    sender: WebhookSender,
    account_sid: String,
}

impl HttpPreHooks {
    /// Pre-event hooks from `config`, sent by `sender`.
    pub fn new(config: Arc<WebhookConfigCache>, sender: WebhookSender, account_sid: String) -> Self {
        Self { config, sender, account_sid }
    }
}

#[async_trait]
impl PreEventHooks for HttpPreHooks {
    async fn ask(
        &self,
        service: &ServiceSid,
        event_type: WebhookEventType,
        mut params: Vec<(String, String)>,
    ) -> palaver_core::Result<PreHookVerdict> {
        let config = self.config.get().await?;
        params.insert(0, ("AccountSid".into(), self.account_sid.clone()));
        params.push(("RetryCount".into(), "0".into()));
        let mut merged = serde_json::Map::new();
        let mut asked: Vec<&str> = Vec::new();
        for settings in config.settings_for(service.as_str()) {
            let Some(url) = settings.pre_webhook_url.as_deref() else { continue };
            if !settings.filters.contains(&event_type) || asked.contains(&url) {
                continue;
            }
            asked.push(url);
            match self.sender.send(url, settings.method, &params).await {
                Ok(body) => {
                    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&body) {
                        merged.extend(fields);
                    }
                }
                Err(err) => {
                    tracing::info!(%url, event = event_type.as_str(), %err, "pre-event webhook refused the action");
                    return Ok(PreHookVerdict::Reject(err.to_string()));
                }
            }
        }
        Ok(PreHookVerdict::Allow((!merged.is_empty()).then_some(merged)))
    }
}

/// How long to wait before attempt `attempts + 1`, after `attempts` failures: 1 s, doubling, at most 5 min.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// Plans the event log into the outbox and delivers it, until `shutdown` completes.
///
/// # Planning on several nodes
///
/// Each node's dispatcher reads the log after its own position `read` and keeps `saved`, the stored cursor
/// as the store last reported it (both in a [`PlanningCursor`]); each batch it writes covers the log range
/// `(saved, read]` and is offered with [`Store::enqueue_webhooks`]`(deliveries, saved, read, …)`, which adds
/// it only if the stored cursor has not passed `saved`, and answers with the stored cursor. No event is planned
/// twice, and none is skipped:
///
/// - The stored cursor `C` never goes back, and every range `(from, to]` that enters the outbox starts at the
///   `C` of its moment: `from` is a value `C` had (read at start, or answered by an earlier call), so
///   `from <= C`, and the store adds the batch only if `C <= from`, that is `C == from`, then sets `C = to`,
///   all under the cursor's lock. Successive accepted ranges are therefore `(C0, C1]`, `(C1, C2]`, …: they
///   neither overlap (no event twice) nor leave holes (no event skipped) up to the current `C`.
/// - A batch holds the deliveries of *every* event of its range: the log's ids become visible in commit
///   order (the stores guarantee it for tails by id), so a read after `from` that returned an event with id
///   `to` returned every event with an id in `(from, to]`.
/// - A refused batch adds nothing; its node drops it and goes on from the answered cursor, which an accepted
///   batch reached (another node's, or this node's own whose answer was lost to an error after its commit:
///   offered again from the old stored cursor, it is refused). So each event it dropped is either below
///   the answer, planned once already, or above it, and read and offered again.
///
/// An empty batch (nothing to send) is saved only every couple of seconds, since the cursor is then only a
/// hint; it follows the same rule, so a node that was overtaken meanwhile learns it there too.
pub async fn run_dispatcher(
    palaver: Palaver,
    config: Arc<WebhookConfigCache>,
    sender: WebhookSender,
    account_sid: String,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let store = palaver.store().clone();
    let mut wakeups = Wakeups::new(palaver.feed().subscribe());
    // How far this node has read the log, and where the batch it is building starts: the stored cursor as
    // last seen (see the planning rule above).
    let mut cursor = match store.webhook_cursor().await {
        Ok(cursor) => PlanningCursor::new(cursor),
        Err(err) => {
            tracing::error!(%err, "cannot read the webhook cursor; webhooks are off");
            return;
        }
    };
    // Whether the outbox may hold entries; false once it was seen empty and nothing was added since, so an
    // idle server does not query it on every event. Another node's planning (learnt from a refused batch)
    // counts as an addition: this node helps send, and takes over the entries if that node dies.
    let mut outbox_pending = true;
    loop {
        let planned = plan(&store, &config, &account_sid, &mut cursor.read).await;
        let enqueue = |deliveries, from, to| store.enqueue_webhooks(deliveries, from, to, OffsetDateTime::now_utc());
        if cursor.offer(planned, "webhook", enqueue).await {
            outbox_pending = true;
        }
        let mut wait = Duration::from_secs(1);
        if outbox_pending {
            deliver_due(&store, &sender, &metrics).await;
            match store.next_webhook_due().await {
                Ok(Some(due)) => {
                    let now = OffsetDateTime::now_utc();
                    wait = Duration::try_from(due - now).unwrap_or(Duration::ZERO).min(Duration::from_secs(1));
                }
                Ok(None) => outbox_pending = false,
                Err(_) => {}
            }
        }
        if !wakeups.wait(wait, &mut shutdown).await {
            return;
        }
    }
}

/// How far a planner (webhooks, push) has read the event log, and what it last saw stored: the bookkeeping of
/// the planning rule at [`run_dispatcher`], shared by every outbox planned from the log.
pub(crate) struct PlanningCursor {
    /// How far this node has read; the batch being built covers `(saved, read]`.
    pub(crate) read: i64,
    /// The stored cursor as last seen.
    saved: i64,
    saved_at: Instant,
}

impl PlanningCursor {
    /// Starts from the stored cursor.
    pub(crate) fn new(stored: i64) -> Self {
        Self { read: stored, saved: stored, saved_at: Instant::now() }
    }

    /// Offers a planning step's outcome to the store through `enqueue(batch, from, to)`, which answers the
    /// stored cursor; true when the outbox may have gained entries (this node's or another node's). A failed
    /// read or write goes back to the stored cursor, to be read again. An empty batch is saved only every
    /// couple of seconds, since the cursor is then only a hint.
    pub(crate) async fn offer<T, Fut>(
        &mut self,
        planned: palaver_core::Result<Option<Vec<T>>>,
        what: &str,
        enqueue: impl FnOnce(Vec<T>, i64, i64) -> Fut,
    ) -> bool
    where
        Fut: std::future::Future<Output = palaver_core::Result<i64>>,
    {
        match planned {
            Ok(Some(batch)) => match enqueue(batch, self.saved, self.read).await {
                Ok(stored) => {
                    if stored != self.read {
                        tracing::debug!(
                            from = self.saved,
                            to = self.read,
                            stored,
                            "{what} events were planned already, by another node"
                        );
                    }
                    self.moved_to(stored);
                    true
                }
                Err(err) => {
                    tracing::warn!(%err, "could not write the {what} outbox; retrying");
                    self.read = self.saved;
                    false
                }
            },
            Ok(None) => {
                if self.read == self.saved || self.saved_at.elapsed() <= Duration::from_secs(2) {
                    return false;
                }
                let mut added = false;
                if let Ok(stored) = enqueue(Vec::new(), self.saved, self.read).await {
                    added = stored != self.read;
                    self.moved_to(stored);
                }
                self.saved_at = Instant::now();
                added
            }
            Err(err) => {
                // The read may have stopped part-way, after moving `read` past events it then dropped.
                tracing::warn!(%err, "could not plan {what} events; retrying");
                self.read = self.saved;
                false
            }
        }
    }

    fn moved_to(&mut self, stored: i64) {
        self.read = stored;
        self.saved = stored;
        self.saved_at = Instant::now();
    }
}

/// The wake-ups of a background worker (webhook and push planners, channel sender): commits of the live feed.
pub(crate) struct Wakeups<T> {
    receiver: tokio::sync::broadcast::Receiver<T>,
    last_round: Instant,
}

/// The shortest time between two rounds that commits start. A round reads the store a few times; under a
/// stream of commits, one round per commit would cost more than the commits themselves (on PostgreSQL each
/// read is a round trip), while a hundredth of a second is nothing to a webhook or a push notification.
const MIN_ROUND_GAP: Duration = Duration::from_millis(10);

impl<T: Clone> Wakeups<T> {
    /// Listens to `receiver` (the live feed).
    pub(crate) fn new(receiver: tokio::sync::broadcast::Receiver<T>) -> Self {
        Self { receiver, last_round: Instant::now() }
    }

    /// Waits until new events are committed, `wait` has passed or `shutdown` completes (then false). One
    /// wake-up serves every event that arrived meanwhile, and rounds woken by commits are at least
    /// [`MIN_ROUND_GAP`] apart, so a burst or a steady stream costs a bounded number of rounds.
    pub(crate) async fn wait(
        &mut self,
        wait: Duration,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        if wait.is_zero() {
            tokio::task::yield_now().await;
            self.last_round = Instant::now();
            return true;
        }
        tokio::select! {
            () = shutdown.as_mut() => return false,
            _ = self.receiver.recv() => {
                let since = self.last_round.elapsed();
                if since < MIN_ROUND_GAP {
                    tokio::select! {
                        () = shutdown.as_mut() => return false,
                        () = tokio::time::sleep(MIN_ROUND_GAP - since) => {}
                    }
                }
                while self.receiver.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(wait) => {}
        }
        self.last_round = Instant::now();
        true
    }
}

/// Reads the log after `cursor` and plans it; `Some(deliveries)` when there is something to write to the outbox.
async fn plan(
    store: &Arc<dyn Store>,
    config: &WebhookConfigCache,
    account_sid: &str,
    cursor: &mut i64,
) -> palaver_core::Result<Option<Vec<NewDelivery>>> {
    let config = config.get().await?;
    if config.is_empty() {
        // Nothing to plan: skip the events without reading them.
        *cursor = store.last_log_id().await?;
        return Ok(None);
    }
    let mut planned = Vec::new();
    loop {
        let events = store.read_log(*cursor, PLAN_BATCH).await?;
        let Some(last) = events.last() else { break };
        let last_id = last.id;
        planned.extend(events.iter().flat_map(|event| plan_deliveries(event, &config, account_sid)));
        *cursor = last_id;
        if events.len() < PLAN_BATCH as usize || planned.len() > 1000 {
            break;
        }
    }
    Ok((!planned.is_empty()).then_some(planned))
}

async fn deliver_due(store: &Arc<dyn Store>, sender: &WebhookSender, metrics: &crate::metrics::Metrics) {
    let due = match store.due_webhooks(OffsetDateTime::now_utc(), WEBHOOK_LEASE, DELIVERY_BATCH).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(%err, "could not read the webhook outbox");
            return;
        }
    };
    let attempts = due.into_iter().map(|delivery| async move {
        let mut params = delivery.request.params.clone();
        params.push(("RetryCount".into(), delivery.attempts.to_string()));
        let outcome = sender.send(&delivery.request.url, delivery.request.method, &params).await;
        let attempts = delivery.attempts + 1;
        let retry_at = outcome
            .is_err()
            .then(|| (attempts < MAX_ATTEMPTS).then(|| OffsetDateTime::now_utc() + backoff(attempts)))
            .flatten();
        if let Err(err) = &outcome {
            tracing::info!(url = %delivery.request.url, attempts, %err, "webhook delivery failed");
        }
        metrics.webhook_attempted(outcome.is_ok());
        let error = outcome.err().map(|err| err.to_string());
        let attempt = WebhookAttempt::of(&delivery, error, retry_at, OffsetDateTime::now_utc());
        if let Err(err) = store.record_webhook_attempt(attempt, AttemptRetention::default()).await {
            tracing::warn!(%err, "could not record a webhook delivery");
        }
    });
    futures_util::future::join_all(attempts).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilio_test_vector() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(12), MAX_BACKOFF);
    }
}
