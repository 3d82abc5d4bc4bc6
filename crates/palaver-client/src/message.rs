//! [`Message`], and composing new ones with [`MessageBuilder`].

use std::sync::Arc;

use palaver_api::realtime::{
    Call, ConversationLimits, DeliveryReceiptInfo, DeliveryReceiptsPage, MessageInfo, SendMessageParams,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Conversation;
use crate::client::ClientInner;
use crate::emitter::ReplayEventEmitter;
use crate::error::{ClientError, Result};
use crate::participant::Participant;
use crate::util::{attributes_text, parse_attributes, parse_date};

/// Why a message's `updated` event fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageUpdateReason {
    /// The text changed.
    Body,
    /// Who edited it last changed.
    LastUpdatedBy,
    /// `date_created` changed.
    DateCreated,
    /// `date_updated` changed.
    DateUpdated,
    /// The attributes changed.
    Attributes,
    /// The author changed.
    Author,
    /// The aggregated delivery receipt changed.
    DeliveryReceipt,
    /// The subject changed.
    Subject,
    /// The attached media changed.
    Media,
}

impl MessageUpdateReason {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::LastUpdatedBy => "lastUpdatedBy",
            Self::DateCreated => "dateCreated",
            Self::DateUpdated => "dateUpdated",
            Self::Attributes => "attributes",
            Self::Author => "author",
            Self::DeliveryReceipt => "deliveryReceipt",
            Self::Subject => "subject",
            Self::Media => "media",
        }
    }
}

/// Names of a message's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageEventName {
    /// `updated`.
    Updated,
}

impl MessageEventName {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
        }
    }
}

/// A message's own events (also emitted on its conversation as `messageUpdated`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MessageEvent {
    /// The message was edited; `update_reasons` lists every field that changed.
    Updated {
        /// The message after the change.
        message: Message,
        /// What changed.
        update_reasons: Vec<MessageUpdateReason>,
    },
}

impl MessageEvent {
    /// The event's name.
    pub fn name(&self) -> MessageEventName {
        match self {
            Self::Updated { .. } => MessageEventName::Updated,
        }
    }
}

/// The emitter behind [`Message::events`].
pub type MessageEmitter = ReplayEventEmitter<MessageEventName, MessageEvent>;

/// A media item attached to a message, as the server describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Media {
    /// `ME…`, when the server sent one.
    pub sid: Option<String>,
    /// MIME type.
    pub content_type: Option<String>,
    /// File name.
    pub filename: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// `media`, `body` or `history`.
    pub category: Option<String>,
    /// The descriptor exactly as received.
    pub raw: Value,
}

impl Media {
    fn from_value(raw: &Value) -> Self {
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string);
        Self {
            sid: text("sid"),
            content_type: text("content_type"),
            filename: text("filename"),
            size: raw.get("size").and_then(Value::as_u64),
            category: text("category"),
            raw: raw.clone(),
        }
    }
}

/// How many recipients got a message to non-chat participants, per status.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AggregatedDeliveryReceipt {
    /// Recipients in total.
    pub total: u64,
    /// `none`, `some` or `all` of them, per status.
    pub sent: Option<String>,
    /// Delivered.
    pub delivered: Option<String>,
    /// Read.
    pub read: Option<String>,
    /// Undelivered.
    pub undelivered: Option<String>,
    /// Failed.
    pub failed: Option<String>,
}

impl AggregatedDeliveryReceipt {
    fn from_value(raw: &Value) -> Option<Self> {
        let obj = raw.as_object()?;
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
        Some(Self {
            total: obj.get("total").and_then(Value::as_u64).unwrap_or(0),
            sent: text("sent"),
            delivered: text("delivered"),
            read: text("read"),
            undelivered: text("undelivered"),
            failed: text("failed"),
        })
    }
}

/// Whether a message carries text or media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// Text only.
    Text,
    /// Has attached media.
    Media,
}

