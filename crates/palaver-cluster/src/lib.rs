//! The cluster bus: how the nodes of a Palaver cluster (one PostgreSQL, several stateless nodes) hear of each
//! other's changes live, over NATS core publish/subscribe.
//!
//! PostgreSQL is the truth; NATS only makes things fast. Each node publishes
//!
//! - every event it commits, on `{prefix}.events.{stream}` (the stream is a conversation or user SID, so a
//!   subscriber could follow single conversations). Receiving nodes offer them to their live feed
//!   ([`palaver_core::feed::EventFeed::offer`]), which publishes them to its sessions in log order without
//!   reading the database, and reads the database whenever an event is missing (a lost or late publication,
//!   a node that was disconnected): nothing depends on NATS delivering, NATS core has no durability anyway;
//! - typing notices, on `{prefix}.typing.{conversation}` (ephemeral: never stored anywhere);
//! - cache invalidations (permissions, webhook settings), on `{prefix}.invalidate`. As those are best
//!   effort too, every node also drops those caches every [`CACHE_REFRESH`] and when it reconnects, which
//!   bounds how long a lost invalidation can matter.
//!
//! A node ignores its own publications (each message carries the sender's node id).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use palaver_api::sid::{ConversationSid, ParticipantSid};
use palaver_core::Palaver;
use palaver_core::event::{Event, EventKind, Origin, Source};
use palaver_core::service::TypingNotice;
use serde::{Deserialize, Serialize};

/// How often every node drops its permission and webhook caches, whatever it heard.
pub const CACHE_REFRESH: Duration = Duration::from_secs(5);

/// What can go wrong joining the bus.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A subscription was refused.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// This node's connection to the cluster bus.
#[derive(Debug, Clone)]
pub struct ClusterBus {
    client: async_nats::Client,
    node: Arc<str>,
    prefix: Arc<str>,
}

impl ClusterBus {
    /// Connects to the NATS server(s) at `url` (comma-separated for a NATS cluster); subjects start with
    /// `prefix` (several Palaver clusters can share one NATS this way).
    ///
    /// # Errors
    /// [`ClusterError::Connect`] when no server answers.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ClusterError> {
        let node = node_id();
        let client = async_nats::ConnectOptions::new()
            .name(format!("palaver-{node}"))
            // A node that lost NATS keeps serving (its sessions fall back to reading the database) and keeps
            // trying to come back.
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| ClusterError::Connect { url: url.to_string(), reason: e.to_string() })?;
        Ok(Self { client, node: node.into(), prefix: prefix.into() })
    }

    /// This node's id on the bus.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether the connection to NATS is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The [`Peers`](palaver_core::cluster::Peers) port for [`Palaver::with_peers`].
    pub fn peers(&self) -> Arc<dyn palaver_core::cluster::Peers> {
        Arc::new(BusPeers { bus: self.clone() })
    }

    fn subject(&self, kind: &str, rest: &str) -> String {
        if rest.is_empty() { format!("{}.{kind}", self.prefix) } else { format!("{}.{kind}.{rest}", self.prefix) }
    }

    fn publish_later(&self, subject: String, payload: Vec<u8>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(err) = client.publish(subject, payload.into()).await {
                tracing::debug!(%err, "cluster publication dropped");
            }
        });
    }

    /// Relays until `shutdown` completes: publishes the events `palaver`'s store commits here, and hands what
    /// other nodes publish to `palaver` (events to its feed, typing to its sessions, invalidations to its
    /// caches).
    ///
    /// # Errors
    /// [`ClusterError::Subscribe`] when NATS refuses the subscriptions.
    pub async fn run(
        self,
        palaver: Palaver,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ClusterError> {
        tokio::pin!(shutdown);
        let subscribe = |subject: String| {
            let client = self.client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| ClusterError::Subscribe { subject, reason: e.to_string() })
            }
        };
        let mut events = subscribe(self.subject("events", ">")).await?;
        let mut typing = subscribe(self.subject("typing", ">")).await?;
        let mut invalidations = subscribe(self.subject("invalidate", "")).await?;
        let mut committed = palaver.store().committed_here();
        let mut refresh = tokio::time::interval(CACHE_REFRESH);
        let mut was_connected = true;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                batch = async {
                    match committed.as_mut() {
                        Some(committed) => committed.recv().await,
                        None => std::future::pending().await,
                    }
                } => match batch {
                    Ok(batch) => self.publish_events(&batch).await,
                    // The other nodes read what this one skipped from the database.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the cluster relay fell behind this node's commits");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => committed = None,
                },
                Some(message) = events.next() => {
                    if let Some(event) = self.decode::<WireEvent>(&message.payload).and_then(WireEvent::into_event) {
                        palaver.feed().offer(event);
                    }
                }
                Some(message) = typing.next() => {
                    if let Some(notice) = self.decode::<WireTyping>(&message.payload).and_then(WireTyping::into_notice) {
                        palaver.peer_typing(notice);
                    }
                }
                Some(message) = invalidations.next() => {
                    match self.decode::<WireInvalidation>(&message.payload).map(|w| w.what) {
                        Some(Invalidated::Access) => palaver.peer_access_changed(),
                        Some(Invalidated::Webhooks) => palaver.peer_webhooks_changed(),
                        None => {}
                    }
                }
                _ = refresh.tick() => {
                    let connected = self.is_connected();
                    if connected && !was_connected {
                        tracing::info!("reconnected to the cluster bus");
                    }
                    was_connected = connected;
                    palaver.peer_access_changed();
                    palaver.peer_webhooks_changed();
                }
            }
        }
        // What was published is handed to the server before this node goes away.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        Ok(())
    }

    async fn publish_events(&self, batch: &[Event]) {
        for event in batch {
            let wire = WireEvent::from_event(&self.node, event);
            let Ok(payload) = serde_json::to_vec(&wire) else { continue };
            if let Err(err) = self.client.publish(self.subject("events", &event.stream), payload.into()).await {
                // The other nodes find the event in the database.
                tracing::debug!(%err, "could not relay an event");
            }
        }
    }

    /// The payload as `T`, unless it is this node's own publication or malformed.
    fn decode<'a, T: Deserialize<'a> + FromNode>(&self, payload: &'a [u8]) -> Option<T> {
        let value: T = serde_json::from_slice(payload).ok()?;
        (value.node() != &*self.node).then_some(value)
    }
}

