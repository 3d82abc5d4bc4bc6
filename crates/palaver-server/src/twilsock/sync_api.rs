//! The Sync reads behind the tunnel (`GET /v3/{Documents|Lists|Maps}/{id}`, `…/Items`): descriptors and
//! item pages of the objects `sync` projects, for the connection's user only.

use palaver_core::event::{conversation_info, message_info_owned, participant_info, rfc3339, user_info};
use palaver_core::model::Conversation;
use palaver_core::session::UserSession;
use palaver_core::store::{ConversationRef, Cursor, PageQuery};
use serde_json::{Value, json};

use super::sync::{self, ItemKey, Links, ObjectId, ObjectKind, PageToken};
use crate::error::{ApiError, ApiResult};

/// A Sync object the user may read, resolved to the stream it follows.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The object.
    pub(crate) id: ObjectId,
    /// Its stream: the conversation's SID or the user's SID.
    pub(crate) stream: String,
    /// For conversation objects: the conversation as it is now.
    pub(crate) conversation: Option<Conversation>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("/Sync/{id}"))
}

/// Finds an object by SID (= unique name) and checks that the caller may read it: a conversation's document
/// for anyone who may see the conversation, its messages and roster for participants, a user's own
/// conversation list for that user only, and any user's profile.
///
/// # Errors
/// 404 for an unknown or malformed name or kind mismatch, 403 for objects the user may not read.
pub(crate) async fn resolve(session: &UserSession, collection: &str, raw: &str) -> ApiResult<Resolved> {
    let id = ObjectId::parse(raw).filter(|id| id.kind.collection() == collection).ok_or_else(|| not_found(raw))?;
    resolve_id(session, id).await
}

/// [`resolve`] for an already parsed object.
pub(crate) async fn resolve_id(session: &UserSession, id: ObjectId) -> ApiResult<Resolved> {
    let conv = ConversationRef::parse(&id.owner);
    match id.kind {
        ObjectKind::Document => {
            let found = session.conversation(&conv).await?;
            let stream = found.conversation.sid.to_string();
            Ok(Resolved { id, stream, conversation: Some(found.conversation) })
        }
        ObjectKind::Messages | ObjectKind::Roster => {
            let found = session.joined_conversation(&conv).await?;
            Ok(Resolved { id, stream: found.sid.to_string(), conversation: Some(found) })
        }
        ObjectKind::MyConversations => {
            if id.owner != session.identity().as_str() {
                return Err(ApiError::new(palaver_api::ErrorCode::Forbidden, "only its user may read this map"));
            }
            let user = session.user(&id.owner).await?;
            Ok(Resolved { id, stream: user.sid.to_string(), conversation: None })
        }
        ObjectKind::UserInfo => {
            let user = session.user(&id.owner).await?;
            Ok(Resolved { id, stream: user.sid.to_string(), conversation: None })
        }
    }
}

/// For a conversation's object, the stream position read before anything else: the SDK opens a
/// conversation's messages list while it may already be sending into it, and a position taken after the
/// send would hide that message from the replay that follows (no `messageAdded` for it). The check that the
/// caller may read the object comes after, and a refusal discards the position.
async fn early_position(session: &UserSession, raw: &str) -> Option<i64> {
    let id = ObjectId::parse(raw)?;
    if !id.kind.of_conversation() {
        return None;
    }
    session.palaver().store().stream_position(&id.owner).await.ok()
}

/// How recent an event must be for a freshly opened conversation object to announce it anyway.
const SETTLE: time::Duration = time::Duration::seconds(2);

/// Events looked at, at most, when settling a position.
const SETTLE_WINDOW: i64 = 32;

/// The position a conversation object's descriptor reports: the stream's `position`, less the events of the
/// last [`SETTLE`]. The SDK opens a conversation's list and roster lazily, about 100 ms after it learns it has
/// joined, and meanwhile the app may already send into it (or others answer): a descriptor taken after those
/// writes would leave them out of the replay that follows, so the app would never hear of its own first
/// message. Replaying a little more is harmless: items the client has already read carry the full position
/// and are skipped.
async fn settled(session: &UserSession, stream: &str, position: i64) -> i64 {
    settled_with_events(session, stream, position).await.0
}

/// [`settled`], with the events after the settled position (those a subscription will replay).
async fn settled_with_events(
    session: &UserSession,
    stream: &str,
    position: i64,
) -> (i64, Vec<palaver_core::event::Event>) {
    let after = position.saturating_sub(SETTLE_WINDOW).max(0);
    let Ok(recent) = session.palaver().store().read_events(stream, after, SETTLE_WINDOW as u32).await else {
        return (position, Vec::new());
    };
    let cutoff = time::OffsetDateTime::now_utc() - SETTLE;
    let recent: Vec<_> = recent.into_iter().filter(|e| e.seq <= position).collect();
    let settled = recent.iter().find(|e| e.at > cutoff).map_or(position, |e| e.seq - 1);
    // Nothing from before the user joined is news to them: a newcomer's first page shows it as history.
    let me = session.identity().as_str();
    let joined = recent
        .iter()
        .filter(|e| {
            e.kind == palaver_core::event::EventKind::ParticipantAdded
                && e.data.get("identity").and_then(Value::as_str) == Some(me)
        })
        .map(|e| e.seq)
        .max();
    let settled = settled.max(joined.unwrap_or(0));
    (settled, recent.into_iter().filter(|e| e.seq > settled).collect())
}