/// A message's state, parsed from the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessageData {
    pub(crate) sid: String,
    pub(crate) conversation_sid: String,
    pub(crate) index: i64,
    pub(crate) author: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) content_sid: Option<String>,
    pub(crate) attributes: Value,
    pub(crate) participant_sid: Option<String>,
    pub(crate) date_created: Option<OffsetDateTime>,
    pub(crate) date_updated: Option<OffsetDateTime>,
    pub(crate) media: Vec<Media>,
    pub(crate) delivery: Option<AggregatedDeliveryReceipt>,
}

impl MessageData {
    pub(crate) fn from_info(info: &MessageInfo) -> Self {
        Self {
            sid: info.sid.clone(),
            conversation_sid: info.conversation_sid.clone(),
            index: info.index,
            author: Some(info.author.clone()).filter(|a| !a.is_empty()),
            body: info.body.clone(),
            subject: info.subject.clone(),
            content_sid: info.content_sid.clone(),
            attributes: parse_attributes(&info.attributes),
            participant_sid: info.participant_sid.clone(),
            date_created: parse_date(Some(&info.date_created)),
            date_updated: parse_date(info.date_updated.as_deref()),
            media: info.media.iter().map(Media::from_value).collect(),
            delivery: info.delivery.as_ref().and_then(AggregatedDeliveryReceipt::from_value),
        }
    }

    /// Every field that differs between `old` and `self`.
    pub(crate) fn diff(&self, old: &Self) -> Vec<MessageUpdateReason> {
        let mut reasons = Vec::new();
        if self.body != old.body {
            reasons.push(MessageUpdateReason::Body);
        }
        if self.date_created != old.date_created {
            reasons.push(MessageUpdateReason::DateCreated);
        }
        if self.date_updated != old.date_updated {
            reasons.push(MessageUpdateReason::DateUpdated);
        }
        if self.attributes != old.attributes {
            reasons.push(MessageUpdateReason::Attributes);
        }
        if self.author != old.author {
            reasons.push(MessageUpdateReason::Author);
        }
        if self.delivery != old.delivery {
            reasons.push(MessageUpdateReason::DeliveryReceipt);
        }
        if self.subject != old.subject {
            reasons.push(MessageUpdateReason::Subject);
        }
        if self.media != old.media {
            reasons.push(MessageUpdateReason::Media);
        }
        reasons
    }
}

/// A message: a snapshot of it as delivered (an edit arrives as a new snapshot in `messageUpdated`).
#[derive(Clone)]
pub struct Message {
    pub(crate) client: Arc<ClientInner>,
    pub(crate) data: Arc<MessageData>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("sid", &self.data.sid)
            .field("index", &self.data.index)
            .field("author", &self.data.author)
            .field("body", &self.data.body)
            .finish_non_exhaustive()
    }
}

impl Message {
    pub(crate) fn new(client: Arc<ClientInner>, data: MessageData) -> Self {
        Self { client, data: Arc::new(data) }
    }

    /// The message SID (`IM…`).
    pub fn sid(&self) -> &str {
        &self.data.sid
    }

    /// Position in the conversation: increasing, never reused, possibly with gaps.
    pub fn index(&self) -> i64 {
        self.data.index
    }

    /// Who wrote it.
    pub fn author(&self) -> Option<&str> {
        self.data.author.as_deref()
    }

    /// The text.
    pub fn body(&self) -> Option<&str> {
        self.data.body.as_deref()
    }

    /// The email subject.
    pub fn subject(&self) -> Option<&str> {
        self.data.subject.as_deref()
    }

    /// The content template, if any.
    pub fn content_sid(&self) -> Option<&str> {
        self.data.content_sid.as_deref()
    }

    /// Custom attributes (`{}` by default).
    pub fn attributes(&self) -> &Value {
        &self.data.attributes
    }

    /// The author's participant SID.
    pub fn participant_sid(&self) -> Option<&str> {
        self.data.participant_sid.as_deref()
    }

    /// When it was sent.
    pub fn date_created(&self) -> Option<OffsetDateTime> {
        self.data.date_created
    }

    /// When it was last edited.
    pub fn date_updated(&self) -> Option<OffsetDateTime> {
        self.data.date_updated
    }

    /// Text or media.
    pub fn message_type(&self) -> MessageType {
        if self.data.media.is_empty() { MessageType::Text } else { MessageType::Media }
    }

