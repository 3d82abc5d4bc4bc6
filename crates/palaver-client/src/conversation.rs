//! [`Conversation`]: the seed interface's `TwilioConversation`, its state, methods and events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use palaver_api::realtime::{
    Call, ConversationInfo, ConversationLimits, Counts, Direction, GetMessagesParams, MessagesPage, ParticipantInfo,
    ParticipantList, RecipientsPage, SendMessageParams, TypingAck, UnreadCount,
};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::client::ClientInner;
use crate::emitter::ReplayEventEmitter;
use crate::error::{ClientError, Result};
use crate::message::{
    Message, MessageBuilder, MessageContent, MessageData, MessageEmitter, MessageUpdateReason, SendEmailOptions,
};
use crate::paginator::{MessageQuery, Paginator, fetcher, message_neighbours};
use crate::participant::{Participant, ParticipantData, ParticipantEmitter, ParticipantRef, ParticipantUpdateReason};
use crate::typing::{TypingThrottle, TypingTracker};
use crate::util::{attributes_text, parse_attributes, parse_date};

/// How long a mutating call waits for its own event before applying the server's answer locally.
const APPLY_WAIT: Duration = Duration::from_secs(3);
/// Messages remembered per conversation (to tell what an edit changed).
const MESSAGE_CACHE: usize = 500;
/// The largest page the server serves.
const MAX_PAGE_SIZE: u32 = 100;
/// The page size when none is given.
const DEFAULT_PAGE_SIZE: u32 = 30;

/// Whether the client's user is a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ConversationStatus {
    /// The user is a participant.
    Joined,
    /// The user can see the conversation but is not a participant.
    #[default]
    NotParticipating,
}

impl ConversationStatus {
    fn parse(raw: &str) -> Self {
        if raw == "joined" { Self::Joined } else { Self::NotParticipating }
    }

    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::NotParticipating => "notParticipating",
        }
    }
}

/// The user's push notification level for a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NotificationLevel {
    /// Follow the service's push configuration.
    #[default]
    Default,
    /// No pushes.
    Muted,
}

impl NotificationLevel {
    fn parse(raw: &str) -> Self {
        if raw == "muted" { Self::Muted } else { Self::Default }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Muted => "muted",
        }
    }
}

/// The lifecycle state of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationStateKind {
    /// Being created with its participants.
    Initializing,
    /// In use.
    Active,
    /// Idle; a message reactivates it.
    Inactive,
    /// Final: nothing can change any more.
    Closed,
    /// A state this SDK does not know, as the server named it.
    Other(String),
}

impl ConversationStateKind {
    fn parse(raw: &str) -> Self {
        match raw {
            "initializing" => Self::Initializing,
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "closed" => Self::Closed,
            other => Self::Other(other.to_string()),
        }
    }
}

/// A conversation's state and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationState {
    /// The state.
    pub current: ConversationStateKind,
    /// When it was entered.
    pub date_updated: Option<OffsetDateTime>,
}

/// The newest message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastMessage {
    /// Its index.
    pub index: Option<i64>,
    /// When it was sent.
    pub date_created: Option<OffsetDateTime>,
}

/// The conversation's default bindings (an undocumented feature of Twilio's SDK).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ConversationBindings {
    /// The email binding, if any.
    pub email: Option<ConversationEmailBinding>,
    /// The bindings exactly as received (`{}` when none).
    pub raw: Value,
}

/// The email binding of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationEmailBinding {
    /// The address shown to recipients.
    pub address: Option<String>,
    /// The display name.
    pub name: Option<String>,
}

impl ConversationBindings {
    fn parse(raw: Option<&Value>) -> Self {
        let raw = raw.cloned().unwrap_or_else(|| Value::Object(Default::default()));
        let email = raw.get("email").filter(|e| e.is_object()).map(|e| ConversationEmailBinding {
            address: e
                .get("address")
                .or_else(|| e.get("projected_address"))
                .and_then(Value::as_str)
                .map(str::to_string),
            name: e.get("name").and_then(Value::as_str).map(str::to_string),
        });
        Self { email, raw }
    }
}

/// REST URLs of a conversation (for server-side tools).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationLinks {
    /// `…/v1/Conversations/{sid}`.
    pub self_url: String,
    /// `…/Messages`.
    pub messages: String,
    /// `…/Participants`.
    pub participants: String,
}

/// A participant as the server answered `add` (a plain resource, not a live [`Participant`]).
pub type ParticipantResponse = ParticipantInfo;

/// Email options of [`Conversation::add_non_chat_participant`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ParticipantBindingOptions {
    /// For email participants.
    pub email: Option<ParticipantEmailBinding>,
}

impl ParticipantBindingOptions {
    /// Email options with a display name and a recipient level.
    pub fn email(name: Option<String>, level: Option<ParticipantEmailLevel>) -> Self {
        Self { email: Some(ParticipantEmailBinding { name, level }) }
    }
}

/// The email part of [`ParticipantBindingOptions`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ParticipantEmailBinding {
    /// Display name.
    pub name: Option<String>,
    /// `To` or `Cc`.
    pub level: Option<ParticipantEmailLevel>,
}

/// Whether an email participant is a direct or a copy recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParticipantEmailLevel {
    /// `to`.
    To,
    /// `cc`.
    Cc,
}

impl ParticipantEmailLevel {
    fn as_str(self) -> &'static str {
        match self {
            Self::To => "to",
            Self::Cc => "cc",
        }
    }
}

