//! [`Client`]: the connection, the conversation cache, and the client-level events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use palaver_api::realtime::{
    Call, Connected, ConversationInfo, ConversationLimits, EventFrame, EventKindName, MessageInfo, MyConversation,
    MyConversationsPage, ParticipantInfo, ServerFrame, TokenUpdated, TypingFrame, UnreadFrame, UserConversationChange,
    UserInfo,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::conversation::{
    ConvEntry, Conversation, ConversationEmitter, ConversationEvent, ConversationStatus, ConversationUpdateReason,
    LastMessage, NotificationLevel, ParticipantEntry,
};
use crate::emitter::ReplayEventEmitter;
use crate::error::{ClientError, Result};
use crate::message::{Message, MessageData, MessageEmitter, MessageEvent, MessageUpdateReason};
use crate::paginator::{Paginator, fetcher};
use crate::participant::{Participant, ParticipantData, ParticipantEmitter, ParticipantEvent, ParticipantUpdateReason};
use crate::transport::{ConnectionState, Handler, Transport, TransportConfig, UrlProvider};
use crate::user::{User, UserData, UserEmitter, UserEvent, UserUpdateReason};

/// How a [`Client`] connects. Build with [`ClientOptions::new`] and adjust with the `with_…` methods.
#[derive(Clone)]
#[must_use]
pub struct ClientOptions {
    url: UrlProvider,
    token: String,
    backoff_min: Duration,
    backoff_max: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &(self.url)())
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// Connect to `url` (`ws://host:port/v1/realtime`) with the access token `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        let url: String = url.into();
        Self::with_url_provider(move || url.clone(), token)
    }

    /// Like [`new`](Self::new), but the URL is asked for again before every connection attempt.
    pub fn with_url_provider(url: impl Fn() -> String + Send + Sync + 'static, token: impl Into<String>) -> Self {
        Self {
            url: Arc::new(url),
            token: token.into(),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// Reconnection delays: doubling from `min` up to `max` (default 100 ms to 10 s), with jitter.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// How long a request waits for its reply, including time spent waiting for a connection (default 30 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a connection may stay silent before it is considered dead (default 60 s; the server pings
    /// every 20 s).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// What [`Client::create_conversation`] creates.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct CreateConversationOptions {
    /// Display name.
    pub friendly_name: Option<String>,
    /// Unique name.
    pub unique_name: Option<String>,
    /// Custom attributes.
    pub attributes: Option<Value>,
}

impl CreateConversationOptions {
    /// No names, no attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the display name.
    pub fn friendly_name(mut self, name: impl Into<String>) -> Self {
        self.friendly_name = Some(name.into());
        self
    }

    /// Sets the unique name.
    pub fn unique_name(mut self, name: impl Into<String>) -> Self {
        self.unique_name = Some(name.into());
        self
    }

    /// Sets the attributes.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = Some(attributes);
        self
    }
}

/// Names of the client's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientEventName {
    /// `connectionStateChanged`.
    ConnectionStateChanged,
    /// `connectionError`.
    ConnectionError,
    /// `tokenAboutToExpire`.
    TokenAboutToExpire,
    /// `tokenExpired`.
    TokenExpired,
    /// `conversationAdded`.
    ConversationAdded,
    /// `conversationJoined`.
    ConversationJoined,
    /// `conversationLeft`.
    ConversationLeft,
    /// `conversationRemoved`.
    ConversationRemoved,
    /// `conversationUpdated`.
    ConversationUpdated,
    /// `userUpdated`.
    UserUpdated,
    /// `messageAdded`.
    MessageAdded,
    /// `messageUpdated`.
    MessageUpdated,
    /// `messageRemoved`.
    MessageRemoved,
    /// `participantJoined`.
    ParticipantJoined,
    /// `participantLeft`.
    ParticipantLeft,
    /// `participantUpdated`.
    ParticipantUpdated,
    /// `typingStarted`.
    TypingStarted,
    /// `typingEnded`.
    TypingEnded,
    /// `unreadCountChanged`.
    UnreadCountChanged,
}

impl ClientEventName {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionStateChanged => "connectionStateChanged",
            Self::ConnectionError => "connectionError",
            Self::TokenAboutToExpire => "tokenAboutToExpire",
            Self::TokenExpired => "tokenExpired",
            Self::ConversationAdded => "conversationAdded",
            Self::ConversationJoined => "conversationJoined",
            Self::ConversationLeft => "conversationLeft",
            Self::ConversationRemoved => "conversationRemoved",
            Self::ConversationUpdated => "conversationUpdated",
            Self::UserUpdated => "userUpdated",
            Self::MessageAdded => "messageAdded",
            Self::MessageUpdated => "messageUpdated",
            Self::MessageRemoved => "messageRemoved",
            Self::ParticipantJoined => "participantJoined",
            Self::ParticipantLeft => "participantLeft",
            Self::ParticipantUpdated => "participantUpdated",
            Self::TypingStarted => "typingStarted",
            Self::TypingEnded => "typingEnded",
            Self::UnreadCountChanged => "unreadCountChanged",
        }
    }
}

/// The client's events. Conversation events are repeated here for every conversation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection state changed.
    ConnectionStateChanged(ConnectionState),
    /// A connection attempt or a connection failed (the client retries unless the state is `Denied`).
    ConnectionError {
        /// What failed.
        reason: String,
    },
    /// The token expires soon: call [`Client::update_token`].
    TokenAboutToExpire {
        /// When (RFC 3339).
        expires_at: String,
    },
    /// The token expired and the connection closed; [`Client::update_token`] reconnects.
    TokenExpired,
    /// The client learned about a conversation.
    ConversationAdded(Conversation),
    /// The user became a participant.
    ConversationJoined(Conversation),
    /// The user stopped being a participant.
    ConversationLeft(Conversation),
    /// A conversation was deleted.
    ConversationRemoved(Conversation),
    /// A conversation changed.
    ConversationUpdated {
        /// After the change.
        conversation: Conversation,
        /// Every field that changed.
        update_reasons: Vec<ConversationUpdateReason>,
    },
    /// A user changed.
    UserUpdated {
        /// After the change.
        user: User,
        /// Every field that changed.
        update_reasons: Vec<UserUpdateReason>,
    },
    /// A message arrived in some conversation.
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
    /// Someone joined a conversation.
    ParticipantJoined(Participant),
    /// Someone left a conversation.
    ParticipantLeft(Participant),
    /// A participant changed.
    ParticipantUpdated {
        /// After the change.
        participant: Participant,
        /// Every field that changed.
        update_reasons: Vec<ParticipantUpdateReason>,
    },
    /// Someone is typing.
    TypingStarted(Participant),
    /// Someone stopped typing.
    TypingEnded(Participant),
    /// The user's unread count in a conversation changed.
    UnreadCountChanged {
        /// Where.
        conversation: Conversation,
        /// The count; `None` without a read horizon.
        unread_messages_count: Option<i64>,
    },
}

