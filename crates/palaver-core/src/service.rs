//! [`Palaver`]: the operations the transports call. It checks the rules that need no stored state, chooses
//! new SIDs and timestamps, and hands the change to the [`Store`], which applies it atomically together with
//! its event.

use std::sync::Arc;

use palaver_api::sid::{
    ApiKeySid, ConversationSid, MessageSid, MessagingServiceSid, ParticipantSid, RoleSid, ServiceSid, UserSid,
};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::error::{Error, InvalidInput, Limit, RateScope, Result};
use crate::event::Origin;
use crate::input::*;
use crate::model::*;
use crate::store::*;
use crate::webhook::*;

/// Settings of the domain that an operator may change.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Enforce Twilio's timer minimums (1 minute inactive, 10 minutes closed). Tests turn this off to use
    /// timers of seconds.
    pub enforce_timer_minimums: bool,
    /// How long a typing indicator lasts without being repeated.
    pub typing_timeout: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { enforce_timer_minimums: true, typing_timeout: std::time::Duration::from_secs(5) }
    }
}

/// Which of a conversation's two timers a duration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Active → inactive.
    Inactive,
    /// → closed.
    Closed,
}

/// A new conversation as the caller describes it.
#[derive(Debug, Clone, Default)]
pub struct CreateConversation {
    /// Display name.
    pub friendly_name: Option<FriendlyName>,
    /// Unique name.
    pub unique_name: Option<UniqueName>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Kept for compatibility.
    pub messaging_service_sid: Option<MessagingServiceSid>,
    /// Initial state; `active` when not given.
    pub state: Option<ConversationState>,
    /// Inactive timer; the account default when not given.
    pub inactive_after: Option<TimerDuration>,
    /// Closed timer; the account default when not given.
    pub closed_after: Option<TimerDuration>,
    /// Default email sender address.
    pub email_address: Option<String>,
    /// Default email sender name.
    pub email_name: Option<String>,
    /// Creation date override (history import).
    pub date_created: Option<OffsetDateTime>,
    /// Update date override.
    pub date_updated: Option<OffsetDateTime>,
    /// Identity of the creating chat user, if any.
    pub created_by: Option<String>,
}

/// Who a new participant is.
#[derive(Debug, Clone)]
pub enum ParticipantKind {
    /// A chat user.
    Chat(Identity),
    /// An SMS, WhatsApp or email address.
    NonChat(MessagingBinding),
}

/// A new participant as the caller describes it.
#[derive(Debug, Clone)]
pub struct AddParticipant {
    /// Chat or not.
    pub kind: ParticipantKind,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Conversation role.
    pub role_sid: Option<RoleSid>,
    /// Creation date override.
    pub date_created: Option<OffsetDateTime>,
    /// Update date override.
    pub date_updated: Option<OffsetDateTime>,
}

/// A new message as the caller describes it.
#[derive(Debug, Clone, Default)]
pub struct PostMessage {
    /// Author; `system` when not given.
    pub author: Option<String>,
    /// Text.
    pub body: Option<String>,
    /// Email subject.
    pub subject: Option<String>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Content template.
    pub content_sid: Option<String>,
    /// Creation date override (history import).
    pub date_created: Option<OffsetDateTime>,
    /// Update date override.
    pub date_updated: Option<OffsetDateTime>,
    /// Retries with the same key return the first message instead of storing another.
    pub idempotency_key: Option<String>,
    /// Uploaded media to attach.
    pub media: Vec<palaver_api::sid::MediaSid>,
}

/// A new user as the caller describes it.
#[derive(Debug, Clone)]
pub struct CreateUser {
    /// Identity.
    pub identity: Identity,
    /// Display name.
    pub friendly_name: Option<FriendlyName>,
    /// Application data.
    pub attributes: Option<Attributes>,
    /// Service role.
    pub role_sid: Option<RoleSid>,
}

/// A new conversation-scoped webhook as the caller describes it.
#[derive(Debug, Clone)]
pub struct CreateConversationWebhook {
    /// What it does.
    pub target: ScopedTarget,
    /// Where requests go (`webhook` and `trigger`).
    pub url: Option<String>,
    /// How requests are sent; POST when not given.
    pub method: Option<HookMethod>,
    /// Events that fire (`webhook`).
    pub filters: Vec<WebhookEventType>,
    /// Keywords that fire (`trigger`).
    pub triggers: Vec<String>,
    /// Studio flow (`studio`).
    pub flow_sid: Option<String>,
    /// Replay from this message index (`studio`).
    pub replay_after: Option<i64>,
}

/// Checks that a webhook URL is an absolute http(s) URL of sensible length.
///
/// # Errors
/// [`InvalidInput`] naming `field`.
pub fn validate_webhook_url(field: &'static str, url: &str) -> Result<(), InvalidInput> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let host = url.split_once("://").map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default());
    if !scheme_ok || host.is_none_or(str::is_empty) {
        return Err(InvalidInput::new(field, format!("'{url}' is not an absolute http or https URL")));
    }
    if url.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(InvalidInput::new(field, format!("is limited to {MAX_WEBHOOK_URL_CHARS} characters")));
    }
    Ok(())
}

