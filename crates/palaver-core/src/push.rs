//! Push notifications: the credentials Palaver signs its requests to push services with, the bindings that
//! register a user's devices and browsers, each service's notification settings, and the planner that turns
//! events of the log into notifications for those bindings.
//!
//! Delivery follows the webhooks' pattern: a dispatcher (in `palaver-server`) tails the log after a durable
//! cursor, plans each event here ([`plan_event`]) and writes the planned notifications to the push outbox in
//! the transaction that moves the cursor ([`PushStore::enqueue_pushes`]); it then claims due entries for a
//! lease and sends them. Which push service a binding uses, and how a notification is encoded for it, is the
//! server's concern; this module only decides *who* gets *what*.
//!
//! Who gets a notification (Twilio's rules):
//! - a new message: every chat participant of the conversation but its author and those who muted the
//!   conversation (`notification_level = muted`);
//! - added to / removed from a conversation: the user added or removed, unless they did it themselves (joined
//!   or left) or muted the conversation; a conversation deleted as a whole notifies nobody;
//! - only when the service's settings enable that kind, and only bindings registered for that kind.

use async_trait::async_trait;
use palaver_api::sid::{ConversationSid, CredentialSid, PushBindingSid, ServiceSid};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{InvalidInput, Result};
use crate::event::{Event, EventKind};
use crate::input::NotificationLevel;
use crate::store::{ConversationRef, Cursor, Page, PageQuery, Store, UserRef};

/// The push service a credential signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// Apple Push Notification service (token-based authentication with a `.p8` key).
    Apn,
    /// Google Cloud Messaging, Firebase's retired predecessor: stored, never sent to.
    Gcm,
    /// Firebase Cloud Messaging (HTTP v1 API with a service account).
    Fcm,
    /// Web Push (RFC 8030) with VAPID (RFC 8292); a Palaver extension of Twilio's types.
    WebPush,
}

impl CredentialKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apn => "apn",
            Self::Gcm => "gcm",
            Self::Fcm => "fcm",
            Self::WebPush => "webpush",
        }
    }

    /// Parses a wire name.
    ///
    /// # Errors
    /// For any other value.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        [Self::Apn, Self::Gcm, Self::Fcm, Self::WebPush]
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| InvalidInput::new(field, format!("'{raw}' is not one of apn, gcm, fcm, webpush")))
    }
}

/// The secret parts of a credential, as the caller gave them. They are never returned by the API.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CredentialSecrets {
    /// APNs: the key's settings (`{"key_id", "team_id", "topic"}`); Web Push: `{"subject"}`.
    pub certificate: Option<String>,
    /// APNs: the `.p8` key (PKCS#8 PEM); Web Push: the VAPID key (PKCS#8 PEM).
    pub private_key: Option<String>,
    /// GCM: the server key.
    pub api_key: Option<String>,
    /// FCM: the service account's JSON key file.
    pub secret: Option<String>,
}

impl std::fmt::Debug for CredentialSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs and panics.
        f.debug_struct("CredentialSecrets").finish_non_exhaustive()
    }
}

/// A push credential (`/v1/Credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `CR…`.
    pub sid: CredentialSid,
    /// Display name (up to 64 characters).
    pub friendly_name: Option<String>,
    /// The push service.
    pub kind: CredentialKind,
    /// APNs: use the sandbox (development) service.
    pub sandbox: bool,
    /// The keys.
    pub secrets: CredentialSecrets,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last changed at.
    pub date_updated: OffsetDateTime,
}

/// Changes to a credential; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CredentialPatch {
    /// Display name.
    pub friendly_name: Option<String>,
    /// The push service.
    pub kind: Option<CredentialKind>,
    /// APNs sandbox.
    pub sandbox: Option<bool>,
    /// New key settings.
    pub certificate: Option<String>,
    /// New private key.
    pub private_key: Option<String>,
    /// New GCM key.
    pub api_key: Option<String>,
    /// New FCM service account.
    pub secret: Option<String>,
    /// The new `date_updated`.
    pub now: Option<OffsetDateTime>,
}

impl CredentialPatch {
    /// `current` with this patch applied.
    pub fn apply(self, mut current: Credential) -> Credential {
        if let Some(name) = self.friendly_name {
            current.friendly_name = Some(name);
        }
        if let Some(kind) = self.kind {
            current.kind = kind;
        }
        if let Some(sandbox) = self.sandbox {
            current.sandbox = sandbox;
        }
        let secrets = &mut current.secrets;
        for (field, value) in [
            (&mut secrets.certificate, self.certificate),
            (&mut secrets.private_key, self.private_key),
            (&mut secrets.api_key, self.api_key),
            (&mut secrets.secret, self.secret),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if let Some(now) = self.now {
            current.date_updated = now;
        }
        current
    }
}

/// How a binding is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingType {
    /// An iOS/macOS device token (APNs).
    Apn,
    /// A GCM registration token (never sent to).
    Gcm,
    /// An FCM registration token.
    Fcm,
    /// The twilsock connection itself (listed for compatibility; Palaver sends nothing through it).
    Twilsock,
    /// A browser's push subscription (`PushSubscription.toJSON()`).
    WebPush,
}