async fn position(session: &UserSession, stream: &str) -> ApiResult<i64> {
    Ok(session.palaver().store().stream_position(stream).await?)
}

/// GET /v3/{Documents|Lists|Maps}/{id}[?Include=items]
pub(crate) async fn object(
    session: &UserSession,
    links: &Links,
    collection: &str,
    raw: &str,
    include_items: bool,
) -> ApiResult<Value> {
    let early = early_position(session, raw).await;
    let resolved = resolve(session, collection, raw).await?;
    let last_event_id = match early {
        Some(position) => settled(session, &resolved.stream, position).await,
        None => position(session, &resolved.stream).await?,
    };
    let (updated, data) = match (&resolved.conversation, resolved.id.kind) {
        (Some(c), ObjectKind::Document) => {
            // Read again after the position, so that the data is at least as new as the position says.
            let now = session.palaver().conversation(session.service(), &ConversationRef::Sid(c.sid.clone())).await?;
            (rfc3339(now.date_updated), Some(sync::document_data(&conversation_info(&now))))
        }
        (Some(c), _) => (rfc3339(c.date_updated), None),
        (None, _) => (rfc3339(time::OffsetDateTime::now_utc()), None),
    };
    let mut out = sync::descriptor(links, &resolved.id, last_event_id, &updated, data);
    if include_items && resolved.id.kind != ObjectKind::Document {
        let page = items_page(session, links, &resolved, last_event_id, &Query::default()).await?;
        out["items"] = page["items"].clone();
    }
    Ok(out)
}

/// The parameters of an item query.
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// `Order=desc`.
    pub(crate) descending: bool,
    /// `From`, inclusive.
    pub(crate) from: Option<String>,
    /// `Key` (maps) or `Index` (lists): exactly one item.
    pub(crate) exact: Option<String>,
    /// `PageSize`.
    pub(crate) size: Option<u32>,
    /// `PageToken`.
    pub(crate) token: Option<String>,
}

/// GET /v3/{Lists|Maps}/{id}/Items?From&Order&PageSize&Key&Index&PageToken
pub(crate) async fn items(
    session: &UserSession,
    links: &Links,
    collection: &str,
    raw: &str,
    query: &Query,
) -> ApiResult<Value> {
    let early = early_position(session, raw).await;
    let resolved = resolve(session, collection, raw).await?;
    if resolved.id.kind == ObjectKind::Document {
        return Err(not_found(raw));
    }
    let last_event_id = match early {
        Some(position) => position,
        None => position(session, &resolved.stream).await?,
    };
    items_page(session, links, &resolved, last_event_id, query).await
}

async fn items_page(
    session: &UserSession,
    links: &Links,
    resolved: &Resolved,
    last_event_id: i64,
    query: &Query,
) -> ApiResult<Value> {
    let token = match query.token.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            PageToken::parse(raw)
                .ok_or_else(|| ApiError::invalid("PageToken", "is not a page token of this object"))?,
        ),
    };
    let size = token.as_ref().map_or(query.size.unwrap_or(50), |t| t.size).clamp(1, sync::MAX_PAGE);
    let descending = token.as_ref().map_or(query.descending, |t| t.descending);
    let is_list = resolved.id.kind == ObjectKind::Messages;
    let parse_key = |raw: &str| -> ApiResult<ItemKey> {
        if is_list {
            raw.parse::<i64>()
                .map(ItemKey::Index)
                .map_err(|_| ApiError::invalid("From", format!("'{raw}' is not an index")))
        } else {
            Ok(ItemKey::Key(raw.to_string()))
        }
    };
    let (from, before) = match (&token, &query.exact, &query.from) {
        (Some(t), _, _) => (Some(t.from.clone()), t.before),
        (None, Some(exact), _) => (Some(parse_key(exact)?), false),
        (None, None, Some(from)) => (Some(parse_key(from)?), false),
        (None, None, None) => (None, false),
    };
    let exact = token.is_none() && query.exact.is_some();
    let cut = if is_list {
        messages_cut(session, resolved, descending, from.as_ref(), before, if exact { 1 } else { size }).await?
    } else {
        let mut all = map_items(session, resolved).await?;
        if resolved.id.kind == ObjectKind::Roster {
            // Participants who joined moments ago are left to the replay that follows the SDK's subscription,
            // so that it announces them (`participantJoined`) instead of finding them already listed: the SDK
            // reads a new conversation's roster just as the app adds people to it.
            let (_, replayed) = settled_with_events(session, &resolved.stream, last_event_id).await;
            let joining: Vec<&str> = replayed
                .iter()
                .filter(|e| e.kind == palaver_core::event::EventKind::ParticipantAdded)
                .map(|e| e.subject.as_str())
                .collect();
            all.retain(|(key, _)| !matches!(key, ItemKey::Key(k) if joining.contains(&k.as_str())));
        }
        sync::cut(all, descending, from.as_ref(), before, if exact { 1 } else { size })
    };
    let mut cut = cut;
    if exact {
        cut.items.retain(|(k, _)| Some(k) == from.as_ref());
        cut.next = None;
        cut.previous = None;
    }
    let items: Vec<Value> = cut
        .items
        .into_iter()
        .map(|(key, (date, data))| sync::item(links, &resolved.id, &key, last_event_id, &date, data))
        .collect();
    Ok(json!({
        "items": items,
        "meta": {
            "previous_token": cut.previous.map(|t| t.encode()),
            "next_token": cut.next.map(|t| t.encode()),
        },
    }))
}

