//! The domain's data. These types carry no serialisation on purpose: the REST and realtime transports map
//! them to their own wire types.

use palaver_api::sid::{
    ApiKeySid, ConversationSid, MessageSid, MessagingServiceSid, ParticipantSid, RoleSid, ServiceSid, UserSid,
};
use time::OffsetDateTime;

use crate::input::{Attributes, Identity, NotificationLevel, TimerDuration};

/// A conversation service: the namespace conversations, users and roles live in.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `IS…`.
    pub sid: ServiceSid,
    /// Display name.
    pub friendly_name: String,
    /// Conversation role given to whoever creates a conversation.
    pub creator_role_sid: RoleSid,
    /// Conversation role given to participants.
    pub participant_role_sid: RoleSid,
    /// Service role given to new users.
    pub user_role_sid: RoleSid,
    /// Whether presence is tracked.
    pub reachability_enabled: bool,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// Account-wide settings (`/v1/Configuration`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// The service `/v1/Conversations` works in.
    pub default_service_sid: ServiceSid,
    /// The default messaging service, kept for compatibility.
    pub default_messaging_service_sid: Option<MessagingServiceSid>,
    /// Inactive timer for new conversations that set none.
    pub default_inactive_timer: Option<TimerDuration>,
    /// Closed timer for new conversations that set none.
    pub default_closed_timer: Option<TimerDuration>,
}

/// The lifecycle state of a conversation. `Closed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationState {
    /// Being created together with its participants.
    Initializing,
    /// Open for messages.
    Active,
    /// Idle; becomes active again on new activity.
    Inactive,
    /// Finished; nothing can change any more.
    Closed,
}

impl ConversationState {
    /// Parses the wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "initializing" => Self::Initializing,
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "closed" => Self::Closed,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Closed => "closed",
        }
    }
}

/// A conversation's automatic state changes: the configured durations and the times they fire next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timers {
    /// Idle time after which an active conversation becomes inactive.
    pub inactive_after: Option<TimerDuration>,
    /// Idle time after which the conversation is closed.
    pub closed_after: Option<TimerDuration>,
    /// When it becomes inactive, if it will.
    pub date_inactive: Option<OffsetDateTime>,
    /// When it is closed, if it will be.
    pub date_closed: Option<OffsetDateTime>,
}

/// The default email sender of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmailBinding {
    /// Sender address.
    pub address: Option<String>,
    /// Sender name.
    pub name: Option<String>,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `CH…`.
    pub sid: ConversationSid,
    /// The service it belongs to.
    pub service_sid: ServiceSid,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Unique name within the service.
    pub unique_name: Option<String>,
    /// Application data.
    pub attributes: Attributes,
    /// Kept for compatibility.
    pub messaging_service_sid: Option<MessagingServiceSid>,
    /// Lifecycle state.
    pub state: ConversationState,
    /// When the state last changed.
    pub state_updated: OffsetDateTime,
    /// Automatic state changes.
    pub timers: Timers,
    /// Identity of the creator, when a chat user created it.
    pub created_by: Option<String>,
    /// Default email sender.
    pub email_binding: EmailBinding,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
    /// Index of the newest message, if any message exists.
    pub last_message_index: Option<i64>,
    /// When the newest message was created.
    pub last_message_date: Option<OffsetDateTime>,
    /// Number of messages that exist now.
    pub messages_count: i64,
    /// The index the next message will get (indices are never reused, so every message ever added to the
    /// conversation has a lower one).
    pub next_message_index: i64,
    /// Number of participants.
    pub participants_count: i64,
}

/// The channel a non-chat participant is reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// SMS / MMS.
    Sms,
    /// WhatsApp (`whatsapp:` addresses).
    Whatsapp,
    /// Email.
    Email,
}

impl BindingKind {
    /// Infers the channel from the participant's address.
    pub fn of_address(address: &str) -> Self {
        if address.starts_with("whatsapp:") {
            Self::Whatsapp
        } else if address.contains('@') {
            Self::Email
        } else {
            Self::Sms
        }
    }

    /// Parses the wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "sms" => Self::Sms,
            "whatsapp" => Self::Whatsapp,
            "email" => Self::Email,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Email => "email",
        }
    }
}

/// How a non-chat participant exchanges messages with the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingBinding {
    /// Channel.
    pub kind: BindingKind,
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

