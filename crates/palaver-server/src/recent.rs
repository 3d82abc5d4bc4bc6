//! What this node sent out lately, for operators (the console's webhook and channel pages): every webhook
//! attempt with its outcome and next retry, and every change of a channel delivery receipt.
//!
//! Kept in memory, the newest [`KEPT`] of each, since the node started: a debugging view, not a record. The
//! durable state stays where it is (the webhook outbox, the receipts, `…/Messages/{IM}/Receipts`). Receipt
//! changes are read from the event feed, so every node sees those of the whole cluster; webhook attempts are
//! the ones this node made.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use palaver_core::event::EventKind;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// How many entries of each kind are kept.
pub const KEPT: usize = 500;

/// The recent webhook attempts and receipt changes.
#[derive(Debug, Default)]
pub struct RecentDeliveries {
    webhooks: Mutex<VecDeque<WebhookAttempt>>,
    receipts: Mutex<VecDeque<ReceiptChange>>,
}

/// How a webhook attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Answered 2xx: removed from the outbox.
    Delivered,
    /// Failed; tried again at `next_retry`.
    Retrying,
    /// Failed for the last time: kept in the outbox as dead, never retried.
    GaveUp,
}

/// One webhook request sent (or tried).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookAttempt {
    /// The outbox entry (the same across its retries).
    pub outbox_id: i64,
    /// The log event it announces.
    pub event_id: i64,
    /// Where it went.
    pub url: String,
    /// `POST` or `GET`.
    pub method: String,
    /// `onMessageAdded`, …
    pub event_type: Option<String>,
    /// The conversation the event is about, when it is about one.
    pub conversation_sid: Option<String>,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed (`answered 500`, `no answer: …`).
    pub error: Option<String>,
    /// When it is tried again.
    #[serde(serialize_with = "optional_date")]
    pub next_retry: Option<OffsetDateTime>,
    /// When the attempt ended.
    #[serde(serialize_with = "date")]
    pub date_created: OffsetDateTime,
}

/// A delivery receipt after one of its changes (`delivery.updated`).
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptChange {
    /// The conversation service of the receipt's conversation.
    pub service_sid: String,
    /// The receipt, as the realtime protocol's `DeliveryReceiptInfo` (`sid`, `status`, `error_code`, …).
    pub receipt: Value,
    /// The message's index in its conversation.
    pub message_index: Option<i64>,
    /// The message's author.
    pub message_author: Option<String>,
    /// The message's aggregated delivery counts after the change.
    pub message_delivery: Option<Value>,
    /// When the change happened.
    #[serde(serialize_with = "date")]
    pub date_created: OffsetDateTime,
}

impl WebhookAttempt {
    /// Attempt number `attempt` of `delivery`, which ended with `outcome` and is retried at `next_retry`.
    pub fn of(
        delivery: &palaver_core::webhook::Delivery,
        attempt: u32,
        outcome: &Result<String, crate::webhooks::SendError>,
        next_retry: Option<OffsetDateTime>,
    ) -> Self {
        let param =
            |name: &str| delivery.request.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
        Self {
            outbox_id: delivery.id,
            event_id: delivery.request.event_id,
            url: delivery.request.url.clone(),
            method: delivery.request.method.as_str().to_string(),
            event_type: param("EventType"),
            conversation_sid: param("ConversationSid"),
            attempt,
            outcome: match (outcome, next_retry) {
                (Ok(_), _) => AttemptOutcome::Delivered,
                (Err(_), Some(_)) => AttemptOutcome::Retrying,
                (Err(_), None) => AttemptOutcome::GaveUp,
            },
            error: outcome.as_ref().err().map(ToString::to_string),
            next_retry,
            date_created: OffsetDateTime::now_utc(),
        }
    }
}

impl ReceiptChange {
    /// The receipt's status (`queued`, `sent`, `delivered`, `read`, `failed`, `undelivered`).
    pub fn status(&self) -> &str {
        self.receipt.get("status").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether the delivery failed.
    pub fn is_failure(&self) -> bool {
        matches!(self.status(), "failed" | "undelivered")
    }
}

impl RecentDeliveries {
    /// Records a webhook attempt.
    pub fn webhook_attempted(&self, attempt: WebhookAttempt) {
        push(&self.webhooks, attempt);
    }

    /// The recent webhook attempts, newest first.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        newest_first(&self.webhooks)
    }

    /// The recent receipt changes, newest first.
    pub fn receipt_changes(&self) -> Vec<ReceiptChange> {
        newest_first(&self.receipts)
    }

    /// Records the receipt changes of the feed until `shutdown` completes.
    pub async fn follow_receipts(
        self: Arc<Self>,
        feed: &palaver_core::feed::EventFeed,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut events = feed.subscribe();
        tokio::pin!(shutdown);
        loop {
            let item = tokio::select! {
                () = &mut shutdown => return,
                item = events.recv() => item,
            };
            match item {
                Ok(item) if item.event.kind == EventKind::DeliveryUpdated => {
                    let data = &item.event.data;
                    let Some(receipt) = data.get("receipt") else { continue };
                    push(
                        &self.receipts,
                        ReceiptChange {
                            service_sid: item.event.service_sid.clone(),
                            receipt: receipt.clone(),
                            message_index: data.get("index").and_then(Value::as_i64),
                            message_author: data.get("author").and_then(Value::as_str).map(str::to_owned),
                            message_delivery: data.get("delivery").cloned(),
                            date_created: item.event.at,
                        },
                    );
                }
                Ok(_) => {}
                // Missed changes are missed from this view only; the receipts themselves are stored.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn push<T>(entries: &Mutex<VecDeque<T>>, entry: T) {
    let mut entries = entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if entries.len() == KEPT {
        entries.pop_front();
    }
    entries.push_back(entry);
}

fn newest_first<T: Clone>(entries: &Mutex<VecDeque<T>>) -> Vec<T> {
    entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().rev().cloned().collect()
}

/// Dates as the REST API writes them (`YYYY-MM-DDTHH:MM:SSZ`).
fn date<S: serde::Serializer>(value: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::resources::date(*value))
}

fn optional_date<S: serde::Serializer>(value: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => date(value, serializer),
        None => serializer.serialize_none(),
    }
}
