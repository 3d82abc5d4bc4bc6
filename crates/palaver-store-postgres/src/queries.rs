//! The statements the store's methods share: lookups, keyset pages, participant insertion, event reads.
//! Each is the SQLite store's function of the same name, in PostgreSQL's dialect.

use palaver_api::sid::{DeliveryReceiptSid, MessageSid, RoleSid, ServiceSid};
use palaver_core::channel::DeliveryCounts;
use palaver_core::error::{Conflict, Error, Limit, ResourceKind, Result};
use palaver_core::event::{self, Event, EventKind, Origin, Source};
use palaver_core::input::{MAX_NON_CHAT_PARTICIPANTS, MAX_PARTICIPANTS};
use palaver_core::model::*;
use palaver_core::store::*;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::rows::*;
use crate::{Param, Tx};

/// Reads one page of a keyset-paginated query. `base` is a full `SELECT … WHERE …` using `$1…$n` for
/// `args`; `key` is the SQL expression of the ordering key and `key_of` reads it back from an item.
pub(crate) async fn keyset_page<T>(
    tx: &Tx,
    base: &str,
    key: &str,
    mut args: Vec<Param>,
    page: PageQuery,
    map: impl Fn(&Row) -> Result<T>,
    key_of: impl Fn(&T) -> i64,
) -> Result<Page<T>> {
    let ascending = !page.descending;
    let backwards = page.cursor.is_some_and(|c| c.backwards);
    // Reading backwards flips the scan; the page is put back in list order afterwards.
    let scan_ascending = ascending != backwards;
    let mut sql = base.to_string();
    if let Some(cursor) = page.cursor {
        args.push(Box::new(cursor.key));
        sql.push_str(&format!(" AND {key} {} ${}", if scan_ascending { ">" } else { "<" }, args.len()));
    }
    sql.push_str(&format!(
        " ORDER BY {key} {} LIMIT {}",
        if scan_ascending { "ASC" } else { "DESC" },
        u64::from(page.size) + 1
    ));
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
    let mut items = tx.query(&sql, &refs).await?.iter().map(map).collect::<Result<Vec<T>>>()?;
    let more = items.len() > page.size as usize;
    items.truncate(page.size as usize);
    if backwards {
        items.reverse();
    }
    let first = items.first().map(&key_of);
    let last = items.last().map(&key_of);
    let (next, previous) = if backwards {
        (
            last.or(page.cursor.map(|c| c.key)).map(|key| Cursor { backwards: false, key }),
            if more { first.map(|key| Cursor { backwards: true, key }) } else { None },
        )
    } else {
        (
            if more { last.map(|key| Cursor { backwards: false, key }) } else { None },
            page.cursor.map(|c| Cursor { backwards: true, key: first.unwrap_or(c.key) }),
        )
    };
    Ok(Page { items, next, previous })
}

/// Drops the row ids a page was keyed by.
pub(crate) fn without_ids<T>(page: Page<(i64, T)>) -> Page<T> {
    Page { items: page.items.into_iter().map(|(_, item)| item).collect(), next: page.next, previous: page.previous }
}

pub(crate) async fn find_service(tx: &Tx, sid: &ServiceSid) -> Result<Service> {
    let row = tx.query_opt(&format!("SELECT {SERVICE_COLUMNS} FROM services WHERE sid = $1"), &[&sid.as_str()]).await?;
    match row {
        Some(row) => service(&row).map(|(_, s)| s),
        None => Err(Error::not_found(ResourceKind::Service, sid)),
    }
}

fn conversation_key(conv: &ConversationRef) -> (&'static str, &str) {
    match conv {
        ConversationRef::Sid(sid) => ("sid", sid.as_str()),
        ConversationRef::UniqueName(name) => ("unique_name", name.as_str()),
    }
}