/// Who received a message outside chat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecipientDescriptor {
    /// The message.
    pub message_sid: String,
    /// The recipient participant.
    pub participant_sid: String,
    /// The recipient's address.
    pub address: String,
    /// `sms`, `whatsapp` or `email`.
    pub kind: String,
    /// Delivery status, when known.
    pub status: Option<String>,
}

/// Why a conversation's `updated` event fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationUpdateReason {
    /// `attributes` changed.
    Attributes,
    /// `created_by` changed.
    CreatedBy,
    /// `date_created` changed.
    DateCreated,
    /// `date_updated` changed.
    DateUpdated,
    /// `friendly_name` changed.
    FriendlyName,
    /// The user's read horizon changed.
    LastReadMessageIndex,
    /// `state` changed.
    State,
    /// The user's `status` (joined or not) changed.
    Status,
    /// `unique_name` changed.
    UniqueName,
    /// A newer message arrived.
    LastMessage,
    /// The user's notification level changed.
    NotificationLevel,
    /// `bindings` changed.
    Bindings,
}

impl ConversationUpdateReason {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attributes => "attributes",
            Self::CreatedBy => "createdBy",
            Self::DateCreated => "dateCreated",
            Self::DateUpdated => "dateUpdated",
            Self::FriendlyName => "friendlyName",
            Self::LastReadMessageIndex => "lastReadMessageIndex",
            Self::State => "state",
            Self::Status => "status",
            Self::UniqueName => "uniqueName",
            Self::LastMessage => "lastMessage",
            Self::NotificationLevel => "notificationLevel",
            Self::Bindings => "bindings",
        }
    }
}

/// Names of a conversation's events, for the emitter's `on`, `once`, … .
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationEventName {
    /// `participantJoined`.
    ParticipantJoined,
    /// `participantLeft`.
    ParticipantLeft,
    /// `participantUpdated`.
    ParticipantUpdated,
    /// `messageAdded`.
    MessageAdded,
    /// `messageUpdated`.
    MessageUpdated,
    /// `messageRemoved`.
    MessageRemoved,
    /// `typingStarted`.
    TypingStarted,
    /// `typingEnded`.
    TypingEnded,
    /// `updated`.
    Updated,
    /// `removed`.
    Removed,
    /// `unreadCountChanged` (Palaver's addition: the server pushes exact unread counts).
    UnreadCountChanged,
}

impl ConversationEventName {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParticipantJoined => "participantJoined",
            Self::ParticipantLeft => "participantLeft",
            Self::ParticipantUpdated => "participantUpdated",
            Self::MessageAdded => "messageAdded",
            Self::MessageUpdated => "messageUpdated",
            Self::MessageRemoved => "messageRemoved",
            Self::TypingStarted => "typingStarted",
            Self::TypingEnded => "typingEnded",
            Self::Updated => "updated",
            Self::Removed => "removed",
            Self::UnreadCountChanged => "unreadCountChanged",
        }
    }
}

/// A conversation's events with their payloads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConversationEvent {
    /// Someone joined.
    ParticipantJoined(Participant),
    /// Someone left or was removed.
    ParticipantLeft(Participant),
    /// A participant changed.
    ParticipantUpdated {
        /// After the change.
        participant: Participant,
        /// Every field that changed.
        update_reasons: Vec<ParticipantUpdateReason>,
    },
    /// A message arrived.
    MessageAdded(Message),
    /// A message was edited.
    MessageUpdated {
        /// After the change.
        message: Message,
        /// Every field that changed.
        update_reasons: Vec<MessageUpdateReason>,
    },
    /// A message was deleted.
    MessageRemoved(Message),
    /// A participant is typing (repeats for every indicator; never for the client's own user).
    TypingStarted(Participant),
    /// A participant stopped typing.
    TypingEnded(Participant),
    /// The conversation changed; one event carries every reason of one change.
    Updated {
        /// After the change.
        conversation: Conversation,
        /// Every field that changed.
        update_reasons: Vec<ConversationUpdateReason>,
    },
    /// The conversation was deleted.
    Removed(Conversation),
    /// The user's unread count changed (`None`: no read horizon set).
    UnreadCountChanged(Option<i64>),
}

impl ConversationEvent {
    /// The event's name.
    pub fn name(&self) -> ConversationEventName {
        match self {
            Self::ParticipantJoined(_) => ConversationEventName::ParticipantJoined,
            Self::ParticipantLeft(_) => ConversationEventName::ParticipantLeft,
            Self::ParticipantUpdated { .. } => ConversationEventName::ParticipantUpdated,
            Self::MessageAdded(_) => ConversationEventName::MessageAdded,
            Self::MessageUpdated { .. } => ConversationEventName::MessageUpdated,
            Self::MessageRemoved(_) => ConversationEventName::MessageRemoved,
            Self::TypingStarted(_) => ConversationEventName::TypingStarted,
            Self::TypingEnded(_) => ConversationEventName::TypingEnded,
            Self::Updated { .. } => ConversationEventName::Updated,
            Self::Removed(_) => ConversationEventName::Removed,
            Self::UnreadCountChanged(_) => ConversationEventName::UnreadCountChanged,
        }
    }
}

/// The emitter behind [`Conversation::events`].
pub type ConversationEmitter = ReplayEventEmitter<ConversationEventName, ConversationEvent>;

