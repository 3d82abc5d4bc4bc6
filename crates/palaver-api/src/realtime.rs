//! The realtime WebSocket protocol (`GET /v1/realtime`), shared by the server's gateway and the client SDK.
//! `docs/protocol.md` describes it in prose; this module is its exact shape.
//!
//! Every WebSocket message is one JSON text frame. The client sends [`Request`]s; the server sends
//! [`ServerFrame`]s: a [`Reply`] to each request (matched by `id`), stored [`EventFrame`]s carrying the
//! per-stream sequence number from the event log, ephemeral [`TypingFrame`]s and [`UnreadFrame`]s, and
//! session notices. Unknown event kinds and fields are tolerated in both directions so that old clients keep
//! working against newer servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the protocol this crate speaks; sent in `connect`.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close code: the access token was rejected (the client must not retry with it).
pub const CLOSE_DENIED: u16 = 4401;
/// WebSocket close code: the access token expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4410;
/// WebSocket close code: the client read too slowly and its send queue filled up; reconnect and resume.
pub const CLOSE_TOO_SLOW: u16 = 4408;
/// WebSocket close code: the server is shutting down; reconnect and resume.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// A client request: `{"id": 7, "method": "send_message", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the reply.
    pub id: u64,
    /// The operation and its parameters.
    #[serde(flatten)]
    pub call: Call,
}