/// A conversation as this transaction sees it, with its row id.
pub(crate) async fn find_conversation(
    tx: &Tx,
    service: &ServiceSid,
    conv: &ConversationRef,
) -> Result<(i64, Conversation)> {
    let (column, value) = conversation_key(conv);
    let row = tx
        .query_opt(
            &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.service_sid = $1 AND c.{column} = $2"),
            &[&service.as_str(), &value],
        )
        .await?;
    match row {
        Some(row) => conversation(&row, 0),
        None => Err(Error::not_found(ResourceKind::Conversation, conv)),
    }
}

/// Locks a conversation's row for the rest of the write, then reads it: every write to a conversation goes
/// through here first, which orders them (see the crate documentation).
pub(crate) async fn lock_conversation(
    tx: &Tx,
    service: &ServiceSid,
    conv: &ConversationRef,
) -> Result<(i64, Conversation)> {
    let (column, value) = conversation_key(conv);
    let row = tx
        .query_opt(
            &format!("SELECT id FROM conversations WHERE service_sid = $1 AND {column} = $2 FOR UPDATE"),
            &[&service.as_str(), &value],
        )
        .await?;
    let Some(row) = row else { return Err(Error::not_found(ResourceKind::Conversation, conv)) };
    let id: i64 = get(&row, 0)?;
    Ok((id, conversation_by_id(tx, id).await?))
}

pub(crate) async fn conversation_by_id(tx: &Tx, id: i64) -> Result<Conversation> {
    let row =
        tx.query_one(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1"), &[&id]).await?;
    conversation(&row, 0).map(|(_, c)| c)
}

pub(crate) fn ensure_open(conv: &Conversation) -> Result<()> {
    if conv.state == ConversationState::Closed {
        return Err(Error::ConversationClosed(conv.sid.to_string()));
    }
    Ok(())
}

pub(crate) async fn find_participant(tx: &Tx, conv_id: i64, p: &ParticipantRef) -> Result<Participant> {
    let (column, value) = match p {
        ParticipantRef::Sid(sid) => ("sid", sid.as_str()),
        ParticipantRef::Identity(identity) => ("identity", identity.as_str()),
    };
    let row = tx
        .query_opt(
            &format!(
                "SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = $1 AND p.{column} = $2"
            ),
            &[&conv_id, &value],
        )
        .await?;
    match row {
        Some(row) => participant(&row, 0).map(|(_, p)| p),
        None => Err(Error::not_found(ResourceKind::Participant, p)),
    }
}

pub(crate) async fn find_user(tx: &Tx, service: &ServiceSid, user_ref: &UserRef) -> Result<User> {
    find_user_locking(tx, service, user_ref, "").await
}

/// [`find_user`], with `suffix` (`FOR UPDATE`) appended to the query.
pub(crate) async fn find_user_locking(tx: &Tx, service: &ServiceSid, user_ref: &UserRef, suffix: &str) -> Result<User> {
    let (column, value) = match user_ref {
        UserRef::Sid(sid) => ("sid", sid.as_str()),
        UserRef::Identity(identity) => ("identity", identity.as_str()),
    };
    let row = tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE service_sid = $1 AND {column} = $2 {suffix}"),
            &[&service.as_str(), &value],
        )
        .await?;
    match row {
        Some(row) => user(&row).map(|(_, u)| u),
        None => Err(Error::not_found(ResourceKind::User, user_ref)),
    }
}

pub(crate) async fn find_role(tx: &Tx, service: &ServiceSid, sid: &RoleSid) -> Result<Role> {
    let row = tx
        .query_opt(
            &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE service_sid = $1 AND sid = $2"),
            &[&service.as_str(), &sid.as_str()],
        )
        .await?;
    match row {
        Some(row) => role(&row).map(|(_, r)| r),
        None => Err(Error::not_found(ResourceKind::Role, sid)),
    }
}

pub(crate) async fn find_message(tx: &Tx, conv_id: i64, conv: &Conversation, sid: &MessageSid) -> Result<Message> {
    let row = tx
        .query_opt(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND sid = $2"),
            &[&conv_id, &sid.as_str()],
        )
        .await?;
    match row {
        Some(row) => message(&row, conv),
        None => Err(Error::not_found(ResourceKind::Message, sid)),
    }
}

