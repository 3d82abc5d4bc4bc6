//! Push delivery: the dispatcher that plans the event log into the push outbox and sends what is due through
//! APNs (HTTP/2, token auth), FCM (HTTP v1 API, OAuth2 service account) or Web Push (VAPID, RFC 8291
//! encryption), and the credential checks the REST API runs.
//!
//! Durability is the webhooks' (see [`crate::webhooks::run_dispatcher`], whose planning rule this follows):
//! every change is committed with its event; the dispatcher plans events ([`palaver_core::push::plan_event`])
//! into the outbox and moves its cursor in one transaction, claims due entries for a lease, and removes an
//! entry only once the push service accepted it. A restart at any point re-plans or re-sends, and never
//! forgets; in a cluster each event is planned by one node and each entry sent by one node at a time.
//!
//! A push service's answer decides what happens to the entry: accepted, it leaves the outbox; the device
//! token is no longer valid (APNs 410 / `BadDeviceToken`, FCM `UNREGISTERED`, Web Push 404/410), the binding
//! is deleted with everything waiting for it; busy or failing (429, 5xx, no answer), it is retried with
//! backoff; refused for good (a malformed request, a credential the service rejects), it is kept as dead.

mod apns;
mod fcm;
pub(crate) mod keys;
mod webpush;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_api::sid::{CredentialSid, ServiceSid};
use palaver_core::Palaver;
use palaver_core::push::{Credential, NotificationSettings, PushJob, plan_event};
use palaver_core::store::{PageQuery, Store};
use time::OffsetDateTime;

use self::keys::ProviderKeys;

/// Where the push services are, and how to reach them. The defaults are the real services; tests point them
/// at local doubles.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// APNs' base URL for every credential, instead of Apple's production or sandbox host (by the credential's
    /// `sandbox`).
    pub apns_url: Option<String>,
    /// FCM's base URL (`https://fcm.googleapis.com`).
    pub fcm_url: String,
    /// Google's token endpoint for every credential, instead of the service account's `token_uri`.
    pub fcm_token_url: Option<String>,
    /// Certificates (PEM) trusted besides the public roots: a private CA in front of the push services, or a
    /// test's own.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Send web pushes to `http://` endpoints too (browsers' push services are all `https://`; tests' are not).
    pub allow_http_endpoints: bool,
    /// The hosts a web push may go to (a name, or `.suffix` for its subdomains); empty: any. A subscription's
    /// endpoint is whatever URL a browser (or anyone with an access token) registers, so without this list the
    /// server would post to any address it can reach, its private network's included.
    pub webpush_hosts: Vec<String>,
    /// How long one request to a push service may take. A claimed entry is leased for three times as long.
    pub request_timeout: Duration,
}

/// The push services of today's browsers: Chrome and Edge's (FCM), Firefox's (Mozilla autopush), Safari's
/// (Apple) and Windows' (WNS).
pub const DEFAULT_WEBPUSH_HOSTS: &[&str] =
    &["fcm.googleapis.com", ".push.services.mozilla.com", ".push.apple.com", ".notify.windows.com"];