/// A conversation's state as the client knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversationData {
    pub(crate) friendly_name: Option<String>,
    pub(crate) unique_name: Option<String>,
    pub(crate) attributes: Value,
    pub(crate) created_by: String,
    pub(crate) date_created: Option<OffsetDateTime>,
    pub(crate) date_updated: Option<OffsetDateTime>,
    pub(crate) state: Option<ConversationState>,
    pub(crate) last_message: Option<LastMessage>,
    pub(crate) bindings: ConversationBindings,
    pub(crate) status: ConversationStatus,
    pub(crate) last_read_message_index: Option<i64>,
    pub(crate) notification_level: NotificationLevel,
}

impl Default for ConversationData {
    fn default() -> Self {
        Self {
            friendly_name: None,
            unique_name: None,
            attributes: Value::Object(Default::default()),
            created_by: String::new(),
            date_created: None,
            date_updated: None,
            state: None,
            last_message: None,
            bindings: ConversationBindings::parse(None),
            status: ConversationStatus::NotParticipating,
            last_read_message_index: None,
            notification_level: NotificationLevel::Default,
        }
    }
}

impl ConversationData {
    /// Takes the shared fields from `info` (the user's own fields stay).
    pub(crate) fn apply_info(&mut self, info: &ConversationInfo) {
        self.friendly_name = info.friendly_name.clone();
        self.unique_name = info.unique_name.clone();
        self.attributes = parse_attributes(&info.attributes);
        self.created_by = info.created_by.clone().unwrap_or_default();
        self.date_created = parse_date(Some(&info.date_created));
        self.date_updated = parse_date(Some(&info.date_updated));
        self.state = Some(ConversationState {
            current: ConversationStateKind::parse(&info.state),
            date_updated: parse_date(Some(&info.state_updated)),
        });
        self.last_message = info
            .last_message
            .as_ref()
            .map(|m| LastMessage { index: Some(m.index), date_created: parse_date(m.date_created.as_deref()) });
        self.bindings = ConversationBindings::parse(info.bindings.as_ref());
    }

    /// Takes the user's own fields from a `MyConversation`.
    pub(crate) fn apply_mine(&mut self, status: &str, last_read: Option<i64>, level: &str) {
        self.status = ConversationStatus::parse(status);
        self.last_read_message_index = last_read;
        self.notification_level = NotificationLevel::parse(level);
    }

    /// Every field that differs between `old` and `self`, in the order Twilio's SDK lists them.
    pub(crate) fn diff(&self, old: &Self) -> Vec<ConversationUpdateReason> {
        use ConversationUpdateReason as R;
        let mut reasons = Vec::new();
        let mut check = |changed: bool, reason| {
            if changed {
                reasons.push(reason);
            }
        };
        check(self.attributes != old.attributes, R::Attributes);
        check(self.created_by != old.created_by, R::CreatedBy);
        check(self.date_created != old.date_created, R::DateCreated);
        check(self.date_updated != old.date_updated, R::DateUpdated);
        check(self.friendly_name != old.friendly_name, R::FriendlyName);
        check(self.last_read_message_index != old.last_read_message_index, R::LastReadMessageIndex);
        check(self.state != old.state, R::State);
        check(self.status != old.status, R::Status);
        check(self.unique_name != old.unique_name, R::UniqueName);
        check(self.last_message != old.last_message, R::LastMessage);
        check(self.notification_level != old.notification_level, R::NotificationLevel);
        check(self.bindings != old.bindings, R::Bindings);
        reasons
    }
}

/// A participant in the client's roster of a conversation.
#[derive(Debug)]
pub(crate) struct ParticipantEntry {
    pub(crate) data: Arc<ParticipantData>,
    pub(crate) emitter: Arc<ParticipantEmitter>,
}

/// Everything the client keeps about one conversation.
#[derive(Debug)]
pub(crate) struct ConvEntry {
    pub(crate) data: ConversationData,
    pub(crate) emitter: Arc<ConversationEmitter>,
    /// Participants by SID; complete only when `roster_loaded`.
    pub(crate) roster: HashMap<String, ParticipantEntry>,
    pub(crate) roster_loaded: bool,
    pub(crate) typing: TypingTracker,
    pub(crate) throttle: TypingThrottle,
    /// Recently seen messages by SID, to tell what an edit changed.
    pub(crate) messages: HashMap<String, Arc<MessageData>>,
    pub(crate) message_emitters: HashMap<String, Arc<MessageEmitter>>,
    /// The client asked for this conversation's events without being a participant.
    pub(crate) subscribed: bool,
    pub(crate) removed: bool,
    pub(crate) unread: Option<i64>,
    /// Woken after every change, for calls that wait for their own event.
    pub(crate) changed: Arc<Notify>,
}

impl ConvEntry {
    pub(crate) fn new() -> Self {
        Self {
            data: ConversationData::default(),
            emitter: Arc::new(ReplayEventEmitter::new()),
            roster: HashMap::new(),
            roster_loaded: false,
            typing: TypingTracker::default(),
            throttle: TypingThrottle::new(),
            messages: HashMap::new(),
            message_emitters: HashMap::new(),
            subscribed: false,
            removed: false,
            unread: None,
            changed: Arc::new(Notify::new()),
        }
    }