/// Messages that exist above the read horizon: the span above it minus the deleted indices in it.
pub(crate) async fn unread_count(
    tx: &Tx,
    conv_id: i64,
    conv: &Conversation,
    horizon: Option<i64>,
) -> Result<Option<i64>> {
    let Some(horizon) = horizon else { return Ok(None) };
    let span = (conv.next_message_index - 1 - horizon).max(0);
    if span == 0 {
        return Ok(Some(0));
    }
    let deleted: i64 = get(
        &tx.query_one(
            "SELECT COUNT(*) FROM deleted_messages WHERE conversation_id = $1 AND idx > $2",
            &[&conv_id, &horizon],
        )
        .await?,
        0,
    )?;
    Ok(Some(span - deleted))
}

pub(crate) async fn insert_service(tx: &Tx, new: &NewService) -> Result<Service> {
    let mut roles = Vec::new();
    for (name, kind, permissions) in DEFAULT_ROLES {
        let sid = RoleSid::generate();
        let permissions = serde_json::to_string(permissions).map_err(|e| Error::Storage(e.to_string()))?;
        tx.execute(
            "INSERT INTO roles(sid, service_sid, friendly_name, kind, permissions, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            &[&sid.as_str(), &new.sid.as_str(), name, &kind.as_str(), &permissions, &ms(new.now)],
        )
        .await?;
        roles.push(sid);
    }
    // DEFAULT_ROLES order: service admin, service user, channel admin, channel user.
    tx.execute(
        "INSERT INTO services(sid, friendly_name, creator_role_sid, participant_role_sid, user_role_sid, \
         date_created, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[
            &new.sid.as_str(),
            &new.friendly_name,
            &roles[2].as_str(),
            &roles[3].as_str(),
            &roles[1].as_str(),
            &ms(new.now),
        ],
    )
    .await?;
    find_service(tx, &new.sid).await
}

pub(crate) async fn read_account_config(tx: &Tx) -> Result<Option<AccountConfig>> {
    let row = tx
        .query_opt(
            "SELECT default_service_sid, default_messaging_service_sid, default_inactive_timer, default_closed_timer \
             FROM account_config WHERE id = 1",
            &[],
        )
        .await?;
    row.map(|r| {
        Ok(AccountConfig {
            default_service_sid: parse_col(&r, 0)?,
            default_messaging_service_sid: parse_opt_col(&r, 1)?,
            default_inactive_timer: get::<Option<i64>>(&r, 2)?.map(palaver_core::input::TimerDuration::from_secs),
            default_closed_timer: get::<Option<i64>>(&r, 3)?.map(palaver_core::input::TimerDuration::from_secs),
        })
    })
    .transpose()
}

/// The account configuration, which [`Store::bootstrap`](palaver_core::store::Store::bootstrap) always creates.
pub(crate) async fn bootstrapped_account_config(tx: &Tx) -> Result<AccountConfig> {
    read_account_config(tx).await?.ok_or_else(|| Error::Storage("the store was not bootstrapped".into()))
}

/// Fails when another conversation of `service` has `name`. A race with a concurrent claim is caught by the
/// `conversations_unique_name` constraint instead.
pub(crate) async fn ensure_unique_name_free(tx: &Tx, service: &ServiceSid, name: &str, except_id: i64) -> Result<()> {
    let taken: bool = get(
        &tx.query_one(
            "SELECT EXISTS(SELECT 1 FROM conversations WHERE service_sid = $1 AND unique_name = $2 AND id <> $3)",
            &[&service.as_str(), &name, &except_id],
        )
        .await?,
        0,
    )?;
    if taken {
        return Err(Error::Conflict(Conflict::UniqueNameTaken(name.to_string())));
    }
    Ok(())
}

