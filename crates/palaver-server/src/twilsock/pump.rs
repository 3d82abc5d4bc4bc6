//! One connection's notification pump: the only task that sends Sync events and typing indicators to the
//! client, so that per object they go out in order and exactly once. It establishes subscriptions (replaying
//! what the client missed after its `last_event_id`), then forwards each new event of a followed stream as the
//! events of the objects that follow it, reading from the store whatever the live feed skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use palaver_core::event::{Event, EventKind};
use palaver_core::feed::FeedItem;
use palaver_core::service::TypingNotice;
use palaver_core::session::UserSession;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::sync::{Followed, Links, ObjectId, ObjectKind};
use super::sync_api;
use super::{Notification, Notifier};

/// What the request handlers ask of the pump.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start (or restart) following objects, replaying their events after the given ids.
    Establish {
        /// Echoed on every event the establishment sends.
        correlation_id: Value,
        /// The objects: (SID, type, last event id the client has).
        objects: Vec<(String, String, i64)>,
    },
    /// Stop following objects.
    Cancel {
        /// Echoed.
        correlation_id: Value,
        /// The objects: (SID, type).
        objects: Vec<(String, String)>,
    },
}

/// Events read from the store at a time while catching up.
const REPLAY_BATCH: u32 = 500;

pub(crate) struct Pump {
    session: UserSession,
    links: Links,
    notifier: Notifier,
    /// Followed objects by SID.
    followed: HashMap<String, Followed>,
    /// SIDs of the followed objects by stream.
    by_stream: HashMap<String, HashSet<String>>,
    /// The user's own stream (to notice leaving a conversation).
    user_stream: String,
    typing_timeout_secs: u64,
    /// Where delivered events are counted.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Pump {
    /// Starts the pump; it runs until the connection (the notifier) or the command channel ends.
    pub(crate) fn spawn(
        session: UserSession,
        links: Links,
        notifier: Notifier,
        user_stream: String,
        commands: mpsc::Receiver<Command>,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        // Subscribed before anything is read, so that nothing committed from now on is missed.
        let feed = session.palaver().feed().subscribe();
        let typing = session.palaver().typing_notices();
        let typing_timeout_secs = session.palaver().typing_timeout().as_secs().max(1) + 1;
        let pump = Self {
            session,
            links,
            notifier,
            followed: HashMap::new(),
            by_stream: HashMap::new(),
            user_stream,
            typing_timeout_secs,
            metrics,
        };
        tokio::spawn(pump.run(feed, typing, commands));
    }

