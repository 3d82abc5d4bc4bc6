//! Delivery receipts (the channel outbox) and address configurations: the SQLite store's `channels.rs`.

use palaver_api::sid::{AddressConfigurationSid, DeliveryReceiptSid, MessageSid};
use palaver_core::channel::*;
use palaver_core::error::{Conflict, Error, ResourceKind, Result};
use palaver_core::event::{self, EventKind};
use palaver_core::model::BindingKind;
use palaver_core::store::{Page, PageQuery};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::queries::{conversation_by_id, find_message, keyset_page, without_ids};
use crate::rows::{get, ms, opt_ms, parse_col, time_col};
use crate::{Param, Tx};

/// Columns of a receipt row, in the order [`receipt`] reads them.
const RECEIPT_COLUMNS: &str = "id, sid, conversation_sid, service_sid, message_sid, participant_sid, \
     channel_message_sid, status, error_code, date_created, date_updated";

fn receipt(row: &Row) -> Result<(i64, DeliveryReceipt)> {
    let status: String = get(row, 7)?;
    Ok((
        get(row, 0)?,
        DeliveryReceipt {
            sid: parse_col(row, 1)?,
            conversation_sid: parse_col(row, 2)?,
            service_sid: parse_col(row, 3)?,
            message_sid: parse_col(row, 4)?,
            participant_sid: parse_col(row, 5)?,
            channel_message_sid: get(row, 6)?,
            status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Queued),
            error_code: get(row, 8)?,
            date_created: time_col(row, 9)?,
            date_updated: time_col(row, 10)?,
        },
    ))
}

fn channel_names(channels: &[BindingKind]) -> Vec<String> {
    channels.iter().map(|c| c.as_str().to_string()).collect()
}

/// Claims the due receipts with what sending needs: each one returned is due again only at `lease_end`
/// (Unix ms). Must run in a write transaction: the scan locks the receipts it returns
/// (`FOR UPDATE OF r SKIP LOCKED`, so a concurrent claim of another node skips them instead of waiting), and
/// the lease is written under that lock, in the same transaction. A receipt whose claim committed after the
/// scan's snapshot is re-checked in its newest version once locked (READ COMMITTED), and left out.
///
/// Only the receipt rows are locked, never their conversation: a delivery outcome locks the conversation
/// first and the receipt second, and the claim skips a receipt it holds, so the two cannot deadlock.
pub(crate) async fn claim_due_jobs(
    tx: &Tx,
    channels: &[BindingKind],
    now: OffsetDateTime,
    lease_end: i64,
    limit: u32,
) -> Result<Vec<ChannelJob>> {
    let jobs = due_jobs(tx, channels, now, limit).await?;
    if !jobs.is_empty() {
        let sids: Vec<&str> = jobs.iter().map(|job| job.receipt_sid.as_str()).collect();
        tx.execute("UPDATE delivery_receipts SET next_attempt = $1 WHERE sid = ANY($2)", &[&lease_end, &sids]).await?;
    }
    Ok(jobs)
}

