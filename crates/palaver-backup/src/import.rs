//! `palaver import FILE`: reads an export into an empty store through the [`Store`] port, so it writes SQLite
//! and PostgreSQL alike. Every SID, date, index and attribute text is put back as it was; how each resource
//! gets there, and what cannot, is in the crate documentation.
//!
//! The port's operations are the ones the API uses, so the order matters: a conversation is created open and
//! without timers, its participants join in the order and at the times they joined, interleaved with its
//! messages by date (so that a message's author is a participant exactly when it was one, and receipts are
//! made for the recipients it had), horizons are set once the messages are in, and
//! [`Store::restore_conversation_lifecycle`] sets the state, timers and last change last. Every write is made
//! with an API origin without webhooks, so the target's webhooks do not fire for imported history.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use palaver_api::sid::{
    ConversationSid, MediaSid, MessageSid, MessagingServiceSid, RoleSid, ServiceSid, UserSid, WebhookSid,
};
use palaver_core::channel::{DeliveryStatus, DeliveryUpdate, ReceiptRef};
use palaver_core::event::Origin;
use palaver_core::input::{Attributes, Identity, NotificationLevel, TimerDuration};
use palaver_core::media::{Media, MediaCategory};
use palaver_core::model::{
    BindingKind, Conversation, ConversationState, EmailBinding, MessagingBinding, RoleKind, Timers,
};
use palaver_core::store::{
    AccountConfigPatch, ConversationFilter, ConversationLifecycle, ConversationRef, NewConversation, NewMessage,
    NewParticipant, NewRole, NewService, NewUser, PageQuery, ParticipantPatch, ParticipantRef, ServiceConfigPatch,
    Store, UserPatch, UserRef,
};
use palaver_core::webhook::{
    ConversationWebhook, HookMethod, ScopedTarget, WebhookEventType, WebhookScope, WebhookSettingsPatch,
};
use time::OffsetDateTime;

use crate::progress::Progress;
use crate::records::*;

/// The author of the placeholder messages that keep a deleted message's index unused.
const PLACEHOLDER_AUTHOR: &str = "palaver-import";

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("reading the export: {0}")]
    Read(#[from] std::io::Error),
    /// The file is not an export this version reads, or is not whole. Nothing was imported.
    #[error("{0}")]
    NotAnExport(String),
    /// The target already holds data. Nothing was imported.
    #[error(
        "the target already holds data ({services} services, {conversations} conversations and {users} users in \
         the default service): import only into a new data directory or database, which holds just what a first \
         start creates"
    )]
    TargetNotEmpty {
        /// Services (a new target has one).
        services: usize,
        /// Conversations of its default service.
        conversations: usize,
        /// Users of its default service.
        users: usize,
    },
    /// A line of the file is malformed or out of place; what came before it was imported.
    #[error("line {line}: {problem}")]
    Line {
        /// The line's number, from 1.
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The target refused a write; what came before it was imported.
    #[error("line {line}: {source}")]
    Store {
        /// The line being imported.
        line: u64,
        /// The store's error.
        source: palaver_core::Error,
    },
}

/// Checks that the file at `path` is a whole export of a version this crate reads (its first line is a header,
/// its last line the `end` line) without reading all of it; returns the header.
///
/// # Errors
/// [`ImportError::NotAnExport`] or [`ImportError::Read`].
pub fn check_file(path: &Path) -> Result<Header, ImportError> {
    let mut file = std::fs::File::open(path)?;
    let mut first = String::new();
    std::io::BufReader::new(&mut file).read_line(&mut first)?;
    let header = match serde_json::from_str::<Record>(&first) {
        Ok(Record::Header(header)) if header.format == FORMAT => header,
        _ => return Err(ImportError::NotAnExport(format!("{} is not a Palaver export", path.display()))),
    };
    if header.version != VERSION {
        return Err(ImportError::NotAnExport(format!(
            "{} is an export of format version {}; this Palaver reads version {VERSION}",
            path.display(),
            header.version
        )));
    }
    // The `end` line is short: the file's last kilobyte holds it whole.
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(1024)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    // The kilobyte may begin inside a character of an earlier line: only the last line is decoded.
    let tail = tail.trim_ascii_end();
    let last = &tail[tail.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1)..];
    match serde_json::from_slice::<Record>(last) {
        Ok(Record::End(_)) => Ok(header),
        _ => Err(truncated(path)),
    }
}

