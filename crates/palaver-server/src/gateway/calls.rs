//! One handler per realtime method: parse the parameters into domain inputs, call the user's session, and
//! turn the answer into the protocol's result type.

use palaver_api::realtime::{self, Call, Direction, GetMessagesParams, SendMessageParams};
use palaver_api::sid::MessageSid;
use palaver_core::event::{conversation_info, message_info, message_info_owned, participant_info, user_info};
use palaver_core::input::*;
use palaver_core::model::{BindingKind, MessagingBinding, UserConversation};
use palaver_core::service::{AddParticipant, CreateConversation, ParticipantKind, PostMessage};
use palaver_core::session::{SessionConversation, UserSession};
use palaver_core::store::{ConversationPatch, ConversationRef, Cursor, PageQuery, ParticipantRef};
use serde::Serialize;
use serde_json::json;

use super::connection::Connection;
use crate::error::{ApiError, ApiResult};
use serde_json::value::RawValue;

/// A call's result, already serialised: replies are written without building a `serde_json::Value` first.
pub(super) type CallResult = ApiResult<Box<RawValue>>;

fn ok<T: Serialize>(value: T) -> CallResult {
    serde_json::value::to_raw_value(&value)
        .map_err(|e| ApiError::new(palaver_api::ErrorCode::InternalError, e.to_string()))
}

fn attributes(raw: Option<String>, max: usize) -> ApiResult<Option<Attributes>> {
    Ok(raw.map(|raw| Attributes::parse("attributes", &raw, max)).transpose()?)
}

fn message_sid(raw: &str) -> ApiResult<MessageSid> {
    MessageSid::parse(raw).map_err(|_| ApiError::not_found(format!("Message {raw}")))
}

/// The server's media and email limits, as served to clients.
pub(super) fn limits() -> realtime::ConversationLimits {
    let limits = palaver_core::media::MediaLimits::default();
    realtime::ConversationLimits {
        media_attachments_count_limit: limits.count,
        media_attachment_size_limit_in_mb: limits.item_mb,
        media_attachments_total_size_limit_in_mb: limits.total_mb,
        email_bodies_allowed_content_types: limits.email_body_types,
        email_histories_allowed_content_types: limits.email_history_types,
    }
}

async fn last_seq(connection: &Connection, sid: &str) -> i64 {
    connection.position(sid).await
}

/// The protocol's view of a user conversation.
pub(super) fn my_conversation(uc: UserConversation, last_seq: i64) -> realtime::MyConversation {
    realtime::MyConversation {
        conversation: conversation_info(&uc.conversation),
        status: "joined".into(),
        last_read_message_index: uc.participant.last_read_message_index,
        unread_messages_count: uc.unread_messages_count,
        notification_level: uc.participant.notification_level.as_str().into(),
        participant: Some(participant_info(&uc.participant)),
        last_seq,
    }
}

/// The protocol's view of a conversation found by a session: `joined`, `not_participating`, or `observing`
/// for an observer's session.
fn session_conversation(found: SessionConversation, last_seq: i64, observer: bool) -> realtime::MyConversation {
    match found.mine {
        Some(uc) => my_conversation(uc, last_seq),
        None => realtime::MyConversation {
            conversation: conversation_info(&found.conversation),
            status: if observer { "observing" } else { "not_participating" }.into(),
            participant: None,
            last_read_message_index: None,
            unread_messages_count: None,
            notification_level: "default".into(),
            last_seq,
        },
    }
}

/// Every conversation the user participates in.
pub(super) async fn all_my_conversations(session: &UserSession) -> Result<Vec<UserConversation>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = session.my_conversations(PageQuery { size: 100, cursor, descending: false }).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

fn page_size(raw: Option<u32>, default: u32) -> ApiResult<u32> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid("page_size", format!("{n} must be from 1 to 100"))),
    }
}

fn page_token(raw: Option<String>) -> ApiResult<Option<Cursor>> {
    match raw {
        None => Ok(None),
        Some(raw) => palaver_api::rest::PageToken::parse(&raw)
            .map(|t| Some(Cursor { backwards: t.backwards, key: t.key }))
            .ok_or_else(|| ApiError::invalid("page_token", "not a page token of this list")),
    }
}

