//! [`MeteredStore`]: the `Store` port wrapped once, so that every operation of either backend is timed in one
//! place (`palaver_db_operation_duration_seconds{operation, kind}`) rather than inside both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palaver_api::sid::{
    AddressConfigurationSid, ApiKeySid, ConversationSid, DeliveryReceiptSid, MessageSid, RoleSid, ServiceSid,
    WebhookSid,
};
use palaver_api::sid::{CredentialSid, PushBindingSid};
use palaver_core::channel::*;
use palaver_core::error::Result;
use palaver_core::event::{Event, Origin};
use palaver_core::model::*;
use palaver_core::push::{
    BindingFilter, Credential, CredentialPatch, NewPush, NewPushBinding, NotificationSettings,
    NotificationSettingsPatch, PushBinding, PushJob,
};
use palaver_core::store::*;
use palaver_core::webhook::*;
use time::OffsetDateTime;

use super::{DbKind, Metrics};

/// A [`Store`] that times every operation of the store it wraps and counts the failed ones.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

/// Implements `Store` by forwarding each listed method to the wrapped store and timing it. Every method of the
/// port is listed with its kind (`Read`, or `Write` for anything that changes rows, claims included): a method
/// added to the port and not here is a compile error, not a silent gap.
macro_rules! metered {
    (impl $port:path { $($extra:tt)* } $($kind:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl $port for MeteredStore {
            $($extra)*

            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.metrics.db_operation(stringify!($name), DbKind::$kind, started.elapsed(), result.is_ok());
                    result
                }
            )*
        }
    };
}