/// Operations a client can call, with their parameters. Conversation and participant references accept a SID
/// or, respectively, a unique name / identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Call {
    /// First request of every connection. Result: [`Connected`].
    Connect(ConnectParams),
    /// Replaces the access token without reconnecting. Result: [`TokenUpdated`].
    UpdateToken {
        /// The new token.
        token: String,
    },
    /// Keep-alive at the protocol level. Result: `{}`.
    Ping,
    /// The conversations the user participates in, a page at a time. Result: [`MyConversationsPage`].
    GetMyConversations {
        /// Items per page (1..=100, default 50).
        #[serde(default)]
        page_size: Option<u32>,
        /// From the previous page's `next_page_token`.
        #[serde(default)]
        page_token: Option<String>,
    },
    /// One conversation by SID or unique name, joined or not. Result: [`MyConversation`].
    GetConversation {
        /// SID or unique name.
        conversation: String,
    },
    /// Creates a conversation (the creator does not join). Result: [`MyConversation`].
    CreateConversation {
        /// Display name.
        #[serde(default)]
        friendly_name: Option<String>,
        /// Unique name.
        #[serde(default)]
        unique_name: Option<String>,
        /// JSON text.
        #[serde(default)]
        attributes: Option<String>,
    },
    /// Starts receiving a conversation's events (participants are subscribed automatically), replaying those
    /// after `after_seq`. Result: [`MyConversation`].
    Subscribe {
        /// SID or unique name.
        conversation: String,
        /// Replay stored events after this sequence number.
        #[serde(default)]
        after_seq: Option<i64>,
    },
    /// Stops receiving a conversation's events. Result: `{}`.
    Unsubscribe {
        /// SID or unique name.
        conversation: String,
    },
    /// Changes names or attributes. `unique_name: ""` clears the unique name. Result: [`ConversationInfo`].
    UpdateConversation {
        /// SID or unique name.
        conversation: String,
        /// New display name.
        #[serde(default)]
        friendly_name: Option<String>,
        /// New unique name; empty clears it.
        #[serde(default)]
        unique_name: Option<String>,
        /// New attributes (JSON text).
        #[serde(default)]
        attributes: Option<String>,
    },
    /// Deletes a conversation. Result: `{}`.
    DeleteConversation {
        /// SID or unique name.
        conversation: String,
    },
    /// The caller joins. Result: [`ParticipantInfo`].
    Join {
        /// SID or unique name.
        conversation: String,
    },
    /// The caller leaves. Result: `{}`.
    Leave {
        /// SID or unique name.
        conversation: String,
    },
    /// Adds a chat participant. Result: [`ParticipantInfo`].
    AddParticipant {
        /// SID or unique name.
        conversation: String,
        /// The user to add.
        identity: String,
        /// JSON text.
        #[serde(default)]
        attributes: Option<String>,
    },
    /// Adds an SMS, WhatsApp or email participant. Result: [`ParticipantInfo`].
    AddNonChatParticipant {
        /// SID or unique name.
        conversation: String,
        /// The address the participant writes to.
        proxy_address: String,
        /// The participant's address.
        address: String,
        /// JSON text.
        #[serde(default)]
        attributes: Option<String>,
        /// Display name (email).
        #[serde(default)]
        name: Option<String>,
        /// `to` or `cc` (email).
        #[serde(default)]
        level: Option<String>,
    },
    /// Removes a participant by SID or identity. Result: `{}`.
    RemoveParticipant {
        /// SID or unique name.
        conversation: String,
        /// Participant SID or identity.
        participant: String,
    },
    /// Every participant of a conversation. Result: [`ParticipantList`].
    GetParticipants {
        /// SID or unique name.
        conversation: String,
    },
    /// Changes a participant's attributes. Result: [`ParticipantInfo`].
    UpdateParticipant {
        /// SID or unique name.
        conversation: String,
        /// Participant SID or identity.
        participant: String,
        /// JSON text.
        attributes: String,
    },
    /// Sends a message. Result: [`MessageInfo`].
    SendMessage(SendMessageParams),
    /// A page of messages. Result: [`MessagesPage`].
    GetMessages(GetMessagesParams),
    /// Edits a message. Result: [`MessageInfo`].
    UpdateMessage {
        /// SID or unique name.
        conversation: String,
        /// `IM…`.
        message: String,
        /// New text.
        #[serde(default)]
        body: Option<String>,
        /// New attributes (JSON text).
        #[serde(default)]
        attributes: Option<String>,
    },
    /// Deletes a message. Result: `{}`.
    RemoveMessage {
        /// SID or unique name.
        conversation: String,
        /// `IM…`.
        message: String,
    },
    /// Sets the caller's read horizon; `advance_only` keeps a higher current horizon. Result: [`UnreadCount`].
    SetReadHorizon {
        /// SID or unique name.
        conversation: String,
        /// New horizon; null marks everything unread.
        index: Option<i64>,
        /// Only move forwards.
        #[serde(default)]
        advance_only: bool,
    },
    /// The caller's unread count. Result: [`UnreadCount`].
    GetUnreadCount {
        /// SID or unique name.
        conversation: String,
    },
    /// Sets the caller's notification level (`default` or `muted`). Result: `{}`.
    SetNotificationLevel {
        /// SID or unique name.
        conversation: String,
        /// `default` or `muted`.
        level: String,
    },
    /// Tells the other participants the caller is typing. Result: [`TypingAck`].
    Typing {
        /// SID or unique name.
        conversation: String,
    },
    /// Message and participant counts. Result: [`Counts`].
    GetCounts {
        /// SID or unique name.
        conversation: String,
    },
    /// A message's delivery receipts, one per non-chat recipient. Result: [`DeliveryReceiptsPage`].
    GetDeliveryReceipts {
        /// SID or unique name.
        conversation: String,
        /// The message SID.
        message: String,
    },
    /// Recipients of messages sent to non-chat participants. Result: [`RecipientsPage`].
    GetMessageRecipients {
        /// SID or unique name.
        conversation: String,
        /// Only this message.
        #[serde(default)]
        message: Option<String>,
        /// Messages per page.
        #[serde(default)]
        page_size: Option<u32>,
        /// From the previous page.
        #[serde(default)]
        page_token: Option<String>,
    },
    /// A user of the service. Result: [`UserInfo`].
    GetUser {
        /// Identity.
        identity: String,
    },
    /// Changes the caller's own user. Result: [`UserInfo`].
    UpdateUser {
        /// New display name.
        #[serde(default)]
        friendly_name: Option<String>,
        /// New attributes (JSON text).
        #[serde(default)]
        attributes: Option<String>,
    },
    /// Registers this device or browser for push notifications of the caller (the service's binding of
    /// this kind and token moves to the caller). Result: [`PushRegistration`].
    SetPushRegistration {
        /// `apn`, `fcm` or `webpush`.
        kind: String,
        /// The device token (APNs, FCM), or the browser's `PushSubscription.toJSON()` as JSON text.
        token: String,
        /// The notifications wanted (`new_message`, `added_to_conversation`, `removed_from_conversation`);
        /// all when empty.
        #[serde(default)]
        message_types: Vec<String>,
    },
    /// Removes the caller's push registrations of `kind` (only the one of `token`, when given). Result:
    /// [`PushUnregistered`].
    UnsetPushRegistration {
        /// `apn`, `fcm` or `webpush`.
        kind: String,
        /// The token registered; every registration of the kind when absent.
        #[serde(default)]
        token: Option<String>,
    },
}