/// The events a conversation-scoped webhook can subscribe to.
const SCOPED_FILTERS: &[WebhookEventType] = &[
    WebhookEventType::OnMessageAdded,
    WebhookEventType::OnMessageUpdated,
    WebhookEventType::OnMessageRemoved,
    WebhookEventType::OnConversationUpdated,
    WebhookEventType::OnConversationRemoved,
    WebhookEventType::OnConversationStateUpdated,
    WebhookEventType::OnParticipantAdded,
    WebhookEventType::OnParticipantUpdated,
    WebhookEventType::OnParticipantRemoved,
    WebhookEventType::OnDeliveryUpdated,
];

fn validate_scoped_webhook(hook: &ConversationWebhook) -> Result<(), InvalidInput> {
    match hook.target {
        ScopedTarget::Studio => {
            return Err(InvalidInput::new(
                "Target",
                "Studio flows are not available in Palaver; use target webhook or trigger",
            ));
        }
        ScopedTarget::Webhook => {
            if let Some(bad) = hook.filters.iter().find(|f| !SCOPED_FILTERS.contains(f)) {
                return Err(InvalidInput::new(
                    "Configuration.Filters",
                    format!("'{}' cannot be used on a conversation-scoped webhook", bad.as_str()),
                ));
            }
        }
        ScopedTarget::Trigger => {
            if hook.triggers.iter().all(|t| t.trim().is_empty()) {
                return Err(InvalidInput::new("Configuration.Triggers", "a trigger needs at least one keyword"));
            }
        }
    }
    if let Some(flow) = &hook.flow_sid {
        check_studio_flow_sid("Configuration.FlowSid", flow)?;
    }
    match &hook.url {
        Some(url) => validate_webhook_url("Configuration.Url", url),
        None => Err(InvalidInput::new("Configuration.Url", "is required for this target")),
    }
}

/// Checks that `raw` has the form of a Studio flow SID (`FW` and 32 hex digits). Palaver runs no Studio flows,
/// so the SID is only kept and shown.
pub(crate) fn check_studio_flow_sid(field: &'static str, raw: &str) -> Result<(), InvalidInput> {
    if palaver_api::sid::has_sid_shape(raw, "FW") {
        Ok(())
    } else {
        Err(InvalidInput::new(field, format!("'{raw}' is not a Studio flow SID (FW and 32 hex digits)")))
    }
}

/// Someone is typing: an ephemeral notice, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingNotice {
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// Who is typing.
    pub identity: String,
    /// Their participant.
    pub participant_sid: ParticipantSid,
}

/// The domain's entry point: one per server, shared by every transport.
#[derive(Debug, Clone)]
pub struct Palaver {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    timers_changed: Arc<Notify>,
    feed: Arc<crate::feed::EventFeed>,
    typing: tokio::sync::broadcast::Sender<Arc<TypingNotice>>,
    /// Bumped whenever who-may-do-what could have changed (roles, role assignments, membership, unique names),
    /// so sessions can cache permission checks and know when to drop them.
    access_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped whenever a webhook setting changes, so the dispatcher knows to reload them.
    webhook_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Asked before SDK actions, when the server has a way to call pre-event webhooks.
    pre_hooks: Option<Arc<dyn PreEventHooks>>,
    /// The other nodes of the cluster, when there are any.
    peers: Option<Arc<dyn crate::cluster::Peers>>,
    /// Who the calls through this handle act for; recorded on every event they cause.
    origin: Origin,
    /// How many changes clients may make per second, per conversation and per service.
    rates: Arc<crate::limits::ActionRates>,
}

