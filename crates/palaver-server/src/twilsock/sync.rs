//! The Sync projection: the documents, lists and maps the JS SDK reads, computed from the store, and their
//! events, computed from the event log. Nothing here is stored: the log is the only source of truth.
//!
//! Each Sync object follows exactly one stream of the log, and its event ids are that stream's sequence
//! numbers (increasing, with gaps where an event does not concern the object):
//!
//! | object (its SID is also its unique name) | stream | built from |
//! |---|---|---|
//! | `{CH}.channel` document | the conversation's | the conversation |
//! | `{CH}.messages` list (item index = message index) | the conversation's | its messages |
//! | `{CH}.roster` map (key = MB SID) | the conversation's | its participants |
//! | `{identity}.myConversations` map (key = CH SID) | the user's | the user's conversations, horizons, levels |
//! | `{identity}.userInfo` map (`friendlyName`, `attributes`, `reachability`) | the user's | the user |
//!
//! A descriptor or page carries the stream's position read *before* its data, so events committed while it
//! was read are replayed rather than missed (at worst re-applied, which changes nothing).

use palaver_api::realtime::{ConversationInfo, MessageInfo, ParticipantInfo, UserConversationChange, UserInfo};
use palaver_core::event::{Event, EventKind};
use serde_json::{Value, json};

/// The kinds of Sync objects Palaver projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectKind {
    /// A conversation's document.
    Document,
    /// A conversation's messages.
    Messages,
    /// A conversation's participants.
    Roster,
    /// The conversations a user takes part in, with the user's horizon and level in each.
    MyConversations,
    /// A user's public profile.
    UserInfo,
}

impl ObjectKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Document => "channel",
            Self::Messages => "messages",
            Self::Roster => "roster",
            Self::MyConversations => "myConversations",
            Self::UserInfo => "userInfo",
        }
    }

    /// `document`, `list` or `map`, as subscriptions name them.
    pub(crate) fn sync_type(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Messages => "list",
            Self::Roster | Self::MyConversations | Self::UserInfo => "map",
        }
    }

    /// The URL collection: `Documents`, `Lists` or `Maps`.
    pub(crate) fn collection(self) -> &'static str {
        match self {
            Self::Document => "Documents",
            Self::Messages => "Lists",
            Self::Roster | Self::MyConversations | Self::UserInfo => "Maps",
        }
    }

    /// Whether the owner is a conversation SID (else an identity).
    pub(crate) fn of_conversation(self) -> bool {
        matches!(self, Self::Document | Self::Messages | Self::Roster)
    }
}

/// A Sync object's identity: its kind and the conversation SID or user identity it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ObjectId {
    /// What it is.
    pub(crate) kind: ObjectKind,
    /// The conversation SID, or the user's identity.
    pub(crate) owner: String,
}

impl ObjectId {
    /// A conversation's object.
    pub(crate) fn conversation(kind: ObjectKind, sid: &str) -> Self {
        Self { kind, owner: sid.to_string() }
    }

    /// A user's object.
    pub(crate) fn user(kind: ObjectKind, identity: &str) -> Self {
        Self { kind, owner: identity.to_string() }
    }

    /// Parses `{owner}.{suffix}` (the SID and unique name are the same string).
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let (owner, suffix) = raw.rsplit_once('.')?;
        let kind = [
            ObjectKind::Document,
            ObjectKind::Messages,
            ObjectKind::Roster,
            ObjectKind::MyConversations,
            ObjectKind::UserInfo,
        ]
        .into_iter()
        .find(|k| k.suffix() == suffix)?;
        if owner.is_empty() || (kind.of_conversation() && !owner.starts_with("CH")) {
            return None;
        }
        Some(Self { kind, owner: owner.to_string() })
    }

    /// The SID, which is also the unique name.
    pub(crate) fn name(&self) -> String {
        format!("{}.{}", self.owner, self.kind.suffix())
    }
}

/// Builds absolute URLs under the host the SDK addressed (links must be absolute `http(s)` URLs; the host is
/// only a routing key inside the tunnel).
#[derive(Debug, Clone)]
pub(crate) struct Links {
    /// `http://host:port`.
    pub(crate) base: String,
}

impl Links {
    /// The object's URL.
    pub(crate) fn object(&self, id: &ObjectId) -> String {
        format!("{}/v3/{}/{}", self.base, id.kind.collection(), encode_segment(&id.name()))
    }