/// Result of `set_push_registration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRegistration {
    /// The binding (`BS…`), as `/v1/Services/{IS}/Bindings` lists it.
    pub binding_sid: String,
    /// The notifications it gets.
    pub message_types: Vec<String>,
}

/// Result of `unset_push_registration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushUnregistered {
    /// How many registrations were removed.
    pub removed: u32,
}

/// Parameters of `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectParams {
    /// Access token (JWT).
    pub token: String,
    /// The protocol version the client speaks.
    #[serde(default)]
    pub protocol_version: Option<u32>,
    /// Last sequence number seen per stream (conversation or user SID); events after them are replayed.
    #[serde(default)]
    pub resume: BTreeMap<String, i64>,
}

/// Parameters of `send_message`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SendMessageParams {
    /// SID or unique name.
    pub conversation: String,
    /// Text (may be empty).
    #[serde(default)]
    pub body: Option<String>,
    /// JSON text.
    #[serde(default)]
    pub attributes: Option<String>,
    /// Email subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Media already uploaded (`ME…`).
    #[serde(default)]
    pub media_sids: Vec<String>,
    /// A key unique per logical send: a retried send with the same key returns the first result instead of
    /// storing the message twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Which way `get_messages` reads from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Towards older messages (the default).
    #[default]
    Backwards,
    /// Towards newer messages.
    Forward,
}

/// Parameters of `get_messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetMessagesParams {
    /// SID or unique name.
    pub conversation: String,
    /// Messages per page (1..=100, default 30).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Index to start from, inclusive; the newest message when absent.
    #[serde(default)]
    pub anchor: Option<i64>,
    /// Which way to read.
    #[serde(default)]
    pub direction: Direction,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// The answer to a request.
    Reply(Reply),
    /// A stored change.
    Event(EventFrame),
    /// Someone is typing (not stored).
    Typing(TypingFrame),
    /// The caller's unread count in a conversation changed.
    Unread(UnreadFrame),
    /// The access token expires soon; call `update_token`.
    TokenAboutToExpire {
        /// When it expires (RFC 3339).
        expires_at: String,
    },
    /// The server is about to close the connection, and why.
    Closing {
        /// `token_expired`, `too_slow`, `shutdown`, `denied`.
        reason: String,
    },
}

/// The answer to request `reply_to`: a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's `id`.
    pub reply_to: u64,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RealtimeError>,
}

/// A failed request: the same codes as the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealtimeError {
    /// Twilio-style error code (see [`crate::ErrorCode`]).
    pub code: u32,
    /// What went wrong.
    pub message: String,
    /// The HTTP status the REST API would have answered with.
    pub status: u16,
    /// For 20429 (too many requests): how long to wait before retrying, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A stored event, in the order of its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// The stream: a conversation SID, or the user's SID for user events.
    pub stream: String,
    /// Position in the stream: consecutive from 1; a client keeps the last one it processed per stream and
    /// passes it to `connect` / `subscribe` to resume.
    pub seq: i64,
    /// What happened, e.g. `message.added` (see [`EventKindName`]).
    pub kind: String,
    /// The resource after the change (before it, for removals): a [`ConversationInfo`], [`ParticipantInfo`],
    /// [`MessageInfo`], [`UserInfo`] or [`UserConversationChange`], by kind.
    pub data: Value,
    /// When it happened (RFC 3339).
    pub at: String,
}

