//! The storage port. Every backend (SQLite now, PostgreSQL later) implements [`Store`] with the same
//! guarantees:
//!
//! - each mutating call is one transaction that also appends an [`Event`](crate::event::Event) to the
//!   affected stream's log with the next sequence number;
//! - message indices come from a per-conversation counter: strictly increasing, never reused;
//! - unread counts are exact (messages that still exist above the horizon) and cheap on long conversations;
//! - rules that depend on stored state (closed conversations, unique names, participant limits) are checked
//!   inside that transaction, so concurrent requests cannot both pass them.
//!
//! Inputs arrive validated (see [`crate::input`]) with their new SIDs and timestamps already chosen.

use std::time::Duration;

use async_trait::async_trait;
use palaver_api::sid::{
    AddressConfigurationSid, ApiKeySid, ConversationSid, DeliveryReceiptSid, MessageSid, MessagingServiceSid,
    ParticipantSid, RoleSid, ServiceSid, UserSid, WebhookSid,
};
use time::OffsetDateTime;

use crate::channel::{
    AddressConfiguration, AddressConfigurationPatch, ChannelDelivery, ChannelJob, DeliveryReceipt, DeliveryUpdate,
    ReceiptFilter, ReceiptRef,
};
use crate::error::Result;
use crate::event::{Event, Origin};
use crate::input::{Attributes, Identity, NotificationLevel, TimerDuration};
use crate::model::*;
use crate::webhook::{
    AttemptFilter, AttemptRetention, ConversationWebhook, ConversationWebhookPatch, Delivery, NewDelivery, OutboxEntry,
    OutboxFilter, WebhookAttempt, WebhookConfig, WebhookScope, WebhookSettings, WebhookSettingsPatch,
};

/// A conversation addressed by SID or by unique name (paths accept either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationRef {
    /// By `CH…`.
    Sid(ConversationSid),
    /// By unique name.
    UniqueName(String),
}

impl ConversationRef {
    /// A SID-shaped text is a SID; anything else is a unique name.
    pub fn parse(raw: &str) -> Self {
        match ConversationSid::parse(raw) {
            Ok(sid) => Self::Sid(sid),
            Err(_) => Self::UniqueName(raw.to_string()),
        }
    }
}

impl std::fmt::Display for ConversationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sid(s) => write!(f, "{s}"),
            Self::UniqueName(n) => f.write_str(n),
        }
    }
}

/// A participant addressed by SID or by the identity of a chat participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantRef {
    /// By `MB…`.
    Sid(ParticipantSid),
    /// By identity.
    Identity(String),
}

impl ParticipantRef {
    /// A SID-shaped text is a SID; anything else is an identity.
    pub fn parse(raw: &str) -> Self {
        match ParticipantSid::parse(raw) {
            Ok(sid) => Self::Sid(sid),
            Err(_) => Self::Identity(raw.to_string()),
        }
    }
}

impl std::fmt::Display for ParticipantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sid(s) => write!(f, "{s}"),
            Self::Identity(n) => f.write_str(n),
        }
    }
}

/// A user addressed by SID or identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// By `US…`.
    Sid(UserSid),
    /// By identity.
    Identity(String),
}

impl UserRef {
    /// A SID-shaped text is a SID; anything else is an identity.
    pub fn parse(raw: &str) -> Self {
        match UserSid::parse(raw) {
            Ok(sid) => Self::Sid(sid),
            Err(_) => Self::Identity(raw.to_string()),
        }
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sid(s) => write!(f, "{s}"),
            Self::Identity(n) => f.write_str(n),
        }
    }
}

/// Where a page continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// True for the items before `key` (in the list's order), false for those after it.
    pub backwards: bool,
    /// The ordering key the page continues from, exclusive.
    pub key: i64,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    /// Items per page (already range-checked).
    pub size: u32,
    /// Continue from here; `None` for the first page.
    pub cursor: Option<Cursor>,
    /// Newest first instead of oldest first.
    pub descending: bool,
}

