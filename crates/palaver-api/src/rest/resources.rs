//! The resources themselves, one struct per JSON object of the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Absolute URLs of related resources, by name.
pub type Links = BTreeMap<String, String>;

/// `conversations.v1.conversation`: a conversation, also the body of ConversationWithParticipants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationResource {
    /// The owning account.
    pub account_sid: String,
    /// The conversation service the conversation belongs to.
    pub chat_service_sid: String,
    /// The messaging service kept for compatibility; Palaver does not route by it.
    pub messaging_service_sid: Option<String>,
    /// `CH…`.
    pub sid: String,
    /// Display name, at most 256 characters.
    pub friendly_name: Option<String>,
    /// Application-chosen name unique within the service; usable in place of the SID in paths.
    pub unique_name: Option<String>,
    /// JSON text, `"{}"` when unset.
    pub attributes: String,
    /// `active`, `inactive` or `closed`.
    pub state: String,
    /// When the conversation was created.
    pub date_created: String,
    /// When the conversation last changed.
    pub date_updated: String,
    /// When the state timers will fire.
    pub timers: TimersResource,
    /// This resource's URL.
    pub url: String,
    /// `participants`, `messages`, `webhooks`.
    pub links: Links,
    /// Default email binding used for email participants, if any.
    pub bindings: Option<serde_json::Value>,
}

/// `timers` of a conversation: absolute times of the next automatic state changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimersResource {
    /// When the conversation becomes `inactive` unless something happens first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_inactive: Option<String>,
    /// When the conversation becomes `closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_closed: Option<String>,
}

/// `conversations.v1.conversation.conversation_participant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantResource {
    /// The owning account.
    pub account_sid: String,
    /// The service of the conversation.
    pub chat_service_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// `MB…`.
    pub sid: String,
    /// The chat user's identity; null for SMS, WhatsApp and email participants.
    pub identity: Option<String>,
    /// JSON text.
    pub attributes: String,
    /// How a non-chat participant is reached; null for chat participants.
    pub messaging_binding: Option<MessagingBindingResource>,
    /// The conversation-level role.
    pub role_sid: Option<String>,
    /// When the participant joined.
    pub date_created: String,
    /// When the participant last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
    /// Index of the last message the participant has read, or null before the first read report.
    pub last_read_message_index: Option<i64>,
    /// When the last read report was made.
    pub last_read_timestamp: Option<String>,
}

/// `messaging_binding` of a non-chat participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagingBindingResource {
    /// `sms`, `whatsapp` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The participant's own address (phone number, `whatsapp:` number or email address).
    pub address: String,
    /// The address the participant talks to.
    pub proxy_address: Option<String>,
    /// The address shown to others (group MMS, email).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_address: Option<String>,
    /// Display name (email).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `to` or `cc` (email).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// `conversations.v1.conversation.conversation_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageResource {
    /// The owning account.
    pub account_sid: String,
    /// The service of the conversation.
    pub chat_service_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// `IM…`.
    pub sid: String,
    /// Position in the conversation: strictly increasing, never reused, may have gaps.
    pub index: i64,
    /// Who wrote it; `system` when not given.
    pub author: Option<String>,
    /// The text.
    pub body: Option<String>,
    /// Attached media, or null.
    pub media: Option<Vec<serde_json::Value>>,
    /// JSON text.
    pub attributes: String,
    /// The author's participant, when the author is one.
    pub participant_sid: Option<String>,
    /// When it was sent.
    pub date_created: String,
    /// When it was last edited; null if never.
    pub date_updated: Option<String>,
    /// This resource's URL.
    pub url: String,
    /// Summary of delivery to non-chat participants, or null.
    pub delivery: Option<serde_json::Value>,
    /// `delivery_receipts`, `channel_metadata`.
    pub links: Links,
    /// The content template used, if any.
    pub content_sid: Option<String>,
    /// Email subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// `conversations.v1.user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserResource {
    /// `US…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// The service-level role.
    pub role_sid: Option<String>,
    /// The application's identifier of the user, unique in the service.
    pub identity: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// JSON text.
    pub attributes: String,
    /// Presence, when reachability is enabled; otherwise null.
    pub is_online: Option<bool>,
    /// Push reachability, when enabled; otherwise null.
    pub is_notifiable: Option<bool>,
    /// When the user was created.
    pub date_created: String,
    /// When the user last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
    /// `user_conversations`.
    pub links: Links,
}

/// `conversations.v1.user.user_conversation`: a conversation as one user sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserConversationResource {
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// Messages above the user's read horizon that still exist; null when no horizon is set.
    pub unread_messages_count: Option<i64>,
    /// The user's read horizon.
    pub last_read_message_index: Option<i64>,
    /// The user's participant in the conversation.
    pub participant_sid: String,
    /// The user.
    pub user_sid: String,
    /// The conversation's display name.
    pub friendly_name: Option<String>,
    /// The conversation's state.
    pub conversation_state: String,
    /// The conversation's timers.
    pub timers: TimersResource,
    /// The conversation's attributes (JSON text).
    pub attributes: String,
    /// When the conversation was created.
    pub date_created: String,
    /// When the conversation last changed.
    pub date_updated: String,
    /// Who created the conversation.
    pub created_by: Option<String>,
    /// `default` or `muted`.
    pub notification_level: String,
    /// The conversation's unique name.
    pub unique_name: Option<String>,
    /// This resource's URL.
    pub url: String,
    /// `participant`, `conversation`.
    pub links: Links,
}

