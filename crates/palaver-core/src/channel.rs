//! Non-chat channels: delivery of conversation messages to SMS, WhatsApp and email participants, their delivery
//! receipts, messages arriving from those channels, and the address configurations that route them.
//!
//! A receipt is created for every non-chat recipient in the same transaction as the message, in status
//! `queued`; it doubles as the durable outbox of the channel dispatcher, so a message is never lost between
//! being stored and being handed to the SMS gateway or the mail server.

use palaver_api::sid::{
    AddressConfigurationSid, ConversationSid, DeliveryReceiptSid, MessageSid, ParticipantSid, ServiceSid,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::InvalidInput;
use crate::model::BindingKind;

/// Where a message to a non-chat participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting to be handed to the channel.
    Queued,
    /// Accepted by the gateway or the mail server.
    Sent,
    /// Reported delivered to the handset or mailbox.
    Delivered,
    /// Reported read (WhatsApp).
    Read,
    /// Could not be sent.
    Failed,
    /// Sent, but the carrier could not deliver it.
    Undelivered,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [Self::Queued, Self::Sent, Self::Delivered, Self::Read, Self::Failed, Self::Undelivered];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Undelivered => "undelivered",
        }
    }

    /// Parses a status as Twilio's Messaging API reports it; its intermediate states (`accepted`,
    /// `scheduled`, `sending`, `receiving`, `received`) map to the nearest receipt status.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "queued" | "accepted" | "scheduled" | "sending" => Self::Queued,
            "sent" => Self::Sent,
            "delivered" | "receiving" | "received" => Self::Delivered,
            "read" => Self::Read,
            "failed" | "canceled" => Self::Failed,
            "undelivered" => Self::Undelivered,
            _ => return None,
        })
    }

    /// Whether the message did not reach its recipient: `failed` or `undelivered`.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Undelivered)
    }

    /// How far along a message is, so a late callback (`sent` after `delivered`) cannot move it back.
    pub fn progress(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered | Self::Undelivered | Self::Failed => 2,
            Self::Read => 3,
        }
    }
}

/// One recipient's delivery of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReceipt {
    /// `DY…`.
    pub sid: DeliveryReceiptSid,
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// Its service.
    pub service_sid: ServiceSid,
    /// The message.
    pub message_sid: MessageSid,
    /// The recipient.
    pub participant_sid: ParticipantSid,
    /// The channel's id for the sent message (`SM…` from an SMS gateway, a Message-ID for email).
    pub channel_message_sid: Option<String>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The channel's error code, when it failed.
    pub error_code: Option<i64>,
    /// Created at (with the message).
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// A delivery receipt with what an operator looks at beside it: where it goes, how sending went, and the
/// message it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDelivery {
    /// The receipt.
    pub receipt: DeliveryReceipt,
    /// The channel.
    pub channel: BindingKind,
    /// The recipient's address, as it was when the message was sent (unknown for receipts stored before
    /// addresses were kept with them, once their participant is gone).
    pub address: Option<String>,
    /// Attempts at handing it to the channel so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the dispatcher tries it next (queued receipts only).
    pub next_attempt: Option<OffsetDateTime>,
    /// The message's index, while the message exists.
    pub message_index: Option<i64>,
    /// The message's author, while the message exists.
    pub message_author: Option<String>,
    /// The message's receipt counts, while the message exists.
    pub message_delivery: Option<DeliveryCounts>,
}

/// Which receipts to list across conversations; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptFilter {
    /// Only receipts in this status.
    pub status: Option<DeliveryStatus>,
    /// Only failed or undelivered receipts.
    pub failed: bool,
    /// Only receipts of this conversation.
    pub conversation_sid: Option<ConversationSid>,
    /// Only receipts of this service.
    pub service_sid: Option<ServiceSid>,
}

/// Counts of a message's receipts per status, as stored with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryCounts {
    /// Receipts in total.
    pub total: u32,
    /// Per status, in [`DeliveryStatus::ALL`] order.
    pub by_status: [u32; 6],
}

impl DeliveryCounts {
    fn count(&self, status: DeliveryStatus) -> u32 {
        self.by_status[DeliveryStatus::ALL.iter().position(|s| *s == status).unwrap_or(0)]
    }

