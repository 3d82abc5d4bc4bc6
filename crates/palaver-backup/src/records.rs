//! The lines of an export file: one JSON object per line, told apart by `type`. This is the file format, not the
//! REST wire format: it keeps what the store keeps (dates as Unix milliseconds, attributes as their exact JSON
//! text, message indices, timer due times), so an import can put every value back as it was.
//!
//! A file is `header`, `account`, then per service: `service` (with its roles and webhook settings), its
//! `user`s, then per conversation: `conversation` (with its participants and webhooks) followed by its
//! `message`s (each with its media records and delivery receipts); and `end` last, with the counts, so that a
//! truncated file is told from a whole one.

use serde::{Deserialize, Serialize};

/// What the first line says the file is.
pub const FORMAT: &str = "palaver-export";

/// The version of the format this crate writes and reads.
pub const VERSION: u32 = 1;

/// One line of an export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Lines are made and consumed one at a time: boxing the big ones would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// The first line.
    Header(Header),
    /// The account configuration.
    Account(AccountRecord),
    /// A service, with its roles.
    Service(ServiceRecord),
    /// A user of the last service.
    User(UserRecord),
    /// A conversation of the last service, with its participants.
    Conversation(ConversationRecord),
    /// A message of the last conversation.
    Message(MessageRecord),
    /// The last line.
    End(Counts),
}

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format's version ([`VERSION`]).
    pub version: u32,
    /// The Palaver version that wrote it.
    pub palaver_version: String,
    /// When the export began (Unix milliseconds).
    pub exported_at: i64,
}

/// How many of each kind a file holds (the `end` line), or an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Services.
    pub services: u64,
    /// Users.
    pub users: u64,
    /// Conversations.
    pub conversations: u64,
    /// Participants.
    pub participants: u64,
    /// Messages.
    pub messages: u64,
    /// Media records (attached to messages).
    pub media: u64,
}

/// Webhook settings of the account or a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WebhookSettingsRecord {
    /// `GET` or `POST`.
    pub method: String,
    /// Event type names (`onMessageAdded`, …).
    pub filters: Vec<String>,
    /// Pre-event URL.
    pub pre_webhook_url: Option<String>,
    /// Post-event URL.
    pub post_webhook_url: Option<String>,
    /// `webhook` or `flex` (account only).
    pub target: String,
}

/// The account configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The default service (one of the file's services).
    pub default_service_sid: String,
    /// The default messaging service.
    pub default_messaging_service_sid: Option<String>,
    /// Inactive timer of new conversations, in seconds.
    pub default_inactive_timer: Option<i64>,
    /// Closed timer of new conversations, in seconds.
    pub default_closed_timer: Option<i64>,
    /// Account-level webhooks.
    pub webhooks: WebhookSettingsRecord,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// `RL…`.
    pub sid: String,
    /// Display name.
    pub friendly_name: String,
    /// `service` or `conversation`.
    pub kind: String,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
}

/// A service with its configuration and roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// `IS…`.
    pub sid: String,
    /// Display name.
    pub friendly_name: String,
    /// Conversation role of creators (one of `roles`).
    pub creator_role_sid: String,
    /// Conversation role of participants.
    pub participant_role_sid: String,
    /// Service role of users.
    pub user_role_sid: String,
    /// Presence tracking.
    pub reachability_enabled: bool,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
    /// Every role of the service, oldest first.
    pub roles: Vec<RoleRecord>,
    /// Service-level webhooks.
    pub webhooks: WebhookSettingsRecord,
}

/// A user of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// `US…`.
    pub sid: String,
    /// Identity.
    pub identity: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Attributes, as their JSON text.
    pub attributes: String,
    /// Service role.
    pub role_sid: Option<String>,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
}

