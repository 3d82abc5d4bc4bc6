//! Push credentials, bindings, notification settings and the push outbox: [`PushStore`] on SQLite.
//!
//! The outbox keeps the webhook outbox's semantics: `enqueue_pushes` compares and sets the cursor inside one
//! write, and a claim (`due_pushes`) is a write that moves each entry's next attempt to its lease's end;
//! nothing interleaves with a write on the writer thread.

use std::time::Duration;

use async_trait::async_trait;
use palaver_api::sid::{CredentialSid, PushBindingSid, ServiceSid};
use palaver_core::error::{Error, ResourceKind, Result};
use palaver_core::push::*;
use palaver_core::store::{Page, PageQuery};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::{Cached, SqliteStore, keyset_page, storage};
use crate::rows::{lease_end, ms, opt_ms, parse_col, parse_opt_col, time_col};

/// The migration that adds this module's tables (appended to `schema::MIGRATIONS`).
pub(crate) const MIGRATION: &str = r#"
-- Push credentials: the secret columns are never returned by the API.
CREATE TABLE push_credentials (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    friendly_name TEXT,
    kind TEXT NOT NULL,
    sandbox INTEGER NOT NULL DEFAULT 0,
    certificate TEXT,
    private_key TEXT,
    api_key TEXT,
    secret TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);

-- One row per registered device or browser; an address is registered once per service and kind.
CREATE TABLE push_bindings (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    service_sid TEXT NOT NULL,
    credential_sid TEXT,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    message_types TEXT NOT NULL,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL,
    UNIQUE (service_sid, kind, address)
);
CREATE INDEX push_bindings_by_identity ON push_bindings(service_sid, identity, id);

-- A service's notification settings (JSON), absent until first set.
CREATE TABLE push_settings (
    service_sid TEXT PRIMARY KEY,
    settings TEXT NOT NULL
) WITHOUT ROWID;

-- The push outbox: notifications planned from the event log, deleted once a push service accepted them.
-- `dead` entries ran out of attempts and stay for inspection.
CREATE TABLE push_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    binding_sid TEXT NOT NULL,
    notification TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX push_outbox_due ON push_outbox(dead, next_attempt);
CREATE INDEX push_outbox_by_binding ON push_outbox(binding_sid);

