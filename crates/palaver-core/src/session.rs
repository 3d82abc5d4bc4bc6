//! [`UserSession`]: the operations of one authenticated chat user (the realtime API's callers), each checked
//! against the user's service role and, inside a conversation, the conversation role of the user's
//! participant. Permission names are Twilio's.
//!
//! An **observer** session ([`UserSession::observe`], opened with a token carrying Palaver's observer grant)
//! reads every conversation of its service as if it took part in all of them, and changes nothing. Every
//! change goes through one of two checks, the caller's roles (`grants`) or its membership
//! (`require_participant`), and both refuse an observer with [`Error::ReadOnly`]; reads go through
//! `require_reader`, which lets an observer in.

use palaver_api::sid::{ConversationSid, MessageSid, ServiceSid};

use crate::error::{Error, InvalidInput, Result};
use crate::input::*;
use crate::model::*;
use crate::service::{AddParticipant, CreateConversation, Palaver, ParticipantKind, PostMessage, TypingNotice};
use crate::store::*;
use crate::webhook::{Params, PreHookVerdict, WebhookEventType};

/// What a user may do, from their roles.
#[derive(Debug, Clone, Default)]
struct Grants {
    service: Vec<String>,
    conversation: Vec<String>,
}

impl Grants {
    fn has(&self, permission: &str) -> bool {
        self.service.iter().chain(&self.conversation).any(|p| p == permission)
    }

    fn require(&self, permission: &'static str) -> Result<()> {
        if self.has(permission) { Ok(()) } else { Err(Error::Forbidden(permission)) }
    }

    /// For actions on one's own things: the "own" permission, or the broader "any" one.
    fn require_own_or_any(&self, own: bool, own_permission: &'static str, any_permission: &'static str) -> Result<()> {
        if own && self.has(own_permission) {
            return Ok(());
        }
        self.require(any_permission)
    }
}

/// A conversation, with the caller's participant when the caller is one.
#[derive(Debug, Clone)]
pub struct SessionConversation {
    /// The conversation.
    pub conversation: Conversation,
    /// The caller's view, when the caller participates.
    pub mine: Option<UserConversation>,
}

/// The caller's membership of one conversation, as last checked.
#[derive(Debug, Clone)]
struct Access {
    /// The access epoch the check was made in; a newer epoch invalidates it.
    epoch: u64,
    conversation: ConversationSid,
    /// The caller's participant. Its read horizon may be stale: only its identity and role are relied on.
    participant: Participant,
    grants: Grants,
}

/// One user's access to a service.
#[derive(Debug, Clone)]
pub struct UserSession {
    palaver: Palaver,
    service: ServiceSid,
    identity: Identity,
    /// Membership checks by conversation reference (SID or unique name), reused until the access epoch moves.
    access: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Access>>>,
    /// Reads every conversation of the service, changes nothing (see the module documentation).
    observer: bool,
}

impl UserSession {
    /// Starts a session for `identity` in `service`, creating the user if it does not exist yet.
    ///
    /// # Errors
    /// When the service does not exist.
    pub async fn open(palaver: Palaver, service: ServiceSid, identity: Identity) -> Result<(Self, User)> {
        let palaver = palaver.acting_as(crate::event::Origin::sdk(identity.as_str()));
        palaver.service(&service).await?;
        let user = match palaver.user(&service, &UserRef::Identity(identity.as_str().to_string())).await {
            Ok(user) => user,
            Err(Error::NotFound { .. }) => {
                let create = crate::service::CreateUser {
                    identity: identity.clone(),
                    friendly_name: None,
                    attributes: None,
                    role_sid: None,
                };
                match palaver.create_user(&service, create).await {
                    Ok(user) => user,
                    // Another connection of the same user created it first.
                    Err(Error::Conflict(_)) => {
                        palaver.user(&service, &UserRef::Identity(identity.as_str().to_string())).await?
                    }
                    Err(other) => return Err(other),
                }
            }
            Err(other) => return Err(other),
        };
        Ok((Self { palaver, service, identity, access: Default::default(), observer: false }, user))
    }