/// The domain's [`Peers`](palaver_core::cluster::Peers) port, over the bus.
#[derive(Debug)]
struct BusPeers {
    bus: ClusterBus,
}

impl palaver_core::cluster::Peers for BusPeers {
    fn typing(&self, notice: &TypingNotice) {
        let wire = WireTyping {
            node: self.bus.node.to_string(),
            conversation_sid: notice.conversation_sid.to_string(),
            identity: notice.identity.clone(),
            participant_sid: notice.participant_sid.to_string(),
        };
        if let Ok(payload) = serde_json::to_vec(&wire) {
            self.bus.publish_later(self.bus.subject("typing", notice.conversation_sid.as_str()), payload);
        }
    }

    fn access_changed(&self) {
        self.invalidate(Invalidated::Access);
    }

    fn webhooks_changed(&self) {
        self.invalidate(Invalidated::Webhooks);
    }
}

impl BusPeers {
    fn invalidate(&self, what: Invalidated) {
        let wire = WireInvalidation { node: self.bus.node.to_string(), what };
        if let Ok(payload) = serde_json::to_vec(&wire) {
            self.bus.publish_later(self.bus.subject("invalidate", ""), payload);
        }
    }
}

/// A random id for this process on the bus.
fn node_id() -> String {
    let mut bytes = [0u8; 8];
    // Without OS randomness the time still tells processes apart well enough for ignoring one's own echo.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

trait FromNode {
    fn node(&self) -> &str;
}

/// An event as published on the bus.
#[derive(Debug, Serialize, Deserialize)]
struct WireEvent {
    node: String,
    id: i64,
    stream: String,
    seq: i64,
    kind: String,
    subject: String,
    data: serde_json::Value,
    /// Unix milliseconds.
    at: i64,
    service_sid: String,
    source: String,
    client_identity: Option<String>,
    webhooks: bool,
}

impl FromNode for WireEvent {
    fn node(&self) -> &str {
        &self.node
    }
}

impl WireEvent {
    fn from_event(node: &str, event: &Event) -> Self {
        Self {
            node: node.to_string(),
            id: event.id,
            stream: event.stream.clone(),
            seq: event.seq,
            kind: event.kind.as_str().to_string(),
            subject: event.subject.clone(),
            data: event.data.clone(),
            at: palaver_core::clock::unix_millis(event.at),
            service_sid: event.service_sid.clone(),
            source: event.origin.source.as_str().to_string(),
            client_identity: event.origin.client_identity.clone(),
            webhooks: event.origin.webhooks,
        }
    }

    /// The event, unless its kind is unknown here (a newer node's): the database read covers it then.
    fn into_event(self) -> Option<Event> {
        Some(Event {
            id: self.id,
            stream: self.stream,
            seq: self.seq,
            kind: EventKind::parse(&self.kind)?,
            subject: self.subject,
            data: self.data,
            at: palaver_core::clock::from_unix_millis(self.at),
            service_sid: self.service_sid,
            origin: Origin {
                source: Source::parse(&self.source),
                client_identity: self.client_identity,
                webhooks: self.webhooks,
            },
        })
    }
}

/// A typing notice as published on the bus.
#[derive(Debug, Serialize, Deserialize)]
struct WireTyping {
    node: String,
    conversation_sid: String,
    identity: String,
    participant_sid: String,
}

impl FromNode for WireTyping {
    fn node(&self) -> &str {
        &self.node
    }
}

impl WireTyping {
    fn into_notice(self) -> Option<TypingNotice> {
        Some(TypingNotice {
            conversation_sid: ConversationSid::parse(&self.conversation_sid).ok()?,
            identity: self.identity,
            participant_sid: ParticipantSid::parse(&self.participant_sid).ok()?,
        })
    }
}

/// Which cache another node made stale.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Invalidated {
    Access,
    Webhooks,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireInvalidation {
    node: String,
    what: Invalidated,
}

impl FromNode for WireInvalidation {
    fn node(&self) -> &str {
        &self.node
    }
}