/// Event kinds as they appear in [`EventFrame::kind`].
#[derive(Debug)]
pub struct EventKindName;

impl EventKindName {
    /// A conversation was created.
    pub const CONVERSATION_ADDED: &'static str = "conversation.added";
    /// Names, attributes, state or timers changed.
    pub const CONVERSATION_UPDATED: &'static str = "conversation.updated";
    /// The state changed (also reported as `conversation.updated`).
    pub const CONVERSATION_STATE_UPDATED: &'static str = "conversation.state_updated";
    /// The conversation was deleted.
    pub const CONVERSATION_REMOVED: &'static str = "conversation.removed";
    /// A participant joined.
    pub const PARTICIPANT_ADDED: &'static str = "participant.added";
    /// A participant changed (attributes, role, read horizon).
    pub const PARTICIPANT_UPDATED: &'static str = "participant.updated";
    /// A participant left.
    pub const PARTICIPANT_REMOVED: &'static str = "participant.removed";
    /// A message was sent.
    pub const MESSAGE_ADDED: &'static str = "message.added";
    /// A message was edited.
    pub const MESSAGE_UPDATED: &'static str = "message.updated";
    /// A message was deleted.
    pub const MESSAGE_REMOVED: &'static str = "message.removed";
    /// A user was created.
    pub const USER_ADDED: &'static str = "user.added";
    /// A user changed.
    pub const USER_UPDATED: &'static str = "user.updated";
    /// A message's delivery to a non-chat recipient changed; `data` is the [`MessageInfo`] with its new
    /// aggregated `delivery`, plus the changed receipt under `receipt` ([`DeliveryReceiptInfo`]).
    pub const DELIVERY_UPDATED: &'static str = "delivery.updated";
    /// A user was deleted.
    pub const USER_REMOVED: &'static str = "user.removed";
    /// The user (stream owner) was added to a conversation.
    pub const USER_CONVERSATION_JOINED: &'static str = "user.conversation_joined";
    /// The user (stream owner) left or was removed from a conversation.
    pub const USER_CONVERSATION_LEFT: &'static str = "user.conversation_left";
    /// The user's own view of a conversation changed: read horizon or notification level.
    pub const USER_CONVERSATION_UPDATED: &'static str = "user.conversation_updated";
}

/// Someone is typing in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingFrame {
    /// The conversation.
    pub conversation_sid: String,
    /// Who is typing.
    pub identity: String,
    /// Their participant.
    pub participant_sid: Option<String>,
    /// Consider them stopped after this long without another indicator.
    pub timeout_ms: u64,
}

/// The caller's exact unread count in a conversation, pushed whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadFrame {
    /// The conversation.
    pub conversation_sid: String,
    /// Existing messages above the read horizon; null when no horizon is set.
    pub unread_messages_count: Option<i64>,
    /// The horizon.
    pub last_read_message_index: Option<i64>,
}

/// Result of `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connected {
    /// The identity the token grants.
    pub identity: String,
    /// The service the session works in.
    pub service_sid: String,
    /// The caller's user; `null` for an observer, who is no user of the service.
    #[serde(default)]
    pub user: Option<UserInfo>,
    /// The session observes (its token carries Palaver's observer grant): it may `subscribe` to any
    /// conversation of the service and receives its events and typing, and every change it asks for is
    /// refused with 20403.
    #[serde(default)]
    pub observer: bool,
    /// When the token expires (RFC 3339).
    pub token_expires_at: String,
    /// How long a typing indicator lasts for receivers, in milliseconds.
    pub typing_timeout_ms: u64,
    /// Media and email limits.
    pub limits: ConversationLimits,
    /// Server-chosen id of this connection, for logs (the server's log lines of the session carry it).
    pub session_id: String,
}

/// Result of `update_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUpdated {
    /// When the new token expires (RFC 3339).
    pub token_expires_at: String,
}