    /// Starts an observer's session in `service`: it reads any conversation (messages, participants, counts)
    /// and changes nothing. `identity` only names the observer (in logs); no user is looked up or created.
    ///
    /// # Errors
    /// When the service does not exist.
    pub async fn observe(palaver: Palaver, service: ServiceSid, identity: Identity) -> Result<Self> {
        palaver.service(&service).await?;
        Ok(Self { palaver, service, identity, access: Default::default(), observer: true })
    }

    /// Whether this is an observer's session (read-only, every conversation of the service).
    pub fn is_observer(&self) -> bool {
        self.observer
    }

    /// The caller's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The service.
    pub fn service(&self) -> &ServiceSid {
        &self.service
    }

    /// The domain.
    pub fn palaver(&self) -> &Palaver {
        &self.palaver
    }

    fn user_ref(&self) -> UserRef {
        UserRef::Identity(self.identity.as_str().to_string())
    }

    async fn role_permissions(&self, role: Option<&palaver_api::sid::RoleSid>) -> Result<Vec<String>> {
        match role {
            Some(role) => match self.palaver.role(&self.service, role).await {
                Ok(role) => Ok(role.permissions),
                Err(Error::NotFound { .. }) => Ok(Vec::new()),
                Err(other) => Err(other),
            },
            None => Ok(Vec::new()),
        }
    }

    /// What the caller may do; an observer may do nothing.
    async fn grants(&self, participant: Option<&Participant>) -> Result<Grants> {
        if self.observer {
            return Err(Error::ReadOnly);
        }
        let user = self.palaver.user(&self.service, &self.user_ref()).await?;
        Ok(Grants {
            service: self.role_permissions(user.role_sid.as_ref()).await?,
            conversation: match participant {
                Some(p) => self.role_permissions(p.role_sid.as_ref()).await?,
                None => Vec::new(),
            },
        })
    }