    /// Its items' URL (lists and maps).
    pub(crate) fn items(&self, id: &ObjectId) -> String {
        format!("{}/Items", self.object(id))
    }

    /// One item's URL.
    pub(crate) fn item(&self, id: &ObjectId, key: &str) -> String {
        format!("{}/{}", self.items(id), encode_segment(key))
    }
}

/// Percent-encodes one path segment.
pub(crate) fn encode_segment(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, SEGMENT).to_string()
}

const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An object's descriptor, as `GET /v3/{Collection}/{id}` answers.
pub(crate) fn descriptor(
    links: &Links,
    id: &ObjectId,
    last_event_id: i64,
    date_updated: &str,
    data: Option<Value>,
) -> Value {
    let mut out = json!({
        "sid": id.name(),
        "unique_name": id.name(),
        "url": links.object(id),
        "revision": last_event_id.to_string(),
        "last_event_id": last_event_id,
        "date_updated": date_updated,
        "date_expires": null,
    });
    match id.kind {
        ObjectKind::Document => out["data"] = data.unwrap_or_else(|| json!({})),
        ObjectKind::Messages => {
            out["links"] = json!({"items": links.items(id), "context": format!("{}/Context", links.object(id))});
        }
        _ => out["links"] = json!({"items": links.items(id)}),
    }
    out
}

/// One item of a list or map page.
pub(crate) fn item(
    links: &Links,
    id: &ObjectId,
    key: &ItemKey,
    last_event_id: i64,
    date_updated: &str,
    data: Value,
) -> Value {
    let mut out = json!({
        "url": links.item(id, &key.to_string()),
        "revision": last_event_id.to_string(),
        "last_event_id": last_event_id,
        "date_updated": date_updated,
        "date_expires": null,
        "data": data,
    });
    match key {
        ItemKey::Index(index) => out["index"] = json!(index),
        ItemKey::Key(k) => out["key"] = json!(k),
    }
    out
}

/// A list index or a map key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ItemKey {
    /// A list item's index.
    Index(i64),
    /// A map item's key.
    Key(String),
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(i) => write!(f, "{i}"),
            Self::Key(k) => f.write_str(k),
        }
    }
}

/// The `{CH}.channel` document's data.
pub(crate) fn document_data(c: &ConversationInfo) -> Value {
    let mut data = json!({
        "sid": c.sid,
        "friendlyName": c.friendly_name,
        "uniqueName": c.unique_name,
        "attributes": c.attributes,
        "createdBy": c.created_by.clone().unwrap_or_default(),
        "dateCreated": c.date_created,
        "dateUpdated": c.date_updated,
        "messages": ObjectId::conversation(ObjectKind::Messages, &c.sid).name(),
        "roster": ObjectId::conversation(ObjectKind::Roster, &c.sid).name(),
        "state": {"current": c.state, "dateUpdated": c.state_updated},
    });
    if let Some(last) = &c.last_message {
        data["lastMessage"] = json!({"index": last.index, "timestamp": last.date_created});
    }
    if let Some(bindings) = &c.bindings {
        data["bindings"] = bindings.clone();
    }
    data
}

/// A `{CH}.messages` item's data.
pub(crate) fn message_data(m: &MessageInfo) -> Value {
    let medias: Vec<Value> = m
        .media
        .iter()
        .map(|media| {
            json!({
                "sid": media.get("sid"),
                "category": media.get("category").cloned().unwrap_or_else(|| json!("media")),
                "filename": media.get("filename"),
                "contentType": media.get("content_type"),
                "size": media.get("size"),
            })
        })
        .collect();
    let mut data = json!({
        "sid": m.sid,
        "author": m.author,
        "text": m.body,
        "attributes": m.attributes,
        "timestamp": m.date_created,
        "dateUpdated": m.date_updated.clone().unwrap_or_else(|| m.date_created.clone()),
        "lastUpdatedBy": null,
        "type": if medias.is_empty() { "text" } else { "media" },
        "memberSid": m.participant_sid,
        "subject": m.subject,
        "contentSid": m.content_sid,
    });
    if let Some(first) = medias.first() {
        // SDK 2.x reads one `media`, 3.x the `medias` list.
        data["media"] = first.clone();
        data["medias"] = Value::Array(medias);
    }
    if let Some(delivery) = &m.delivery {
        data["delivery"] = delivery.clone();
    }
    data
}