type Item = (String, Value);

/// Every item of a map, sorted by key (a conversation has at most 1 000 participants, a user at most 1 000
/// conversations, so a map is read whole).
async fn map_items(session: &UserSession, resolved: &Resolved) -> ApiResult<Vec<(ItemKey, Item)>> {
    let mut out: Vec<(ItemKey, Item)> = match resolved.id.kind {
        ObjectKind::Roster => {
            let conv = ConversationRef::Sid(
                resolved.conversation.as_ref().map(|c| c.sid.clone()).ok_or_else(|| not_found(&resolved.id.name()))?,
            );
            session
                .participants(&conv)
                .await?
                .iter()
                .map(|p| {
                    let info = participant_info(p);
                    (ItemKey::Key(info.sid.clone()), (info.date_updated.clone(), sync::roster_data(&info)))
                })
                .collect()
        }
        ObjectKind::MyConversations => {
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let page = session.my_conversations(PageQuery { size: 100, cursor, descending: false }).await?;
                for uc in &page.items {
                    let sid = uc.conversation.sid.as_str();
                    let data = sync::my_conversation_data(
                        sid,
                        uc.participant.last_read_message_index,
                        uc.participant.notification_level.as_str(),
                    );
                    out.push((ItemKey::Key(sid.to_string()), (rfc3339(uc.participant.date_updated), data)));
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            out
        }
        ObjectKind::UserInfo => {
            let user = session.user(&resolved.id.owner).await?;
            let info = user_info(&user);
            let updated = info.date_updated.clone();
            sync::user_info_items(&info).into_iter().map(|(k, v)| (ItemKey::Key(k), (updated.clone(), v))).collect()
        }
        ObjectKind::Document | ObjectKind::Messages => Vec::new(),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A page of the messages list, read from the store by index (never the whole conversation).
async fn messages_cut(
    session: &UserSession,
    resolved: &Resolved,
    descending: bool,
    from: Option<&ItemKey>,
    before: bool,
    size: u32,
) -> ApiResult<sync::Cut<Item>> {
    let conv = ConversationRef::Sid(
        resolved.conversation.as_ref().map(|c| c.sid.clone()).ok_or_else(|| not_found(&resolved.id.name()))?,
    );
    let anchor = match from {
        Some(ItemKey::Index(i)) => Some(*i),
        Some(ItemKey::Key(_)) => return Err(ApiError::invalid("From", "is not an index")),
        None => None,
    };
    // A page in the requested order starting at the anchor (inclusive), or the page just before the anchor
    // (exclusive), read in the opposite order and turned around.
    let (read_descending, cursor) = match (anchor, before) {
        (None, _) => (descending, None),
        (Some(a), false) => (
            descending,
            Some(Cursor { backwards: false, key: if descending { a.saturating_add(1) } else { a.saturating_sub(1) } }),
        ),
        (Some(a), true) => (!descending, Some(Cursor { backwards: false, key: a })),
    };
    let (page, lead) =
        session.messages_and_lead(&conv, PageQuery { size, cursor, descending: read_descending }).await?;
    let more_onward = page.next.is_some();
    let mut items: Vec<(ItemKey, Item)> = page
        .items
        .into_iter()
        .map(|m| {
            let info = message_info_owned(m);
            let date = info.date_updated.clone().unwrap_or_else(|| info.date_created.clone());
            (ItemKey::Index(info.index), (date, sync::message_data(&info)))
        })
        .collect();
    // `more_onward`: more items past the page's far end in the direction read; `lead`: items before its start.
    let (more_after, more_before) = if before {
        items.reverse();
        (lead, more_onward)
    } else {
        (more_onward, lead)
    };
    let first = items.first().map(|(k, _)| k.clone());
    let last = items.last().map(|(k, _)| k.clone());
    let next = match (&last, more_after) {
        (Some(ItemKey::Index(l)), true) => Some(PageToken {
            descending,
            from: ItemKey::Index(if descending { l - 1 } else { l + 1 }),
            before: false,
            size,
        }),
        // An empty page before an anchor: the anchor itself is where the order goes on.
        (None, true) => anchor.map(|a| PageToken { descending, from: ItemKey::Index(a), before: false, size }),
        _ => None,
    };
    let previous = match (&first, more_before) {
        (Some(f), true) => Some(PageToken { descending, from: f.clone(), before: true, size }),
        _ => None,
    };
    Ok(sync::Cut { items, next, previous })
}
