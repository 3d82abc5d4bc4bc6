//! [`Store`] for [`PostgresStore`]: each method opens a read or write transaction ([`Tx`]), runs the same
//! steps as the SQLite store, and finishes it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use palaver_api::sid::{
    AddressConfigurationSid, ApiKeySid, ConversationSid, DeliveryReceiptSid, MessageSid, RoleSid, ServiceSid,
    WebhookSid,
};
use palaver_core::channel::*;
use palaver_core::error::{Conflict, Error, ResourceKind, Result};
use palaver_core::event::{self, Event, EventKind, Origin};
use palaver_core::model::*;
use palaver_core::service::arm_timers;
use palaver_core::store::*;
use palaver_core::webhook::*;
use time::OffsetDateTime;

use crate::queries::*;
use crate::rows::*;
use crate::{Param, PostgresStore};
use crate::{channels, deliveries, media, webhooks};

/// The [`Store`] methods this backend does not implement yet: none any more (kept for callers that check).
pub const UNSUPPORTED: &[&str] = &[];

fn sid_error(e: palaver_api::sid::SidError) -> Error {
    Error::Storage(e.to_string())
}

#[async_trait]
impl Store for PostgresStore {
    fn changes(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.changes)
    }

    fn committed_here(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Vec<Event>>>> {
        Some(self.committed.subscribe())
    }

    fn connection_pool(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        Some(PoolStatus { max: status.max_size, open: status.size, idle: status.available, waiting: status.waiting })
    }

    async fn check_writable(&self) -> Result<()> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = tx.execute("SELECT 1", &[]).await.map(drop);
        tx.finish(r).await
    }

    async fn bootstrap(&self, default_service: NewService) -> Result<AccountConfig> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // Nodes that start together: the second waits here for the first's commit, then sees its config.
            tx.execute("LOCK TABLE account_config IN EXCLUSIVE MODE", &[]).await?;
            if let Some(config) = read_account_config(&tx).await? {
                return Ok(config);
            }
            let service = insert_service(&tx, &default_service).await?;
            tx.execute("INSERT INTO account_config(id, default_service_sid) VALUES (1, $1)", &[&service.sid.as_str()])
                .await?;
            bootstrapped_account_config(&tx).await
        }
        .await;
        tx.finish(r).await
    }

    async fn account_config(&self) -> Result<AccountConfig> {
        let tx = self.read().await?;
        let r = bootstrapped_account_config(&tx).await;
        tx.finish(r).await
    }

    async fn update_account_config(&self, patch: AccountConfigPatch) -> Result<AccountConfig> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            if let Some(sid) = &patch.default_service_sid {
                find_service(&tx, sid).await?;
                tx.execute("UPDATE account_config SET default_service_sid = $1 WHERE id = 1", &[&sid.as_str()]).await?;
            }
            if let Some(v) = &patch.default_messaging_service_sid {
                tx.execute(
                    "UPDATE account_config SET default_messaging_service_sid = $1 WHERE id = 1",
                    &[&v.as_ref().map(|s| s.as_str())],
                )
                .await?;
            }
            if let Some(v) = patch.default_inactive_timer {
                tx.execute(
                    "UPDATE account_config SET default_inactive_timer = $1 WHERE id = 1",
                    &[&v.map(|d| d.as_secs())],
                )
                .await?;
            }
            if let Some(v) = patch.default_closed_timer {
                tx.execute(
                    "UPDATE account_config SET default_closed_timer = $1 WHERE id = 1",
                    &[&v.map(|d| d.as_secs())],
                )
                .await?;
            }
            bootstrapped_account_config(&tx).await
        }
        .await;
        tx.finish(r).await
    }

    async fn create_service(&self, new: NewService) -> Result<Service> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = insert_service(&tx, &new).await;
        tx.finish(r).await
    }

    async fn get_service(&self, sid: &ServiceSid) -> Result<Service> {
        let tx = self.read().await?;
        let r = find_service(&tx, sid).await;
        tx.finish(r).await
    }

    async fn list_services(&self, page: PageQuery) -> Result<Page<Service>> {
        let tx = self.read().await?;
        let r = keyset_page(
            &tx,
            &format!("SELECT {SERVICE_COLUMNS} FROM services WHERE 1 = 1"),
            "id",
            vec![],
            page,
            service,
            |(id, _)| *id,
        )
        .await
        .map(without_ids);
        tx.finish(r).await
    }

    async fn delete_service(&self, sid: &ServiceSid, now: OffsetDateTime, origin: &Origin) -> Result<()> {
        let mut tx = self.write(origin, sid.as_str()).await?;
        let r = async {
            find_service(&tx, sid).await?;
            if read_account_config(&tx).await?.is_some_and(|c| &c.default_service_sid == sid) {
                return Err(Error::Conflict(Conflict::InUse("the default service cannot be deleted".into())));
            }
            let ids = tx
                .query("SELECT id FROM conversations WHERE service_sid = $1 ORDER BY id FOR UPDATE", &[&sid.as_str()])
                .await?;
            // Users are told before they go, so that their open sessions drop the conversations.
            for row in ids {
                let id: i64 = get(&row, 0)?;
                let current = conversation_by_id(&tx, id).await?;
                remove_conversation(&mut tx, sid, id, &current, now).await?;
            }
            for sql in [
                "DELETE FROM users WHERE service_sid = $1",
                "DELETE FROM roles WHERE service_sid = $1",
                "DELETE FROM push_bindings WHERE service_sid = $1",
                "DELETE FROM push_settings WHERE service_sid = $1",
                "DELETE FROM services WHERE sid = $1",
            ] {
                tx.execute(sql, &[&sid.as_str()]).await?;
            }
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn update_service_config(&self, sid: &ServiceSid, patch: ServiceConfigPatch) -> Result<Service> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            tx.query_opt("SELECT 1 FROM services WHERE sid = $1 FOR UPDATE", &[&sid.as_str()]).await?;
            find_service(&tx, sid).await?;
            for (column, value) in [
                ("creator_role_sid", &patch.creator_role_sid),
                ("participant_role_sid", &patch.participant_role_sid),
                ("user_role_sid", &patch.user_role_sid),
            ] {
                if let Some(role) = value {
                    tx.execute(
                        &format!("UPDATE services SET {column} = $1 WHERE sid = $2"),
                        &[&role.as_str(), &sid.as_str()],
                    )
                    .await?;
                }
            }
            if let Some(enabled) = patch.reachability_enabled {
                tx.execute("UPDATE services SET reachability_enabled = $1 WHERE sid = $2", &[&enabled, &sid.as_str()])
                    .await?;
            }
            if let Some(now) = patch.now {
                tx.execute("UPDATE services SET date_updated = $1 WHERE sid = $2", &[&ms(now), &sid.as_str()]).await?;
            }
            find_service(&tx, sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn create_conversation(
        &self,
        new: NewConversation,
        participants: Vec<NewParticipant>,
        origin: &Origin,
    ) -> Result<(Conversation, Vec<Participant>)> {
        let c = new.conversation;
        let mut tx = self.write(origin, c.service_sid.as_str()).await?;
        let r = async {
            let service = find_service(&tx, &c.service_sid).await?;
            if let Some(name) = &c.unique_name {
                ensure_unique_name_free(&tx, &c.service_sid, name, -1).await?;
            }
            let row = tx
                .query_one(
                    "INSERT INTO conversations(sid, service_sid, friendly_name, unique_name, attributes, \
                     messaging_service_sid, state, state_updated, created_by, email_address, email_name, date_created, \
                     date_updated, timer_inactive, timer_closed, date_inactive, date_closed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
                    &[
                        &c.sid.as_str(),
                        &c.service_sid.as_str(),
                        &c.friendly_name,
                        &c.unique_name,
                        &c.attributes.as_str(),
                        &c.messaging_service_sid.as_ref().map(|s| s.as_str()),
                        &c.state.as_str(),
                        &ms(c.state_updated),
                        &c.created_by,
                        &c.email_binding.address,
                        &c.email_binding.name,
                        &ms(c.date_created),
                        &ms(c.date_updated),
                        &c.timers.inactive_after.map(|d| d.as_secs()),
                        &c.timers.closed_after.map(|d| d.as_secs()),
                        &opt_ms(c.timers.date_inactive),
                        &opt_ms(c.timers.date_closed),
                    ],
                )
                .await
                .map_err(|e| unique_name_conflict(e, c.unique_name.as_deref()))?;
            let conv_id: i64 = get(&row, 0)?;
            let created = conversation_by_id(&tx, conv_id).await?;
            tx.append_event(
                created.sid.as_str(),
                EventKind::ConversationAdded,
                created.sid.as_str(),
                event::conversation_snapshot(&created).to_string(),
                c.state_updated,
            )
            .await?;
            let mut added = Vec::with_capacity(participants.len());
            for p in participants {
                added.push(insert_participant(&mut tx, conv_id, &created, &service, p).await?);
            }
            Ok((conversation_by_id(&tx, conv_id).await?, added))
        }
        .await;
        tx.finish(r).await
    }

    async fn get_conversation(&self, service: &ServiceSid, conv: &ConversationRef) -> Result<Conversation> {
        let tx = self.read().await?;
        let r = find_conversation(&tx, service, conv).await.map(|(_, c)| c);
        tx.finish(r).await
    }

    async fn list_conversations(
        &self,
        service: &ServiceSid,
        filter: ConversationFilter,
        page: PageQuery,
    ) -> Result<Page<Conversation>> {
        let tx = self.read().await?;
        let mut sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.service_sid = $1");
        let mut args: Vec<Param> = vec![Box::new(service.to_string())];
        if let Some(from) = filter.created_from {
            args.push(Box::new(ms(from)));
            sql.push_str(&format!(" AND c.date_created >= ${}", args.len()));
        }
        if let Some(before) = filter.created_before {
            args.push(Box::new(ms(before)));
            sql.push_str(&format!(" AND c.date_created < ${}", args.len()));
        }
        if let Some(state) = filter.state {
            args.push(Box::new(state.as_str().to_string()));
            sql.push_str(&format!(" AND c.state = ${}", args.len()));
        }
        let r =
            keyset_page(&tx, &sql, "c.id", args, page, |r| conversation(r, 0), |(id, _)| *id).await.map(without_ids);
        tx.finish(r).await
    }

    async fn update_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        patch: ConversationPatch,
        origin: &Origin,
    ) -> Result<Conversation> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (id, current) = lock_conversation(&tx, service, conv).await?;
            ensure_open(&current)?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            let mut next = current.clone();
            if let Some(v) = patch.friendly_name {
                next.friendly_name = v;
            }
            if let Some(v) = patch.unique_name {
                if let Some(name) = &v {
                    ensure_unique_name_free(&tx, service, name, id).await?;
                }
                next.unique_name = v;
            }
            if let Some(v) = patch.attributes {
                next.attributes = v;
            }
            if let Some(v) = patch.messaging_service_sid {
                next.messaging_service_sid = v;
            }
            if let Some(v) = patch.email_address {
                next.email_binding.address = v;
            }
            if let Some(v) = patch.email_name {
                next.email_binding.name = v;
            }
            if let Some(v) = patch.date_created {
                next.date_created = v;
            }
            let state_changed = patch.state.is_some_and(|s| s != current.state);
            if let Some(state) = patch.state {
                next.state = state;
            }
            if state_changed {
                next.state_updated = now;
            }
            if state_changed || patch.inactive_after.is_some() || patch.closed_after.is_some() {
                next.timers = arm_timers(
                    next.state,
                    patch.inactive_after.or(current.timers.inactive_after),
                    patch.closed_after.or(current.timers.closed_after),
                    now,
                );
            }
            next.date_updated = now;
            tx.query_opt(
                "UPDATE conversations SET friendly_name = $1, unique_name = $2, attributes = $3, \
                 messaging_service_sid = $4, state = $5, state_updated = $6, email_address = $7, email_name = $8, \
                 date_created = $9, date_updated = $10, timer_inactive = $11, timer_closed = $12, date_inactive = $13, \
                 date_closed = $14 WHERE id = $15",
                &[
                    &next.friendly_name,
                    &next.unique_name,
                    &next.attributes.as_str(),
                    &next.messaging_service_sid.as_ref().map(|s| s.as_str()),
                    &next.state.as_str(),
                    &ms(next.state_updated),
                    &next.email_binding.address,
                    &next.email_binding.name,
                    &ms(next.date_created),
                    &ms(next.date_updated),
                    &next.timers.inactive_after.map(|d| d.as_secs()),
                    &next.timers.closed_after.map(|d| d.as_secs()),
                    &opt_ms(next.timers.date_inactive),
                    &opt_ms(next.timers.date_closed),
                    &id,
                ],
            )
            .await
            .map_err(|e| unique_name_conflict(e, next.unique_name.as_deref()))?;
            let updated = conversation_by_id(&tx, id).await?;
            let snapshot = event::conversation_snapshot(&updated).to_string();
            let sid = updated.sid.as_str();
            tx.append_event(sid, EventKind::ConversationUpdated, sid, snapshot.clone(), now).await?;
            if state_changed {
                tx.append_event(sid, EventKind::ConversationStateUpdated, sid, snapshot, now).await?;
            }
            Ok(updated)
        }
        .await;
        tx.finish(r).await
    }

    async fn restore_conversation_lifecycle(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        lifecycle: ConversationLifecycle,
        origin: &Origin,
    ) -> Result<Conversation> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (id, current) = lock_conversation(&tx, service, conv).await?;
            let timers = lifecycle.timers;
            tx.execute(
                "UPDATE conversations SET state = $1, state_updated = $2, date_updated = $3, timer_inactive = $4, \
                 timer_closed = $5, date_inactive = $6, date_closed = $7 WHERE id = $8",
                &[
                    &lifecycle.state.as_str(),
                    &ms(lifecycle.state_updated),
                    &ms(lifecycle.date_updated),
                    &timers.inactive_after.map(|d| d.as_secs()),
                    &timers.closed_after.map(|d| d.as_secs()),
                    &opt_ms(timers.date_inactive),
                    &opt_ms(timers.date_closed),
                    &id,
                ],
            )
            .await?;
            let restored = conversation_by_id(&tx, id).await?;
            let snapshot = event::conversation_snapshot(&restored).to_string();
            let sid = restored.sid.as_str();
            tx.append_event(sid, EventKind::ConversationUpdated, sid, snapshot.clone(), lifecycle.date_updated).await?;
            if restored.state != current.state {
                tx.append_event(sid, EventKind::ConversationStateUpdated, sid, snapshot, lifecycle.state_updated)
                    .await?;
            }
            Ok(restored)
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_conversation(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (id, current) = lock_conversation(&tx, service, conv).await?;
            remove_conversation(&mut tx, service, id, &current, now).await
        }
        .await;
        tx.finish(r).await
    }

    async fn add_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewParticipant,
        origin: &Origin,
    ) -> Result<Participant> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let svc = find_service(&tx, service).await?;
            let (id, current) = lock_conversation(&tx, service, conv).await?;
            ensure_open(&current)?;
            insert_participant(&mut tx, id, &current, &svc, new).await
        }
        .await;
        tx.finish(r).await
    }

    async fn get_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
    ) -> Result<Participant> {
        let tx = self.read().await?;
        let r = async {
            let (id, _) = find_conversation(&tx, service, conv).await?;
            find_participant(&tx, id, p).await
        }
        .await;
        tx.finish(r).await
    }

    async fn list_participants(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Participant>> {
        let tx = self.read().await?;
        let r = async {
            let (id, _) = find_conversation(&tx, service, conv).await?;
            keyset_page(
                &tx,
                &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.conversation_id = $1"),
                "p.id",
                vec![Box::new(id)],
                page,
                |r| participant(r, 0),
                |(id, _)| *id,
            )
            .await
            .map(without_ids)
        }
        .await;
        tx.finish(r).await
    }

    async fn update_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
        patch: ParticipantPatch,
        origin: &Origin,
    ) -> Result<Participant> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (conv_id, current_conv) = lock_conversation(&tx, service, conv).await?;
            // Reading a closed conversation is still reading: horizons and notification levels may change.
            let only_reading = patch.attributes.is_none()
                && patch.role_sid.is_none()
                && patch.identity.is_none()
                && patch.proxy_address.is_none()
                && patch.projected_address.is_none()
                && patch.date_created.is_none();
            if !only_reading {
                ensure_open(&current_conv)?;
            }
            let current = find_participant(&tx, conv_id, p).await?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            let mut sets: Vec<&str> = vec!["date_updated"];
            let mut args: Vec<Param> = vec![Box::new(ms(now))];
            if let Some(v) = &patch.attributes {
                sets.push("attributes");
                args.push(Box::new(v.as_str().to_string()));
            }
            if let Some(v) = &patch.role_sid {
                find_role(&tx, service, v).await?;
                sets.push("role_sid");
                args.push(Box::new(v.to_string()));
            }
            if let Some(v) = &patch.identity {
                if current.identity.is_none() {
                    return Err(palaver_core::error::InvalidInput::new(
                        "Identity",
                        "a non-chat participant has no identity",
                    )
                    .into());
                }
                if current.identity.as_ref() != Some(v) {
                    let taken: bool = get(
                        &tx.query_one(
                            "SELECT EXISTS(SELECT 1 FROM participants WHERE conversation_id = $1 AND identity = $2)",
                            &[&conv_id, &v.as_str()],
                        )
                        .await?,
                        0,
                    )?;
                    if taken {
                        return Err(Error::Conflict(Conflict::ParticipantIdentityTaken(v.to_string())));
                    }
                }
                sets.push("identity");
                args.push(Box::new(v.as_str().to_string()));
            }
            if let Some(v) = &patch.proxy_address {
                sets.push("binding_proxy");
                args.push(Box::new(v.clone()));
            }
            if let Some(v) = &patch.projected_address {
                sets.push("binding_projected");
                args.push(Box::new(v.clone()));
            }
            if let Some(v) = patch.last_read_message_index {
                sets.push("last_read_index");
                args.push(Box::new(v));
            }
            if let Some(v) = patch.last_read_timestamp {
                sets.push("last_read_timestamp");
                args.push(Box::new(opt_ms(v)));
            }
            if let Some(v) = patch.notification_level {
                sets.push("notification_level");
                args.push(Box::new(v.as_str().to_string()));
            }
            if let Some(v) = patch.date_created {
                sets.push("date_created");
                args.push(Box::new(ms(v)));
            }
            let assignments: Vec<String> =
                sets.iter().enumerate().map(|(i, col)| format!("{col} = ${}", i + 1)).collect();
            args.push(Box::new(current.sid.to_string()));
            let sql = format!("UPDATE participants SET {} WHERE sid = ${}", assignments.join(", "), args.len());
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                args.iter().map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            tx.execute(&sql, &refs).await?;
            let updated = find_participant(&tx, conv_id, &ParticipantRef::Sid(current.sid.clone())).await?;
            let updated_seq = tx
                .append_event(
                    current_conv.sid.as_str(),
                    EventKind::ParticipantUpdated,
                    updated.sid.as_str(),
                    event::participant_snapshot(&updated).to_string(),
                    now,
                )
                .await?;
            if updated.identity.is_some() && updated.identity != current.identity {
                renamed_participant(
                    &mut tx,
                    service,
                    conv_id,
                    &current,
                    &updated,
                    patch.new_user_sid.as_ref(),
                    updated_seq,
                    now,
                )
                .await?;
            }
            // The user's own view of the conversation is also a change of the user's list of conversations.
            let users_view_changed = patch.last_read_message_index.is_some() || patch.notification_level.is_some();
            if users_view_changed
                && let Some(identity) = &updated.identity
                && let Ok(user) = find_user(&tx, service, &UserRef::Identity(identity.as_str().to_string())).await
            {
                let conv_now = conversation_by_id(&tx, conv_id).await?;
                tx.append_event(
                    user.sid.as_str(),
                    EventKind::UserConversationUpdated,
                    current_conv.sid.as_str(),
                    event::user_conversation_snapshot(&conv_now, &updated, None).to_string(),
                    now,
                )
                .await?;
            }
            Ok(updated)
        }
        .await;
        tx.finish(r).await
    }

    async fn remove_participant(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        p: &ParticipantRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (conv_id, current_conv) = lock_conversation(&tx, service, conv).await?;
            let current = find_participant(&tx, conv_id, p).await?;
            tx.execute("DELETE FROM participants WHERE sid = $1", &[&current.sid.as_str()]).await?;
            channels::cancel_queued(&mut tx, current.sid.as_str(), now).await?;
            tx.append_event(
                current_conv.sid.as_str(),
                EventKind::ParticipantRemoved,
                current.sid.as_str(),
                event::participant_snapshot(&current).to_string(),
                now,
            )
            .await?;
            user_left(&mut tx, service, &current_conv, &current, now).await
        }
        .await;
        tx.finish(r).await
    }

    async fn add_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        new: NewMessage,
        origin: &Origin,
    ) -> Result<Message> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            // The row lock orders this message after every earlier write to the conversation.
            let (conv_id, current) = lock_conversation(&tx, service, conv).await?;
            if let Some(key) = &new.idempotency_key {
                let earlier = tx
                    .query_opt(
                        "SELECT message_sid FROM message_keys WHERE conversation_id = $1 AND key = $2",
                        &[&conv_id, key],
                    )
                    .await?;
                if let Some(row) = earlier {
                    let sid: MessageSid = parse_col(&row, 0)?;
                    return find_message(&tx, conv_id, &current, &sid).await;
                }
            }
            ensure_open(&current)?;
            let index: i64 = get(
                &tx.query_one(
                    "UPDATE conversations SET next_message_index = next_message_index + 1 WHERE id = $1 \
                     RETURNING next_message_index - 1",
                    &[&conv_id],
                )
                .await?,
                0,
            )?;
            let participant_sid: Option<String> = tx
                .query_opt(
                    "SELECT sid FROM participants WHERE conversation_id = $1 \
                     AND (identity = $2 OR (identity IS NULL AND binding_address = $2)) ORDER BY id LIMIT 1",
                    &[&conv_id, &new.author],
                )
                .await?
                .map(|r| get(&r, 0))
                .transpose()?;
            tx.execute(
                "INSERT INTO messages(conversation_id, idx, sid, author, body, subject, attributes, participant_sid, \
                 content_sid, date_created, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &conv_id,
                    &index,
                    &new.sid.as_str(),
                    &new.author,
                    &new.body,
                    &new.subject,
                    &new.attributes.as_str(),
                    &participant_sid,
                    &new.content_sid,
                    &ms(new.date_created),
                    &opt_ms(new.date_updated),
                ],
            )
            .await?;
            if let Some(key) = &new.idempotency_key {
                tx.execute(
                    "INSERT INTO message_keys(conversation_id, key, message_sid) VALUES ($1, $2, $3)",
                    &[&conv_id, key, &new.sid.as_str()],
                )
                .await?;
            }
            let mut media_descriptors = Vec::new();
            if !new.media.is_empty() {
                media_descriptors = media::attach(&tx, &current, &new.sid, &new.media, new.max_media_bytes).await?;
                tx.execute(
                    "UPDATE messages SET media = $1 WHERE conversation_id = $2 AND idx = $3",
                    &[&serde_json::Value::Array(media_descriptors.clone()).to_string(), &conv_id, &index],
                )
                .await?;
            }
            let mut delivery = None;
            if current.participants_count > 0
                && let Some(counts) =
                    create_receipts(&tx, conv_id, &current, &new.sid, participant_sid.as_deref(), new.now).await?
            {
                tx.execute(
                    "UPDATE messages SET delivery = $1 WHERE conversation_id = $2 AND idx = $3",
                    &[&counts.to_json(), &conv_id, &index],
                )
                .await?;
                delivery = Some(counts);
            }
            // New activity wakes an inactive conversation and restarts its timers.
            let reactivated = current.state == ConversationState::Inactive;
            let state = if reactivated { ConversationState::Active } else { current.state };
            let timers = arm_timers(state, current.timers.inactive_after, current.timers.closed_after, new.now);
            let unchanged = !reactivated
                && timers.date_inactive == current.timers.date_inactive
                && timers.date_closed == current.timers.date_closed;
            if !unchanged {
                tx.execute(
                    "UPDATE conversations SET state = $1, state_updated = CASE WHEN $2 THEN $3 ELSE state_updated END, \
                     date_inactive = $4, date_closed = $5 WHERE id = $6",
                    &[
                        &state.as_str(),
                        &reactivated,
                        &ms(new.now),
                        &opt_ms(timers.date_inactive),
                        &opt_ms(timers.date_closed),
                        &conv_id,
                    ],
                )
                .await?;
            }
            // The row as written, without reading it back (times at the stored millisecond precision).
            let at_ms = |t: OffsetDateTime| palaver_core::clock::from_unix_millis(ms(t));
            let created = Message {
                sid: new.sid.clone(),
                conversation_sid: current.sid.clone(),
                service_sid: current.service_sid.clone(),
                index,
                author: new.author.clone(),
                body: new.body.clone(),
                subject: new.subject.clone(),
                attributes: new.attributes.clone(),
                participant_sid: participant_sid.as_deref().map(str::parse).transpose().map_err(sid_error)?,
                content_sid: new.content_sid.clone(),
                media: media_descriptors,
                delivery,
                date_created: at_ms(new.date_created),
                date_updated: new.date_updated.map(at_ms),
            };
            let conv_sid = current.sid.as_str();
            tx.append_event(
                conv_sid,
                EventKind::MessageAdded,
                created.sid.as_str(),
                event::message_snapshot_json(&created),
                new.now,
            )
            .await?;
            if reactivated {
                let updated = conversation_by_id(&tx, conv_id).await?;
                tx.append_event(
                    conv_sid,
                    EventKind::ConversationStateUpdated,
                    conv_sid,
                    event::conversation_snapshot(&updated).to_string(),
                    new.now,
                )
                .await?;
            }
            Ok(created)
        }
        .await;
        tx.finish(r).await
    }

    async fn get_message(&self, service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<Message> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, current) = find_conversation(&tx, service, conv).await?;
            find_message(&tx, conv_id, &current, sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn list_messages(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<Message>> {
        self.list_messages_and_lead(service, conv, page).await.map(|(page, _)| page)
    }

    async fn list_messages_and_lead(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<(Page<Message>, bool)> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, current) = find_conversation(&tx, service, conv).await?;
            let listed = keyset_page(
                &tx,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1"),
                "idx",
                vec![Box::new(conv_id)],
                page,
                |r| message(r, &current),
                |m| m.index,
            )
            .await?;
            let Some(first) = listed.items.first().map(|m| m.index) else { return Ok((listed, false)) };
            let sql = if page.descending {
                "SELECT EXISTS(SELECT 1 FROM messages WHERE conversation_id = $1 AND idx > $2)"
            } else {
                "SELECT EXISTS(SELECT 1 FROM messages WHERE conversation_id = $1 AND idx < $2)"
            };
            let lead: bool = get(&tx.query_one(sql, &[&conv_id, &first]).await?, 0)?;
            Ok((listed, lead))
        }
        .await;
        tx.finish(r).await
    }

    async fn update_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        patch: MessagePatch,
        origin: &Origin,
    ) -> Result<Message> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (conv_id, current_conv) = lock_conversation(&tx, service, conv).await?;
            ensure_open(&current_conv)?;
            let mut m = find_message(&tx, conv_id, &current_conv, sid).await?;
            if let Some(v) = patch.author {
                m.author = v;
            }
            if let Some(v) = patch.body {
                m.body = Some(v);
            }
            if let Some(v) = patch.subject {
                m.subject = Some(v);
            }
            if let Some(v) = patch.attributes {
                m.attributes = v;
            }
            if let Some(v) = patch.date_created {
                m.date_created = v;
            }
            if patch.date_updated.is_some() {
                m.date_updated = patch.date_updated;
            }
            tx.execute(
                "UPDATE messages SET author = $1, body = $2, subject = $3, attributes = $4, date_created = $5, \
                 date_updated = $6 WHERE conversation_id = $7 AND sid = $8",
                &[
                    &m.author,
                    &m.body,
                    &m.subject,
                    &m.attributes.as_str(),
                    &ms(m.date_created),
                    &opt_ms(m.date_updated),
                    &conv_id,
                    &sid.as_str(),
                ],
            )
            .await?;
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            tx.append_event(
                current_conv.sid.as_str(),
                EventKind::MessageUpdated,
                m.sid.as_str(),
                event::message_snapshot(&m).to_string(),
                now,
            )
            .await?;
            Ok(m)
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_message(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &MessageSid,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let (conv_id, current_conv) = lock_conversation(&tx, service, conv).await?;
            ensure_open(&current_conv)?;
            let m = find_message(&tx, conv_id, &current_conv, sid).await?;
            tx.execute("DELETE FROM messages WHERE conversation_id = $1 AND idx = $2", &[&conv_id, &m.index]).await?;
            tx.execute("INSERT INTO deleted_messages(conversation_id, idx) VALUES ($1, $2)", &[&conv_id, &m.index])
                .await?;
            tx.execute(
                "DELETE FROM delivery_receipts WHERE conversation_id = $1 AND message_sid = $2",
                &[&conv_id, &m.sid.as_str()],
            )
            .await?;
            tx.execute("UPDATE conversations SET deleted_messages = deleted_messages + 1 WHERE id = $1", &[&conv_id])
                .await?;
            tx.append_event(
                current_conv.sid.as_str(),
                EventKind::MessageRemoved,
                m.sid.as_str(),
                event::message_snapshot(&m).to_string(),
                now,
            )
            .await?;
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn create_user(&self, service: &ServiceSid, new: NewUser, origin: &Origin) -> Result<User> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let svc = find_service(&tx, service).await?;
            let taken = || Conflict::UserIdentityTaken(new.identity.to_string());
            if find_user(&tx, service, &UserRef::Identity(new.identity.as_str().to_string())).await.is_ok() {
                return Err(Error::Conflict(taken()));
            }
            let role = new.role_sid.clone().unwrap_or(svc.user_role_sid);
            tx.execute_unique(
                "INSERT INTO users(sid, service_sid, identity, friendly_name, attributes, role_sid, date_created, \
                 date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                &[
                    &new.sid.as_str(),
                    &service.as_str(),
                    &new.identity.as_str(),
                    &new.friendly_name,
                    &new.attributes.as_str(),
                    &role.as_str(),
                    &ms(new.now),
                ],
                "users_identity",
                taken,
            )
            .await?;
            let user = find_user(&tx, service, &UserRef::Sid(new.sid.clone())).await?;
            tx.append_event(
                user.sid.as_str(),
                EventKind::UserAdded,
                user.sid.as_str(),
                event::user_snapshot(&user).to_string(),
                new.now,
            )
            .await?;
            Ok(user)
        }
        .await;
        tx.finish(r).await
    }

    async fn get_user(&self, service: &ServiceSid, user_ref: &UserRef) -> Result<User> {
        let tx = self.read().await?;
        let r = find_user(&tx, service, user_ref).await;
        tx.finish(r).await
    }

    async fn list_users(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<User>> {
        let tx = self.read().await?;
        let r = keyset_page(
            &tx,
            &format!("SELECT {USER_COLUMNS} FROM users WHERE service_sid = $1"),
            "id",
            vec![Box::new(service.to_string())],
            page,
            user,
            |(id, _)| *id,
        )
        .await
        .map(without_ids);
        tx.finish(r).await
    }

    async fn update_user(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        patch: UserPatch,
        origin: &Origin,
    ) -> Result<User> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let mut u = find_user_locking(&tx, service, user_ref, "FOR UPDATE").await?;
            if let Some(v) = patch.friendly_name {
                u.friendly_name = v;
            }
            if let Some(v) = patch.attributes {
                u.attributes = v;
            }
            if let Some(v) = patch.role_sid {
                u.role_sid = Some(v);
            }
            let now = patch.now.unwrap_or_else(OffsetDateTime::now_utc);
            u.date_updated = now;
            tx.execute(
                "UPDATE users SET friendly_name = $1, attributes = $2, role_sid = $3, date_updated = $4 WHERE sid = $5",
                &[
                    &u.friendly_name,
                    &u.attributes.as_str(),
                    &u.role_sid.as_ref().map(|r| r.as_str()),
                    &ms(now),
                    &u.sid.as_str(),
                ],
            )
            .await?;
            tx.append_event(
                u.sid.as_str(),
                EventKind::UserUpdated,
                u.sid.as_str(),
                event::user_snapshot(&u).to_string(),
                now,
            )
            .await?;
            Ok(u)
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_user(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        now: OffsetDateTime,
        origin: &Origin,
    ) -> Result<()> {
        let mut tx = self.write(origin, service.as_str()).await?;
        let r = async {
            let u = find_user_locking(&tx, service, user_ref, "FOR UPDATE").await?;
            tx.execute("DELETE FROM users WHERE sid = $1", &[&u.sid.as_str()]).await?;
            tx.append_event(
                u.sid.as_str(),
                EventKind::UserRemoved,
                u.sid.as_str(),
                event::user_snapshot(&u).to_string(),
                now,
            )
            .await?;
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn list_user_conversations(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        page: PageQuery,
    ) -> Result<Page<UserConversation>> {
        let tx = self.read().await?;
        let r = async {
            let u = find_user(&tx, service, user_ref).await?;
            let sql = format!(
                "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS} FROM participants p \
                 JOIN conversations c ON c.id = p.conversation_id WHERE p.service_sid = $1 AND p.identity = $2"
            );
            let args: Vec<Param> = vec![Box::new(service.to_string()), Box::new(u.identity.as_str().to_string())];
            let raw = keyset_page(&tx, &sql, "p.id", args, page, participant_and_conversation, |parts| parts.0).await?;
            let mut items = Vec::with_capacity(raw.items.len());
            for parts in raw.items {
                items.push(to_user_conversation(&tx, &u.sid, parts).await?);
            }
            Ok(Page { items, next: raw.next, previous: raw.previous })
        }
        .await;
        tx.finish(r).await
    }

    async fn get_user_conversation(
        &self,
        service: &ServiceSid,
        user_ref: &UserRef,
        conv: &ConversationRef,
    ) -> Result<UserConversation> {
        let tx = self.read().await?;
        let r = async {
            let u = find_user(&tx, service, user_ref).await?;
            let (conv_id, _) = find_conversation(&tx, service, conv).await?;
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS} FROM participants p \
                         JOIN conversations c ON c.id = p.conversation_id WHERE p.conversation_id = $1 AND p.identity = $2"
                    ),
                    &[&conv_id, &u.identity.as_str()],
                )
                .await?
                .ok_or_else(|| Error::not_found(ResourceKind::UserConversation, format!("{}/{}", u.sid, conv)))?;
            to_user_conversation(&tx, &u.sid, participant_and_conversation(&row)?).await
        }
        .await;
        tx.finish(r).await
    }

    async fn list_participant_conversations(
        &self,
        service: &ServiceSid,
        lookup: &ParticipantLookup,
        page: PageQuery,
    ) -> Result<Page<ParticipantConversation>> {
        let tx = self.read().await?;
        let (column, value) = match lookup {
            ParticipantLookup::Identity(i) => ("p.identity", i.clone()),
            ParticipantLookup::Address(a) => ("p.binding_address", a.clone()),
        };
        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS}, {CONVERSATION_COLUMNS}, (SELECT u.sid FROM users u WHERE \
             u.service_sid = p.service_sid AND u.identity = p.identity) FROM participants p \
             JOIN conversations c ON c.id = p.conversation_id WHERE p.service_sid = $1 AND {column} = $2"
        );
        let args: Vec<Param> = vec![Box::new(service.to_string()), Box::new(value)];
        let r = keyset_page(
            &tx,
            &sql,
            "p.id",
            args,
            page,
            |r| {
                let (pid, participant, _, conversation) = participant_and_conversation(r)?;
                let user_sid = parse_opt_col(r, USER_SID_COLUMN)?;
                Ok((pid, ParticipantConversation { participant, user_sid, conversation }))
            },
            |(id, _)| *id,
        )
        .await
        .map(without_ids);
        tx.finish(r).await
    }

    async fn create_role(&self, service: &ServiceSid, new: NewRole) -> Result<Role> {
        let tx = self.write(&Origin::system(), service.as_str()).await?;
        let r = async {
            find_service(&tx, service).await?;
            let permissions = serde_json::to_string(&new.permissions).map_err(|e| Error::Storage(e.to_string()))?;
            tx.execute(
                "INSERT INTO roles(sid, service_sid, friendly_name, kind, permissions, date_created, date_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                &[
                    &new.sid.as_str(),
                    &service.as_str(),
                    &new.friendly_name,
                    &new.kind.as_str(),
                    &permissions,
                    &ms(new.now),
                ],
            )
            .await?;
            find_role(&tx, service, &new.sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn get_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<Role> {
        let tx = self.read().await?;
        let r = find_role(&tx, service, sid).await;
        tx.finish(r).await
    }

    async fn list_roles(&self, service: &ServiceSid, page: PageQuery) -> Result<Page<Role>> {
        let tx = self.read().await?;
        let r = async {
            find_service(&tx, service).await?;
            keyset_page(
                &tx,
                &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE service_sid = $1"),
                "id",
                vec![Box::new(service.to_string())],
                page,
                role,
                |(id, _)| *id,
            )
            .await
            .map(without_ids)
        }
        .await;
        tx.finish(r).await
    }

    async fn update_role(
        &self,
        service: &ServiceSid,
        sid: &RoleSid,
        permissions: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Role> {
        let tx = self.write(&Origin::system(), service.as_str()).await?;
        let r = async {
            find_role(&tx, service, sid).await?;
            let permissions = serde_json::to_string(&permissions).map_err(|e| Error::Storage(e.to_string()))?;
            tx.execute(
                "UPDATE roles SET permissions = $1, date_updated = $2 WHERE sid = $3",
                &[&permissions, &ms(now), &sid.as_str()],
            )
            .await?;
            find_role(&tx, service, sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_role(&self, service: &ServiceSid, sid: &RoleSid) -> Result<()> {
        let tx = self.write(&Origin::system(), service.as_str()).await?;
        let r = async {
            find_role(&tx, service, sid).await?;
            // Locks the service row, so that a concurrent change of its default roles cannot slip in.
            let in_use = tx
                .query_opt(
                    "SELECT 1 FROM services WHERE sid = $1 AND $2 IN (creator_role_sid, participant_role_sid, user_role_sid) \
                     FOR UPDATE",
                    &[&service.as_str(), &sid.as_str()],
                )
                .await?
                .is_some();
            if in_use {
                return Err(Error::Conflict(Conflict::InUse(format!("role {sid} is a default role of its service"))));
            }
            tx.execute("DELETE FROM roles WHERE sid = $1", &[&sid.as_str()]).await?;
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = tx
            .execute(
                "INSERT INTO api_keys(sid, friendly_name, secret, date_created) VALUES ($1, $2, $3, $4)",
                &[&key.sid.as_str(), &key.friendly_name, &key.secret, &ms(key.date_created)],
            )
            .await
            .map(|_| key);
        tx.finish(r).await
    }

    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<ApiKey> {
        let tx = self.read().await?;
        let r = async {
            match tx
                .query_opt(
                    "SELECT sid, friendly_name, secret, date_created FROM api_keys WHERE sid = $1",
                    &[&sid.as_str()],
                )
                .await?
            {
                Some(row) => api_key(&row),
                None => Err(Error::not_found(ResourceKind::ApiKey, sid)),
            }
        }
        .await;
        tx.finish(r).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let tx = self.read().await?;
        let r = async {
            tx.query("SELECT sid, friendly_name, secret, date_created FROM api_keys ORDER BY id", &[])
                .await?
                .iter()
                .map(api_key)
                .collect()
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_api_key(&self, sid: &ApiKeySid) -> Result<()> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            if tx.execute("DELETE FROM api_keys WHERE sid = $1", &[&sid.as_str()]).await? == 0 {
                return Err(Error::not_found(ResourceKind::ApiKey, sid));
            }
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn next_timer_due(&self) -> Result<Option<OffsetDateTime>> {
        let tx = self.read().await?;
        let r = async {
            let due: Option<i64> = get(
                &tx.query_one(
                    "SELECT LEAST((SELECT MIN(date_inactive) FROM conversations WHERE date_inactive IS NOT NULL), \
                     (SELECT MIN(date_closed) FROM conversations WHERE date_closed IS NOT NULL))",
                    &[],
                )
                .await?,
                0,
            )?;
            Ok(due.map(palaver_core::clock::from_unix_millis))
        }
        .await;
        tx.finish(r).await
    }

    async fn fire_due_timers(&self, now: OffsetDateTime) -> Result<Vec<Conversation>> {
        let mut tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // Another node firing the same timers skips the rows this one holds, and vice versa.
            let due = tx
                .query(
                    "SELECT id FROM conversations WHERE date_closed <= $1 OR date_inactive <= $1 ORDER BY id \
                     FOR UPDATE SKIP LOCKED",
                    &[&ms(now)],
                )
                .await?;
            let mut changed = Vec::new();
            for row in due {
                let id: i64 = get(&row, 0)?;
                let current = conversation_by_id(&tx, id).await?;
                tx.service = current.service_sid.to_string();
                let closing = current.timers.date_closed.is_some_and(|d| d <= now);
                let (state, timers) = if closing {
                    (ConversationState::Closed, Timers { date_inactive: None, date_closed: None, ..current.timers })
                } else if current.timers.date_inactive.is_some_and(|d| d <= now) {
                    (ConversationState::Inactive, Timers { date_inactive: None, ..current.timers })
                } else {
                    // Re-armed by a write that committed between the scan and the lock.
                    continue;
                };
                tx.execute(
                    "UPDATE conversations SET state = $1, state_updated = $2, date_updated = $2, date_inactive = $3, \
                     date_closed = $4 WHERE id = $5",
                    &[&state.as_str(), &ms(now), &opt_ms(timers.date_inactive), &opt_ms(timers.date_closed), &id],
                )
                .await?;
                let updated = conversation_by_id(&tx, id).await?;
                if updated.state != current.state {
                    let sid = updated.sid.to_string();
                    tx.append_event(
                        &sid,
                        EventKind::ConversationStateUpdated,
                        &sid,
                        event::conversation_snapshot(&updated).to_string(),
                        now,
                    )
                    .await?;
                    changed.push(updated);
                }
            }
            Ok(changed)
        }
        .await;
        tx.finish(r).await
    }

    async fn read_events(&self, stream: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let tx = self.read().await?;
        let r = query_events(
            &tx,
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
            &[&stream, &after, &i64::from(limit)],
        )
        .await;
        tx.finish(r).await
    }

    async fn read_log(&self, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        let tx = self.read().await?;
        let r = query_events(
            &tx,
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after_id, &i64::from(limit)],
        )
        .await;
        tx.finish(r).await
    }

    async fn last_log_id(&self) -> Result<i64> {
        let tx = self.read().await?;
        let r = async { get(&tx.query_one("SELECT COALESCE(MAX(id), 0)::int8 FROM events", &[]).await?, 0) }.await;
        tx.finish(r).await
    }

    async fn stream_position(&self, stream: &str) -> Result<i64> {
        let tx = self.read().await?;
        let r = async {
            get(
                &tx.query_one("SELECT COALESCE((SELECT last_seq FROM streams WHERE stream = $1), 0)::int8", &[&stream])
                    .await?,
                0,
            )
        }
        .await;
        tx.finish(r).await
    }

    async fn webhook_settings(&self, scope: &WebhookScope) -> Result<WebhookSettings> {
        let tx = self.read().await?;
        let r = webhooks::read_webhook_settings(&tx, &scope.key()).await;
        tx.finish(r).await
    }

    async fn update_webhook_settings(
        &self,
        scope: &WebhookScope,
        patch: WebhookSettingsPatch,
    ) -> Result<WebhookSettings> {
        let key = scope.key();
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // A scope's row may not exist yet, so there is no row to lock: concurrent patches (rare) are ordered
            // by this table lock, which readers do not wait for.
            tx.execute("LOCK TABLE webhook_settings IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
            let updated = patch.apply(webhooks::read_webhook_settings(&tx, &key).await?);
            tx.execute(
                "INSERT INTO webhook_settings(scope, method, filters, pre_webhook_url, post_webhook_url, target) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(scope) DO UPDATE SET method = excluded.method, \
                 filters = excluded.filters, pre_webhook_url = excluded.pre_webhook_url, \
                 post_webhook_url = excluded.post_webhook_url, target = excluded.target",
                &[
                    &key,
                    &updated.method.as_str(),
                    &webhooks::filter_names(&updated.filters),
                    &updated.pre_webhook_url,
                    &updated.post_webhook_url,
                    &updated.target,
                ],
            )
            .await?;
            Ok(updated)
        }
        .await;
        tx.finish(r).await
    }

    async fn create_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        hook: ConversationWebhook,
    ) -> Result<ConversationWebhook> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // The conversation's row lock keeps the limit race-free.
            let (conv_id, current) = lock_conversation(&tx, service, conv).await?;
            let count: i64 = get(
                &tx.query_one("SELECT COUNT(*) FROM conversation_webhooks WHERE conversation_id = $1", &[&conv_id])
                    .await?,
                0,
            )?;
            if count as usize >= MAX_SCOPED_WEBHOOKS {
                return Err(Error::LimitExceeded(palaver_core::error::Limit::ScopedWebhooks(MAX_SCOPED_WEBHOOKS)));
            }
            tx.execute(
                "INSERT INTO conversation_webhooks(sid, conversation_id, conversation_sid, service_sid, target, url, \
                 method, filters, triggers, flow_sid, replay_after, date_created, date_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &hook.sid.as_str(),
                    &conv_id,
                    &current.sid.as_str(),
                    &service.as_str(),
                    &hook.target.as_str(),
                    &hook.url,
                    &hook.method.as_str(),
                    &webhooks::filter_names(&hook.filters),
                    &serde_json::to_string(&hook.triggers).unwrap_or_default(),
                    &hook.flow_sid,
                    &hook.replay_after,
                    &ms(hook.date_created),
                    &ms(hook.date_updated),
                ],
            )
            .await?;
            webhooks::find_conversation_webhook(&tx, conv_id, &hook.sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn get_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<ConversationWebhook> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, _) = find_conversation(&tx, service, conv).await?;
            webhooks::find_conversation_webhook(&tx, conv_id, sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn list_conversation_webhooks(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        page: PageQuery,
    ) -> Result<Page<ConversationWebhook>> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, _) = find_conversation(&tx, service, conv).await?;
            keyset_page(
                &tx,
                &format!("SELECT {} FROM conversation_webhooks WHERE conversation_id = $1", webhooks::WEBHOOK_COLUMNS),
                "id",
                vec![Box::new(conv_id)],
                page,
                webhooks::conversation_webhook_row,
                |(id, _)| *id,
            )
            .await
            .map(without_ids)
        }
        .await;
        tx.finish(r).await
    }

    async fn update_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
        patch: ConversationWebhookPatch,
    ) -> Result<ConversationWebhook> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // Under the conversation's row lock, so that concurrent patches apply one after the other.
            let (conv_id, _) = lock_conversation(&tx, service, conv).await?;
            let mut hook = webhooks::find_conversation_webhook(&tx, conv_id, sid).await?;
            if let Some(url) = patch.url {
                hook.url = Some(url);
            }
            if let Some(method) = patch.method {
                hook.method = method;
            }
            if let Some(filters) = patch.filters {
                hook.filters = filters;
            }
            if let Some(triggers) = patch.triggers {
                hook.triggers = triggers;
            }
            if let Some(flow) = patch.flow_sid {
                hook.flow_sid = Some(flow);
            }
            if let Some(now) = patch.now {
                hook.date_updated = now;
            }
            tx.execute(
                "UPDATE conversation_webhooks SET url = $1, method = $2, filters = $3, triggers = $4, flow_sid = $5, \
                 date_updated = $6 WHERE conversation_id = $7 AND sid = $8",
                &[
                    &hook.url,
                    &hook.method.as_str(),
                    &webhooks::filter_names(&hook.filters),
                    &serde_json::to_string(&hook.triggers).unwrap_or_default(),
                    &hook.flow_sid,
                    &ms(hook.date_updated),
                    &conv_id,
                    &sid.as_str(),
                ],
            )
            .await?;
            Ok(hook)
        }
        .await;
        tx.finish(r).await
    }

    async fn delete_conversation_webhook(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        sid: &WebhookSid,
    ) -> Result<()> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            let (conv_id, _) = lock_conversation(&tx, service, conv).await?;
            let deleted = tx
                .execute(
                    "DELETE FROM conversation_webhooks WHERE conversation_id = $1 AND sid = $2",
                    &[&conv_id, &sid.as_str()],
                )
                .await?;
            if deleted == 0 {
                return Err(Error::not_found(ResourceKind::Webhook, sid));
            }
            Ok(())
        }
        .await;
        tx.finish(r).await
    }

    async fn webhook_config(&self) -> Result<WebhookConfig> {
        let tx = self.read().await?;
        let r = async {
            let scopes = tx.query("SELECT scope FROM webhook_settings", &[]).await?;
            let mut settings = Vec::new();
            for row in scopes {
                let key: String = get(&row, 0)?;
                let scope = if key == "account" {
                    WebhookScope::Account
                } else {
                    WebhookScope::Service(key.parse().map_err(sid_error)?)
                };
                settings.push((scope, webhooks::read_webhook_settings(&tx, &key).await?));
            }
            let scoped = tx
                .query(&format!("SELECT {} FROM conversation_webhooks ORDER BY id", webhooks::WEBHOOK_COLUMNS), &[])
                .await?
                .iter()
                .map(|r| webhooks::conversation_webhook_row(r).map(|(_, hook)| hook))
                .collect::<Result<Vec<_>>>()?;
            Ok(WebhookConfig { settings, scoped })
        }
        .await;
        tx.finish(r).await
    }

    async fn webhook_cursor(&self) -> Result<i64> {
        let tx = self.read().await?;
        let r = async { get(&tx.query_one("SELECT log_id FROM webhook_cursor WHERE id = 1", &[]).await?, 0) }.await;
        tx.finish(r).await
    }

    async fn enqueue_webhooks(
        &self,
        deliveries: Vec<NewDelivery>,
        from: i64,
        to: i64,
        now: OffsetDateTime,
    ) -> Result<i64> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            // The cursor row's lock orders planners of every node: the one that waited reads the cursor its
            // predecessor committed (a READ COMMITTED `FOR UPDATE` returns the newest version), and sees
            // that its range is planned already.
            let stored: i64 =
                get(&tx.query_one("SELECT log_id FROM webhook_cursor WHERE id = 1 FOR UPDATE", &[]).await?, 0)?;
            if stored > from {
                return Ok(stored);
            }
            for delivery in &deliveries {
                tx.execute(
                    "INSERT INTO webhook_outbox(event_id, url, method, params, next_attempt, date_created) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                    &[
                        &delivery.event_id,
                        &delivery.url,
                        &delivery.method.as_str(),
                        &serde_json::to_string(&delivery.params).unwrap_or_default(),
                        &ms(now),
                    ],
                )
                .await?;
            }
            let moved = stored.max(to);
            tx.execute("UPDATE webhook_cursor SET log_id = $1 WHERE id = 1", &[&moved]).await?;
            Ok(moved)
        }
        .await;
        tx.finish(r).await
    }

    async fn due_webhooks(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>> {
        // One statement claims: it locks the due entries, skipping those a concurrent claim holds, and moves
        // them to the lease's end. An entry whose claim committed after this statement's snapshot is locked,
        // re-checked in its newest version (READ COMMITTED does so for locked rows) and left out, since it is
        // no longer due. The CTE is materialised so that the locking scan runs once; the outer query restores
        // the oldest-first order that `RETURNING` does not keep.
        let tx = self.write(&Origin::system(), "").await?;
        let r = async {
            tx.query(
                "WITH due AS MATERIALIZED ( \
                     SELECT id, next_attempt FROM webhook_outbox WHERE NOT dead AND next_attempt <= $1 \
                     ORDER BY next_attempt, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 claimed AS ( \
                     UPDATE webhook_outbox o SET next_attempt = $3 FROM due WHERE o.id = due.id \
                     RETURNING o.id, o.event_id, o.url, o.method, o.params, o.attempts, due.next_attempt AS was_due) \
                 SELECT id, event_id, url, method, params, attempts FROM claimed ORDER BY was_due, id",
                &[&ms(now), &i64::from(limit), &lease_end(now, lease)],
            )
            .await?
            .iter()
            .map(webhooks::delivery)
            .collect()
        }
        .await;
        tx.finish(r).await
    }

    async fn next_webhook_due(&self) -> Result<Option<OffsetDateTime>> {
        let tx = self.read().await?;
        let r = async {
            let next: Option<i64> =
                get(&tx.query_one("SELECT MIN(next_attempt) FROM webhook_outbox WHERE NOT dead", &[]).await?, 0)?;
            Ok(next.map(palaver_core::clock::from_unix_millis))
        }
        .await;
        tx.finish(r).await
    }

    async fn record_webhook_attempt(&self, attempt: WebhookAttempt, retention: AttemptRetention) -> Result<()> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = deliveries::record_attempt(&tx, &attempt, retention).await;
        tx.finish(r).await
    }

    async fn list_webhook_attempts(&self, filter: AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>> {
        let tx = self.read().await?;
        let r = deliveries::list_attempts(&tx, &filter, page).await;
        tx.finish(r).await
    }

    async fn list_webhook_outbox(&self, filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>> {
        let tx = self.read().await?;
        let r = deliveries::list_outbox(&tx, filter, page).await;
        tx.finish(r).await
    }

    async fn due_channel_jobs(
        &self,
        channels: &[BindingKind],
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ChannelJob>> {
        // A write transaction: the scan locks the receipts it claims (a concurrent claim skips them) until
        // their lease is committed.
        let tx = self.write(&Origin::system(), "").await?;
        let r = channels::claim_due_jobs(&tx, channels, now, lease_end(now, lease), limit).await;
        tx.finish(r).await
    }

    async fn next_channel_job_due(&self, channels: &[BindingKind]) -> Result<Option<OffsetDateTime>> {
        let tx = self.read().await?;
        let r = channels::next_due(&tx, channels).await;
        tx.finish(r).await
    }

    async fn outbox_depths(&self) -> Result<OutboxDepths> {
        let tx = self.read().await?;
        let r = async {
            let webhooks = tx
                .query_one(
                    "SELECT count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead) FROM webhook_outbox",
                    &[],
                )
                .await?;
            let (pending, dead): (i64, i64) = (get(&webhooks, 0)?, get(&webhooks, 1)?);
            let mut counts = Vec::new();
            for row in tx
                .query(
                    "SELECT channel, count(*) FROM delivery_receipts WHERE next_attempt IS NOT NULL GROUP BY channel",
                    &[],
                )
                .await?
            {
                let (channel, n): (String, i64) = (get(&row, 0)?, get(&row, 1)?);
                counts.push((channel, n.max(0).cast_unsigned()));
            }
            Ok(OutboxDepths {
                webhooks_pending: pending.max(0).cast_unsigned(),
                webhooks_dead: dead.max(0).cast_unsigned(),
                channels_pending: OutboxDepths::channel_counts(counts),
            })
        }
        .await;
        tx.finish(r).await
    }

    async fn update_delivery(&self, receipt: &ReceiptRef, update: DeliveryUpdate) -> Result<Option<DeliveryReceipt>> {
        let mut tx = self.write(&Origin::system(), "").await?;
        let r = async {
            let Some((conv_id, service)) = channels::receipt_owner(&tx, receipt).await? else { return Ok(None) };
            tx.service = service;
            // The conversation's row first, as every write to it; the receipt is read (and locked) after.
            tx.query_opt("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", &[&conv_id]).await?;
            channels::update_delivery(&mut tx, receipt, update).await
        }
        .await;
        tx.finish(r).await
    }

    async fn list_channel_deliveries(&self, filter: ReceiptFilter, page: PageQuery) -> Result<Page<ChannelDelivery>> {
        let tx = self.read().await?;
        let r = channels::list_deliveries(&tx, &filter, page).await;
        tx.finish(r).await
    }

    async fn list_receipts(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        page: PageQuery,
    ) -> Result<Page<DeliveryReceipt>> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, current) = find_conversation(&tx, service, conv).await?;
            find_message(&tx, conv_id, &current, message).await?;
            channels::list_receipts(&tx, conv_id, message, page).await
        }
        .await;
        tx.finish(r).await
    }

    async fn get_receipt(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        sid: &DeliveryReceiptSid,
    ) -> Result<DeliveryReceipt> {
        let tx = self.read().await?;
        let r = async {
            let (conv_id, current) = find_conversation(&tx, service, conv).await?;
            find_message(&tx, conv_id, &current, message).await?;
            channels::get_receipt(&tx, conv_id, message, sid).await
        }
        .await;
        tx.finish(r).await
    }

    async fn find_conversation_by_binding(
        &self,
        channel: BindingKind,
        address: &str,
        our_address: &str,
    ) -> Result<Option<(ServiceSid, ConversationSid)>> {
        let tx = self.read().await?;
        let r = channels::find_conversation_by_binding(&tx, channel, address, our_address).await;
        let found = tx.finish(r).await?;
        found
            .map(|(service, conv)| Ok((service.parse().map_err(sid_error)?, conv.parse().map_err(sid_error)?)))
            .transpose()
    }

    async fn create_media(&self, new: palaver_core::media::Media) -> Result<palaver_core::media::Media> {
        let tx = self.write(&Origin::system(), new.service_sid.as_str()).await?;
        let r = media::create(&tx, &new).await;
        tx.finish(r).await
    }

    async fn find_media(&self, sid: &palaver_api::sid::MediaSid) -> Result<palaver_core::media::Media> {
        let tx = self.read().await?;
        let r = media::find(&tx, sid).await;
        tx.finish(r).await
    }

    async fn get_media(
        &self,
        service: &ServiceSid,
        sid: &palaver_api::sid::MediaSid,
    ) -> Result<palaver_core::media::Media> {
        let tx = self.read().await?;
        let r = media::get_by_service(&tx, service, sid).await;
        tx.finish(r).await
    }

    async fn create_address_configuration(&self, config: AddressConfiguration) -> Result<AddressConfiguration> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = channels::create_address(&tx, &config).await;
        tx.finish(r).await
    }

    async fn get_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<AddressConfiguration> {
        let tx = self.read().await?;
        let r = channels::get_address(&tx, sid).await;
        tx.finish(r).await
    }

    async fn find_address_configuration(&self, address: &str) -> Result<Option<AddressConfiguration>> {
        let tx = self.read().await?;
        let r = channels::find_address(&tx, address).await;
        tx.finish(r).await
    }

    async fn list_address_configurations(
        &self,
        kind: Option<String>,
        page: PageQuery,
    ) -> Result<Page<AddressConfiguration>> {
        let tx = self.read().await?;
        let r = channels::list_addresses(&tx, kind, page).await;
        tx.finish(r).await
    }

    async fn update_address_configuration(
        &self,
        sid: &AddressConfigurationSid,
        patch: AddressConfigurationPatch,
    ) -> Result<AddressConfiguration> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = channels::update_address(&tx, sid, patch).await;
        tx.finish(r).await
    }

    async fn delete_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<()> {
        let tx = self.write(&Origin::system(), "").await?;
        let r = channels::delete_address(&tx, sid).await;
        tx.finish(r).await
    }
}

/// A unique-name race lost to a concurrent writer, reported as SQLite's check reports it.
fn unique_name_conflict(err: Error, name: Option<&str>) -> Error {
    match (&err, name) {
        (Error::Storage(message), Some(name))
            if message.starts_with("23505") && message.contains("conversations_unique_name") =>
        {
            Error::Conflict(Conflict::UniqueNameTaken(name.to_string()))
        }
        _ => err,
    }
}