/// Adds a participant to a conversation whose row this write has locked (or just created).
pub(crate) async fn insert_participant(
    tx: &mut Tx,
    conv_id: i64,
    conv: &Conversation,
    service: &Service,
    new: NewParticipant,
) -> Result<Participant> {
    let counts = tx
        .query_one("SELECT COUNT(*), COUNT(binding_type) FROM participants WHERE conversation_id = $1", &[&conv_id])
        .await?;
    let (total, non_chat): (i64, i64) = (get(&counts, 0)?, get(&counts, 1)?);
    if total as usize >= MAX_PARTICIPANTS {
        return Err(Error::LimitExceeded(Limit::Participants(MAX_PARTICIPANTS)));
    }
    if let Some(identity) = &new.identity {
        let exists: bool = get(
            &tx.query_one(
                "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = $1 AND identity = $2)",
                &[&conv_id, &identity.as_str()],
            )
            .await?,
            0,
        )?;
        if exists {
            return Err(Error::Conflict(Conflict::ParticipantIdentityTaken(identity.to_string())));
        }
        // A chat participant is always backed by a user of the service.
        let created = tx
            .execute(
                "INSERT INTO users(sid, service_sid, identity, attributes, role_sid, date_created, date_updated) \
                 VALUES ($1, $2, $3, '{}', $4, $5, $5) ON CONFLICT ON CONSTRAINT users_identity DO NOTHING",
                &[
                    &new.new_user_sid.as_str(),
                    &service.sid.as_str(),
                    &identity.as_str(),
                    &service.user_role_sid.as_str(),
                    &ms(new.date_created),
                ],
            )
            .await?;
        if created == 1 {
            let user = find_user(tx, &service.sid, &UserRef::Sid(new.new_user_sid.clone())).await?;
            tx.append_event(
                user.sid.as_str(),
                EventKind::UserAdded,
                user.sid.as_str(),
                event::user_snapshot(&user).to_string(),
                new.date_created,
            )
            .await?;
        }
    }
    if let Some(binding) = &new.binding {
        if non_chat as usize >= MAX_NON_CHAT_PARTICIPANTS {
            return Err(Error::LimitExceeded(Limit::NonChatParticipants(MAX_NON_CHAT_PARTICIPANTS)));
        }
        let exists: bool = get(
            &tx.query_one(
                "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = $1 AND binding_address = $2)",
                &[&conv_id, &binding.address],
            )
            .await?,
            0,
        )?;
        if exists {
            return Err(Error::Conflict(Conflict::ParticipantAddressTaken(binding.address.clone())));
        }
    }
    let role = new.role_sid.clone().unwrap_or_else(|| service.participant_role_sid.clone());
    let b = new.binding.as_ref();
    let identity = new.identity.as_ref().map(|i| i.as_str().to_string());
    tx.execute_unique(
        "INSERT INTO participants(sid, conversation_id, conversation_sid, service_sid, identity, binding_type, \
         binding_address, binding_proxy, binding_projected, binding_name, binding_level, attributes, role_sid, \
         date_created, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &new.sid.as_str(),
            &conv_id,
            &conv.sid.as_str(),
            &service.sid.as_str(),
            &identity,
            &b.map(|b| b.kind.as_str()),
            &b.map(|b| b.address.as_str()),
            &b.and_then(|b| b.proxy_address.as_deref()),
            &b.and_then(|b| b.projected_address.as_deref()),
            &b.and_then(|b| b.name.as_deref()),
            &b.and_then(|b| b.level.as_deref()),
            &new.attributes.as_str(),
            &role.as_str(),
            &ms(new.date_created),
            &ms(new.date_updated),
        ],
        "participants_identity",
        || Conflict::ParticipantIdentityTaken(identity.clone().unwrap_or_default()),
    )
    .await?;
    let created = find_participant(tx, conv_id, &ParticipantRef::Sid(new.sid)).await?;
    let seq = tx
        .append_event(
            conv.sid.as_str(),
            EventKind::ParticipantAdded,
            created.sid.as_str(),
            event::participant_snapshot(&created).to_string(),
            new.date_created,
        )
        .await?;
    if let Some(identity) = &created.identity {
        let user = find_user(tx, &service.sid, &UserRef::Identity(identity.as_str().to_string())).await?;
        let conv_now = conversation_by_id(tx, conv_id).await?;
        tx.append_event(
            user.sid.as_str(),
            EventKind::UserConversationJoined,
            conv.sid.as_str(),
            event::user_conversation_snapshot(&conv_now, &created, Some(seq)).to_string(),
            new.date_created,
        )
        .await?;
    }
    Ok(created)
}

