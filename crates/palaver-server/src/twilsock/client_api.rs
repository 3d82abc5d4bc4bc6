//! The SDK's client API (`/Client/v2/…`) behind the tunnel: one handler per endpoint, each headed by its
//! `METHOD /path` (relative to `/Client/v2/Services/{IS}`), answering in the snake_case JSON the SDK reads.
//! The caller is the connection's user; every call goes through its [`UserSession`], so the same role checks
//! and pre-event hooks apply as on the realtime API.

use palaver_api::sid::{MediaSid, MessageSid};
use palaver_core::event::participant_info;
use palaver_core::input::*;
use palaver_core::model::{BindingKind, Conversation, Message, MessagingBinding, Participant, User, UserConversation};
use palaver_core::service::{AddParticipant, CreateConversation, ParticipantKind, PostMessage};
use palaver_core::session::UserSession;
use palaver_core::store::{ConversationPatch, ConversationRef, Cursor, PageQuery, ParticipantRef};
use serde_json::{Map, Value, json};

use super::sync::{ObjectId, ObjectKind};
use crate::error::{ApiError, ApiResult};
use crate::resources::date;

/// Where the client API lives for one connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientLinks {
    /// The service's prefix: `{base}/Client/v2/Services/{IS}`.
    pub(crate) service: String,
    /// Where media are uploaded over plain HTTP (must be reachable for real).
    pub(crate) media_base: String,
}

impl ClientLinks {
    fn conversation(&self, sid: &str) -> String {
        format!("{}/Conversations/{sid}", self.service)
    }
}

/// A request body: a JSON object (or form fields, read as strings).
#[derive(Debug, Default)]
pub(crate) struct Body(pub(crate) Map<String, Value>);

impl Body {
    /// A field that is present (`Some(Null)` when sent as null).
    fn field(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    fn string(&self, name: &str) -> ApiResult<Option<String>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::invalid(name, format!("{other} is not a string"))),
        }
    }

    /// Attributes arrive as a JSON string (the SDK stringifies them), or as JSON itself.
    fn attributes(&self, name: &'static str, max: usize) -> ApiResult<Option<Attributes>> {
        let raw = match self.0.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        Ok(Some(Attributes::parse(name, &raw, max)?))
    }
}

fn conversation_json(links: &ClientLinks, account: &str, c: &Conversation) -> Value {
    let sid = c.sid.as_str();
    let url = links.conversation(sid);
    json!({
        "sid": sid,
        "account_sid": account,
        "chat_service_sid": c.service_sid.as_str(),
        "friendly_name": c.friendly_name,
        "unique_name": c.unique_name,
        "attributes": c.attributes.as_str(),
        "date_created": date(c.date_created),
        "date_updated": date(c.date_updated),
        "created_by": c.created_by.clone().unwrap_or_default(),
        "state": c.state.as_str(),
        "url": url,
        "links": {"participants": format!("{url}/Participants"), "messages": format!("{url}/Messages")},
        "sync_objects": {
            "conversation": ObjectId::conversation(ObjectKind::Document, sid).name(),
            "messages": ObjectId::conversation(ObjectKind::Messages, sid).name(),
            "participants": ObjectId::conversation(ObjectKind::Roster, sid).name(),
        },
        "participants_count": c.participants_count,
        "messages_count": c.messages_count,
    })
}

fn user_conversation_json(links: &ClientLinks, account: &str, uc: &UserConversation, unread: Option<i64>) -> Value {
    let mut out = conversation_json(links, account, &uc.conversation);
    out["conversation_sid"] = json!(uc.conversation.sid.as_str());
    out["status"] = json!("joined");
    out["participant_sid"] = json!(uc.participant.sid.as_str());
    out["last_read_message_index"] = json!(uc.participant.last_read_message_index);
    out["notification_level"] = json!(uc.participant.notification_level.as_str());
    out["unread_messages_count"] = json!(unread);
    out
}

