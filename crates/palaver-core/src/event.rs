//! The event log: every change to a conversation (or user) is recorded, in the same transaction as the change,
//! as an [`Event`] with the next sequence number of its stream. Realtime delivery, webhooks and cluster fanout
//! all read this log, so a change that was acknowledged is never missing from it.

use palaver_api::realtime;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::model::{Conversation, Message, Participant, User};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum EventKind {
    ConversationAdded,
    ConversationUpdated,
    ConversationStateUpdated,
    ConversationRemoved,
    ParticipantAdded,
    ParticipantUpdated,
    ParticipantRemoved,
    MessageAdded,
    MessageUpdated,
    MessageRemoved,
    UserAdded,
    UserUpdated,
    UserRemoved,
    UserConversationJoined,
    UserConversationLeft,
    UserConversationUpdated,
    DeliveryUpdated,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConversationAdded => "conversation.added",
            Self::ConversationUpdated => "conversation.updated",
            Self::ConversationStateUpdated => "conversation.state_updated",
            Self::ConversationRemoved => "conversation.removed",
            Self::ParticipantAdded => "participant.added",
            Self::ParticipantUpdated => "participant.updated",
            Self::ParticipantRemoved => "participant.removed",
            Self::MessageAdded => "message.added",
            Self::MessageUpdated => "message.updated",
            Self::MessageRemoved => "message.removed",
            Self::UserAdded => "user.added",
            Self::UserUpdated => "user.updated",
            Self::UserRemoved => "user.removed",
            Self::UserConversationJoined => "user.conversation_joined",
            Self::UserConversationLeft => "user.conversation_left",
            Self::UserConversationUpdated => "user.conversation_updated",
            Self::DeliveryUpdated => "delivery.updated",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::ConversationAdded,
            Self::ConversationUpdated,
            Self::ConversationStateUpdated,
            Self::ConversationRemoved,
            Self::ParticipantAdded,
            Self::ParticipantUpdated,
            Self::ParticipantRemoved,
            Self::MessageAdded,
            Self::MessageUpdated,
            Self::MessageRemoved,
            Self::UserAdded,
            Self::UserUpdated,
            Self::UserRemoved,
            Self::UserConversationJoined,
            Self::UserConversationLeft,
            Self::UserConversationUpdated,
            Self::DeliveryUpdated,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }
}

/// Through which door a change came in; webhooks report it as `Source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// The REST API.
    Api,
    /// A realtime (SDK) client.
    Sdk,
    /// Palaver itself: timers, history import tools.
    #[default]
    System,
    /// An inbound SMS.
    Sms,
    /// An inbound WhatsApp message.
    Whatsapp,
    /// An inbound email.
    Email,
}

impl Source {
    /// The name webhooks and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "API",
            Self::Sdk => "SDK",
            Self::System => "SYSTEM",
            Self::Sms => "SMS",
            Self::Whatsapp => "WHATSAPP",
            Self::Email => "EMAIL",
        }
    }

    /// Parses a stored name; unknown names read as `System`.
    pub fn parse(raw: &str) -> Self {
        [Self::Api, Self::Sdk, Self::Sms, Self::Whatsapp, Self::Email]
            .into_iter()
            .find(|s| s.as_str() == raw)
            .unwrap_or(Self::System)
    }
}

/// Who made a change and whether it should reach webhooks; stored with every event it causes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The door it came through.
    pub source: Source,
    /// The acting chat user, for SDK changes.
    pub client_identity: Option<String>,
    /// Whether post-event webhooks fire for it. REST changes fire them only with
    /// `X-Twilio-Webhook-Enabled: true`; everything else always does.
    pub webhooks: bool,
}

impl Origin {
    /// A change Palaver makes by itself (a timer firing).
    pub fn system() -> Self {
        Self { source: Source::System, client_identity: None, webhooks: true }
    }

    /// A REST call; `webhooks` from its `X-Twilio-Webhook-Enabled` header.
    pub fn api(webhooks: bool) -> Self {
        Self { source: Source::Api, client_identity: None, webhooks }
    }

    /// A realtime client acting as `identity`.
    pub fn sdk(identity: impl Into<String>) -> Self {
        Self { source: Source::Sdk, client_identity: Some(identity.into()), webhooks: true }
    }

    /// A message that arrived from outside (SMS, WhatsApp, email).
    pub fn inbound(source: Source) -> Self {
        Self { source, client_identity: None, webhooks: true }
    }
}

/// One entry of a stream's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the whole log (all streams), increasing with commit order; the live feed tails by it.
    pub id: i64,
    /// The stream: a conversation SID or a user SID.
    pub stream: String,
    /// Position in the stream, starting at 1, without gaps.
    pub seq: i64,
    /// What happened.
    pub kind: EventKind,
    /// The SID of the resource that changed.
    pub subject: String,
    /// A snapshot of the resource after the change (before it, for removals).
    pub data: Value,
    /// When it happened.
    pub at: OffsetDateTime,
    /// The service the stream belongs to.
    pub service_sid: String,
    /// Who caused it.
    pub origin: Origin,
}

/// RFC 3339 with milliseconds, the realtime protocol's date format.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        return t.format(&format).unwrap_or_default();
    }
    // Written digit by digit: every message carries two dates, and the general formatter was a visible part
    // of serialising a page of history.
    fn push_digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
        }
    }
    let mut out = String::with_capacity(24);
    push_digits(&mut out, t.year() as u32, 4);
    out.push('-');
    push_digits(&mut out, u32::from(u8::from(t.month())), 2);
    out.push('-');
    push_digits(&mut out, u32::from(t.day()), 2);
    out.push('T');
    push_digits(&mut out, u32::from(t.hour()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.minute()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.second()), 2);
    out.push('.');
    push_digits(&mut out, u32::from(t.millisecond()), 3);
    out.push('Z');
    out
}