/// A conversation with its participants and webhooks; its messages follow on lines of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// `CH…`.
    pub sid: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Unique name in the service.
    pub unique_name: Option<String>,
    /// Attributes, as their JSON text.
    pub attributes: String,
    /// Messaging service.
    pub messaging_service_sid: Option<String>,
    /// `active`, `inactive` or `closed`.
    pub state: String,
    /// When the state last changed.
    pub state_updated: i64,
    /// Inactive timer, in seconds.
    pub timer_inactive: Option<i64>,
    /// Closed timer, in seconds.
    pub timer_closed: Option<i64>,
    /// When it becomes inactive.
    pub date_inactive: Option<i64>,
    /// When it closes.
    pub date_closed: Option<i64>,
    /// Identity of its creator.
    pub created_by: Option<String>,
    /// Default email sender address.
    pub email_address: Option<String>,
    /// Default email sender name.
    pub email_name: Option<String>,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
    /// The index the next message gets (above every message ever added, deleted ones included).
    pub next_message_index: i64,
    /// Participants, in joining order.
    pub participants: Vec<ParticipantRecord>,
    /// Conversation-scoped webhooks, oldest first.
    pub webhooks: Vec<ConversationWebhookRecord>,
}

/// How a non-chat participant is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    /// `sms`, `whatsapp` or `email`.
    pub kind: String,
    /// The participant's address.
    pub address: String,
    /// The address it writes to.
    pub proxy_address: Option<String>,
    /// The address shown to others.
    pub projected_address: Option<String>,
    /// Display name (email).
    pub name: Option<String>,
    /// `to` or `cc` (email).
    pub level: Option<String>,
}

/// A participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    /// `MB…`.
    pub sid: String,
    /// Chat participants: the identity.
    pub identity: Option<String>,
    /// Non-chat participants: the binding.
    pub binding: Option<BindingRecord>,
    /// Attributes, as their JSON text.
    pub attributes: String,
    /// Conversation role.
    pub role_sid: Option<String>,
    /// Read horizon.
    pub last_read_message_index: Option<i64>,
    /// When the horizon was reported.
    pub last_read_timestamp: Option<i64>,
    /// `default` or `muted`.
    pub notification_level: String,
    /// Joined at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
}

/// A conversation-scoped webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationWebhookRecord {
    /// `WH…`.
    pub sid: String,
    /// `webhook`, `trigger` or `studio`.
    pub target: String,
    /// Where requests go.
    pub url: Option<String>,
    /// `GET` or `POST`.
    pub method: String,
    /// Event type names.
    pub filters: Vec<String>,
    /// Keywords (`trigger`).
    pub triggers: Vec<String>,
    /// Studio flow.
    pub flow_sid: Option<String>,
    /// Studio replay start.
    pub replay_after: Option<i64>,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
}

/// A message of the conversation on the line before its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// `IM…`.
    pub sid: String,
    /// Its index in the conversation.
    pub index: i64,
    /// Author.
    pub author: String,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Attributes, as their JSON text.
    pub attributes: String,
    /// The author's participant when the message was added (the import derives it again from the author).
    pub participant_sid: Option<String>,
    /// Content template.
    pub content_sid: Option<String>,
    /// Sent at.
    pub date_created: i64,
    /// Edited at.
    pub date_updated: Option<i64>,
    /// The uploads attached to it, in order.
    pub media: Vec<MediaRecord>,
    /// Its delivery receipts to non-chat participants.
    pub receipts: Vec<ReceiptRecord>,
}

/// An uploaded file's record (its bytes are in the media store, under `sha256`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// `ME…`.
    pub sid: String,
    /// MIME type.
    pub content_type: String,
    /// File name.
    pub filename: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Uploader's identity.
    pub author: Option<String>,
    /// `media`, `body` or `history`.
    pub category: String,
    /// Uploaded at.
    pub date_created: i64,
}

/// Where a message stands with one non-chat recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// `DY…` (informational: an import makes new receipts).
    pub sid: String,
    /// The recipient.
    pub participant_sid: String,
    /// `queued`, `sent`, `delivered`, `read`, `failed` or `undelivered`.
    pub status: String,
    /// The channel's id of the sent message.
    pub channel_message_sid: Option<String>,
    /// The channel's error code.
    pub error_code: Option<i64>,
    /// Created at.
    pub date_created: i64,
    /// Last changed at.
    pub date_updated: i64,
}