fn encode_cursor(c: Cursor) -> String {
    palaver_api::rest::PageToken { backwards: c.backwards, key: c.key }.encode()
}

/// Whether a call needs only the user's session, not the connection's own state (subscriptions, token,
/// delivered positions): such calls may run concurrently with the session's other requests.
pub(super) fn is_session_call(call: &Call) -> bool {
    matches!(
        call,
        Call::GetParticipants { .. }
            | Call::UpdateParticipant { .. }
            | Call::SendMessage(_)
            | Call::GetMessages(_)
            | Call::UpdateMessage { .. }
            | Call::RemoveMessage { .. }
            | Call::SetReadHorizon { .. }
            | Call::GetUnreadCount { .. }
            | Call::SetNotificationLevel { .. }
            | Call::Typing { .. }
            | Call::GetCounts { .. }
            | Call::GetDeliveryReceipts { .. }
            | Call::GetMessageRecipients { .. }
            | Call::GetUser { .. }
            | Call::UpdateUser { .. }
            | Call::Ping
    )
}

/// Handles a call that needs only the session (see [`is_session_call`]).
pub(super) async fn handle_session_call(session: UserSession, call: Call) -> CallResult {
    match call {
        Call::Ping => ok(json!({})),
        Call::GetParticipants { conversation } => {
            let items = session
                .participants(&ConversationRef::parse(&conversation))
                .await?
                .iter()
                .map(participant_info)
                .collect();
            ok(realtime::ParticipantList { items })
        }
        Call::UpdateParticipant { conversation, participant, attributes: attrs } => {
            let attrs = Attributes::parse("attributes", &attrs, MAX_SMALL_ATTRIBUTES_BYTES)?;
            let updated = session
                .update_participant_attributes(
                    &ConversationRef::parse(&conversation),
                    &ParticipantRef::parse(&participant),
                    attrs,
                )
                .await?;
            ok(participant_info(&updated))
        }
        Call::SendMessage(params) => send_message(&session, params).await,
        Call::GetMessages(params) => get_messages(&session, params).await,
        Call::UpdateMessage { conversation, message, body, attributes: attrs } => {
            let updated = session
                .update_message(
                    &ConversationRef::parse(&conversation),
                    &message_sid(&message)?,
                    body,
                    attributes(attrs, MAX_SMALL_ATTRIBUTES_BYTES)?,
                )
                .await?;
            ok(message_info(&updated))
        }
        Call::RemoveMessage { conversation, message } => {
            session.remove_message(&ConversationRef::parse(&conversation), &message_sid(&message)?).await?;
            ok(json!({}))
        }
        Call::SetReadHorizon { conversation, index, advance_only } => {
            let unread = session.set_read_horizon(&ConversationRef::parse(&conversation), index, advance_only).await?;
            ok(realtime::UnreadCount { unread_messages_count: Some(unread) })
        }
        Call::GetUnreadCount { conversation } => {
            let uc = session.user_conversation(&ConversationRef::parse(&conversation)).await?;
            ok(realtime::UnreadCount { unread_messages_count: uc.unread_messages_count })
        }
        Call::SetNotificationLevel { conversation, level } => {
            session
                .set_notification_level(&ConversationRef::parse(&conversation), NotificationLevel::parse(&level)?)
                .await?;
            ok(json!({}))
        }
        Call::Typing { conversation } => {
            session.typing(&ConversationRef::parse(&conversation)).await?;
            ok(realtime::TypingAck { typing_timeout_ms: session.palaver().typing_timeout().as_millis() as u64 })
        }
        Call::GetCounts { conversation } => {
            let found = session.joined_conversation(&ConversationRef::parse(&conversation)).await?;
            ok(realtime::Counts { messages_count: found.messages_count, participants_count: found.participants_count })
        }
        Call::GetDeliveryReceipts { conversation, message } => {
            get_delivery_receipts(&session, conversation, message).await
        }
        Call::GetMessageRecipients { conversation, message, page_size: size, page_token: token } => {
            get_recipients(&session, conversation, message, size, token).await
        }
        Call::GetUser { identity } => ok(user_info(&session.user(&identity).await?)),
        Call::UpdateUser { friendly_name, attributes: attrs } => {
            let name = friendly_name.map(|n| FriendlyName::parse("friendly_name", &n)).transpose()?;
            ok(user_info(&session.update_me(name, attributes(attrs, MAX_SMALL_ATTRIBUTES_BYTES)?).await?))
        }
        _ => Err(ApiError::invalid("method", "this server does not support the method")),
    }
}