/// Limits the server enforces on messages (served to clients so they can check early).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationLimits {
    /// Media items per message.
    pub media_attachments_count_limit: u32,
    /// Size of one media item, in MB.
    pub media_attachment_size_limit_in_mb: u32,
    /// Size of all media of a message, in MB.
    pub media_attachments_total_size_limit_in_mb: u32,
    /// Allowed content types of email bodies.
    pub email_bodies_allowed_content_types: Vec<String>,
    /// Allowed content types of email histories.
    pub email_histories_allowed_content_types: Vec<String>,
}

/// A conversation's shared state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// `CH…`.
    pub sid: String,
    /// The service.
    pub service_sid: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Unique name.
    pub unique_name: Option<String>,
    /// JSON text.
    pub attributes: String,
    /// `active`, `inactive` or `closed`.
    pub state: String,
    /// When the state last changed (RFC 3339).
    pub state_updated: String,
    /// Identity of the creator, or null.
    pub created_by: Option<String>,
    /// Created at (RFC 3339).
    pub date_created: String,
    /// Last changed at (RFC 3339).
    pub date_updated: String,
    /// When the inactive timer fires, if set.
    pub date_inactive: Option<String>,
    /// When the closed timer fires, if set.
    pub date_closed: Option<String>,
    /// The newest message, if any.
    pub last_message: Option<LastMessageInfo>,
    /// Default email binding, if any: `{"email": {"address", "name"}}`.
    pub bindings: Option<Value>,
    /// Messages that exist.
    pub messages_count: i64,
    /// Participants.
    pub participants_count: i64,
}

/// The newest message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMessageInfo {
    /// Its index.
    pub index: i64,
    /// When it was sent (RFC 3339).
    pub date_created: Option<String>,
}

/// A conversation as the caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyConversation {
    /// The shared state.
    pub conversation: ConversationInfo,
    /// `joined` or `not_participating`.
    pub status: String,
    /// The caller's participant, when joined.
    pub participant: Option<ParticipantInfo>,
    /// The caller's read horizon.
    pub last_read_message_index: Option<i64>,
    /// Exact unread count; null without a horizon or when not joined.
    pub unread_messages_count: Option<i64>,
    /// `default` or `muted`.
    pub notification_level: String,
    /// The last sequence number of the conversation's stream at the time of this answer.
    pub last_seq: i64,
}

/// A page of the caller's conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyConversationsPage {
    /// The conversations.
    pub items: Vec<MyConversation>,
    /// Pass to the next `get_my_conversations`, or null on the last page.
    pub next_page_token: Option<String>,
}

/// How a non-chat participant is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingInfo {
    /// `sms`, `whatsapp` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The participant's address.
    pub address: String,
    /// The address the participant writes to.
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
pub struct ParticipantInfo {
    /// `MB…`.
    pub sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// Chat identity, or null for non-chat participants.
    pub identity: Option<String>,
    /// `chat`, `sms`, `whatsapp` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For non-chat participants.
    pub messaging_binding: Option<BindingInfo>,
    /// JSON text.
    pub attributes: String,
    /// Conversation role.
    pub role_sid: Option<String>,
    /// Read horizon.
    pub last_read_message_index: Option<i64>,
    /// When the horizon was last reported (RFC 3339).
    pub last_read_timestamp: Option<String>,
    /// Joined at (RFC 3339).
    pub date_created: String,
    /// Last changed at (RFC 3339).
    pub date_updated: String,
}

/// All participants of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantList {
    /// In joining order.
    pub items: Vec<ParticipantInfo>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// `IM…`.
    pub sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// Position: increasing, never reused, may have gaps.
    pub index: i64,
    /// Who wrote it.
    pub author: String,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// JSON text.
    pub attributes: String,
    /// The author's participant.
    pub participant_sid: Option<String>,
    /// Content template.
    pub content_sid: Option<String>,
    /// Attached media descriptors.
    #[serde(default)]
    pub media: Vec<Value>,
    /// Aggregated delivery receipt, for messages to non-chat participants.
    #[serde(default)]
    pub delivery: Option<Value>,
    /// Sent at (RFC 3339).
    pub date_created: String,
    /// Edited at (RFC 3339).
    pub date_updated: Option<String>,
}