fn participant_json(links: &ClientLinks, account: &str, p: &Participant) -> Value {
    let info = participant_info(p);
    let url = format!("{}/Participants/{}", links.conversation(p.conversation_sid.as_str()), p.sid);
    json!({
        "sid": info.sid,
        "account_sid": account,
        "conversation_sid": info.conversation_sid,
        "identity": info.identity,
        "attributes": info.attributes,
        "date_created": date(p.date_created),
        "date_updated": date(p.date_updated),
        "role_sid": info.role_sid,
        "messaging_binding": info.messaging_binding.map(|b| json!({
            "type": b.kind, "address": b.address, "proxy_address": b.proxy_address,
            "projected_address": b.projected_address, "name": b.name, "level": b.level,
        })),
        "last_read_message_index": info.last_read_message_index,
        "last_read_timestamp": info.last_read_timestamp,
        "url": url,
    })
}

fn message_json(links: &ClientLinks, account: &str, m: &Message) -> Value {
    let info = palaver_core::event::message_info(m);
    let url = format!("{}/Messages/{}", links.conversation(m.conversation_sid.as_str()), m.sid);
    json!({
        "sid": info.sid,
        "account_sid": account,
        "conversation_sid": info.conversation_sid,
        "index": info.index,
        "author": info.author,
        "body": info.body,
        "subject": info.subject,
        "attributes": info.attributes,
        "date_created": info.date_created,
        "date_updated": info.date_updated,
        "participant_sid": info.participant_sid,
        "media": if info.media.is_empty() { Value::Null } else { Value::Array(info.media) },
        "delivery": info.delivery,
        "url": url,
    })
}

pub(crate) fn user_json(links: &ClientLinks, account: &str, u: &User) -> Value {
    let identity = u.identity.as_str();
    json!({
        "sid": u.sid.as_str(),
        "account_sid": account,
        "chat_service_sid": u.service_sid.as_str(),
        "identity": identity,
        "friendly_name": u.friendly_name,
        "attributes": u.attributes.as_str(),
        "is_online": null,
        "is_notifiable": null,
        "date_created": date(u.date_created),
        "date_updated": date(u.date_updated),
        "url": format!("{}/Users/{}", links.service, super::sync::encode_segment(identity)),
        "sync_objects": {"user_info_map": ObjectId::user(ObjectKind::UserInfo, identity).name()},
    })
}

/// An oldest-first page from the SDK's `PageToken` and `PageSize` (50 by default, at most 100).
fn page_query(page_token: Option<&str>, page_size: Option<&str>) -> ApiResult<PageQuery> {
    let size = page_size.and_then(|s| s.parse::<u32>().ok()).unwrap_or(50).clamp(1, 100);
    let cursor = match page_token {
        None | Some("") => None,
        Some(raw) => {
            let token = palaver_api::rest::PageToken::parse(raw)
                .ok_or_else(|| ApiError::invalid("PageToken", "is not a page token of this list"))?;
            Some(Cursor { backwards: token.backwards, key: token.key })
        }
    };
    Ok(PageQuery { size, cursor, descending: false })
}

fn encode_cursor(cursor: Cursor) -> String {
    palaver_api::rest::PageToken { backwards: cursor.backwards, key: cursor.key }.encode()
}

