//! Webhooks, as Twilio Conversations defines them: which events exist, where they go (account, service and
//! conversation-scoped targets) and the form parameters each one carries. Delivery (HTTP, signatures, retries)
//! belongs to the server; this module only decides *what* to send *where*.
//!
//! Post-event webhooks are planned from the stored event log, so a change and the record that it must be
//! announced are committed together; pre-event webhooks are asked before an SDK action and may reject it or
//! change its fields (see [`PreEventHooks`]).

use async_trait::async_trait;
use palaver_api::sid::{ConversationSid, ServiceSid, WebhookSid};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::{InvalidInput, Result};
use crate::event::{Event, EventKind, Source};

/// Longest URL a webhook target may have.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;
/// Most conversation-scoped webhooks one conversation may have.
pub const MAX_SCOPED_WEBHOOKS: usize = 5;

macro_rules! event_types {
    ($($variant:ident => $name:literal, $pre:literal, $user:literal;)*) => {
        /// The 23 webhook event types: pre-action (`onXAdd`, blocking) and post-action (`onXAdded`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum WebhookEventType { $($variant,)* }

        impl WebhookEventType {
            /// Every event type, in Twilio's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// Twilio's name, e.g. `onMessageAdded`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Whether this is a pre-action (blocking) hook.
            pub fn is_pre(self) -> bool {
                match self { $(Self::$variant => $pre,)* }
            }

            /// Whether this is a user event (account-level filters only).
            pub fn is_user_event(self) -> bool {
                match self { $(Self::$variant => $user,)* }
            }
        }
    };
}

event_types! {
    OnMessageAdd => "onMessageAdd", true, false;
    OnMessageUpdate => "onMessageUpdate", true, false;
    OnMessageRemove => "onMessageRemove", true, false;
    OnConversationAdd => "onConversationAdd", true, false;
    OnConversationUpdate => "onConversationUpdate", true, false;
    OnConversationRemove => "onConversationRemove", true, false;
    OnParticipantAdd => "onParticipantAdd", true, false;
    OnParticipantUpdate => "onParticipantUpdate", true, false;
    OnParticipantRemove => "onParticipantRemove", true, false;
    OnUserUpdate => "onUserUpdate", true, true;
    OnMessageAdded => "onMessageAdded", false, false;
    OnMessageUpdated => "onMessageUpdated", false, false;
    OnMessageRemoved => "onMessageRemoved", false, false;
    OnConversationAdded => "onConversationAdded", false, false;
    OnConversationUpdated => "onConversationUpdated", false, false;
    OnConversationRemoved => "onConversationRemoved", false, false;
    OnConversationStateUpdated => "onConversationStateUpdated", false, false;
    OnParticipantAdded => "onParticipantAdded", false, false;
    OnParticipantUpdated => "onParticipantUpdated", false, false;
    OnParticipantRemoved => "onParticipantRemoved", false, false;
    OnUserAdded => "onUserAdded", false, true;
    OnUserUpdated => "onUserUpdated", false, true;
    OnDeliveryUpdated => "onDeliveryUpdated", false, false;
}

impl WebhookEventType {
    /// Parses Twilio's name (case-insensitively, as Twilio's console accepts).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str().eq_ignore_ascii_case(raw.trim()))
    }

    /// The post-action event type a stored event announces, if any.
    pub fn announcing(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::ConversationAdded => Self::OnConversationAdded,
            EventKind::ConversationUpdated => Self::OnConversationUpdated,
            EventKind::ConversationStateUpdated => Self::OnConversationStateUpdated,
            EventKind::ConversationRemoved => Self::OnConversationRemoved,
            EventKind::ParticipantAdded => Self::OnParticipantAdded,
            EventKind::ParticipantUpdated => Self::OnParticipantUpdated,
            EventKind::ParticipantRemoved => Self::OnParticipantRemoved,
            EventKind::MessageAdded => Self::OnMessageAdded,
            EventKind::MessageUpdated => Self::OnMessageUpdated,
            EventKind::MessageRemoved => Self::OnMessageRemoved,
            EventKind::UserAdded => Self::OnUserAdded,
            EventKind::UserUpdated => Self::OnUserUpdated,
            EventKind::DeliveryUpdated => Self::OnDeliveryUpdated,
            EventKind::UserRemoved
            | EventKind::UserConversationJoined
            | EventKind::UserConversationLeft
            | EventKind::UserConversationUpdated => {
                return None;
            }
        })
    }
}