/// Tells a chat participant's user stream that the user is no longer in the conversation.
pub(crate) async fn user_left(
    tx: &mut Tx,
    service: &ServiceSid,
    conv: &Conversation,
    p: &Participant,
    now: OffsetDateTime,
) -> Result<()> {
    let Some(identity) = &p.identity else { return Ok(()) };
    if let Ok(user) = find_user(tx, service, &UserRef::Identity(identity.as_str().to_string())).await {
        tx.append_event(
            user.sid.as_str(),
            EventKind::UserConversationLeft,
            conv.sid.as_str(),
            event::user_conversation_snapshot(conv, p, None).to_string(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// A chat participant took another identity: the old user's stream says it left; a user is created for the
/// new identity (with `new_user_sid`) when there is none, and its stream says it joined from `updated_seq`
/// on. The SQLite store's `renamed_participant`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn renamed_participant(
    tx: &mut Tx,
    service: &ServiceSid,
    conv_id: i64,
    before: &Participant,
    after: &Participant,
    new_user_sid: Option<&palaver_api::sid::UserSid>,
    updated_seq: i64,
    now: OffsetDateTime,
) -> Result<()> {
    let conv = conversation_by_id(tx, conv_id).await?;
    user_left(tx, service, &conv, before, now).await?;
    let Some(identity) = &after.identity else { return Ok(()) };
    if let Some(user_sid) = new_user_sid {
        let role = find_service(tx, service).await?.user_role_sid;
        let created = tx
            .execute(
                "INSERT INTO users(sid, service_sid, identity, attributes, role_sid, date_created, date_updated) \
                 VALUES ($1, $2, $3, '{}', $4, $5, $5) ON CONFLICT ON CONSTRAINT users_identity DO NOTHING",
                &[&user_sid.as_str(), &service.as_str(), &identity.as_str(), &role.as_str(), &ms(now)],
            )
            .await?;
        if created == 1 {
            let user = find_user(tx, service, &UserRef::Sid(user_sid.clone())).await?;
            tx.append_event(
                user.sid.as_str(),
                EventKind::UserAdded,
                user.sid.as_str(),
                event::user_snapshot(&user).to_string(),
                now,
            )
            .await?;
        }
    }
    if let Ok(user) = find_user(tx, service, &UserRef::Identity(identity.as_str().to_string())).await {
        tx.append_event(
            user.sid.as_str(),
            EventKind::UserConversationJoined,
            conv.sid.as_str(),
            event::user_conversation_snapshot(&conv, after, Some(updated_seq)).to_string(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Deletes a conversation (locked by the caller) and everything in it, telling its chat participants' users
/// they left and its listeners that it is gone. The SQLite store's `remove_conversation`.
pub(crate) async fn remove_conversation(
    tx: &mut Tx,
    service: &ServiceSid,
    id: i64,
    current: &Conversation,
    now: OffsetDateTime,
) -> Result<()> {
    let participants = tx
        .query(&format!("SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = $1"), &[&id])
        .await?
        .iter()
        .map(|r| participant(r, 0).map(|(_, p)| p))
        .collect::<Result<Vec<_>>>()?;
    for p in &participants {
        user_left(tx, service, current, p, now).await?;
    }
    delete_conversation_rows(tx, id).await?;
    let sid = current.sid.as_str();
    tx.append_event(sid, EventKind::ConversationRemoved, sid, event::conversation_snapshot(current).to_string(), now)
        .await?;
    Ok(())
}

pub(crate) async fn delete_conversation_rows(tx: &Tx, conv_id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM messages WHERE conversation_id = $1",
        "DELETE FROM deleted_messages WHERE conversation_id = $1",
        "DELETE FROM message_keys WHERE conversation_id = $1",
        "DELETE FROM participants WHERE conversation_id = $1",
        "DELETE FROM conversation_webhooks WHERE conversation_id = $1",
        "DELETE FROM delivery_receipts WHERE conversation_id = $1",
        "DELETE FROM conversations WHERE id = $1",
    ] {
        tx.execute(sql, &[&conv_id]).await?;
    }
    Ok(())
}

/// A participant and its conversation read from one joined row, with the user's SID (column after both).
pub(crate) fn participant_and_conversation(row: &Row) -> Result<(i64, Participant, i64, Conversation)> {
    let (pid, p) = participant(row, 0)?;
    let (cid, c) = conversation(row, PARTICIPANT_COLUMN_COUNT)?;
    Ok((pid, p, cid, c))
}

pub(crate) const USER_SID_COLUMN: usize = PARTICIPANT_COLUMN_COUNT + CONVERSATION_COLUMN_COUNT;

pub(crate) async fn to_user_conversation(
    tx: &Tx,
    user_sid: &palaver_api::sid::UserSid,
    parts: (i64, Participant, i64, Conversation),
) -> Result<UserConversation> {
    let (_, participant, conv_id, conversation) = parts;
    let unread = unread_count(tx, conv_id, &conversation, participant.last_read_message_index).await?;
    Ok(UserConversation { user_sid: user_sid.clone(), participant, conversation, unread_messages_count: unread })
}

pub(crate) const EVENT_COLUMNS: &str =
    "id, stream, seq, kind, subject, data, at, service_sid, source, client_identity, webhooks";

pub(crate) async fn query_events(tx: &Tx, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Event>> {
    tx.query(sql, args)
        .await?
        .iter()
        .map(|r| {
            let kind: String = get(r, 3)?;
            let data: String = get(r, 5)?;
            let source: String = get(r, 8)?;
            Ok(Event {
                id: get(r, 0)?,
                stream: get(r, 1)?,
                seq: get(r, 2)?,
                kind: EventKind::parse(&kind).ok_or_else(|| Error::Storage(format!("unknown event kind {kind}")))?,
                subject: get(r, 4)?,
                data: serde_json::from_str(&data).map_err(|e| Error::Storage(e.to_string()))?,
                at: palaver_core::clock::from_unix_millis(get(r, 6)?),
                service_sid: get(r, 7)?,
                origin: Origin { source: Source::parse(&source), client_identity: get(r, 9)?, webhooks: get(r, 10)? },
            })
        })
        .collect()
}

/// Queues a delivery receipt per non-chat recipient of a new message; their counts, if there are any.
pub(crate) async fn create_receipts(
    tx: &Tx,
    conv_id: i64,
    conv: &Conversation,
    message: &MessageSid,
    author_participant: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<DeliveryCounts>> {
    let recipients = tx
        .query(
            "SELECT sid, binding_type, binding_address FROM participants WHERE conversation_id = $1 \
             AND binding_type IS NOT NULL AND sid IS DISTINCT FROM $2::text ORDER BY id",
            &[&conv_id, &author_participant],
        )
        .await?;
    if recipients.is_empty() {
        return Ok(None);
    }
    for r in &recipients {
        let (participant, channel, address): (String, String, Option<String>) = (get(r, 0)?, get(r, 1)?, get(r, 2)?);
        tx.execute(
            "INSERT INTO delivery_receipts(sid, conversation_id, conversation_sid, service_sid, message_sid, \
             participant_sid, channel, address, status, next_attempt, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, 'queued', $8, $8, $8)",
            &[
                &DeliveryReceiptSid::generate().as_str(),
                &conv_id,
                &conv.sid.as_str(),
                &conv.service_sid.as_str(),
                &message.as_str(),
                &participant,
                &channel,
                &ms(now),
                &address,
            ],
        )
        .await?;
    }
    Ok(Some(DeliveryCounts::queued(recipients.len() as u32)))
}