    /// The first media item (Twilio's deprecated `media`).
    pub fn media(&self) -> Option<&Media> {
        self.data.media.first()
    }

    /// Every attached media item of category `media`.
    pub fn attached_media(&self) -> Vec<&Media> {
        self.data.media.iter().filter(|m| m.category.as_deref().is_none_or(|c| c == "media")).collect()
    }

    /// Delivery to non-chat recipients, summarised.
    pub fn aggregated_delivery_receipt(&self) -> Option<&AggregatedDeliveryReceipt> {
        self.data.delivery.as_ref()
    }

    /// The conversation SID.
    pub fn conversation_sid(&self) -> &str {
        &self.data.conversation_sid
    }

    /// The conversation it belongs to.
    pub fn conversation(&self) -> Conversation {
        Conversation::handle(self.client.clone(), &self.data.conversation_sid)
    }

    /// This message's own events: `updated`.
    pub fn events(&self) -> Arc<MessageEmitter> {
        self.client.message_emitter(&self.data.conversation_sid, &self.data.sid)
    }

    /// Replaces the text.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not edit the message (20403).
    pub async fn update_body(&self, body: &str) -> Result<Message> {
        self.update(Some(body.to_string()), None).await
    }

    /// Replaces the attributes.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not edit the message (20403) or they are too large.
    pub async fn update_attributes(&self, attributes: Value) -> Result<Message> {
        self.update(None, Some(attributes_text(&attributes))).await
    }

    async fn update(&self, body: Option<String>, attributes: Option<String>) -> Result<Message> {
        let info: MessageInfo = self
            .client
            .call_as(
                Call::UpdateMessage {
                    conversation: self.data.conversation_sid.clone(),
                    message: self.data.sid.clone(),
                    body,
                    attributes,
                },
                false,
            )
            .await?;
        Ok(Message::new(self.client.clone(), MessageData::from_info(&info)))
    }

    /// Deletes the message.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not delete it (20403).
    pub async fn remove(&self) -> Result<Message> {
        self.client
            .call(
                Call::RemoveMessage {
                    conversation: self.data.conversation_sid.clone(),
                    message: self.data.sid.clone(),
                },
                false,
            )
            .await?;
        Ok(self.clone())
    }

    /// Where the message stands with each non-chat recipient (SMS, WhatsApp, email): one receipt per
    /// recipient, in the order they were created.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller is not a participant or the message is gone.
    pub async fn get_detailed_delivery_receipts(&self) -> Result<Vec<DetailedDeliveryReceipt>> {
        let page: DeliveryReceiptsPage = self
            .client
            .call_as(
                Call::GetDeliveryReceipts {
                    conversation: self.data.conversation_sid.clone(),
                    message: self.data.sid.clone(),
                },
                true,
            )
            .await?;
        Ok(page.items.into_iter().map(DetailedDeliveryReceipt::from_info).collect())
    }

    /// Download URLs, valid for a few minutes, for every attached media item (by `ME…` SID).
    ///
    /// # Errors
    /// [`ClientError::Server`] when the caller may not read them.
    pub async fn get_temporary_content_urls_for_attached_media(
        &self,
    ) -> Result<std::collections::HashMap<String, String>> {
        let sids: Vec<String> = self.data.media.iter().filter_map(|m| m.sid.clone()).collect();
        temporary_urls(&self.client, &sids).await
    }

    /// Download URLs, valid for a few minutes, for the given media SIDs of this message.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a SID that is not attached to this message.
    pub async fn get_temporary_content_urls_for_media_sids(
        &self,
        sids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        if let Some(stranger) = sids.iter().find(|s| !self.data.media.iter().any(|m| m.sid.as_ref() == Some(*s))) {
            return Err(ClientError::InvalidArgument(format!("media {stranger} is not attached to this message")));
        }
        temporary_urls(&self.client, sids).await
    }

    /// The attached media of the given categories (`media`, `body`, `history`).
    pub fn get_media_by_categories(&self, categories: &[&str]) -> Vec<&Media> {
        self.data.media.iter().filter(|m| m.category.as_deref().is_some_and(|c| categories.contains(&c))).collect()
    }