/// A `{CH}.roster` item's data.
pub(crate) fn roster_data(p: &ParticipantInfo) -> Value {
    let mut data = json!({
        "identity": p.identity,
        "type": p.kind,
        "attributes": p.attributes,
        "dateCreated": p.date_created,
        "dateUpdated": p.date_updated,
        "roleSid": p.role_sid,
        "lastConsumedMessageIndex": p.last_read_message_index,
        "lastConsumptionTimestamp": p.last_read_timestamp,
        "userInfo": p.identity.as_ref().map(|i| ObjectId::user(ObjectKind::UserInfo, i).name()),
    });
    if let Some(binding) = &p.messaging_binding {
        data["bindings"] = json!({p.kind.clone(): {
            "address": binding.address,
            "proxy_address": binding.proxy_address,
            "projected_address": binding.projected_address,
            "name": binding.name,
            "level": binding.level,
        }});
    }
    data
}

/// A `{identity}.myConversations` item's data.
pub(crate) fn my_conversation_data(conversation_sid: &str, last_read: Option<i64>, notification_level: &str) -> Value {
    json!({
        "channel": ObjectId::conversation(ObjectKind::Document, conversation_sid).name(),
        "messages": ObjectId::conversation(ObjectKind::Messages, conversation_sid).name(),
        "roster": ObjectId::conversation(ObjectKind::Roster, conversation_sid).name(),
        "status": "joined",
        "lastConsumedMessageIndex": last_read,
        "notificationLevel": notification_level,
    })
}

/// The items of a `{identity}.userInfo` map, by key.
pub(crate) fn user_info_items(u: &UserInfo) -> Vec<(String, Value)> {
    vec![
        ("friendlyName".into(), json!({"value": u.friendly_name})),
        ("attributes".into(), json!({"value": u.attributes})),
        ("reachability".into(), json!({"online": u.is_online, "notifiable": u.is_notifiable})),
    ]
}

/// What a subscription keeps between events.
#[derive(Debug, Clone)]
pub(crate) struct Followed {
    /// The object.
    pub(crate) id: ObjectId,
    /// The stream it follows.
    pub(crate) stream: String,
    /// The last sequence number of that stream handled for this object.
    pub(crate) delivered: i64,
    /// For documents: the conversation as last sent, to which message events add `lastMessage`.
    pub(crate) conversation: Option<ConversationInfo>,
}