async fn due_jobs(tx: &Tx, channels: &[BindingKind], now: OffsetDateTime, limit: u32) -> Result<Vec<ChannelJob>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT r.sid, r.channel, r.attempts, r.conversation_sid, c.friendly_name, c.email_address, c.email_name, \
             r.message_sid, m.author, m.body, m.subject, p.binding_address, p.binding_proxy, p.binding_projected, \
             p.binding_name, p.binding_level, m.media \
             FROM delivery_receipts r \
             JOIN conversations c ON c.id = r.conversation_id \
             JOIN messages m ON m.sid = r.message_sid \
             JOIN participants p ON p.sid = r.participant_sid \
             WHERE r.next_attempt IS NOT NULL AND r.next_attempt <= $1 AND r.channel = ANY($2) \
             ORDER BY r.next_attempt, r.id LIMIT $3 FOR UPDATE OF r SKIP LOCKED",
            &[&ms(now), &channel_names(channels), &i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let channel: String = get(r, 1)?;
            let email: Option<String> = get(r, 5)?;
            Ok(ChannelJob {
                receipt_sid: parse_col(r, 0)?,
                channel: BindingKind::parse(&channel).unwrap_or(BindingKind::Sms),
                attempts: u32::try_from(get::<i64>(r, 2)?).unwrap_or(u32::MAX),
                conversation_sid: parse_col(r, 3)?,
                conversation_name: get(r, 4)?,
                conversation_email: match email {
                    Some(address) => Some((address, get(r, 6)?)),
                    None => None,
                },
                message_sid: parse_col(r, 7)?,
                author: get(r, 8)?,
                body: get(r, 9)?,
                subject: get(r, 10)?,
                media: get::<Option<String>>(r, 16)?
                    .and_then(|raw| serde_json::from_str::<Vec<Value>>(&raw).ok())
                    .unwrap_or_default(),
                to: get(r, 11)?,
                proxy_address: get(r, 12)?,
                projected_address: get(r, 13)?,
                name: get(r, 14)?,
                level: get(r, 15)?,
            })
        })
        .collect()
}

pub(crate) async fn next_due(tx: &Tx, channels: &[BindingKind]) -> Result<Option<OffsetDateTime>> {
    if channels.is_empty() {
        return Ok(None);
    }
    let due: Option<i64> = get(
        &tx.query_one(
            "SELECT MIN(next_attempt) FROM delivery_receipts WHERE next_attempt IS NOT NULL AND channel = ANY($1)",
            &[&channel_names(channels)],
        )
        .await?,
        0,
    )?;
    Ok(due.map(palaver_core::clock::from_unix_millis))
}

/// The conversation row id and service of the receipt `target`, if it exists (not locked).
pub(crate) async fn receipt_owner(tx: &Tx, target: &ReceiptRef) -> Result<Option<(i64, String)>> {
    let row = match target {
        ReceiptRef::Sid(sid) => {
            tx.query_opt("SELECT conversation_id, service_sid FROM delivery_receipts WHERE sid = $1", &[&sid.as_str()])
                .await?
        }
        ReceiptRef::ChannelMessage(id) => {
            tx.query_opt(
                "SELECT conversation_id, service_sid FROM delivery_receipts WHERE channel_message_sid = $1 \
                 ORDER BY id LIMIT 1",
                &[id],
            )
            .await?
        }
    };
    row.map(|r| Ok((get(&r, 0)?, get(&r, 1)?))).transpose()
}