/// GET /Client/v2/Configuration
pub(crate) fn configuration(links: &ClientLinks, session: &UserSession, typing_timeout_secs: u64) -> Value {
    let identity = session.identity().as_str();
    let limits = palaver_core::media::MediaLimits::default();
    let media = format!("{}/mcs/v1/Services/{}", links.media_base, session.service());
    json!({
        "identity": identity,
        "links": {
            "my_conversations": format!("{}/Me/Conversations", links.service),
            "conversations": format!("{}/Conversations", links.service),
            "users": format!("{}/Users", links.service),
            "current_user": format!("{}/Users/{}", links.service, super::sync::encode_segment(identity)),
            "typing": format!("{}/Typing", links.service),
            "media_service": format!("{media}/Media"),
            "media_set_service": format!("{media}/MediaSet"),
            "messages_receipts": format!("{}/Conversations/%s/Messages/%s/Receipts", links.service),
        },
        "sync_objects": {
            "my_conversations": ObjectId::user(ObjectKind::MyConversations, identity).name(),
            "my_user_info": ObjectId::user(ObjectKind::UserInfo, identity).name(),
        },
        "options": {
            "consumption_report_interval": "PT5S",
            "user_infos_to_subscribe": 100,
            "reachability_enabled": false,
            "http_cache_interval": "PT5S",
            "my_conversations_page_size": 50,
            "typing_timeout": typing_timeout_secs,
            "media_attachments_count_limit": limits.count,
            "media_attachment_size_limit_in_mb": limits.item_mb,
            "media_attachments_total_size_limit_in_mb": limits.total_mb,
            "email_histories_allowed_mime_types": limits.email_history_types,
            "email_bodies_allowed_mime_types": limits.email_body_types,
        },
    })
}

/// GET /Me/Conversations?PageToken&PageSize
pub(crate) async fn my_conversations(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    page_token: Option<&str>,
    page_size: Option<&str>,
) -> ApiResult<Value> {
    let query = page_query(page_token, page_size)?;
    let page = session.my_conversations(query).await?;
    let conversations: Vec<Value> =
        page.items.iter().map(|uc| user_conversation_json(links, account, uc, uc.unread_messages_count)).collect();
    Ok(json!({
        "conversations": conversations,
        "meta": {
            "next_token": page.next.map(encode_cursor),
            "previous_token": page.previous.map(encode_cursor),
            "page_size": query.size,
        },
    }))
}

/// GET /Me/Conversations/{Sid or UniqueName}
pub(crate) async fn my_conversation(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
) -> ApiResult<Value> {
    let found = session.conversation(&ConversationRef::parse(conversation)).await?;
    Ok(match found.mine {
        Some(uc) => user_conversation_json(links, account, &uc, uc.unread_messages_count),
        None => {
            let mut out = conversation_json(links, account, &found.conversation);
            out["conversation_sid"] = json!(found.conversation.sid.as_str());
            out["status"] = json!("notParticipating");
            out["notification_level"] = json!("default");
            out["last_read_message_index"] = Value::Null;
            out["unread_messages_count"] = Value::Null;
            out
        }
    })
}

/// POST /Me/Conversations/{Sid} — `last_read_message_index` (a number or null) and/or `notification_level`.
pub(crate) async fn update_my_conversation(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    body: &Body,
) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    if let Some(level) = body.string("notification_level")? {
        session.set_notification_level(&conv, NotificationLevel::parse(&level)?).await?;
    }
    let mut unread = None;
    if let Some(raw) = body.field("last_read_message_index") {
        let index = match raw {
            Value::Null => None,
            other => Some(other.as_i64().filter(|i| *i >= 0).ok_or_else(|| {
                ApiError::invalid("last_read_message_index", format!("{other} is not a message index"))
            })?),
        };
        unread = Some(session.set_read_horizon(&conv, index, false).await?);
    }
    let uc = session.user_conversation(&conv).await?;
    Ok(user_conversation_json(links, account, &uc, unread.or(uc.unread_messages_count)))
}