    /// Moves one receipt from `from` to `to`.
    pub fn moved(mut self, from: DeliveryStatus, to: DeliveryStatus) -> Self {
        let slot = |s: DeliveryStatus| DeliveryStatus::ALL.iter().position(|x| *x == s).unwrap_or(0);
        self.by_status[slot(from)] = self.by_status[slot(from)].saturating_sub(1);
        self.by_status[slot(to)] += 1;
        self
    }

    /// `total` receipts, all queued.
    pub fn queued(total: u32) -> Self {
        let mut by_status = [0; 6];
        by_status[0] = total;
        Self { total, by_status }
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        json!({"total": self.total, "by_status": self.by_status}).to_string()
    }

    /// Parses the stored form; anything unreadable counts as no receipts.
    pub fn from_json(raw: &str) -> Self {
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let mut counts = Self { total: value["total"].as_u64().unwrap_or(0) as u32, by_status: [0; 6] };
        if let Some(items) = value["by_status"].as_array() {
            for (slot, item) in counts.by_status.iter_mut().zip(items) {
                *slot = item.as_u64().unwrap_or(0) as u32;
            }
        }
        counts
    }

    /// The aggregated receipt as REST and the SDK show it: `total`, then `none|some|all` for each of `sent`,
    /// `delivered`, `read`, `undelivered` and `failed`. A message counts as sent once the channel accepted it,
    /// and as delivered once it was delivered or read.
    pub fn aggregate(&self) -> Value {
        use DeliveryStatus::*;
        let amount = |n: u32| match n {
            0 => "none",
            n if n >= self.total => "all",
            _ => "some",
        };
        let sent = self.count(Sent) + self.count(Delivered) + self.count(Read) + self.count(Undelivered);
        json!({
            "total": self.total,
            "sent": amount(sent),
            "delivered": amount(self.count(Delivered) + self.count(Read)),
            "read": amount(self.count(Read)),
            "undelivered": amount(self.count(Undelivered)),
            "failed": amount(self.count(Failed)),
        })
    }
}

/// A queued receipt with everything needed to send its message.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelJob {
    /// The receipt.
    pub receipt_sid: DeliveryReceiptSid,
    /// Channel.
    pub channel: BindingKind,
    /// Attempts so far.
    pub attempts: u32,
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// Its display name (email subject fallback).
    pub conversation_name: Option<String>,
    /// The conversation's own email sender.
    pub conversation_email: Option<(String, Option<String>)>,
    /// The message.
    pub message_sid: MessageSid,
    /// Its author.
    pub author: String,
    /// Its text.
    pub body: Option<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// The message's media descriptors (`{sid, content_type, filename, size, category}`).
    pub media: Vec<Value>,
    /// The recipient's address.
    pub to: String,
    /// The address the recipient writes to (`From` of an SMS).
    pub proxy_address: Option<String>,
    /// The address shown to email recipients.
    pub projected_address: Option<String>,
    /// The recipient's name (email).
    pub name: Option<String>,
    /// `to` or `cc` (email).
    pub level: Option<String>,
}

/// What happened to a receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    /// New status.
    pub status: DeliveryStatus,
    /// The channel's id for the message, once known.
    pub channel_message_sid: Option<String>,
    /// The channel's error code.
    pub error_code: Option<i64>,
    /// When to try again (for a receipt that stays `queued`); `None` stops retrying.
    pub retry_at: Option<OffsetDateTime>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When.
    pub now: OffsetDateTime,
}

/// Which receipt an update is for.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiptRef {
    /// By `DY…`.
    Sid(DeliveryReceiptSid),
    /// By the channel's message id (status callbacks).
    ChannelMessage(String),
}

/// A message arriving from a non-chat channel.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Channel.
    pub channel: BindingKind,
    /// The sender's address (`+1555…`, `whatsapp:+1555…`, `ann@example.com`).
    pub from: String,
    /// The address written to (our number or mailbox).
    pub to: String,
    /// Email: further recipients, so replies to all stay in one conversation.
    pub cc: Vec<String>,
    /// The sender's display name (email).
    pub from_name: Option<String>,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Media that came with it, already stored (recorded in the conversation's service when routed).
    pub media: Vec<crate::media::Upload>,
    /// The channel's id for it.
    pub channel_message_sid: Option<String>,
}