impl ClientEvent {
    /// The event's name.
    pub fn name(&self) -> ClientEventName {
        use ClientEventName as N;
        match self {
            Self::ConnectionStateChanged(_) => N::ConnectionStateChanged,
            Self::ConnectionError { .. } => N::ConnectionError,
            Self::TokenAboutToExpire { .. } => N::TokenAboutToExpire,
            Self::TokenExpired => N::TokenExpired,
            Self::ConversationAdded(_) => N::ConversationAdded,
            Self::ConversationJoined(_) => N::ConversationJoined,
            Self::ConversationLeft(_) => N::ConversationLeft,
            Self::ConversationRemoved(_) => N::ConversationRemoved,
            Self::ConversationUpdated { .. } => N::ConversationUpdated,
            Self::UserUpdated { .. } => N::UserUpdated,
            Self::MessageAdded(_) => N::MessageAdded,
            Self::MessageUpdated { .. } => N::MessageUpdated,
            Self::MessageRemoved(_) => N::MessageRemoved,
            Self::ParticipantJoined(_) => N::ParticipantJoined,
            Self::ParticipantLeft(_) => N::ParticipantLeft,
            Self::ParticipantUpdated { .. } => N::ParticipantUpdated,
            Self::TypingStarted(_) => N::TypingStarted,
            Self::TypingEnded(_) => N::TypingEnded,
            Self::UnreadCountChanged { .. } => N::UnreadCountChanged,
        }
    }

    /// The client-level copy of a conversation event.
    fn mirror(event: &ConversationEvent, conversation: &Conversation) -> Option<Self> {
        Some(match event.clone() {
            ConversationEvent::ParticipantJoined(p) => Self::ParticipantJoined(p),
            ConversationEvent::ParticipantLeft(p) => Self::ParticipantLeft(p),
            ConversationEvent::ParticipantUpdated { participant, update_reasons } => {
                Self::ParticipantUpdated { participant, update_reasons }
            }
            ConversationEvent::MessageAdded(m) => Self::MessageAdded(m),
            ConversationEvent::MessageUpdated { message, update_reasons } => {
                Self::MessageUpdated { message, update_reasons }
            }
            ConversationEvent::MessageRemoved(m) => Self::MessageRemoved(m),
            ConversationEvent::TypingStarted(p) => Self::TypingStarted(p),
            ConversationEvent::TypingEnded(p) => Self::TypingEnded(p),
            ConversationEvent::Updated { conversation, update_reasons } => {
                Self::ConversationUpdated { conversation, update_reasons }
            }
            ConversationEvent::Removed(c) => Self::ConversationRemoved(c),
            ConversationEvent::UnreadCountChanged(count) => {
                Self::UnreadCountChanged { conversation: conversation.clone(), unread_messages_count: count }
            }
        })
    }
}

/// The emitter behind [`Client::events`].
pub type ClientEmitter = ReplayEventEmitter<ClientEventName, ClientEvent>;

/// A connection to a Palaver server as one user: the entry point of the SDK.
///
/// Cloning is cheap; all clones share one connection. The connection closes with [`shutdown`](Self::shutdown)
/// or when the last clone is dropped (handles such as [`Conversation`] then fail with
/// [`ClientError::Shutdown`]).
///
/// # Examples
/// ```no_run
/// # async fn demo() -> Result<(), palaver_client::ClientError> {
/// use palaver_client::{Client, CreateConversationOptions};
///
/// let client = Client::connect("ws://127.0.0.1:8088/v1/realtime", "<access token>").await?;
/// let conversation =
///     client.create_conversation(CreateConversationOptions::new().friendly_name("Support")).await?;
/// conversation.join().await?;
/// let index = conversation.send_message("hello", None, None).await?;
/// println!("message {index} in {}", conversation.sid());
/// client.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
    /// Shuts the connection down when the last clone goes.
    _guard: Option<Arc<ShutdownGuard>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("identity", &self.inner.my_identity())
            .field("state", &self.connection_state())
            .finish_non_exhaustive()
    }
}