    async fn run(
        mut self,
        mut feed: broadcast::Receiver<Arc<FeedItem>>,
        mut typing: broadcast::Receiver<Arc<TypingNotice>>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let notifier = self.notifier.clone();
        loop {
            let alive = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => false,
                },
                item = feed.recv() => match item {
                    Ok(item) => self.on_event(&item.event).await,
                    // Skipped events are in the store: catch every followed object up.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_all().await,
                    Err(broadcast::error::RecvError::Closed) => false,
                },
                notice = typing.recv() => match notice {
                    Ok(notice) => self.on_typing(&notice).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => false,
                },
                () = notifier.closed() => false,
            };
            if !alive {
                break;
            }
        }
    }

    async fn send(&self, payload: Value) -> bool {
        self.notifier.send(Notification { message_type: "twilio.sync.event", payload }).await
    }

    async fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Establish { correlation_id, objects } => {
                for (sid, object_type, last_event_id) in objects {
                    if !self.establish(&correlation_id, &sid, &object_type, last_event_id).await {
                        return false;
                    }
                }
                true
            }
            Command::Cancel { correlation_id, objects } => {
                for (sid, object_type) in objects {
                    self.unfollow(&sid);
                    let event = json!({"event_type": "subscription_canceled", "correlation_id": correlation_id,
                        "event": {"object_sid": sid, "object_type": object_type}});
                    if !self.send(event).await {
                        return false;
                    }
                }
                true
            }
        }
    }

    async fn establish(&mut self, correlation_id: &Value, sid: &str, object_type: &str, last_event_id: i64) -> bool {
        let resolved = match ObjectId::parse(sid) {
            Some(id) if id.kind.sync_type() == object_type => sync_api::resolve_id(&self.session, id).await,
            _ => Err(crate::error::ApiError::not_found(format!("/Sync/{sid}"))),
        };
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(err) => {
                let error = err.realtime();
                let event = json!({"event_type": "subscription_failed", "correlation_id": correlation_id,
                    "event": {"object_sid": sid, "object_type": object_type,
                        "error": {"status": error.status, "code": error.code, "message": error.message}}});
                return self.send(event).await;
            }
        };
        self.unfollow(sid);
        let conversation = resolved.conversation.as_ref().map(palaver_core::event::conversation_info);
        let followed = Followed {
            id: resolved.id,
            stream: resolved.stream.clone(),
            delivered: last_event_id.max(0),
            conversation,
        };
        self.by_stream.entry(resolved.stream).or_default().insert(sid.to_string());
        self.followed.insert(sid.to_string(), followed);
        if !self.catch_up(sid, None, Some(correlation_id)).await {
            return false;
        }
        let delivered = self.followed.get(sid).map_or(last_event_id, |f| f.delivered);
        let event = json!({"event_type": "subscription_established", "correlation_id": correlation_id,
            "event": {"object_sid": sid, "object_type": object_type, "replay_status": "completed",
                "last_event_id": delivered}});
        self.send(event).await
    }

    fn unfollow(&mut self, sid: &str) {
        if let Some(followed) = self.followed.remove(sid)
            && let Some(sids) = self.by_stream.get_mut(&followed.stream)
        {
            sids.remove(sid);
            if sids.is_empty() {
                self.by_stream.remove(&followed.stream);
            }
        }
    }

    /// Sends the stored events of `sid`'s stream after what it was last sent, up to `until` (inclusive; all
    /// when `None`). False once the connection is gone.
    async fn catch_up(&mut self, sid: &str, until: Option<i64>, correlation_id: Option<&Value>) -> bool {
        loop {
            let Some(followed) = self.followed.get(sid) else { return true };
            if until.is_some_and(|u| followed.delivered >= u) {
                return true;
            }
            let (stream, after) = (followed.stream.clone(), followed.delivered);
            let events = match self.session.palaver().store().read_events(&stream, after, REPLAY_BATCH).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(%err, stream, "sync replay failed");
                    return true;
                }
            };
            let count = events.len();
            for event in events.iter().filter(|e| until.is_none_or(|u| e.seq <= u)) {
                if !self.deliver(sid, event, correlation_id, false).await {
                    return false;
                }
            }
            if count < REPLAY_BATCH as usize {
                return true;
            }
        }
    }

    async fn catch_up_all(&mut self) -> bool {
        let sids: Vec<String> = self.followed.keys().cloned().collect();
        for sid in sids {
            if !self.catch_up(&sid, None, None).await {
                return false;
            }
        }
        true
    }

    /// Sends one event as `sid`'s Sync events and records it as delivered.
    /// `live` for an event straight from the feed (its delivery latency is measured), not for one read back.
    async fn deliver(&mut self, sid: &str, event: &Event, correlation_id: Option<&Value>, live: bool) -> bool {
        let Some(followed) = self.followed.get_mut(sid) else { return true };
        if event.seq <= followed.delivered {
            return true;
        }
        followed.delivered = event.seq;
        let payloads = super::sync::events_for(&self.links, followed, event);
        for mut payload in payloads {
            if let Some(correlation_id) = correlation_id {
                payload["correlation_id"] = correlation_id.clone();
            }
            if !self.send(payload).await {
                return false;
            }
            self.metrics.event_delivered(crate::metrics::Api::Twilsock, live.then_some(event.at));
        }
        true
    }

    async fn on_event(&mut self, event: &Event) -> bool {
        if event.stream == self.user_stream && event.kind == EventKind::UserConversationLeft {
            // No longer a participant: nothing more of that conversation reaches this client, whatever it
            // still follows (the SDK cancels those subscriptions itself).
            if let Some(conversation) = event.data.pointer("/conversation/sid").and_then(Value::as_str) {
                self.forget_conversation(conversation);
            }
        }
        let Some(sids) = self.by_stream.get(&event.stream) else { return true };
        let sids: Vec<String> = sids.iter().cloned().collect();
        for sid in sids {
            // Anything between what was sent and this event was skipped by the feed: read it first.
            let behind = self.followed.get(&sid).is_some_and(|f| event.seq > f.delivered + 1);
            if behind && !self.catch_up(&sid, Some(event.seq - 1), None).await {
                return false;
            }
            if !self.deliver(&sid, event, None, true).await {
                return false;
            }
        }
        true
    }

    fn forget_conversation(&mut self, conversation: &str) {
        for kind in [ObjectKind::Messages, ObjectKind::Roster] {
            self.unfollow(&ObjectId::conversation(kind, conversation).name());
        }
    }

    async fn on_typing(&self, notice: &TypingNotice) -> bool {
        let conversation = notice.conversation_sid.as_str();
        if notice.identity == self.session.identity().as_str() {
            return true;
        }
        // Every participant hears typing, whether or not the SDK has opened the conversation's streams yet
        // (the session caches membership, so this is no store read per notice).
        let conv = palaver_core::store::ConversationRef::Sid(notice.conversation_sid.clone());
        if !self.session.participates_in(&conv).await.unwrap_or(false) {
            return true;
        }
        let payload = json!({"channel_sid": conversation, "identity": notice.identity,
            "typing_timeout": self.typing_timeout_secs});
        self.notifier.send(Notification { message_type: "twilio.ipmsg.typing_indicator", payload }).await
    }
}