/// POST /Conversations — `friendly_name`, `unique_name`, `attributes`.
pub(crate) async fn create_conversation(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    body: &Body,
) -> ApiResult<Value> {
    let create = CreateConversation {
        friendly_name: body.string("friendly_name")?.map(|n| FriendlyName::parse("friendly_name", &n)).transpose()?,
        unique_name: body
            .string("unique_name")?
            .filter(|u| !u.is_empty())
            .map(|u| UniqueName::parse(&u))
            .transpose()?,
        attributes: body.attributes("attributes", MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
        ..CreateConversation::default()
    };
    let created = session.create_conversation(create).await?;
    Ok(conversation_json(links, account, &created))
}

/// GET /Conversations/{Sid}
pub(crate) async fn conversation(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
) -> ApiResult<Value> {
    let found = session.conversation(&ConversationRef::parse(conversation)).await?;
    Ok(conversation_json(links, account, &found.conversation))
}

/// POST /Conversations/{Sid} — `friendly_name`, `unique_name` (`""` clears it), `attributes`.
pub(crate) async fn update_conversation(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    body: &Body,
) -> ApiResult<Value> {
    let patch = ConversationPatch {
        friendly_name: body
            .string("friendly_name")?
            .map(|n| FriendlyName::parse("friendly_name", &n).map(|n| Some(n.into_string())))
            .transpose()?,
        unique_name: match body.field("unique_name") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(_) => match body.string("unique_name")?.unwrap_or_default() {
                u if u.is_empty() => Some(None),
                u => Some(Some(UniqueName::parse(&u)?.as_str().to_string())),
            },
        },
        attributes: body.attributes("attributes", MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
        ..ConversationPatch::default()
    };
    let updated = session.update_conversation(&ConversationRef::parse(conversation), patch).await?;
    Ok(conversation_json(links, account, &updated))
}

/// DELETE /Conversations/{Sid}
pub(crate) async fn delete_conversation(session: &UserSession, conversation: &str) -> ApiResult<()> {
    Ok(session.delete_conversation(&ConversationRef::parse(conversation)).await?)
}

/// POST /Conversations/{Sid}/Participants — `identity` (the caller's own: a join), `attributes`, or
/// `messaging_binding {address, proxy_address, name, level}` for a non-chat participant.
pub(crate) async fn add_participant(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    body: &Body,
) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    let attributes = body.attributes("attributes", MAX_SMALL_ATTRIBUTES_BYTES)?;
    let kind = match (body.string("identity")?, body.field("messaging_binding")) {
        (Some(identity), _) => {
            let identity = Identity::parse("identity", &identity)?;
            if &identity == session.identity() {
                let joined = session.join(&conv).await?;
                if attributes.is_none() {
                    return Ok(participant_json(links, account, &joined));
                }
                let updated = session
                    .update_participant_attributes(
                        &conv,
                        &ParticipantRef::Sid(joined.sid),
                        attributes.unwrap_or_default(),
                    )
                    .await?;
                return Ok(participant_json(links, account, &updated));
            }
            ParticipantKind::Chat(identity)
        }
        (None, Some(Value::Object(binding))) => {
            let text = |name: &str| binding.get(name).and_then(Value::as_str).map(str::to_string);
            let address = Address::parse("messaging_binding.address", &text("address").unwrap_or_default())?;
            let proxy = Address::parse("messaging_binding.proxy_address", &text("proxy_address").unwrap_or_default())?;
            let level = text("level");
            if let Some(level) = &level
                && level != "to"
                && level != "cc"
            {
                return Err(ApiError::invalid("messaging_binding.level", format!("'{level}' is not to or cc")));
            }
            ParticipantKind::NonChat(MessagingBinding {
                kind: BindingKind::of_address(address.as_str()),
                address: address.as_str().to_string(),
                proxy_address: Some(proxy.as_str().to_string()),
                projected_address: None,
                name: text("name"),
                level,
            })
        }
        _ => return Err(ApiError::invalid("identity", "either identity or messaging_binding is required")),
    };
    let add = AddParticipant { kind, attributes, role_sid: None, date_created: None, date_updated: None };
    let added = session.add_participant(&conv, add).await?;
    Ok(participant_json(links, account, &added))
}

/// GET /Conversations/{Sid}/Participants/{Sid or Identity}
pub(crate) async fn participant(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    participant: &str,
) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    let target = ParticipantRef::parse(participant);
    let found = session.participants(&conv).await?.into_iter().find(|p| match &target {
        ParticipantRef::Sid(sid) => &p.sid == sid,
        ParticipantRef::Identity(identity) => p.identity.as_ref().is_some_and(|i| i.as_str() == identity),
    });
    let found = found
        .ok_or_else(|| ApiError::not_found(format!("/Conversations/{conversation}/Participants/{participant}")))?;
    Ok(participant_json(links, account, &found))
}