/// Whether `host` is one of `allowed` (`.suffix` entries match the subdomains of `suffix`); any host when the
/// list is empty.
pub fn webpush_host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.is_empty()
        || allowed.iter().any(|entry| match entry.strip_prefix('.') {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == entry.to_ascii_lowercase(),
        })
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            apns_url: None,
            fcm_url: "https://fcm.googleapis.com".into(),
            fcm_token_url: None,
            extra_root_certificates: Vec::new(),
            allow_http_endpoints: false,
            webpush_hosts: DEFAULT_WEBPUSH_HOSTS.iter().map(|h| (*h).to_string()).collect(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl PushSettings {
    /// How long a claimed outbox entry belongs to the node that claimed it (see `WEBHOOK_LEASE`): an attempt
    /// is a token request and a send, each bounded by the timeout, plus room.
    pub fn lease(&self) -> Duration {
        self.request_timeout * 3
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The push service accepted it.
    Sent,
    /// Worth another try later.
    Retry(String),
    /// The device or browser is gone: the binding is deleted.
    Gone(String),
    /// Refused for good.
    Failed(String),
}

impl Outcome {
    /// The outcome of an HTTP error answer that no service-specific rule matched.
    pub(crate) fn of_status(status: u16, body: &str) -> Self {
        let what = format!("answered {status}: {}", body.chars().take(300).collect::<String>());
        match status {
            408 | 429 | 500..=599 => Self::Retry(what),
            _ => Self::Failed(what),
        }
    }
}

/// The clients and cached tokens the senders share.
#[derive(Debug)]
pub(crate) struct Senders {
    settings: PushSettings,
    /// For APNs: HTTP/2 only, as Apple requires.
    h2: reqwest::Client,
    /// For FCM, Google's token endpoint and Web Push.
    http: reqwest::Client,
    /// Parsed keys per credential, with the `date_updated` they were read at.
    keys: Mutex<HashMap<CredentialSid, (OffsetDateTime, Arc<ProviderKeys>)>>,
    /// Signed APNs provider tokens per credential (Apple wants one reused for up to an hour, not one per push).
    apns_tokens: Mutex<HashMap<CredentialSid, (Instant, String)>>,
    /// OAuth2 access tokens per FCM credential, with when to stop using them.
    fcm_tokens: Mutex<HashMap<CredentialSid, (Instant, String)>>,
}

fn client(settings: &PushSettings, http2_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.request_timeout)
        .user_agent(concat!("Palaver/", env!("CARGO_PKG_VERSION")));
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    for pem in &settings.extra_root_certificates {
        match reqwest::Certificate::from_pem(pem) {
            Ok(certificate) => builder = builder.add_root_certificate(certificate),
            Err(err) => tracing::error!(%err, "an extra root certificate for push services is not PEM; ignored"),
        }
    }
    builder.build().unwrap_or_default()
}

impl Senders {
    pub(crate) fn new(settings: PushSettings) -> Self {
        Self {
            h2: client(&settings, true),
            http: client(&settings, false),
            settings,
            keys: Mutex::default(),
            apns_tokens: Mutex::default(),
            fcm_tokens: Mutex::default(),
        }
    }

    fn keys_of(&self, credential: &Credential) -> Result<Arc<ProviderKeys>, keys::KeyError> {
        let mut cache = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read_at, keys)) = cache.get(&credential.sid)
            && *read_at == credential.date_updated
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(keys::provider_keys(credential)?);
        cache.insert(credential.sid.clone(), (credential.date_updated, keys.clone()));
        Ok(keys)
    }

    /// Sends one notification with `credential`.
    pub(crate) async fn send(&self, job: &PushJob, credential: &Credential) -> Outcome {
        let keys = match self.keys_of(credential) {
            Ok(keys) => keys,
            Err(err) => return Outcome::Failed(format!("credential {} is unusable: {err}", credential.sid)),
        };
        match keys.as_ref() {
            ProviderKeys::Apns(key) => apns::send(self, &credential.sid, key, job).await,
            ProviderKeys::Fcm(account) => fcm::send(self, &credential.sid, account, job).await,
            ProviderKeys::WebPush(vapid) => webpush::send(self, vapid, job).await,
            ProviderKeys::Gcm => Outcome::Failed("GCM no longer exists; register the device with FCM".into()),
        }
    }
}

/// Attempts before an outbox entry is given up (kept as dead).
pub const MAX_ATTEMPTS: u32 = 10;
/// Events read from the log per planning step.
const PLAN_BATCH: u32 = 500;
/// Outbox entries sent per delivery round.
const DELIVERY_BATCH: u32 = 64;