impl BindingType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apn => "apn",
            Self::Gcm => "gcm",
            Self::Fcm => "fcm",
            Self::Twilsock => "twilsock",
            Self::WebPush => "webpush",
        }
    }

    /// Parses a wire name.
    ///
    /// # Errors
    /// For any other value.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        [Self::Apn, Self::Gcm, Self::Fcm, Self::Twilsock, Self::WebPush]
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| InvalidInput::new(field, format!("'{raw}' is not one of apn, gcm, fcm, twilsock, webpush")))
    }

    /// The kind of credential that signs for this binding; `None` for twilsock.
    pub fn credential_kind(self) -> Option<CredentialKind> {
        match self {
            Self::Apn => Some(CredentialKind::Apn),
            Self::Gcm => Some(CredentialKind::Gcm),
            Self::Fcm => Some(CredentialKind::Fcm),
            Self::WebPush => Some(CredentialKind::WebPush),
            Self::Twilsock => None,
        }
    }
}

/// The notifications there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushType {
    /// A message was added to a conversation of the user.
    NewMessage,
    /// The user was added to a conversation.
    AddedToConversation,
    /// The user was removed from a conversation.
    RemovedFromConversation,
}

impl PushType {
    /// Every type.
    pub const ALL: [Self; 3] = [Self::NewMessage, Self::AddedToConversation, Self::RemovedFromConversation];

