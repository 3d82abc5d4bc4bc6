//! Delivery receipts (the channel outbox) and address configurations.

use palaver_api::sid::{AddressConfigurationSid, DeliveryReceiptSid, MessageSid};
use palaver_core::channel::*;
use palaver_core::error::{Conflict, Error, ResourceKind, Result};
use palaver_core::event::{self, EventKind};
use palaver_core::model::{BindingKind, Conversation};
use palaver_core::store::{Page, PageQuery};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Cached, append_event, conversation_by_id, keyset_page, storage};
use crate::rows::{ms, opt_ms, parse_col, time_col};

/// Columns of a receipt row, in the order [`receipt`] reads them.
const RECEIPT_COLUMNS: &str = "id, sid, conversation_sid, service_sid, message_sid, participant_sid, \
     channel_message_sid, status, error_code, date_created, date_updated";

fn receipt(row: &Row<'_>) -> rusqlite::Result<(i64, DeliveryReceipt)> {
    let status: String = row.get(7)?;
    Ok((
        row.get(0)?,
        DeliveryReceipt {
            sid: parse_col(row, 1)?,
            conversation_sid: parse_col(row, 2)?,
            service_sid: parse_col(row, 3)?,
            message_sid: parse_col(row, 4)?,
            participant_sid: parse_col(row, 5)?,
            channel_message_sid: row.get(6)?,
            status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Queued),
            error_code: row.get(8)?,
            date_created: time_col(row, 9)?,
            date_updated: time_col(row, 10)?,
        },
    ))
}

/// Creates a queued receipt for each non-chat participant of the conversation except the author; returns
/// the message's counts, or `None` when it has no non-chat recipient.
pub(crate) fn create_receipts(
    tx: &Connection,
    conv_id: i64,
    conv: &Conversation,
    message: &MessageSid,
    author_participant: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<DeliveryCounts>> {
    let recipients: Vec<(String, String, Option<String>)> = tx
        .prepare_cached(
            "SELECT sid, binding_type, binding_address FROM participants WHERE conversation_id = ?1 \
             AND binding_type IS NOT NULL AND sid IS NOT ?2 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![conv_id, author_participant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
        })
        .map_err(storage)?;
    if recipients.is_empty() {
        return Ok(None);
    }
    for (participant, channel, address) in &recipients {
        tx.execute_cached(
            "INSERT INTO delivery_receipts(sid, conversation_id, conversation_sid, service_sid, message_sid, \
             participant_sid, channel, address, status, next_attempt, date_created, date_updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9, ?9)",
            params![
                DeliveryReceiptSid::generate().as_str(),
                conv_id,
                conv.sid.as_str(),
                conv.service_sid.as_str(),
                message.as_str(),
                participant,
                channel,
                address,
                ms(now),
            ],
        )
        .map_err(storage)?;
    }
    Ok(Some(DeliveryCounts::queued(recipients.len() as u32)))
}

fn channel_list(channels: &[BindingKind]) -> String {
    channels.iter().map(|c| format!("'{}'", c.as_str())).collect::<Vec<_>>().join(",")
}

/// Whether any queued receipt on `channels` is due at `now`.
pub(crate) fn any_due(tx: &Connection, channels: &[BindingKind], now: OffsetDateTime) -> Result<bool> {
    if channels.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT EXISTS(SELECT 1 FROM delivery_receipts WHERE next_attempt IS NOT NULL AND next_attempt <= ?1 \
         AND channel IN ({}))",
        channel_list(channels)
    );
    tx.query_row_cached(&sql, params![ms(now)], |r| r.get(0)).map_err(storage)
}

/// Claims the due receipts with what sending needs: each one returned is due again only at `lease_end`
/// (Unix ms). Runs on the writer thread, so no other claim comes between the scan and the move.
pub(crate) fn claim_due_jobs(
    tx: &Connection,
    channels: &[BindingKind],
    now: OffsetDateTime,
    lease_end: i64,
    limit: u32,
) -> Result<Vec<ChannelJob>> {
    let jobs = due_jobs(tx, channels, now, limit)?;
    for job in &jobs {
        tx.execute_cached(
            "UPDATE delivery_receipts SET next_attempt = ?1 WHERE sid = ?2",
            params![lease_end, job.receipt_sid.as_str()],
        )
        .map_err(storage)?;
    }
    Ok(jobs)
}

