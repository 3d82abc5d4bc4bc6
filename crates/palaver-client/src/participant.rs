//! [`Participant`]: a member of a conversation, kept up to date by the conversation's events.

use std::sync::Arc;

use palaver_api::realtime::{BindingInfo, Call, ParticipantInfo};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Conversation;
use crate::client::ClientInner;
use crate::emitter::ReplayEventEmitter;
use crate::error::{ClientError, Result};
use crate::user::User;
use crate::util::{attributes_text, parse_attributes, parse_date};

/// What kind of participant this is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParticipantKind {
    /// A chat (SDK) user with an identity.
    Chat,
    /// Reached by SMS.
    Sms,
    /// Reached on WhatsApp.
    Whatsapp,
    /// Reached by email.
    Email,
    /// A kind this SDK does not know, as the server named it.
    Other(String),
}

impl ParticipantKind {
    pub(crate) fn parse(raw: &str) -> Self {
        match raw {
            "chat" => Self::Chat,
            "sms" => Self::Sms,
            "whatsapp" => Self::Whatsapp,
            "email" => Self::Email,
            other => Self::Other(other.to_string()),
        }
    }

    /// The wire name (`chat`, `sms`, …).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Chat => "chat",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Email => "email",
            Self::Other(other) => other,
        }
    }
}

/// Why a participant's `updated` event fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParticipantUpdateReason {
    /// `attributes` changed.
    Attributes,
    /// `date_created` changed.
    DateCreated,
    /// `date_updated` changed.
    DateUpdated,
    /// `role_sid` changed.
    RoleSid,
    /// `last_read_message_index` changed.
    LastReadMessageIndex,
    /// `last_read_timestamp` changed.
    LastReadTimestamp,
    /// `bindings` changed.
    Bindings,
}

impl ParticipantUpdateReason {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attributes => "attributes",
            Self::DateCreated => "dateCreated",
            Self::DateUpdated => "dateUpdated",
            Self::RoleSid => "roleSid",
            Self::LastReadMessageIndex => "lastReadMessageIndex",
            Self::LastReadTimestamp => "lastReadTimestamp",
            Self::Bindings => "bindings",
        }
    }
}

/// Names of a participant's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParticipantEventName {
    /// `updated`.
    Updated,
    /// `typingStarted`.
    TypingStarted,
    /// `typingEnded`.
    TypingEnded,
}

impl ParticipantEventName {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::TypingStarted => "typingStarted",
            Self::TypingEnded => "typingEnded",
        }
    }
}

/// A participant's own events (also emitted on its conversation as `participantUpdated`, `typingStarted`, …).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ParticipantEvent {
    /// The participant changed; `update_reasons` lists every field that did, in one event.
    Updated {
        /// The participant after the change.
        participant: Participant,
        /// What changed.
        update_reasons: Vec<ParticipantUpdateReason>,
    },
    /// The participant started typing (repeats for every indicator).
    TypingStarted(Participant),
    /// The participant stopped typing: the indicator timed out or a message from them arrived.
    TypingEnded(Participant),
}

impl ParticipantEvent {
    /// The event's name.
    pub fn name(&self) -> ParticipantEventName {
        match self {
            Self::Updated { .. } => ParticipantEventName::Updated,
            Self::TypingStarted(_) => ParticipantEventName::TypingStarted,
            Self::TypingEnded(_) => ParticipantEventName::TypingEnded,
        }
    }
}

/// The emitter behind [`Participant::events`].
pub type ParticipantEmitter = ReplayEventEmitter<ParticipantEventName, ParticipantEvent>;

/// How a non-chat participant is reached (`messaging_binding`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantBindings {
    /// `sms`, `whatsapp` or `email`.
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

impl From<&BindingInfo> for ParticipantBindings {
    fn from(b: &BindingInfo) -> Self {
        Self {
            kind: b.kind.clone(),
            address: b.address.clone(),
            proxy_address: b.proxy_address.clone(),
            projected_address: b.projected_address.clone(),
            name: b.name.clone(),
            level: b.level.clone(),
        }
    }
}

/// A participant's state, parsed from the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParticipantData {
    pub(crate) sid: String,
    pub(crate) conversation_sid: String,
    pub(crate) identity: Option<String>,
    pub(crate) kind: ParticipantKind,
    pub(crate) attributes: Value,
    pub(crate) bindings: Option<ParticipantBindings>,
    pub(crate) role_sid: Option<String>,
    pub(crate) last_read_message_index: Option<i64>,
    pub(crate) last_read_timestamp: Option<OffsetDateTime>,
    pub(crate) date_created: Option<OffsetDateTime>,
    pub(crate) date_updated: Option<OffsetDateTime>,
}