    /// The name bindings list (`message_types`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewMessage => "new_message",
            Self::AddedToConversation => "added_to_conversation",
            Self::RemovedFromConversation => "removed_from_conversation",
        }
    }

    /// The type the official SDKs know a notification by (`twi_message_type`).
    pub fn sdk_name(self) -> &'static str {
        match self {
            Self::NewMessage => "twilio.conversations.new_message",
            Self::AddedToConversation => "twilio.conversations.added_to_conversation",
            Self::RemovedFromConversation => "twilio.conversations.removed_from_conversation",
        }
    }

    /// Parses a binding name or an SDK name; `None` for other types (typing, consumption updates), which are
    /// not push notifications.
    pub fn parse(raw: &str) -> Option<Self> {
        let name = raw.strip_prefix("twilio.conversations.").unwrap_or(raw);
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A push binding (`/v1/Services/{IS}/Bindings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBinding {
    /// `BS…`.
    pub sid: PushBindingSid,
    /// The service.
    pub service_sid: ServiceSid,
    /// The credential chosen at registration (the access token's `push_credential_sid`), if any; otherwise
    /// the newest credential of the binding's kind signs.
    pub credential_sid: Option<CredentialSid>,
    /// The user.
    pub identity: String,
    /// How it is reached.
    pub kind: BindingType,
    /// The device token, or the browser's subscription (JSON).
    pub address: String,
    /// The notifications it wants.
    pub message_types: Vec<PushType>,
    /// Created at.
    pub date_created: OffsetDateTime,
    /// Last registered at.
    pub date_updated: OffsetDateTime,
}

impl PushBinding {
    /// The `endpoint` Twilio's resource shows: the device token, or the push service URL of a subscription.
    pub fn endpoint(&self) -> String {
        if self.kind == BindingType::WebPush
            && let Ok(subscription) = serde_json::from_str::<Value>(&self.address)
            && let Some(endpoint) = subscription.get("endpoint").and_then(Value::as_str)
        {
            return endpoint.to_string();
        }
        self.address.clone()
    }
}

/// A registration: a binding is unique per service, kind and address, so registering an address again
/// (the same device after another login) replaces its identity, credential and types.
#[derive(Debug, Clone)]
pub struct NewPushBinding {
    /// `BS…` for a new binding (an existing one keeps its SID).
    pub sid: PushBindingSid,
    /// The service.
    pub service_sid: ServiceSid,
    /// The credential, if the client's token names one.
    pub credential_sid: Option<CredentialSid>,
    /// The user.
    pub identity: String,
    /// How it is reached.
    pub kind: BindingType,
    /// The device token or subscription.
    pub address: String,
    /// The notifications it wants.
    pub message_types: Vec<PushType>,
    /// Registered at.
    pub now: OffsetDateTime,
}

/// Which bindings a list returns (`BindingType` and `Identity`, each any of the given; empty means all).
#[derive(Debug, Clone, Default)]
pub struct BindingFilter {
    /// Any of these kinds.
    pub kinds: Vec<BindingType>,
    /// Any of these identities.
    pub identities: Vec<String>,
}

/// The most characters a template may have.
pub const MAX_TEMPLATE_CHARS: usize = 1024;
/// The most characters of a notification's text; longer texts are cut (push services refuse payloads over
/// about 4 KB, and a lock screen shows far less).
pub const MAX_BODY_CHARS: usize = 1000;

/// The settings of one kind of notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventNotification {
    /// Whether it is sent.
    pub enabled: bool,
    /// Its text; Palaver's default when `None`.
    pub template: Option<String>,
    /// The sound to play.
    pub sound: Option<String>,
}

/// A service's push settings (`/v1/Services/{IS}/Configuration/Notifications`). Everything is off until
/// enabled, as on Twilio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Log each notification sent (at `info`).
    pub log_enabled: bool,
    /// New messages.
    pub new_message: EventNotification,
    /// Put the user's unread count on the badge of new-message notifications.
    pub badge_count_enabled: bool,
    /// New messages with media: sent instead of `new_message` for them when enabled (its sound is
    /// `new_message`'s).
    pub with_media: EventNotification,
    /// Added to a conversation.
    pub added_to_conversation: EventNotification,
    /// Removed from a conversation.
    pub removed_from_conversation: EventNotification,
}

/// Changes to one kind's settings; an empty template or sound clears it.
#[derive(Debug, Clone, Default)]
pub struct EventNotificationPatch {
    /// Whether it is sent.
    pub enabled: Option<bool>,
    /// Its text.
    pub template: Option<String>,
    /// Its sound.
    pub sound: Option<String>,
}

impl EventNotificationPatch {
    fn apply(self, current: &mut EventNotification) {
        if let Some(enabled) = self.enabled {
            current.enabled = enabled;
        }
        if let Some(template) = self.template {
            current.template = (!template.is_empty()).then_some(template);
        }
        if let Some(sound) = self.sound {
            current.sound = (!sound.is_empty()).then_some(sound);
        }
    }
}

/// Changes to a service's push settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NotificationSettingsPatch {
    /// Logging.
    pub log_enabled: Option<bool>,
    /// New messages.
    pub new_message: EventNotificationPatch,
    /// The badge.
    pub badge_count_enabled: Option<bool>,
    /// New messages with media.
    pub with_media: EventNotificationPatch,
    /// Added.
    pub added_to_conversation: EventNotificationPatch,
    /// Removed.
    pub removed_from_conversation: EventNotificationPatch,
}

impl NotificationSettingsPatch {
    /// Checks the templates' lengths.
    ///
    /// # Errors
    /// When a template is longer than [`MAX_TEMPLATE_CHARS`].
    pub fn validate(&self) -> Result<(), InvalidInput> {
        for (field, template) in [
            ("NewMessage.Template", &self.new_message.template),
            ("NewMessage.WithMedia.Template", &self.with_media.template),
            ("AddedToConversation.Template", &self.added_to_conversation.template),
            ("RemovedFromConversation.Template", &self.removed_from_conversation.template),
        ] {
            if template.as_ref().is_some_and(|t| t.chars().count() > MAX_TEMPLATE_CHARS) {
                return Err(InvalidInput::new(field, format!("is longer than {MAX_TEMPLATE_CHARS} characters")));
            }
        }
        Ok(())
    }

    /// `current` with this patch applied.
    pub fn apply(self, mut current: NotificationSettings) -> NotificationSettings {
        if let Some(log) = self.log_enabled {
            current.log_enabled = log;
        }
        if let Some(badge) = self.badge_count_enabled {
            current.badge_count_enabled = badge;
        }
        self.new_message.apply(&mut current.new_message);
        self.with_media.apply(&mut current.with_media);
        self.added_to_conversation.apply(&mut current.added_to_conversation);
        self.removed_from_conversation.apply(&mut current.removed_from_conversation);
        current
    }
}

impl NotificationSettings {
    /// The stored form (JSON text), which only the stores read back, through [`NotificationSettings::from_stored`].
    pub fn to_stored(&self) -> String {
        let kind = |n: &EventNotification| json!({"enabled": n.enabled, "template": n.template, "sound": n.sound});
        json!({
            "log_enabled": self.log_enabled,
            "badge_count_enabled": self.badge_count_enabled,
            "new_message": kind(&self.new_message),
            "with_media": kind(&self.with_media),
            "added_to_conversation": kind(&self.added_to_conversation),
            "removed_from_conversation": kind(&self.removed_from_conversation),
        })
        .to_string()
    }

    /// Reads [`NotificationSettings::to_stored`]'s form; what it cannot read is left at its default.
    pub fn from_stored(raw: &str) -> Self {
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let kind = |name: &str| {
            let n = &value[name];
            EventNotification {
                enabled: n["enabled"].as_bool().unwrap_or(false),
                template: n["template"].as_str().map(str::to_string),
                sound: n["sound"].as_str().map(str::to_string),
            }
        };
        Self {
            log_enabled: value["log_enabled"].as_bool().unwrap_or(false),
            badge_count_enabled: value["badge_count_enabled"].as_bool().unwrap_or(false),
            new_message: kind("new_message"),
            with_media: kind("with_media"),
            added_to_conversation: kind("added_to_conversation"),
            removed_from_conversation: kind("removed_from_conversation"),
        }
    }

    /// Whether any kind is enabled (when none is, planning skips the service's events unread).
    pub fn any_enabled(&self) -> bool {
        self.new_message.enabled
            || self.with_media.enabled
            || self.added_to_conversation.enabled
            || self.removed_from_conversation.enabled
    }
}

/// Palaver's own default texts, used where a service sets no template.
pub mod default_templates {
    /// New message.
    pub const NEW_MESSAGE: &str = "${PARTICIPANT} in ${CONVERSATION}: ${MESSAGE}";
    /// New message with media.
    pub const WITH_MEDIA: &str = "${PARTICIPANT} sent ${MEDIA_COUNT} file(s) in ${CONVERSATION}: ${MEDIA}";
    /// Added to a conversation.
    pub const ADDED: &str = "You were added to ${CONVERSATION}";
    /// Removed from a conversation.
    pub const REMOVED: &str = "You were removed from ${CONVERSATION}";
}

/// Replaces each `${NAME}` of `template` whose name `vars` has with its value (unknown names stay as they
/// are), then cuts the text to [`MAX_BODY_CHARS`].
///
/// The names (Twilio's): `CONVERSATION` (the friendly name, else the unique name, else the SID),
/// `CONVERSATION_SID`, `CONVERSATION_FRIENDLY_NAME`, `CONVERSATION_UNIQUE_NAME`, `PARTICIPANT` (the author's
/// friendly name, else their identity; for added/removed, the user concerned), `PARTICIPANT_IDENTITY`,
/// `PARTICIPANT_SID`, `MESSAGE` (the body), `MESSAGE_SID`, `MESSAGE_INDEX`, `MEDIA_COUNT` and `MEDIA` (the
/// first attachment's file name).
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    truncate_chars(out, MAX_BODY_CHARS)
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => {
            let mut short = text[..cut].to_string();
            short.pop();
            short.push('…');
            short
        }
    }
}

/// What one device is told: the rendered text and the data the SDKs read (`twi_message_type`,
/// `conversation_sid`, …). Providers encode it their way.
#[derive(Debug, Clone, PartialEq)]
pub struct PushNotification {
    /// The kind.
    pub kind: PushType,
    /// The rendered text.
    pub body: String,
    /// The sound to play.
    pub sound: Option<String>,
    /// The app badge (the user's unread messages), when the service enables it.
    pub badge: Option<i64>,
    /// `CH…`.
    pub conversation_sid: String,
    /// The conversation's display title.
    pub conversation_title: String,
    /// New message: `IM…`.
    pub message_sid: Option<String>,
    /// New message: its index.
    pub message_index: Option<i64>,
    /// New message: its author.
    pub author: Option<String>,
    /// New message: how many files are attached.
    pub media_count: Option<usize>,
    /// New message: the first attachment (`{sid, filename, content_type, size}`).
    pub media: Option<Value>,
}

impl PushNotification {
    /// The outbox form (JSON text).
    pub fn to_stored(&self) -> String {
        json!({
            "type": self.kind.as_str(),
            "body": self.body,
            "sound": self.sound,
            "badge": self.badge,
            "conversation_sid": self.conversation_sid,
            "conversation_title": self.conversation_title,
            "message_sid": self.message_sid,
            "message_index": self.message_index,
            "author": self.author,
            "media_count": self.media_count,
            "media": self.media,
        })
        .to_string()
    }

    /// Reads [`PushNotification::to_stored`]'s form.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] when it is not that form.
    pub fn from_stored(raw: &str) -> Result<Self> {
        let bad = || crate::Error::Storage(format!("unreadable push notification in the outbox: {raw}"));
        let v: Value = serde_json::from_str(raw).map_err(|_| bad())?;
        let text = |name: &str| v[name].as_str().map(str::to_string);
        Ok(Self {
            kind: v["type"].as_str().and_then(PushType::parse).ok_or_else(bad)?,
            body: text("body").unwrap_or_default(),
            sound: text("sound"),
            badge: v["badge"].as_i64(),
            conversation_sid: text("conversation_sid").unwrap_or_default(),
            conversation_title: text("conversation_title").unwrap_or_default(),
            message_sid: text("message_sid"),
            message_index: v["message_index"].as_i64(),
            author: text("author"),
            media_count: v["media_count"].as_u64().map(|n| n as usize),
            media: (!v["media"].is_null()).then(|| v["media"].clone()),
        })
    }

    /// The data fields the official SDKs parse (`parsePushNotification`), all strings as FCM requires.
    pub fn sdk_data(&self) -> serde_json::Map<String, Value> {
        let mut data = serde_json::Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                data.insert(k.to_string(), Value::String(v));
            }
        };
        put("twi_message_type", Some(self.kind.sdk_name().to_string()));
        put("twi_body", Some(self.body.clone()));
        put("twi_sound", self.sound.clone());
        put("conversation_sid", Some(self.conversation_sid.clone()));
        put("conversation_title", Some(self.conversation_title.clone()));
        put("message_sid", self.message_sid.clone());
        put("message_index", self.message_index.map(|i| i.to_string()));
        put("author", self.author.clone());
        put("media_count", self.media_count.map(|n| n.to_string()));
        put("media", self.media.as_ref().map(Value::to_string));
        data
    }
}

/// A notification planned for one binding, to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPush {
    /// The log event it comes from.
    pub event_id: i64,
    /// The binding it goes to.
    pub binding_sid: PushBindingSid,
    /// What it says.
    pub notification: PushNotification,
}

/// An outbox entry claimed for sending, with its binding as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct PushJob {
    /// The entry's id.
    pub id: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Where it goes.
    pub binding: PushBinding,
    /// What it says.
    pub notification: PushNotification,
}

/// The storage of push credentials, bindings, settings and the push outbox; part of [`Store`] (every store
/// implements it).
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores a new credential.
    async fn create_credential(&self, credential: Credential) -> Result<Credential>;
    /// One credential.
    async fn get_credential(&self, sid: &CredentialSid) -> Result<Credential>;
    /// Credentials, oldest first.
    async fn list_credentials(&self, page: PageQuery) -> Result<Page<Credential>>;
    /// Changes a credential.
    async fn update_credential(&self, sid: &CredentialSid, patch: CredentialPatch) -> Result<Credential>;
    /// Deletes a credential (bindings naming it fall back to the newest credential of their kind).
    async fn delete_credential(&self, sid: &CredentialSid) -> Result<()>;

    /// Registers a binding, or re-registers the service's binding of the same kind and address.
    async fn register_push_binding(&self, binding: NewPushBinding) -> Result<PushBinding>;
    /// One binding of a service.
    async fn get_push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<PushBinding>;
    /// A service's bindings matching `filter`, oldest first.
    async fn list_push_bindings(
        &self,
        service: &ServiceSid,
        filter: &BindingFilter,
        page: PageQuery,
    ) -> Result<Page<PushBinding>>;
    /// Deletes a binding and the notifications waiting for it.
    async fn delete_push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<()>;

    /// A service's push settings (the defaults, all off, when never set).
    async fn notification_settings(&self, service: &ServiceSid) -> Result<NotificationSettings>;
    /// Changes a service's push settings (applied in the store's transaction, so patches do not race).
    async fn update_notification_settings(
        &self,
        service: &ServiceSid,
        patch: NotificationSettingsPatch,
    ) -> Result<NotificationSettings>;

    /// The log id up to which events have been planned into the push outbox.
    async fn push_cursor(&self) -> Result<i64>;
    /// Like [`Store::enqueue_webhooks`] for the push outbox: adds `pushes` (due at `now`) and moves the cursor
    /// from `from` to `to` in one transaction, only if the stored cursor is still at most `from`; returns the
    /// stored cursor after the call.
    async fn enqueue_pushes(&self, pushes: Vec<NewPush>, from: i64, to: i64, now: OffsetDateTime) -> Result<i64>;
    /// Like [`Store::due_webhooks`]: claims the due entries, oldest first, at most `limit`, each made due
    /// again only at `now + lease`, with their bindings.
    async fn due_pushes(&self, now: OffsetDateTime, lease: std::time::Duration, limit: u32) -> Result<Vec<PushJob>>;
    /// When the next entry is due (for a claimed one, when its lease ends), if any waits.
    async fn next_push_due(&self) -> Result<Option<OffsetDateTime>>;
    /// Removes a sent entry.
    async fn push_delivered(&self, id: i64) -> Result<()>;
    /// Records a failed attempt: retried at `retry_at`, or kept as dead when `None`.
    async fn push_failed(&self, id: i64, retry_at: Option<OffsetDateTime>, error: String) -> Result<()>;
}

/// Plans one event of the log under its service's `settings`: the notifications it causes, one per binding.
/// Reads, for new messages, the conversation's participants and their bindings, as they are now (planning runs
/// right behind the log, so this is the state the event left, give or take a change made since).
///
/// # Errors
/// When the store cannot be read.
pub async fn plan_event(store: &dyn Store, event: &Event, settings: &NotificationSettings) -> Result<Vec<NewPush>> {
    if !may_notify(event.kind) || !settings.any_enabled() {
        return Ok(Vec::new());
    }
    let Ok(service) = ServiceSid::parse(&event.service_sid) else { return Ok(Vec::new()) };
    match event.kind {
        EventKind::MessageAdded => plan_new_message(store, &service, settings, event).await,
        _ => plan_membership(store, &service, settings, event).await,
    }
}

/// Whether events of `kind` can cause notifications (the others are skipped without reading anything).
pub fn may_notify(kind: EventKind) -> bool {
    matches!(kind, EventKind::MessageAdded | EventKind::UserConversationJoined | EventKind::UserConversationLeft)
}

/// Page size of the planner's reads.
const PLAN_PAGE: u32 = 100;

async fn plan_new_message(
    store: &dyn Store,
    service: &ServiceSid,
    settings: &NotificationSettings,
    event: &Event,
) -> Result<Vec<NewPush>> {
    let data = &event.data;
    let media: Vec<Value> = data["media"].as_array().cloned().unwrap_or_default();
    let (kind_settings, default_template) = if !media.is_empty() && settings.with_media.enabled {
        (&settings.with_media, default_templates::WITH_MEDIA)
    } else if settings.new_message.enabled {
        (&settings.new_message, default_templates::NEW_MESSAGE)
    } else {
        return Ok(Vec::new());
    };
    let Some(conv_sid) = data["conversation_sid"].as_str().and_then(|s| ConversationSid::parse(s).ok()) else {
        return Ok(Vec::new());
    };
    let conv_ref = ConversationRef::Sid(conv_sid.clone());
    let conversation = match store.get_conversation(service, &conv_ref).await {
        Ok(conversation) => conversation,
        // Deleted since: nobody is left to tell.
        Err(crate::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let author = data["author"].as_str().unwrap_or_default().to_string();
    let mut recipients = Vec::new();
    let mut author_participant = None;
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store
            .list_participants(service, &conv_ref, PageQuery { size: PLAN_PAGE, cursor, descending: false })
            .await?;
        for p in page.items {
            let Some(identity) = &p.identity else { continue };
            if identity.as_str() == author {
                author_participant = Some(p.sid.to_string());
                continue;
            }
            if p.notification_level != NotificationLevel::Muted {
                recipients.push(identity.as_str().to_string());
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let author_name = match store.get_user(service, &UserRef::Identity(author.clone())).await {
        Ok(user) => user.friendly_name.filter(|n| !n.is_empty()).unwrap_or_else(|| author.clone()),
        Err(_) => author.clone(),
    };
    let first_media = media.first().map(
        |m| json!({"sid": m["sid"], "filename": m["filename"], "content_type": m["content_type"], "size": m["size"]}),
    );
    let media_name = media
        .first()
        .map(|m| m["filename"].as_str().or(m["content_type"].as_str()).unwrap_or_default().to_string())
        .unwrap_or_default();
    let message_sid = data["sid"].as_str().unwrap_or_default().to_string();
    let index = data["index"].as_i64();
    let title = conversation_title(
        conv_sid.as_str(),
        conversation.friendly_name.as_deref(),
        conversation.unique_name.as_deref(),
    );
    let vars = [
        ("CONVERSATION", title.clone()),
        ("CONVERSATION_SID", conv_sid.to_string()),
        ("CONVERSATION_FRIENDLY_NAME", conversation.friendly_name.clone().unwrap_or_default()),
        ("CONVERSATION_UNIQUE_NAME", conversation.unique_name.clone().unwrap_or_default()),
        ("PARTICIPANT", author_name),
        ("PARTICIPANT_IDENTITY", author.clone()),
        ("PARTICIPANT_SID", author_participant.unwrap_or_default()),
        ("MESSAGE", data["body"].as_str().unwrap_or_default().to_string()),
        ("MESSAGE_SID", message_sid.clone()),
        ("MESSAGE_INDEX", index.map(|i| i.to_string()).unwrap_or_default()),
        ("MEDIA_COUNT", media.len().to_string()),
        ("MEDIA", media_name),
    ];
    let template = kind_settings.template.as_deref().unwrap_or(default_template);
    let notification = PushNotification {
        kind: PushType::NewMessage,
        body: render(template, &vars),
        sound: settings.new_message.sound.clone(),
        badge: None,
        conversation_sid: conv_sid.to_string(),
        conversation_title: title,
        message_sid: Some(message_sid),
        message_index: index,
        author: Some(author),
        media_count: (!media.is_empty()).then_some(media.len()),
        media: first_media,
    };
    let bindings = bindings_of(store, service, &recipients).await?;
    let mut planned = Vec::with_capacity(bindings.len());
    let mut badges: std::collections::HashMap<String, Option<i64>> = std::collections::HashMap::new();
    for binding in bindings {
        if !binding.message_types.contains(&PushType::NewMessage) {
            continue;
        }
        let mut notification = notification.clone();
        if settings.badge_count_enabled {
            if !badges.contains_key(&binding.identity) {
                let badge = unread_total(store, service, &binding.identity).await?;
                badges.insert(binding.identity.clone(), badge);
            }
            notification.badge = badges[&binding.identity];
        }
        planned.push(NewPush { event_id: event.id, binding_sid: binding.sid, notification });
    }
    Ok(planned)
}

async fn plan_membership(
    store: &dyn Store,
    service: &ServiceSid,
    settings: &NotificationSettings,
    event: &Event,
) -> Result<Vec<NewPush>> {
    let (kind, kind_settings, default_template) = if event.kind == EventKind::UserConversationJoined {
        (PushType::AddedToConversation, &settings.added_to_conversation, default_templates::ADDED)
    } else {
        (PushType::RemovedFromConversation, &settings.removed_from_conversation, default_templates::REMOVED)
    };
    if !kind_settings.enabled {
        return Ok(Vec::new());
    }
    let data = &event.data;
    let Some(identity) = data["participant"]["identity"].as_str() else { return Ok(Vec::new()) };
    if data["notification_level"].as_str() == Some(NotificationLevel::Muted.as_str())
        || event.origin.client_identity.as_deref() == Some(identity)
    {
        return Ok(Vec::new());
    }
    let conv = &data["conversation"];
    let Some(conv_sid) = conv["sid"].as_str().and_then(|s| ConversationSid::parse(s).ok()) else {
        return Ok(Vec::new());
    };
    if kind == PushType::RemovedFromConversation {
        // Deleting a conversation makes everyone leave it; that is not a removal to notify.
        match store.get_conversation(service, &ConversationRef::Sid(conv_sid.clone())).await {
            Ok(_) => {}
            Err(crate::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        }
    }
    let friendly = conv["friendly_name"].as_str();
    let unique = conv["unique_name"].as_str();
    let title = conversation_title(conv_sid.as_str(), friendly, unique);
    let user_name = match store.get_user(service, &UserRef::Identity(identity.to_string())).await {
        Ok(user) => user.friendly_name.filter(|n| !n.is_empty()).unwrap_or_else(|| identity.to_string()),
        Err(_) => identity.to_string(),
    };
    let vars = [
        ("CONVERSATION", title.clone()),
        ("CONVERSATION_SID", conv_sid.to_string()),
        ("CONVERSATION_FRIENDLY_NAME", friendly.unwrap_or_default().to_string()),
        ("CONVERSATION_UNIQUE_NAME", unique.unwrap_or_default().to_string()),
        ("PARTICIPANT", user_name),
        ("PARTICIPANT_IDENTITY", identity.to_string()),
        ("PARTICIPANT_SID", data["participant"]["sid"].as_str().unwrap_or_default().to_string()),
    ];
    let notification = PushNotification {
        kind,
        body: render(kind_settings.template.as_deref().unwrap_or(default_template), &vars),
        sound: kind_settings.sound.clone(),
        badge: None,
        conversation_sid: conv_sid.to_string(),
        conversation_title: title,
        message_sid: None,
        message_index: None,
        author: None,
        media_count: None,
        media: None,
    };
    Ok(bindings_of(store, service, &[identity.to_string()])
        .await?
        .into_iter()
        .filter(|b| b.message_types.contains(&kind))
        .map(|b| NewPush { event_id: event.id, binding_sid: b.sid, notification: notification.clone() })
        .collect())
}

/// What a notification calls a conversation: its friendly name, else its unique name, else its SID.
fn conversation_title(sid: &str, friendly: Option<&str>, unique: Option<&str>) -> String {
    friendly.filter(|n| !n.is_empty()).or(unique.filter(|n| !n.is_empty())).unwrap_or(sid).to_string()
}

/// The bindings of `identities` that a push service can reach (not twilsock, not the retired GCM).
async fn bindings_of(store: &dyn Store, service: &ServiceSid, identities: &[String]) -> Result<Vec<PushBinding>> {
    let mut bindings = Vec::new();
    for chunk in identities.chunks(PLAN_PAGE as usize) {
        let filter = BindingFilter {
            kinds: vec![BindingType::Apn, BindingType::Fcm, BindingType::WebPush],
            identities: chunk.to_vec(),
        };
        let mut cursor = None;
        loop {
            let page = store
                .list_push_bindings(service, &filter, PageQuery { size: PLAN_PAGE, cursor, descending: false })
                .await?;
            bindings.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(bindings)
}

/// The user's unread messages over their conversations, for the badge; read
/// from at most the first 1 000 conversations.
async fn unread_total(store: &dyn Store, service: &ServiceSid, identity: &str) -> Result<Option<i64>> {
    let user = UserRef::Identity(identity.to_string());
    let mut total = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = match store
            .list_user_conversations(service, &user, PageQuery { size: PLAN_PAGE, cursor, descending: false })
            .await
        {
            Ok(page) => page,
            Err(crate::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        // Without a read horizon every message is unread.
        total +=
            page.items.iter().map(|c| c.unread_messages_count.unwrap_or(c.conversation.messages_count)).sum::<i64>();
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Some(total))
}

/// A new credential as the caller describes it.
#[derive(Debug, Clone)]
pub struct CreateCredential {
    /// The push service.
    pub kind: CredentialKind,
    /// Display name.
    pub friendly_name: Option<String>,
    /// APNs sandbox.
    pub sandbox: bool,
    /// The keys.
    pub secrets: CredentialSecrets,
}

/// The most characters of a credential's friendly name.
pub const MAX_CREDENTIAL_NAME_CHARS: usize = 64;
/// The most bytes of a binding's address (a browser subscription is a few hundred).
pub const MAX_BINDING_ADDRESS_BYTES: usize = 4096;

fn check_credential_name(name: Option<&str>) -> Result<()> {
    if let Some(name) = name
        && name.chars().count() > MAX_CREDENTIAL_NAME_CHARS
    {
        return Err(InvalidInput::new(
            "FriendlyName",
            format!("is longer than {MAX_CREDENTIAL_NAME_CHARS} characters"),
        )
        .into());
    }
    Ok(())
}

/// Checks that a web push subscription (`PushSubscription.toJSON()`) has what sending needs.
fn check_web_push_subscription(address: &str) -> Result<(), InvalidInput> {
    let field = "Address";
    let value: Value = serde_json::from_str(address)
        .map_err(|_| InvalidInput::new(field, "a web push binding's address is the subscription's JSON"))?;
    let endpoint = value["endpoint"].as_str().unwrap_or_default();
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(InvalidInput::new(field, "the subscription has no http(s) endpoint"));
    }
    for key in ["p256dh", "auth"] {
        if value["keys"][key].as_str().is_none_or(str::is_empty) {
            return Err(InvalidInput::new(field, format!("the subscription has no keys.{key}")));
        }
    }
    Ok(())
}

impl crate::Palaver {
    /// Stores a new push credential. The keys' formats are checked by the transport (it knows the crypto).
    ///
    /// # Errors
    /// When the friendly name is too long, or storage fails.
    pub async fn create_credential(&self, create: CreateCredential) -> Result<Credential> {
        check_credential_name(create.friendly_name.as_deref())?;
        let now = self.clock().now();
        let credential = Credential {
            sid: CredentialSid::generate(),
            friendly_name: create.friendly_name,
            kind: create.kind,
            sandbox: create.sandbox,
            secrets: create.secrets,
            date_created: now,
            date_updated: now,
        };
        self.store().create_credential(credential).await
    }

    /// One credential.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn credential(&self, sid: &CredentialSid) -> Result<Credential> {
        self.store().get_credential(sid).await
    }

    /// Credentials, oldest first.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn list_credentials(&self, page: PageQuery) -> Result<Page<Credential>> {
        self.store().list_credentials(page).await
    }

    /// Changes a credential.
    ///
    /// # Errors
    /// When it does not exist or the friendly name is too long.
    pub async fn update_credential(&self, sid: &CredentialSid, mut patch: CredentialPatch) -> Result<Credential> {
        check_credential_name(patch.friendly_name.as_deref())?;
        patch.now = Some(self.clock().now());
        self.store().update_credential(sid, patch).await
    }

    /// Deletes a credential.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_credential(&self, sid: &CredentialSid) -> Result<()> {
        self.store().delete_credential(sid).await
    }

    /// Registers `identity`'s device or browser for push notifications of `message_types` (every type when
    /// empty). Registering an address again moves it to this user.
    ///
    /// # Errors
    /// When the address is empty, too long or (web push) not a subscription, the kind is `twilsock`, the
    /// credential does not exist, or storage fails.
    pub async fn register_push(
        &self,
        service: &ServiceSid,
        identity: &str,
        kind: BindingType,
        address: &str,
        message_types: &[PushType],
        credential_sid: Option<CredentialSid>,
    ) -> Result<PushBinding> {
        let address = address.trim();
        if address.is_empty() {
            return Err(InvalidInput::new("Address", "is empty").into());
        }
        if address.len() > MAX_BINDING_ADDRESS_BYTES {
            return Err(
                InvalidInput::new("Address", format!("is longer than {MAX_BINDING_ADDRESS_BYTES} bytes")).into()
            );
        }
        if kind == BindingType::Twilsock {
            return Err(InvalidInput::new("BindingType", "twilsock bindings are the connection itself").into());
        }
        if kind == BindingType::WebPush {
            check_web_push_subscription(address)?;
        }
        if let Some(sid) = &credential_sid {
            self.store().get_credential(sid).await?;
        }
        self.store().get_service(service).await?;
        let mut types: Vec<PushType> = Vec::new();
        for t in if message_types.is_empty() { &PushType::ALL[..] } else { message_types } {
            if !types.contains(t) {
                types.push(*t);
            }
        }
        let binding = NewPushBinding {
            sid: PushBindingSid::generate(),
            service_sid: service.clone(),
            credential_sid,
            identity: identity.to_string(),
            kind,
            address: address.to_string(),
            message_types: types,
            now: self.clock().now(),
        };
        self.store().register_push_binding(binding).await
    }

    /// Removes `identity`'s bindings of `kind` (only the one with `address`, when given); returns how many.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn unregister_push(
        &self,
        service: &ServiceSid,
        identity: &str,
        kind: BindingType,
        address: Option<&str>,
    ) -> Result<usize> {
        let filter = BindingFilter { kinds: vec![kind], identities: vec![identity.to_string()] };
        let mut doomed = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store()
                .list_push_bindings(service, &filter, PageQuery { size: PLAN_PAGE, cursor, descending: false })
                .await?;
            doomed.extend(page.items.into_iter().filter(|b| address.is_none_or(|a| a.trim() == b.address)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for binding in &doomed {
            match self.store().delete_push_binding(service, &binding.sid).await {
                Ok(()) | Err(crate::Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(doomed.len())
    }

    /// One binding of a service.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<PushBinding> {
        self.store().get_push_binding(service, sid).await
    }

    /// A service's bindings matching `filter`.
    ///
    /// # Errors
    /// When the service does not exist, or storage fails.
    pub async fn list_push_bindings(
        &self,
        service: &ServiceSid,
        filter: &BindingFilter,
        page: PageQuery,
    ) -> Result<Page<PushBinding>> {
        self.store().get_service(service).await?;
        self.store().list_push_bindings(service, filter, page).await
    }

    /// Deletes a binding.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<()> {
        self.store().delete_push_binding(service, sid).await
    }

    /// A service's push settings.
    ///
    /// # Errors
    /// When the service does not exist.
    pub async fn notification_settings(&self, service: &ServiceSid) -> Result<NotificationSettings> {
        self.store().get_service(service).await?;
        self.store().notification_settings(service).await
    }

    /// Changes a service's push settings.
    ///
    /// # Errors
    /// When the service does not exist or a template is too long.
    pub async fn update_notification_settings(
        &self,
        service: &ServiceSid,
        patch: NotificationSettingsPatch,
    ) -> Result<NotificationSettings> {
        patch.validate()?;
        self.store().get_service(service).await?;
        self.store().update_notification_settings(service, patch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_known_names_and_keeps_the_rest() {
        let vars = [("CONVERSATION", "Team".to_string()), ("MESSAGE", "hi ${MESSAGE}".to_string())];
        assert_eq!(render("In ${CONVERSATION}: ${MESSAGE}", &vars), "In Team: hi ${MESSAGE}");
        assert_eq!(render("${UNKNOWN} and ${CONVERSATION", &vars), "${UNKNOWN} and ${CONVERSATION");
        assert_eq!(render("plain", &vars), "plain");
        assert_eq!(render("${CONVERSATION}${CONVERSATION}", &vars), "TeamTeam");
    }

    #[test]
    fn render_cuts_long_texts_at_a_character() {
        let long = "é".repeat(MAX_BODY_CHARS + 10);
        let out = render("${M}", &[("M", long)]);
        assert_eq!(out.chars().count(), MAX_BODY_CHARS);
        assert!(out.ends_with('…'));
    }

    #[test]
    fn settings_round_trip_and_patches_clear_with_empty_text() {
        let patch = NotificationSettingsPatch {
            log_enabled: Some(true),
            new_message: EventNotificationPatch {
                enabled: Some(true),
                template: Some("${MESSAGE}".into()),
                sound: Some("ring".into()),
            },
            badge_count_enabled: Some(true),
            ..Default::default()
        };
        let settings = patch.apply(NotificationSettings::default());
        assert_eq!(NotificationSettings::from_stored(&settings.to_stored()), settings);
        let cleared = NotificationSettingsPatch {
            new_message: EventNotificationPatch { template: Some(String::new()), ..Default::default() },
            ..Default::default()
        }
        .apply(settings);
        assert_eq!(cleared.new_message.template, None);
        assert_eq!(cleared.new_message.sound.as_deref(), Some("ring"));
        assert!(cleared.new_message.enabled);
    }

    #[test]
    fn notifications_round_trip_through_the_outbox_form() {
        let n = PushNotification {
            kind: PushType::NewMessage,
            body: "b".into(),
            sound: Some("s".into()),
            badge: Some(3),
            conversation_sid: "CH1".into(),
            conversation_title: "t".into(),
            message_sid: Some("IM1".into()),
            message_index: Some(4),
            author: Some("alice".into()),
            media_count: Some(1),
            media: Some(json!({"sid": "ME1"})),
        };
        assert_eq!(PushNotification::from_stored(&n.to_stored()).unwrap(), n);
        let data = n.sdk_data();
        assert_eq!(data["twi_message_type"], "twilio.conversations.new_message");
        assert_eq!(data["message_index"], "4");
        assert_eq!(data["media"], r#"{"sid":"ME1"}"#);
    }

    #[test]
    fn push_types_parse_binding_and_sdk_names() {
        assert_eq!(PushType::parse("new_message"), Some(PushType::NewMessage));
        assert_eq!(
            PushType::parse("twilio.conversations.removed_from_conversation"),
            Some(PushType::RemovedFromConversation)
        );
        assert_eq!(PushType::parse("twilio.conversations.typing_indicator"), None);
    }
}