/// A page of messages, always in ascending index order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesPage {
    /// The messages, oldest first.
    pub items: Vec<MessageInfo>,
    /// Older messages exist before the first item.
    pub has_older: bool,
    /// Newer messages exist after the last item.
    pub has_newer: bool,
}

/// A chat user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// `US…`.
    pub sid: String,
    /// Identity.
    pub identity: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// JSON text.
    pub attributes: String,
    /// Service role.
    pub role_sid: Option<String>,
    /// Presence, when reachability is enabled.
    pub is_online: Option<bool>,
    /// Push reachability, when enabled.
    pub is_notifiable: Option<bool>,
    /// Created at (RFC 3339).
    pub date_created: String,
    /// Last changed at (RFC 3339).
    pub date_updated: String,
}

/// Data of `user.conversation_joined` / `user.conversation_left` / `user.conversation_updated` events on a
/// user's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserConversationChange {
    /// The conversation.
    pub conversation: ConversationInfo,
    /// The user's participant (after joining, before leaving).
    pub participant: ParticipantInfo,
    /// For joins: the sequence number of the `participant.added` event in the conversation's stream, from
    /// which a session starts forwarding that conversation's events.
    #[serde(default)]
    pub joined_at_seq: Option<i64>,
    /// The user's notification level for the conversation (`default` or `muted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_level: Option<String>,
}

/// Result of `set_read_horizon` / `get_unread_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCount {
    /// Existing messages above the horizon; null when no horizon is set.
    pub unread_messages_count: Option<i64>,
}

/// Result of `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingAck {
    /// Send the next indicator no sooner than this, in milliseconds.
    pub typing_timeout_ms: u64,
}

/// Result of `get_counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages that exist.
    pub messages_count: i64,
    /// Participants.
    pub participants_count: i64,
}

/// Who a message was sent to, outside chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientInfo {
    /// The message.
    pub message_sid: String,
    /// The recipient participant.
    pub participant_sid: String,
    /// The recipient's address.
    pub address: String,
    /// `sms`, `whatsapp` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Delivery status, when known.
    pub status: Option<String>,
}

/// The delivery of one message to one non-chat recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReceiptInfo {
    /// `DY…`.
    pub sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// The message.
    pub message_sid: String,
    /// The recipient participant.
    pub participant_sid: String,
    /// The channel's id for the sent message.
    pub channel_message_sid: Option<String>,
    /// `queued`, `sent`, `delivered`, `read`, `failed` or `undelivered`.
    pub status: String,
    /// The channel's error code; 0 when none.
    pub error_code: i64,
    /// Created at (RFC 3339).
    pub date_created: String,
    /// Last changed at (RFC 3339).
    pub date_updated: String,
}

/// A message's delivery receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReceiptsPage {
    /// In creation order.
    pub items: Vec<DeliveryReceiptInfo>,
}

/// A page of recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientsPage {
    /// The recipients.
    pub items: Vec<RecipientInfo>,
    /// For the next page, or null.
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_method_and_params() {
        let request = Request { id: 3, call: Call::Join { conversation: "CH1".into() } };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json, serde_json::json!({"id": 3, "method": "join", "params": {"conversation": "CH1"}}));
        let back: Request = serde_json::from_value(json).unwrap();
        assert_eq!(back, request);
        let ping: Request = serde_json::from_str(r#"{"id":1,"method":"ping"}"#).unwrap();
        assert_eq!(ping.call, Call::Ping);
    }

    #[test]
    fn server_frames_are_tagged_by_type() {
        let frame = ServerFrame::Reply(Reply { reply_to: 9, result: Some(serde_json::json!({})), error: None });
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(json, r#"{"type":"reply","reply_to":9,"result":{}}"#);
        let typing: ServerFrame = serde_json::from_str(
            r#"{"type":"typing","conversation_sid":"CH1","identity":"bob","participant_sid":null,"timeout_ms":6000}"#,
        )
        .unwrap();
        assert!(matches!(typing, ServerFrame::Typing(t) if t.identity == "bob"));
    }
}