    /// Remembers a message, forgetting the oldest beyond the cache size.
    pub(crate) fn remember(&mut self, data: Arc<MessageData>) {
        self.messages.insert(data.sid.clone(), data);
        if self.messages.len() > MESSAGE_CACHE
            && let Some(oldest) = self.messages.values().min_by_key(|m| m.index).map(|m| m.sid.clone())
        {
            self.messages.remove(&oldest);
        }
    }

    pub(crate) fn participant_by_identity(&self, identity: &str) -> Option<&ParticipantEntry> {
        self.roster.values().find(|p| p.data.identity.as_deref() == Some(identity))
    }
}

/// A conversation: a cheap handle (clone freely) onto the state the client keeps current from the server's
/// events. Methods call the server; accessors read local state.
///
/// # Examples
/// ```no_run
/// # async fn demo(client: palaver_client::Client) -> Result<(), palaver_client::ClientError> {
/// use palaver_client::{ConversationEvent, ConversationEventName};
///
/// let conversation = client.get_conversation_by_unique_name("support").await?;
/// conversation.events().on(ConversationEventName::MessageAdded, |event| {
///     if let ConversationEvent::MessageAdded(message) = event {
///         println!("{:?}: {:?}", message.author(), message.body());
///     }
///     Ok(())
/// });
/// conversation.send_message("hello", None, None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Conversation {
    pub(crate) client: Arc<ClientInner>,
    sid: Arc<str>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").field("sid", &self.sid).finish_non_exhaustive()
    }
}

impl PartialEq for Conversation {
    fn eq(&self, other: &Self) -> bool {
        self.sid == other.sid && Arc::ptr_eq(&self.client, &other.client)
    }
}

impl Conversation {
    pub(crate) fn handle(client: Arc<ClientInner>, sid: &str) -> Self {
        Self { client, sid: Arc::from(sid) }
    }

    fn read<R>(&self, f: impl FnOnce(&ConversationData) -> R) -> R {
        self.client.inspect_conversation(&self.sid, |entry| match entry {
            Some(c) => f(&c.data),
            // The client forgets conversations only when it shuts down; a handle used after that reads empty
            // state.
            None => f(&ConversationData::default()),
        })
    }

    // ----- accessors -----

    /// The conversation SID (`CH…`).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Custom attributes (`{}` by default).
    pub fn attributes(&self) -> Value {
        self.read(|d| d.attributes.clone())
    }

    /// Default bindings.
    pub fn bindings(&self) -> ConversationBindings {
        self.read(|d| d.bindings.clone())
    }

    /// Identity of the creator (`""` when unknown).
    pub fn created_by(&self) -> String {
        self.read(|d| d.created_by.clone())
    }

    /// When it was created.
    pub fn date_created(&self) -> Option<OffsetDateTime> {
        self.read(|d| d.date_created)
    }

    /// When it last changed.
    pub fn date_updated(&self) -> Option<OffsetDateTime> {
        self.read(|d| d.date_updated)
    }

    /// Display name.
    pub fn friendly_name(&self) -> Option<String> {
        self.read(|d| d.friendly_name.clone())
    }

    /// The newest message.
    pub fn last_message(&self) -> Option<LastMessage> {
        self.read(|d| d.last_message.clone())
    }

    /// The user's read horizon, as last reported by the server's events.
    pub fn last_read_message_index(&self) -> Option<i64> {
        self.read(|d| d.last_read_message_index)
    }

    /// The server's message limits (the same for every conversation).
    pub fn limits(&self) -> ConversationLimits {
        self.client.limits()
    }

    /// The user's notification level.
    pub fn notification_level(&self) -> NotificationLevel {
        self.read(|d| d.notification_level)
    }

    /// The lifecycle state; `None` until the server described the conversation.
    pub fn state(&self) -> Option<ConversationState> {
        self.read(|d| d.state.clone())
    }

    /// Whether the user is a participant.
    pub fn status(&self) -> ConversationStatus {
        self.read(|d| d.status)
    }

    /// Unique name.
    pub fn unique_name(&self) -> Option<String> {
        self.read(|d| d.unique_name.clone())
    }

    /// REST URLs of the conversation.
    pub fn links(&self) -> ConversationLinks {
        let base = format!("{}/v1/Conversations/{}", self.client.rest_base(), self.sid);
        ConversationLinks {
            messages: format!("{base}/Messages"),
            participants: format!("{base}/Participants"),
            self_url: base,
        }
    }

    /// The last unread count the server pushed (`None` before the first, or without a horizon).
    pub fn unread_messages_count(&self) -> Option<i64> {
        self.client.with_conversation(&self.sid, |c| c.unread).flatten()
    }

    /// The conversation's events: `on`, `once`, `on_with_replay`, … with [`ConversationEventName`]s.
    pub fn events(&self) -> Arc<ConversationEmitter> {
        self.client.conversation_emitter(&self.sid)
    }

    // ----- methods -----

    /// Adds a chat participant by identity.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty identity; [`ClientError::Server`] with 50433 when they
    /// already participate, 20403 when the caller may not add participants.
    pub async fn add(&self, identity: &str, attributes: Option<Value>) -> Result<ParticipantResponse> {
        if identity.is_empty() {
            return Err(ClientError::InvalidArgument("identity must be a non-empty string".into()));
        }
        let call = Call::AddParticipant {
            conversation: self.sid.to_string(),
            identity: identity.to_string(),
            attributes: Some(attributes_text(&attributes.unwrap_or_else(empty_object))),
        };
        self.client.call_as(call, false).await
    }

