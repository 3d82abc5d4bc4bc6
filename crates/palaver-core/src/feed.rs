//! The live feed: one task tails the event log (woken by the store after each commit) and broadcasts each new
//! event, serialised once as the realtime protocol's event frame, to every connected session.
//!
//! Sessions filter by stream. A session that falls behind the broadcast buffer is told it lagged and catches up
//! from the store by sequence number, so the feed never needs to hold more than its fixed buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use palaver_api::realtime::{EventFrame, ServerFrame};
use tokio::sync::broadcast;

use crate::event::{Event, rfc3339};
use crate::store::Store;

/// How many events the broadcast keeps for slow sessions before they must catch up from the store.
const FEED_CAPACITY: usize = 4096;

/// One event on the live feed.
#[derive(Debug)]
pub struct FeedItem {
    /// The event.
    pub event: Event,
    /// The event as a realtime protocol frame (UTF-8 JSON), serialised once and shared by every listener.
    pub frame: bytes::Bytes,
}

/// Serialises a stored event as the protocol's event frame.
pub fn event_frame(event: &Event) -> String {
    let frame = ServerFrame::Event(EventFrame {
        stream: event.stream.clone(),
        seq: event.seq,
        kind: event.kind.as_str().to_string(),
        data: event.data.clone(),
        at: rfc3339(event.at),
    });
    serde_json::to_string(&frame).unwrap_or_default()
}

/// Events offered by another node wait this long for a missing predecessor before the gap is read from the store.
const GAP_GRACE: Duration = Duration::from_millis(25);
/// How often the feed reads the log without being woken: the safety net for commits nobody told it about.
const SAFETY_POLL: Duration = Duration::from_secs(1);
/// Offered events queued for the feed task at most; more are dropped (and read from the store instead).
const OFFER_QUEUE: usize = 8192;

/// The broadcast side of the feed.
#[derive(Debug)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<FeedItem>>,
    last_id: AtomicI64,
    offers: tokio::sync::mpsc::Sender<Event>,
    /// Taken by [`EventFeed::run`].
    offered: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl EventFeed {
    /// A feed with nothing published yet.
    pub fn new() -> Self {
        let (offers, offered) = tokio::sync::mpsc::channel(OFFER_QUEUE);
        Self {
            sender: broadcast::channel(FEED_CAPACITY).0,
            last_id: AtomicI64::new(0),
            offers,
            offered: std::sync::Mutex::new(Some(offered)),
        }
    }

    /// Receives every event published after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }

    /// The log id of the last event published.
    pub fn last_published(&self) -> i64 {
        self.last_id.load(Ordering::Acquire)
    }

    /// Offers an event that another node committed (relayed by the cluster bus), so it goes out without a read
    /// of the store. The feed still publishes events strictly in log order: one that does not follow the last
    /// published waits briefly for the events before it, then the gap is read from the store. Offers are
    /// hints: one that is lost or refused (queue full) is read from the store later, so nothing is missed.
    pub fn offer(&self, event: Event) {
        let _ = self.offers.try_send(event);
    }

    fn publish(&self, event: Event) {
        let id = event.id;
        let frame = bytes::Bytes::from(event_frame(&event));
        // Nobody listening is fine: the log keeps everything.
        let _ = self.sender.send(Arc::new(FeedItem { event, frame }));
        self.last_id.store(id, Ordering::Release);
    }

    /// Publishes every event of the log after the last published one.
    async fn read_store(&self, store: &dyn Store) {
        loop {
            let after = self.last_id.load(Ordering::Acquire);
            let events = match store.read_log(after, 1000).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(%err, "reading the event log failed; retrying");
                    return;
                }
            };
            let count = events.len();
            for event in events {
                self.publish(event);
            }
            if count < 1000 {
                return;
            }
        }
    }

    /// Publishes the offered events that follow the last published one; drops those already published.
    fn publish_offered(&self, waiting: &mut std::collections::BTreeMap<i64, Event>) {
        let mut last = self.last_id.load(Ordering::Acquire);
        while let Some(entry) = waiting.first_entry() {
            if *entry.key() <= last {
                entry.remove();
            } else if *entry.key() == last + 1 {
                let event = entry.remove();
                last = event.id;
                self.publish(event);
            } else {
                break;
            }
        }
    }

    /// Tails the store's log until `shutdown` completes. Starts after the events that already exist.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let changes = store.changes();
        let mut offered = self.offered.lock().ok().and_then(|mut slot| slot.take());
        match store.last_log_id().await {
            Ok(id) => self.last_id.store(id, Ordering::Release),
            Err(err) => tracing::error!(%err, "cannot read the event log position"),
        }
        // Offered events that do not follow the last published one yet, and since when the first of them waits.
        let mut waiting = std::collections::BTreeMap::new();
        let mut gap_since: Option<tokio::time::Instant> = None;
        let mut read = true;
        loop {
            if read {
                self.read_store(store.as_ref()).await;
                self.publish_offered(&mut waiting);
                gap_since = None;
            }
            if waiting.is_empty() {
                gap_since = None;
            } else if gap_since.is_none() {
                gap_since = Some(tokio::time::Instant::now());
            }
            let wake_at = match gap_since {
                Some(since) => since + GAP_GRACE,
                None => tokio::time::Instant::now() + SAFETY_POLL,
            };
            read = tokio::select! {
                () = &mut shutdown => return,
                () = changes.notified() => true,
                event = async {
                    match offered.as_mut() {
                        Some(offered) => offered.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(event) = event {
                        waiting.insert(event.id, event);
                        while let Some(Ok(event)) = offered.as_mut().map(|o| o.try_recv()) {
                            waiting.insert(event.id, event);
                        }
                        self.publish_offered(&mut waiting);
                    }
                    false
                }
                // A gap that did not fill in time, or the safety net for commits nobody told us about.
                () = tokio::time::sleep_until(wake_at) => true,
            };
        }
    }
}
