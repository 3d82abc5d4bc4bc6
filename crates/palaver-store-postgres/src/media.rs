//! Uploaded media records and their attachment to messages: the SQLite store's `media.rs`.

use palaver_api::sid::{MediaSid, MessageSid, ServiceSid};
use palaver_core::error::{Error, InvalidInput, ResourceKind, Result};
use palaver_core::media::{Media, MediaCategory};
use palaver_core::model::Conversation;
use serde_json::Value;
use tokio_postgres::Row;

use crate::Tx;
use crate::rows::{get, ms, parse_col, parse_opt_col, time_col};

const MEDIA_COLUMNS: &str = "sid, service_sid, content_type, filename, size, sha256, author, category, \
     conversation_sid, message_sid, date_created";

fn media(row: &Row) -> Result<Media> {
    let category: String = get(row, 7)?;
    Ok(Media {
        sid: parse_col(row, 0)?,
        service_sid: parse_col(row, 1)?,
        content_type: get(row, 2)?,
        filename: get(row, 3)?,
        size: get::<i64>(row, 4)? as u64,
        sha256: get(row, 5)?,
        author: get(row, 6)?,
        category: MediaCategory::parse(&category).unwrap_or(MediaCategory::Media),
        conversation_sid: parse_opt_col(row, 8)?,
        message_sid: parse_opt_col(row, 9)?,
        date_created: time_col(row, 10)?,
    })
}

pub(crate) async fn create(tx: &Tx, new: &Media) -> Result<Media> {
    tx.execute(
        "INSERT INTO media(sid, service_sid, content_type, filename, size, sha256, author, category, date_created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &new.sid.as_str(),
            &new.service_sid.as_str(),
            &new.content_type,
            &new.filename,
            &(new.size as i64),
            &new.sha256,
            &new.author,
            &new.category.as_str(),
            &ms(new.date_created),
        ],
    )
    .await?;
    get_media(tx, &new.service_sid, &new.sid, "").await
}

/// The media `sid` of `service`; `suffix` is appended to the query (`FOR UPDATE` to lock the row).
async fn get_media(tx: &Tx, service: &ServiceSid, sid: &MediaSid, suffix: &str) -> Result<Media> {
    tx.query_opt(
        &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE sid = $1 AND service_sid = $2{suffix}"),
        &[&sid.as_str(), &service.as_str()],
    )
    .await?
    .as_ref()
    .map(media)
    .transpose()?
    .ok_or_else(|| Error::not_found(ResourceKind::Media, sid))
}

pub(crate) async fn get_by_service(tx: &Tx, service: &ServiceSid, sid: &MediaSid) -> Result<Media> {
    get_media(tx, service, sid, "").await
}

pub(crate) async fn find(tx: &Tx, sid: &MediaSid) -> Result<Media> {
    tx.query_opt(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE sid = $1"), &[&sid.as_str()])
        .await?
        .as_ref()
        .map(media)
        .transpose()?
        .ok_or_else(|| Error::not_found(ResourceKind::Media, sid))
}

/// Attaches uploaded media to a new message; returns their descriptors in the given order. Each media row is
/// locked before it is checked, so two messages racing for one upload cannot both attach it: the second
/// waits for the first's commit and then sees it attached.
pub(crate) async fn attach(
    tx: &Tx,
    conv: &Conversation,
    message: &MessageSid,
    sids: &[MediaSid],
    max_total_bytes: u64,
) -> Result<Vec<Value>> {
    let mut descriptors = Vec::with_capacity(sids.len());
    let mut total = 0u64;
    for sid in sids {
        let item = get_media(tx, &conv.service_sid, sid, " FOR UPDATE").await?;
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
        tx.execute(
            "UPDATE media SET message_sid = $1, conversation_sid = $2 WHERE sid = $3",
            &[&message.as_str(), &conv.sid.as_str(), &sid.as_str()],
        )
        .await?;
        descriptors.push(item.descriptor());
    }
    Ok(descriptors)
}