    /// Adds an SMS, WhatsApp or email participant.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty address; [`ClientError::Server`] with 50437 when the
    /// binding exists, 50418 over the non-chat limit.
    pub async fn add_non_chat_participant(
        &self,
        proxy_address: &str,
        address: &str,
        attributes: Option<Value>,
        binding_options: Option<ParticipantBindingOptions>,
    ) -> Result<ParticipantResponse> {
        if proxy_address.is_empty() || address.is_empty() {
            return Err(ClientError::InvalidArgument("proxy address and address must be non-empty strings".into()));
        }
        let email = binding_options.and_then(|o| o.email).unwrap_or_default();
        let call = Call::AddNonChatParticipant {
            conversation: self.sid.to_string(),
            proxy_address: proxy_address.to_string(),
            address: address.to_string(),
            attributes: Some(attributes_text(&attributes.unwrap_or_else(empty_object))),
            name: email.name,
            level: email.level.map(|l| l.as_str().to_string()),
        };
        self.client.call_as(call, false).await
    }

    /// Moves the user's read horizon forwards to `index` (never backwards: a lower index keeps the current
    /// horizon). Local state changes only when the server's event arrives.
    ///
    /// Returns the unread count afterwards.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a negative index; [`ClientError::Server`] when the user is not a
    /// participant.
    pub async fn advance_last_read_message_index(&self, index: i64) -> Result<i64> {
        check_index(index)?;
        self.set_horizon(Some(index), true).await
    }

    /// Deletes the conversation.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20403 without the `deleteConversation` permission.
    pub async fn delete(&self) -> Result<Conversation> {
        self.client.call(Call::DeleteConversation { conversation: self.sid.to_string() }, false).await?;
        Ok(self.clone())
    }

    /// The attributes.
    ///
    /// # Errors
    /// None today; async to match the seed (and a future fetch of unsubscribed conversations).
    pub async fn get_attributes(&self) -> Result<Value> {
        Ok(self.attributes())
    }

    /// Recipients of messages sent to non-chat participants, a page at a time.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a page size of 0; [`ClientError::Server`] for non-participants.
    pub async fn get_message_recipients(&self, page_size: Option<u32>) -> Result<Paginator<RecipientDescriptor>> {
        let size = page_size_or_default(page_size, 50)?;
        recipients_page(self.client.clone(), self.sid.to_string(), size, None).await
    }

    /// A page of messages: `page_size` (default 30, at most 100) messages from `anchor` (inclusive; the newest
    /// when `None`) in `direction` (default backwards). Items are ascending; `prev_page` reads older ones.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a page size of 0 or a negative anchor; [`ClientError::Server`]
    /// with 20403 or 50430 when the user is not a participant.
    pub async fn get_messages(
        &self,
        page_size: Option<u32>,
        anchor: Option<i64>,
        direction: Option<Direction>,
    ) -> Result<Paginator<Message>> {
        let page_size = page_size_or_default(page_size, DEFAULT_PAGE_SIZE)?;
        if let Some(anchor) = anchor {
            check_index(anchor)?;
        }
        let query = MessageQuery { page_size, anchor, direction: direction.unwrap_or_default() };
        messages_page(self.clone(), query).await
    }

    /// How many messages exist (from the server, not live).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the conversation is gone.
    pub async fn get_messages_count(&self) -> Result<i64> {
        Ok(self.counts().await?.messages_count)
    }

    /// The participant with `identity`; `Ok(None)` when the user is not a participant (the roster is not
    /// available to them).
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no participant has that identity; [`ClientError::InvalidArgument`] for
    /// an empty identity.
    pub async fn get_participant_by_identity(&self, identity: &str) -> Result<Option<Participant>> {
        if identity.is_empty() {
            return Err(ClientError::InvalidArgument("identity must be a non-empty string".into()));
        }
        self.find_participant(|c| c.participant_by_identity(identity).map(|p| p.data.clone()))
            .await?
            .map(|p| p.ok_or_else(|| ClientError::NotFound(format!("participant with identity {identity}"))))
            .transpose()
    }

    /// The participant with `sid`; `Ok(None)` when the user is not a participant.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no participant has that SID.
    pub async fn get_participant_by_sid(&self, sid: &str) -> Result<Option<Participant>> {
        if sid.is_empty() {
            return Err(ClientError::InvalidArgument("participant SID must be a non-empty string".into()));
        }
        self.find_participant(|c| c.roster.get(sid).map(|p| p.data.clone()))
            .await?
            .map(|p| p.ok_or_else(|| ClientError::NotFound(format!("participant with SID {sid}"))))
            .transpose()
    }

    async fn find_participant(
        &self,
        find: impl Fn(&ConvEntry) -> Option<Arc<ParticipantData>>,
    ) -> Result<Option<Option<Participant>>> {
        let (joined, loaded) = self
            .client
            .with_conversation(&self.sid, |c| (c.data.status == ConversationStatus::Joined, c.roster_loaded))
            .unwrap_or((false, false));
        if !loaded {
            if !joined {
                return Ok(None);
            }
            self.load_roster().await?;
        }
        let found = self.client.with_conversation(&self.sid, |c| find(c)).flatten();
        Ok(Some(found.map(|data| Participant::new(self.client.clone(), data))))
    }