/// A member of a conversation: a chat user (by identity) or an SMS/WhatsApp/email address.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// `MB…`.
    pub sid: ParticipantSid,
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// The conversation's service.
    pub service_sid: ServiceSid,
    /// For chat participants.
    pub identity: Option<Identity>,
    /// For non-chat participants.
    pub binding: Option<MessagingBinding>,
    /// Application data.
    pub attributes: Attributes,
    /// Conversation-level role.
    pub role_sid: Option<RoleSid>,
    /// Read horizon: index of the last message read.
    pub last_read_message_index: Option<i64>,
    /// When the read horizon was last reported.
    pub last_read_timestamp: Option<OffsetDateTime>,
    /// Notification level of this user for this conversation.
    pub notification_level: NotificationLevel,
    /// Joined at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// A message in a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `IM…`.
    pub sid: MessageSid,
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// The conversation's service.
    pub service_sid: ServiceSid,
    /// Position: strictly increasing per conversation, never reused.
    pub index: i64,
    /// Who wrote it.
    pub author: String,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Application data.
    pub attributes: Attributes,
    /// The author's participant, when the author is one.
    pub participant_sid: Option<ParticipantSid>,
    /// Content template, if any.
    pub content_sid: Option<String>,
    /// Attached media descriptors (`{sid, content_type, filename, size, category}`).
    pub media: Vec<serde_json::Value>,
    /// Receipts of its delivery to non-chat participants, when it has any.
    pub delivery: Option<crate::channel::DeliveryCounts>,
    /// Sent at.
    pub date_created: OffsetDateTime,
    /// Edited at.
    pub date_updated: Option<OffsetDateTime>,
}

/// A chat user of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `US…`.
    pub sid: UserSid,
    /// The service.
    pub service_sid: ServiceSid,
    /// The application's identifier.
    pub identity: Identity,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Application data.
    pub attributes: Attributes,
    /// Service-level role.
    pub role_sid: Option<RoleSid>,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// A conversation as one user sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserConversation {
    /// The user.
    pub user_sid: UserSid,
    /// The user's participant.
    pub participant: Participant,
    /// The conversation.
    pub conversation: Conversation,
    /// Existing messages above the horizon; `None` when no horizon is set.
    pub unread_messages_count: Option<i64>,
}

/// A conversation found through one of its participants.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantConversation {
    /// The participant.
    pub participant: Participant,
    /// The participant's user, for chat participants that have one.
    pub user_sid: Option<UserSid>,
    /// The conversation.
    pub conversation: Conversation,
}

/// Whether a role applies to a whole service or within one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// Service-wide.
    Service,
    /// Within a conversation.
    Conversation,
}

impl RoleKind {
    /// Parses the wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "service" => Some(Self::Service),
            "conversation" => Some(Self::Conversation),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Conversation => "conversation",
        }
    }
}

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// `RL…`.
    pub sid: RoleSid,
    /// The service.
    pub service_sid: ServiceSid,
    /// Display name.
    pub friendly_name: String,
    /// Scope.
    pub kind: RoleKind,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// An API key: a credential for the REST API and the signing key of access tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// `SK…`.
    pub sid: ApiKeySid,
    /// Display name.
    pub friendly_name: String,
    /// The secret, kept to verify REST credentials and (later) to sign access tokens.
    pub secret: String,
    /// Created at.
    pub date_created: OffsetDateTime,
}

/// Every permission a role may grant.
pub const KNOWN_PERMISSIONS: &[&str] = &[
    "addParticipant",
    "addNonChatParticipant",
    "createConversation",
    "deleteAnyMessage",
    "deleteConversation",
    "deleteOwnMessage",
    "editAnyMessage",
    "editAnyMessageAttributes",
    "editAnyParticipantAttributes",
    "editAnyUserInfo",
    "editConversationAttributes",
    "editConversationName",
    "editNotificationLevel",
    "editOwnMessage",
    "editOwnMessageAttributes",
    "editOwnParticipantAttributes",
    "editOwnUserInfo",
    "joinConversation",
    "leaveConversation",
    "removeParticipant",
    "sendMediaMessage",
    "sendMessage",
];

/// The roles every new service starts with: (name, kind, permissions).
pub const DEFAULT_ROLES: &[(&str, RoleKind, &[&str])] = &[
    (
        "service admin",
        RoleKind::Service,
        &["createConversation", "joinConversation", "deleteConversation", "editAnyUserInfo", "editOwnUserInfo"],
    ),
    ("service user", RoleKind::Service, &["createConversation", "joinConversation", "editOwnUserInfo"]),
    (
        "channel admin",
        RoleKind::Conversation,
        &[
            "addParticipant",
            "addNonChatParticipant",
            "deleteAnyMessage",
            "deleteConversation",
            "editAnyMessage",
            "editAnyMessageAttributes",
            "editAnyParticipantAttributes",
            "editConversationAttributes",
            "editConversationName",
            "editNotificationLevel",
            "leaveConversation",
            "removeParticipant",
            "sendMediaMessage",
            "sendMessage",
        ],
    ),
    (
        "channel user",
        RoleKind::Conversation,
        &[
            "deleteOwnMessage",
            "editOwnMessage",
            "editOwnMessageAttributes",
            "editOwnParticipantAttributes",
            "editNotificationLevel",
            "leaveConversation",
            "sendMediaMessage",
            "sendMessage",
        ],
    ),
];
