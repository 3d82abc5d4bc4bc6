//! Mapping between rows and domain types. The column lists are the SQLite store's, so the two backends read
//! side by side.

use std::str::FromStr;

use palaver_core::clock::{from_unix_millis, unix_millis};
use palaver_core::error::{Error, Result};
use palaver_core::input::{Attributes, Identity, NotificationLevel, TimerDuration};
use palaver_core::model::*;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::pg;

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

pub(crate) fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

/// When an outbox claim made at `now` for `lease` ends, as stored (saturating: a lease too long to store
/// simply never ends).
pub(crate) fn lease_end(now: OffsetDateTime, lease: std::time::Duration) -> i64 {
    ms(now).saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// Column `i` of `row`, as a storage error when its type does not match.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(pg)
}

pub(crate) fn parse_col<T: FromStr>(row: &Row, i: usize) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw: String = get(row, i)?;
    raw.parse().map_err(|e: T::Err| Error::Storage(format!("column {i}: {e}")))
}

pub(crate) fn parse_opt_col<T: FromStr>(row: &Row, i: usize) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = get(row, i)?;
    raw.map(|r| r.parse().map_err(|e: T::Err| Error::Storage(format!("column {i}: {e}")))).transpose()
}

pub(crate) fn time_col(row: &Row, i: usize) -> Result<OffsetDateTime> {
    Ok(from_unix_millis(get(row, i)?))
}

pub(crate) fn opt_time_col(row: &Row, i: usize) -> Result<Option<OffsetDateTime>> {
    Ok(get::<Option<i64>>(row, i)?.map(from_unix_millis))
}

/// Columns of a conversation row, in the order [`conversation`] reads them. Needs the table aliased `c`.
pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.sid, c.service_sid, c.friendly_name, c.unique_name, \
    c.attributes, c.messaging_service_sid, c.state, c.state_updated, c.created_by, c.email_address, c.email_name, \
    c.date_created, c.date_updated, c.timer_inactive, c.timer_closed, c.date_inactive, c.date_closed, \
    c.next_message_index, c.deleted_messages, \
    (SELECT m.idx FROM messages m WHERE m.conversation_id = c.id ORDER BY m.idx DESC LIMIT 1), \
    (SELECT m.date_created FROM messages m WHERE m.conversation_id = c.id ORDER BY m.idx DESC LIMIT 1), \
    (SELECT COUNT(*) FROM participants p WHERE p.conversation_id = c.id)";

/// Number of columns in [`CONVERSATION_COLUMNS`].
pub(crate) const CONVERSATION_COLUMN_COUNT: usize = 23;

/// Reads a conversation starting at column `at`; returns its row id too.
pub(crate) fn conversation(row: &Row, at: usize) -> Result<(i64, Conversation)> {
    let state_raw: String = get(row, at + 7)?;
    let state = ConversationState::parse(&state_raw)
        .ok_or_else(|| Error::Storage(format!("unknown conversation state {state_raw}")))?;
    let next_index: i64 = get(row, at + 18)?;
    let deleted: i64 = get(row, at + 19)?;
    Ok((
        get(row, at)?,
        Conversation {
            sid: parse_col(row, at + 1)?,
            service_sid: parse_col(row, at + 2)?,
            friendly_name: get(row, at + 3)?,
            unique_name: get(row, at + 4)?,
            attributes: Attributes::from_trusted(get(row, at + 5)?),
            messaging_service_sid: parse_opt_col(row, at + 6)?,
            state,
            state_updated: time_col(row, at + 8)?,
            created_by: get(row, at + 9)?,
            email_binding: EmailBinding { address: get(row, at + 10)?, name: get(row, at + 11)? },
            date_created: time_col(row, at + 12)?,
            date_updated: time_col(row, at + 13)?,
            timers: Timers {
                inactive_after: get::<Option<i64>>(row, at + 14)?.map(TimerDuration::from_secs),
                closed_after: get::<Option<i64>>(row, at + 15)?.map(TimerDuration::from_secs),
                date_inactive: opt_time_col(row, at + 16)?,
                date_closed: opt_time_col(row, at + 17)?,
            },
            last_message_index: get(row, at + 20)?,
            last_message_date: opt_time_col(row, at + 21)?,
            messages_count: next_index - deleted,
            next_message_index: next_index,
            participants_count: get(row, at + 22)?,
        },
    ))
}

/// Columns of a participant row, in the order [`participant`] reads them. Needs the table aliased `p`.
pub(crate) const PARTICIPANT_COLUMNS: &str = "p.id, p.sid, p.conversation_sid, p.service_sid, p.identity, \
    p.binding_type, p.binding_address, p.binding_proxy, p.binding_projected, p.binding_name, p.binding_level, \
    p.attributes, p.role_sid, p.last_read_index, p.last_read_timestamp, p.notification_level, p.date_created, \
    p.date_updated";

/// Number of columns in [`PARTICIPANT_COLUMNS`].
pub(crate) const PARTICIPANT_COLUMN_COUNT: usize = 18;