    /// Every participant, fetched from the server (which also refreshes the local roster).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant.
    pub async fn get_participants(&self) -> Result<Vec<Participant>> {
        let list = self.load_roster().await?;
        Ok(list.into_iter().map(|data| Participant::new(self.client.clone(), data)).collect())
    }

    /// Fetches the roster and merges it into the local one, keeping typing state and emitters.
    async fn load_roster(&self) -> Result<Vec<Arc<ParticipantData>>> {
        let list: ParticipantList =
            self.client.call_as(Call::GetParticipants { conversation: self.sid.to_string() }, true).await?;
        let fresh: Vec<Arc<ParticipantData>> =
            list.items.iter().map(|info| Arc::new(ParticipantData::from_info(info))).collect();
        self.client.with_conversation_mut(&self.sid, |c| {
            c.roster.retain(|sid, _| fresh.iter().any(|p| &p.sid == sid));
            for data in &fresh {
                match c.roster.get_mut(&data.sid) {
                    Some(entry) => entry.data = data.clone(),
                    None => {
                        c.roster.insert(
                            data.sid.clone(),
                            ParticipantEntry { data: data.clone(), emitter: Arc::new(ReplayEventEmitter::new()) },
                        );
                    }
                }
            }
            c.roster_loaded = true;
        });
        Ok(fresh)
    }

    /// How many participants there are (from the server, not live).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the conversation is gone.
    pub async fn get_participants_count(&self) -> Result<i64> {
        Ok(self.counts().await?.participants_count)
    }

    async fn counts(&self) -> Result<Counts> {
        self.client.call_as(Call::GetCounts { conversation: self.sid.to_string() }, true).await
    }

    /// The user's exact unread count; `None` when no read horizon is set.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant.
    pub async fn get_unread_messages_count(&self) -> Result<Option<i64>> {
        let count: UnreadCount =
            self.client.call_as(Call::GetUnreadCount { conversation: self.sid.to_string() }, true).await?;
        Ok(count.unread_messages_count)
    }

    /// The user joins. Returns once the membership is visible locally.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 50433 when already a participant, 20403 without `joinConversation`.
    pub async fn join(&self) -> Result<Conversation> {
        self.client.call(Call::Join { conversation: self.sid.to_string() }, false).await?;
        if !self.wait_until(|c| c.data.status == ConversationStatus::Joined).await {
            self.client.set_status(&self.sid, ConversationStatus::Joined);
        }
        Ok(self.clone())
    }

    /// The user leaves; does nothing unless they are a participant.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20403 without `leaveConversation`.
    pub async fn leave(&self) -> Result<Conversation> {
        if self.status() != ConversationStatus::Joined {
            return Ok(self.clone());
        }
        self.client.call(Call::Leave { conversation: self.sid.to_string() }, false).await?;
        if !self.wait_until(|c| c.data.status != ConversationStatus::Joined).await {
            self.client.set_status(&self.sid, ConversationStatus::NotParticipating);
        }
        Ok(self.clone())
    }

    /// Starts composing a message with body, subject, attributes, media and email parts.
    pub fn prepare_message(&self) -> MessageBuilder {
        MessageBuilder::new(self.clone(), self.client.limits())
    }

    /// Removes a participant, named by SID, identity or handle.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty name; [`ClientError::Server`] with 20404 when there is no
    /// such participant, 20403 without `removeParticipant`.
    pub async fn remove_participant(&self, participant: impl Into<ParticipantRef>) -> Result<()> {
        let participant = participant.into();
        if participant.as_wire().is_empty() {
            return Err(ClientError::InvalidArgument("participant must be a non-empty string".into()));
        }
        let call = Call::RemoveParticipant {
            conversation: self.sid.to_string(),
            participant: participant.as_wire().to_string(),
        };
        self.client.call(call, false).await?;
        Ok(())
    }

    /// Sends a message; resolves to its index. A send interrupted by a lost connection is retried after
    /// reconnecting with the same idempotency key, so it is stored exactly once.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty email subject or media without a content type;
    /// [`ClientError::Server`] when the user may not send or the server refuses the media.
    pub async fn send_message(
        &self,
        message: impl Into<MessageContent>,
        attributes: Option<Value>,
        email_options: Option<SendEmailOptions>,
    ) -> Result<i64> {
        let subject = email_options.and_then(|o| o.subject);
        if subject.as_deref() == Some("") {
            return Err(ClientError::InvalidArgument("the email subject must not be empty".into()));
        }
        let (body, media_sids) = match message.into() {
            MessageContent::Text(text) => (text, Vec::new()),
            MessageContent::None => (String::new(), Vec::new()),
            MessageContent::Media(media) => {
                if media.content_type.is_empty() {
                    return Err(ClientError::InvalidArgument("media needs a content type".into()));
                }
                (String::new(), vec![crate::message::upload(&self.client, "media", &media).await?])
            }
        };
        let params = SendMessageParams {
            conversation: self.sid.to_string(),
            body: Some(body),
            attributes: Some(attributes_text(&attributes.unwrap_or_else(empty_object))),
            subject,
            media_sids,
            idempotency_key: Some(crate::util::random_key()),
        };
        crate::message::send(&self.client, params).await
    }

    /// Marks every message read; returns the unread count (0 for an empty conversation).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant.
    pub async fn set_all_messages_read(&self) -> Result<i64> {
        let newest = self.get_messages(Some(1), None, None).await?;
        match newest.items().last() {
            Some(message) => self.advance_last_read_message_index(message.index()).await,
            None => Ok(0),
        }
    }