impl ParticipantData {
    pub(crate) fn from_info(info: &ParticipantInfo) -> Self {
        Self {
            sid: info.sid.clone(),
            conversation_sid: info.conversation_sid.clone(),
            identity: info.identity.clone(),
            kind: ParticipantKind::parse(&info.kind),
            attributes: parse_attributes(&info.attributes),
            bindings: info.messaging_binding.as_ref().map(ParticipantBindings::from),
            role_sid: info.role_sid.clone(),
            last_read_message_index: info.last_read_message_index,
            last_read_timestamp: parse_date(info.last_read_timestamp.as_deref()),
            date_created: parse_date(Some(&info.date_created)),
            date_updated: parse_date(Some(&info.date_updated)),
        }
    }

    /// Every field that differs between `old` and `self`.
    pub(crate) fn diff(&self, old: &Self) -> Vec<ParticipantUpdateReason> {
        let mut reasons = Vec::new();
        if self.attributes != old.attributes {
            reasons.push(ParticipantUpdateReason::Attributes);
        }
        if self.date_created != old.date_created {
            reasons.push(ParticipantUpdateReason::DateCreated);
        }
        if self.date_updated != old.date_updated {
            reasons.push(ParticipantUpdateReason::DateUpdated);
        }
        if self.role_sid != old.role_sid {
            reasons.push(ParticipantUpdateReason::RoleSid);
        }
        if self.last_read_message_index != old.last_read_message_index {
            reasons.push(ParticipantUpdateReason::LastReadMessageIndex);
        }
        if self.last_read_timestamp != old.last_read_timestamp {
            reasons.push(ParticipantUpdateReason::LastReadTimestamp);
        }
        if self.bindings != old.bindings {
            reasons.push(ParticipantUpdateReason::Bindings);
        }
        reasons
    }
}

/// How [`Conversation::remove_participant`] names the participant to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParticipantRef {
    /// By participant SID (`MB…`).
    Sid(String),
    /// By chat identity.
    Identity(String),
}

impl ParticipantRef {
    /// A SID-shaped string is taken as a SID, anything else as an identity (the server accepts both).
    pub fn parse(value: &str) -> Self {
        if palaver_api::sid::has_sid_shape(value, "MB") {
            Self::Sid(value.to_string())
        } else {
            Self::Identity(value.to_string())
        }
    }

    pub(crate) fn as_wire(&self) -> &str {
        match self {
            Self::Sid(s) | Self::Identity(s) => s,
        }
    }
}

impl From<&str> for ParticipantRef {
    fn from(value: &str) -> Self {
        Self::parse(value)
    }
}

impl From<String> for ParticipantRef {
    fn from(value: String) -> Self {
        Self::parse(&value)
    }
}

impl From<&Participant> for ParticipantRef {
    fn from(participant: &Participant) -> Self {
        Self::Sid(participant.sid().to_string())
    }
}

/// A participant of a conversation. A cheap handle: accessors read the latest state the client knows (kept
/// current by the conversation's events while the participant is in its roster, frozen once they left).
#[derive(Clone)]
pub struct Participant {
    pub(crate) client: Arc<ClientInner>,
    pub(crate) snapshot: Arc<ParticipantData>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.data();
        f.debug_struct("Participant")
            .field("sid", &data.sid)
            .field("identity", &data.identity)
            .field("kind", &data.kind)
            .finish_non_exhaustive()
    }
}

impl Participant {
    pub(crate) fn new(client: Arc<ClientInner>, data: Arc<ParticipantData>) -> Self {
        Self { client, snapshot: data }
    }

    /// The latest known state.
    pub(crate) fn data(&self) -> Arc<ParticipantData> {
        self.client
            .with_conversation(&self.snapshot.conversation_sid, |c| {
                c.roster.get(&self.snapshot.sid).map(|p| p.data.clone())
            })
            .flatten()
            .unwrap_or_else(|| self.snapshot.clone())
    }

    /// The participant SID (`MB…`).
    pub fn sid(&self) -> &str {
        &self.snapshot.sid
    }

    /// The conversation SID.
    pub fn conversation_sid(&self) -> &str {
        &self.snapshot.conversation_sid
    }

    /// The chat identity; `None` for SMS, WhatsApp and email participants.
    pub fn identity(&self) -> Option<String> {
        self.data().identity.clone()
    }

    /// Chat, SMS, WhatsApp or email.
    pub fn kind(&self) -> ParticipantKind {
        self.data().kind.clone()
    }

    /// Custom attributes (`{}` by default).
    pub fn attributes(&self) -> Value {
        self.data().attributes.clone()
    }