fn truncated(path: &Path) -> ImportError {
    ImportError::NotAnExport(format!(
        "{} does not end with the export's last line: it is truncated (was the export interrupted?)",
        path.display()
    ))
}

/// Refuses a store that holds more than a first start creates (its default service with the default roles).
///
/// # Errors
/// [`ImportError::TargetNotEmpty`], or [`ImportError::Store`] when the store cannot be read.
pub async fn ensure_empty(store: &dyn Store) -> Result<(), ImportError> {
    let failed = |source| ImportError::Store { line: 0, source };
    let first = PageQuery { size: 2, cursor: None, descending: false };
    let services = store.list_services(first).await.map_err(failed)?.items.len();
    let default = store.account_config().await.map_err(failed)?.default_service_sid;
    let conversations =
        store.list_conversations(&default, ConversationFilter::default(), first).await.map_err(failed)?.items.len();
    let users = store.list_users(&default, first).await.map_err(failed)?.items.len();
    if services > 1 || conversations > 0 || users > 0 {
        return Err(ImportError::TargetNotEmpty { services, conversations, users });
    }
    Ok(())
}

/// Imports the export read from `input` (checked with [`check_file`] first) into `store`, which must hold no
/// data ([`ensure_empty`]); reports bytes read to `progress`, out of `total_bytes`.
///
/// # Errors
/// See [`ImportError`]. The import is not one transaction: a failure part-way leaves what was imported before
/// it, so import into a new data directory or database and discard it on failure.
pub async fn import(
    store: &dyn Store,
    input: &mut dyn BufRead,
    total_bytes: u64,
    progress: &mut dyn Progress,
) -> Result<Counts, ImportError> {
    ensure_empty(store).await?;
    progress.start(total_bytes, "bytes");
    let mut importer = Importer::new(store).await?;
    let result = importer.run(input, progress).await;
    progress.finish();
    result
}

/// The import's state between lines.
struct Importer<'s> {
    store: &'s dyn Store,
    origin: Origin,
    /// The line being imported.
    line: u64,
    counts: Counts,
    /// The default service the target started with, deleted once the file's default service is in.
    initial_default: ServiceSid,
    account: Option<AccountRecord>,
    service: Option<ServiceInProgress>,
    conversation: Option<ConversationInProgress>,
    ended: Option<Counts>,
}

/// The service whose users and conversations are being imported.
struct ServiceInProgress {
    sid: ServiceSid,
    /// Identities of the service's users in the file.
    users: HashSet<String>,
    /// Users made by the store for chat participants whose identity has no user in the file (their user was
    /// deleted in the source); deleted again when the service is done.
    implicit_users: HashMap<String, UserSid>,
}

/// The conversation whose messages are being imported.
struct ConversationInProgress {
    record: ConversationRecord,
    sid: ConversationSid,
    /// Participants that have not joined yet, in joining order.
    waiting: VecDeque<ParticipantRecord>,
    /// The index the next added message gets.
    next_index: i64,
}

impl<'s> Importer<'s> {
    async fn new(store: &'s dyn Store) -> Result<Self, ImportError> {
        let initial_default =
            store.account_config().await.map_err(|source| ImportError::Store { line: 0, source })?.default_service_sid;
        Ok(Self {
            store,
            origin: Origin::api(false),
            line: 0,
            counts: Counts::default(),
            initial_default,
            account: None,
            service: None,
            conversation: None,
            ended: None,
        })
    }