    /// Clears the read horizon, making every message unread; returns how many messages are now unread (all of
    /// them). Afterwards [`Conversation::get_unread_messages_count`] answers `None`: with no horizon the
    /// server keeps no count.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant.
    pub async fn set_all_messages_unread(&self) -> Result<i64> {
        self.set_horizon(None, false).await
    }

    /// Sets the user's notification level.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant or lacks `editNotificationLevel`.
    pub async fn set_user_notification_level(&self, level: NotificationLevel) -> Result<()> {
        let call = Call::SetNotificationLevel { conversation: self.sid.to_string(), level: level.as_str().to_string() };
        self.client.call(call, true).await?;
        // No event carries the level (it is the user's own setting), so the answer is the truth.
        self.client.set_notification_level(&self.sid, level);
        Ok(())
    }

    /// Tells the other participants the user is typing. At most one request is sent per typing timeout;
    /// calls in between return at once.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the user is not a participant.
    pub async fn typing(&self) -> Result<()> {
        let timeout = self.client.typing_timeout();
        let now = tokio::time::Instant::now();
        let send = self.client.with_conversation_mut(&self.sid, |c| c.throttle.try_send(now, timeout)).unwrap_or(true);
        if !send {
            return Ok(());
        }
        match self.client.call_as::<TypingAck>(Call::Typing { conversation: self.sid.to_string() }, false).await {
            Ok(ack) => {
                self.client.set_typing_timeout(Duration::from_millis(ack.typing_timeout_ms));
                Ok(())
            }
            Err(err) => {
                self.client.with_conversation_mut(&self.sid, |c| c.throttle.reset());
                Err(err)
            }
        }
    }

    /// Replaces the attributes. Returns once the change is visible locally.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20403 without `editConversationAttributes`, 20001 when too large.
    pub async fn update_attributes(&self, attributes: Value) -> Result<Conversation> {
        self.update(None, None, Some(attributes_text(&attributes))).await
    }

    /// Changes the display name; makes no call when it is unchanged.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20403 without `editConversationName`.
    pub async fn update_friendly_name(&self, friendly_name: &str) -> Result<Conversation> {
        if self.friendly_name().as_deref() == Some(friendly_name) {
            return Ok(self.clone());
        }
        self.update(Some(friendly_name.to_string()), None, None).await
    }

    /// Sets the user's read horizon exactly (it may move backwards; `None` makes everything unread).
    /// Returns the unread count (with `None`, every message). Local state changes only when the server's event
    /// arrives.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a negative index; [`ClientError::Server`] for non-participants.
    pub async fn update_last_read_message_index(&self, index: Option<i64>) -> Result<i64> {
        if let Some(index) = index {
            check_index(index)?;
        }
        self.set_horizon(index, false).await
    }

    /// Changes the unique name (`None` clears it); makes no call when it is unchanged.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 50353 when another conversation has the name.
    pub async fn update_unique_name(&self, unique_name: Option<&str>) -> Result<Conversation> {
        if self.unique_name().as_deref() == unique_name {
            return Ok(self.clone());
        }
        self.update(None, Some(unique_name.unwrap_or_default().to_string()), None).await
    }

    async fn update(
        &self,
        friendly_name: Option<String>,
        unique_name: Option<String>,
        attributes: Option<String>,
    ) -> Result<Conversation> {
        let call =
            Call::UpdateConversation { conversation: self.sid.to_string(), friendly_name, unique_name, attributes };
        let info: ConversationInfo = self.client.call_as(call, false).await?;
        let mut wanted = ConversationData::default();
        wanted.apply_info(&info);
        let arrived = self
            .wait_until(|c| {
                c.data.date_updated > wanted.date_updated
                    || (c.data.friendly_name == wanted.friendly_name
                        && c.data.unique_name == wanted.unique_name
                        && c.data.attributes == wanted.attributes)
            })
            .await;
        if !arrived {
            self.client.apply_conversation_info(&info);
        }
        Ok(self.clone())
    }

    async fn set_horizon(&self, index: Option<i64>, advance_only: bool) -> Result<i64> {
        let call = Call::SetReadHorizon { conversation: self.sid.to_string(), index, advance_only };
        let count: UnreadCount = self.client.call_as(call, true).await?;
        count
            .unread_messages_count
            .ok_or_else(|| ClientError::Protocol("the server answered a read horizon change without a count".into()))
    }

