//! Webhook settings, conversation-scoped webhooks and the webhook outbox: the SQLite store's webhook
//! methods.

use palaver_api::sid::WebhookSid;
use palaver_core::error::{Error, ResourceKind, Result};
use palaver_core::webhook::*;
use tokio_postgres::Row;

use crate::Tx;
use crate::rows::{get, parse_col, time_col};

pub(crate) const WEBHOOK_COLUMNS: &str = "id, sid, conversation_sid, service_sid, target, url, method, filters, \
     triggers, flow_sid, replay_after, date_created, date_updated";

pub(crate) fn conversation_webhook_row(r: &Row) -> Result<(i64, ConversationWebhook)> {
    let filters: String = get(r, 7)?;
    let triggers: String = get(r, 8)?;
    let method: String = get(r, 6)?;
    let target: String = get(r, 4)?;
    Ok((
        get(r, 0)?,
        ConversationWebhook {
            sid: parse_col(r, 1)?,
            conversation_sid: parse_col(r, 2)?,
            service_sid: parse_col(r, 3)?,
            target: ScopedTarget::parse(&target).ok_or_else(|| Error::Storage(format!("unknown target {target}")))?,
            url: get(r, 5)?,
            method: HookMethod::parse("method", &method).map_err(|e| Error::Storage(e.to_string()))?,
            filters: parse_filter_names(&filters),
            triggers: serde_json::from_str(&triggers).map_err(|e| Error::Storage(e.to_string()))?,
            flow_sid: get(r, 9)?,
            replay_after: get(r, 10)?,
            date_created: time_col(r, 11)?,
            date_updated: time_col(r, 12)?,
        },
    ))
}

pub(crate) async fn find_conversation_webhook(tx: &Tx, conv_id: i64, sid: &WebhookSid) -> Result<ConversationWebhook> {
    tx.query_opt(
        &format!("SELECT {WEBHOOK_COLUMNS} FROM conversation_webhooks WHERE conversation_id = $1 AND sid = $2"),
        &[&conv_id, &sid.as_str()],
    )
    .await?
    .map(|r| conversation_webhook_row(&r).map(|(_, h)| h))
    .transpose()?
    .ok_or_else(|| Error::not_found(ResourceKind::Webhook, sid))
}

pub(crate) fn filter_names(filters: &[WebhookEventType]) -> String {
    serde_json::to_string(&filters.iter().map(|f| f.as_str()).collect::<Vec<_>>()).unwrap_or_default()
}

fn parse_filter_names(raw: &str) -> Vec<WebhookEventType> {
    serde_json::from_str::<Vec<String>>(raw)
        .unwrap_or_default()
        .iter()
        .filter_map(|name| WebhookEventType::parse(name))
        .collect()
}

pub(crate) async fn read_webhook_settings(tx: &Tx, scope: &str) -> Result<WebhookSettings> {
    let row = tx
        .query_opt(
            "SELECT method, filters, pre_webhook_url, post_webhook_url, target FROM webhook_settings WHERE scope = $1",
            &[&scope],
        )
        .await?;
    Ok(match row {
        None => WebhookSettings { target: "webhook".into(), ..WebhookSettings::default() },
        Some(r) => {
            let method: String = get(&r, 0)?;
            let filters: String = get(&r, 1)?;
            WebhookSettings {
                method: HookMethod::parse("method", &method).unwrap_or_default(),
                filters: parse_filter_names(&filters),
                pre_webhook_url: get(&r, 2)?,
                post_webhook_url: get(&r, 3)?,
                target: get(&r, 4)?,
            }
        }
    })
}

/// Reads an outbox entry (`id, event_id, url, method, params, attempts`).
pub(crate) fn delivery(r: &Row) -> Result<Delivery> {
    let method: String = get(r, 3)?;
    let params: String = get(r, 4)?;
    Ok(Delivery {
        id: get(r, 0)?,
        attempts: u32::try_from(get::<i64>(r, 5)?).unwrap_or(u32::MAX),
        request: NewDelivery {
            event_id: get(r, 1)?,
            url: get(r, 2)?,
            method: HookMethod::parse("method", &method).map_err(|e| Error::Storage(e.to_string()))?,
            params: serde_json::from_str(&params).map_err(|e| Error::Storage(e.to_string()))?,
        },
    })
}