struct ShutdownGuard(Arc<ClientInner>);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        if let Some(transport) = self.0.transport.get() {
            transport.shutdown_now();
        }
        self.0.teardown();
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port/v1/realtime`) with an access token, and loads the conversations the
    /// user participates in.
    ///
    /// # Errors
    /// [`ClientError::Denied`] when the token is rejected; [`ClientError::Connect`] when the server cannot be
    /// reached; [`ClientError::InvalidArgument`] for an empty token.
    pub async fn connect(url: &str, token: &str) -> Result<Client> {
        Self::connect_with(ClientOptions::new(url, token)).await
    }

    /// [`connect`](Self::connect) with options (reconnection backoff, timeouts, a changing URL).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(options: ClientOptions) -> Result<Client> {
        if options.token.is_empty() {
            return Err(ClientError::InvalidArgument("a valid access token must be provided".into()));
        }
        let rest_base = rest_base((options.url)().as_str());
        let inner = Arc::new_cyclic(|this| ClientInner {
            this: this.clone(),
            transport: OnceLock::new(),
            rest_base,
            token: Mutex::new(options.token.clone()),
            http: reqwest::Client::new(),
            session: Mutex::new(Session::default()),
            cache: Mutex::new(Cache::default()),
            events: Mutex::new(Some(Arc::new(ReplayEventEmitter::new()))),
        });
        let config = TransportConfig {
            url: options.url,
            token: options.token,
            backoff_min: options.backoff_min,
            backoff_max: options.backoff_max,
            request_timeout: options.request_timeout,
            connect_timeout: options.connect_timeout,
            idle_timeout: options.idle_timeout,
        };
        let (transport, _connected) = Transport::start(config, Arc::downgrade(&inner)).await?;
        let _ = inner.transport.set(transport);
        let client = Client { _guard: Some(Arc::new(ShutdownGuard(inner.clone()))), inner };
        if let Err(err) = client.load_my_conversations().await {
            client.shutdown().await;
            return Err(err);
        }
        Ok(client)
    }

    pub(crate) fn from_inner(inner: Arc<ClientInner>) -> Self {
        Self { inner, _guard: None }
    }

    /// Reads every conversation the user participates in and reconciles the cache with it (after a
    /// reconnect this catches joins and leaves that happened while offline).
    async fn load_my_conversations(&self) -> Result<()> {
        let mut token = None;
        let mut joined = std::collections::HashSet::new();
        loop {
            let page: MyConversationsPage =
                self.inner.call_as(Call::GetMyConversations { page_size: Some(100), page_token: token }, true).await?;
            for my in &page.items {
                joined.insert(my.conversation.sid.clone());
                self.inner.upsert_my_conversation(my);
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let gone: Vec<String> = {
            let cache = lock(&self.inner.cache);
            cache
                .conversations
                .iter()
                .filter(|(sid, c)| c.data.status == ConversationStatus::Joined && !joined.contains(*sid))
                .map(|(sid, _)| sid.clone())
                .collect()
        };
        for sid in gone {
            self.inner.set_status(&sid, ConversationStatus::NotParticipating);
        }
        Ok(())
    }

    /// The client's events: `on`, `once`, `on_with_replay`, … with [`ClientEventName`]s.
    pub fn events(&self) -> Arc<ClientEmitter> {
        self.inner.client_emitter()
    }

    /// The state of the connection.
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.transport.get().map_or(ConnectionState::Disconnected, Transport::state)
    }

    /// The identity the token grants.
    pub fn identity(&self) -> String {
        self.inner.my_identity().unwrap_or_default()
    }

    /// The client's own user, kept current by events.
    pub fn user(&self) -> User {
        let identity = self.identity();
        let data = self.inner.user_data(&identity).unwrap_or_else(|| {
            Arc::new(UserData {
                sid: String::new(),
                identity: identity.clone(),
                friendly_name: None,
                attributes: Value::Object(Default::default()),
                is_online: None,
                is_notifiable: None,
            })
        });
        User::new(self.inner.clone(), data)
    }

    /// A user of the service by identity.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty identity; [`ClientError::Server`] (404) when there is no
    /// such user.
    pub async fn get_user(&self, identity: &str) -> Result<User> {
        if identity.is_empty() {
            return Err(ClientError::InvalidArgument("identity must be a non-empty string".into()));
        }
        let info: UserInfo = self.inner.call_as(Call::GetUser { identity: identity.to_string() }, true).await?;
        Ok(self.inner.upsert_user(&info))
    }

    /// Replaces the access token on the live connection (no reconnect), or for the next connection when the
    /// client is disconnected, denied or its token expired (which makes it reconnect).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty token; [`ClientError::Server`] when the server rejects it
    /// (the old token stays in use).
    pub async fn update_token(&self, token: &str) -> Result<()> {
        if token.is_empty() {
            return Err(ClientError::InvalidArgument("a valid access token must be provided".into()));
        }
        let transport = self.inner.transport()?;
        if transport.state() == ConnectionState::Connected {
            match transport.call_as::<TokenUpdated>(Call::UpdateToken { token: token.to_string() }, false).await {
                Ok(_) | Err(ClientError::TransportUnavailable) => {}
                Err(err) => return Err(err),
            }
        }
        transport.set_token(token.to_string());
        *lock(&self.inner.token) = token.to_string();
        Ok(())
    }

    /// Closes the connection for good. Waiting requests fail with [`ClientError::Shutdown`].
    pub async fn shutdown(&self) {
        if let Some(transport) = self.inner.transport.get() {
            transport.shutdown().await;
        }
        self.inner.teardown();
    }

    /// Creates a conversation. The user does not join it (call [`Conversation::join`]); the client follows
    /// its changes anyway.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 50353 when the unique name is taken, 20403 without
    /// `createConversation`.
    pub async fn create_conversation(&self, options: CreateConversationOptions) -> Result<Conversation> {
        let call = Call::CreateConversation {
            friendly_name: options.friendly_name,
            unique_name: options.unique_name,
            attributes: options.attributes.map(|a| a.to_string()),
        };
        let created: MyConversation = self.inner.call_as(call, false).await?;
        let sid = created.conversation.sid.clone();
        let conversation = self.inner.upsert_my_conversation(&created);
        self.follow(&sid, Some(created.last_seq)).await?;
        Ok(conversation)
    }

    /// A conversation by SID, joined or not (the client then follows its changes).
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20404 when it does not exist (see [`ClientError::is_not_found`]).
    pub async fn get_conversation_by_sid(&self, sid: &str) -> Result<Conversation> {
        if sid.is_empty() {
            return Err(ClientError::InvalidArgument("conversation SID must be a non-empty string".into()));
        }
        if let Some(conversation) = self.inner.followed(|sid_, _| sid_ == sid) {
            return Ok(conversation);
        }
        self.follow(sid, None).await
    }

    /// A conversation by unique name.
    ///
    /// # Errors
    /// [`ClientError::Server`] with 20404 when it does not exist.
    pub async fn get_conversation_by_unique_name(&self, unique_name: &str) -> Result<Conversation> {
        if unique_name.is_empty() {
            return Err(ClientError::InvalidArgument("unique name must be a non-empty string".into()));
        }
        if let Some(conversation) =
            self.inner.followed(|_, entry| entry.data.unique_name.as_deref() == Some(unique_name))
        {
            return Ok(conversation);
        }
        self.follow(unique_name, None).await
    }

    /// Subscribes to a conversation's events and records it.
    async fn follow(&self, conversation: &str, after_seq: Option<i64>) -> Result<Conversation> {
        let call = Call::Subscribe { conversation: conversation.to_string(), after_seq };
        let found: MyConversation = self.inner.call_as(call, true).await?;
        let sid = found.conversation.sid.clone();
        let handle = self.inner.upsert_my_conversation(&found);
        self.inner.with_conversation_mut(&sid, |c| c.subscribed = true);
        Ok(handle)
    }

    /// The conversations the user participates in, 50 per page.
    ///
    /// # Errors
    /// Request errors.
    pub async fn get_subscribed_conversations(&self) -> Result<Paginator<Conversation>> {
        my_conversations_page(self.inner.clone(), None).await
    }
}

fn my_conversations_page(
    inner: Arc<ClientInner>,
    token: Option<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Paginator<Conversation>>> + Send>> {
    Box::pin(async move {
        let page: MyConversationsPage =
            inner.call_as(Call::GetMyConversations { page_size: Some(50), page_token: token }, true).await?;
        let items = page.items.iter().map(|my| inner.upsert_my_conversation(my)).collect();
        let next = page.next_page_token.map(|token| {
            let inner = inner.clone();
            fetcher(move || my_conversations_page(inner.clone(), Some(token.clone())))
        });
        Ok(Paginator::new(items, next, None))
    })
}

/// `ws://host/v1/realtime` → `http://host`.
fn rest_base(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", url),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// What the server told the client about its session.
#[derive(Debug)]
struct Session {
    identity: Option<String>,
    user_sid: Option<String>,
    typing_timeout: Duration,
    limits: ConversationLimits,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            identity: None,
            user_sid: None,
            typing_timeout: Duration::from_secs(5),
            limits: ConversationLimits {
                media_attachments_count_limit: 0,
                media_attachment_size_limit_in_mb: 0,
                media_attachments_total_size_limit_in_mb: 0,
                email_bodies_allowed_content_types: Vec::new(),
                email_histories_allowed_content_types: Vec::new(),
            },
        }
    }
}

