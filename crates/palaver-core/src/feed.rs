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

/// The broadcast side of the feed.
#[derive(Debug)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<FeedItem>>,
    last_id: AtomicI64,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl EventFeed {
    /// A feed with nothing published yet.
    pub fn new() -> Self {
        Self { sender: broadcast::channel(FEED_CAPACITY).0, last_id: AtomicI64::new(0) }
    }

    /// Receives every event published after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }

    /// The log id of the last event published.
    pub fn last_published(&self) -> i64 {
        self.last_id.load(Ordering::Acquire)
    }

    /// Tails the store's log until `shutdown` completes. Starts after the events that already exist.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let changes = store.changes();
        match store.last_log_id().await {
            Ok(id) => self.last_id.store(id, Ordering::Release),
            Err(err) => tracing::error!(%err, "cannot read the event log position"),
        }
        loop {
            loop {
                let after = self.last_id.load(Ordering::Acquire);
                let events = match store.read_log(after, 1000).await {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::warn!(%err, "reading the event log failed; retrying");
                        break;
                    }
                };
                let count = events.len();
                for event in events {
                    let id = event.id;
                    let frame = bytes::Bytes::from(event_frame(&event));
                    // Nobody listening is fine: the log keeps everything.
                    let _ = self.sender.send(Arc::new(FeedItem { event, frame }));
                    self.last_id.store(id, Ordering::Release);
                }
                if count < 1000 {
                    break;
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = changes.notified() => {}
                // A safety net for commits made by another process on the same database.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