/// How a webhook request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookMethod {
    /// Parameters in the query string.
    Get,
    /// Parameters as a form body.
    #[default]
    Post,
}

impl HookMethod {
    /// Parses `GET`/`POST` in any case.
    pub fn parse(field: &'static str, raw: &str) -> std::result::Result<Self, InvalidInput> {
        match raw.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            _ => Err(InvalidInput::new(field, format!("'{raw}' is not one of GET, POST"))),
        }
    }

    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// Whose webhook settings: the account's (every service) or one service's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WebhookScope {
    /// `/v1/Configuration/Webhooks`.
    Account,
    /// `/v1/Services/{IS}/Configuration/Webhooks`.
    Service(ServiceSid),
}

impl WebhookScope {
    /// The stored key.
    pub fn key(&self) -> String {
        match self {
            Self::Account => "account".to_string(),
            Self::Service(sid) => sid.to_string(),
        }
    }
}

/// Pre- and post-event webhook settings of the account or a service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookSettings {
    /// How requests are sent.
    pub method: HookMethod,
    /// The events that fire; nothing fires while this is empty.
    pub filters: Vec<WebhookEventType>,
    /// Where pre-event hooks go.
    pub pre_webhook_url: Option<String>,
    /// Where post-event hooks go.
    pub post_webhook_url: Option<String>,
    /// `webhook` or `flex` (account level only; kept for compatibility).
    pub target: String,
}

/// Changes to webhook settings; `None` leaves a field, `Some(None)` clears a URL.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettingsPatch {
    /// How requests are sent.
    pub method: Option<HookMethod>,
    /// The events that fire.
    pub filters: Option<Vec<WebhookEventType>>,
    /// Where pre-event hooks go.
    pub pre_webhook_url: Option<Option<String>>,
    /// Where post-event hooks go.
    pub post_webhook_url: Option<Option<String>>,
    /// `webhook` or `flex`.
    pub target: Option<String>,
}

impl WebhookSettingsPatch {
    /// Applies the patch to `settings`.
    pub fn apply(self, mut settings: WebhookSettings) -> WebhookSettings {
        if let Some(method) = self.method {
            settings.method = method;
        }
        if let Some(filters) = self.filters {
            settings.filters = filters;
        }
        if let Some(url) = self.pre_webhook_url {
            settings.pre_webhook_url = url;
        }
        if let Some(url) = self.post_webhook_url {
            settings.post_webhook_url = url;
        }
        if let Some(target) = self.target {
            settings.target = target;
        }
        settings
    }
}

/// What a conversation-scoped webhook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopedTarget {
    /// Posts the filtered events to a URL.
    Webhook,
    /// Posts `onMessageAdded` to a URL when the body contains one of the keywords.
    Trigger,
    /// Hands messages to a Studio flow (not available in Palaver).
    Studio,
}

impl ScopedTarget {
    /// Parses `webhook|trigger|studio`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "webhook" => Some(Self::Webhook),
            "trigger" => Some(Self::Trigger),
            "studio" => Some(Self::Studio),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Trigger => "trigger",
            Self::Studio => "studio",
        }
    }
}