/// A conversation as the realtime protocol describes it.
pub fn conversation_info(c: &Conversation) -> realtime::ConversationInfo {
    realtime::ConversationInfo {
        sid: c.sid.to_string(),
        service_sid: c.service_sid.to_string(),
        friendly_name: c.friendly_name.clone(),
        unique_name: c.unique_name.clone(),
        attributes: c.attributes.as_str().to_string(),
        state: c.state.as_str().to_string(),
        state_updated: rfc3339(c.state_updated),
        created_by: c.created_by.clone(),
        date_created: rfc3339(c.date_created),
        date_updated: rfc3339(c.date_updated),
        date_inactive: c.timers.date_inactive.map(rfc3339),
        date_closed: c.timers.date_closed.map(rfc3339),
        last_message: c
            .last_message_index
            .map(|index| realtime::LastMessageInfo { index, date_created: c.last_message_date.map(rfc3339) }),
        bindings: (c.email_binding.address.is_some() || c.email_binding.name.is_some())
            .then(|| json!({"email": {"address": c.email_binding.address, "name": c.email_binding.name}})),
        messages_count: c.messages_count,
        participants_count: c.participants_count,
    }
}

/// A participant as the realtime protocol describes it.
pub fn participant_info(p: &Participant) -> realtime::ParticipantInfo {
    realtime::ParticipantInfo {
        sid: p.sid.to_string(),
        conversation_sid: p.conversation_sid.to_string(),
        identity: p.identity.as_ref().map(|i| i.as_str().to_string()),
        kind: p.binding.as_ref().map_or("chat", |b| b.kind.as_str()).to_string(),
        messaging_binding: p.binding.as_ref().map(|b| realtime::BindingInfo {
            kind: b.kind.as_str().to_string(),
            address: b.address.clone(),
            proxy_address: b.proxy_address.clone(),
            projected_address: b.projected_address.clone(),
            name: b.name.clone(),
            level: b.level.clone(),
        }),
        attributes: p.attributes.as_str().to_string(),
        role_sid: p.role_sid.as_ref().map(|r| r.to_string()),
        last_read_message_index: p.last_read_message_index,
        last_read_timestamp: p.last_read_timestamp.map(rfc3339),
        date_created: rfc3339(p.date_created),
        date_updated: rfc3339(p.date_updated),
    }
}

/// A message as the realtime protocol describes it.
pub fn message_info(m: &Message) -> realtime::MessageInfo {
    message_info_owned(m.clone())
}

/// [`message_info`] for a message that is no longer needed: its strings move instead of being copied.
pub fn message_info_owned(m: Message) -> realtime::MessageInfo {
    realtime::MessageInfo {
        sid: m.sid.into_string(),
        conversation_sid: m.conversation_sid.into_string(),
        index: m.index,
        author: m.author,
        body: m.body,
        subject: m.subject,
        attributes: m.attributes.into_string(),
        participant_sid: m.participant_sid.map(|p| p.into_string()),
        content_sid: m.content_sid,
        media: m.media,
        delivery: m.delivery.map(|d| d.aggregate()),
        date_created: rfc3339(m.date_created),
        date_updated: m.date_updated.map(rfc3339),
    }
}

/// A user as the realtime protocol describes it.
pub fn user_info(u: &User) -> realtime::UserInfo {
    realtime::UserInfo {
        sid: u.sid.to_string(),
        identity: u.identity.as_str().to_string(),
        friendly_name: u.friendly_name.clone(),
        attributes: u.attributes.as_str().to_string(),
        role_sid: u.role_sid.as_ref().map(|r| r.to_string()),
        is_online: None,
        is_notifiable: None,
        date_created: rfc3339(u.date_created),
        date_updated: rfc3339(u.date_updated),
    }
}

fn to_value<T: serde::Serialize>(value: T) -> Value {
    // Serialising plain structs of strings and numbers into a Value cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The snapshot stored with conversation events: the protocol's `ConversationInfo`, so it is forwarded to
/// clients without re-encoding.
pub fn conversation_snapshot(c: &Conversation) -> Value {
    to_value(conversation_info(c))
}

/// The snapshot stored with participant events (`ParticipantInfo`).
pub fn participant_snapshot(p: &Participant) -> Value {
    to_value(participant_info(p))
}

/// The snapshot stored with message events (`MessageInfo`).
pub fn message_snapshot(m: &Message) -> Value {
    to_value(message_info(m))
}

/// [`message_snapshot`] as JSON text, written straight from the struct (the hot path of every message).
pub fn message_snapshot_json(m: &Message) -> String {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_string(&message_info(m)).unwrap_or_else(|_| "null".into())
}

/// The snapshot stored with user events (`UserInfo`).
pub fn user_snapshot(u: &User) -> Value {
    to_value(user_info(u))
}

/// The snapshot stored with `user.conversation_joined|left` events on the user's stream.
pub fn user_conversation_snapshot(c: &Conversation, p: &Participant, joined_at_seq: Option<i64>) -> Value {
    to_value(realtime::UserConversationChange {
        conversation: conversation_info(c),
        participant: participant_info(p),
        joined_at_seq,
        notification_level: Some(p.notification_level.as_str().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn dates_are_written_like_the_general_formatter_writes_them() {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        for unix_ms in [0_i64, 1_234, 951_782_400_999, 1_764_633_600_000, 253_402_300_799_999] {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).unwrap();
            assert_eq!(rfc3339(t), t.format(&format).unwrap(), "{unix_ms}");
        }
        let offset = time::macros::datetime!(2026-12-02 23:30:05.042 -02:00);
        assert_eq!(rfc3339(offset), "2026-12-03T01:30:05.042Z");
    }
}