    /// How a non-chat participant is reached.
    pub fn bindings(&self) -> Option<ParticipantBindings> {
        self.data().bindings.clone()
    }

    /// When they joined.
    pub fn date_created(&self) -> Option<OffsetDateTime> {
        self.data().date_created
    }

    /// When they last changed.
    pub fn date_updated(&self) -> Option<OffsetDateTime> {
        self.data().date_updated
    }

    /// Their read horizon.
    pub fn last_read_message_index(&self) -> Option<i64> {
        self.data().last_read_message_index
    }

    /// When they last reported reading.
    pub fn last_read_timestamp(&self) -> Option<OffsetDateTime> {
        self.data().last_read_timestamp
    }

    /// Their conversation role.
    pub fn role_sid(&self) -> Option<String> {
        self.data().role_sid.clone()
    }

    /// Whether a typing indicator of theirs is active.
    pub fn is_typing(&self) -> bool {
        self.client
            .with_conversation(&self.snapshot.conversation_sid, |c| c.typing.is_typing(&self.snapshot.sid))
            .unwrap_or(false)
    }

    /// The conversation they belong to.
    pub fn conversation(&self) -> Conversation {
        Conversation::handle(self.client.clone(), &self.snapshot.conversation_sid)
    }

    /// This participant's own events: `updated`, `typingStarted`, `typingEnded`.
    pub fn events(&self) -> Arc<ParticipantEmitter> {
        self.client.participant_emitter(&self.snapshot.conversation_sid, &self.snapshot.sid)
    }

    /// Replaces the participant's attributes.
    ///
    /// Returns the participant once the change is visible locally (or after a short wait for its event).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not edit this participant (20403) or it is gone (20404).
    pub async fn update_attributes(&self, attributes: Value) -> Result<Participant> {
        let info: ParticipantInfo = self
            .client
            .call_as(
                Call::UpdateParticipant {
                    conversation: self.snapshot.conversation_sid.clone(),
                    participant: self.snapshot.sid.clone(),
                    attributes: attributes_text(&attributes),
                },
                false,
            )
            .await?;
        let wanted = ParticipantData::from_info(&info);
        let conversation = self.conversation();
        let sid = self.snapshot.sid.clone();
        conversation
            .wait_until(|c| c.roster.get(&sid).is_none_or(|p| p.data.date_updated >= wanted.date_updated))
            .await;
        Ok(Participant::new(self.client.clone(), Arc::new(wanted)))
    }

    /// Removes the participant from the conversation.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not remove participants (20403).
    pub async fn remove(&self) -> Result<()> {
        self.conversation().remove_participant(self).await
    }

    /// The chat user behind this participant.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for non-chat participants; [`ClientError::Server`] when the user does
    /// not exist.
    pub async fn get_user(&self) -> Result<User> {
        let data = self.data();
        match (&data.kind, &data.identity) {
            (ParticipantKind::Chat, Some(identity)) => {
                crate::Client::from_inner(self.client.clone()).get_user(identity).await
            }
            _ => Err(ClientError::InvalidArgument("only chat participants have a user".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ParticipantInfo {
        ParticipantInfo {
            sid: "MB00000000000000000000000000000001".into(),
            conversation_sid: "CH00000000000000000000000000000001".into(),
            identity: Some("alice".into()),
            kind: "chat".into(),
            messaging_binding: None,
            attributes: "{}".into(),
            role_sid: None,
            last_read_message_index: None,
            last_read_timestamp: None,
            date_created: "2026-01-01T00:00:00Z".into(),
            date_updated: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn every_changed_field_is_a_reason() {
        let old = ParticipantData::from_info(&info());
        let mut changed = info();
        changed.attributes = r#"{"x":1}"#.into();
        changed.last_read_message_index = Some(4);
        changed.last_read_timestamp = Some("2026-01-01T00:01:00Z".into());
        changed.date_updated = "2026-01-01T00:01:00Z".into();
        let new = ParticipantData::from_info(&changed);
        assert_eq!(
            new.diff(&old),
            vec![
                ParticipantUpdateReason::Attributes,
                ParticipantUpdateReason::DateUpdated,
                ParticipantUpdateReason::LastReadMessageIndex,
                ParticipantUpdateReason::LastReadTimestamp,
            ]
        );
        assert!(old.diff(&old).is_empty());
    }

    #[test]
    fn participant_refs_tell_sids_from_identities() {
        assert_eq!(
            ParticipantRef::parse("MB00000000000000000000000000000001"),
            ParticipantRef::Sid("MB00000000000000000000000000000001".into())
        );
        assert_eq!(ParticipantRef::parse("bob/x"), ParticipantRef::Identity("bob/x".into()));
    }
}