/// A webhook attached to one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationWebhook {
    /// `WH…`.
    pub sid: WebhookSid,
    /// The conversation.
    pub conversation_sid: ConversationSid,
    /// Its service.
    pub service_sid: ServiceSid,
    /// What it does.
    pub target: ScopedTarget,
    /// Where requests go.
    pub url: Option<String>,
    /// How requests are sent.
    pub method: HookMethod,
    /// Events that fire (target `webhook`).
    pub filters: Vec<WebhookEventType>,
    /// Keywords that fire (target `trigger`).
    pub triggers: Vec<String>,
    /// Studio flow (target `studio`).
    pub flow_sid: Option<String>,
    /// Replay messages from this index on (Studio).
    pub replay_after: Option<i64>,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Changed at.
    pub date_updated: OffsetDateTime,
}

/// Changes to a conversation-scoped webhook.
#[derive(Debug, Clone, Default)]
pub struct ConversationWebhookPatch {
    /// Where requests go.
    pub url: Option<String>,
    /// How requests are sent.
    pub method: Option<HookMethod>,
    /// Events that fire.
    pub filters: Option<Vec<WebhookEventType>>,
    /// Keywords that fire.
    pub triggers: Option<Vec<String>>,
    /// Studio flow.
    pub flow_sid: Option<String>,
    /// Changed at (set by the service).
    pub now: Option<OffsetDateTime>,
}

/// Every webhook setting, as the dispatcher keeps it in memory.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// Account- and service-level settings.
    pub settings: Vec<(WebhookScope, WebhookSettings)>,
    /// Conversation-scoped webhooks.
    pub scoped: Vec<ConversationWebhook>,
}

impl WebhookConfig {
    /// True when no webhook of any kind is configured, so events need no planning.
    pub fn is_empty(&self) -> bool {
        self.scoped.is_empty()
            && self.settings.iter().all(|(_, s)| s.post_webhook_url.is_none() && s.pre_webhook_url.is_none())
    }

    /// The settings that apply to `service`: the account's, then the service's own.
    pub fn settings_for<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a WebhookSettings> + 'a {
        let account = self.settings.iter().filter(|(scope, _)| *scope == WebhookScope::Account);
        let own = self
            .settings
            .iter()
            .filter(move |(scope, _)| matches!(scope, WebhookScope::Service(s) if s.as_str() == service));
        account.chain(own).map(|(_, settings)| settings)
    }
}

/// A webhook request waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The log event it announces.
    pub event_id: i64,
    /// Where it goes.
    pub url: String,
    /// How.
    pub method: HookMethod,
    /// Its form parameters, without `RetryCount` (added per attempt).
    pub params: Vec<(String, String)>,
}

/// A webhook request in the outbox, as the dispatcher reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Outbox id.
    pub id: i64,
    /// What to send.
    pub request: NewDelivery,
    /// Attempts made so far.
    pub attempts: u32,
}

impl NewDelivery {
    /// The value of form parameter `name` (`EventType`, `ConversationSid`, …), if the request has it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// How one attempt at sending an outbox entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// Answered 2xx: the entry left the outbox.
    Delivered,
    /// Failed; the entry is tried again at the attempt's `next_retry`.
    Retrying,
    /// Failed for the last time: the entry stays in the outbox as dead and is never sent again.
    GaveUp,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [Self; 3] = [Self::Delivered, Self::Retrying, Self::GaveUp];

    /// The stored and wire name: `delivered`, `retrying`, `gave_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::GaveUp => "gave_up",
        }
    }

    /// Parses [`AttemptOutcome::as_str`]'s names.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == raw)
    }
}

/// One attempt at sending an outbox entry, as the delivery history keeps it: recorded with the entry's new
/// state in one write ([`crate::Store::record_webhook_attempt`]), so the history and the outbox agree.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    /// The outbox entry (the same across its retries).
    pub delivery_id: i64,
    /// The log event the request announces.
    pub event_id: i64,
    /// Where it went.
    pub url: String,
    /// How.
    pub method: HookMethod,
    /// `onMessageAdded`, … (the request's `EventType`).
    pub event_type: Option<String>,
    /// The conversation the event is about, when it is about one (the request's `ConversationSid`).
    pub conversation_sid: Option<String>,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed (`answered 500`, `no answer: …`).
    pub error: Option<String>,
    /// When the entry is tried again (only when `outcome` is [`AttemptOutcome::Retrying`]).
    pub next_retry: Option<OffsetDateTime>,
    /// When the attempt ended.
    pub at: OffsetDateTime,
}