/// Records a delivery outcome. The caller holds the lock of the receipt's conversation row (taken before this
/// reads the receipt, as every write to a conversation does), so updates of one message's receipts, and the
/// message's aggregate counts, are applied one after another.
pub(crate) async fn update_delivery(
    tx: &mut Tx,
    target: &ReceiptRef,
    update: DeliveryUpdate,
) -> Result<Option<DeliveryReceipt>> {
    let (column, value) = match target {
        ReceiptRef::Sid(sid) => ("sid", sid.to_string()),
        ReceiptRef::ChannelMessage(id) => ("channel_message_sid", id.clone()),
    };
    let found = tx
        .query_opt(
            &format!(
                "SELECT {RECEIPT_COLUMNS}, conversation_id FROM delivery_receipts WHERE {column} = $1 \
                 ORDER BY id LIMIT 1 FOR UPDATE"
            ),
            &[&value],
        )
        .await?;
    let Some(found) = found else { return Ok(None) };
    let (id, current) = receipt(&found)?;
    let conv_id: i64 = get(&found, 11)?;
    let moves = update.status.progress() > current.status.progress()
        || (update.status == DeliveryStatus::Queued && current.status == DeliveryStatus::Queued);
    let status = if moves { update.status } else { current.status };
    let channel_message_sid = update.channel_message_sid.clone().or(current.channel_message_sid.clone());
    let error_code = if moves { update.error_code.or(current.error_code) } else { current.error_code };
    let next_attempt = if status == DeliveryStatus::Queued { opt_ms(update.retry_at) } else { None };
    tx.execute(
        "UPDATE delivery_receipts SET status = $1, channel_message_sid = $2, error_code = $3, next_attempt = $4, \
         attempts = attempts + CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END, last_error = COALESCE($5, last_error), \
         date_updated = $6 WHERE id = $7",
        &[&status.as_str(), &channel_message_sid, &error_code, &next_attempt, &update.last_error, &ms(update.now), &id],
    )
    .await?;
    let updated = receipt(
        &tx.query_one(&format!("SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE id = $1"), &[&id]).await?,
    )?
    .1;
    if status == current.status {
        return Ok(Some(updated));
    }
    // Keep the message's aggregate in step and tell listeners.
    let conv = conversation_by_id(tx, conv_id).await?;
    let stored: Option<String> = tx
        .query_opt(
            "SELECT delivery FROM messages WHERE conversation_id = $1 AND sid = $2",
            &[&conv_id, &updated.message_sid.as_str()],
        )
        .await?
        .map(|r| get::<Option<String>>(&r, 0))
        .transpose()?
        .flatten();
    let Some(stored) = stored else { return Ok(Some(updated)) };
    let counts = DeliveryCounts::from_json(&stored).moved(current.status, status);
    tx.execute(
        "UPDATE messages SET delivery = $1 WHERE conversation_id = $2 AND sid = $3",
        &[&counts.to_json(), &conv_id, &updated.message_sid.as_str()],
    )
    .await?;
    let message = find_message(tx, conv_id, &conv, &updated.message_sid).await?;
    let mut data = event::message_snapshot(&message);
    data["receipt"] = receipt_snapshot(&updated);
    tx.append_event(conv.sid.as_str(), EventKind::DeliveryUpdated, updated.sid.as_str(), data.to_string(), update.now)
        .await?;
    Ok(Some(updated))
}

pub(crate) async fn list_receipts(
    tx: &Tx,
    conv_id: i64,
    message: &MessageSid,
    page: PageQuery,
) -> Result<Page<DeliveryReceipt>> {
    let args: Vec<Param> = vec![Box::new(conv_id), Box::new(message.to_string())];
    keyset_page(
        tx,
        &format!("SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE conversation_id = $1 AND message_sid = $2"),
        "id",
        args,
        page,
        receipt,
        |(id, _)| *id,
    )
    .await
    .map(without_ids)
}

/// Receipts across conversations with their sending state and message (`r` is the receipt, `m` the message).
pub(crate) async fn list_deliveries(tx: &Tx, filter: &ReceiptFilter, page: PageQuery) -> Result<Page<ChannelDelivery>> {
    let columns = RECEIPT_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ");
    let mut sql = format!(
        "SELECT {columns}, r.channel, r.address, r.attempts, r.last_error, r.next_attempt, m.idx, m.author, \
         m.delivery FROM delivery_receipts r LEFT JOIN messages m ON m.sid = r.message_sid WHERE TRUE"
    );
    let mut args: Vec<Param> = Vec::new();
    if let Some(status) = filter.status {
        args.push(Box::new(status.as_str().to_string()));
        sql.push_str(&format!(" AND r.status = ${}", args.len()));
    }
    if filter.failed {
        // Spelled as the partial index `receipts_failed` is, so that it serves the scan.
        sql.push_str(" AND r.status IN ('failed', 'undelivered')");
    }
    if let Some(conversation) = &filter.conversation_sid {
        args.push(Box::new(conversation.to_string()));
        sql.push_str(&format!(" AND r.conversation_sid = ${}", args.len()));
    }
    if let Some(service) = &filter.service_sid {
        args.push(Box::new(service.to_string()));
        sql.push_str(&format!(" AND r.service_sid = ${}", args.len()));
    }
    keyset_page(
        tx,
        &sql,
        "r.id",
        args,
        page,
        |r| {
            let (id, receipt) = receipt(r)?;
            let channel: String = get(r, 11)?;
            let delivery: Option<String> = get(r, 18)?;
            Ok((
                id,
                ChannelDelivery {
                    receipt,
                    channel: BindingKind::parse(&channel).unwrap_or(BindingKind::Sms),
                    address: get(r, 12)?,
                    attempts: u32::try_from(get::<i64>(r, 13)?).unwrap_or(u32::MAX),
                    last_error: get(r, 14)?,
                    next_attempt: crate::rows::opt_time_col(r, 15)?,
                    message_index: get(r, 16)?,
                    message_author: get(r, 17)?,
                    message_delivery: delivery.as_deref().map(DeliveryCounts::from_json),
                },
            ))
        },
        |(id, _)| *id,
    )
    .await
    .map(without_ids)
}