/// Plans the event log into the push outbox and sends it, until `shutdown` completes. Planning on several
/// nodes follows the rule explained at [`crate::webhooks::run_dispatcher`].
pub async fn run_push_dispatcher(
    palaver: Palaver,
    settings: PushSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let store = palaver.store().clone();
    let lease = settings.lease();
    let senders = Senders::new(settings);
    let mut wakeups = crate::webhooks::Wakeups::new(palaver.feed().subscribe());
    let mut cursor = match store.push_cursor().await {
        Ok(cursor) => crate::webhooks::PlanningCursor::new(cursor),
        Err(err) => {
            tracing::error!(%err, "cannot read the push cursor; push notifications are off");
            return;
        }
    };
    let mut outbox_pending = true;
    loop {
        let planned = plan(&store, &mut cursor.read).await;
        let enqueue = |pushes, from, to| store.enqueue_pushes(pushes, from, to, OffsetDateTime::now_utc());
        if cursor.offer(planned, "push", enqueue).await {
            outbox_pending = true;
        }
        let mut wait = Duration::from_secs(1);
        if outbox_pending {
            // A send may wait on a slow push service: stopping does not wait for it (the entry's lease ends
            // and whichever node runs next sends it again).
            tokio::select! {
                () = deliver_due(&store, &senders, lease) => {}
                () = shutdown.as_mut() => return,
            }
            match store.next_push_due().await {
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

/// Reads the log after `cursor` and plans it; `Some(pushes)` when there is something to write.
async fn plan(
    store: &Arc<dyn Store>,
    cursor: &mut i64,
) -> palaver_core::Result<Option<Vec<palaver_core::push::NewPush>>> {
    let mut planned = Vec::new();
    // Settings are read once per service per batch: fresh enough, as a change applies from the next batch.
    let mut settings: HashMap<String, NotificationSettings> = HashMap::new();
    loop {
        let events = store.read_log(*cursor, PLAN_BATCH).await?;
        let Some(last) = events.last() else { break };
        let last_id = last.id;
        for event in events.iter().filter(|e| palaver_core::push::may_notify(e.kind)) {
            let Ok(service) = ServiceSid::parse(&event.service_sid) else { continue };
            if !settings.contains_key(&event.service_sid) {
                settings.insert(event.service_sid.clone(), store.notification_settings(&service).await?);
            }
            planned.extend(plan_event(store.as_ref(), event, &settings[&event.service_sid]).await?);
        }
        *cursor = last_id;
        if events.len() < PLAN_BATCH as usize || planned.len() > 1000 {
            break;
        }
    }
    Ok((!planned.is_empty()).then_some(planned))
}

/// Every credential, oldest first.
async fn credentials(store: &Arc<dyn Store>) -> palaver_core::Result<Vec<Credential>> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_credentials(PageQuery { size: 100, cursor, descending: false }).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// The credential that signs for `job`'s binding: the one it names, else the newest of its kind.
fn credential_for<'c>(job: &PushJob, credentials: &'c [Credential]) -> Option<&'c Credential> {
    let kind = job.binding.kind.credential_kind()?;
    match &job.binding.credential_sid {
        Some(sid) => credentials.iter().find(|c| &c.sid == sid),
        None => credentials.iter().rev().find(|c| c.kind == kind),
    }
}

async fn deliver_due(store: &Arc<dyn Store>, senders: &Senders, lease: Duration) {
    let due = match store.due_pushes(OffsetDateTime::now_utc(), lease, DELIVERY_BATCH).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(%err, "could not read the push outbox");
            return;
        }
    };
    if due.is_empty() {
        return;
    }
    let credentials = match credentials(store).await {
        Ok(credentials) => credentials,
        Err(err) => {
            tracing::warn!(%err, "could not read the push credentials");
            return;
        }
    };
    let mut logged: HashMap<ServiceSid, bool> = HashMap::new();
    for job in &due {
        if !logged.contains_key(&job.binding.service_sid) {
            let log = store.notification_settings(&job.binding.service_sid).await.map(|s| s.log_enabled);
            logged.insert(job.binding.service_sid.clone(), log.unwrap_or(false));
        }
    }
    let attempts = due.into_iter().map(|job| {
        let log = logged.get(&job.binding.service_sid).copied().unwrap_or(false);
        let credentials = &credentials;
        async move {
            let outcome = match credential_for(&job, credentials) {
                Some(credential) => senders.send(&job, credential).await,
                None => Outcome::Retry(format!("no {} credential to send with", job.binding.kind.as_str())),
            };
            record(store, &job, outcome, log).await;
        }
    });
    futures_util::future::join_all(attempts).await;
}

async fn record(store: &Arc<dyn Store>, job: &PushJob, outcome: Outcome, log: bool) {
    let binding = &job.binding;
    let kind = job.notification.kind.as_str();
    let recorded = match outcome {
        Outcome::Sent => {
            if log {
                tracing::info!(binding = %binding.sid, identity = %binding.identity, kind, "push notification sent");
            }
            store.push_delivered(job.id).await
        }
        Outcome::Gone(why) => {
            tracing::info!(binding = %binding.sid, identity = %binding.identity, %why, "push binding is gone; deleted");
            match store.delete_push_binding(&binding.service_sid, &binding.sid).await {
                Err(palaver_core::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        }
        Outcome::Retry(why) => {
            let attempts = job.attempts + 1;
            let retry_at =
                (attempts < MAX_ATTEMPTS).then(|| OffsetDateTime::now_utc() + crate::webhooks::backoff(attempts));
            tracing::info!(binding = %binding.sid, attempts, %why, "push notification failed; retrying");
            store.push_failed(job.id, retry_at, why).await
        }
        Outcome::Failed(why) => {
            tracing::warn!(binding = %binding.sid, %why, "push notification refused; given up");
            store.push_failed(job.id, None, why).await
        }
    };
    if let Err(err) = recorded {
        tracing::warn!(%err, "could not record a push attempt");
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn web_pushes_go_only_to_the_listed_push_services() {
        let defaults: Vec<String> = DEFAULT_WEBPUSH_HOSTS.iter().map(|h| (*h).to_string()).collect();
        for host in
            ["fcm.googleapis.com", "updates.push.services.mozilla.com", "web.push.apple.com", "DB5.notify.windows.com"]
        {
            assert!(webpush_host_allowed(host, &defaults), "{host}");
        }
        for host in [
            "localhost",
            "10.0.0.7",
            "metadata.google.internal",
            "push.apple.com.evil.example",
            "evilpush.apple.com",
            "googleapis.com",
        ] {
            assert!(!webpush_host_allowed(host, &defaults), "{host}");
        }
        assert!(webpush_host_allowed("127.0.0.1", &[]), "an empty list allows any host");
    }
}