    /// The email body of a content type (`text/plain` when `None`), if the message has one.
    pub fn get_email_body(&self, content_type: Option<&str>) -> Option<&Media> {
        self.email_part("body", content_type.unwrap_or("text/plain"))
    }

    /// The email history of a content type (`text/plain` when `None`), if the message has one.
    pub fn get_email_history(&self, content_type: Option<&str>) -> Option<&Media> {
        self.email_part("history", content_type.unwrap_or("text/plain"))
    }

    fn email_part(&self, category: &str, content_type: &str) -> Option<&Media> {
        self.data.media.iter().find(|m| {
            m.category.as_deref() == Some(category)
                && m.content_type.as_deref().is_some_and(|t| t.split(';').next() == Some(content_type))
        })
    }

    /// The author's participant: by participant SID, then by identity.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when neither finds a participant.
    pub async fn get_participant(&self) -> Result<Participant> {
        let conversation = self.conversation();
        if let Some(sid) = &self.data.participant_sid
            && let Ok(Some(p)) = conversation.get_participant_by_sid(sid).await
        {
            return Ok(p);
        }
        if let Some(author) = &self.data.author
            && let Ok(Some(p)) = conversation.get_participant_by_identity(author).await
        {
            return Ok(p);
        }
        Err(ClientError::NotFound(format!(
            "participant with SID '{}' or identity '{}'",
            self.data.participant_sid.as_deref().unwrap_or(""),
            self.data.author.as_deref().unwrap_or("")
        )))
    }
}

/// The delivery of a message to one non-chat recipient (Twilio's `DetailedDeliveryReceipt`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DetailedDeliveryReceipt {
    /// `DY…`.
    pub sid: String,
    /// The message.
    pub message_sid: String,
    /// The conversation.
    pub conversation_sid: String,
    /// The channel's id for the sent message (`SM…`, an email Message-ID).
    pub channel_message_sid: Option<String>,
    /// The recipient participant.
    pub participant_sid: String,
    /// `queued`, `sent`, `delivered`, `read`, `failed` or `undelivered`.
    pub status: String,
    /// The channel's error code; 0 when none.
    pub error_code: i64,
    /// Created at.
    pub date_created: Option<OffsetDateTime>,
    /// Last changed at.
    pub date_updated: Option<OffsetDateTime>,
}

impl DetailedDeliveryReceipt {
    fn from_info(info: DeliveryReceiptInfo) -> Self {
        Self {
            date_created: parse_date(Some(&info.date_created)),
            date_updated: parse_date(Some(&info.date_updated)),
            sid: info.sid,
            message_sid: info.message_sid,
            conversation_sid: info.conversation_sid,
            channel_message_sid: info.channel_message_sid,
            participant_sid: info.participant_sid,
            status: info.status,
            error_code: info.error_code,
        }
    }
}

/// Media to attach: its bytes and type (Twilio's `SendMediaOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaContent {
    /// MIME type; must not be empty.
    pub content_type: String,
    /// File name.
    pub filename: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

impl MediaContent {
    /// Media of `content_type` with `data`.
    pub fn new(content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self { content_type: content_type.into(), filename: None, data: data.into() }
    }

    /// Sets the file name.
    pub fn with_filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }
}

/// What [`Conversation::send_message`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageContent {
    /// Text (may be empty).
    Text(String),
    /// No body at all (sent as an empty text, as Twilio's SDK does for `null`).
    None,
    /// One media item.
    Media(MediaContent),
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        Self::Text(text.to_string())
    }
}

