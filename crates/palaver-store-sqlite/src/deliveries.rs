//! The webhook delivery history (one row per attempt, written with the outbox entry's new state) and the
//! operator's view of the outbox.

use palaver_core::error::Result;
use palaver_core::store::{Page, PageQuery};
use palaver_core::webhook::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params};

use super::{Cached, keyset_page, storage};
use crate::rows::{ms, opt_ms, opt_time_col, time_col};

/// Applies an attempt to its outbox entry, appends it to the history and prunes the history.
pub(crate) fn record_attempt(tx: &Connection, attempt: &WebhookAttempt, retention: AttemptRetention) -> Result<()> {
    match attempt.outcome {
        AttemptOutcome::Delivered => {
            tx.execute_cached("DELETE FROM webhook_outbox WHERE id = ?1", params![attempt.delivery_id])
                .map_err(storage)?;
        }
        AttemptOutcome::Retrying | AttemptOutcome::GaveUp => {
            let dead = attempt.outcome == AttemptOutcome::GaveUp;
            tx.execute_cached(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt = COALESCE(?2, next_attempt), \
                 dead = ?3, last_error = ?4 WHERE id = ?1",
                params![attempt.delivery_id, opt_ms(attempt.next_retry), dead, attempt.error],
            )
            .map_err(storage)?;
        }
    }
    tx.execute_cached(
        "INSERT INTO webhook_attempts(delivery_id, event_id, url, method, event_type, conversation_sid, attempt, \
         outcome, error, next_retry, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            attempt.delivery_id,
            attempt.event_id,
            attempt.url,
            attempt.method.as_str(),
            attempt.event_type,
            attempt.conversation_sid,
            attempt.attempt,
            attempt.outcome.as_str(),
            attempt.error,
            opt_ms(attempt.next_retry),
            ms(attempt.at),
        ],
    )
    .map_err(storage)?;
    let newest = tx.last_insert_rowid();
    let oldest_kept = ms(attempt.at) - i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    // Both bounds follow an index: ids (kept in insertion order) and times.
    tx.execute_cached(
        "DELETE FROM webhook_attempts WHERE id <= ?1 OR at < ?2",
        params![newest - i64::from(retention.max_rows), oldest_kept],
    )
    .map_err(storage)?;
    Ok(())
}

const ATTEMPT_COLUMNS: &str = "id, delivery_id, event_id, url, method, event_type, conversation_sid, attempt, outcome, \
     error, next_retry, at";

fn attempt(row: &Row<'_>) -> rusqlite::Result<(i64, WebhookAttempt)> {
    let method: String = row.get(4)?;
    let outcome: String = row.get(8)?;
    Ok((
        row.get(0)?,
        WebhookAttempt {
            delivery_id: row.get(1)?,
            event_id: row.get(2)?,
            url: row.get(3)?,
            method: HookMethod::parse("method", &method).map_err(|e| unreadable(4, e.to_string()))?,
            event_type: row.get(5)?,
            conversation_sid: row.get(6)?,
            attempt: row.get(7)?,
            outcome: AttemptOutcome::parse(&outcome)
                .ok_or_else(|| unreadable(8, format!("unknown outcome {outcome}")))?,
            error: row.get(9)?,
            next_retry: opt_time_col(row, 10)?,
            at: time_col(row, 11)?,
        },
    ))
}

pub(crate) fn list_attempts(tx: &Connection, filter: &AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>> {
    let mut sql = format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(outcome) = filter.outcome {
        sql.push_str(" AND outcome = ?");
        args.push(SqlValue::Text(outcome.as_str().to_string()));
    }
    if let Some(conversation) = &filter.conversation_sid {
        sql.push_str(" AND conversation_sid = ?");
        args.push(SqlValue::Text(conversation.to_string()));
    }
    let page = keyset_page(tx, &sql, "id", args, page, attempt, |(id, _)| *id)?;
    Ok(Page { items: page.items.into_iter().map(|(_, a)| a).collect(), next: page.next, previous: page.previous })
}

fn outbox_entry(r: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let method: String = r.get(3)?;
    let params: String = r.get(4)?;
    Ok(OutboxEntry {
        delivery: Delivery {
            id: r.get(0)?,
            attempts: r.get(5)?,
            request: NewDelivery {
                event_id: r.get(1)?,
                url: r.get(2)?,
                method: HookMethod::parse("method", &method).map_err(|e| unreadable(3, e.to_string()))?,
                params: serde_json::from_str(&params).map_err(|e| unreadable(4, e.to_string()))?,
            },
        },
        next_attempt: time_col(r, 6)?,
        dead: r.get(7)?,
        last_error: r.get(8)?,
        date_created: opt_time_col(r, 9)?,
    })
}

pub(crate) fn list_outbox(tx: &Connection, filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>> {
    let mut sql = "SELECT id, event_id, url, method, params, attempts, next_attempt, dead, last_error, date_created \
                   FROM webhook_outbox WHERE 1 = 1"
        .to_string();
    let mut args = Vec::new();
    if let Some(dead) = filter.dead {
        sql.push_str(" AND dead = ?");
        args.push(SqlValue::Integer(i64::from(dead)));
    }
    keyset_page(tx, &sql, "id", args, page, outbox_entry, |entry| entry.delivery.id)
}

/// A stored text column that does not read back as its type.
fn unreadable(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.into())
}