fn due_jobs(tx: &Connection, channels: &[BindingKind], now: OffsetDateTime, limit: u32) -> Result<Vec<ChannelJob>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT r.sid, r.channel, r.attempts, r.conversation_sid, c.friendly_name, c.email_address, c.email_name, \
         r.message_sid, m.author, m.body, m.subject, p.binding_address, p.binding_proxy, p.binding_projected, \
         p.binding_name, p.binding_level, m.media \
         FROM delivery_receipts r \
         JOIN conversations c ON c.id = r.conversation_id \
         JOIN messages m ON m.sid = r.message_sid \
         JOIN participants p ON p.sid = r.participant_sid \
         WHERE r.next_attempt IS NOT NULL AND r.next_attempt <= ?1 AND r.channel IN ({}) \
         ORDER BY r.next_attempt, r.id LIMIT ?2",
        channel_list(channels)
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(storage)?;
    let rows = stmt
        .query_map(params![ms(now), limit], |r| {
            let channel: String = r.get(1)?;
            let email: Option<String> = r.get(5)?;
            Ok(ChannelJob {
                receipt_sid: parse_col(r, 0)?,
                channel: BindingKind::parse(&channel).unwrap_or(BindingKind::Sms),
                attempts: r.get(2)?,
                conversation_sid: parse_col(r, 3)?,
                conversation_name: r.get(4)?,
                conversation_email: email.map(|address| (address, r.get(6).ok().flatten())),
                message_sid: parse_col(r, 7)?,
                author: r.get(8)?,
                body: r.get(9)?,
                subject: r.get(10)?,
                media: r
                    .get::<_, Option<String>>(16)?
                    .and_then(|raw| serde_json::from_str::<Vec<Value>>(&raw).ok())
                    .unwrap_or_default(),
                to: r.get(11)?,
                proxy_address: r.get(12)?,
                projected_address: r.get(13)?,
                name: r.get(14)?,
                level: r.get(15)?,
            })
        })
        .map_err(storage)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage)
}

pub(crate) fn next_due(tx: &Connection, channels: &[BindingKind]) -> Result<Option<OffsetDateTime>> {
    if channels.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT MIN(next_attempt) FROM delivery_receipts WHERE next_attempt IS NOT NULL AND channel IN ({})",
        channel_list(channels)
    );
    let due: Option<i64> = tx.query_row_cached(&sql, [], |r| r.get(0)).map_err(storage)?;
    Ok(due.map(palaver_core::clock::from_unix_millis))
}