    async fn run(&mut self, input: &mut dyn BufRead, progress: &mut dyn Progress) -> Result<Counts, ImportError> {
        let mut text = String::new();
        let mut read = 0u64;
        loop {
            text.clear();
            let n = input.read_line(&mut text)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(&text).map_err(|e| self.bad(format!("not a record: {e}")))?;
            if self.ended.is_some() {
                return Err(self.bad("a line after the end line"));
            }
            self.apply(record).await?;
            if self.line.is_multiple_of(64) {
                progress.advance(read, &format!("{} messages", self.counts.messages));
            }
        }
        progress.advance(read, &format!("{} messages", self.counts.messages));
        let Some(expected) = self.ended else {
            return Err(self.bad("the file ends before its end line: it is truncated"));
        };
        if expected != self.counts {
            return Err(self.bad(format!("the end line counts {expected:?}, but the file held {:?}", self.counts)));
        }
        Ok(self.counts)
    }

    async fn apply(&mut self, record: Record) -> Result<(), ImportError> {
        match record {
            Record::Header(header) if self.line == 1 => {
                if header.format != FORMAT || header.version != VERSION {
                    return Err(self.bad("not an export of this version"));
                }
            }
            _ if self.line == 1 => return Err(self.bad("the first line is not the export's header")),
            Record::Header(_) => return Err(self.bad("a second header")),
            Record::Account(account) => self.account(account).await?,
            Record::Service(service) => {
                self.finish_service().await?;
                self.service(service).await?;
            }
            Record::User(user) => {
                if self.conversation.is_some() {
                    return Err(self.bad("a user after its service's conversations"));
                }
                self.user(user).await?;
            }
            Record::Conversation(conversation) => {
                self.finish_conversation().await?;
                self.conversation(conversation).await?;
            }
            Record::Message(message) => self.message(message).await?,
            Record::End(counts) => {
                self.finish_service().await?;
                let account = self.account.as_ref().ok_or_else(|| self.bad("the file has no account line"))?;
                if self.initial_default.as_str() != account.default_service_sid {
                    return Err(self.bad(format!(
                        "the default service {} is not among the file's services",
                        account.default_service_sid
                    )));
                }
                self.ended = Some(counts);
            }
        }
        Ok(())
    }

    async fn account(&mut self, account: AccountRecord) -> Result<(), ImportError> {
        let patch = settings_patch(&account.webhooks).map_err(|p| self.bad(p))?;
        self.store.update_webhook_settings(&WebhookScope::Account, patch).await.map_err(|e| self.failed(e))?;
        self.account = Some(account);
        Ok(())
    }