/// Reads a participant starting at column `at`; returns its row id too.
pub(crate) fn participant(row: &Row, at: usize) -> Result<(i64, Participant)> {
    let binding_type: Option<String> = get(row, at + 5)?;
    let binding = match binding_type {
        Some(kind) => Some(MessagingBinding {
            kind: BindingKind::parse(&kind).ok_or_else(|| Error::Storage(format!("unknown binding {kind}")))?,
            address: get::<Option<String>>(row, at + 6)?.unwrap_or_default(),
            proxy_address: get(row, at + 7)?,
            projected_address: get(row, at + 8)?,
            name: get(row, at + 9)?,
            level: get(row, at + 10)?,
        }),
        None => None,
    };
    let level: String = get(row, at + 15)?;
    Ok((
        get(row, at)?,
        Participant {
            sid: parse_col(row, at + 1)?,
            conversation_sid: parse_col(row, at + 2)?,
            service_sid: parse_col(row, at + 3)?,
            identity: get::<Option<String>>(row, at + 4)?.map(Identity::from_trusted),
            binding,
            attributes: Attributes::from_trusted(get(row, at + 11)?),
            role_sid: parse_opt_col(row, at + 12)?,
            last_read_message_index: get(row, at + 13)?,
            last_read_timestamp: opt_time_col(row, at + 14)?,
            notification_level: NotificationLevel::parse(&level).unwrap_or_default(),
            date_created: time_col(row, at + 16)?,
            date_updated: time_col(row, at + 17)?,
        },
    ))
}

/// Columns of a message row, in the order [`message`] reads them.
pub(crate) const MESSAGE_COLUMNS: &str = "idx, sid, author, body, subject, attributes, participant_sid, content_sid, \
    date_created, date_updated, delivery, media";

/// Reads a message of the given conversation.
pub(crate) fn message(row: &Row, conv: &Conversation) -> Result<Message> {
    Ok(Message {
        index: get(row, 0)?,
        sid: parse_col(row, 1)?,
        conversation_sid: conv.sid.clone(),
        service_sid: conv.service_sid.clone(),
        author: get(row, 2)?,
        body: get(row, 3)?,
        subject: get(row, 4)?,
        attributes: Attributes::from_trusted(get(row, 5)?),
        participant_sid: parse_opt_col(row, 6)?,
        content_sid: get(row, 7)?,
        date_created: time_col(row, 8)?,
        date_updated: opt_time_col(row, 9)?,
        delivery: get::<Option<String>>(row, 10)?.map(|raw| palaver_core::channel::DeliveryCounts::from_json(&raw)),
        media: get::<Option<String>>(row, 11)?
            .and_then(|raw| serde_json::from_str::<Vec<serde_json::Value>>(&raw).ok())
            .unwrap_or_default(),
    })
}

/// Columns of a user row, in the order [`user`] reads them.
pub(crate) const USER_COLUMNS: &str =
    "id, sid, service_sid, identity, friendly_name, attributes, role_sid, date_created, date_updated";

/// Reads a user; returns its row id too.
pub(crate) fn user(row: &Row) -> Result<(i64, User)> {
    Ok((
        get(row, 0)?,
        User {
            sid: parse_col(row, 1)?,
            service_sid: parse_col(row, 2)?,
            identity: Identity::from_trusted(get(row, 3)?),
            friendly_name: get(row, 4)?,
            attributes: Attributes::from_trusted(get(row, 5)?),
            role_sid: parse_opt_col(row, 6)?,
            date_created: time_col(row, 7)?,
            date_updated: time_col(row, 8)?,
        },
    ))
}

/// Columns of a role row, in the order [`role`] reads them.
pub(crate) const ROLE_COLUMNS: &str =
    "id, sid, service_sid, friendly_name, kind, permissions, date_created, date_updated";

/// Reads a role; returns its row id too.
pub(crate) fn role(row: &Row) -> Result<(i64, Role)> {
    let kind: String = get(row, 4)?;
    let permissions: String = get(row, 5)?;
    Ok((
        get(row, 0)?,
        Role {
            sid: parse_col(row, 1)?,
            service_sid: parse_col(row, 2)?,
            friendly_name: get(row, 3)?,
            kind: RoleKind::parse(&kind).ok_or_else(|| Error::Storage(format!("unknown role kind {kind}")))?,
            permissions: serde_json::from_str(&permissions).map_err(|e| Error::Storage(e.to_string()))?,
            date_created: time_col(row, 6)?,
            date_updated: time_col(row, 7)?,
        },
    ))
}

/// Columns of a service row, in the order [`service`] reads them.
pub(crate) const SERVICE_COLUMNS: &str = "id, sid, friendly_name, creator_role_sid, participant_role_sid, \
    user_role_sid, reachability_enabled, date_created, date_updated";

/// Reads a service; returns its row id too.
pub(crate) fn service(row: &Row) -> Result<(i64, Service)> {
    Ok((
        get(row, 0)?,
        Service {
            sid: parse_col(row, 1)?,
            friendly_name: get(row, 2)?,
            creator_role_sid: parse_col(row, 3)?,
            participant_role_sid: parse_col(row, 4)?,
            user_role_sid: parse_col(row, 5)?,
            reachability_enabled: get(row, 6)?,
            date_created: time_col(row, 7)?,
            date_updated: time_col(row, 8)?,
        },
    ))
}

/// Reads an API key.
pub(crate) fn api_key(row: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        sid: parse_col(row, 0)?,
        friendly_name: get(row, 1)?,
        secret: get(row, 2)?,
        date_created: time_col(row, 3)?,
    })
}