pub(crate) async fn get_receipt(
    tx: &Tx,
    conv_id: i64,
    message: &MessageSid,
    sid: &DeliveryReceiptSid,
) -> Result<DeliveryReceipt> {
    tx.query_opt(
        &format!(
            "SELECT {RECEIPT_COLUMNS} FROM delivery_receipts WHERE conversation_id = $1 AND message_sid = $2 AND sid = $3"
        ),
        &[&conv_id, &message.as_str(), &sid.as_str()],
    )
    .await?
    .map(|r| receipt(&r).map(|(_, r)| r))
    .transpose()?
    .ok_or_else(|| Error::not_found(ResourceKind::DeliveryReceipt, sid))
}

pub(crate) async fn find_conversation_by_binding(
    tx: &Tx,
    channel: BindingKind,
    address: &str,
    our_address: &str,
) -> Result<Option<(String, String)>> {
    tx.query_opt(
        "SELECT c.service_sid, c.sid FROM participants p JOIN conversations c ON c.id = p.conversation_id \
         WHERE lower(p.binding_address) = lower($1) AND p.binding_type = $2 AND c.state != 'closed' \
         AND (lower(p.binding_proxy) = lower($3) OR lower(p.binding_projected) = lower($3) \
              OR lower(c.email_address) = lower($3)) \
         ORDER BY c.id DESC LIMIT 1",
        &[&address, &channel.as_str(), &our_address],
    )
    .await?
    .map(|r| Ok((get(&r, 0)?, get(&r, 1)?)))
    .transpose()
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

fn address_row(row: &Row) -> Result<(i64, AddressConfiguration)> {
    let auto: String = get(row, 5)?;
    Ok((
        get(row, 0)?,
        AddressConfiguration {
            sid: parse_col(row, 1)?,
            kind: get(row, 2)?,
            address: get(row, 3)?,
            friendly_name: get(row, 4)?,
            auto_creation: parse_auto_creation(&auto),
            address_country: get(row, 6)?,
            date_created: time_col(row, 7)?,
            date_updated: time_col(row, 8)?,
        },
    ))
}

/// The address configuration `sid`; `suffix` is appended to the query (`FOR UPDATE` to lock the row).
async fn address_by_sid(tx: &Tx, sid: &AddressConfigurationSid, suffix: &str) -> Result<AddressConfiguration> {
    tx.query_opt(
        &format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE sid = $1{suffix}"),
        &[&sid.as_str()],
    )
    .await?
    .map(|r| address_row(&r).map(|(_, a)| a))
    .transpose()?
    .ok_or_else(|| Error::not_found(ResourceKind::AddressConfiguration, sid))
}

pub(crate) async fn get_address(tx: &Tx, sid: &AddressConfigurationSid) -> Result<AddressConfiguration> {
    address_by_sid(tx, sid, "").await
}

pub(crate) async fn find_address(tx: &Tx, address: &str) -> Result<Option<AddressConfiguration>> {
    tx.query_opt(
        &format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE lower_address = lower($1)"),
        &[&address],
    )
    .await?
    .map(|r| address_row(&r).map(|(_, a)| a))
    .transpose()
}

/// Name of the unique constraint on `address_configurations.lower_address` (PostgreSQL's default name).
const LOWER_ADDRESS_KEY: &str = "address_configurations_lower_address_key";

pub(crate) async fn create_address(tx: &Tx, config: &AddressConfiguration) -> Result<AddressConfiguration> {
    if find_address(tx, &config.address).await?.is_some() {
        return Err(Error::Conflict(Conflict::AddressConfigured(config.address.clone())));
    }
    // A concurrent creation of the same address loses on the unique constraint, reported as the check above.
    tx.execute_unique(
        "INSERT INTO address_configurations(sid, kind, address, lower_address, friendly_name, auto_creation, \
         address_country, date_created, date_updated) VALUES ($1, $2, $3, lower($3), $4, $5, $6, $7, $8)",
        &[
            &config.sid.as_str(),
            &config.kind,
            &config.address,
            &config.friendly_name,
            &auto_creation_json(&config.auto_creation),
            &config.address_country,
            &ms(config.date_created),
            &ms(config.date_updated),
        ],
        LOWER_ADDRESS_KEY,
        || Conflict::AddressConfigured(config.address.clone()),
    )
    .await?;
    get_address(tx, &config.sid).await
}

pub(crate) async fn list_addresses(
    tx: &Tx,
    kind: Option<String>,
    page: PageQuery,
) -> Result<Page<AddressConfiguration>> {
    let (base, args): (String, Vec<Param>) = match kind {
        Some(kind) => {
            (format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE kind = $1"), vec![Box::new(kind)])
        }
        None => (format!("SELECT {ADDRESS_COLUMNS} FROM address_configurations WHERE 1 = 1"), Vec::new()),
    };
    keyset_page(tx, &base, "id", args, page, address_row, |(id, _)| *id).await.map(without_ids)
}

pub(crate) async fn update_address(
    tx: &Tx,
    sid: &AddressConfigurationSid,
    patch: AddressConfigurationPatch,
) -> Result<AddressConfiguration> {
    // Locked, so that two concurrent patches apply one after the other, each to the other's result.
    let current = address_by_sid(tx, sid, " FOR UPDATE").await?;
    let friendly_name = patch.friendly_name.or(current.friendly_name);
    let auto = patch.auto_creation.unwrap_or(current.auto_creation);
    tx.execute(
        "UPDATE address_configurations SET friendly_name = $1, auto_creation = $2, date_updated = $3 WHERE sid = $4",
        &[&friendly_name, &auto_creation_json(&auto), &ms(patch.now.unwrap_or(current.date_updated)), &sid.as_str()],
    )
    .await?;
    get_address(tx, sid).await
}

pub(crate) async fn delete_address(tx: &Tx, sid: &AddressConfigurationSid) -> Result<()> {
    if tx.execute("DELETE FROM address_configurations WHERE sid = $1", &[&sid.as_str()]).await? == 0 {
        return Err(Error::not_found(ResourceKind::AddressConfiguration, sid));
    }
    Ok(())
}

/// Fails the receipts still queued for a participant who left: there is no one to send them to any more. The
/// caller holds the conversation's row lock.
pub(crate) async fn cancel_queued(tx: &mut Tx, participant: &str, now: OffsetDateTime) -> Result<()> {
    let queued = tx
        .query(
            "SELECT sid FROM delivery_receipts WHERE participant_sid = $1 AND next_attempt IS NOT NULL ORDER BY id",
            &[&participant],
        )
        .await?;
    for row in queued {
        let sid: DeliveryReceiptSid = parse_col(&row, 0)?;
        let update = DeliveryUpdate {
            status: DeliveryStatus::Failed,
            channel_message_sid: None,
            error_code: None,
            retry_at: None,
            last_error: Some("the participant left before the message was sent".into()),
            now,
        };
        update_delivery(tx, &ReceiptRef::Sid(sid), update).await?;
    }
    Ok(())
}
