//! The webhook delivery history (one row per attempt, written with the outbox entry's new state) and the
//! operator's view of the outbox: the SQLite store's `deliveries.rs`.

use palaver_core::error::{Error, Result};
use palaver_core::store::{Page, PageQuery};
use palaver_core::webhook::*;
use tokio_postgres::Row;

use crate::queries::{keyset_page, without_ids};
use crate::rows::{get, ms, opt_ms, opt_time_col, time_col};
use crate::{Param, Tx};

/// Applies an attempt to its outbox entry, appends it to the history and prunes the history.
pub(crate) async fn record_attempt(tx: &Tx, attempt: &WebhookAttempt, retention: AttemptRetention) -> Result<()> {
    match attempt.outcome {
        AttemptOutcome::Delivered => {
            tx.execute("DELETE FROM webhook_outbox WHERE id = $1", &[&attempt.delivery_id]).await?;
        }
        AttemptOutcome::Retrying | AttemptOutcome::GaveUp => {
            let dead = attempt.outcome == AttemptOutcome::GaveUp;
            tx.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt = COALESCE($2, next_attempt), \
                 dead = $3, last_error = $4 WHERE id = $1",
                &[&attempt.delivery_id, &opt_ms(attempt.next_retry), &dead, &attempt.error],
            )
            .await?;
        }
    }
    let newest: i64 = get(
        &tx.query_one(
            "INSERT INTO webhook_attempts(delivery_id, event_id, url, method, event_type, conversation_sid, \
             attempt, outcome, error, next_retry, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             RETURNING id",
            &[
                &attempt.delivery_id,
                &attempt.event_id,
                &attempt.url,
                &attempt.method.as_str(),
                &attempt.event_type,
                &attempt.conversation_sid,
                &i64::from(attempt.attempt),
                &attempt.outcome.as_str(),
                &attempt.error,
                &opt_ms(attempt.next_retry),
                &ms(attempt.at),
            ],
        )
        .await?,
        0,
    )?;
    let oldest_kept = ms(attempt.at) - i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    // Both bounds follow an index: ids (handed out in insertion order) and times. Rows another node's prune holds
    // are skipped (it deletes them anyway), so concurrent prunes neither wait for nor deadlock with each other.
    tx.execute(
        "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts WHERE id <= $1 OR at < $2 \
         FOR UPDATE SKIP LOCKED)",
        &[&(newest - i64::from(retention.max_rows)), &oldest_kept],
    )
    .await?;
    Ok(())
}

const ATTEMPT_COLUMNS: &str = "id, delivery_id, event_id, url, method, event_type, conversation_sid, attempt, outcome, \
     error, next_retry, at";

fn attempt(row: &Row) -> Result<(i64, WebhookAttempt)> {
    let method: String = get(row, 4)?;
    let outcome: String = get(row, 8)?;
    Ok((
        get(row, 0)?,
        WebhookAttempt {
            delivery_id: get(row, 1)?,
            event_id: get(row, 2)?,
            url: get(row, 3)?,
            method: HookMethod::parse("method", &method).map_err(|e| Error::Storage(e.to_string()))?,
            event_type: get(row, 5)?,
            conversation_sid: get(row, 6)?,
            attempt: u32::try_from(get::<i64>(row, 7)?).unwrap_or(u32::MAX),
            outcome: AttemptOutcome::parse(&outcome)
                .ok_or_else(|| Error::Storage(format!("unknown attempt outcome {outcome}")))?,
            error: get(row, 9)?,
            next_retry: opt_time_col(row, 10)?,
            at: time_col(row, 11)?,
        },
    ))
}

pub(crate) async fn list_attempts(tx: &Tx, filter: &AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>> {
    let mut sql = format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE TRUE");
    let mut args: Vec<Param> = Vec::new();
    if let Some(outcome) = filter.outcome {
        args.push(Box::new(outcome.as_str().to_string()));
        sql.push_str(&format!(" AND outcome = ${}", args.len()));
    }
    if let Some(conversation) = &filter.conversation_sid {
        args.push(Box::new(conversation.to_string()));
        sql.push_str(&format!(" AND conversation_sid = ${}", args.len()));
    }
    keyset_page(tx, &sql, "id", args, page, attempt, |(id, _)| *id).await.map(without_ids)
}

fn outbox_entry(r: &Row) -> Result<OutboxEntry> {
    let method: String = get(r, 3)?;
    let params: String = get(r, 4)?;
    Ok(OutboxEntry {
        delivery: Delivery {
            id: get(r, 0)?,
            attempts: u32::try_from(get::<i64>(r, 5)?).unwrap_or(u32::MAX),
            request: NewDelivery {
                event_id: get(r, 1)?,
                url: get(r, 2)?,
                method: HookMethod::parse("method", &method).map_err(|e| Error::Storage(e.to_string()))?,
                params: serde_json::from_str(&params).map_err(|e| Error::Storage(e.to_string()))?,
            },
        },
        next_attempt: time_col(r, 6)?,
        dead: get(r, 7)?,
        last_error: get(r, 8)?,
        date_created: opt_time_col(r, 9)?,
    })
}

pub(crate) async fn list_outbox(tx: &Tx, filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>> {
    let mut sql = "SELECT id, event_id, url, method, params, attempts, next_attempt, dead, last_error, date_created \
                   FROM webhook_outbox WHERE TRUE"
        .to_string();
    let mut args: Vec<Param> = Vec::new();
    if let Some(dead) = filter.dead {
        args.push(Box::new(dead));
        sql.push_str(&format!(" AND dead = ${}", args.len()));
    }
    keyset_page(tx, &sql, "id", args, page, outbox_entry, |entry| entry.delivery.id).await
}