    /// Waits (briefly) until `done` holds for the local state; false when it timed out.
    pub(crate) async fn wait_until(&self, done: impl Fn(&ConvEntry) -> bool) -> bool {
        let Some(changed) = self.client.with_conversation(&self.sid, |c| c.changed.clone()) else { return false };
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.client.with_conversation(&self.sid, |c| done(c)).unwrap_or(true) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn check_index(index: i64) -> Result<()> {
    if index < 0 {
        return Err(ClientError::InvalidArgument(format!("a message index must not be negative, got {index}")));
    }
    Ok(())
}

fn page_size_or_default(page_size: Option<u32>, default: u32) -> Result<u32> {
    match page_size {
        None => Ok(default),
        Some(0) => Err(ClientError::InvalidArgument("the page size must be positive".into())),
        Some(n) => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// Fetches one page of messages and wires its neighbours.
fn messages_page(
    conversation: Conversation,
    query: MessageQuery,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Paginator<Message>>> + Send>> {
    Box::pin(async move {
        let params = GetMessagesParams {
            conversation: conversation.sid.to_string(),
            page_size: Some(query.page_size),
            anchor: query.anchor,
            direction: query.direction,
        };
        let page: MessagesPage = conversation.client.call_as(Call::GetMessages(params), true).await?;
        let mut items: Vec<Message> = page
            .items
            .iter()
            .map(|info| Message::new(conversation.client.clone(), MessageData::from_info(info)))
            .collect();
        items.sort_by_key(Message::index);
        conversation.client.with_conversation_mut(&conversation.sid, |c| {
            for message in &items {
                c.remember(message.data.clone());
            }
        });
        let span = items.first().map(Message::index).zip(items.last().map(Message::index));
        let (prev, next) = message_neighbours(query.page_size, span, page.has_older, page.has_newer);
        let link = |q: Option<MessageQuery>| {
            q.map(|q| {
                let conversation = conversation.clone();
                fetcher(move || messages_page(conversation.clone(), q))
            })
        };
        Ok(Paginator::new(items, link(next), link(prev)))
    })
}

/// Fetches one page of message recipients.
fn recipients_page(
    client: Arc<ClientInner>,
    conversation: String,
    page_size: u32,
    page_token: Option<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Paginator<RecipientDescriptor>>> + Send>> {
    Box::pin(async move {
        let call = Call::GetMessageRecipients {
            conversation: conversation.clone(),
            message: None,
            page_size: Some(page_size),
            page_token,
        };
        let page: RecipientsPage = client.call_as(call, true).await?;
        let items = page
            .items
            .into_iter()
            .map(|r| RecipientDescriptor {
                message_sid: r.message_sid,
                participant_sid: r.participant_sid,
                address: r.address,
                kind: r.kind,
                status: r.status,
            })
            .collect();
        let next = page.next_page_token.map(|token| {
            fetcher(move || recipients_page(client.clone(), conversation.clone(), page_size, Some(token.clone())))
        });
        Ok(Paginator::new(items, next, None))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_api::realtime::LastMessageInfo;

    fn info() -> ConversationInfo {
        ConversationInfo {
            sid: "CH00000000000000000000000000000001".into(),
            service_sid: "IS00000000000000000000000000000001".into(),
            friendly_name: Some("Support".into()),
            unique_name: None,
            attributes: "{}".into(),
            state: "active".into(),
            state_updated: "2026-01-01T00:00:00Z".into(),
            created_by: Some("alice".into()),
            date_created: "2026-01-01T00:00:00Z".into(),
            date_updated: "2026-01-01T00:00:00Z".into(),
            date_inactive: None,
            date_closed: None,
            last_message: None,
            bindings: None,
            messages_count: 0,
            participants_count: 0,
        }
    }

    #[test]
    fn one_change_reports_all_its_reasons() {
        let mut old = ConversationData::default();
        old.apply_info(&info());
        let mut changed = info();
        changed.friendly_name = Some("Billing".into());
        changed.attributes = r#"{"topic":"billing"}"#.into();
        changed.state = "inactive".into();
        changed.date_updated = "2026-01-01T00:01:00Z".into();
        changed.last_message = Some(LastMessageInfo { index: 4, date_created: Some("2026-01-01T00:01:00Z".into()) });
        let mut new = old.clone();
        new.apply_info(&changed);
        new.last_read_message_index = Some(3);
        assert_eq!(
            new.diff(&old),
            vec![
                ConversationUpdateReason::Attributes,
                ConversationUpdateReason::DateUpdated,
                ConversationUpdateReason::FriendlyName,
                ConversationUpdateReason::LastReadMessageIndex,
                ConversationUpdateReason::State,
                ConversationUpdateReason::LastMessage,
            ]
        );
    }

    #[test]
    fn an_identical_update_has_no_reasons() {
        let mut a = ConversationData::default();
        a.apply_info(&info());
        let b = a.clone();
        assert!(b.diff(&a).is_empty());
    }

    #[test]
    fn the_users_fields_are_separate_from_the_shared_ones() {
        let mut data = ConversationData::default();
        data.apply_mine("joined", Some(2), "muted");
        data.apply_info(&info());
        assert_eq!(data.status, ConversationStatus::Joined);
        assert_eq!(data.last_read_message_index, Some(2));
        assert_eq!(data.notification_level, NotificationLevel::Muted);
        let mut left = data.clone();
        left.apply_mine("not_participating", Some(2), "muted");
        assert_eq!(left.diff(&data), vec![ConversationUpdateReason::Status]);
    }

    #[test]
    fn page_sizes_are_checked_and_capped() {
        assert_eq!(page_size_or_default(None, 30), Ok(30));
        assert_eq!(page_size_or_default(Some(500), 30), Ok(100));
        assert!(matches!(page_size_or_default(Some(0), 30), Err(ClientError::InvalidArgument(_))));
        assert!(matches!(check_index(-1), Err(ClientError::InvalidArgument(_))));
    }

    #[test]
    fn bindings_are_parsed_and_kept_raw() {
        let raw = serde_json::json!({"email": {"address": "support@example.com", "name": "Support"}});
        let bindings = ConversationBindings::parse(Some(&raw));
        assert_eq!(bindings.email.unwrap().address.as_deref(), Some("support@example.com"));
        assert_eq!(ConversationBindings::parse(None).raw, serde_json::json!({}));
    }
}