-- How far the event log has been planned into the push outbox; events before push existed are not planned.
CREATE TABLE push_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id INTEGER NOT NULL
);
INSERT INTO push_cursor(id, log_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
"#;

const CREDENTIAL_COLUMNS: &str = "id, sid, friendly_name, kind, sandbox, certificate, private_key, api_key, secret, \
     date_created, date_updated";

fn credential(row: &Row<'_>) -> rusqlite::Result<(i64, Credential)> {
    let kind: String = row.get(3)?;
    Ok((
        row.get(0)?,
        Credential {
            sid: parse_col(row, 1)?,
            friendly_name: row.get(2)?,
            kind: CredentialKind::parse("kind", &kind).map_err(|e| conversion(3, e.to_string()))?,
            sandbox: row.get(4)?,
            secrets: CredentialSecrets {
                certificate: row.get(5)?,
                private_key: row.get(6)?,
                api_key: row.get(7)?,
                secret: row.get(8)?,
            },
            date_created: time_col(row, 9)?,
            date_updated: time_col(row, 10)?,
        },
    ))
}

const BINDING_COLUMNS: &str =
    "id, sid, service_sid, credential_sid, identity, kind, address, message_types, date_created, date_updated";

fn binding_at(row: &Row<'_>, at: usize) -> rusqlite::Result<(i64, PushBinding)> {
    let kind: String = row.get(at + 5)?;
    let types: String = row.get(at + 7)?;
    Ok((
        row.get(at)?,
        PushBinding {
            sid: parse_col(row, at + 1)?,
            service_sid: parse_col(row, at + 2)?,
            credential_sid: parse_opt_col(row, at + 3)?,
            identity: row.get(at + 4)?,
            kind: BindingType::parse("kind", &kind).map_err(|e| conversion(at + 5, e.to_string()))?,
            address: row.get(at + 6)?,
            message_types: parse_types(&types),
            date_created: time_col(row, at + 8)?,
            date_updated: time_col(row, at + 9)?,
        },
    ))
}

fn binding(row: &Row<'_>) -> rusqlite::Result<(i64, PushBinding)> {
    binding_at(row, 0)
}

fn conversion(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

fn types_text(types: &[PushType]) -> String {
    serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>()).unwrap_or_default()
}

fn parse_types(raw: &str) -> Vec<PushType> {
    serde_json::from_str::<Vec<String>>(raw).unwrap_or_default().iter().filter_map(|t| PushType::parse(t)).collect()
}

fn get_credential(tx: &Connection, sid: &CredentialSid) -> Result<Credential> {
    tx.query_row_cached(
        &format!("SELECT {CREDENTIAL_COLUMNS} FROM push_credentials WHERE sid = ?1"),
        params![sid.as_str()],
        credential,
    )
    .optional()
    .map_err(storage)?
    .map(|(_, c)| c)
    .ok_or_else(|| Error::not_found(ResourceKind::Credential, sid))
}

fn get_binding(tx: &Connection, service: &ServiceSid, sid: &PushBindingSid) -> Result<PushBinding> {
    tx.query_row_cached(
        &format!("SELECT {BINDING_COLUMNS} FROM push_bindings WHERE sid = ?1 AND service_sid = ?2"),
        params![sid.as_str(), service.as_str()],
        binding,
    )
    .optional()
    .map_err(storage)?
    .map(|(_, b)| b)
    .ok_or_else(|| Error::not_found(ResourceKind::PushBinding, sid))
}

fn settings(tx: &Connection, service: &ServiceSid) -> Result<NotificationSettings> {
    let raw: Option<String> = tx
        .query_row_cached("SELECT settings FROM push_settings WHERE service_sid = ?1", params![service.as_str()], |r| {
            r.get(0)
        })
        .optional()
        .map_err(storage)?;
    Ok(raw.map(|raw| NotificationSettings::from_stored(&raw)).unwrap_or_default())
}

fn without_ids<T>(page: Page<(i64, T)>) -> Page<T> {
    Page { items: page.items.into_iter().map(|(_, item)| item).collect(), next: page.next, previous: page.previous }
}

/// The due entries with their bindings, oldest first.
fn due_jobs(tx: &Connection, now: OffsetDateTime, limit: u32) -> Result<Vec<PushJob>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT o.id, o.attempts, o.notification, {} FROM push_outbox o \
             JOIN push_bindings b ON b.sid = o.binding_sid \
             WHERE o.dead = 0 AND o.next_attempt <= ?1 ORDER BY o.next_attempt, o.id LIMIT ?2",
            BINDING_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .map_err(storage)?;
    let rows = stmt
        .query_map(params![ms(now), limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, binding_at(r, 3)?.1))
        })
        .map_err(storage)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(storage)?;
    rows.into_iter()
        .map(|(id, attempts, notification, binding)| {
            Ok(PushJob {
                id,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                binding,
                notification: PushNotification::from_stored(&notification)?,
            })
        })
        .collect()
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn create_credential(&self, new: Credential) -> Result<Credential> {
        self.write(move |tx| {
            let s = &new.secrets;
            tx.execute_cached(
                "INSERT INTO push_credentials(sid, friendly_name, kind, sandbox, certificate, private_key, api_key, \
                 secret, date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    new.sid.as_str(),
                    new.friendly_name,
                    new.kind.as_str(),
                    new.sandbox,
                    s.certificate,
                    s.private_key,
                    s.api_key,
                    s.secret,
                    ms(new.date_created),
                    ms(new.date_updated),
                ],
            )
            .map_err(storage)?;
            get_credential(tx, &new.sid)
        })
        .await
    }

    async fn get_credential(&self, sid: &CredentialSid) -> Result<Credential> {
        let sid = sid.clone();
        self.read(move |tx| get_credential(tx, &sid)).await
    }

    async fn list_credentials(&self, page: PageQuery) -> Result<Page<Credential>> {
        self.read(move |tx| {
            let base = format!("SELECT {CREDENTIAL_COLUMNS} FROM push_credentials WHERE 1 = 1");
            keyset_page(tx, &base, "id", Vec::new(), page, credential, |(id, _)| *id).map(without_ids)
        })
        .await
    }

    async fn update_credential(&self, sid: &CredentialSid, patch: CredentialPatch) -> Result<Credential> {
        let sid = sid.clone();
        self.write(move |tx| {
            let c = patch.apply(get_credential(tx, &sid)?);
            let s = &c.secrets;
            tx.execute_cached(
                "UPDATE push_credentials SET friendly_name = ?1, kind = ?2, sandbox = ?3, certificate = ?4, \
                 private_key = ?5, api_key = ?6, secret = ?7, date_updated = ?8 WHERE sid = ?9",
                params![
                    c.friendly_name,
                    c.kind.as_str(),
                    c.sandbox,
                    s.certificate,
                    s.private_key,
                    s.api_key,
                    s.secret,
                    ms(c.date_updated),
                    sid.as_str(),
                ],
            )
            .map_err(storage)?;
            get_credential(tx, &sid)
        })
        .await
    }

    async fn delete_credential(&self, sid: &CredentialSid) -> Result<()> {
        let sid = sid.clone();
        self.write(move |tx| {
            let deleted = tx
                .execute_cached("DELETE FROM push_credentials WHERE sid = ?1", params![sid.as_str()])
                .map_err(storage)?;
            if deleted == 0 {
                return Err(Error::not_found(ResourceKind::Credential, &sid));
            }
            Ok(())
        })
        .await
    }

    async fn register_push_binding(&self, new: NewPushBinding) -> Result<PushBinding> {
        self.write(move |tx| {
            let sid: String = tx
                .prepare_cached(
                    "INSERT INTO push_bindings(sid, service_sid, credential_sid, identity, kind, address, message_types, \
                     date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
                     ON CONFLICT (service_sid, kind, address) DO UPDATE SET credential_sid = excluded.credential_sid, \
                     identity = excluded.identity, message_types = excluded.message_types, \
                     date_updated = excluded.date_updated RETURNING sid",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            new.sid.as_str(),
                            new.service_sid.as_str(),
                            new.credential_sid.as_ref().map(|c| c.as_str()),
                            new.identity,
                            new.kind.as_str(),
                            new.address,
                            types_text(&new.message_types),
                            ms(new.now),
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(storage)?;
            let sid = sid.parse().map_err(|e: palaver_api::sid::SidError| Error::Storage(e.to_string()))?;
            get_binding(tx, &new.service_sid, &sid)
        })
        .await
    }

    async fn get_push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<PushBinding> {
        let (service, sid) = (service.clone(), sid.clone());
        self.read(move |tx| get_binding(tx, &service, &sid)).await
    }

    async fn list_push_bindings(
        &self,
        service: &ServiceSid,
        filter: &BindingFilter,
        page: PageQuery,
    ) -> Result<Page<PushBinding>> {
        let (service, filter) = (service.clone(), filter.clone());
        self.read(move |tx| {
            let mut base = format!("SELECT {BINDING_COLUMNS} FROM push_bindings WHERE service_sid = ?");
            let mut args = vec![SqlValue::Text(service.to_string())];
            if !filter.kinds.is_empty() {
                base.push_str(&format!(" AND kind IN ({})", vec!["?"; filter.kinds.len()].join(", ")));
                args.extend(filter.kinds.iter().map(|k| SqlValue::Text(k.as_str().to_string())));
            }
            if !filter.identities.is_empty() {
                base.push_str(&format!(" AND identity IN ({})", vec!["?"; filter.identities.len()].join(", ")));
                args.extend(filter.identities.iter().map(|i| SqlValue::Text(i.clone())));
            }
            keyset_page(tx, &base, "id", args, page, binding, |(id, _)| *id).map(without_ids)
        })
        .await
    }

    async fn delete_push_binding(&self, service: &ServiceSid, sid: &PushBindingSid) -> Result<()> {
        let (service, sid) = (service.clone(), sid.clone());
        self.write(move |tx| {
            let deleted = tx
                .execute_cached(
                    "DELETE FROM push_bindings WHERE sid = ?1 AND service_sid = ?2",
                    params![sid.as_str(), service.as_str()],
                )
                .map_err(storage)?;
            if deleted == 0 {
                return Err(Error::not_found(ResourceKind::PushBinding, &sid));
            }
            tx.execute_cached("DELETE FROM push_outbox WHERE binding_sid = ?1", params![sid.as_str()])
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn notification_settings(&self, service: &ServiceSid) -> Result<NotificationSettings> {
        let service = service.clone();
        self.read(move |tx| settings(tx, &service)).await
    }

    async fn update_notification_settings(
        &self,
        service: &ServiceSid,
        patch: NotificationSettingsPatch,
    ) -> Result<NotificationSettings> {
        let service = service.clone();
        self.write(move |tx| {
            let updated = patch.apply(settings(tx, &service)?);
            tx.execute_cached(
                "INSERT INTO push_settings(service_sid, settings) VALUES (?1, ?2) \
                 ON CONFLICT (service_sid) DO UPDATE SET settings = excluded.settings",
                params![service.as_str(), updated.to_stored()],
            )
            .map_err(storage)?;
            Ok(updated)
        })
        .await
    }

    async fn push_cursor(&self) -> Result<i64> {
        self.read(|tx| {
            tx.query_row_cached("SELECT log_id FROM push_cursor WHERE id = 1", [], |r| r.get(0)).map_err(storage)
        })
        .await
    }

    async fn enqueue_pushes(&self, pushes: Vec<NewPush>, from: i64, to: i64, now: OffsetDateTime) -> Result<i64> {
        // One write on the writer thread: reading and moving the cursor is a compare-and-set.
        self.write(move |tx| {
            let stored: i64 =
                tx.query_row_cached("SELECT log_id FROM push_cursor WHERE id = 1", [], |r| r.get(0)).map_err(storage)?;
            if stored > from {
                return Ok(stored);
            }
            for push in &pushes {
                tx.execute_cached(
                    "INSERT INTO push_outbox(event_id, binding_sid, notification, next_attempt) VALUES (?1, ?2, ?3, ?4)",
                    params![push.event_id, push.binding_sid.as_str(), push.notification.to_stored(), ms(now)],
                )
                .map_err(storage)?;
            }
            let moved = stored.max(to);
            tx.execute_cached("UPDATE push_cursor SET log_id = ?1 WHERE id = 1", params![moved]).map_err(storage)?;
            Ok(moved)
        })
        .await
    }

    async fn due_pushes(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<PushJob>> {
        let any_due = self.outbox_has_due("push_outbox", now).await?;
        if !any_due {
            return Ok(Vec::new());
        }
        let lease_end = lease_end(now, lease);
        self.write(move |tx| {
            // Entries whose binding is gone (deleted between planning and now) are dropped.
            tx.execute_cached(
                "DELETE FROM push_outbox WHERE dead = 0 AND next_attempt <= ?1 \
                 AND binding_sid NOT IN (SELECT sid FROM push_bindings)",
                params![ms(now)],
            )
            .map_err(storage)?;
            let jobs = due_jobs(tx, now, limit)?;
            for job in &jobs {
                tx.execute_cached("UPDATE push_outbox SET next_attempt = ?1 WHERE id = ?2", params![lease_end, job.id])
                    .map_err(storage)?;
            }
            Ok(jobs)
        })
        .await
    }

    async fn next_push_due(&self) -> Result<Option<OffsetDateTime>> {
        self.read(|tx| {
            let next: Option<i64> = tx
                .query_row_cached("SELECT MIN(next_attempt) FROM push_outbox WHERE dead = 0", [], |r| r.get(0))
                .map_err(storage)?;
            Ok(next.map(palaver_core::clock::from_unix_millis))
        })
        .await
    }

    async fn push_delivered(&self, id: i64) -> Result<()> {
        self.write(move |tx| {
            tx.execute_cached("DELETE FROM push_outbox WHERE id = ?1", params![id]).map(drop).map_err(storage)
        })
        .await
    }

    async fn push_failed(&self, id: i64, retry_at: Option<OffsetDateTime>, error: String) -> Result<()> {
        self.write(move |tx| {
            tx.execute_cached(
                "UPDATE push_outbox SET attempts = attempts + 1, next_attempt = COALESCE(?2, next_attempt), \
                 dead = ?3, last_error = ?4 WHERE id = ?1",
                params![id, opt_ms(retry_at), retry_at.is_none(), error],
            )
            .map(drop)
            .map_err(storage)
        })
        .await
    }
}