impl From<String> for MessageContent {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&String> for MessageContent {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<Option<String>> for MessageContent {
    fn from(text: Option<String>) -> Self {
        text.map_or(Self::None, Self::Text)
    }
}

impl From<MediaContent> for MessageContent {
    fn from(media: MediaContent) -> Self {
        Self::Media(media)
    }
}

/// Email options of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SendEmailOptions {
    /// Subject; must not be empty when set.
    pub subject: Option<String>,
}

impl SendEmailOptions {
    /// Options with `subject`.
    pub fn subject(subject: impl Into<String>) -> Self {
        Self { subject: Some(subject.into()) }
    }
}

/// Composes a message step by step; [`build`](Self::build) checks it against the server's limits.
///
/// # Examples
/// ```no_run
/// # async fn demo(conversation: palaver_client::Conversation) -> Result<(), palaver_client::ClientError> {
/// let index = conversation
///     .prepare_message()
///     .set_body("hello")
///     .set_attributes(serde_json::json!({"importance": "high"}))
///     .build()?
///     .send()
///     .await?;
/// println!("sent as message {index}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MessageBuilder {
    conversation: Conversation,
    limits: ConversationLimits,
    body: Option<String>,
    subject: Option<String>,
    attributes: Value,
    media: Vec<MediaContent>,
    email_bodies: Vec<(String, MediaContent)>,
    email_histories: Vec<(String, MediaContent)>,
}

impl MessageBuilder {
    pub(crate) fn new(conversation: Conversation, limits: ConversationLimits) -> Self {
        Self {
            conversation,
            limits,
            body: None,
            subject: None,
            attributes: Value::Object(Default::default()),
            media: Vec::new(),
            email_bodies: Vec::new(),
            email_histories: Vec::new(),
        }
    }

    /// Sets the text.
    pub fn set_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the email subject.
    pub fn set_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the attributes.
    pub fn set_attributes(mut self, attributes: Value) -> Self {
        self.attributes = attributes;
        self
    }

    /// Adds a media item.
    pub fn add_media(mut self, media: MediaContent) -> Self {
        self.media.push(media);
        self
    }

    /// Sets the email body of `content_type` (one per type).
    pub fn set_email_body(mut self, content_type: impl Into<String>, body: MediaContent) -> Self {
        let content_type = content_type.into();
        self.email_bodies.retain(|(t, _)| *t != content_type);
        self.email_bodies.push((content_type, body));
        self
    }

    /// Sets the email history of `content_type` (one per type).
    pub fn set_email_history(mut self, content_type: impl Into<String>, history: MediaContent) -> Self {
        let content_type = content_type.into();
        self.email_histories.retain(|(t, _)| *t != content_type);
        self.email_histories.push((content_type, history));
        self
    }

    /// Checks the message against the limits the server announced.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an email content type the server does not allow, more media than
    /// `media_attachments_count_limit`, an empty media content type or an empty subject.
    pub fn build(self) -> Result<UnsentMessage> {
        for (content_type, _) in &self.email_bodies {
            if !self.limits.email_bodies_allowed_content_types.contains(content_type) {
                return Err(ClientError::InvalidArgument(format!(
                    "unsupported email body content type {content_type}"
                )));
            }
        }
        for (content_type, _) in &self.email_histories {
            if !self.limits.email_histories_allowed_content_types.contains(content_type) {
                return Err(ClientError::InvalidArgument(format!(
                    "unsupported email history content type {content_type}"
                )));
            }
        }
        let limit = self.limits.media_attachments_count_limit as usize;
        if self.media.len() > limit {
            return Err(ClientError::InvalidArgument(format!(
                "too many media attachments in the message ({} > {limit})",
                self.media.len()
            )));
        }
        if self.media.iter().any(|m| m.content_type.is_empty()) {
            return Err(ClientError::InvalidArgument("media needs a content type".into()));
        }
        if self.subject.as_deref() == Some("") {
            return Err(ClientError::InvalidArgument("the subject must not be empty".into()));
        }
        Ok(UnsentMessage {
            conversation: self.conversation,
            body: self.body,
            subject: self.subject,
            attributes: self.attributes,
            media: self.media,
            email_bodies: self.email_bodies,
            email_histories: self.email_histories,
            idempotency_key: crate::util::random_key(),
        })
    }
}

/// A checked message, ready to [`send`](Self::send).
#[derive(Debug, Clone)]
pub struct UnsentMessage {
    conversation: Conversation,
    body: Option<String>,
    subject: Option<String>,
    attributes: Value,
    media: Vec<MediaContent>,
    email_bodies: Vec<(String, MediaContent)>,
    email_histories: Vec<(String, MediaContent)>,
    /// Chosen at build time: sending the same `UnsentMessage` twice stores it once.
    idempotency_key: String,
}