/// POST /Conversations/{Sid}/Participants/{Sid or Identity} — `attributes`.
pub(crate) async fn update_participant(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    participant: &str,
    body: &Body,
) -> ApiResult<Value> {
    let attributes = body
        .attributes("attributes", MAX_SMALL_ATTRIBUTES_BYTES)?
        .ok_or_else(|| ApiError::invalid("attributes", "is required"))?;
    let updated = session
        .update_participant_attributes(
            &ConversationRef::parse(conversation),
            &ParticipantRef::parse(participant),
            attributes,
        )
        .await?;
    Ok(participant_json(links, account, &updated))
}

/// DELETE /Conversations/{Sid}/Participants/{Sid or Identity} — a leave when it is the caller.
pub(crate) async fn remove_participant(session: &UserSession, conversation: &str, participant: &str) -> ApiResult<()> {
    let conv = ConversationRef::parse(conversation);
    if participant == session.identity().as_str() {
        return Ok(session.leave(&conv).await?);
    }
    Ok(session.remove_participant(&conv, &ParticipantRef::parse(participant)).await?)
}

/// POST /Conversations/{Sid}/Messages — `body`, `attributes`, `subject`, `media_sids`.
pub(crate) async fn send_message(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    body: &Body,
    mutation_id: Option<&str>,
) -> ApiResult<Value> {
    let media = match body.field("media_sids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(sids)) => sids
            .iter()
            .map(|raw| {
                raw.as_str()
                    .and_then(|s| MediaSid::parse(s).ok())
                    .ok_or_else(|| ApiError::invalid("media_sids", format!("{raw} is not a media SID")))
            })
            .collect::<ApiResult<Vec<_>>>()?,
        Some(other) => return Err(ApiError::invalid("media_sids", format!("{other} is not a list"))),
    };
    let post = PostMessage {
        body: Some(body.string("body")?.unwrap_or_default()),
        subject: body.string("subject")?,
        attributes: body.attributes("attributes", MAX_SMALL_ATTRIBUTES_BYTES)?,
        content_sid: body.string("content_sid")?,
        // The SDK's mutation id makes a retried send (after a lost reply) store the message once; keys are per
        // user, so nobody can replay someone else's.
        idempotency_key: mutation_id
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .map(|k| format!("{}\u{1f}{k}", session.identity())),
        media,
        ..PostMessage::default()
    };
    let sent = session.send_message(&ConversationRef::parse(conversation), post).await?;
    Ok(message_json(links, account, &sent))
}

fn message_sid(conversation: &str, raw: &str) -> ApiResult<MessageSid> {
    MessageSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Conversations/{conversation}/Messages/{raw}")))
}

/// GET /Conversations/{Sid}/Messages/{Sid}
pub(crate) async fn message(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    message: &str,
) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    session.joined_conversation(&conv).await?;
    let found = session.palaver().message(session.service(), &conv, &message_sid(conversation, message)?).await?;
    Ok(message_json(links, account, &found))
}

/// POST /Conversations/{Sid}/Messages/{Sid} — `body`, `attributes`.
pub(crate) async fn update_message(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    conversation: &str,
    message: &str,
    body: &Body,
) -> ApiResult<Value> {
    let updated = session
        .update_message(
            &ConversationRef::parse(conversation),
            &message_sid(conversation, message)?,
            body.string("body")?,
            body.attributes("attributes", MAX_SMALL_ATTRIBUTES_BYTES)?,
        )
        .await?;
    Ok(message_json(links, account, &updated))
}

/// DELETE /Conversations/{Sid}/Messages/{Sid}
pub(crate) async fn remove_message(session: &UserSession, conversation: &str, message: &str) -> ApiResult<()> {
    Ok(session.remove_message(&ConversationRef::parse(conversation), &message_sid(conversation, message)?).await?)
}