impl Palaver {
    /// Builds the domain over a store and a clock.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
            timers_changed: Arc::new(Notify::new()),
            feed: Arc::new(crate::feed::EventFeed::new()),
            typing: tokio::sync::broadcast::channel(1024).0,
            access_epoch: Arc::default(),
            webhook_epoch: Arc::default(),
            pre_hooks: None,
            peers: None,
            origin: Origin::system(),
            rates: Arc::default(),
        }
    }

    /// Enforces `rates` on the changes clients make from now on (none are enforced by default). Set it before
    /// handing out clones: they keep the rates they were cloned with.
    pub fn with_action_rates(mut self, rates: crate::limits::ActionRates) -> Self {
        self.rates = Arc::new(rates);
        self
    }

    /// The action rates in force (their refusal counts feed the server's metrics).
    pub fn action_rates(&self) -> &crate::limits::ActionRates {
        &self.rates
    }

    /// Whether changes made through this handle count against the action rates: those of REST callers and SDK
    /// users, not Palaver's own (timers) nor inbound channel traffic, whose gateways do not retry a refusal.
    fn rate_limited(&self) -> bool {
        matches!(self.origin.source, crate::event::Source::Api | crate::event::Source::Sdk)
    }

    /// Counts one change to `conv` against the per-conversation rate.
    fn charge_conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<()> {
        let Some(rate) = self.rates.conversation.as_ref().filter(|_| self.rate_limited()) else { return Ok(()) };
        // A unique name is counted apart from its SID: resolving it first would cost a read per change.
        let key = match conv {
            ConversationRef::Sid(sid) => sid.to_string(),
            ConversationRef::UniqueName(name) => format!("{service}/{name}"),
        };
        rate.take(&key).map_err(|retry_after| Error::RateLimited { scope: RateScope::Conversation, retry_after })
    }

    /// Counts one change in `service` against the per-service rate.
    fn charge_service(&self, service: &ServiceSid) -> Result<()> {
        let Some(rate) = self.rates.service.as_ref().filter(|_| self.rate_limited()) else { return Ok(()) };
        rate.take(service.as_str()).map_err(|retry_after| Error::RateLimited { scope: RateScope::Service, retry_after })
    }

    /// Offers an action to the pre-event webhooks. Only SDK actions are offered (REST actions never fire
    /// pre-event hooks, as in Twilio); without a configured caller everything is allowed.
    ///
    /// # Errors
    /// Storage failures only; a refusal is the [`PreHookVerdict::Reject`] answer.
    pub async fn ask_pre_hooks(
        &self,
        service: &ServiceSid,
        event_type: WebhookEventType,
        params: Vec<(String, String)>,
    ) -> Result<PreHookVerdict> {
        match &self.pre_hooks {
            Some(hooks) if self.origin.source == crate::event::Source::Sdk => {
                hooks.ask(service, event_type, params).await
            }
            _ => Ok(PreHookVerdict::Allow(None)),
        }
    }

    /// Sets how pre-event webhooks are called (the server's HTTP client).
    pub fn with_pre_hooks(mut self, hooks: Arc<dyn PreEventHooks>) -> Self {
        self.pre_hooks = Some(hooks);
        self
    }

    /// Tells `peers` (the other nodes of a cluster) about typing and stale caches from now on. Set it before
    /// handing out clones: they keep the peers they were cloned with.
    pub fn with_peers(mut self, peers: Arc<dyn crate::cluster::Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Another node changed webhook settings: drops what this node cached of them.
    pub fn peer_webhooks_changed(&self) {
        self.webhook_epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Another node changed who may do what: drops every cached permission check of this node.
    pub fn peer_access_changed(&self) {
        self.access_epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Someone on another node is typing: tells this node's sessions (and not the peers again).
    pub fn peer_typing(&self, notice: TypingNotice) {
        let _ = self.typing.send(Arc::new(notice));
    }

    /// A handle whose changes are recorded as made by `origin` (shares everything else with `self`).
    pub fn acting_as(&self, origin: Origin) -> Self {
        Self { origin, ..self.clone() }
    }

    /// Who this handle acts for.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The webhook settings epoch: changes whenever a webhook setting does.
    pub fn webhook_epoch(&self) -> u64 {
        self.webhook_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The counter behind [`Palaver::webhook_epoch`], for caches that must notice setting changes.
    pub fn webhook_epoch_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.webhook_epoch.clone()
    }

    fn webhooks_changed(&self) {
        self.peer_webhooks_changed();
        if let Some(peers) = &self.peers {
            peers.webhooks_changed();
        }
    }

    /// The current access epoch (see [`Palaver::access_changed`]).
    pub fn access_epoch(&self) -> u64 {
        self.access_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Invalidates every cached permission check.
    fn access_changed(&self) {
        self.peer_access_changed();
        if let Some(peers) = &self.peers {
            peers.access_changed();
        }
    }

    /// The live feed of stored events.
    pub fn feed(&self) -> &Arc<crate::feed::EventFeed> {
        &self.feed
    }

    /// Typing notices, as they happen.
    pub fn typing_notices(&self) -> tokio::sync::broadcast::Receiver<Arc<TypingNotice>> {
        self.typing.subscribe()
    }

    /// Publishes a typing notice.
    pub fn publish_typing(&self, notice: TypingNotice) {
        if let Some(peers) = &self.peers {
            peers.typing(&notice);
        }
        let _ = self.typing.send(Arc::new(notice));
    }

    /// How long a typing indicator lasts.
    pub fn typing_timeout(&self) -> std::time::Duration {
        self.settings.typing_timeout
    }

    /// The store, for components that read the event log directly.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Signalled whenever a timer may now fire earlier than before.
    pub fn timers_changed(&self) -> &Arc<Notify> {
        &self.timers_changed
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Parses a timer duration, enforcing the minimum for its kind when configured to.
    ///
    /// # Errors
    /// When the text is not an ISO-8601 duration or is below the minimum.
    pub fn parse_timer(&self, field: &'static str, raw: &str, kind: TimerKind) -> Result<TimerDuration, InvalidInput> {
        let minimum = match (self.settings.enforce_timer_minimums, kind) {
            (false, _) => 1,
            (true, TimerKind::Inactive) => 60,
            (true, TimerKind::Closed) => 600,
        };
        TimerDuration::parse(field, raw, minimum)
    }

    /// Creates the default service on first start and returns the account configuration.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn bootstrap(&self) -> Result<AccountConfig> {
        let config = self
            .store
            .bootstrap(NewService {
                sid: ServiceSid::generate(),
                friendly_name: "Default Conversations Service".into(),
                now: self.now(),
            })
            .await?;
        self.timers_changed.notify_one();
        Ok(config)
    }

    /// The account configuration.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn account_config(&self) -> Result<AccountConfig> {
        self.store.account_config().await
    }

    /// Changes the account configuration; a new default service must exist.
    ///
    /// # Errors
    /// When the default service does not exist.
    pub async fn update_account_config(&self, patch: AccountConfigPatch) -> Result<AccountConfig> {
        if let Some(service) = &patch.default_service_sid {
            self.store.get_service(service).await?;
        }
        self.store.update_account_config(patch).await
    }

    /// The service `/v1/Conversations` works in.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn default_service(&self) -> Result<ServiceSid> {
        Ok(self.store.account_config().await?.default_service_sid)
    }

    /// Creates a service with the default roles.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn create_service(&self, friendly_name: FriendlyName) -> Result<Service> {
        self.store
            .create_service(NewService {
                sid: ServiceSid::generate(),
                friendly_name: friendly_name.into_string(),
                now: self.now(),
            })
            .await
    }

    /// One service.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist.
    pub async fn service(&self, sid: &ServiceSid) -> Result<Service> {
        self.store.get_service(sid).await
    }

    /// Services.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_services(&self, page: PageQuery) -> Result<Page<Service>> {
        self.store.list_services(page).await
    }

    /// Deletes a service and everything in it.
    ///
    /// # Errors
    /// When it does not exist or is the default service.
    pub async fn delete_service(&self, sid: &ServiceSid) -> Result<()> {
        self.store.delete_service(sid, self.now(), &self.origin).await?;
        self.access_changed();
        Ok(())
    }

    /// Changes a service's configuration; the roles must exist in the service and be of the right kind.
    ///
    /// # Errors
    /// When the service or a role does not exist, or a role has the wrong kind.
    pub async fn update_service_config(&self, sid: &ServiceSid, mut patch: ServiceConfigPatch) -> Result<Service> {
        for (role, kind, field) in [
            (&patch.creator_role_sid, RoleKind::Conversation, "DefaultConversationCreatorRoleSid"),
            (&patch.participant_role_sid, RoleKind::Conversation, "DefaultConversationRoleSid"),
            (&patch.user_role_sid, RoleKind::Service, "DefaultChatServiceRoleSid"),
        ] {
            if let Some(role) = role {
                self.check_role(sid, role, kind, field).await?;
            }
        }
        patch.now = Some(self.now());
        let updated = self.store.update_service_config(sid, patch).await?;
        self.access_changed();
        Ok(updated)
    }

    async fn check_role(
        &self,
        service: &ServiceSid,
        role: &RoleSid,
        kind: RoleKind,
        field: &'static str,
    ) -> Result<()> {
        // The role is a parameter of the request, not the resource the path names: one the service lacks is
        // bad input, not a missing resource.
        let found = match self.store.get_role(service, role).await {
            Err(Error::NotFound { .. }) => {
                return Err(InvalidInput::new(field, format!("the service has no role {role}")).into());
            }
            found => found?,
        };
        if found.kind != kind {
            return Err(InvalidInput::new(
                field,
                format!("role {role} is a {} role, not a {} role", found.kind.as_str(), kind.as_str()),
            )
            .into());
        }
        Ok(())
    }

    fn build_conversation(
        &self,
        service: &ServiceSid,
        config: &AccountConfig,
        create: CreateConversation,
        now: OffsetDateTime,
    ) -> Conversation {
        let state = create.state.unwrap_or(ConversationState::Active);
        let inactive_after = create.inactive_after.or(config.default_inactive_timer);
        let closed_after = create.closed_after.or(config.default_closed_timer);
        let timers = arm_timers(state, inactive_after, closed_after, now);
        let date_created = create.date_created.unwrap_or(now);
        Conversation {
            sid: ConversationSid::generate(),
            service_sid: service.clone(),
            friendly_name: create.friendly_name.map(FriendlyName::into_string),
            unique_name: create.unique_name.map(|u| u.as_str().to_string()),
            attributes: create.attributes.unwrap_or_default(),
            messaging_service_sid: create
                .messaging_service_sid
                .or_else(|| config.default_messaging_service_sid.clone()),
            state,
            state_updated: now,
            timers,
            created_by: create.created_by,
            email_binding: EmailBinding { address: create.email_address, name: create.email_name },
            date_created,
            date_updated: create.date_updated.unwrap_or(date_created.max(now)),
            last_message_index: None,
            last_message_date: None,
            messages_count: 0,
            next_message_index: 0,
            participants_count: 0,
        }
    }

    /// Creates a conversation.
    ///
    /// # Errors
    /// When the service does not exist or the unique name is taken.
    pub async fn create_conversation(&self, service: &ServiceSid, create: CreateConversation) -> Result<Conversation> {
        Ok(self.create_conversation_with_participants(service, create, Vec::new()).await?.0)
    }

    /// Creates a conversation together with up to ten participants, atomically.
    ///
    /// # Errors
    /// As [`Palaver::create_conversation`], plus participant errors and [`Limit::ParticipantsPerRequest`].
    pub async fn create_conversation_with_participants(
        &self,
        service: &ServiceSid,
        create: CreateConversation,
        participants: Vec<AddParticipant>,
    ) -> Result<(Conversation, Vec<Participant>)> {
        self.charge_service(service)?;
        if participants.len() > MAX_PARTICIPANTS_PER_REQUEST {
            return Err(Error::LimitExceeded(Limit::ParticipantsPerRequest(MAX_PARTICIPANTS_PER_REQUEST)));
        }
        for p in &participants {
            if let Some(role) = &p.role_sid {
                self.check_role(service, role, RoleKind::Conversation, "RoleSid").await?;
            }
        }
        self.store.get_service(service).await?;
        let config = self.store.account_config().await?;
        let now = self.now();
        let conversation = self.build_conversation(service, &config, create, now);
        let new_participants = participants.into_iter().map(|p| new_participant(p, now)).collect();
        let created =
            self.store.create_conversation(NewConversation { conversation }, new_participants, &self.origin).await?;
        self.timers_changed.notify_one();
        Ok(created)
    }

    /// One conversation.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist in the service.
    pub async fn conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<Conversation> {
        self.store.get_conversation(service, conv).await
    }

    /// Conversations.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_conversations(
        &self,
        service: &ServiceSid,
        filter: ConversationFilter,
        page: PageQuery,
    ) -> Result<Page<Conversation>> {
        self.store.list_conversations(service, filter, page).await
    }

    /// Changes a conversation. Timers given are counted from now.
    ///
    /// # Errors
    /// When it does not exist, is closed, or the unique name is taken.
    pub async fn update_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        mut patch: ConversationPatch,
    ) -> Result<Conversation> {
        self.charge_conversation(service, conv)?;
        patch.now = Some(self.now());
        let renames = patch.unique_name.is_some();
        let updated = self.store.update_conversation(service, conv, patch, &self.origin).await?;
        if renames {
            self.access_changed();
        }
        self.timers_changed.notify_one();
        Ok(updated)
    }

    /// Deletes a conversation.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<()> {
        self.charge_service(service)?;
        self.store.delete_conversation(service, conv, self.now(), &self.origin).await?;
        self.access_changed();
        Ok(())
    }

    /// Adds a participant.
    ///
    /// # Errors
    /// When the conversation does not exist or is closed, the participant exists, or a limit is reached.
    pub async fn add_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        add: AddParticipant,
    ) -> Result<Participant> {
        self.charge_conversation(service, conv)?;
        if let Some(role) = &add.role_sid {
            self.check_role(service, role, RoleKind::Conversation, "RoleSid").await?;
        }
        let new = new_participant(add, self.now());
        self.store.add_participant(service, conv, new, &self.origin).await
    }

    /// One participant.
    ///
    /// # Errors
    /// When the conversation or participant does not exist.
    pub async fn participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
    ) -> Result<Participant> {
        self.store.get_participant(service, conv, p).await
    }

    /// Participants.
    ///
    /// # Errors
    /// When the conversation does not exist.
    pub async fn list_participants(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Participant>> {
        self.store.list_participants(service, conv, page).await
    }

    /// Changes a participant.
    ///
    /// # Errors
    /// When it does not exist or the conversation is closed.
    pub async fn update_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
        mut patch: ParticipantPatch,
    ) -> Result<Participant> {
        self.charge_conversation(service, conv)?;
        if let Some(role) = &patch.role_sid {
            self.check_role(service, role, RoleKind::Conversation, "RoleSid").await?;
        }
        let now = self.now();
        patch.now = Some(now);
        if let Some(Some(index)) = patch.last_read_message_index {
            if index < 0 {
                return Err(InvalidInput::new("LastReadMessageIndex", "must not be negative").into());
            }
            if patch.last_read_timestamp.is_none() {
                patch.last_read_timestamp = Some(Some(now));
            }
        }
        if patch.identity.is_some() && patch.new_user_sid.is_none() {
            patch.new_user_sid = Some(UserSid::generate());
        }
        let access_changes = patch.role_sid.is_some() || patch.identity.is_some();
        let updated = self.store.update_participant(service, conv, p, patch, &self.origin).await?;
        if access_changes {
            self.access_changed();
        }
        Ok(updated)
    }

    /// Removes a participant.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn remove_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
    ) -> Result<()> {
        self.charge_conversation(service, conv)?;
        self.store.remove_participant(service, conv, p, self.now(), &self.origin).await?;
        self.access_changed();
        Ok(())
    }

    /// Appends a message; returns it with its index.
    ///
    /// # Errors
    /// When the conversation does not exist or is closed, or the body is too long for a participant's channel.
    pub async fn post_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        post: PostMessage,
    ) -> Result<Message> {
        self.charge_conversation(service, conv)?;
        if let Some(body) = &post.body {
            if body.len() > MAX_CHAT_BODY_BYTES {
                return Err(InvalidInput::new(
                    "Body",
                    format!("{} bytes is more than the limit of {MAX_CHAT_BODY_BYTES} bytes", body.len()),
                )
                .into());
            }
            if body.chars().count() > MAX_SMS_BODY_CHARS && self.has_phone_participants(service, conv).await? {
                return Err(InvalidInput::new(
                    "Body",
                    format!("messages to SMS and WhatsApp participants are limited to {MAX_SMS_BODY_CHARS} characters"),
                )
                .into());
            }
        }
        if let Some(subject) = &post.subject
            && subject.chars().count() > MAX_SUBJECT_CHARS
        {
            return Err(InvalidInput::new("Subject", format!("is limited to {MAX_SUBJECT_CHARS} characters")).into());
        }
        let limits = crate::media::MediaLimits::default();
        if post.media.len() > limits.count as usize {
            return Err(InvalidInput::new(
                "MediaSid",
                format!("too many media attachments in the message ({} > {})", post.media.len(), limits.count),
            )
            .into());
        }
        let now = self.now();
        let new = NewMessage {
            sid: MessageSid::generate(),
            author: post.author.unwrap_or_else(|| "system".to_string()),
            body: post.body,
            subject: post.subject,
            attributes: post.attributes.unwrap_or_default(),
            content_sid: post.content_sid,
            date_created: post.date_created.unwrap_or(now),
            date_updated: post.date_updated,
            idempotency_key: post.idempotency_key,
            media: post.media,
            max_media_bytes: limits.total_bytes(),
            now,
        };
        self.store.add_message(service, conv, new, &self.origin).await
    }

    async fn has_phone_participants(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<bool> {
        let mut cursor = None;
        loop {
            let page =
                self.store.list_participants(service, conv, PageQuery { size: 100, cursor, descending: false }).await?;
            if page.items.iter().any(|p| p.binding.as_ref().is_some_and(|b| b.kind != BindingKind::Email)) {
                return Ok(true);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(false),
            }
        }
    }

    /// One message.
    ///
    /// # Errors
    /// When the conversation or message does not exist.
    pub async fn message(&self, service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<Message> {
        self.store.get_message(service, conv, sid).await
    }

    /// Messages.
    ///
    /// # Errors
    /// When the conversation does not exist.
    pub async fn list_messages(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Message>> {
        self.store.list_messages(service, conv, page).await
    }

    /// A page of messages and whether any message lies before its first item (see
    /// [`Store::list_messages_and_lead`]).
    ///
    /// # Errors
    /// When the conversation does not exist.
    pub async fn list_messages_and_lead(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<(Page<Message>, bool)> {
        self.store.list_messages_and_lead(service, conv, page).await
    }

    /// Changes a message.
    ///
    /// # Errors
    /// When it does not exist, the conversation is closed, or the body is too long.
    pub async fn update_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        mut patch: MessagePatch,
    ) -> Result<Message> {
        self.charge_conversation(service, conv)?;
        if let Some(body) = &patch.body
            && body.len() > MAX_CHAT_BODY_BYTES
        {
            return Err(InvalidInput::new("Body", format!("is limited to {MAX_CHAT_BODY_BYTES} bytes")).into());
        }
        let now = self.now();
        patch.now = Some(now);
        if patch.date_updated.is_none() {
            patch.date_updated = Some(now);
        }
        self.store.update_message(service, conv, sid, patch, &self.origin).await
    }

    /// Deletes a message.
    ///
    /// # Errors
    /// When it does not exist or the conversation is closed.
    pub async fn delete_message(&self, service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<()> {
        self.charge_conversation(service, conv)?;
        self.store.delete_message(service, conv, sid, self.now(), &self.origin).await
    }

    /// Creates a user.
    ///
    /// # Errors
    /// When the identity is taken.
    pub async fn create_user(&self, service: &ServiceSid, create: CreateUser) -> Result<User> {
        self.charge_service(service)?;
        if let Some(role) = &create.role_sid {
            self.check_role(service, role, RoleKind::Service, "RoleSid").await?;
        }
        let new = NewUser {
            sid: UserSid::generate(),
            identity: create.identity,
            friendly_name: create.friendly_name.map(FriendlyName::into_string),
            attributes: create.attributes.unwrap_or_default(),
            role_sid: create.role_sid,
            now: self.now(),
        };
        self.store.create_user(service, new, &self.origin).await
    }

    /// One user.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn user(&self, service: &ServiceSid, user: &UserRef) -> Result<User> {
        self.store.get_user(service, user).await
    }

    /// Users.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_users(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<User>> {
        self.store.list_users(service, page).await
    }

    /// Changes a user.
    ///
    /// # Errors
    /// When it does not exist or the role is not a service role.
    pub async fn update_user(&self, service: &ServiceSid, user: &UserRef, mut patch: UserPatch) -> Result<User> {
        self.charge_service(service)?;
        if let Some(role) = &patch.role_sid {
            self.check_role(service, role, RoleKind::Service, "RoleSid").await?;
        }
        patch.now = Some(self.now());
        let role_changes = patch.role_sid.is_some();
        let updated = self.store.update_user(service, user, patch, &self.origin).await?;
        if role_changes {
            self.access_changed();
        }
        Ok(updated)
    }

    /// Deletes a user.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_user(&self, service: &ServiceSid, user: &UserRef) -> Result<()> {
        self.charge_service(service)?;
        self.store.delete_user(service, user, self.now(), &self.origin).await?;
        self.access_changed();
        Ok(())
    }

    /// A user's conversations.
    ///
    /// # Errors
    /// When the user does not exist.
    pub async fn list_user_conversations(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        page: PageQuery,
    ) -> Result<Page<UserConversation>> {
        self.store.list_user_conversations(service, user, page).await
    }

    /// One conversation of a user.
    ///
    /// # Errors
    /// When the user or conversation does not exist or the user does not participate.
    pub async fn user_conversation(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        conv: &ConversationRef,
    ) -> Result<UserConversation> {
        self.store.get_user_conversation(service, user, conv).await
    }

    /// Changes a user's notification level or read horizon in a conversation.
    ///
    /// # Errors
    /// As [`Palaver::user_conversation`], or when the conversation is closed.
    pub async fn update_user_conversation(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        conv: &ConversationRef,
        patch: ParticipantPatch,
    ) -> Result<UserConversation> {
        let current = self.store.get_user_conversation(service, user, conv).await?;
        let conv_ref = ConversationRef::Sid(current.conversation.sid.clone());
        self.update_participant(service, &conv_ref, &ParticipantRef::Sid(current.participant.sid.clone()), patch)
            .await?;
        self.store.get_user_conversation(service, user, &conv_ref).await
    }

    /// Makes a user leave a conversation.
    ///
    /// # Errors
    /// As [`Palaver::user_conversation`].
    pub async fn leave_user_conversation(
        &self,
        service: &ServiceSid,
        user: &UserRef,
        conv: &ConversationRef,
    ) -> Result<()> {
        let current = self.store.get_user_conversation(service, user, conv).await?;
        let conv_ref = ConversationRef::Sid(current.conversation.sid.clone());
        self.remove_participant(service, &conv_ref, &ParticipantRef::Sid(current.participant.sid)).await
    }

    /// Conversations of a participant found by identity or address.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_participant_conversations(
        &self,
        service: &ServiceSid,
        lookup: &ParticipantLookup,
        page: PageQuery,
    ) -> Result<Page<ParticipantConversation>> {
        self.store.list_participant_conversations(service, lookup, page).await
    }

    /// Creates a role.
    ///
    /// # Errors
    /// When a permission is unknown.
    pub async fn create_role(
        &self,
        service: &ServiceSid,
        friendly_name: FriendlyName,
        kind: RoleKind,
        permissions: Vec<String>,
    ) -> Result<Role> {
        self.charge_service(service)?;
        let permissions = check_permissions(permissions)?;
        self.store
            .create_role(
                service,
                NewRole {
                    sid: RoleSid::generate(),
                    friendly_name: friendly_name.into_string(),
                    kind,
                    permissions,
                    now: self.now(),
                },
            )
            .await
    }

    /// One role.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<Role> {
        self.store.get_role(service, sid).await
    }

    /// Roles.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_roles(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<Role>> {
        self.store.list_roles(service, page).await
    }

    /// Replaces a role's permissions.
    ///
    /// # Errors
    /// When it does not exist or a permission is unknown.
    pub async fn update_role(&self, service: &ServiceSid, sid: &RoleSid, permissions: Vec<String>) -> Result<Role> {
        self.charge_service(service)?;
        let permissions = check_permissions(permissions)?;
        let updated = self.store.update_role(service, sid, permissions, self.now()).await?;
        self.access_changed();
        Ok(updated)
    }

    /// Deletes a role.
    ///
    /// # Errors
    /// When it does not exist or is still in use.
    pub async fn delete_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<()> {
        self.charge_service(service)?;
        self.store.delete_role(service, sid).await?;
        self.access_changed();
        Ok(())
    }

    /// Creates an API key with a new random secret.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn create_api_key(&self, friendly_name: FriendlyName) -> Result<ApiKey> {
        let secret = palaver_api::sid::random_secret();
        self.store
            .create_api_key(ApiKey {
                sid: ApiKeySid::generate(),
                friendly_name: friendly_name.into_string(),
                secret,
                date_created: self.now(),
            })
            .await
    }

    /// All API keys.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.store.list_api_keys().await
    }

    /// One API key.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn api_key(&self, sid: &ApiKeySid) -> Result<ApiKey> {
        self.store.get_api_key(sid).await
    }

    /// Deletes an API key.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_api_key(&self, sid: &ApiKeySid) -> Result<()> {
        self.store.delete_api_key(sid).await
    }

    /// Records an upload whose bytes the caller stored under `sha256`.
    ///
    /// # Errors
    /// When the service does not exist, the content type is not allowed for the category, or the file is
    /// larger than the per-item limit.
    pub async fn record_upload(
        &self,
        service: &ServiceSid,
        upload: crate::media::Upload,
    ) -> Result<crate::media::Media> {
        let limits = crate::media::MediaLimits::default();
        limits.check_upload(upload.category, &upload.content_type)?;
        if upload.size > limits.item_bytes() {
            return Err(Error::MediaTooLarge(limits.item_mb));
        }
        self.store.get_service(service).await?;
        let media = crate::media::Media {
            sid: palaver_api::sid::MediaSid::generate(),
            service_sid: service.clone(),
            content_type: upload.content_type,
            filename: upload.filename,
            size: upload.size,
            sha256: upload.sha256,
            author: upload.author,
            category: upload.category,
            message_sid: None,
            conversation_sid: None,
            date_created: self.now(),
        };
        self.store.create_media(media).await
    }

    /// One uploaded file.
    ///
    /// # Errors
    /// When it does not exist in the service.
    pub async fn media(&self, service: &ServiceSid, sid: &palaver_api::sid::MediaSid) -> Result<crate::media::Media> {
        self.store.get_media(service, sid).await
    }

    /// The account's or a service's webhook settings.
    ///
    /// # Errors
    /// When the service does not exist.
    pub async fn webhook_settings(&self, scope: &WebhookScope) -> Result<WebhookSettings> {
        if let WebhookScope::Service(sid) = scope {
            self.store.get_service(sid).await?;
        }
        self.store.webhook_settings(scope).await
    }

    /// Changes the account's or a service's webhook settings.
    ///
    /// # Errors
    /// When the service does not exist or a URL is not an absolute http(s) URL.
    pub async fn update_webhook_settings(
        &self,
        scope: &WebhookScope,
        patch: WebhookSettingsPatch,
    ) -> Result<WebhookSettings> {
        for (field, url) in [("PreWebhookUrl", &patch.pre_webhook_url), ("PostWebhookUrl", &patch.post_webhook_url)] {
            if let Some(Some(url)) = url {
                validate_webhook_url(field, url)?;
            }
        }
        if let WebhookScope::Service(sid) = scope {
            self.store.get_service(sid).await?;
        }
        let updated = self.store.update_webhook_settings(scope, patch).await?;
        self.webhooks_changed();
        Ok(updated)
    }

    /// Attaches a webhook to a conversation.
    ///
    /// # Errors
    /// When the conversation does not exist, the configuration does not fit the target, or the conversation
    /// has [`MAX_SCOPED_WEBHOOKS`] already.
    pub async fn create_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        create: CreateConversationWebhook,
    ) -> Result<ConversationWebhook> {
        let conversation = self.store.get_conversation(service, conv).await?;
        let now = self.now();
        let hook = ConversationWebhook {
            sid: palaver_api::sid::WebhookSid::generate(),
            conversation_sid: conversation.sid.clone(),
            service_sid: service.clone(),
            target: create.target,
            url: create.url,
            method: create.method.unwrap_or_default(),
            filters: create.filters,
            triggers: create.triggers,
            flow_sid: create.flow_sid,
            replay_after: create.replay_after,
            date_created: now,
            date_updated: now,
        };
        validate_scoped_webhook(&hook)?;
        let created = self.store.create_conversation_webhook(service, conv, hook).await?;
        self.webhooks_changed();
        Ok(created)
    }

    /// One conversation-scoped webhook.
    ///
    /// # Errors
    /// When the conversation or webhook does not exist.
    pub async fn conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &palaver_api::sid::WebhookSid,
    ) -> Result<ConversationWebhook> {
        self.store.get_conversation_webhook(service, conv, sid).await
    }

    /// A conversation's webhooks.
    ///
    /// # Errors
    /// When the conversation does not exist.
    pub async fn list_conversation_webhooks(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<ConversationWebhook>> {
        self.store.list_conversation_webhooks(service, conv, page).await
    }

    /// Changes a conversation-scoped webhook.
    ///
    /// # Errors
    /// When it does not exist or the result does not fit its target.
    pub async fn update_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &palaver_api::sid::WebhookSid,
        mut patch: ConversationWebhookPatch,
    ) -> Result<ConversationWebhook> {
        let current = self.store.get_conversation_webhook(service, conv, sid).await?;
        let mut preview = current.clone();
        if let Some(url) = &patch.url {
            preview.url = Some(url.clone());
        }
        if let Some(filters) = &patch.filters {
            preview.filters = filters.clone();
        }
        if let Some(triggers) = &patch.triggers {
            preview.triggers = triggers.clone();
        }
        if let Some(flow) = &patch.flow_sid {
            preview.flow_sid = Some(flow.clone());
        }
        validate_scoped_webhook(&preview)?;
        patch.now = Some(self.now());
        let updated = self.store.update_conversation_webhook(service, conv, sid, patch).await?;
        self.webhooks_changed();
        Ok(updated)
    }

    /// Detaches a conversation-scoped webhook.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &palaver_api::sid::WebhookSid,
    ) -> Result<()> {
        self.store.delete_conversation_webhook(service, conv, sid).await?;
        self.webhooks_changed();
        Ok(())
    }
}