    async fn service(&mut self, record: ServiceRecord) -> Result<(), ImportError> {
        let sid: ServiceSid = self.sid(&record.sid)?;
        let exists = self.store.get_service(&sid).await.is_ok();
        if !exists {
            let new = NewService {
                sid: sid.clone(),
                friendly_name: record.friendly_name.clone(),
                now: at(record.date_created),
            };
            self.store.create_service(new).await.map_err(|e| self.failed(e))?;
        }
        // The roles a new service starts with make way for the file's, which keep their SIDs.
        let initial_roles: Vec<RoleSid> = self
            .store
            .list_roles(&sid, PageQuery { size: 100, cursor: None, descending: false })
            .await
            .map_err(|e| self.failed(e))?
            .items
            .into_iter()
            .map(|r| r.sid)
            .collect();
        for role in &record.roles {
            let role_sid: RoleSid = self.sid(&role.sid)?;
            if initial_roles.contains(&role_sid) {
                continue;
            }
            let kind =
                RoleKind::parse(&role.kind).ok_or_else(|| self.bad(format!("unknown role kind {}", role.kind)))?;
            let new = NewRole {
                sid: role_sid.clone(),
                friendly_name: role.friendly_name.clone(),
                kind,
                permissions: role.permissions.clone(),
                now: at(role.date_created),
            };
            self.store.create_role(&sid, new).await.map_err(|e| self.failed(e))?;
            if role.date_updated != role.date_created {
                let now = at(role.date_updated);
                self.store
                    .update_role(&sid, &role_sid, role.permissions.clone(), now)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
        }
        let patch = ServiceConfigPatch {
            creator_role_sid: Some(self.sid(&record.creator_role_sid)?),
            participant_role_sid: Some(self.sid(&record.participant_role_sid)?),
            user_role_sid: Some(self.sid(&record.user_role_sid)?),
            reachability_enabled: Some(record.reachability_enabled),
            now: Some(at(record.date_updated)),
        };
        self.store.update_service_config(&sid, patch).await.map_err(|e| self.failed(e))?;
        let kept: Vec<&str> = record.roles.iter().map(|r| r.sid.as_str()).collect();
        for role in initial_roles.iter().filter(|r| !kept.contains(&r.as_str())) {
            self.store.delete_role(&sid, role).await.map_err(|e| self.failed(e))?;
        }
        let patch = settings_patch(&record.webhooks).map_err(|p| self.bad(p))?;
        self.store
            .update_webhook_settings(&WebhookScope::Service(sid.clone()), patch)
            .await
            .map_err(|e| self.failed(e))?;
        let default = self.account.as_ref().map(|a| a.default_service_sid.clone());
        if default.as_deref() == Some(record.sid.as_str()) {
            self.make_default(&sid).await?;
        }
        self.counts.services += 1;
        self.service = Some(ServiceInProgress { sid, users: HashSet::new(), implicit_users: HashMap::new() });
        Ok(())
    }

    /// Makes `sid` the default service as the file's account line says, and removes the one the target
    /// started with.
    async fn make_default(&mut self, sid: &ServiceSid) -> Result<(), ImportError> {
        let Some(account) = self.account.clone() else { return Ok(()) };
        let patch = AccountConfigPatch {
            default_service_sid: Some(sid.clone()),
            default_messaging_service_sid: Some(
                account
                    .default_messaging_service_sid
                    .as_deref()
                    .map(|s| self.sid::<MessagingServiceSid>(s))
                    .transpose()?,
            ),
            default_inactive_timer: Some(account.default_inactive_timer.map(TimerDuration::from_secs)),
            default_closed_timer: Some(account.default_closed_timer.map(TimerDuration::from_secs)),
        };
        self.store.update_account_config(patch).await.map_err(|e| self.failed(e))?;
        if &self.initial_default != sid {
            // The fresh server's own default service is empty: its deletion tells no one anything.
            let (now, origin) = (OffsetDateTime::now_utc(), Origin::api(false));
            self.store.delete_service(&self.initial_default, now, &origin).await.map_err(|e| self.failed(e))?;
            self.initial_default = sid.clone();
        }
        Ok(())
    }

    async fn user(&mut self, record: UserRecord) -> Result<(), ImportError> {
        let service = self.current_service()?.sid.clone();
        let sid: UserSid = self.sid(&record.sid)?;
        let new = NewUser {
            sid: sid.clone(),
            identity: self.identity(&record.identity)?,
            friendly_name: record.friendly_name.clone(),
            attributes: self.attributes(&record.attributes)?,
            role_sid: record.role_sid.as_deref().map(|r| self.sid(r)).transpose()?,
            now: at(record.date_created),
        };
        self.store.create_user(&service, new, &self.origin).await.map_err(|e| self.failed(e))?;
        if record.date_updated != record.date_created {
            let patch = UserPatch { now: Some(at(record.date_updated)), ..Default::default() };
            self.store
                .update_user(&service, &UserRef::Sid(sid), patch, &self.origin)
                .await
                .map_err(|e| self.failed(e))?;
        }
        self.current_service_mut()?.users.insert(record.identity);
        self.counts.users += 1;
        Ok(())
    }

    async fn conversation(&mut self, record: ConversationRecord) -> Result<(), ImportError> {
        let service = self.current_service()?.sid.clone();
        let sid: ConversationSid = self.sid(&record.sid)?;
        // Open and without timers while its participants and messages go in (which a closed conversation would
        // refuse and timers would re-arm); the lifecycle is set as it was at the end.
        let conversation = Conversation {
            sid: sid.clone(),
            service_sid: service.clone(),
            friendly_name: record.friendly_name.clone(),
            unique_name: record.unique_name.clone(),
            attributes: self.attributes(&record.attributes)?,
            messaging_service_sid: record.messaging_service_sid.as_deref().map(|s| self.sid(s)).transpose()?,
            state: ConversationState::Active,
            state_updated: at(record.date_created),
            timers: Timers::default(),
            created_by: record.created_by.clone(),
            email_binding: EmailBinding { address: record.email_address.clone(), name: record.email_name.clone() },
            date_created: at(record.date_created),
            date_updated: at(record.date_created),
            last_message_index: None,
            last_message_date: None,
            messages_count: 0,
            next_message_index: 0,
            participants_count: 0,
        };
        self.store
            .create_conversation(NewConversation { conversation }, Vec::new(), &self.origin)
            .await
            .map_err(|e| self.failed(e))?;
        let by_sid = ConversationRef::Sid(sid.clone());
        for hook in &record.webhooks {
            let hook = ConversationWebhook {
                sid: self.sid::<WebhookSid>(&hook.sid)?,
                conversation_sid: sid.clone(),
                service_sid: service.clone(),
                target: ScopedTarget::parse(&hook.target)
                    .ok_or_else(|| self.bad(format!("unknown webhook target {}", hook.target)))?,
                url: hook.url.clone(),
                method: HookMethod::parse("method", &hook.method).map_err(|e| self.bad(e.to_string()))?,
                filters: event_types(&hook.filters).map_err(|p| self.bad(p))?,
                triggers: hook.triggers.clone(),
                flow_sid: hook.flow_sid.clone(),
                replay_after: hook.replay_after,
                date_created: at(hook.date_created),
                date_updated: at(hook.date_updated),
            };
            self.store.create_conversation_webhook(&service, &by_sid, hook).await.map_err(|e| self.failed(e))?;
        }
        self.counts.conversations += 1;
        let waiting = record.participants.iter().cloned().collect();
        self.conversation = Some(ConversationInProgress { record, sid, waiting, next_index: 0 });
        Ok(())
    }

    async fn message(&mut self, record: MessageRecord) -> Result<(), ImportError> {
        let service = self.current_service()?.sid.clone();
        let conversation = self.conversation.as_ref().ok_or_else(|| self.bad("a message before any conversation"))?;
        let by_sid = ConversationRef::Sid(conversation.sid.clone());
        if record.index < conversation.next_index {
            return Err(self.bad(format!(
                "message index {} is not above the previous message's ({})",
                record.index,
                conversation.next_index - 1
            )));
        }
        self.join_until(Some(record.date_created)).await?;
        self.skip_to(record.index, at(record.date_created)).await?;
        let mut media = Vec::with_capacity(record.media.len());
        for item in &record.media {
            let sid: MediaSid = self.sid(&item.sid)?;
            let upload = Media {
                sid: sid.clone(),
                service_sid: service.clone(),
                content_type: item.content_type.clone(),
                filename: item.filename.clone(),
                size: item.size,
                sha256: item.sha256.clone(),
                author: item.author.clone(),
                category: MediaCategory::parse(&item.category).map_err(|e| self.bad(e.to_string()))?,
                message_sid: None,
                conversation_sid: None,
                date_created: at(item.date_created),
            };
            self.store.create_media(upload).await.map_err(|e| self.failed(e))?;
            media.push(sid);
        }
        let sid: MessageSid = self.sid(&record.sid)?;
        let new = NewMessage {
            sid: sid.clone(),
            author: record.author.clone(),
            body: record.body.clone(),
            subject: record.subject.clone(),
            attributes: self.attributes(&record.attributes)?,
            content_sid: record.content_sid.clone(),
            date_created: at(record.date_created),
            idempotency_key: None,
            media,
            max_media_bytes: u64::MAX,
            date_updated: record.date_updated.map(at),
            // The time of the request that added it, which the receipts it made were dated with (`date_created`
            // may have been given in the past); it re-arms no timer here, the conversation has none yet.
            now: at(record.receipts.first().map_or(record.date_created, |r| r.date_created)),
        };
        let added = self.store.add_message(&service, &by_sid, new, &self.origin).await.map_err(|e| self.failed(e))?;
        if added.index != record.index {
            return Err(
                self.bad(format!("message {} got index {} instead of {}", record.sid, added.index, record.index))
            );
        }
        if added.delivery.is_some() {
            self.settle_receipts(&service, &by_sid, &sid, &record.receipts).await?;
        }
        if let Some(conversation) = self.conversation.as_mut() {
            conversation.next_index = record.index + 1;
        }
        self.counts.messages += 1;
        self.counts.media += record.media.len() as u64;
        Ok(())
    }

    /// Gives the receipts the store made for a message the statuses the file has for them, so that the target
    /// sends nothing again. A receipt the file lacks (its recipient had none in the source) is marked failed:
    /// sending it now would reach someone the source never wrote to.
    async fn settle_receipts(
        &self,
        service: &ServiceSid,
        conversation: &ConversationRef,
        message: &MessageSid,
        receipts: &[ReceiptRecord],
    ) -> Result<(), ImportError> {
        let made = self
            .store
            .list_receipts(service, conversation, message, PageQuery { size: 1000, cursor: None, descending: false })
            .await
            .map_err(|e| self.failed(e))?;
        for receipt in made.items {
            let exported = receipts.iter().find(|r| r.participant_sid == receipt.participant_sid.as_str());
            let update = match exported {
                Some(r) => {
                    let status = DeliveryStatus::parse(&r.status)
                        .ok_or_else(|| self.bad(format!("unknown receipt status {}", r.status)))?;
                    if status == DeliveryStatus::Queued {
                        // Still to be sent, as in the source.
                        continue;
                    }
                    DeliveryUpdate {
                        status,
                        channel_message_sid: r.channel_message_sid.clone(),
                        error_code: r.error_code,
                        retry_at: None,
                        last_error: None,
                        now: at(r.date_updated),
                    }
                }
                None => DeliveryUpdate {
                    status: DeliveryStatus::Failed,
                    channel_message_sid: None,
                    error_code: None,
                    retry_at: None,
                    last_error: Some("not sent: the recipient had no receipt in the imported export".into()),
                    now: receipt.date_created,
                },
            };
            self.store.update_delivery(&ReceiptRef::Sid(receipt.sid), update).await.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// Lets the waiting participants that joined at or before `until` (all of them when `None`) join, in their
    /// order, stopping at the first that joined later.
    async fn join_until(&mut self, until: Option<i64>) -> Result<(), ImportError> {
        loop {
            let Some(conversation) = self.conversation.as_mut() else { return Ok(()) };
            let due = conversation.waiting.front().is_some_and(|p| until.is_none_or(|t| p.date_created <= t));
            if !due {
                return Ok(());
            }
            let Some(record) = conversation.waiting.pop_front() else { return Ok(()) };
            let conversation_sid = conversation.sid.clone();
            self.join(&conversation_sid, record).await?;
        }
    }

    async fn join(&mut self, conversation: &ConversationSid, record: ParticipantRecord) -> Result<(), ImportError> {
        let service = self.current_service()?.sid.clone();
        let identity = record.identity.as_deref().map(|i| self.identity(i)).transpose()?;
        let mut new_user_sid = UserSid::generate();
        if let Some(identity) = &record.identity {
            let state = self.current_service_mut()?;
            if !state.users.contains(identity) {
                // Its user was deleted in the source: the store makes one, removed again with the service.
                new_user_sid = state.implicit_users.entry(identity.clone()).or_insert(new_user_sid).clone();
            }
        }
        let binding = match &record.binding {
            Some(b) => Some(MessagingBinding {
                kind: BindingKind::parse(&b.kind)
                    .ok_or_else(|| self.bad(format!("unknown binding kind {}", b.kind)))?,
                address: b.address.clone(),
                proxy_address: b.proxy_address.clone(),
                projected_address: b.projected_address.clone(),
                name: b.name.clone(),
                level: b.level.clone(),
            }),
            None => None,
        };
        let new = NewParticipant {
            sid: self.sid(&record.sid)?,
            identity,
            binding,
            attributes: self.attributes(&record.attributes)?,
            role_sid: record.role_sid.as_deref().map(|r| self.sid(r)).transpose()?,
            new_user_sid,
            date_created: at(record.date_created),
            date_updated: at(record.date_updated),
        };
        let by_sid = ConversationRef::Sid(conversation.clone());
        self.store.add_participant(&service, &by_sid, new, &self.origin).await.map_err(|e| self.failed(e))?;
        self.counts.participants += 1;
        Ok(())
    }

    /// Uses up the indices below `index` that the source used for messages deleted since, with a placeholder
    /// message added and deleted at each, so that they stay unused and unread counts stay exact.
    async fn skip_to(&mut self, index: i64, at: OffsetDateTime) -> Result<(), ImportError> {
        let service = self.current_service()?.sid.clone();
        let Some(conversation) = self.conversation.as_mut() else { return Ok(()) };
        let by_sid = ConversationRef::Sid(conversation.sid.clone());
        while conversation.next_index < index {
            let placeholder = NewMessage {
                sid: MessageSid::generate(),
                author: PLACEHOLDER_AUTHOR.to_string(),
                body: None,
                subject: None,
                attributes: Attributes::empty(),
                content_sid: None,
                date_created: at,
                idempotency_key: None,
                media: Vec::new(),
                max_media_bytes: 0,
                date_updated: None,
                now: at,
            };
            let fail = |source| ImportError::Store { line: self.line, source };
            let added = self.store.add_message(&service, &by_sid, placeholder, &self.origin).await.map_err(fail)?;
            self.store.delete_message(&service, &by_sid, &added.sid, at, &self.origin).await.map_err(fail)?;
            conversation.next_index = added.index + 1;
        }
        Ok(())
    }

    /// Ends the conversation in progress: the rest of its participants join, the indices after its last message
    /// are used up, horizons are set and its lifecycle restored.
    async fn finish_conversation(&mut self) -> Result<(), ImportError> {
        if self.conversation.is_none() {
            return Ok(());
        }
        self.join_until(None).await?;
        let Some(conversation) = self.conversation.as_ref() else { return Ok(()) };
        let (next, updated) = (conversation.record.next_message_index, at(conversation.record.date_updated));
        self.skip_to(next, updated).await?;
        let Some(conversation) = self.conversation.take() else { return Ok(()) };
        let service = self.current_service()?.sid.clone();
        let by_sid = ConversationRef::Sid(conversation.sid.clone());
        let record = &conversation.record;
        for p in &record.participants {
            let level = NotificationLevel::parse(&p.notification_level).map_err(|e| self.bad(e.to_string()))?;
            if p.last_read_message_index.is_none()
                && p.last_read_timestamp.is_none()
                && level == NotificationLevel::default()
            {
                continue;
            }
            let patch = ParticipantPatch {
                last_read_message_index: Some(p.last_read_message_index),
                last_read_timestamp: Some(p.last_read_timestamp.map(at)),
                notification_level: Some(level),
                now: Some(at(p.date_updated)),
                ..Default::default()
            };
            let participant = ParticipantRef::Sid(self.sid(&p.sid)?);
            self.store
                .update_participant(&service, &by_sid, &participant, patch, &self.origin)
                .await
                .map_err(|e| self.failed(e))?;
        }
        let state = ConversationState::parse(&record.state)
            .ok_or_else(|| self.bad(format!("unknown conversation state {}", record.state)))?;
        let lifecycle = ConversationLifecycle {
            state,
            state_updated: at(record.state_updated),
            timers: Timers {
                inactive_after: record.timer_inactive.map(TimerDuration::from_secs),
                closed_after: record.timer_closed.map(TimerDuration::from_secs),
                date_inactive: record.date_inactive.map(at),
                date_closed: record.date_closed.map(at),
            },
            date_updated: at(record.date_updated),
        };
        self.store
            .restore_conversation_lifecycle(&service, &by_sid, lifecycle, &self.origin)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Ends the service in progress (and its last conversation): users the store made for participants whose
    /// user the file does not have are deleted again.
    async fn finish_service(&mut self) -> Result<(), ImportError> {
        self.finish_conversation().await?;
        let Some(service) = self.service.take() else { return Ok(()) };
        for user in service.implicit_users.values() {
            let at = OffsetDateTime::now_utc();
            match self.store.delete_user(&service.sid, &UserRef::Sid(user.clone()), at, &self.origin).await {
                Ok(()) | Err(palaver_core::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed(e)),
            }
        }
        Ok(())
    }

    fn current_service(&self) -> Result<&ServiceInProgress, ImportError> {
        self.service.as_ref().ok_or_else(|| self.bad("a line that belongs to a service before any service"))
    }

    fn current_service_mut(&mut self) -> Result<&mut ServiceInProgress, ImportError> {
        let line = self.line;
        self.service
            .as_mut()
            .ok_or(ImportError::Line { line, problem: "a line that belongs to a service before any service".into() })
    }

    fn sid<T: std::str::FromStr<Err = palaver_api::sid::SidError>>(&self, raw: &str) -> Result<T, ImportError> {
        raw.parse().map_err(|e: palaver_api::sid::SidError| self.bad(format!("{raw}: {e}")))
    }

    fn identity(&self, raw: &str) -> Result<Identity, ImportError> {
        Identity::parse("identity", raw).map_err(|e| self.bad(e.to_string()))
    }

    fn attributes(&self, raw: &str) -> Result<Attributes, ImportError> {
        Attributes::parse("attributes", raw, usize::MAX).map_err(|e| self.bad(e.to_string()))
    }

    fn bad(&self, problem: impl Into<String>) -> ImportError {
        ImportError::Line { line: self.line, problem: problem.into() }
    }

    fn failed(&self, source: palaver_core::Error) -> ImportError {
        ImportError::Store { line: self.line, source }
    }
}

/// A date kept as Unix milliseconds.
fn at(millis: i64) -> OffsetDateTime {
    palaver_core::clock::from_unix_millis(millis)
}

fn event_types(names: &[String]) -> Result<Vec<WebhookEventType>, String> {
    names.iter().map(|n| WebhookEventType::parse(n).ok_or_else(|| format!("unknown webhook event type {n}"))).collect()
}

/// A patch that sets every field of `settings`.
fn settings_patch(settings: &WebhookSettingsRecord) -> Result<WebhookSettingsPatch, String> {
    Ok(WebhookSettingsPatch {
        method: Some(HookMethod::parse("method", &settings.method).map_err(|e| e.to_string())?),
        filters: Some(event_types(&settings.filters)?),
        pre_webhook_url: Some(settings.pre_webhook_url.clone()),
        post_webhook_url: Some(settings.post_webhook_url.clone()),
        target: Some(settings.target.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, lines.join("\n").as_bytes()).unwrap();
        file
    }

    const HEADER: &str =
        r#"{"type":"header","format":"palaver-export","version":1,"palaver_version":"0.1.0","exported_at":0}"#;
    const END: &str =
        r#"{"type":"end","services":0,"users":0,"conversations":0,"participants":0,"messages":0,"media":0}"#;

    #[test]
    fn a_whole_export_passes_the_check() {
        let file = write(&[HEADER, END, ""]);
        assert_eq!(check_file(file.path()).unwrap().version, VERSION);
    }

    #[test]
    fn a_truncated_export_is_refused() {
        let file = write(&[HEADER, r#"{"type":"user","sid":"US"#]);
        let err = check_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn the_check_reads_only_the_last_line_of_the_tail() {
        // A long last message of multi-byte characters puts a character boundary anywhere in the last kilobyte.
        let message = format!(r#"{{"type":"user","sid":"US","identity":"{}"}}"#, "é".repeat(700));
        for pad in 0..3 {
            let file = write(&[HEADER, &format!("{message}{}", " ".repeat(pad)), END, ""]);
            assert_eq!(check_file(file.path()).unwrap().version, VERSION);
        }
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        let err = check_file(write(&["{\"hello\":1}", END]).path()).unwrap_err().to_string();
        assert!(err.contains("is not a Palaver export"), "{err}");
        let newer = HEADER.replace("\"version\":1", "\"version\":9");
        let err = check_file(write(&[&newer, END]).path()).unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
    }
}