impl WebhookAttempt {
    /// The attempt that follows `delivery`'s earlier ones, ended at `at`: delivered when `error` is `None`;
    /// otherwise retried at `next_retry`, or given up when there is none.
    pub fn of(
        delivery: &Delivery,
        error: Option<String>,
        next_retry: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Self {
        let outcome = match (&error, next_retry) {
            (None, _) => AttemptOutcome::Delivered,
            (Some(_), Some(_)) => AttemptOutcome::Retrying,
            (Some(_), None) => AttemptOutcome::GaveUp,
        };
        Self {
            delivery_id: delivery.id,
            event_id: delivery.request.event_id,
            url: delivery.request.url.clone(),
            method: delivery.request.method,
            event_type: delivery.request.param("EventType").map(str::to_owned),
            conversation_sid: delivery.request.param("ConversationSid").map(str::to_owned),
            attempt: delivery.attempts.saturating_add(1),
            outcome,
            error,
            next_retry: next_retry.filter(|_| outcome == AttemptOutcome::Retrying),
            at,
        }
    }
}

/// How much of the delivery history is kept: attempts older than `max_age`, and all but the newest
/// `max_rows`, are dropped as new ones are recorded. It is a view for operators; the outbox is the record of
/// what is still to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRetention {
    /// The most attempts kept.
    pub max_rows: u32,
    /// The oldest attempt kept, counted back from the newest attempt's time.
    pub max_age: std::time::Duration,
}