    async fn my_participant(&self, conv: &ConversationRef) -> Result<Option<Participant>> {
        match self
            .palaver
            .participant(&self.service, conv, &ParticipantRef::Identity(self.identity.as_str().to_string()))
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound { kind: crate::error::ResourceKind::Participant, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The caller's membership of a conversation, or [`Error::NotAParticipant`]; [`Error::ReadOnly`] for an
    /// observer, who is never a member. Checks are cached until anything that affects access changes (see
    /// `Palaver::access_epoch`).
    async fn require_participant(&self, conv: &ConversationRef) -> Result<(ConversationSid, Participant, Grants)> {
        if self.observer {
            return Err(Error::ReadOnly);
        }
        let key = conv.to_string();
        // Read the epoch before looking anything up, so a change racing with this check invalidates it.
        let epoch = self.palaver.access_epoch();
        if let Some(cached) = self.access.lock().ok().and_then(|a| a.get(&key).cloned())
            && cached.epoch == epoch
        {
            return Ok((cached.conversation, cached.participant, cached.grants));
        }
        let conversation = self.palaver.conversation(&self.service, conv).await?;
        let conv_sid = ConversationRef::Sid(conversation.sid.clone());
        let participant = self
            .my_participant(&conv_sid)
            .await?
            .ok_or_else(|| Error::NotAParticipant(conversation.sid.to_string()))?;
        let grants = self.grants(Some(&participant)).await?;
        if let Ok(mut access) = self.access.lock() {
            if access.len() > 10_000 {
                access.clear();
            }
            let cached = Access {
                epoch,
                conversation: conversation.sid.clone(),
                participant: participant.clone(),
                grants: grants.clone(),
            };
            access.insert(key, cached);
        }
        Ok((conversation.sid, participant, grants))
    }

    /// The conversation, when the caller may read it: a participant its own conversations, an observer any
    /// of the service's.
    async fn require_reader(&self, conv: &ConversationRef) -> Result<ConversationSid> {
        if self.observer {
            return Ok(self.palaver.conversation(&self.service, conv).await?.sid);
        }
        Ok(self.require_participant(conv).await?.0)
    }

    fn sid_ref(sid: &ConversationSid) -> ConversationRef {
        ConversationRef::Sid(sid.clone())
    }

    /// The conversations the caller participates in.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn my_conversations(&self, page: PageQuery) -> Result<Page<UserConversation>> {
        if self.observer {
            // An observer takes part in nothing, whatever user shares its identity.
            return Ok(Page { items: Vec::new(), next: None, previous: None });
        }
        self.palaver.list_user_conversations(&self.service, &self.user_ref(), page).await
    }

    /// A conversation the caller participates in, or may join; for an observer, any conversation.
    ///
    /// # Errors
    /// Not found, or [`Error::Forbidden`] for a conversation the caller can neither see nor join.
    pub async fn conversation(&self, conv: &ConversationRef) -> Result<SessionConversation> {
        let conversation = self.palaver.conversation(&self.service, conv).await?;
        if self.observer {
            return Ok(SessionConversation { conversation, mine: None });
        }
        let conv = Self::sid_ref(&conversation.sid);
        match self.palaver.user_conversation(&self.service, &self.user_ref(), &conv).await {
            Ok(mine) => Ok(SessionConversation { conversation: mine.conversation.clone(), mine: Some(mine) }),
            Err(Error::NotFound { .. }) => {
                self.grants(None).await?.require("joinConversation")?;
                Ok(SessionConversation { conversation, mine: None })
            }
            Err(other) => Err(other),
        }
    }

    /// Whether the caller participates in a conversation (answered from the session's access cache when it
    /// can be).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn participates_in(&self, conv: &ConversationRef) -> Result<bool> {
        if self.observer {
            return Ok(false);
        }
        match self.require_participant(conv).await {
            Ok(_) => Ok(true),
            Err(Error::NotAParticipant(_) | Error::NotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// A conversation the caller participates in, or observes (with its message and participant counts).
    ///
    /// # Errors
    /// Not found; [`Error::NotAParticipant`] for anyone else, whatever their role.
    pub async fn joined_conversation(&self, conv: &ConversationRef) -> Result<Conversation> {
        let conversation_sid = self.require_reader(conv).await?;
        self.palaver.conversation(&self.service, &Self::sid_ref(&conversation_sid)).await
    }

    /// Creates a conversation; the caller is its creator but does not join.
    ///
    /// # Errors
    /// Forbidden without `createConversation`; invalid input; unique name taken.
    pub async fn create_conversation(&self, mut create: CreateConversation) -> Result<Conversation> {
        self.grants(None).await?.require("createConversation")?;
        create.created_by = Some(self.identity.as_str().to_string());
        let mut params = self.hook_params(WebhookEventType::OnConversationAdd);
        params.opt("FriendlyName", create.friendly_name.as_ref().map(|n| n.as_str()));
        params.opt("UniqueName", create.unique_name.as_ref().map(|n| n.as_str()));
        params.opt("Attributes", create.attributes.as_ref().map(|a| a.as_str()));
        let verdict = self.ask(WebhookEventType::OnConversationAdd, params).await?;
        if let Some(name) = verdict.replacement("FriendlyName") {
            create.friendly_name = Some(FriendlyName::parse("FriendlyName", &name)?);
        }
        if let Some(name) = verdict.replacement("UniqueName") {
            create.unique_name = Some(UniqueName::parse(&name)?);
        }
        if let Some(raw) = verdict.replacement("Attributes") {
            create.attributes = Some(Attributes::parse("Attributes", &raw, MAX_CONVERSATION_ATTRIBUTES_BYTES)?);
        }
        self.palaver.create_conversation(&self.service, create).await
    }

    /// Changes a conversation's names or attributes.
    ///
    /// # Errors
    /// Not a participant, forbidden, closed, or invalid.
    pub async fn update_conversation(
        &self,
        conv: &ConversationRef,
        mut patch: ConversationPatch,
    ) -> Result<Conversation> {
        let (conversation_sid, _, grants) = self.require_participant(conv).await?;
        if patch.friendly_name.is_some() || patch.unique_name.is_some() {
            grants.require("editConversationName")?;
        }
        if patch.attributes.is_some() {
            grants.require("editConversationAttributes")?;
        }
        let mut params = self.hook_params(WebhookEventType::OnConversationUpdate);
        params.push("ConversationSid", conversation_sid.as_str());
        params.opt("FriendlyName", patch.friendly_name.as_ref().and_then(|n| n.as_deref()));
        params.opt("UniqueName", patch.unique_name.as_ref().and_then(|n| n.as_deref()));
        params.opt("Attributes", patch.attributes.as_ref().map(|a| a.as_str()));
        let verdict = self.ask(WebhookEventType::OnConversationUpdate, params).await?;
        if let Some(name) = verdict.replacement("FriendlyName") {
            patch.friendly_name = Some(Some(FriendlyName::parse("FriendlyName", &name)?.into_string()));
        }
        if let Some(name) = verdict.replacement("UniqueName") {
            patch.unique_name = Some(Some(UniqueName::parse(&name)?.as_str().to_string()));
        }
        if let Some(raw) = verdict.replacement("Attributes") {
            patch.attributes = Some(Attributes::parse("Attributes", &raw, MAX_CONVERSATION_ATTRIBUTES_BYTES)?);
        }
        self.palaver.update_conversation(&self.service, &Self::sid_ref(&conversation_sid), patch).await
    }

    /// Deletes a conversation.
    ///
    /// # Errors
    /// Forbidden without `deleteConversation`.
    pub async fn delete_conversation(&self, conv: &ConversationRef) -> Result<()> {
        let conversation = self.palaver.conversation(&self.service, conv).await?;
        let conv = Self::sid_ref(&conversation.sid);
        let participant = self.my_participant(&conv).await?;
        self.grants(participant.as_ref()).await?.require("deleteConversation")?;
        let mut params = self.hook_params(WebhookEventType::OnConversationRemove);
        params.push("ConversationSid", conversation.sid.as_str());
        params.opt("FriendlyName", conversation.friendly_name.as_deref());
        params.opt("UniqueName", conversation.unique_name.as_deref());
        params.push("Attributes", conversation.attributes.as_str());
        self.ask(WebhookEventType::OnConversationRemove, params).await?;
        self.palaver.delete_conversation(&self.service, &conv).await
    }

    /// The caller joins; the conversation's creator gets the creator role.
    ///
    /// # Errors
    /// Forbidden without `joinConversation`; already a participant; closed.
    pub async fn join(&self, conv: &ConversationRef) -> Result<Participant> {
        let conversation = self.palaver.conversation(&self.service, conv).await?;
        self.grants(None).await?.require("joinConversation")?;
        let service = self.palaver.service(&self.service).await?;
        let role = if conversation.created_by.as_deref() == Some(self.identity.as_str()) {
            service.creator_role_sid
        } else {
            service.participant_role_sid
        };
        let add = AddParticipant {
            kind: ParticipantKind::Chat(self.identity.clone()),
            attributes: None,
            role_sid: Some(role),
            date_created: None,
            date_updated: None,
        };
        let add = self.ask_participant_add(&conversation.sid, add).await?;
        self.palaver.add_participant(&self.service, &Self::sid_ref(&conversation.sid), add).await
    }

    /// The caller leaves.
    ///
    /// # Errors
    /// Not a participant; forbidden without `leaveConversation`.
    pub async fn leave(&self, conv: &ConversationRef) -> Result<()> {
        let (conversation_sid, participant, grants) = self.require_participant(conv).await?;
        grants.require("leaveConversation")?;
        self.ask_participant_remove(&participant).await?;
        self.palaver
            .remove_participant(&self.service, &Self::sid_ref(&conversation_sid), &ParticipantRef::Sid(participant.sid))
            .await
    }

    /// Adds a participant.
    ///
    /// # Errors
    /// Not a participant; forbidden without `addParticipant` (`addNonChatParticipant` for addresses).
    pub async fn add_participant(&self, conv: &ConversationRef, add: AddParticipant) -> Result<Participant> {
        let (conversation_sid, _, grants) = self.require_participant(conv).await?;
        match add.kind {
            ParticipantKind::Chat(_) => grants.require("addParticipant")?,
            ParticipantKind::NonChat(_) => grants.require("addNonChatParticipant")?,
        }
        let add = self.ask_participant_add(&conversation_sid, add).await?;
        self.palaver.add_participant(&self.service, &Self::sid_ref(&conversation_sid), add).await
    }

    /// Removes a participant: anyone with `removeParticipant`, or oneself with `leaveConversation`.
    ///
    /// # Errors
    /// Not a participant; forbidden; not found.
    pub async fn remove_participant(&self, conv: &ConversationRef, target: &ParticipantRef) -> Result<()> {
        let (conversation_sid, me, grants) = self.require_participant(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        let target = self.palaver.participant(&self.service, &conv, target).await?;
        if target.sid == me.sid {
            grants.require("leaveConversation")?;
        } else {
            grants.require("removeParticipant")?;
        }
        self.ask_participant_remove(&target).await?;
        self.palaver.remove_participant(&self.service, &conv, &ParticipantRef::Sid(target.sid)).await
    }

    /// Every participant.
    ///
    /// # Errors
    /// Not a participant (nor an observer).
    pub async fn participants(&self, conv: &ConversationRef) -> Result<Vec<Participant>> {
        let conversation_sid = self.require_reader(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .palaver
                .list_participants(&self.service, &conv, PageQuery { size: 100, cursor, descending: false })
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Changes a participant's attributes: one's own with `editOwnParticipantAttributes`, others' with
    /// `editAnyParticipantAttributes`.
    ///
    /// # Errors
    /// Not a participant; forbidden; not found; closed.
    pub async fn update_participant_attributes(
        &self,
        conv: &ConversationRef,
        target: &ParticipantRef,
        mut attributes: Attributes,
    ) -> Result<Participant> {
        let (conversation_sid, me, grants) = self.require_participant(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        let target = self.palaver.participant(&self.service, &conv, target).await?;
        grants.require_own_or_any(
            target.sid == me.sid,
            "editOwnParticipantAttributes",
            "editAnyParticipantAttributes",
        )?;
        let mut params = self.hook_params(WebhookEventType::OnParticipantUpdate);
        Self::participant_params(&mut params, &target);
        params.push("Attributes", attributes.as_str());
        let verdict = self.ask(WebhookEventType::OnParticipantUpdate, params).await?;
        if let Some(raw) = verdict.replacement("Attributes") {
            attributes = Attributes::parse("Attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES)?;
        }
        let patch = ParticipantPatch { attributes: Some(attributes), ..ParticipantPatch::default() };
        self.palaver.update_participant(&self.service, &conv, &ParticipantRef::Sid(target.sid), patch).await
    }

    /// Sends a message as the caller.
    ///
    /// # Errors
    /// Not a participant; forbidden without `sendMessage`; closed; invalid.
    pub async fn send_message(&self, conv: &ConversationRef, mut post: PostMessage) -> Result<Message> {
        let (conversation_sid, _, grants) = self.require_participant(conv).await?;
        grants.require("sendMessage")?;
        post.author = Some(self.identity.as_str().to_string());
        post.date_created = None;
        post.date_updated = None;
        let mut params = self.hook_params(WebhookEventType::OnMessageAdd);
        params.push("ConversationSid", conversation_sid.as_str());
        params.opt("Author", post.author.as_deref());
        params.opt("Body", post.body.as_deref());
        params.opt("Subject", post.subject.as_deref());
        params.opt("Attributes", post.attributes.as_ref().map(|a| a.as_str()));
        let verdict = self.ask(WebhookEventType::OnMessageAdd, params).await?;
        if let Some(body) = verdict.replacement("Body") {
            post.body = Some(body);
        }
        if let Some(author) = verdict.replacement("Author") {
            post.author = Some(author);
        }
        if let Some(raw) = verdict.replacement("Attributes") {
            post.attributes = Some(Attributes::parse("Attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES)?);
        }
        self.palaver.post_message(&self.service, &Self::sid_ref(&conversation_sid), post).await
    }

    /// A page of messages.
    ///
    /// # Errors
    /// Not a participant (nor an observer).
    pub async fn messages(&self, conv: &ConversationRef, page: PageQuery) -> Result<Page<Message>> {
        let conversation_sid = self.require_reader(conv).await?;
        self.palaver.list_messages(&self.service, &Self::sid_ref(&conversation_sid), page).await
    }

    /// A page of messages and whether any message lies before its first item, in one read.
    ///
    /// # Errors
    /// Not a participant (nor an observer).
    pub async fn messages_and_lead(&self, conv: &ConversationRef, page: PageQuery) -> Result<(Page<Message>, bool)> {
        let conversation_sid = self.require_reader(conv).await?;
        self.palaver.list_messages_and_lead(&self.service, &Self::sid_ref(&conversation_sid), page).await
    }

    /// Edits a message's body and/or attributes.
    ///
    /// # Errors
    /// Not a participant; forbidden (own vs any message); closed.
    pub async fn update_message(
        &self,
        conv: &ConversationRef,
        sid: &MessageSid,
        mut body: Option<String>,
        mut attributes: Option<Attributes>,
    ) -> Result<Message> {
        let (conversation_sid, _, grants) = self.require_participant(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        let message = self.palaver.message(&self.service, &conv, sid).await?;
        let own = message.author == self.identity.as_str();
        if body.is_some() {
            grants.require_own_or_any(own, "editOwnMessage", "editAnyMessage")?;
        }
        if attributes.is_some() {
            grants.require_own_or_any(own, "editOwnMessageAttributes", "editAnyMessageAttributes")?;
        }
        let mut params = self.hook_params(WebhookEventType::OnMessageUpdate);
        Self::message_params(&mut params, &message);
        if let Some(body) = &body {
            params.push("Body", body.as_str());
        }
        if let Some(attributes) = &attributes {
            params.push("Attributes", attributes.as_str());
        }
        let verdict = self.ask(WebhookEventType::OnMessageUpdate, params).await?;
        if let Some(replaced) = verdict.replacement("Body") {
            body = Some(replaced);
        }
        if let Some(raw) = verdict.replacement("Attributes") {
            attributes = Some(Attributes::parse("Attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES)?);
        }
        let patch = MessagePatch { body, attributes, ..MessagePatch::default() };
        self.palaver.update_message(&self.service, &conv, sid, patch).await
    }

    /// Deletes a message.
    ///
    /// # Errors
    /// Not a participant; forbidden (own vs any message); closed.
    pub async fn remove_message(&self, conv: &ConversationRef, sid: &MessageSid) -> Result<()> {
        let (conversation_sid, _, grants) = self.require_participant(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        let message = self.palaver.message(&self.service, &conv, sid).await?;
        grants.require_own_or_any(message.author == self.identity.as_str(), "deleteOwnMessage", "deleteAnyMessage")?;
        let mut params = self.hook_params(WebhookEventType::OnMessageRemove);
        Self::message_params(&mut params, &message);
        params.opt("Body", message.body.as_deref());
        params.push("Attributes", message.attributes.as_str());
        self.ask(WebhookEventType::OnMessageRemove, params).await?;
        self.palaver.delete_message(&self.service, &conv, sid).await
    }

    /// Sets the caller's read horizon and returns the exact unread count. With `advance_only`, a lower index
    /// keeps (and re-reports) the current horizon.
    ///
    /// # Errors
    /// Not a participant; a negative index.
    pub async fn set_read_horizon(
        &self,
        conv: &ConversationRef,
        index: Option<i64>,
        advance_only: bool,
    ) -> Result<i64> {
        let (conversation_sid, me, _) = self.require_participant(conv).await?;
        let conv = Self::sid_ref(&conversation_sid);
        if index.is_some_and(|i| i < 0) {
            return Err(InvalidInput::new("index", "must not be negative").into());
        }
        // The cached participant's horizon may be stale; advancing compares with the stored one.
        let current = if advance_only {
            self.palaver
                .participant(&self.service, &conv, &ParticipantRef::Sid(me.sid.clone()))
                .await?
                .last_read_message_index
        } else {
            None
        };
        let index = match (advance_only, index, current) {
            (true, Some(new), Some(current)) if new < current => Some(current),
            _ => index,
        };
        let patch = ParticipantPatch { last_read_message_index: Some(index), ..ParticipantPatch::default() };
        self.palaver.update_participant(&self.service, &conv, &ParticipantRef::Sid(me.sid), patch).await?;
        let mine = self.palaver.user_conversation(&self.service, &self.user_ref(), &conv).await?;
        // Without a horizon every message is unread (the stored count is then unknown, as on Twilio).
        Ok(mine.unread_messages_count.unwrap_or(mine.conversation.messages_count))
    }

    /// The caller's view of a conversation they participate in (unread count, horizon, level).
    ///
    /// # Errors
    /// Not a participant; an observer has no view of its own.
    pub async fn user_conversation(&self, conv: &ConversationRef) -> Result<UserConversation> {
        if self.observer {
            let conversation = self.palaver.conversation(&self.service, conv).await?;
            return Err(Error::NotAParticipant(conversation.sid.to_string()));
        }
        match self.palaver.user_conversation(&self.service, &self.user_ref(), conv).await {
            Err(Error::NotFound { .. }) => {
                // Only on failure: tell a missing conversation from one the caller is not in.
                let conversation = self.palaver.conversation(&self.service, conv).await?;
                Err(Error::NotAParticipant(conversation.sid.to_string()))
            }
            other => other,
        }
    }

    /// Sets the caller's notification level.
    ///
    /// # Errors
    /// Not a participant; forbidden without `editNotificationLevel`.
    pub async fn set_notification_level(&self, conv: &ConversationRef, level: NotificationLevel) -> Result<()> {
        let (conversation_sid, me, grants) = self.require_participant(conv).await?;
        grants.require("editNotificationLevel")?;
        let patch = ParticipantPatch { notification_level: Some(level), ..ParticipantPatch::default() };
        self.palaver
            .update_participant(&self.service, &Self::sid_ref(&conversation_sid), &ParticipantRef::Sid(me.sid), patch)
            .await?;
        Ok(())
    }

    /// Tells the other participants the caller is typing.
    ///
    /// # Errors
    /// Not a participant.
    pub async fn typing(&self, conv: &ConversationRef) -> Result<()> {
        let (conversation_sid, me, _) = self.require_participant(conv).await?;
        self.palaver.publish_typing(TypingNotice {
            conversation_sid,
            identity: self.identity.as_str().to_string(),
            participant_sid: me.sid,
        });
        Ok(())
    }

    /// A user of the service.
    ///
    /// # Errors
    /// Not found.
    pub async fn user(&self, identity: &str) -> Result<User> {
        self.palaver.user(&self.service, &UserRef::Identity(identity.to_string())).await
    }

    /// Changes the caller's own user.
    ///
    /// # Errors
    /// Forbidden without `editOwnUserInfo`.
    pub async fn update_me(
        &self,
        mut friendly_name: Option<FriendlyName>,
        mut attributes: Option<Attributes>,
    ) -> Result<User> {
        self.grants(None).await?.require("editOwnUserInfo")?;
        let mut params = self.hook_params(WebhookEventType::OnUserUpdate);
        params.push("Identity", self.identity.as_str());
        params.opt("FriendlyName", friendly_name.as_ref().map(|n| n.as_str()));
        params.opt("Attributes", attributes.as_ref().map(|a| a.as_str()));
        let verdict = self.ask(WebhookEventType::OnUserUpdate, params).await?;
        if let Some(name) = verdict.replacement("FriendlyName") {
            friendly_name = Some(FriendlyName::parse("FriendlyName", &name)?);
        }
        if let Some(raw) = verdict.replacement("Attributes") {
            attributes = Some(Attributes::parse("Attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES)?);
        }
        let patch = UserPatch {
            friendly_name: friendly_name.map(|n| Some(n.into_string())),
            attributes,
            ..UserPatch::default()
        };
        self.palaver.update_user(&self.service, &self.user_ref(), patch).await
    }
}

/// Pre-event webhooks: every SDK action is offered to them first.
impl UserSession {
    /// The parameters every pre-event hook of this session carries.
    fn hook_params(&self, event_type: WebhookEventType) -> Params {
        let mut params = Params::default();
        params.push("EventType", event_type.as_str());
        params.push("Source", "SDK");
        params.push("ClientIdentity", self.identity.as_str());
        params.push("ChatServiceSid", self.service.as_str());
        params
    }

    /// Asks the pre-event hooks; a rejection becomes [`Error::RejectedByWebhook`].
    async fn ask(&self, event_type: WebhookEventType, params: Params) -> Result<PreHookVerdict> {
        match self.palaver.ask_pre_hooks(&self.service, event_type, params.0).await? {
            PreHookVerdict::Reject(reason) => Err(Error::RejectedByWebhook(reason)),
            allowed => Ok(allowed),
        }
    }

    fn participant_params(params: &mut Params, participant: &Participant) {
        params.push("ConversationSid", participant.conversation_sid.as_str());
        params.push("ParticipantSid", participant.sid.as_str());
        params.opt("Identity", participant.identity.as_ref().map(|i| i.as_str()));
        params.opt("RoleSid", participant.role_sid.as_ref().map(|r| r.as_str()));
        params.push("Attributes", participant.attributes.as_str());
        if let Some(binding) = &participant.binding {
            params.push("MessagingBinding.Type", binding.kind.as_str());
            params.push("MessagingBinding.Address", binding.address.as_str());
            params.opt("MessagingBinding.ProxyAddress", binding.proxy_address.as_deref());
        }
    }

    fn message_params(params: &mut Params, message: &Message) {
        params.push("ConversationSid", message.conversation_sid.as_str());
        params.push("MessageSid", message.sid.as_str());
        params.push("Index", message.index.to_string());
        params.push("Author", message.author.as_str());
    }

    async fn ask_participant_add(
        &self,
        conversation: &ConversationSid,
        mut add: AddParticipant,
    ) -> Result<AddParticipant> {
        let mut params = self.hook_params(WebhookEventType::OnParticipantAdd);
        params.push("ConversationSid", conversation.as_str());
        match &add.kind {
            ParticipantKind::Chat(identity) => params.push("Identity", identity.as_str()),
            ParticipantKind::NonChat(binding) => {
                params.push("MessagingBinding.Type", binding.kind.as_str());
                params.push("MessagingBinding.Address", binding.address.as_str());
                params.opt("MessagingBinding.ProxyAddress", binding.proxy_address.as_deref());
            }
        }
        params.opt("RoleSid", add.role_sid.as_ref().map(|r| r.as_str()));
        params.opt("Attributes", add.attributes.as_ref().map(|a| a.as_str()));
        let verdict = self.ask(WebhookEventType::OnParticipantAdd, params).await?;
        if let Some(raw) = verdict.replacement("Attributes") {
            add.attributes = Some(Attributes::parse("Attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES)?);
        }
        Ok(add)
    }

    async fn ask_participant_remove(&self, participant: &Participant) -> Result<()> {
        let mut params = self.hook_params(WebhookEventType::OnParticipantRemove);
        Self::participant_params(&mut params, participant);
        self.ask(WebhookEventType::OnParticipantRemove, params).await.map(drop)
    }
}