/// `conversations.v1.participant_conversation`: a conversation found through one of its participants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantConversationResource {
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// The participant.
    pub participant_sid: String,
    /// The participant's user, for chat participants.
    pub participant_user_sid: Option<String>,
    /// The participant's identity, for chat participants.
    pub participant_identity: Option<String>,
    /// The participant's binding, for non-chat participants.
    pub participant_messaging_binding: Option<MessagingBindingResource>,
    /// The conversation.
    pub conversation_sid: String,
    /// The conversation's unique name.
    pub conversation_unique_name: Option<String>,
    /// The conversation's display name.
    pub conversation_friendly_name: Option<String>,
    /// The conversation's attributes (JSON text).
    pub conversation_attributes: String,
    /// When the conversation was created.
    pub conversation_date_created: String,
    /// When the conversation last changed.
    pub conversation_date_updated: String,
    /// Who created the conversation.
    pub conversation_created_by: Option<String>,
    /// The conversation's state.
    pub conversation_state: String,
    /// The conversation's timers.
    pub conversation_timers: TimersResource,
    /// `participant`, `conversation`.
    pub links: Links,
}

/// `conversations.v1.role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleResource {
    /// `RL…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// Display name.
    pub friendly_name: String,
    /// `service` or `conversation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The permissions the role grants.
    pub permissions: Vec<String>,
    /// When the role was created.
    pub date_created: String,
    /// When the role last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
}

/// `conversations.v1.service`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceResource {
    /// The owning account.
    pub account_sid: String,
    /// `IS…`.
    pub sid: String,
    /// Display name.
    pub friendly_name: String,
    /// When the service was created.
    pub date_created: String,
    /// When the service last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
    /// Nested collections.
    pub links: Links,
}

/// `conversations.v1.service.service_configuration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfigurationResource {
    /// The service.
    pub chat_service_sid: String,
    /// Conversation role given to the creator of a conversation.
    pub default_conversation_creator_role_sid: String,
    /// Conversation role given to participants.
    pub default_conversation_role_sid: String,
    /// Service role given to new users.
    pub default_chat_service_role_sid: String,
    /// This resource's URL.
    pub url: String,
    /// `notifications`.
    pub links: Links,
    /// Whether presence is tracked.
    pub reachability_enabled: bool,
}

/// `conversations.v1.configuration`: account-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationResource {
    /// The owning account.
    pub account_sid: String,
    /// The service `/v1/Conversations` works in.
    pub default_chat_service_sid: String,
    /// The default messaging service, if one was set.
    pub default_messaging_service_sid: Option<String>,
    /// Inactive timer applied to new conversations (ISO-8601 duration), if any.
    pub default_inactive_timer: Option<String>,
    /// Closed timer applied to new conversations (ISO-8601 duration), if any.
    pub default_closed_timer: Option<String>,
    /// This resource's URL.
    pub url: String,
    /// `service`, `webhooks`.
    pub links: Links,
}

/// `conversations.v1.configuration.configuration_webhook` (account level) and
/// `conversations.v1.service.service_configuration.service_webhook_configuration` (service level, which adds
/// `chat_service_sid` and has no `target`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfigurationResource {
    /// The owning account.
    pub account_sid: String,
    /// The service, at service level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_service_sid: Option<String>,
    /// `GET` or `POST`.
    pub method: String,
    /// The events that fire.
    pub filters: Vec<String>,
    /// Where pre-event hooks go.
    pub pre_webhook_url: Option<String>,
    /// Where post-event hooks go.
    pub post_webhook_url: Option<String>,
    /// `webhook` or `flex`, at account level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// This resource's URL.
    pub url: String,
}

/// `conversations.v1.conversation.conversation_scoped_webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationScopedWebhookResource {
    /// `WH…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// `webhook`, `trigger` or `studio`.
    pub target: String,
    /// This resource's URL.
    pub url: String,
    /// `{url, method, filters, triggers, flow_sid, replay_after}` as set.
    pub configuration: serde_json::Value,
    /// When it was created.
    pub date_created: String,
    /// When it last changed.
    pub date_updated: String,
}

/// `conversations.v1.conversation.message.delivery_receipt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReceiptResource {
    /// `DY…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// The service of the conversation.
    pub chat_service_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// The message.
    pub message_sid: String,
    /// The channel's id for the sent message.
    pub channel_message_sid: Option<String>,
    /// The recipient participant.
    pub participant_sid: String,
    /// `queued`, `sent`, `delivered`, `read`, `failed` or `undelivered`.
    pub status: String,
    /// The channel's error code; 0 when none.
    pub error_code: i64,
    /// When it was created.
    pub date_created: String,
    /// When it last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
}

/// `conversations.v1.address_configuration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressConfigurationResource {
    /// `IG…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// `sms`, `whatsapp`, `email`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub address: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// `{enabled, type, conversation_service_sid, webhook_url, webhook_method, webhook_filters, studio_flow_sid,
    /// studio_retry_count}`.
    pub auto_creation: serde_json::Value,
    /// When it was created.
    pub date_created: String,
    /// When it last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
    /// ISO country of the address.
    pub address_country: Option<String>,
}