#[derive(Debug)]
struct UserEntry {
    data: Arc<UserData>,
    emitter: Arc<UserEmitter>,
}

/// Everything the client knows, behind one lock. Listeners are never called while it is held.
#[derive(Debug, Default)]
struct Cache {
    conversations: HashMap<String, ConvEntry>,
    users: HashMap<String, UserEntry>,
    /// Last sequence number processed per stream (events at or below it are duplicates).
    seqs: HashMap<String, i64>,
    /// Stream positions reported with snapshots, for resuming streams that had no event since.
    positions: HashMap<String, i64>,
}

/// An event to emit once the lock is released.
type Emit = Box<dyn FnOnce() + Send>;

fn emit_to<K, V>(out: &mut Vec<Emit>, emitter: &Arc<ReplayEventEmitter<K, V>>, key: K, value: V)
where
    K: Send + 'static + std::hash::Hash + Eq + Clone,
    V: Send + Sync + 'static + Clone,
{
    let emitter = emitter.clone();
    out.push(Box::new(move || {
        emitter.emit(key, value);
    }));
}

/// The shared core behind [`Client`] and every handle.
pub(crate) struct ClientInner {
    this: Weak<ClientInner>,
    transport: OnceLock<Transport>,
    rest_base: String,
    /// The access token in use, for HTTP requests (media) beside the realtime connection.
    token: Mutex<String>,
    http: reqwest::Client,
    session: Mutex<Session>,
    cache: Mutex<Cache>,
    events: Mutex<Option<Arc<ClientEmitter>>>,
}