/// The Sync events (the `event_type` + `event` pairs) one log event makes for a followed object.
pub(crate) fn events_for(links: &Links, followed: &mut Followed, event: &Event) -> Vec<Value> {
    let id = event.seq;
    let date = palaver_core::event::rfc3339(event.at);
    let object = followed.id.clone();
    let name = object.name();
    let map_event = |event_type: &str, key: &str, data: Value| {
        json!({"event_type": event_type, "event": {
            "id": id, "date_created": date, "map_sid": name, "map_unique_name": name, "item_key": key,
            "item_data": data, "item_revision": id.to_string(), "item_url": links.item(&object, key),
            "map_revision": id.to_string(),
        }})
    };
    let list_event = |event_type: &str, index: i64, data: Value| {
        json!({"event_type": event_type, "event": {
            "id": id, "date_created": date, "list_sid": name, "list_unique_name": name, "item_index": index,
            "item_data": data, "item_revision": id.to_string(), "item_url": links.item(&object, &index.to_string()),
            "list_revision": id.to_string(),
        }})
    };
    let document_event = |data: Value| {
        json!({"event_type": "document_updated", "event": {
            "id": id, "date_created": date, "document_sid": name, "document_unique_name": name,
            "document_data": data, "document_revision": id.to_string(),
        }})
    };
    match (object.kind, event.kind) {
        (
            ObjectKind::Document,
            EventKind::ConversationAdded | EventKind::ConversationUpdated | EventKind::ConversationStateUpdated,
        ) => {
            let Ok(info) = serde_json::from_value::<ConversationInfo>(event.data.clone()) else { return vec![] };
            let data = document_data(&info);
            followed.conversation = Some(info);
            vec![document_event(data)]
        }
        (ObjectKind::Document, EventKind::MessageAdded) => {
            let Ok(message) = serde_json::from_value::<MessageInfo>(event.data.clone()) else { return vec![] };
            let Some(conversation) = followed.conversation.as_mut() else { return vec![] };
            // Sent even when the kept state is already newer (it was read after the client's copy): the
            // client's document may not have this message yet.
            if conversation.last_message.as_ref().is_none_or(|last| last.index < message.index) {
                conversation.last_message = Some(palaver_api::realtime::LastMessageInfo {
                    index: message.index,
                    date_created: Some(message.date_created.clone()),
                });
            }
            vec![document_event(document_data(conversation))]
        }
        (ObjectKind::Document, EventKind::ConversationRemoved) => {
            vec![
                json!({"event_type": "document_removed", "event": {"id": id, "date_created": date, "document_sid": name}}),
            ]
        }
        (ObjectKind::Messages, EventKind::MessageAdded | EventKind::MessageUpdated | EventKind::MessageRemoved) => {
            let Ok(message) = serde_json::from_value::<MessageInfo>(event.data.clone()) else { return vec![] };
            let event_type = match event.kind {
                EventKind::MessageAdded => "list_item_added",
                EventKind::MessageUpdated => "list_item_updated",
                _ => "list_item_removed",
            };
            vec![list_event(event_type, message.index, message_data(&message))]
        }
        (ObjectKind::Messages, EventKind::ConversationRemoved) => {
            vec![json!({"event_type": "list_removed", "event": {"id": id, "date_created": date, "list_sid": name}})]
        }
        (
            ObjectKind::Roster,
            EventKind::ParticipantAdded | EventKind::ParticipantUpdated | EventKind::ParticipantRemoved,
        ) => {
            let Ok(participant) = serde_json::from_value::<ParticipantInfo>(event.data.clone()) else { return vec![] };
            let event_type = match event.kind {
                EventKind::ParticipantAdded => "map_item_added",
                EventKind::ParticipantUpdated => "map_item_updated",
                _ => "map_item_removed",
            };
            vec![map_event(event_type, &participant.sid, roster_data(&participant))]
        }
        (ObjectKind::Roster, EventKind::ConversationRemoved) => {
            vec![json!({"event_type": "map_removed", "event": {"id": id, "date_created": date, "map_sid": name}})]
        }
        (
            ObjectKind::MyConversations,
            EventKind::UserConversationJoined | EventKind::UserConversationUpdated | EventKind::UserConversationLeft,
        ) => {
            let Ok(change) = serde_json::from_value::<UserConversationChange>(event.data.clone()) else {
                return vec![];
            };
            let sid = &change.conversation.sid;
            let level = change.notification_level.as_deref().unwrap_or("default");
            let data = my_conversation_data(sid, change.participant.last_read_message_index, level);
            let event_type = match event.kind {
                EventKind::UserConversationJoined => "map_item_added",
                EventKind::UserConversationUpdated => "map_item_updated",
                _ => "map_item_removed",
            };
            vec![map_event(event_type, sid, data)]
        }
        (ObjectKind::UserInfo, EventKind::UserAdded | EventKind::UserUpdated) => {
            let Ok(user) = serde_json::from_value::<UserInfo>(event.data.clone()) else { return vec![] };
            user_info_items(&user).into_iter().map(|(key, data)| map_event("map_item_updated", &key, data)).collect()
        }
        _ => vec![],
    }
}

/// An opaque page token: where the next page starts, in which order, how large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageToken {
    /// Items newest (largest) first.
    pub(crate) descending: bool,
    /// Where the page starts.
    pub(crate) from: ItemKey,
    /// Whether `from` itself is excluded and the page lies on the far side of it, against the order: the
    /// page *before* a page, whose items are the nearest ones beyond its first item.
    pub(crate) before: bool,
    /// Items per page.
    pub(crate) size: u32,
}

impl PageToken {
    /// The token's text.
    pub(crate) fn encode(&self) -> String {
        use base64::Engine;
        let from = match &self.from {
            ItemKey::Index(i) => json!({"i": i}),
            ItemKey::Key(k) => json!({"k": k}),
        };
        let raw = json!({"d": self.descending, "f": from, "b": self.before, "s": self.size}).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses a token made by [`PageToken::encode`].
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let from = match (value["f"].get("i").and_then(Value::as_i64), value["f"].get("k").and_then(Value::as_str)) {
            (Some(i), _) => ItemKey::Index(i),
            (None, Some(k)) => ItemKey::Key(k.to_string()),
            _ => return None,
        };
        let size = u32::try_from(value["s"].as_u64()?).ok().filter(|s| (1..=MAX_PAGE).contains(s))?;
        Some(Self { descending: value["d"].as_bool()?, from, before: value["b"].as_bool()?, size })
    }
}

/// The largest item page served.
pub(crate) const MAX_PAGE: u32 = 100;