/// How a new conversation is started for an address without one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AutoCreation {
    /// Off by default.
    pub enabled: bool,
    /// `default`, `webhook` or `studio`.
    pub kind: String,
    /// The service new conversations go to (the default service when unset).
    pub conversation_service_sid: Option<ServiceSid>,
    /// For `webhook`: a conversation-scoped webhook added to each new conversation.
    pub webhook_url: Option<String>,
    /// Its method.
    pub webhook_method: Option<String>,
    /// Its filters.
    pub webhook_filters: Vec<String>,
    /// For `studio`.
    pub studio_flow_sid: Option<String>,
    /// For `studio`.
    pub studio_retry_count: Option<i64>,
}

/// An address (phone number, WhatsApp sender, mailbox) and what to do with messages to it.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressConfiguration {
    /// `IG…`.
    pub sid: AddressConfigurationSid,
    /// `sms`, `whatsapp`, `email`, … (kept as given).
    pub kind: String,
    /// The address.
    pub address: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Automatic conversation creation.
    pub auto_creation: AutoCreation,
    /// ISO country of the address.
    pub address_country: Option<String>,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// Address configuration types Twilio accepts.
pub const ADDRESS_TYPES: &[&str] = &["sms", "whatsapp", "messenger", "gbm", "email", "rcs", "apple", "chat"];

/// Checks an address configuration type.
pub fn parse_address_type(raw: &str) -> Result<String, InvalidInput> {
    let lower = raw.to_ascii_lowercase();
    if ADDRESS_TYPES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(InvalidInput::new("Type", format!("'{raw}' is not one of {}", ADDRESS_TYPES.join(", "))))
    }
}

/// Changes to an address configuration.
#[derive(Debug, Clone, Default)]
pub struct AddressConfigurationPatch {
    /// Display name.
    pub friendly_name: Option<String>,
    /// Automatic conversation creation, replaced whole.
    pub auto_creation: Option<AutoCreation>,
    /// When.
    pub now: Option<OffsetDateTime>,
}

/// The email address part of `Name <addr@host>` (or the text itself), lower-cased for matching.
pub fn bare_email(raw: &str) -> String {
    let raw = raw.trim();
    let inner = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(start), Some(end)) if start < end => &raw[start + 1..end],
        _ => raw,
    };
    inner.trim().to_ascii_lowercase()
}

/// The receipt as stored in `delivery.updated` events and shown over REST.
pub fn receipt_snapshot(receipt: &DeliveryReceipt) -> Value {
    json!({
        "sid": receipt.sid.as_str(),
        "conversation_sid": receipt.conversation_sid.as_str(),
        "chat_service_sid": receipt.service_sid.as_str(),
        "message_sid": receipt.message_sid.as_str(),
        "participant_sid": receipt.participant_sid.as_str(),
        "channel_message_sid": receipt.channel_message_sid,
        "status": receipt.status.as_str(),
        "error_code": receipt.error_code.unwrap_or(0),
        "date_created": crate::event::rfc3339(receipt.date_created),
        "date_updated": crate::event::rfc3339(receipt.date_updated),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_say_none_some_or_all() {
        let counts = DeliveryCounts::queued(2).moved(DeliveryStatus::Queued, DeliveryStatus::Delivered);
        let aggregate = counts.aggregate();
        assert_eq!(aggregate["total"], 2);
        assert_eq!(aggregate["sent"], "some");
        assert_eq!(aggregate["delivered"], "some");
        assert_eq!(aggregate["failed"], "none");
        let all = counts.moved(DeliveryStatus::Queued, DeliveryStatus::Read).aggregate();
        assert_eq!(
            (all["sent"].as_str(), all["delivered"].as_str(), all["read"].as_str()),
            (Some("all"), Some("all"), Some("some"))
        );
        assert_eq!(DeliveryCounts::from_json(&counts.to_json()), counts);
    }

    #[test]
    fn statuses_parse_as_the_messaging_api_reports_them() {
        assert_eq!(DeliveryStatus::parse("accepted"), Some(DeliveryStatus::Queued));
        assert_eq!(DeliveryStatus::parse("Delivered"), Some(DeliveryStatus::Delivered));
        assert_eq!(DeliveryStatus::parse("lost"), None);
        assert!(DeliveryStatus::Read.progress() > DeliveryStatus::Sent.progress());
    }

    #[test]
    fn email_addresses_are_matched_bare() {
        assert_eq!(bare_email("Ann Lee <Ann@Example.com>"), "ann@example.com");
        assert_eq!(bare_email(" bob@example.com "), "bob@example.com");
    }
}