impl std::fmt::Debug for ClientInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInner").field("rest_base", &self.rest_base).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientInner {
    fn transport(&self) -> Result<&Transport> {
        self.transport.get().ok_or(ClientError::TransportUnavailable)
    }

    pub(crate) async fn call(&self, call: Call, retry: bool) -> Result<Value> {
        self.transport()?.call(call, retry).await
    }

    pub(crate) async fn call_as<T: DeserializeOwned>(&self, call: Call, retry: bool) -> Result<T> {
        self.transport()?.call_as(call, retry).await
    }

    pub(crate) fn rest_base(&self) -> &str {
        &self.rest_base
    }

    /// Sends an HTTP request to the server's REST API as the user (access token in `X-Twilio-Token`) and
    /// reads the JSON answer; Twilio-format errors become [`ClientError::Server`].
    pub(crate) async fn rest(
        &self,
        request: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Value> {
        let token = lock(&self.token).clone();
        let response = request(&self.http, &self.rest_base)
            .header("X-Twilio-Token", token)
            .send()
            .await
            .map_err(|_| ClientError::TransportUnavailable)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        if let (429, Some(retry_after)) = (status, retry_after) {
            return Err(ClientError::RateLimited {
                code: body["code"].as_u64().unwrap_or(20429) as u32,
                message: body["message"].as_str().unwrap_or("too many requests").to_string(),
                retry_after,
            });
        }
        Err(ClientError::Server {
            code: body["code"].as_u64().unwrap_or(u64::from(status)) as u32,
            message: body["message"].as_str().unwrap_or("request failed").to_string(),
            status,
        })
    }

    pub(crate) fn my_identity(&self) -> Option<String> {
        lock(&self.session).identity.clone()
    }

    pub(crate) fn limits(&self) -> ConversationLimits {
        lock(&self.session).limits.clone()
    }

    pub(crate) fn typing_timeout(&self) -> Duration {
        lock(&self.session).typing_timeout
    }

    pub(crate) fn set_typing_timeout(&self, timeout: Duration) {
        if !timeout.is_zero() {
            lock(&self.session).typing_timeout = timeout;
        }
    }

    pub(crate) fn client_emitter(&self) -> Arc<ClientEmitter> {
        lock(&self.events).clone().unwrap_or_else(|| Arc::new(ReplayEventEmitter::new()))
    }

    /// Forgets everything (breaking the reference cycles between handles, events and the cache).
    fn teardown(&self) {
        let mut cache = lock(&self.cache);
        let conversations = std::mem::take(&mut cache.conversations);
        let users = std::mem::take(&mut cache.users);
        drop(cache);
        let events = lock(&self.events).take();
        drop((conversations, users, events));
    }

    pub(crate) fn with_conversation<R>(&self, sid: &str, f: impl FnOnce(&ConvEntry) -> R) -> Option<R> {
        lock(&self.cache).conversations.get(sid).map(f)
    }

    pub(crate) fn inspect_conversation<R>(&self, sid: &str, f: impl FnOnce(Option<&ConvEntry>) -> R) -> R {
        f(lock(&self.cache).conversations.get(sid))
    }

    pub(crate) fn with_conversation_mut<R>(&self, sid: &str, f: impl FnOnce(&mut ConvEntry) -> R) -> Option<R> {
        lock(&self.cache).conversations.get_mut(sid).map(f)
    }

    /// A followed (joined or subscribed, not deleted) conversation matching `pred`.
    fn followed(&self, pred: impl Fn(&str, &ConvEntry) -> bool) -> Option<Conversation> {
        let this = self.this.upgrade()?;
        let cache = lock(&self.cache);
        cache
            .conversations
            .iter()
            .find(|(sid, c)| {
                !c.removed && (c.subscribed || c.data.status == ConversationStatus::Joined) && pred(sid, c)
            })
            .map(|(sid, _)| Conversation::handle(this.clone(), sid))
    }

    pub(crate) fn conversation_emitter(&self, sid: &str) -> Arc<ConversationEmitter> {
        lock(&self.cache).conversations.entry(sid.to_string()).or_insert_with(ConvEntry::new).emitter.clone()
    }

    pub(crate) fn participant_emitter(&self, conversation: &str, participant: &str) -> Arc<ParticipantEmitter> {
        self.with_conversation(conversation, |c| c.roster.get(participant).map(|p| p.emitter.clone()))
            .flatten()
            .unwrap_or_else(|| Arc::new(ReplayEventEmitter::new()))
    }

    pub(crate) fn message_emitter(&self, conversation: &str, message: &str) -> Arc<MessageEmitter> {
        self.with_conversation_mut(conversation, |c| {
            c.message_emitters.entry(message.to_string()).or_insert_with(|| Arc::new(ReplayEventEmitter::new())).clone()
        })
        .unwrap_or_else(|| Arc::new(ReplayEventEmitter::new()))
    }

    pub(crate) fn user_data(&self, identity: &str) -> Option<Arc<UserData>> {
        lock(&self.cache).users.get(identity).map(|u| u.data.clone())
    }

    pub(crate) fn user_emitter(&self, identity: &str) -> Arc<UserEmitter> {
        let cache = lock(&self.cache);
        match cache.users.get(identity) {
            Some(entry) => entry.emitter.clone(),
            None => Arc::new(ReplayEventEmitter::new()),
        }
    }

    /// Records a user, emitting `updated` when it changed.
    pub(crate) fn upsert_user(&self, info: &UserInfo) -> User {
        let mut out = Vec::new();
        let user = {
            let mut cache = lock(&self.cache);
            self.upsert_user_locked(&mut cache, info, &mut out)
        };
        run(out);
        user
    }

    fn upsert_user_locked(&self, cache: &mut Cache, info: &UserInfo, out: &mut Vec<Emit>) -> User {
        let this = self.strong();
        let data = Arc::new(UserData::from_info(info));
        let user = User::new(this, data.clone());
        match cache.users.get_mut(&info.identity) {
            Some(entry) => {
                let update_reasons = data.diff(&entry.data);
                entry.data = data;
                if !update_reasons.is_empty() {
                    let event = UserEvent::Updated { user: user.clone(), update_reasons: update_reasons.clone() };
                    emit_to(out, &entry.emitter, event.name(), event);
                    self.client_event(out, ClientEvent::UserUpdated { user: user.clone(), update_reasons });
                }
            }
            None => {
                cache
                    .users
                    .insert(info.identity.clone(), UserEntry { data, emitter: Arc::new(ReplayEventEmitter::new()) });
            }
        }
        user
    }

    fn strong(&self) -> Arc<ClientInner> {
        // `self` is only ever reached through an `Arc`, so the upgrade succeeds while a method runs.
        self.this.upgrade().unwrap_or_else(|| unreachable!("ClientInner used outside its Arc"))
    }

    fn client_event(&self, out: &mut Vec<Emit>, event: ClientEvent) {
        if let Some(emitter) = lock(&self.events).clone() {
            emit_to(out, &emitter, event.name(), event);
        }
    }

    /// Emits `event` on the conversation and its client-level copy.
    fn conversation_event(&self, out: &mut Vec<Emit>, entry: &ConvEntry, sid: &str, event: ConversationEvent) {
        let conversation = Conversation::handle(self.strong(), sid);
        if let Some(mirror) = ClientEvent::mirror(&event, &conversation) {
            emit_to(out, &entry.emitter, event.name(), event);
            self.client_event(out, mirror);
        }
    }

    /// Records a conversation as the server described it to the user.
    pub(crate) fn upsert_my_conversation(&self, my: &MyConversation) -> Conversation {
        let mut out = Vec::new();
        let sid = my.conversation.sid.clone();
        {
            let mut cache = lock(&self.cache);
            cache.positions.entry(sid.clone()).and_modify(|p| *p = (*p).max(my.last_seq)).or_insert(my.last_seq);
            let is_new = !cache.conversations.contains_key(&sid);
            let entry = cache.conversations.entry(sid.clone()).or_insert_with(ConvEntry::new);
            let old = entry.data.clone();
            entry.data.apply_info(&my.conversation);
            entry.data.apply_mine(&my.status, my.last_read_message_index, &my.notification_level);
            entry.removed = false;
            if entry.unread.is_none() {
                entry.unread = my.unread_messages_count;
            }
            let entry = &cache.conversations[&sid];
            self.after_change(&mut out, entry, &sid, &old, is_new);
        }
        run(out);
        Conversation::handle(self.strong(), &sid)
    }

    /// Emits what a change of a conversation's data means: `conversationAdded`, `conversationJoined` /
    /// `conversationLeft`, `updated`.
    fn after_change(
        &self,
        out: &mut Vec<Emit>,
        entry: &ConvEntry,
        sid: &str,
        old: &crate::conversation::ConversationData,
        is_new: bool,
    ) {
        let conversation = Conversation::handle(self.strong(), sid);
        if is_new {
            self.client_event(out, ClientEvent::ConversationAdded(conversation.clone()));
            if entry.data.status == ConversationStatus::Joined {
                self.client_event(out, ClientEvent::ConversationJoined(conversation));
            }
        } else {
            let update_reasons = entry.data.diff(old);
            if update_reasons.is_empty() {
                return;
            }
            if update_reasons.contains(&ConversationUpdateReason::Status) {
                let event = match entry.data.status {
                    ConversationStatus::Joined => ClientEvent::ConversationJoined(conversation.clone()),
                    ConversationStatus::NotParticipating => ClientEvent::ConversationLeft(conversation.clone()),
                };
                self.client_event(out, event);
            }
            self.conversation_event(out, entry, sid, ConversationEvent::Updated { conversation, update_reasons });
        }
        entry.changed.notify_waiters();
    }

    /// Applies a conversation's new shared state (an event, or a reply whose event is late).
    pub(crate) fn apply_conversation_info(&self, info: &ConversationInfo) {
        let mut out = Vec::new();
        {
            let mut cache = lock(&self.cache);
            self.apply_info_locked(&mut cache, info, &mut out);
        }
        run(out);
    }

    fn apply_info_locked(&self, cache: &mut Cache, info: &ConversationInfo, out: &mut Vec<Emit>) {
        let is_new = !cache.conversations.contains_key(&info.sid);
        let entry = cache.conversations.entry(info.sid.clone()).or_insert_with(ConvEntry::new);
        let old = entry.data.clone();
        entry.data.apply_info(info);
        self.after_change(out, entry, &info.sid, &old, is_new);
    }

    /// Changes the user's status locally (when the server's event is late).
    pub(crate) fn set_status(&self, sid: &str, status: ConversationStatus) {
        self.change(sid, |c| {
            c.data.status = status;
            if status != ConversationStatus::Joined {
                c.roster_loaded = false;
            }
        });
    }

    /// Changes the notification level locally (no event carries it).
    pub(crate) fn set_notification_level(&self, sid: &str, level: NotificationLevel) {
        self.change(sid, |c| c.data.notification_level = level);
    }

    fn change(&self, sid: &str, f: impl FnOnce(&mut ConvEntry)) {
        let mut out = Vec::new();
        {
            let mut cache = lock(&self.cache);
            let Some(entry) = cache.conversations.get_mut(sid) else { return };
            let old = entry.data.clone();
            f(entry);
            self.after_change(&mut out, entry, sid, &old, false);
        }
        run(out);
    }

    // ----- frames from the server -----

    fn apply_event(&self, cache: &mut Cache, event: EventFrame, out: &mut Vec<Emit>) {
        if cache.seqs.get(&event.stream).is_some_and(|last| event.seq <= *last) {
            return;
        }
        cache.seqs.insert(event.stream.clone(), event.seq);
        let user_stream = lock(&self.session).user_sid.clone();
        if user_stream.as_deref() == Some(event.stream.as_str()) {
            self.apply_user_event(cache, &event, out);
        } else {
            self.apply_conversation_event(cache, &event, out);
            if let Some(entry) = cache.conversations.get(&event.stream) {
                entry.changed.notify_waiters();
            }
        }
    }

    fn apply_user_event(&self, cache: &mut Cache, event: &EventFrame, out: &mut Vec<Emit>) {
        match event.kind.as_str() {
            EventKindName::USER_UPDATED | EventKindName::USER_ADDED => {
                if let Some(info) = decode::<UserInfo>(&event.data) {
                    self.upsert_user_locked(cache, &info, out);
                }
            }
            EventKindName::USER_CONVERSATION_JOINED => {
                let Some(change) = decode::<UserConversationChange>(&event.data) else { return };
                let sid = change.conversation.sid.clone();
                if let Some(joined_at) = change.joined_at_seq {
                    cache.positions.entry(sid.clone()).or_insert(joined_at - 1);
                }
                let is_new = !cache.conversations.contains_key(&sid);
                let entry = cache.conversations.entry(sid.clone()).or_insert_with(ConvEntry::new);
                let old = entry.data.clone();
                entry.data.apply_info(&change.conversation);
                entry.data.status = ConversationStatus::Joined;
                entry.data.last_read_message_index = change.participant.last_read_message_index;
                entry.removed = false;
                self.after_change(out, entry, &sid, &old, is_new);
            }
            EventKindName::USER_CONVERSATION_LEFT => {
                let Some(change) = decode::<UserConversationChange>(&event.data) else { return };
                let sid = change.conversation.sid.clone();
                // The server stops sending this conversation's events.
                cache.seqs.remove(&sid);
                cache.positions.remove(&sid);
                let Some(entry) = cache.conversations.get_mut(&sid) else { return };
                let old = entry.data.clone();
                entry.data.apply_info(&change.conversation);
                entry.data.status = ConversationStatus::NotParticipating;
                entry.roster_loaded = false;
                entry.subscribed = false;
                entry.typing = Default::default();
                self.after_change(out, entry, &sid, &old, false);
                // A deleted conversation's own `conversation.removed` event does not reach former participants
                // (the server stops forwarding the stream when they leave it), so ask whether it still exists.
                let this = self.strong();
                tokio::spawn(async move { this.check_removed(&sid).await });
            }
            _ => {}
        }
    }

    fn apply_conversation_event(&self, cache: &mut Cache, event: &EventFrame, out: &mut Vec<Emit>) {
        let sid = event.stream.as_str();
        let me = self.my_identity();
        match event.kind.as_str() {
            EventKindName::CONVERSATION_ADDED
            | EventKindName::CONVERSATION_UPDATED
            | EventKindName::CONVERSATION_STATE_UPDATED => {
                if let Some(info) = decode::<ConversationInfo>(&event.data) {
                    self.apply_info_locked(cache, &info, out);
                }
            }
            EventKindName::CONVERSATION_REMOVED => {
                cache.seqs.remove(sid);
                cache.positions.remove(sid);
                let Some(entry) = cache.conversations.get_mut(sid) else { return };
                if let Some(info) = decode::<ConversationInfo>(&event.data) {
                    entry.data.apply_info(&info);
                }
                self.mark_removed(entry, sid, out);
            }
            EventKindName::PARTICIPANT_ADDED | EventKindName::PARTICIPANT_UPDATED => {
                let Some(info) = decode::<ParticipantInfo>(&event.data) else { return };
                let Some(entry) = joined_entry(cache, sid) else { return };
                let data = Arc::new(ParticipantData::from_info(&info));
                let participant = Participant::new(self.strong(), data.clone());
                match entry.roster.get_mut(&data.sid) {
                    Some(existing) => {
                        let update_reasons = data.diff(&existing.data);
                        existing.data = data.clone();
                        if !update_reasons.is_empty() {
                            let emitter = existing.emitter.clone();
                            let own = ParticipantEvent::Updated {
                                participant: participant.clone(),
                                update_reasons: update_reasons.clone(),
                            };
                            emit_to(out, &emitter, own.name(), own);
                            let event = ConversationEvent::ParticipantUpdated { participant, update_reasons };
                            self.conversation_event(out, entry, sid, event);
                        }
                    }
                    None => {
                        entry.roster.insert(
                            data.sid.clone(),
                            ParticipantEntry { data: data.clone(), emitter: Arc::new(ReplayEventEmitter::new()) },
                        );
                        self.conversation_event(out, entry, sid, ConversationEvent::ParticipantJoined(participant));
                    }
                }
                if data.identity.is_some() && data.identity == me {
                    let old = entry.data.clone();
                    entry.data.last_read_message_index = data.last_read_message_index;
                    self.after_change(out, entry, sid, &old, false);
                }
            }
            EventKindName::PARTICIPANT_REMOVED => {
                let Some(info) = decode::<ParticipantInfo>(&event.data) else { return };
                let Some(entry) = joined_entry(cache, sid) else { return };
                let data = entry
                    .roster
                    .remove(&info.sid)
                    .map_or_else(|| Arc::new(ParticipantData::from_info(&info)), |p| p.data);
                entry.typing.stopped(&info.sid);
                let participant = Participant::new(self.strong(), data);
                self.conversation_event(out, entry, sid, ConversationEvent::ParticipantLeft(participant));
            }
            EventKindName::MESSAGE_ADDED => {
                let Some(info) = decode::<MessageInfo>(&event.data) else { return };
                let Some(entry) = joined_entry(cache, sid) else { return };
                let data = Arc::new(MessageData::from_info(&info));
                entry.remember(data.clone());
                let message = Message { client: self.strong(), data: data.clone() };
                self.conversation_event(out, entry, sid, ConversationEvent::MessageAdded(message));
                // A message ends its author's typing indicator.
                if let Some(author) = &data.author
                    && let Some(p) = entry.participant_by_identity(author).map(|p| (p.data.clone(), p.emitter.clone()))
                    && entry.typing.stopped(&p.0.sid)
                {
                    let participant = Participant::new(self.strong(), p.0);
                    let own = ParticipantEvent::TypingEnded(participant.clone());
                    emit_to(out, &p.1, own.name(), own);
                    self.conversation_event(out, entry, sid, ConversationEvent::TypingEnded(participant));
                }
                let newer = entry.data.last_message.as_ref().and_then(|m| m.index).is_none_or(|i| data.index > i);
                if newer {
                    let old = entry.data.clone();
                    entry.data.last_message =
                        Some(LastMessage { index: Some(data.index), date_created: data.date_created });
                    self.after_change(out, entry, sid, &old, false);
                }
            }
            EventKindName::MESSAGE_UPDATED | EventKindName::DELIVERY_UPDATED => {
                let Some(info) = decode::<MessageInfo>(&event.data) else { return };
                let Some(entry) = joined_entry(cache, sid) else { return };
                let data = Arc::new(MessageData::from_info(&info));
                let update_reasons = match entry.messages.get(&data.sid) {
                    Some(old) => data.diff(old),
                    None => vec![
                        MessageUpdateReason::Body,
                        MessageUpdateReason::Attributes,
                        MessageUpdateReason::DateUpdated,
                    ],
                };
                entry.remember(data.clone());
                let message = Message { client: self.strong(), data: data.clone() };
                if let Some(emitter) = entry.message_emitters.get(&data.sid) {
                    let own =
                        MessageEvent::Updated { message: message.clone(), update_reasons: update_reasons.clone() };
                    emit_to(out, emitter, own.name(), own);
                }
                self.conversation_event(out, entry, sid, ConversationEvent::MessageUpdated { message, update_reasons });
            }
            EventKindName::MESSAGE_REMOVED => {
                let Some(info) = decode::<MessageInfo>(&event.data) else { return };
                let Some(entry) = joined_entry(cache, sid) else { return };
                entry.messages.remove(&info.sid);
                entry.message_emitters.remove(&info.sid);
                let message = Message::new(self.strong(), MessageData::from_info(&info));
                self.conversation_event(out, entry, sid, ConversationEvent::MessageRemoved(message));
            }
            other => tracing::debug!(kind = other, "ignoring an event kind this SDK does not know"),
        }
    }

    fn mark_removed(&self, entry: &mut ConvEntry, sid: &str, out: &mut Vec<Emit>) {
        if entry.removed {
            return;
        }
        entry.removed = true;
        entry.subscribed = false;
        let conversation = Conversation::handle(self.strong(), sid);
        self.conversation_event(out, entry, sid, ConversationEvent::Removed(conversation));
        entry.changed.notify_waiters();
    }

    /// Emits `removed` if the conversation no longer exists.
    async fn check_removed(&self, sid: &str) {
        let result = self.call(Call::GetConversation { conversation: sid.to_string() }, true).await;
        if !matches!(&result, Err(err) if err.is_not_found()) {
            return;
        }
        let mut out = Vec::new();
        {
            let mut cache = lock(&self.cache);
            if let Some(entry) = cache.conversations.get_mut(sid) {
                self.mark_removed(entry, sid, &mut out);
            }
        }
        run(out);
    }

    fn apply_typing(&self, frame: TypingFrame, retry: bool) {
        let mut out = Vec::new();
        let mut load_roster = false;
        {
            let mut cache = lock(&self.cache);
            if self.my_identity().as_deref() == Some(frame.identity.as_str()) {
                return;
            }
            let Some(entry) = joined_entry(&mut cache, &frame.conversation_sid) else { return };
            let found = frame
                .participant_sid
                .as_deref()
                .and_then(|sid| entry.roster.get(sid))
                .or_else(|| entry.participant_by_identity(&frame.identity))
                .map(|p| (p.data.clone(), p.emitter.clone()));
            match found {
                Some((data, emitter)) => {
                    let generation = entry.typing.started(&data.sid);
                    let participant = Participant::new(self.strong(), data.clone());
                    let own = ParticipantEvent::TypingStarted(participant.clone());
                    emit_to(&mut out, &emitter, own.name(), own);
                    let sid = frame.conversation_sid.clone();
                    self.conversation_event(&mut out, entry, &sid, ConversationEvent::TypingStarted(participant));
                    let this = self.strong();
                    let timeout = Duration::from_millis(frame.timeout_ms);
                    let participant_sid = data.sid.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        this.typing_expired(&sid, &participant_sid, generation);
                    });
                }
                None => load_roster = retry && !entry.roster_loaded,
            }
        }
        run(out);
        if load_roster {
            let conversation = Conversation::handle(self.strong(), &frame.conversation_sid);
            let this = self.strong();
            tokio::spawn(async move {
                if conversation.get_participants().await.is_ok() {
                    this.apply_typing(frame, false);
                }
            });
        }
    }

    fn typing_expired(&self, conversation: &str, participant: &str, generation: u64) {
        let mut out = Vec::new();
        {
            let mut cache = lock(&self.cache);
            let Some(entry) = cache.conversations.get_mut(conversation) else { return };
            if !entry.typing.expired(participant, generation) {
                return;
            }
            let Some((data, emitter)) = entry.roster.get(participant).map(|p| (p.data.clone(), p.emitter.clone()))
            else {
                return;
            };
            let participant = Participant::new(self.strong(), data);
            let own = ParticipantEvent::TypingEnded(participant.clone());
            emit_to(&mut out, &emitter, own.name(), own);
            self.conversation_event(&mut out, entry, conversation, ConversationEvent::TypingEnded(participant));
        }
        run(out);
    }

    fn apply_unread(&self, cache: &mut Cache, frame: UnreadFrame, out: &mut Vec<Emit>) {
        let sid = frame.conversation_sid.as_str();
        let Some(entry) = cache.conversations.get_mut(sid) else { return };
        let old = entry.data.clone();
        entry.data.last_read_message_index = frame.last_read_message_index;
        self.after_change(out, entry, sid, &old, false);
        if entry.unread != frame.unread_messages_count {
            entry.unread = frame.unread_messages_count;
            let event = ConversationEvent::UnreadCountChanged(frame.unread_messages_count);
            self.conversation_event(out, entry, sid, event);
        }
        entry.changed.notify_waiters();
    }

    /// After a reconnect: catch up with membership changes made while offline (the protocol does not tell
    /// the user stream's position at connect, so its missed events cannot always be replayed), and follow
    /// again the conversations the user watches without participating.
    fn resync(&self) {
        let watched: Vec<(String, Option<i64>)> = {
            let cache = lock(&self.cache);
            cache
                .conversations
                .iter()
                .filter(|(_, c)| c.subscribed && !c.removed && c.data.status != ConversationStatus::Joined)
                .map(|(sid, _)| (sid.clone(), resume_position(&cache, sid)))
                .collect()
        };
        let client = Client::from_inner(self.strong());
        tokio::spawn(async move {
            if let Err(err) = client.load_my_conversations().await {
                tracing::debug!(%err, "could not reload the user's conversations after reconnecting");
            }
            for (sid, after) in watched {
                if let Err(err) = client.follow(&sid, after).await {
                    tracing::debug!(%err, conversation = %sid, "could not follow a conversation again");
                }
            }
        });
    }
}