/// Handles one request.
pub(super) async fn handle(connection: &mut Connection, call: Call) -> CallResult {
    let session = connection.session.clone();
    match call {
        Call::Connect(_) => Err(ApiError::invalid("method", "already connected")),
        Call::UpdateToken { token } => {
            let verified = crate::token::verify_allowing_observers(connection.state(), &token)
                .await
                .map_err(|e| super::connection::token_error(&e))?;
            if verified.identity != session.identity().as_str() {
                return Err(ApiError::new(
                    palaver_api::ErrorCode::AccessTokenInvalid,
                    "Invalid access token: the new token is for another identity",
                ));
            }
            if verified.observer != session.is_observer() {
                return Err(ApiError::new(
                    palaver_api::ErrorCode::AccessTokenInvalid,
                    "Invalid access token: it is for another kind of session (observer or user) than the connection",
                ));
            }
            let expires = palaver_core::event::rfc3339(verified.expires_at);
            connection.token_renewed(verified);
            ok(realtime::TokenUpdated { token_expires_at: expires })
        }
        Call::GetMyConversations { page_size: size, page_token: token } => {
            let page = session
                .my_conversations(PageQuery {
                    size: page_size(size, 50)?,
                    cursor: page_token(token)?,
                    descending: false,
                })
                .await?;
            let mut items = Vec::with_capacity(page.items.len());
            for uc in page.items {
                let seq = last_seq(connection, uc.conversation.sid.as_str()).await;
                items.push(my_conversation(uc, seq));
            }
            ok(realtime::MyConversationsPage { items, next_page_token: page.next.map(encode_cursor) })
        }
        Call::GetConversation { conversation } => {
            let found = session.conversation(&ConversationRef::parse(&conversation)).await?;
            let seq = last_seq(connection, found.conversation.sid.as_str()).await;
            ok(session_conversation(found, seq, session.is_observer()))
        }
        Call::CreateConversation { friendly_name, unique_name, attributes: attrs } => {
            let create = CreateConversation {
                friendly_name: friendly_name.map(|n| FriendlyName::parse("friendly_name", &n)).transpose()?,
                unique_name: unique_name.filter(|u| !u.is_empty()).map(|u| UniqueName::parse(&u)).transpose()?,
                attributes: attributes(attrs, MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
                ..CreateConversation::default()
            };
            let created = session.create_conversation(create).await?;
            let seq = last_seq(connection, created.sid.as_str()).await;
            ok(session_conversation(SessionConversation { conversation: created, mine: None }, seq, false))
        }
        Call::Subscribe { conversation, after_seq } => {
            let found = session.conversation(&ConversationRef::parse(&conversation)).await?;
            let sid = found.conversation.sid.to_string();
            let seq = last_seq(connection, &sid).await;
            // Someone who may join but has not sees the conversation itself, never its stream (messages,
            // participants, typing): that starts when their joining reaches the user stream. An observer
            // follows the stream of any conversation it subscribes to.
            if found.mine.is_some() || session.is_observer() {
                if connection.subscribed.insert(sid.clone()) {
                    connection.delivered.insert(sid.clone(), seq);
                }
                if let Some(after) = after_seq {
                    connection.replay(&sid, after).await;
                }
            }
            ok(session_conversation(found, seq, session.is_observer()))
        }
        Call::Unsubscribe { conversation } => {
            let found =
                session.palaver().conversation(session.service(), &ConversationRef::parse(&conversation)).await?;
            let sid = found.sid.to_string();
            if !connection.joined.contains(&sid) {
                connection.subscribed.remove(&sid);
                connection.delivered.remove(&sid);
            }
            ok(json!({}))
        }
        Call::UpdateConversation { conversation, friendly_name, unique_name, attributes: attrs } => {
            let patch = ConversationPatch {
                friendly_name: friendly_name
                    .map(|n| FriendlyName::parse("friendly_name", &n).map(|n| Some(n.into_string())))
                    .transpose()?,
                unique_name: unique_name
                    .map(|u| {
                        if u.is_empty() {
                            Ok(None)
                        } else {
                            UniqueName::parse(&u).map(|u| Some(u.as_str().to_string()))
                        }
                    })
                    .transpose()?,
                attributes: attributes(attrs, MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
                ..ConversationPatch::default()
            };
            ok(conversation_info(&session.update_conversation(&ConversationRef::parse(&conversation), patch).await?))
        }
        Call::DeleteConversation { conversation } => {
            session.delete_conversation(&ConversationRef::parse(&conversation)).await?;
            ok(json!({}))
        }
        Call::Join { conversation } => {
            ok(participant_info(&session.join(&ConversationRef::parse(&conversation)).await?))
        }
        Call::Leave { conversation } => {
            session.leave(&ConversationRef::parse(&conversation)).await?;
            ok(json!({}))
        }
        Call::AddParticipant { conversation, identity, attributes: attrs } => {
            let add = AddParticipant {
                kind: ParticipantKind::Chat(Identity::parse("identity", &identity)?),
                attributes: attributes(attrs, MAX_SMALL_ATTRIBUTES_BYTES)?,
                role_sid: None,
                date_created: None,
                date_updated: None,
            };
            ok(participant_info(&session.add_participant(&ConversationRef::parse(&conversation), add).await?))
        }
        Call::AddNonChatParticipant { conversation, proxy_address, address, attributes: attrs, name, level } => {
            let address = Address::parse("address", &address)?;
            let proxy = Address::parse("proxy_address", &proxy_address)?;
            if let Some(level) = &level
                && level != "to"
                && level != "cc"
            {
                return Err(ApiError::invalid("level", format!("'{level}' is not to or cc")));
            }
            let binding = MessagingBinding {
                kind: BindingKind::of_address(address.as_str()),
                address: address.as_str().to_string(),
                proxy_address: Some(proxy.as_str().to_string()),
                projected_address: None,
                name,
                level,
            };
            let add = AddParticipant {
                kind: ParticipantKind::NonChat(binding),
                attributes: attributes(attrs, MAX_SMALL_ATTRIBUTES_BYTES)?,
                role_sid: None,
                date_created: None,
                date_updated: None,
            };
            ok(participant_info(&session.add_participant(&ConversationRef::parse(&conversation), add).await?))
        }
        Call::RemoveParticipant { conversation, participant } => {
            session
                .remove_participant(&ConversationRef::parse(&conversation), &ParticipantRef::parse(&participant))
                .await?;
            ok(json!({}))
        }
        other => handle_session_call(session, other).await,
    }
}

async fn send_message(session: &UserSession, params: SendMessageParams) -> CallResult {
    let media = params
        .media_sids
        .iter()
        .map(|raw| palaver_api::sid::MediaSid::parse(raw).map_err(|e| ApiError::invalid("media_sids", e)))
        .collect::<ApiResult<Vec<_>>>()?;
    if let Some(key) = &params.idempotency_key
        && (key.is_empty() || key.len() > 128)
    {
        return Err(ApiError::invalid("idempotency_key", "must be 1 to 128 characters"));
    }
    let post = PostMessage {
        body: Some(params.body.unwrap_or_default()),
        subject: params.subject,
        attributes: attributes(params.attributes, MAX_SMALL_ATTRIBUTES_BYTES)?,
        // Keys are per user: two users cannot collide, and nobody can replay someone else's send.
        idempotency_key: params.idempotency_key.map(|k| format!("{}\u{1f}{k}", session.identity())),
        media,
        ..PostMessage::default()
    };
    ok(message_info(&session.send_message(&ConversationRef::parse(&params.conversation), post).await?))
}

async fn get_messages(session: &UserSession, params: GetMessagesParams) -> CallResult {
    let size = page_size(params.page_size, 30)?;
    if params.anchor.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid("anchor", "must not be negative"));
    }
    let conv = ConversationRef::parse(&params.conversation);
    let (descending, cursor) = match (params.direction, params.anchor) {
        // The anchor is inclusive: start just past it.
        (Direction::Backwards, Some(a)) => (true, Some(Cursor { backwards: false, key: a.saturating_add(1) })),
        (Direction::Backwards, None) => (true, None),
        (Direction::Forward, Some(a)) => (false, Some(Cursor { backwards: false, key: a - 1 })),
        (Direction::Forward, None) => (false, None),
    };
    // The page and whether anything lies beyond its far end (newer for a backwards page, older for a forward
    // one), read together; the near end is the page's own `next`.
    let (page, lead) = session.messages_and_lead(&conv, PageQuery { size, cursor, descending }).await?;
    let mut items: Vec<_> = page.items.into_iter().map(message_info_owned).collect();
    items.sort_by_key(|m| m.index);
    let (has_older, has_newer) = match params.direction {
        Direction::Backwards => (page.next.is_some(), lead),
        Direction::Forward => (lead, page.next.is_some()),
    };
    ok(realtime::MessagesPage { items, has_older, has_newer })
}