/// GET /Conversations/{Sid}/Messages/{Sid}/Receipts
pub(crate) async fn receipts(session: &UserSession, conversation: &str, message: &str) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    session.joined_conversation(&conv).await?;
    let sid = message_sid(conversation, message)?;
    let found = session.palaver().message(session.service(), &conv, &sid).await?;
    let receipts = session
        .palaver()
        .list_receipts(session.service(), &conv, &found.sid, PageQuery { size: 100, cursor: None, descending: false })
        .await?;
    let items: Vec<Value> = receipts.items.iter().map(palaver_core::channel::receipt_snapshot).collect();
    Ok(json!({"delivery_receipts": items, "meta": {"next_token": null, "previous_token": null}}))
}

/// GET /Users/{Identity}
pub(crate) async fn user(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    identity: &str,
) -> ApiResult<Value> {
    Ok(user_json(links, account, &session.user(identity).await?))
}

/// POST /Users/{Identity} — `friendly_name`, `attributes`: the caller's own user only.
pub(crate) async fn update_user(
    links: &ClientLinks,
    account: &str,
    session: &UserSession,
    identity: &str,
    body: &Body,
) -> ApiResult<Value> {
    if identity != session.identity().as_str() {
        return Err(ApiError::new(palaver_api::ErrorCode::Forbidden, "users may change only their own user"));
    }
    let name = body.string("friendly_name")?.map(|n| FriendlyName::parse("friendly_name", &n)).transpose()?;
    let attributes = body.attributes("attributes", MAX_SMALL_ATTRIBUTES_BYTES)?;
    Ok(user_json(links, account, &session.update_me(name, attributes).await?))
}

/// POST /Typing — form field `ChannelSid`.
pub(crate) async fn typing(session: &UserSession, body: &Body, typing_timeout_secs: u64) -> ApiResult<Value> {
    let conversation = body
        .string("ChannelSid")?
        .or(body.string("channel_sid")?)
        .ok_or_else(|| ApiError::invalid("ChannelSid", "is required"))?;
    session.typing(&ConversationRef::parse(&conversation)).await?;
    Ok(json!({"typing_timeout": typing_timeout_secs}))
}

/// GET /Conversations/{Sid}/MessageRecipients?MessageSid&PageToken&PageSize — who (by non-chat binding) each
/// message went to: one entry per delivery receipt.
pub(crate) async fn message_recipients(
    session: &UserSession,
    conversation: &str,
    message: Option<&str>,
    page_token: Option<&str>,
    page_size: Option<&str>,
) -> ApiResult<Value> {
    let conv = ConversationRef::parse(conversation);
    let participants = session.participants(&conv).await?;
    let (messages, next) = match message {
        Some(raw) => {
            let sid = message_sid(conversation, raw)?;
            (vec![session.palaver().message(session.service(), &conv, &sid).await?], None)
        }
        None => {
            let page = session.messages(&conv, page_query(page_token, page_size)?).await?;
            (page.items, page.next)
        }
    };
    let mut recipients = Vec::new();
    for m in messages.iter().filter(|m| m.delivery.is_some()) {
        let query = PageQuery { size: 1000, cursor: None, descending: false };
        for receipt in session.palaver().list_receipts(session.service(), &conv, &m.sid, query).await?.items {
            let binding =
                participants.iter().find(|p| p.sid == receipt.participant_sid).and_then(|p| p.binding.as_ref());
            recipients.push(json!({
                "type": binding.map_or("unknown", |b| b.kind.as_str()),
                "message_sid": m.sid.as_str(),
                "participant_sid": receipt.participant_sid.as_str(),
                "address": binding.map(|b| b.address.clone()),
                "name": binding.and_then(|b| b.name.clone()),
                "level": binding.and_then(|b| b.level.clone()),
            }));
        }
    }
    let next = next.map(encode_cursor);
    Ok(json!({"message_recipients": recipients, "meta": {"next_token": next, "previous_token": null}}))
}