fn resume_position(cache: &Cache, stream: &str) -> Option<i64> {
    match (cache.seqs.get(stream), cache.positions.get(stream)) {
        (Some(a), Some(b)) => Some((*a).max(*b)),
        (a, b) => a.or(b).copied(),
    }
}

/// The entry of a conversation the user participates in: message and participant events of others are not
/// for non-participants, even if a server sends them.
fn joined_entry<'a>(cache: &'a mut Cache, sid: &str) -> Option<&'a mut ConvEntry> {
    cache.conversations.get_mut(sid).filter(|c| c.data.status == ConversationStatus::Joined)
}

fn decode<T: DeserializeOwned>(value: &Value) -> Option<T> {
    match serde_json::from_value(value.clone()) {
        Ok(decoded) => Some(decoded),
        Err(err) => {
            tracing::debug!(%err, "ignoring event data this SDK does not understand");
            None
        }
    }
}

fn run(out: Vec<Emit>) {
    for emit in out {
        emit();
    }
}

impl Handler for ClientInner {
    fn on_frame(&self, frame: ServerFrame) {
        let mut out = Vec::new();
        match frame {
            ServerFrame::Event(event) => {
                let mut cache = lock(&self.cache);
                self.apply_event(&mut cache, event, &mut out);
            }
            ServerFrame::Unread(unread) => {
                let mut cache = lock(&self.cache);
                self.apply_unread(&mut cache, unread, &mut out);
            }
            ServerFrame::Typing(typing) => self.apply_typing(typing, true),
            ServerFrame::TokenAboutToExpire { expires_at } => {
                self.client_event(&mut out, ClientEvent::TokenAboutToExpire { expires_at });
            }
            _ => {}
        }
        run(out);
    }