impl UnsentMessage {
    /// Sends the message; resolves to its index.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the server refuses an upload (too large, a content type it does not allow)
    /// or the message.
    pub async fn send(&self) -> Result<i64> {
        // Uploaded one after another, as Twilio's SDK does, so the message lists them in order.
        let client = &self.conversation.client;
        let mut media_sids = Vec::new();
        let parts = self
            .media
            .iter()
            .map(|m| ("media", m))
            .chain(self.email_bodies.iter().map(|(_, m)| ("body", m)))
            .chain(self.email_histories.iter().map(|(_, m)| ("history", m)));
        for (category, media) in parts {
            media_sids.push(upload(client, category, media).await?);
        }
        let params = SendMessageParams {
            conversation: self.conversation.sid().to_string(),
            body: Some(self.body.clone().unwrap_or_default()),
            attributes: Some(attributes_text(&self.attributes)),
            subject: self.subject.clone(),
            media_sids,
            idempotency_key: Some(self.idempotency_key.clone()),
        };
        send(&self.conversation.client, params).await
    }
}

/// Uploads one media item; returns its `ME…` SID.
pub(crate) async fn upload(client: &Arc<ClientInner>, category: &str, media: &MediaContent) -> Result<String> {
    let mut query = vec![("Category", category.to_string())];
    if let Some(name) = &media.filename {
        query.push(("Filename", name.clone()));
    }
    let uploaded = client
        .rest(|http, base| {
            http.post(format!("{base}/v1/Media"))
                .query(&query)
                .header("Content-Type", media.content_type.clone())
                .body(media.data.clone())
        })
        .await?;
    uploaded["sid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol("the upload answer has no media SID".into()))
}

/// Short-lived URLs to download media without credentials, by SID.
pub(crate) async fn temporary_urls(
    client: &Arc<ClientInner>,
    sids: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    let mut urls = std::collections::HashMap::new();
    for sid in sids {
        let found = client.rest(|http, base| http.get(format!("{base}/v1/Media/{sid}"))).await?;
        let url = found["links"]["content_direct_temporary"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("the media answer has no content URL".into()))?;
        urls.insert(sid.clone(), url.to_string());
    }
    Ok(urls)
}

/// Sends a message, retrying across reconnects with the same idempotency key; returns its index.
pub(crate) async fn send(client: &Arc<ClientInner>, params: SendMessageParams) -> Result<i64> {
    let info: MessageInfo = client.call_as(Call::SendMessage(params), true).await?;
    Ok(info.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> MessageInfo {
        MessageInfo {
            sid: "IM00000000000000000000000000000001".into(),
            conversation_sid: "CH00000000000000000000000000000001".into(),
            index: 3,
            author: "alice".into(),
            body: Some("hi".into()),
            subject: None,
            attributes: "{}".into(),
            participant_sid: None,
            content_sid: None,
            media: vec![],
            delivery: None,
            date_created: "2026-01-01T00:00:00Z".into(),
            date_updated: None,
        }
    }

    #[test]
    fn edits_list_every_changed_field() {
        let old = MessageData::from_info(&info());
        let mut edited = info();
        edited.body = Some("hello".into());
        edited.attributes = r#"{"edited":true}"#.into();
        edited.date_updated = Some("2026-01-01T00:05:00Z".into());
        let new = MessageData::from_info(&edited);
        assert_eq!(
            new.diff(&old),
            vec![MessageUpdateReason::Body, MessageUpdateReason::DateUpdated, MessageUpdateReason::Attributes]
        );
    }

    #[test]
    fn bad_server_data_degrades_instead_of_failing() {
        let mut odd = info();
        odd.attributes = "{not json".into();
        odd.date_created = "never".into();
        odd.delivery = Some(Value::String("weird".into()));
        odd.media = vec![serde_json::json!(42)];
        let data = MessageData::from_info(&odd);
        assert_eq!(data.attributes, serde_json::json!({}));
        assert_eq!(data.date_created, None);
        assert_eq!(data.delivery, None);
        assert_eq!(data.media.len(), 1);
    }
}