/// The timer dates for a conversation entering `state` at `now`: an inactive timer runs only while active, and
/// nothing runs once closed.
pub fn arm_timers(
    state: ConversationState,
    inactive_after: Option<TimerDuration>,
    closed_after: Option<TimerDuration>,
    now: OffsetDateTime,
) -> Timers {
    // A date past the calendar's end (only a stored duration longer than any accepted now) never comes.
    let at = |d: Option<TimerDuration>| d.and_then(|d| now.checked_add(time::Duration::seconds(d.as_secs())));
    match state {
        ConversationState::Closed => Timers { inactive_after, closed_after, date_inactive: None, date_closed: None },
        ConversationState::Inactive => {
            Timers { inactive_after, closed_after, date_inactive: None, date_closed: at(closed_after) }
        }
        ConversationState::Active | ConversationState::Initializing => {
            Timers { inactive_after, closed_after, date_inactive: at(inactive_after), date_closed: at(closed_after) }
        }
    }
}

fn new_participant(add: AddParticipant, now: OffsetDateTime) -> NewParticipant {
    let (identity, binding) = match add.kind {
        ParticipantKind::Chat(identity) => (Some(identity), None),
        ParticipantKind::NonChat(binding) => (None, Some(binding)),
    };
    let date_created = add.date_created.unwrap_or(now);
    NewParticipant {
        sid: ParticipantSid::generate(),
        identity,
        binding,
        attributes: add.attributes.unwrap_or_default(),
        role_sid: add.role_sid,
        new_user_sid: UserSid::generate(),
        date_created,
        date_updated: add.date_updated.unwrap_or(date_created.max(now)),
    }
}

fn check_permissions(permissions: Vec<String>) -> Result<Vec<String>> {
    if permissions.is_empty() {
        return Err(InvalidInput::new("Permission", "at least one permission is required").into());
    }
    let mut out: Vec<String> = Vec::with_capacity(permissions.len());
    for p in permissions {
        if !KNOWN_PERMISSIONS.contains(&p.as_str()) {
            return Err(InvalidInput::new("Permission", format!("'{p}' is not a known permission")).into());
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}
