//! `palaver export`: writes everything a store holds that the file format carries (see the crate
//! documentation) as JSON lines, through the [`Store`] port only, so it reads SQLite and PostgreSQL alike.

use std::future::Future;
use std::io::Write;

use palaver_core::media::Media;
use palaver_core::model::{Conversation, Message, Participant, Role, Service, User};
use palaver_core::store::{ConversationFilter, ConversationRef, Page, PageQuery, Store};
use palaver_core::webhook::{ConversationWebhook, WebhookScope, WebhookSettings};

use crate::progress::Progress;
use crate::records::*;

/// Items per page read from the store.
const PAGE_SIZE: u32 = 500;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store failed.
    #[error("reading the store: {0}")]
    Store(#[from] palaver_core::Error),
    /// The output could not be written.
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
    /// The store holds something the format cannot say (a message's media descriptor without its SID).
    #[error("{0}")]
    Unexportable(String),
}

/// Writes every service, role, user, conversation, participant, webhook, message, media record and receipt of
/// `store` to `out`, one JSON line each; reports conversations done to `progress`.
///
/// # Errors
/// See [`ExportError`]; what was written before the failure ends without its `end` line, so an import refuses it.
pub async fn export(
    store: &dyn Store,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<Counts, ExportError> {
    let result = write_all(store, out, progress).await;
    progress.finish();
    result
}

async fn write_all(store: &dyn Store, out: &mut dyn Write, progress: &mut dyn Progress) -> Result<Counts, ExportError> {
    let mut counts = Counts::default();
    write(
        out,
        &Record::Header(Header {
            format: FORMAT.to_string(),
            version: VERSION,
            palaver_version: env!("CARGO_PKG_VERSION").to_string(),
            exported_at: ms(time::OffsetDateTime::now_utc()),
        }),
    )?;
    let account = store.account_config().await?;
    let account_hooks = store.webhook_settings(&WebhookScope::Account).await?;
    write(
        out,
        &Record::Account(AccountRecord {
            default_service_sid: account.default_service_sid.to_string(),
            default_messaging_service_sid: account.default_messaging_service_sid.map(|s| s.to_string()),
            default_inactive_timer: account.default_inactive_timer.map(|d| d.as_secs()),
            default_closed_timer: account.default_closed_timer.map(|d| d.as_secs()),
            webhooks: settings_record(&account_hooks),
        }),
    )?;
    let services = all(|page| store.list_services(page)).await?;
    // A first pass over the conversations gives the progress bar its length.
    let mut conversations = Vec::with_capacity(services.len());
    for service in &services {
        conversations
            .push(all(|page| store.list_conversations(&service.sid, ConversationFilter::default(), page)).await?);
    }
    let total: usize = conversations.iter().map(Vec::len).sum();
    progress.start(total as u64, "conversations");
    for (service, listed) in services.iter().zip(conversations) {
        let roles = all(|page| store.list_roles(&service.sid, page)).await?;
        let hooks = store.webhook_settings(&WebhookScope::Service(service.sid.clone())).await?;
        write(out, &Record::Service(service_record(service, &roles, &hooks)))?;
        counts.services += 1;
        let mut cursor = None;
        loop {
            let page = store.list_users(&service.sid, PageQuery { size: PAGE_SIZE, cursor, descending: false }).await?;
            for user in &page.items {
                write(out, &Record::User(user_record(user)))?;
                counts.users += 1;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for listed in listed {
            // Read again: its counters move while the listing pass runs on a live database.
            let by_sid = ConversationRef::Sid(listed.sid.clone());
            let conversation = match store.get_conversation(&service.sid, &by_sid).await {
                Ok(conversation) => conversation,
                // Deleted since the listing: not part of the export.
                Err(palaver_core::Error::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let participants = all(|page| store.list_participants(&service.sid, &by_sid, page)).await?;
            let hooks = all(|page| store.list_conversation_webhooks(&service.sid, &by_sid, page)).await?;
            counts.participants += participants.len() as u64;
            write(out, &Record::Conversation(conversation_record(&conversation, &participants, &hooks)))?;
            counts.conversations += 1;
            let mut cursor = None;
            loop {
                let page = store.list_messages(
                    &service.sid,
                    &by_sid,
                    PageQuery { size: PAGE_SIZE, cursor, descending: false },
                );
                let page = page.await?;
                for message in &page.items {
                    let record = message_record(store, &service.sid, &by_sid, message).await?;
                    counts.media += record.media.len() as u64;
                    write(out, &Record::Message(record))?;
                    counts.messages += 1;
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            progress.advance(counts.conversations, &format!("{} messages", counts.messages));
        }
    }
    write(out, &Record::End(counts))?;
    out.flush()?;
    Ok(counts)
}

/// Every item of a paged list, in list order.
async fn all<T, F, Fut>(mut list: F) -> Result<Vec<T>, palaver_core::Error>
where
    F: FnMut(PageQuery) -> Fut,
    Fut: Future<Output = Result<Page<T>, palaver_core::Error>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(PageQuery { size: PAGE_SIZE, cursor, descending: false }).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
}

fn write(out: &mut dyn Write, record: &Record) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Unix milliseconds, as the stores keep dates.
pub(crate) fn ms(t: time::OffsetDateTime) -> i64 {
    palaver_core::clock::unix_millis(t)
}

pub(crate) fn settings_record(settings: &WebhookSettings) -> WebhookSettingsRecord {
    WebhookSettingsRecord {
        method: settings.method.as_str().to_string(),
        filters: settings.filters.iter().map(|f| f.as_str().to_string()).collect(),
        pre_webhook_url: settings.pre_webhook_url.clone(),
        post_webhook_url: settings.post_webhook_url.clone(),
        target: settings.target.clone(),
    }
}

fn service_record(service: &Service, roles: &[Role], hooks: &WebhookSettings) -> ServiceRecord {
    ServiceRecord {
        sid: service.sid.to_string(),
        friendly_name: service.friendly_name.clone(),
        creator_role_sid: service.creator_role_sid.to_string(),
        participant_role_sid: service.participant_role_sid.to_string(),
        user_role_sid: service.user_role_sid.to_string(),
        reachability_enabled: service.reachability_enabled,
        date_created: ms(service.date_created),
        date_updated: ms(service.date_updated),
        roles: roles
            .iter()
            .map(|role| RoleRecord {
                sid: role.sid.to_string(),
                friendly_name: role.friendly_name.clone(),
                kind: role.kind.as_str().to_string(),
                permissions: role.permissions.clone(),
                date_created: ms(role.date_created),
                date_updated: ms(role.date_updated),
            })
            .collect(),
        webhooks: settings_record(hooks),
    }
}

fn user_record(user: &User) -> UserRecord {
    UserRecord {
        sid: user.sid.to_string(),
        identity: user.identity.as_str().to_string(),
        friendly_name: user.friendly_name.clone(),
        attributes: user.attributes.as_str().to_string(),
        role_sid: user.role_sid.as_ref().map(|r| r.to_string()),
        date_created: ms(user.date_created),
        date_updated: ms(user.date_updated),
    }
}

fn conversation_record(
    conversation: &Conversation,
    participants: &[Participant],
    hooks: &[ConversationWebhook],
) -> ConversationRecord {
    let c = conversation;
    ConversationRecord {
        sid: c.sid.to_string(),
        friendly_name: c.friendly_name.clone(),
        unique_name: c.unique_name.clone(),
        attributes: c.attributes.as_str().to_string(),
        messaging_service_sid: c.messaging_service_sid.as_ref().map(|s| s.to_string()),
        state: c.state.as_str().to_string(),
        state_updated: ms(c.state_updated),
        timer_inactive: c.timers.inactive_after.map(|d| d.as_secs()),
        timer_closed: c.timers.closed_after.map(|d| d.as_secs()),
        date_inactive: c.timers.date_inactive.map(ms),
        date_closed: c.timers.date_closed.map(ms),
        created_by: c.created_by.clone(),
        email_address: c.email_binding.address.clone(),
        email_name: c.email_binding.name.clone(),
        date_created: ms(c.date_created),
        date_updated: ms(c.date_updated),
        next_message_index: c.next_message_index,
        participants: participants.iter().map(participant_record).collect(),
        webhooks: hooks
            .iter()
            .map(|h| ConversationWebhookRecord {
                sid: h.sid.to_string(),
                target: h.target.as_str().to_string(),
                url: h.url.clone(),
                method: h.method.as_str().to_string(),
                filters: h.filters.iter().map(|f| f.as_str().to_string()).collect(),
                triggers: h.triggers.clone(),
                flow_sid: h.flow_sid.clone(),
                replay_after: h.replay_after,
                date_created: ms(h.date_created),
                date_updated: ms(h.date_updated),
            })
            .collect(),
    }
}

fn participant_record(p: &Participant) -> ParticipantRecord {
    ParticipantRecord {
        sid: p.sid.to_string(),
        identity: p.identity.as_ref().map(|i| i.as_str().to_string()),
        binding: p.binding.as_ref().map(|b| BindingRecord {
            kind: b.kind.as_str().to_string(),
            address: b.address.clone(),
            proxy_address: b.proxy_address.clone(),
            projected_address: b.projected_address.clone(),
            name: b.name.clone(),
            level: b.level.clone(),
        }),
        attributes: p.attributes.as_str().to_string(),
        role_sid: p.role_sid.as_ref().map(|r| r.to_string()),
        last_read_message_index: p.last_read_message_index,
        last_read_timestamp: p.last_read_timestamp.map(ms),
        notification_level: p.notification_level.as_str().to_string(),
        date_created: ms(p.date_created),
        date_updated: ms(p.date_updated),
    }
}

async fn message_record(
    store: &dyn Store,
    service: &palaver_api::sid::ServiceSid,
    conversation: &ConversationRef,
    m: &Message,
) -> Result<MessageRecord, ExportError> {
    let mut media = Vec::with_capacity(m.media.len());
    for descriptor in &m.media {
        let sid = descriptor
            .get("sid")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| palaver_api::sid::MediaSid::parse(s).ok())
            .ok_or_else(|| ExportError::Unexportable(format!("message {} has a media item without a SID", m.sid)))?;
        media.push(media_record(&store.get_media(service, &sid).await?));
    }
    let receipts = if m.delivery.is_some() {
        all(|page| store.list_receipts(service, conversation, &m.sid, page))
            .await?
            .into_iter()
            .map(|r| ReceiptRecord {
                sid: r.sid.to_string(),
                participant_sid: r.participant_sid.to_string(),
                status: r.status.as_str().to_string(),
                channel_message_sid: r.channel_message_sid,
                error_code: r.error_code,
                date_created: ms(r.date_created),
                date_updated: ms(r.date_updated),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(MessageRecord {
        sid: m.sid.to_string(),
        index: m.index,
        author: m.author.clone(),
        body: m.body.clone(),
        subject: m.subject.clone(),
        attributes: m.attributes.as_str().to_string(),
        participant_sid: m.participant_sid.as_ref().map(|p| p.to_string()),
        content_sid: m.content_sid.clone(),
        date_created: ms(m.date_created),
        date_updated: m.date_updated.map(ms),
        media,
        receipts,
    })
}

fn media_record(media: &Media) -> MediaRecord {
    MediaRecord {
        sid: media.sid.to_string(),
        content_type: media.content_type.clone(),
        filename: media.filename.clone(),
        size: media.size,
        sha256: media.sha256.clone(),
        author: media.author.clone(),
        category: media.category.as_str().to_string(),
        date_created: ms(media.date_created),
    }
}