async fn get_recipients(
    session: &UserSession,
    conversation: String,
    message: Option<String>,
    size: Option<u32>,
    token: Option<String>,
) -> CallResult {
    let conv = ConversationRef::parse(&conversation);
    let participants = session.participants(&conv).await?;
    let page = match message {
        Some(sid) => palaver_core::store::Page {
            items: vec![session.palaver().message(session.service(), &conv, &message_sid(&sid)?).await?],
            next: None,
            previous: None,
        },
        None => {
            session
                .messages(
                    &conv,
                    PageQuery { size: page_size(size, 50)?, cursor: page_token(token)?, descending: false },
                )
                .await?
        }
    };
    let mut items = Vec::new();
    for m in page.items.iter().filter(|m| m.delivery.is_some()) {
        for receipt in receipts_of(session, &conv, &m.sid).await? {
            // A recipient who has since left is still a recipient; its address is then unknown here.
            let binding =
                participants.iter().find(|p| p.sid == receipt.participant_sid).and_then(|p| p.binding.as_ref());
            items.push(realtime::RecipientInfo {
                message_sid: m.sid.to_string(),
                participant_sid: receipt.participant_sid.to_string(),
                address: binding.map(|b| b.address.clone()).unwrap_or_default(),
                kind: binding.map_or("unknown", |b| b.kind.as_str()).to_string(),
                status: Some(receipt.status.as_str().to_string()),
            });
        }
    }
    ok(realtime::RecipientsPage { items, next_page_token: page.next.map(encode_cursor) })
}

/// Every receipt of a message (a message has at most one per non-chat participant, at most 50).
async fn receipts_of(
    session: &UserSession,
    conv: &ConversationRef,
    message: &MessageSid,
) -> ApiResult<Vec<palaver_core::channel::DeliveryReceipt>> {
    let query = PageQuery { size: 1000, cursor: None, descending: false };
    Ok(session.palaver().list_receipts(session.service(), conv, message, query).await?.items)
}

async fn get_delivery_receipts(session: &UserSession, conversation: String, message: String) -> CallResult {
    let conv = ConversationRef::parse(&conversation);
    // Only participants may look, as for messages.
    session.participants(&conv).await?;
    let items = receipts_of(session, &conv, &message_sid(&message)?)
        .await?
        .iter()
        .map(|r| {
            serde_json::from_value(palaver_core::channel::receipt_snapshot(r))
                .map_err(|e| ApiError::new(palaver_api::ErrorCode::InternalError, e.to_string()))
        })
        .collect::<ApiResult<Vec<realtime::DeliveryReceiptInfo>>>()?;
    ok(realtime::DeliveryReceiptsPage { items })
}
