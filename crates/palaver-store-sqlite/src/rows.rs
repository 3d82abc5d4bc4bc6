//! Mapping between rows and domain types.

use std::str::FromStr;

use palaver_core::clock::{from_unix_millis, unix_millis};
use palaver_core::input::{Attributes, Identity, NotificationLevel, TimerDuration};
use palaver_core::model::*;
use rusqlite::Row;
use time::OffsetDateTime;

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

fn conversion_error(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

pub(crate) fn parse_col<T: FromStr>(row: &Row<'_>, column: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw: String = row.get(column)?;
    raw.parse().map_err(|e: T::Err| conversion_error(column, e.to_string()))
}

pub(crate) fn parse_opt_col<T: FromStr>(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = row.get(column)?;
    raw.map(|r| r.parse().map_err(|e: T::Err| conversion_error(column, e.to_string()))).transpose()
}

pub(crate) fn time_col(row: &Row<'_>, column: usize) -> rusqlite::Result<OffsetDateTime> {
    Ok(from_unix_millis(row.get(column)?))
}

pub(crate) fn opt_time_col(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    Ok(row.get::<_, Option<i64>>(column)?.map(from_unix_millis))
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
pub(crate) fn conversation(row: &Row<'_>, at: usize) -> rusqlite::Result<(i64, Conversation)> {
    let state_raw: String = row.get(at + 7)?;
    let state = ConversationState::parse(&state_raw)
        .ok_or_else(|| conversion_error(at + 7, format!("unknown state {state_raw}")))?;
    let next_index: i64 = row.get(at + 18)?;
    let deleted: i64 = row.get(at + 19)?;
    Ok((
        row.get(at)?,
        Conversation {
            sid: parse_col(row, at + 1)?,
            service_sid: parse_col(row, at + 2)?,
            friendly_name: row.get(at + 3)?,
            unique_name: row.get(at + 4)?,
            attributes: Attributes::from_trusted(row.get(at + 5)?),
            messaging_service_sid: parse_opt_col(row, at + 6)?,
            state,
            state_updated: time_col(row, at + 8)?,
            created_by: row.get(at + 9)?,
            email_binding: EmailBinding { address: row.get(at + 10)?, name: row.get(at + 11)? },
            date_created: time_col(row, at + 12)?,
            date_updated: time_col(row, at + 13)?,
            timers: Timers {
                inactive_after: row.get::<_, Option<i64>>(at + 14)?.map(TimerDuration::from_secs),
                closed_after: row.get::<_, Option<i64>>(at + 15)?.map(TimerDuration::from_secs),
                date_inactive: opt_time_col(row, at + 16)?,
                date_closed: opt_time_col(row, at + 17)?,
            },
            last_message_index: row.get(at + 20)?,
            last_message_date: opt_time_col(row, at + 21)?,
            messages_count: next_index - deleted,
            next_message_index: next_index,
            participants_count: row.get(at + 22)?,
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
pub(crate) fn participant(row: &Row<'_>, at: usize) -> rusqlite::Result<(i64, Participant)> {
    let binding_type: Option<String> = row.get(at + 5)?;
    let binding = match binding_type {
        Some(kind) => Some(MessagingBinding {
            kind: BindingKind::parse(&kind)
                .ok_or_else(|| conversion_error(at + 5, format!("unknown binding {kind}")))?,
            address: row.get::<_, Option<String>>(at + 6)?.unwrap_or_default(),
            proxy_address: row.get(at + 7)?,
            projected_address: row.get(at + 8)?,
            name: row.get(at + 9)?,
            level: row.get(at + 10)?,
        }),
        None => None,
    };
    let level: String = row.get(at + 15)?;
    Ok((
        row.get(at)?,
        Participant {
            sid: parse_col(row, at + 1)?,
            conversation_sid: parse_col(row, at + 2)?,
            service_sid: parse_col(row, at + 3)?,
            identity: row.get::<_, Option<String>>(at + 4)?.map(Identity::from_trusted),
            binding,
            attributes: Attributes::from_trusted(row.get(at + 11)?),
            role_sid: parse_opt_col(row, at + 12)?,
            last_read_message_index: row.get(at + 13)?,
            last_read_timestamp: opt_time_col(row, at + 14)?,
            notification_level: NotificationLevel::parse(&level).unwrap_or_default(),
            date_created: time_col(row, at + 16)?,
            date_updated: time_col(row, at + 17)?,
        },
    ))
}

/// Columns of a message row, in the order [`message`] reads them.
pub(crate) const MESSAGE_COLUMNS: &str = "idx, sid, author, body, subject, attributes, participant_sid, content_sid, date_created, date_updated, delivery, media";

/// Reads a message of the given conversation.
pub(crate) fn message(row: &Row<'_>, conv: &Conversation) -> rusqlite::Result<Message> {
    Ok(Message {
        index: row.get(0)?,
        sid: parse_col(row, 1)?,
        conversation_sid: conv.sid.clone(),
        service_sid: conv.service_sid.clone(),
        author: row.get(2)?,
        body: row.get(3)?,
        subject: row.get(4)?,
        attributes: Attributes::from_trusted(row.get(5)?),
        participant_sid: parse_opt_col(row, 6)?,
        content_sid: row.get(7)?,
        date_created: time_col(row, 8)?,
        date_updated: opt_time_col(row, 9)?,
        delivery: row.get::<_, Option<String>>(10)?.map(|raw| palaver_core::channel::DeliveryCounts::from_json(&raw)),
        media: row
            .get::<_, Option<String>>(11)?
            .and_then(|raw| serde_json::from_str::<Vec<serde_json::Value>>(&raw).ok())
            .unwrap_or_default(),
    })
}

/// Columns of a user row, in the order [`user`] reads them.
pub(crate) const USER_COLUMNS: &str =
    "id, sid, service_sid, identity, friendly_name, attributes, role_sid, date_created, date_updated";

/// Reads a user; returns its row id too.
pub(crate) fn user(row: &Row<'_>) -> rusqlite::Result<(i64, User)> {
    Ok((
        row.get(0)?,
        User {
            sid: parse_col(row, 1)?,
            service_sid: parse_col(row, 2)?,
            identity: Identity::from_trusted(row.get(3)?),
            friendly_name: row.get(4)?,
            attributes: Attributes::from_trusted(row.get(5)?),
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
pub(crate) fn role(row: &Row<'_>) -> rusqlite::Result<(i64, Role)> {
    let kind: String = row.get(4)?;
    let permissions: String = row.get(5)?;
    Ok((
        row.get(0)?,
        Role {
            sid: parse_col(row, 1)?,
            service_sid: parse_col(row, 2)?,
            friendly_name: row.get(3)?,
            kind: RoleKind::parse(&kind).ok_or_else(|| conversion_error(4, format!("unknown role kind {kind}")))?,
            permissions: serde_json::from_str(&permissions).map_err(|e| conversion_error(5, e.to_string()))?,
            date_created: time_col(row, 6)?,
            date_updated: time_col(row, 7)?,
        },
    ))
}

/// Columns of a service row, in the order [`service`] reads them.
pub(crate) const SERVICE_COLUMNS: &str = "id, sid, friendly_name, creator_role_sid, participant_role_sid, user_role_sid, \
    reachability_enabled, date_created, date_updated";

/// Reads a service; returns its row id too.
pub(crate) fn service(row: &Row<'_>) -> rusqlite::Result<(i64, Service)> {
    Ok((
        row.get(0)?,
        Service {
            sid: parse_col(row, 1)?,
            friendly_name: row.get(2)?,
            creator_role_sid: parse_col(row, 3)?,
            participant_role_sid: parse_col(row, 4)?,
            user_role_sid: parse_col(row, 5)?,
            reachability_enabled: row.get(6)?,
            date_created: time_col(row, 7)?,
            date_updated: time_col(row, 8)?,
        },
    ))
}

/// Reads an API key.
pub(crate) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        sid: parse_col(row, 0)?,
        friendly_name: row.get(1)?,
        secret: row.get(2)?,
        date_created: time_col(row, 3)?,
    })
}