/// One page cut from items sorted by key: the page and the tokens of its neighbours.
#[derive(Debug)]
pub(crate) struct Cut<T> {
    /// The page, in the requested order.
    pub(crate) items: Vec<(ItemKey, T)>,
    /// The next page in the same order.
    pub(crate) next: Option<PageToken>,
    /// The page before (nearer the start of the order).
    pub(crate) previous: Option<PageToken>,
}

/// Cuts a page out of `all` (sorted by key, ascending) for a query in `descending` order that starts at
/// `from` (inclusive), or, with `before`, lies just before `from` (exclusive) against the order.
pub(crate) fn cut<T>(
    mut all: Vec<(ItemKey, T)>,
    descending: bool,
    from: Option<&ItemKey>,
    before: bool,
    size: u32,
) -> Cut<T> {
    if descending {
        all.reverse();
    }
    // In the requested order, `ahead(k, f)` is true when k comes at or after f.
    let ahead = |k: &ItemKey, f: &ItemKey| if descending { k <= f } else { k >= f };
    let size = size as usize;
    let (start, end) = match (from, before) {
        (None, _) => (0, size.min(all.len())),
        (Some(f), false) => {
            let start = all.iter().position(|(k, _)| ahead(k, f)).unwrap_or(all.len());
            (start, (start + size).min(all.len()))
        }
        (Some(f), true) => {
            let end = all.iter().position(|(k, _)| ahead(k, f)).unwrap_or(all.len());
            (end.saturating_sub(size), end)
        }
    };
    let next =
        (end < all.len()).then(|| PageToken { descending, from: all[end].0.clone(), before: false, size: size as u32 });
    let previous =
        (start > 0).then(|| PageToken { descending, from: all[start].0.clone(), before: true, size: size as u32 });
    let items = all.drain(start..end).collect();
    Cut { items, next, previous }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cut: &Cut<()>) -> Vec<i64> {
        cut.items
            .iter()
            .map(|(k, _)| match k {
                ItemKey::Index(i) => *i,
                ItemKey::Key(_) => unreachable!(),
            })
            .collect()
    }

    fn items(indices: &[i64]) -> Vec<(ItemKey, ())> {
        indices.iter().map(|i| (ItemKey::Index(*i), ())).collect()
    }

    #[test]
    fn object_names_round_trip() {
        for raw in ["CH0123.channel", "CH0123.messages", "CH0123.roster", "alice.myConversations", "a.b.userInfo"] {
            assert_eq!(ObjectId::parse(raw).unwrap().name(), raw);
        }
        assert_eq!(ObjectId::parse("a.b.userInfo").unwrap().owner, "a.b");
        for raw in ["alice.channel", "CH0.nothing", ".userInfo", "plain"] {
            assert!(ObjectId::parse(raw).is_none(), "{raw}");
        }
    }

    #[test]
    fn pages_walk_both_ways_with_inclusive_anchors() {
        let all = [0, 1, 2, 4, 5, 7, 8];
        // Newest first, no anchor.
        let page = cut(items(&all), true, None, false, 3);
        assert_eq!(keys(&page), [8, 7, 5]);
        assert!(page.previous.is_none());
        let next = page.next.unwrap();
        assert_eq!((next.from.clone(), next.before), (ItemKey::Index(4), false));
        let older = cut(items(&all), true, Some(&next.from), next.before, 3);
        assert_eq!(keys(&older), [4, 2, 1]);
        // And back again, to the page before it.
        let back = older.previous.unwrap();
        let newer = cut(items(&all), true, Some(&back.from), back.before, 3);
        assert_eq!(keys(&newer), [8, 7, 5]);
        // An inclusive anchor that is missing starts at the next item in the order.
        assert_eq!(keys(&cut(items(&all), true, Some(&ItemKey::Index(6)), false, 2)), [5, 4]);
        assert_eq!(keys(&cut(items(&all), false, Some(&ItemKey::Index(3)), false, 2)), [4, 5]);
        assert_eq!(keys(&cut(items(&all), false, Some(&ItemKey::Index(7)), false, 5)), [7, 8]);
        assert!(cut(items(&all), false, Some(&ItemKey::Index(7)), false, 5).next.is_none());
        assert!(cut(items(&[]), false, None, false, 5).items.is_empty());
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let token = PageToken { descending: true, from: ItemKey::Key("CHx".into()), before: true, size: 30 };
        assert_eq!(PageToken::parse(&token.encode()), Some(token));
        for garbage in ["", "x", "eyJ9", "bm90IGpzb24"] {
            assert!(PageToken::parse(garbage).is_none(), "{garbage}");
        }
    }
}