/// One page of a list, with cursors to its neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items in the list's order.
    pub items: Vec<T>,
    /// The page after this one, if there is one.
    pub next: Option<Cursor>,
    /// The page before this one, if there is one.
    pub previous: Option<Cursor>,
}

/// A new service.
#[derive(Debug, Clone)]
pub struct NewService {
    /// `IS…`.
    pub sid: ServiceSid,
    /// Display name.
    pub friendly_name: String,
    /// Created at.
    pub now: OffsetDateTime,
}

/// Changes to a service's configuration; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServiceConfigPatch {
    /// Conversation role of creators.
    pub creator_role_sid: Option<RoleSid>,
    /// Conversation role of participants.
    pub participant_role_sid: Option<RoleSid>,
    /// Service role of users.
    pub user_role_sid: Option<RoleSid>,
    /// Presence tracking.
    pub reachability_enabled: Option<bool>,
    /// When.
    pub now: Option<OffsetDateTime>,
}

/// Changes to the account configuration; the outer `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct AccountConfigPatch {
    /// The default service.
    pub default_service_sid: Option<ServiceSid>,
    /// The default messaging service.
    pub default_messaging_service_sid: Option<Option<MessagingServiceSid>>,
    /// Default inactive timer.
    pub default_inactive_timer: Option<Option<TimerDuration>>,
    /// Default closed timer.
    pub default_closed_timer: Option<Option<TimerDuration>>,
}

/// A new conversation; `conversation` holds every field as it will be stored.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// The conversation to insert (counts and last message are ignored).
    pub conversation: Conversation,
}

/// Changes to a conversation; the outer `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ConversationPatch {
    /// Display name.
    pub friendly_name: Option<Option<String>>,
    /// Unique name.
    pub unique_name: Option<Option<String>>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Messaging service.
    pub messaging_service_sid: Option<Option<MessagingServiceSid>>,
    /// New state. Moving to `closed` clears the timers; a closed conversation accepts no patch.
    pub state: Option<ConversationState>,
    /// New inactive timer, counted from `now`.
    pub inactive_after: Option<TimerDuration>,
    /// New closed timer, counted from `now`.
    pub closed_after: Option<TimerDuration>,
    /// Default email sender address.
    pub email_address: Option<Option<String>>,
    /// Default email sender name.
    pub email_name: Option<Option<String>>,
    /// Overrides the creation date (history import).
    pub date_created: Option<OffsetDateTime>,
    /// The new `date_updated` (set by the service).
    pub now: Option<OffsetDateTime>,
}

/// A conversation's lifecycle as stored, set verbatim by [`Store::restore_conversation_lifecycle`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationLifecycle {
    /// The state.
    pub state: ConversationState,
    /// When the state last changed.
    pub state_updated: OffsetDateTime,
    /// The timers with their due times, as they are (not re-armed).
    pub timers: Timers,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// A new participant.