metered! {
    impl Store {
        fn changes(&self) -> Arc<tokio::sync::Notify> {
            self.inner.changes()
        }

        fn committed_here(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Vec<Event>>>> {
            self.inner.committed_here()
        }

        fn connection_pool(&self) -> Option<PoolStatus> {
            self.inner.connection_pool()
        }
    }
    Write check_writable() -> Result<()>;
    Write bootstrap(default_service: NewService) -> Result<AccountConfig>;
    Read account_config() -> Result<AccountConfig>;
    Write update_account_config(patch: AccountConfigPatch) -> Result<AccountConfig>;
    Write create_service(new: NewService) -> Result<Service>;
    Read get_service(sid: &ServiceSid) -> Result<Service>;
    Read list_services(page: PageQuery) -> Result<Page<Service>>;
    Write delete_service(sid: &ServiceSid, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    Write update_service_config(sid: &ServiceSid, patch: ServiceConfigPatch) -> Result<Service>;
    Write create_conversation(new: NewConversation, participants: Vec<NewParticipant>, origin: &Origin) -> Result<(Conversation, Vec<Participant>)>;
    Read get_conversation(service: &ServiceSid, conv: &ConversationRef) -> Result<Conversation>;
    Read list_conversations(service: &ServiceSid, filter: ConversationFilter, page: PageQuery) -> Result<Page<Conversation>>;
    Write update_conversation(service: &ServiceSid, conv: &ConversationRef, patch: ConversationPatch, origin: &Origin) -> Result<Conversation>;
    Write restore_conversation_lifecycle(service: &ServiceSid, conv: &ConversationRef, lifecycle: ConversationLifecycle, origin: &Origin) -> Result<Conversation>;
    Write delete_conversation(service: &ServiceSid, conv: &ConversationRef, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    Write add_participant(service: &ServiceSid, conv: &ConversationRef, new: NewParticipant, origin: &Origin) -> Result<Participant>;
    Read get_participant(service: &ServiceSid, conv: &ConversationRef, participant: &ParticipantRef) -> Result<Participant>;
    Read list_participants(service: &ServiceSid, conv: &ConversationRef, page: PageQuery) -> Result<Page<Participant>>;
    Write update_participant(service: &ServiceSid, conv: &ConversationRef, participant: &ParticipantRef, patch: ParticipantPatch, origin: &Origin) -> Result<Participant>;
    Write remove_participant(service: &ServiceSid, conv: &ConversationRef, participant: &ParticipantRef, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    Write add_message(service: &ServiceSid, conv: &ConversationRef, new: NewMessage, origin: &Origin) -> Result<Message>;
    Read get_message(service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid) -> Result<Message>;
    Read list_messages(service: &ServiceSid, conv: &ConversationRef, page: PageQuery) -> Result<Page<Message>>;
    Read list_messages_and_lead(service: &ServiceSid, conv: &ConversationRef, page: PageQuery) -> Result<(Page<Message>, bool)>;
    Write update_message(service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid, patch: MessagePatch, origin: &Origin) -> Result<Message>;
    Write delete_message(service: &ServiceSid, conv: &ConversationRef, sid: &MessageSid, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    Write create_user(service: &ServiceSid, new: NewUser, origin: &Origin) -> Result<User>;
    Read get_user(service: &ServiceSid, user: &UserRef) -> Result<User>;
    Read list_users(service: &ServiceSid, page: PageQuery) -> Result<Page<User>>;
    Write update_user(service: &ServiceSid, user: &UserRef, patch: UserPatch, origin: &Origin) -> Result<User>;
    Write delete_user(service: &ServiceSid, user: &UserRef, now: OffsetDateTime, origin: &Origin) -> Result<()>;
    Read list_user_conversations(service: &ServiceSid, user: &UserRef, page: PageQuery) -> Result<Page<UserConversation>>;
    Read get_user_conversation(service: &ServiceSid, user: &UserRef, conv: &ConversationRef) -> Result<UserConversation>;
    Read list_participant_conversations(service: &ServiceSid, lookup: &ParticipantLookup, page: PageQuery) -> Result<Page<ParticipantConversation>>;
    Write create_role(service: &ServiceSid, new: NewRole) -> Result<Role>;
    Read get_role(service: &ServiceSid, sid: &RoleSid) -> Result<Role>;
    Read list_roles(service: &ServiceSid, page: PageQuery) -> Result<Page<Role>>;
    Write update_role(service: &ServiceSid, sid: &RoleSid, permissions: Vec<String>, now: OffsetDateTime) -> Result<Role>;
    Write delete_role(service: &ServiceSid, sid: &RoleSid) -> Result<()>;
    Write create_api_key(key: ApiKey) -> Result<ApiKey>;
    Read get_api_key(sid: &ApiKeySid) -> Result<ApiKey>;
    Read list_api_keys() -> Result<Vec<ApiKey>>;
    Write delete_api_key(sid: &ApiKeySid) -> Result<()>;
    Read next_timer_due() -> Result<Option<OffsetDateTime>>;
    Write fire_due_timers(now: OffsetDateTime) -> Result<Vec<Conversation>>;
    Read read_events(stream: &str, after: i64, limit: u32) -> Result<Vec<Event>>;
    Read read_log(after_id: i64, limit: u32) -> Result<Vec<Event>>;
    Read last_log_id() -> Result<i64>;
    Read stream_position(stream: &str) -> Result<i64>;
    Read webhook_settings(scope: &WebhookScope) -> Result<WebhookSettings>;
    Write update_webhook_settings(scope: &WebhookScope, patch: WebhookSettingsPatch) -> Result<WebhookSettings>;
    Write create_conversation_webhook(service: &ServiceSid, conv: &ConversationRef, hook: ConversationWebhook) -> Result<ConversationWebhook>;
    Read get_conversation_webhook(service: &ServiceSid, conv: &ConversationRef, sid: &WebhookSid) -> Result<ConversationWebhook>;
    Read list_conversation_webhooks(service: &ServiceSid, conv: &ConversationRef, page: PageQuery) -> Result<Page<ConversationWebhook>>;
    Write update_conversation_webhook(service: &ServiceSid, conv: &ConversationRef, sid: &WebhookSid, patch: ConversationWebhookPatch) -> Result<ConversationWebhook>;
    Write delete_conversation_webhook(service: &ServiceSid, conv: &ConversationRef, sid: &WebhookSid) -> Result<()>;
    Read webhook_config() -> Result<WebhookConfig>;
    Read webhook_cursor() -> Result<i64>;
    Write enqueue_webhooks(deliveries: Vec<NewDelivery>, from: i64, to: i64, now: OffsetDateTime) -> Result<i64>;
    Write due_webhooks(now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>>;
    Read next_webhook_due() -> Result<Option<OffsetDateTime>>;
    Write record_webhook_attempt(attempt: WebhookAttempt, retention: AttemptRetention) -> Result<()>;
    Read list_webhook_attempts(filter: AttemptFilter, page: PageQuery) -> Result<Page<WebhookAttempt>>;
    Read list_webhook_outbox(filter: OutboxFilter, page: PageQuery) -> Result<Page<OutboxEntry>>;
    Write due_channel_jobs(channels: &[BindingKind], now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<ChannelJob>>;
    Read next_channel_job_due(channels: &[BindingKind]) -> Result<Option<OffsetDateTime>>;
    Read outbox_depths() -> Result<OutboxDepths>;
    Write update_delivery(receipt: &ReceiptRef, update: DeliveryUpdate) -> Result<Option<DeliveryReceipt>>;
    Read list_channel_deliveries(filter: ReceiptFilter, page: PageQuery) -> Result<Page<ChannelDelivery>>;
    Read list_receipts(service: &ServiceSid, conv: &ConversationRef, message: &MessageSid, page: PageQuery) -> Result<Page<DeliveryReceipt>>;
    Read get_receipt(service: &ServiceSid, conv: &ConversationRef, message: &MessageSid, sid: &DeliveryReceiptSid) -> Result<DeliveryReceipt>;
    Read find_conversation_by_binding(channel: BindingKind, address: &str, our_address: &str) -> Result<Option<(ServiceSid, ConversationSid)>>;
    Write create_media(media: palaver_core::media::Media) -> Result<palaver_core::media::Media>;
    Read find_media(sid: &palaver_api::sid::MediaSid) -> Result<palaver_core::media::Media>;
    Read get_media(service: &ServiceSid, sid: &palaver_api::sid::MediaSid) -> Result<palaver_core::media::Media>;
    Write create_address_configuration(config: AddressConfiguration) -> Result<AddressConfiguration>;
    Read get_address_configuration(sid: &AddressConfigurationSid) -> Result<AddressConfiguration>;
    Read find_address_configuration(address: &str) -> Result<Option<AddressConfiguration>>;
    Read list_address_configurations(kind: Option<String>, page: PageQuery) -> Result<Page<AddressConfiguration>>;
    Write update_address_configuration(sid: &AddressConfigurationSid, patch: AddressConfigurationPatch) -> Result<AddressConfiguration>;
    Write delete_address_configuration(sid: &AddressConfigurationSid) -> Result<()>;
}

metered! {
    impl palaver_core::push::PushStore {}
    Write create_credential(credential: Credential) -> Result<Credential>;
    Read get_credential(sid: &CredentialSid) -> Result<Credential>;
    Read list_credentials(page: PageQuery) -> Result<Page<Credential>>;
    Write update_credential(sid: &CredentialSid, patch: CredentialPatch) -> Result<Credential>;
    Write delete_credential(sid: &CredentialSid) -> Result<()>;
    Write register_push_binding(binding: NewPushBinding) -> Result<PushBinding>;
    Read get_push_binding(service: &ServiceSid, sid: &PushBindingSid) -> Result<PushBinding>;
    Read list_push_bindings(service: &ServiceSid, filter: &BindingFilter, page: PageQuery) -> Result<Page<PushBinding>>;
    Write delete_push_binding(service: &ServiceSid, sid: &PushBindingSid) -> Result<()>;
    Read notification_settings(service: &ServiceSid) -> Result<NotificationSettings>;
    Write update_notification_settings(service: &ServiceSid, patch: NotificationSettingsPatch) -> Result<NotificationSettings>;
    Read push_cursor() -> Result<i64>;
    Write enqueue_pushes(pushes: Vec<NewPush>, from: i64, to: i64, now: OffsetDateTime) -> Result<i64>;
    Write due_pushes(now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<PushJob>>;
    Read next_push_due() -> Result<Option<OffsetDateTime>>;
    Write push_delivered(id: i64) -> Result<()>;
    Write push_failed(id: i64, retry_at: Option<OffsetDateTime>, error: String) -> Result<()>;
}