impl Default for AttemptRetention {
    /// 10 000 attempts, a week.
    fn default() -> Self {
        Self { max_rows: 10_000, max_age: std::time::Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Which recorded attempts to list; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFilter {
    /// Only attempts that ended so.
    pub outcome: Option<AttemptOutcome>,
    /// Only attempts for events of this conversation.
    pub conversation_sid: Option<ConversationSid>,
}

/// An entry of the webhook outbox as an operator sees it: what it sends, how often it was tried, when it is
/// tried next and why it failed last.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The entry (its id, request and attempts so far).
    pub delivery: Delivery,
    /// When it is tried next; for an entry being sent, when its sender's lease ends. Meaningless when dead.
    pub next_attempt: OffsetDateTime,
    /// Given up on: kept for inspection, never sent again.
    pub dead: bool,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was planned (unknown for entries planned before this was recorded).
    pub date_created: Option<OffsetDateTime>,
}

/// Which outbox entries to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    /// `Some(false)`: only entries still to send; `Some(true)`: only dead ones; `None`: both.
    pub dead: Option<bool>,
}

/// The form parameters of a post-event webhook for `event`, or `None` when it announces nothing.
pub fn post_event_params(event: &Event, account_sid: &str) -> Option<(WebhookEventType, Vec<(String, String)>)> {
    let event_type = WebhookEventType::announcing(event.kind)?;
    let mut params = Params::default();
    params.push("AccountSid", account_sid);
    params.push("EventType", event_type.as_str());
    params.push("Source", event.origin.source.as_str());
    params.opt("ClientIdentity", event.origin.client_identity.as_deref());
    params.push("ChatServiceSid", &event.service_sid);
    let data = &event.data;
    match event.kind {
        EventKind::ConversationAdded
        | EventKind::ConversationUpdated
        | EventKind::ConversationStateUpdated
        | EventKind::ConversationRemoved => {
            params.push("ConversationSid", &event.subject);
            params.conversation(data);
            if event.kind == EventKind::ConversationStateUpdated {
                params.json_text("StateTo", data, "state");
                params.json_text("StateUpdated", data, "state_updated");
                params.push(
                    "Reason",
                    if event.origin.source == Source::System { "TIMER" } else { event.origin.source.as_str() },
                );
            }
        }
        EventKind::ParticipantAdded | EventKind::ParticipantUpdated | EventKind::ParticipantRemoved => {
            params.push("ConversationSid", &event.stream);
            params.participant(data);
        }
        EventKind::MessageAdded | EventKind::MessageUpdated | EventKind::MessageRemoved => {
            params.push("ConversationSid", &event.stream);
            params.message(data);
        }
        EventKind::UserAdded | EventKind::UserUpdated => params.user(data),
        EventKind::DeliveryUpdated => {
            // The event carries the message with the receipt under `receipt`.
            let receipt = &data["receipt"];
            params.push("ConversationSid", &event.stream);
            params.json_text("DeliverySid", receipt, "sid");
            params.json_text("MessageSid", receipt, "message_sid");
            params.json_text("MessageIndex", data, "index");
            params.json_text("ParticipantSid", receipt, "participant_sid");
            params.json_text("ChannelMessageSid", receipt, "channel_message_sid");
            params.json_text("Status", receipt, "status");
            params.json_text("ErrorCode", receipt, "error_code");
            params.json_text("DateCreated", receipt, "date_created");
            params.json_text("DateUpdated", receipt, "date_updated");
        }
        EventKind::UserRemoved
        | EventKind::UserConversationJoined
        | EventKind::UserConversationLeft
        | EventKind::UserConversationUpdated => return None,
    }
    Some((event_type, params.0))
}

/// The deliveries `event` causes under `config`: the account's and its service's post-event URLs when their
/// filters include the event type, and the conversation's own webhooks and keyword triggers.
pub fn plan_deliveries(event: &Event, config: &WebhookConfig, account_sid: &str) -> Vec<NewDelivery> {
    if !event.origin.webhooks {
        return Vec::new();
    }
    let Some((event_type, params)) = post_event_params(event, account_sid) else { return Vec::new() };
    let mut deliveries: Vec<NewDelivery> = Vec::new();
    let mut add = |url: &str, method: HookMethod| {
        if !deliveries.iter().any(|d| d.url == url) {
            deliveries.push(NewDelivery { event_id: event.id, url: url.to_string(), method, params: params.clone() });
        }
    };
    for settings in config.settings_for(&event.service_sid) {
        if let Some(url) = &settings.post_webhook_url
            && settings.filters.contains(&event_type)
        {
            add(url, settings.method);
        }
    }
    let body = event.data.get("body").and_then(Value::as_str).unwrap_or_default();
    for hook in config.scoped.iter().filter(|h| h.conversation_sid.as_str() == event.stream) {
        let Some(url) = &hook.url else { continue };
        let fires = match hook.target {
            ScopedTarget::Webhook => hook.filters.contains(&event_type),
            ScopedTarget::Trigger => {
                event_type == WebhookEventType::OnMessageAdded
                    && hook.triggers.iter().any(|k| contains_keyword(body, k))
            }
            ScopedTarget::Studio => false,
        };
        if fires {
            add(url, hook.method);
        }
    }
    deliveries
}

/// Whether `body` contains `keyword` as a whole word, ignoring case.
pub fn contains_keyword(body: &str, keyword: &str) -> bool {
    let keyword = keyword.trim().to_lowercase();
    !keyword.is_empty() && body.to_lowercase().split(|c: char| !c.is_alphanumeric()).any(|word| word == keyword)
}

/// Form parameters in the order they are added; nested keys use dots, as Twilio's payloads do.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Adds a parameter.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }

    /// Adds a parameter when it has a value.
    pub fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.push(name, value);
        }
    }

    /// Adds the text of `data[key]` (strings as they are, numbers and booleans printed) when present.
    fn json_text(&mut self, name: &str, data: &Value, key: &str) {
        match data.get(key) {
            Some(Value::String(s)) => self.push(name, s.as_str()),
            Some(Value::Number(n)) => self.push(name, n.to_string()),
            Some(Value::Bool(b)) => self.push(name, b.to_string()),
            _ => {}
        }
    }

    fn conversation(&mut self, data: &Value) {
        self.json_text("FriendlyName", data, "friendly_name");
        self.json_text("UniqueName", data, "unique_name");
        self.json_text("Attributes", data, "attributes");
        self.json_text("State", data, "state");
        self.json_text("CreatedBy", data, "created_by");
        self.json_text("DateCreated", data, "date_created");
        self.json_text("DateUpdated", data, "date_updated");
    }

    fn participant(&mut self, data: &Value) {
        self.json_text("ParticipantSid", data, "sid");
        self.json_text("Identity", data, "identity");
        self.json_text("RoleSid", data, "role_sid");
        self.json_text("Attributes", data, "attributes");
        self.json_text("LastReadMessageIndex", data, "last_read_message_index");
        self.json_text("DateCreated", data, "date_created");
        self.json_text("DateUpdated", data, "date_updated");
        if let Some(binding) = data.get("messaging_binding").filter(|b| b.is_object()) {
            self.json_text("MessagingBinding.Type", binding, "kind");
            self.json_text("MessagingBinding.Address", binding, "address");
            self.json_text("MessagingBinding.ProxyAddress", binding, "proxy_address");
            self.json_text("MessagingBinding.ProjectedAddress", binding, "projected_address");
        }
    }

    fn message(&mut self, data: &Value) {
        self.json_text("MessageSid", data, "sid");
        self.json_text("Index", data, "index");
        self.json_text("Author", data, "author");
        self.json_text("Body", data, "body");
        self.json_text("Subject", data, "subject");
        self.json_text("Attributes", data, "attributes");
        self.json_text("ParticipantSid", data, "participant_sid");
        self.json_text("DateCreated", data, "date_created");
        self.json_text("DateUpdated", data, "date_updated");
        if let Some(media) = data.get("media").and_then(Value::as_array).filter(|m| !m.is_empty()) {
            self.push("Media", Value::Array(media.clone()).to_string());
        }
    }

    fn user(&mut self, data: &Value) {
        self.json_text("UserSid", data, "sid");
        self.json_text("Identity", data, "identity");
        self.json_text("FriendlyName", data, "friendly_name");
        self.json_text("Attributes", data, "attributes");
        self.json_text("RoleSid", data, "role_sid");
        self.json_text("DateCreated", data, "date_created");
        self.json_text("DateUpdated", data, "date_updated");
    }
}

/// A pre-event hook's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PreHookVerdict {
    /// Go ahead; the JSON object (if any) replaces some of the action's fields.
    Allow(Option<Map<String, Value>>),
    /// The hook refused (a non-2xx answer, or no answer within the timeout).
    Reject(String),
}

impl PreHookVerdict {
    /// The replacement for `field` (matched ignoring case, `_` and `.`: `FriendlyName`, `friendly_name` and
    /// `friendlyName` are the same field) as text. JSON objects are accepted for attributes.
    pub fn replacement(&self, field: &str) -> Option<String> {
        let Self::Allow(Some(map)) = self else { return None };
        let wanted = normalise(field);
        map.iter().find(|(k, _)| normalise(k) == wanted).and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    }
}

fn normalise(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Asks the pre-event webhooks configured for a service before an action happens.
#[async_trait]
pub trait PreEventHooks: Send + Sync + std::fmt::Debug {
    /// Sends `params` (which already include `EventType`) to every pre-event URL whose filters include
    /// `event_type`; the first rejection wins, replacements from several hooks are merged in order.
    async fn ask(
        &self,
        service: &ServiceSid,
        event_type: WebhookEventType,
        params: Vec<(String, String)>,
    ) -> Result<PreHookVerdict>;
}