pub(crate) fn update_delivery(
    tx: &Connection,
    target: &ReceiptRef,
    update: DeliveryUpdate,
) -> Result<Option<DeliveryReceipt>> {
    let (column, value) = match target {
        ReceiptRef::Sid(sid) => ("sid", sid.to_string()),
        ReceiptRef::ChannelMessage(id) => ("channel_message_sid", id.clone()),
    };
    let found = tx
        .query_row_cached(
            &format!("SELECT {RECEIPT_COLUMNS}, conversation_id FROM delivery_receipts WHERE {column} = ?1 LIMIT 1"),
            params![value],
            |r| Ok((receipt(r)?, r.get::<_, i64>(11)?)),
        )
        .optional()
        .map_err(storage)?;
    let Some(((id, current), conv_id)) = found else { return Ok(None) };
    let moves = update.status.progress() > current.status.progress()
        || (update.status == DeliveryStatus::Queued && current.status == DeliveryStatus::Queued);
    let status = if moves { update.status } else { current.status };
    let channel_message_sid = update.channel_message_sid.clone().or(current.channel_message_sid.clone());
    let error_code = if moves { update.error_code.or(current.error_code) } else { current.error_code };
    let next_attempt = if status == DeliveryStatus::Queued { opt_ms(update.retry_at) } else { None };
    tx.execute_cached(
        "UPDATE delivery_receipts SET status = ?1, channel_message_sid = ?2, error_code = ?3, next_attempt = ?4, \
         attempts = attempts + CASE WHEN ?5 IS NULL THEN 0 ELSE 1 END, last_error = COALESCE(?5, last_error), \
         date_updated = ?6 WHERE id = ?7",
        params![status.as_str(), channel_message_sid, error_code, next_attempt, update.last_error, ms(update.now), id],
    )
    .map_err(storage)?;
    let updated = tx
        .query_row_cached(
            &format!("SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE id = ?1"),
            params![id],
            receipt,
        )
        .map_err(storage)?
        .1;
    if status == current.status {
        return Ok(Some(updated));
    }
    // Keep the message's aggregate in step and tell listeners.
    let conv = conversation_by_id(tx, conv_id)?;
    let stored: Option<String> = tx
        .query_row_cached(
            "SELECT delivery FROM messages WHERE conversation_id = ?1 AND sid = ?2",
            params![conv_id, updated.message_sid.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(storage)?
        .flatten();
    let Some(stored) = stored else { return Ok(Some(updated)) };
    let counts = DeliveryCounts::from_json(&stored).moved(current.status, status);
    tx.execute_cached(
        "UPDATE messages SET delivery = ?1 WHERE conversation_id = ?2 AND sid = ?3",
        params![counts.to_json(), conv_id, updated.message_sid.as_str()],
    )
    .map_err(storage)?;
    let message = super::find_message(tx, conv_id, &conv, &updated.message_sid)?;
    let mut data = event::message_snapshot(&message);
    data["receipt"] = receipt_snapshot(&updated);
    append_event(tx, conv.sid.as_str(), EventKind::DeliveryUpdated, updated.sid.as_str(), &data, update.now)?;
    Ok(Some(updated))
}

pub(crate) fn list_receipts(
    tx: &Connection,
    conv_id: i64,
    message: &MessageSid,
    page: PageQuery,
) -> Result<Page<DeliveryReceipt>> {
    let page = keyset_page(
        tx,
        &format!("SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE conversation_id = ? AND message_sid = ?"),
        "id",
        vec![SqlValue::Integer(conv_id), SqlValue::Text(message.to_string())],
        page,
        receipt,
        |(id, _)| *id,
    )?;
    Ok(Page { items: page.items.into_iter().map(|(_, r)| r).collect(), next: page.next, previous: page.previous })
}

/// Receipts across conversations with their sending state and message (`r` is the receipt, `m` the message).
pub(crate) fn list_deliveries(
    tx: &Connection,
    filter: &ReceiptFilter,
    page: PageQuery,
) -> Result<Page<ChannelDelivery>> {
    let columns = RECEIPT_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ");
    let mut sql = format!(
        "SELECT {columns}, r.channel, r.address, r.attempts, r.last_error, r.next_attempt, m.idx, m.author, \
         m.delivery FROM delivery_receipts r LEFT JOIN messages m ON m.sid = r.message_sid WHERE 1 = 1"
    );
    let mut args = Vec::new();
    if let Some(status) = filter.status {
        sql.push_str(" AND r.status = ?");
        args.push(SqlValue::Text(status.as_str().to_string()));
    }
    if filter.failed {
        // Spelled as the partial index `receipts_failed` is, so that it serves the scan.
        sql.push_str(" AND r.status IN ('failed', 'undelivered')");
    }
    if let Some(conversation) = &filter.conversation_sid {
        sql.push_str(" AND r.conversation_sid = ?");
        args.push(SqlValue::Text(conversation.to_string()));
    }
    if let Some(service) = &filter.service_sid {
        sql.push_str(" AND r.service_sid = ?");
        args.push(SqlValue::Text(service.to_string()));
    }
    let page = keyset_page(
        tx,
        &sql,
        "r.id",
        args,
        page,
        |r| {
            let (id, receipt) = receipt(r)?;
            let channel: String = r.get(11)?;
            let delivery: Option<String> = r.get(18)?;
            Ok((
                id,
                ChannelDelivery {
                    receipt,
                    channel: BindingKind::parse(&channel).unwrap_or(BindingKind::Sms),
                    address: r.get(12)?,
                    attempts: r.get(13)?,
                    last_error: r.get(14)?,
                    next_attempt: crate::rows::opt_time_col(r, 15)?,
                    message_index: r.get(16)?,
                    message_author: r.get(17)?,
                    message_delivery: delivery.as_deref().map(DeliveryCounts::from_json),
                },
            ))
        },
        |(id, _)| *id,
    )?;
    Ok(Page { items: page.items.into_iter().map(|(_, d)| d).collect(), next: page.next, previous: page.previous })
}

pub(crate) fn get_receipt(
    tx: &Connection,
    conv_id: i64,
    message: &MessageSid,
    sid: &DeliveryReceiptSid,
) -> Result<DeliveryReceipt> {
    tx.query_row_cached(
        &format!(
            "SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE conversation_id = ?1 AND message_sid = ?2 AND sid = ?3"
        ),
        params![conv_id, message.as_str(), sid.as_str()],
        receipt,
    )
    .optional()
    .map_err(storage)?
    .map(|(_, r)| r)
    .ok_or_else(|| Error::not_found(ResourceKind::DeliveryReceipt, sid))
}

pub(crate) fn find_conversation_by_binding(
    tx: &Connection,
    channel: BindingKind,
    address: &str,
    our_address: &str,
) -> Result<Option<(String, String)>> {
    tx.query_row_cached(
        "SELECT c.service_sid, c.sid FROM participants p JOIN conversations c ON c.id = p.conversation_id \
         WHERE lower(p.binding_address) = lower(?1) AND p.binding_type = ?2 AND c.state != 'closed' \
         AND (lower(p.binding_proxy) = lower(?3) OR lower(p.binding_projected) = lower(?3) \
              OR lower(c.email_address) = lower(?3)) \
         ORDER BY c.id DESC LIMIT 1",
        params![address, channel.as_str(), our_address],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(storage)
}

const ADDRESS_COLUMNS: &str =
    "id, sid, kind, address, friendly_name, auto_creation, address_country, date_created, date_updated";

fn auto_creation_json(auto: &AutoCreation) -> String {
    json!({
        "enabled": auto.enabled,
        "type": auto.kind,
        "conversation_service_sid": auto.conversation_service_sid.as_ref().map(|s| s.to_string()),
        "webhook_url": auto.webhook_url,
        "webhook_method": auto.webhook_method,
        "webhook_filters": auto.webhook_filters,
        "studio_flow_sid": auto.studio_flow_sid,
        "studio_retry_count": auto.studio_retry_count,
    })
    .to_string()
}

fn parse_auto_creation(raw: &str) -> AutoCreation {
    let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    let text = |k: &str| v[k].as_str().map(str::to_string);
    AutoCreation {
        enabled: v["enabled"].as_bool().unwrap_or(false),
        kind: text("type").unwrap_or_else(|| "default".into()),
        conversation_service_sid: text("conversation_service_sid").and_then(|s| s.parse().ok()),
        webhook_url: text("webhook_url"),
        webhook_method: text("webhook_method"),
        webhook_filters: v["webhook_filters"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        studio_flow_sid: text("studio_flow_sid"),
        studio_retry_count: v["studio_retry_count"].as_i64(),
    }
}

fn address_row(row: &Row<'_>) -> rusqlite::Result<(i64, AddressConfiguration)> {
    let auto: String = row.get(5)?;
    Ok((
        row.get(0)?,
        AddressConfiguration {
            sid: parse_col(row, 1)?,
            kind: row.get(2)?,
            address: row.get(3)?,
            friendly_name: row.get(4)?,
            auto_creation: parse_auto_creation(&auto),
            address_country: row.get(6)?,
            date_created: time_col(row, 7)?,
            date_updated: time_col(row, 8)?,
        },
    ))
}

pub(crate) fn get_address(tx: &Connection, sid: &AddressConfigurationSid) -> Result<AddressConfiguration> {
    tx.query_row_cached(
        &format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE sid = ?1"),
        params![sid.as_str()],
        address_row,
    )
    .optional()
    .map_err(storage)?
    .map(|(_, a)| a)
    .ok_or_else(|| Error::not_found(ResourceKind::AddressConfiguration, sid))
}

pub(crate) fn find_address(tx: &Connection, address: &str) -> Result<Option<AddressConfiguration>> {
    tx.query_row_cached(
        &format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE lower_address = lower(?1)"),
        params![address],
        address_row,
    )
    .optional()
    .map_err(storage)
    .map(|found| found.map(|(_, a)| a))
}

pub(crate) fn create_address(tx: &Connection, config: &AddressConfiguration) -> Result<AddressConfiguration> {
    if find_address(tx, &config.address)?.is_some() {
        return Err(Error::Conflict(Conflict::AddressConfigured(config.address.clone())));
    }
    tx.execute_cached(
        "INSERT INTO address_configurations(sid, kind, address, lower_address, friendly_name, auto_creation, \
         address_country, date_created, date_updated) VALUES (?1, ?2, ?3, lower(?3), ?4, ?5, ?6, ?7, ?8)",
        params![
            config.sid.as_str(),
            config.kind,
            config.address,
            config.friendly_name,
            auto_creation_json(&config.auto_creation),
            config.address_country,
            ms(config.date_created),
            ms(config.date_updated),
        ],
    )
    .map_err(storage)?;
    get_address(tx, &config.sid)
}

pub(crate) fn list_addresses(
    tx: &Connection,
    kind: Option<String>,
    page: PageQuery,
) -> Result<Page<AddressConfiguration>> {
    let (base, args) = match kind {
        Some(kind) => {
            (format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE kind = ?"), vec![SqlValue::Text(kind)])
        }
        None => (format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE 1 = 1"), Vec::new()),
    };
    let page = keyset_page(tx, &base, "id", args, page, address_row, |(id, _)| *id)?;
    Ok(Page { items: page.items.into_iter().map(|(_, a)| a).collect(), next: page.next, previous: page.previous })
}

pub(crate) fn update_address(
    tx: &Connection,
    sid: &AddressConfigurationSid,
    patch: AddressConfigurationPatch,
) -> Result<AddressConfiguration> {
    let current = get_address(tx, sid)?;
    let friendly_name = patch.friendly_name.or(current.friendly_name);
    let auto = patch.auto_creation.unwrap_or(current.auto_creation);
    tx.execute_cached(
        "UPDATE address_configurations SET friendly_name = ?1, auto_creation = ?2, date_updated = ?3 WHERE sid = ?4",
        params![friendly_name, auto_creation_json(&auto), ms(patch.now.unwrap_or(current.date_updated)), sid.as_str()],
    )
    .map_err(storage)?;
    get_address(tx, sid)
}

pub(crate) fn delete_address(tx: &Connection, sid: &AddressConfigurationSid) -> Result<()> {
    let deleted = tx
        .execute_cached("DELETE FROM address_configurations WHERE sid = ?1", params![sid.as_str()])
        .map_err(storage)?;
    if deleted == 0 {
        return Err(Error::not_found(ResourceKind::AddressConfiguration, sid));
    }
    Ok(())
}

/// Deletes the receipts of a deleted message or conversation.
pub(crate) fn delete_receipts(tx: &Connection, conv_id: i64, message: Option<&MessageSid>) -> Result<()> {
    let args: Vec<SqlValue> = match message {
        Some(sid) => vec![SqlValue::Integer(conv_id), SqlValue::Text(sid.to_string())],
        None => vec![SqlValue::Integer(conv_id)],
    };
    let sql = if message.is_some() {
        "DELETE FROM delivery_receipts WHERE conversation_id = ?1 AND message_sid = ?2"
    } else {
        "DELETE FROM delivery_receipts WHERE conversation_id = ?1"
    };
    tx.execute_cached(sql, params_from_iter(args)).map_err(storage)?;
    Ok(())
}

/// Fails the receipts still queued for a participant who left: there is no one to send them to any more.
pub(crate) fn cancel_queued(tx: &Connection, participant: &str, now: OffsetDateTime) -> Result<()> {
    let queued: Vec<String> = tx
        .prepare_cached("SELECT sid FROM delivery_receipts WHERE participant_sid = ?1 AND next_attempt IS NOT NULL")
        .and_then(|mut s| s.query_map(params![participant], |r| r.get(0))?.collect())
        .map_err(storage)?;
    for sid in queued {
        let sid: DeliveryReceiptSid =
            sid.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?;
        let update = DeliveryUpdate {
            status: DeliveryStatus::Failed,
            channel_message_sid: None,
            error_code: None,
            retry_at: None,
            last_error: Some("the participant left before the message was sent".into()),
            now,
        };
        update_delivery(tx, &ReceiptRef::Sid(sid), update)?;
    }
    Ok(())
}