#[derive(Debug, Clone)]
pub struct NewParticipant {
    /// `MB…`.
    pub sid: ParticipantSid,
    /// For chat participants; the user is created if the service has none with this identity.
    pub identity: Option<Identity>,
    /// For non-chat participants.
    pub binding: Option<MessagingBinding>,
    /// Application data.
    pub attributes: Attributes,
    /// Role; the service's default participant role when `None`.
    pub role_sid: Option<RoleSid>,
    /// SID for the user created implicitly, if one is needed.
    pub new_user_sid: UserSid,
    /// Joined at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// Changes to a participant.
#[derive(Debug, Clone, Default)]
pub struct ParticipantPatch {
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Role.
    pub role_sid: Option<RoleSid>,
    /// New identity (chat participants).
    pub identity: Option<Identity>,
    /// With a new identity: the SID for that identity's user, created when the service has none yet (a chat
    /// participant is always backed by a user).
    pub new_user_sid: Option<UserSid>,
    /// Proxy address; `Some(None)` removes it.
    pub proxy_address: Option<Option<String>>,
    /// Projected address; `Some(None)` removes it.
    pub projected_address: Option<Option<String>>,
    /// Read horizon; `Some(None)` clears it.
    pub last_read_message_index: Option<Option<i64>>,
    /// Read timestamp.
    pub last_read_timestamp: Option<Option<OffsetDateTime>>,
    /// Notification level.
    pub notification_level: Option<NotificationLevel>,
    /// Overrides the creation date.
    pub date_created: Option<OffsetDateTime>,
    /// The new `date_updated` (set by the service).
    pub now: Option<OffsetDateTime>,
}

/// A new message. The store assigns the index.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `IM…`.
    pub sid: MessageSid,
    /// Author.
    pub author: String,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Application data.
    pub attributes: Attributes,
    /// Content template.
    pub content_sid: Option<String>,
    /// Sent at (may be in the past for history import).
    pub date_created: OffsetDateTime,
    /// A key unique per logical send; a second send with the same key returns the first message.
    pub idempotency_key: Option<String>,
    /// Uploaded media to attach; each must exist in the service and not be attached yet.
    pub media: Vec<palaver_api::sid::MediaSid>,
    /// The most bytes all attached media may have together.
    pub max_media_bytes: u64,
    /// Edited at.
    pub date_updated: Option<OffsetDateTime>,
    /// The time of the request, which re-arms the conversation's timers.
    pub now: OffsetDateTime,
}

/// Changes to a message.
#[derive(Debug, Clone, Default)]
pub struct MessagePatch {
    /// Author.
    pub author: Option<String>,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Overrides the creation date.
    pub date_created: Option<OffsetDateTime>,
    /// The new `date_updated`.
    pub date_updated: Option<OffsetDateTime>,
    /// The time of the request.
    pub now: Option<OffsetDateTime>,
}

/// A new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// `US…`.
    pub sid: UserSid,
    /// Identity, unique in the service.
    pub identity: Identity,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Application data.
    pub attributes: Attributes,
    /// Role; the service's default user role when `None`.
    pub role_sid: Option<RoleSid>,
    /// Created at.
    pub now: OffsetDateTime,
}

/// Changes to a user.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// Display name.
    pub friendly_name: Option<Option<String>>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Role.
    pub role_sid: Option<RoleSid>,
    /// The new `date_updated`.
    pub now: Option<OffsetDateTime>,
}

/// How to find the conversations of a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantLookup {
    /// Chat participants with this identity.
    Identity(String),
    /// Non-chat participants with this address.
    Address(String),
}

/// Conversation list filters.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// Created at or after.
    pub created_from: Option<OffsetDateTime>,
    /// Created before.
    pub created_before: Option<OffsetDateTime>,
    /// In this state.
    pub state: Option<ConversationState>,
}

/// A new role.
#[derive(Debug, Clone)]
pub struct NewRole {
    /// `RL…`.
    pub sid: RoleSid,
    /// Display name.
    pub friendly_name: String,
    /// Scope.
    pub kind: RoleKind,
    /// Permissions (validated).
    pub permissions: Vec<String>,
    /// Created at.
    pub now: OffsetDateTime,
}

/// A connection pool's state ([`Store::connection_pool`]), for operators' metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections the pool opens at most.
    pub max: usize,
    /// Connections open now.
    pub open: usize,
    /// Open connections no one is using.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
}

/// How much work waits in the two outboxes ([`Store::outbox_depths`]), for operators' metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxDepths {
    /// Webhook requests waiting for their first or next attempt.
    pub webhooks_pending: u64,
    /// Webhook requests that ran out of attempts (kept for inspection, never sent again).
    pub webhooks_dead: u64,
    /// Queued channel deliveries waiting for their first or next attempt, per channel (every channel listed,
    /// with 0 when none waits).
    pub channels_pending: Vec<(BindingKind, u64)>,
}