    fn on_state(&self, state: ConnectionState) {
        let mut out = Vec::new();
        self.client_event(&mut out, ClientEvent::ConnectionStateChanged(state));
        run(out);
    }

    fn on_connected(&self, connected: &Connected, first: bool) {
        {
            let mut session = lock(&self.session);
            session.identity = Some(connected.identity.clone());
            session.user_sid = connected.user.as_ref().map(|user| user.sid.clone());
            if connected.typing_timeout_ms > 0 {
                session.typing_timeout = Duration::from_millis(connected.typing_timeout_ms);
            }
            session.limits = connected.limits.clone();
        }
        if let Some(user) = &connected.user {
            self.upsert_user(user);
        }
        if !first {
            self.resync();
        }
    }

    fn on_error(&self, reason: &str) {
        let mut out = Vec::new();
        self.client_event(&mut out, ClientEvent::ConnectionError { reason: reason.to_string() });
        run(out);
    }

    fn on_token_expired(&self) {
        let mut out = Vec::new();
        self.client_event(&mut out, ClientEvent::TokenExpired);
        run(out);
    }

    fn resume(&self) -> BTreeMap<String, i64> {
        let cache = lock(&self.cache);
        let mut streams: BTreeMap<String, i64> = cache.positions.clone().into_iter().collect();
        for (stream, seq) in &cache.seqs {
            let entry = streams.entry(stream.clone()).or_insert(*seq);
            *entry = (*entry).max(*seq);
        }
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_links_come_from_the_realtime_url() {
        assert_eq!(rest_base("ws://127.0.0.1:8088/v1/realtime"), "http://127.0.0.1:8088");
        assert_eq!(rest_base("wss://chat.example.com/v1/realtime"), "https://chat.example.com");
    }
}
