//! Uploaded media records and their attachment to messages.

use palaver_api::sid::{MediaSid, MessageSid, ServiceSid};
use palaver_core::error::{Error, InvalidInput, ResourceKind, Result};
use palaver_core::media::{Media, MediaCategory};
use palaver_core::model::Conversation;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{Cached, storage};
use crate::rows::{ms, parse_col, parse_opt_col, time_col};

const MEDIA_COLUMNS: &str = "sid, service_sid, content_type, filename, size, sha256, author, category, \
     conversation_sid, message_sid, date_created";

fn media(row: &Row<'_>) -> rusqlite::Result<Media> {
    let category: String = row.get(7)?;
    Ok(Media {
        sid: parse_col(row, 0)?,
        service_sid: parse_col(row, 1)?,
        content_type: row.get(2)?,
        filename: row.get(3)?,
        size: row.get::<_, i64>(4)? as u64,
        sha256: row.get(5)?,
        author: row.get(6)?,
        category: MediaCategory::parse(&category).unwrap_or(MediaCategory::Media),
        conversation_sid: parse_opt_col(row, 8)?,
        message_sid: parse_opt_col(row, 9)?,
        date_created: time_col(row, 10)?,
    })
}

pub(crate) fn create(tx: &Connection, new: &Media) -> Result<Media> {
    tx.execute_cached(
        "INSERT INTO media(sid, service_sid, content_type, filename, size, sha256, author, category, date_created) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            new.sid.as_str(),
            new.service_sid.as_str(),
            new.content_type,
            new.filename,
            new.size as i64,
            new.sha256,
            new.author,
            new.category.as_str(),
            ms(new.date_created),
        ],
    )
    .map_err(storage)?;
    get(tx, &new.service_sid, &new.sid)
}

pub(crate) fn get(tx: &Connection, service: &ServiceSid, sid: &MediaSid) -> Result<Media> {
    tx.query_row_cached(
        &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE sid = ?1 AND service_sid = ?2"),
        params![sid.as_str(), service.as_str()],
        media,
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| Error::not_found(ResourceKind::Media, sid))
}

pub(crate) fn find(tx: &Connection, sid: &MediaSid) -> Result<Media> {
    tx.query_row_cached(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE sid = ?1"), params![sid.as_str()], media)
        .optional()
        .map_err(storage)?
        .ok_or_else(|| Error::not_found(ResourceKind::Media, sid))
}

/// Attaches uploaded media to a new message; returns their descriptors in the given order.
pub(crate) fn attach(
    tx: &Connection,
    conv: &Conversation,
    message: &MessageSid,
    sids: &[MediaSid],
    max_total_bytes: u64,
) -> Result<Vec<Value>> {
    let mut descriptors = Vec::with_capacity(sids.len());
    let mut total = 0u64;
    for sid in sids {
        let item = get(tx, &conv.service_sid, sid)?;
        if item.message_sid.is_some() {
            return Err(InvalidInput::new("MediaSid", format!("media {sid} is already attached to a message")).into());
        }
        total += item.size;
        if total > max_total_bytes {
            return Err(InvalidInput::new(
                "MediaSid",
                format!("the media of one message are limited to {} MB together", max_total_bytes / (1024 * 1024)),
            )
            .into());
        }
        tx.execute_cached(
            "UPDATE media SET message_sid = ?1, conversation_sid = ?2 WHERE sid = ?3",
            params![message.as_str(), conv.sid.as_str(), sid.as_str()],
        )
        .map_err(storage)?;
        descriptors.push(item.descriptor());
    }
    Ok(descriptors)
}