impl OutboxDepths {
    /// Every channel with its count among `counts` (stored channel names and counts), 0 when absent; names
    /// that are not a channel are left out.
    pub fn channel_counts(counts: impl IntoIterator<Item = (String, u64)>) -> Vec<(BindingKind, u64)> {
        let mut all = [BindingKind::Sms, BindingKind::Whatsapp, BindingKind::Email].map(|kind| (kind, 0));
        for (name, count) in counts {
            if let Some(slot) = all.iter_mut().find(|(kind, _)| kind.as_str() == name) {
                slot.1 += count;
            }
        }
        all.to_vec()
    }
}

/// Storage of everything Palaver keeps.
#[async_trait]
pub trait Store: crate::push::PushStore + Send + Sync + std::fmt::Debug + 'static {
    /// Notified after every committed write, so the live feed knows to read the log's new events.
    fn changes(&self) -> std::sync::Arc<tokio::sync::Notify>;

    /// The events this process commits, as each write commits them (in log order), for relaying to the other
    /// nodes of a cluster. `None` for stores only one process can write to (the default).
    fn committed_here(&self) -> Option<tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>> {
        None
    }

    /// The state of the store's connection pool, for stores that pool connections to a database server
    /// (`None` for the others, the default).
    fn connection_pool(&self) -> Option<PoolStatus> {
        None
    }

    /// Whether the store can take writes now: a write that changes nothing goes the whole way through.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] when it cannot.
    async fn check_writable(&self) -> Result<()>;

    /// Creates the default service, its roles and the account configuration on first start; returns the
    /// account configuration either way.
    async fn bootstrap(&self, default_service: NewService) -> Result<AccountConfig>;
    /// The account configuration.
    async fn account_config(&self) -> Result<AccountConfig>;
    /// Changes the account configuration.
    async fn update_account_config(&self, patch: AccountConfigPatch) -> Result<AccountConfig>;

    /// Creates a service with the default roles.
    async fn create_service(&self, new: NewService) -> Result<Service>;
    /// One service.
    async fn get_service(&self, sid: &ServiceSid) -> Result<Service>;
    /// Services, oldest first.
    async fn list_services(&self, page: PageQuery) -> Result<Page<Service>>;
    /// Deletes a service and everything in it. The default service cannot be deleted. Each conversation's
    /// removal is an event (`conversation.removed`, and `user.conversation_left` for its chat users), as for
    /// [`Store::delete_conversation`].
    async fn delete_service(&self, sid: &ServiceSid, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    /// Changes a service's configuration.
    async fn update_service_config(&self, sid: &ServiceSid, patch: ServiceConfigPatch) -> Result<Service>;

    /// Creates a conversation, with initial participants, in one transaction.
    async fn create_conversation(
        &self,
        new: NewConversation,
        participants: Vec<NewParticipant>,
        origin: &Origin,
    ) -> Result<(Conversation, Vec<Participant>)>;
    /// One conversation.
    async fn get_conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<Conversation>;
    /// Conversations, oldest first.
    async fn list_conversations(
        &self,
        service: &ServiceSid,
        filter: ConversationFilter,
        page: PageQuery,
    ) -> Result<Page<Conversation>>;
    /// Changes a conversation.
    async fn update_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        patch: ConversationPatch,
        origin: &Origin,
    ) -> Result<Conversation>;
    /// Sets a conversation's state, state change time, timers and `date_updated` exactly as given, whatever its
    /// state (a closed conversation too) and without re-arming anything: the last step of importing a
    /// conversation (`palaver import FILE`), whose participants and messages went in while it was open and
    /// without timers. Appends `conversation.updated`, and `conversation.state_updated` when the state changes.
    async fn restore_conversation_lifecycle(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        lifecycle: ConversationLifecycle,
        origin: &Origin,
    ) -> Result<Conversation>;
    /// Deletes a conversation with its participants and messages.
    async fn delete_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()>;

    /// Adds a participant (creating its user when needed).
    async fn add_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewParticipant,
        origin: &Origin,
    ) -> Result<Participant>;
    /// One participant.
    async fn get_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        participant: &ParticipantRef,
    ) -> Result<Participant>;
    /// Participants, in joining order.
    async fn list_participants(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Participant>>;
    /// Changes a participant.
    async fn update_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        participant: &ParticipantRef,
        patch: ParticipantPatch,
        origin: &Origin,
    ) -> Result<Participant>;
    /// Removes a participant.
    async fn remove_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        participant: &ParticipantRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()>;

    /// Appends a message with the conversation's next index.
    async fn add_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewMessage,
        origin: &Origin,
    ) -> Result<Message>;
    /// One message.
    async fn get_message(&self, service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<Message>;
    /// Messages by index.
    async fn list_messages(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Message>>;
    /// Like [`Store::list_messages`], read in the same snapshot as whether any message lies before the page's
    /// first item in list order (a newer one for a newest-first page, an older one otherwise); `false` for an
    /// empty page. Realtime history pages report both ends from it.
    async fn list_messages_and_lead(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<(Page<Message>, bool)>;
    /// Changes a message.
    async fn update_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        patch: MessagePatch,
        origin: &Origin,
    ) -> Result<Message>;
    /// Deletes a message; its index is never used again.
    async fn delete_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()>;

    /// Creates a user.
    async fn create_user(&self, service: &ServiceSid, new: NewUser, origin: &Origin) -> Result<User>;
    /// One user.
    async fn get_user(&self, service: &ServiceSid, user: &UserRef) -> Result<User>;
    /// Users, oldest first.
    async fn list_users(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<User>>;
    /// Changes a user.
    async fn update_user(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        patch: UserPatch,
        origin: &Origin,
    ) -> Result<User>;
    /// Deletes a user (its participants stay).
    async fn delete_user(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()>;

    /// The conversations a user participates in.
    async fn list_user_conversations(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        page: PageQuery,
    ) -> Result<Page<UserConversation>>;
    /// One conversation as a user sees it.
    async fn get_user_conversation(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        conv: &ConversationRef,
    ) -> Result<UserConversation>;

    /// The conversations of the participants matching `lookup`.
    async fn list_participant_conversations(
        &self,
        service: &ServiceSid,
        lookup: &ParticipantLookup,
        page: PageQuery,
    ) -> Result<Page<ParticipantConversation>>;

    /// Creates a role.
    async fn create_role(&self, service: &ServiceSid, new: NewRole) -> Result<Role>;
    /// One role.
    async fn get_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<Role>;
    /// Roles, oldest first.
    async fn list_roles(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<Role>>;
    /// Replaces a role's permissions.
    async fn update_role(
        &self,
        service: &ServiceSid,
        sid: &RoleSid,
        permissions: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Role>;
    /// Deletes a role that nothing uses.
    async fn delete_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<()>;

    /// Stores an API key.
    async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey>;
    /// One API key.
    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<ApiKey>;
    /// All API keys.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Deletes an API key.
    async fn delete_api_key(&self, sid: &ApiKeySid) -> Result<()>;

    /// The earliest time any conversation timer fires, if any is set.
    async fn next_timer_due(&self) -> Result<Option<OffsetDateTime>>;
    /// Applies every timer due at `now`; returns the conversations whose state changed.
    async fn fire_due_timers(&self, now: OffsetDateTime) -> Result<Vec<Conversation>>;

    /// Events of `stream` with a sequence number above `after`, oldest first, at most `limit`.
    async fn read_events(&self, stream: &str, after: i64, limit: u32) -> Result<Vec<Event>>;
    /// Events of all streams with a log id above `after_id`, in commit order, at most `limit`.
    async fn read_log(&self, after_id: i64, limit: u32) -> Result<Vec<Event>>;
    /// The id of the newest event in the log (0 when empty).
    async fn last_log_id(&self) -> Result<i64>;
    /// The newest sequence number of `stream` (0 when it has no events).
    async fn stream_position(&self, stream: &str) -> Result<i64>;

    /// The account's or a service's webhook settings (empty settings when never set).
    async fn webhook_settings(&self, scope: &WebhookScope) -> Result<WebhookSettings>;
    /// Changes the account's or a service's webhook settings.
    async fn update_webhook_settings(
        &self,
        scope: &WebhookScope,
        patch: WebhookSettingsPatch,
    ) -> Result<WebhookSettings>;
    /// Attaches a webhook to a conversation (at most [`crate::webhook::MAX_SCOPED_WEBHOOKS`]).
    async fn create_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        hook: ConversationWebhook,
    ) -> Result<ConversationWebhook>;
    /// One conversation-scoped webhook.
    async fn get_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<ConversationWebhook>;
    /// A conversation's webhooks, oldest first.
    async fn list_conversation_webhooks(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<ConversationWebhook>>;
    /// Changes a conversation-scoped webhook.
    async fn update_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
        patch: ConversationWebhookPatch,
    ) -> Result<ConversationWebhook>;
    /// Detaches a conversation-scoped webhook.
    async fn delete_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<()>;
    /// Every webhook setting of every scope, for the dispatcher.
    async fn webhook_config(&self) -> Result<WebhookConfig>;

    /// The log id up to which events have been planned into the webhook outbox.
    async fn webhook_cursor(&self) -> Result<i64>;
    /// Plans the log range `(from, to]` (with `from <= to`): adds `deliveries`, the requests planned from the
    /// events of that range, to the outbox (due at `now`) and moves the cursor to `to`, in one transaction and
    /// only if the stored cursor is still at most `from`. When another planner has already moved the cursor
    /// past `from`, the range (or part of it) is planned already: nothing is added and the cursor stays.
    /// Returns the stored cursor after the call, so `to` when the range is planned, by this call or another,
    /// and the other planner's position otherwise: the caller goes on from there.
    ///
    /// This compare-and-set is what lets several nodes run a planner each over one log; see
    /// `palaver_server::webhooks::run_dispatcher` for why no event is then planned twice or skipped.
    async fn enqueue_webhooks(
        &self,
        deliveries: Vec<NewDelivery>,
        from: i64,
        to: i64,
        now: OffsetDateTime,
    ) -> Result<i64>;
    /// Claims the outbox entries due at `now`, oldest first, at most `limit`: in the same transaction each
    /// entry returned is made due again only at `now + lease`, so a concurrent or later claim (another node's)
    /// does not get it while its sender works. Recording the attempt ([`Store::record_webhook_attempt`]) ends
    /// the lease (a delivered entry is removed, a failed one gets its retry time); an entry whose sender died
    /// is claimed again once the lease ends. `lease` must therefore outlast an attempt.
    async fn due_webhooks(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>>;
    /// When the next outbox entry is due (for a claimed one, when its lease ends), if any waits.
    async fn next_webhook_due(&self) -> Result<Option<OffsetDateTime>>;
    /// Records an attempt at sending outbox entry `attempt.delivery_id`, in one transaction: the entry is
    /// removed when delivered, retried at `attempt.next_retry` (whatever its lease said) when retrying, kept as
    /// dead (never sent again) when given up, counting the attempt and its error; and the attempt is appended to
    /// the delivery history, which then drops what `retention` does not keep (counted back from `attempt.at`).
    /// An entry already gone (another node delivered it after this node's lease ended) changes nothing in the
    /// outbox; the attempt is still recorded.
    async fn record_webhook_attempt(&self, attempt: WebhookAttempt, retention: AttemptRetention) -> Result<()>;
    /// The delivery history matching `filter`, keyed by the order attempts were recorded in (newest first for
    /// a descending page).
    async fn list_webhook_attempts(&self, filter: AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>>;
    /// The outbox entries matching `filter` (still to send, dead, or both), keyed by the order they were
    /// planned in.
    async fn list_webhook_outbox(&self, filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>>;

    // Non-chat channels. Receipts are created by `add_message`, one per non-chat participant other than the
    // author, in status `queued` and due at once.

    /// Claims the queued receipts on `channels` due at `now`, oldest first, at most `limit`, with what sending
    /// needs: in the same transaction each receipt returned is made due again only at `now + lease`, so a
    /// concurrent or later claim (another node's) does not get it while its sender works. The receipt stays
    /// `queued`; recording the outcome with [`Store::update_delivery`] ends the lease (a retry time, or no
    /// longer due at all), and a receipt whose sender died is claimed again once the lease ends. `lease` must
    /// therefore outlast an attempt.
    async fn due_channel_jobs(
        &self,
        channels: &[BindingKind],
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ChannelJob>>;
    /// When the next queued receipt on `channels` is due (for a claimed one, when its lease ends), if any waits.
    async fn next_channel_job_due(&self, channels: &[BindingKind]) -> Result<Option<OffsetDateTime>>;
    /// How many webhook requests and channel deliveries wait in the outboxes (read for `/metrics`).
    async fn outbox_depths(&self) -> Result<OutboxDepths>;
    /// Applies `update` to a receipt, keeps the message's counts in step and appends `delivery.updated` to the
    /// conversation's log. A status never moves backwards (a late `sent` after `delivered` is ignored, but its
    /// channel id is kept). `None` when no receipt matches.
    async fn update_delivery(&self, receipt: &ReceiptRef, update: DeliveryUpdate) -> Result<Option<DeliveryReceipt>>;
    /// Receipts of every conversation matching `filter`, with their recipient's address, their sending state and
    /// their message, keyed by creation order (newest first for a descending page).
    async fn list_channel_deliveries(&self, filter: ReceiptFilter, page: PageQuery) -> Result<Page<ChannelDelivery>>;
    /// A message's receipts, in creation order.
    async fn list_receipts(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        page: PageQuery,
    ) -> Result<Page<DeliveryReceipt>>;
    /// One receipt of a message.
    async fn get_receipt(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        sid: &DeliveryReceiptSid,
    ) -> Result<DeliveryReceipt>;
    /// The newest conversation that is not closed in which `address` takes part on `channel` through
    /// `our_address` (its proxy address, projected address or the conversation's email address). Email
    /// addresses match ignoring case.
    async fn find_conversation_by_binding(
        &self,
        channel: BindingKind,
        address: &str,
        our_address: &str,
    ) -> Result<Option<(ServiceSid, ConversationSid)>>;

    /// Records an uploaded file (its bytes are already stored under its hash).
    async fn create_media(&self, media: crate::media::Media) -> Result<crate::media::Media>;
    /// One uploaded file, whatever its service (for signed content URLs).
    async fn find_media(&self, sid: &palaver_api::sid::MediaSid) -> Result<crate::media::Media>;
    /// One uploaded file of a service.
    async fn get_media(&self, service: &ServiceSid, sid: &palaver_api::sid::MediaSid) -> Result<crate::media::Media>;

    /// Stores a new address configuration (409 when the address already has one).
    async fn create_address_configuration(&self, config: AddressConfiguration) -> Result<AddressConfiguration>;
    /// One address configuration by SID.
    async fn get_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<AddressConfiguration>;
    /// The configuration of `address` (ignoring case), if any.
    async fn find_address_configuration(&self, address: &str) -> Result<Option<AddressConfiguration>>;
    /// Address configurations, optionally of one type.
    async fn list_address_configurations(
        &self,
        kind: Option<String>,
        page: PageQuery,
    ) -> Result<Page<AddressConfiguration>>;
    /// Changes an address configuration.
    async fn update_address_configuration(
        &self,
        sid: &AddressConfigurationSid,
        patch: AddressConfigurationPatch,
    ) -> Result<AddressConfiguration>;
    /// Deletes an address configuration.
    async fn delete_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<()>;
}
