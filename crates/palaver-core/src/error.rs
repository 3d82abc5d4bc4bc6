//! Errors of domain operations. Expected failures (a missing resource, a taken name, a closed conversation,
//! bad input) are kept apart from [`Error::Storage`], the unexpected ones.

use std::fmt;

/// Shorthand for results of domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The addressed resource does not exist (or not in this service / conversation).
    #[error("{kind} '{id}' was not found")]
    NotFound {
        /// What was looked for.
        kind: ResourceKind,
        /// The SID, identity or unique name that was looked up.
        id: String,
    },
    /// The change conflicts with an existing resource.
    #[error("{0}")]
    Conflict(Conflict),
    /// The conversation is closed; closed is final.
    #[error("conversation {0} is closed and cannot be changed")]
    ConversationClosed(String),
    /// A limit would be exceeded.
    #[error("{0}")]
    LimitExceeded(Limit),
    /// The caller's roles do not grant the permission the action needs.
    #[error("the caller lacks the '{0}' permission")]
    Forbidden(&'static str),
    /// The caller observes conversations (a session opened with an observer's token): it may read any
    /// conversation of its service but change nothing, not even send a typing indicator.
    #[error("this session is an observer's: it can read conversations but not change them")]
    ReadOnly,
    /// The caller must be a participant of the conversation.
    #[error("the caller is not a participant of conversation {0}")]
    NotAParticipant(String),
    /// An input value is malformed or out of range.
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    /// A media item is larger than the per-item limit (in MB).
    #[error("the media is larger than the limit of {0} MB")]
    MediaTooLarge(u32),
    /// A pre-event webhook refused the action.
    #[error("the action was rejected by a pre-event webhook: {0}")]
    RejectedByWebhook(String),
    /// The caller changed one conversation (or one service) faster than the action rate allows; safe to retry
    /// after `retry_after`.
    #[error("too many actions on this {scope} in a second; retry after {} ms", retry_after.as_millis().max(1))]
    RateLimited {
        /// What the rate counts.
        scope: RateScope,
        /// How long until the next action is allowed.
        retry_after: std::time::Duration,
    },
    /// The storage backend failed; the caller cannot fix this.
    #[error("storage failure: {0}")]
    Storage(String),
}

impl Error {
    /// A not-found error for `kind` looked up by `id`.
    pub fn not_found(kind: ResourceKind, id: impl fmt::Display) -> Self {
        Self::NotFound { kind, id: id.to_string() }
    }
}

/// What an action rate counts (see [`crate::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Changes to one conversation.
    Conversation,
    /// Creations and deletions in one service.
    Service,
}

impl fmt::Display for RateScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Conversation => "conversation",
            Self::Service => "service",
        })
    }
}

/// The kinds of resources an operation can fail to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ResourceKind {
    Service,
    Conversation,
    Participant,
    Message,
    User,
    UserConversation,
    Role,
    ApiKey,
    Webhook,
    DeliveryReceipt,
    AddressConfiguration,
    Media,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Service => "Service",
            Self::Conversation => "Conversation",
            Self::Participant => "Participant",
            Self::Message => "Message",
            Self::User => "User",
            Self::UserConversation => "User conversation",
            Self::Role => "Role",
            Self::ApiKey => "API key",
            Self::Webhook => "Webhook",
            Self::DeliveryReceipt => "Delivery receipt",
            Self::AddressConfiguration => "Address configuration",
            Self::Media => "Media",
        })
    }
}

impl ResourceKind {
    /// The collection such resources are listed under in the REST API (`Conversations`, `Participants`…).
    pub fn collection(self) -> &'static str {
        match self {
            Self::Service => "Services",
            Self::Conversation => "Conversations",
            Self::Participant => "Participants",
            Self::Message => "Messages",
            Self::User => "Users",
            Self::UserConversation => "Conversations",
            Self::Role => "Roles",
            Self::ApiKey => "Keys",
            Self::Webhook => "Webhooks",
            Self::DeliveryReceipt => "Receipts",
            Self::AddressConfiguration => "Configuration/Addresses",
            Self::Media => "Media",
        }
    }
}

/// Conflicts with existing resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Another conversation in the service has this unique name.
    #[error("a conversation with unique name '{0}' already exists")]
    UniqueNameTaken(String),
    /// The conversation already has a participant with this identity.
    #[error("a participant with identity '{0}' already exists in this conversation")]
    ParticipantIdentityTaken(String),
    /// The conversation already has a participant with this address.
    #[error("a participant with address '{0}' already exists in this conversation")]
    ParticipantAddressTaken(String),
    /// The service already has a user with this identity.
    #[error("a user with identity '{0}' already exists")]
    UserIdentityTaken(String),
    /// Another address configuration has this address.
    #[error("the address '{0}' is already configured")]
    AddressConfigured(String),
    /// The resource is still in use.
    #[error("{0}")]
    InUse(String),
}

/// Limits that an operation would exceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// Participants per conversation.
    #[error("the conversation already has the maximum of {0} participants")]
    Participants(usize),
    /// Non-chat participants per conversation.
    #[error("the conversation already has the maximum of {0} non-chat participants")]
    NonChatParticipants(usize),
    /// Participants in one ConversationWithParticipants request.
    #[error("at most {0} participants can be given in one request")]
    ParticipantsPerRequest(usize),
    /// Conversation-scoped webhooks per conversation.
    #[error("the conversation already has the maximum of {0} webhooks")]
    ScopedWebhooks(usize),
}

/// A malformed or out-of-range input, naming the parameter as the REST API spells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {field}: {reason}")]
pub struct InvalidInput {
    /// The parameter name, e.g. `Attributes` or `Timers.Inactive`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
    /// The domain reason, when a more specific error code exists for it.
    pub kind: InvalidKind,
}

/// Invalid inputs that have their own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// Anything without a more specific code.
    General,
    /// A unique name shaped like a conversation SID.
    UniqueNameLooksLikeSid,
}

impl InvalidInput {
    /// An invalid `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into(), kind: InvalidKind::General }
    }
}
