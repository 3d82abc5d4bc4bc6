//! Webhook settings and the webhook outbox, as the dispatcher (`palaver_server::webhooks`) uses them: it plans
//! the log after a durable cursor into the outbox (moving the cursor in the same write), sends due entries,
//! deletes an entry after a 2xx answer and reschedules it otherwise, until it gives up on it.

use palaver_api::sid::WebhookSid;
use palaver_core::error::{Error, Limit};
use palaver_core::model::Conversation;
use palaver_core::webhook::{
    ConversationWebhook, ConversationWebhookPatch, HookMethod, MAX_SCOPED_WEBHOOKS, NewDelivery, ScopedTarget,
    WebhookEventType, WebhookScope, WebhookSettingsPatch,
};

use crate::StoreFactory;
use crate::fixtures::*;

fn delivery(event_id: i64, url: &str) -> NewDelivery {
    NewDelivery {
        event_id,
        url: url.to_string(),
        method: HookMethod::Post,
        params: vec![("EventType".into(), "onMessageAdded".into()), ("Body".into(), format!("for {url}"))],
    }
}

fn scoped(conversation: &Conversation, url: &str) -> ConversationWebhook {
    ConversationWebhook {
        sid: WebhookSid::generate(),
        conversation_sid: conversation.sid.clone(),
        service_sid: conversation.service_sid.clone(),
        target: ScopedTarget::Webhook,
        url: Some(url.to_string()),
        method: HookMethod::Get,
        filters: vec![WebhookEventType::OnMessageAdded],
        triggers: Vec::new(),
        flow_sid: None,
        replay_after: None,
        date_created: T0,
        date_updated: T0,
    }
}

/// Account and service settings start empty, change field by field, stay apart, and reach the dispatcher's
/// configuration.
pub async fn webhook_settings_round_trip(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let account = world.store.webhook_settings(&WebhookScope::Account).await.unwrap();
    assert_eq!((account.method, account.filters.len()), (HookMethod::Post, 0));
    assert_eq!((account.pre_webhook_url.clone(), account.post_webhook_url.clone()), (None, None));
    assert_eq!(account.target, "webhook", "the target Twilio shows for settings never set");
    assert!(world.store.webhook_config().await.unwrap().is_empty());

    let patch = WebhookSettingsPatch {
        method: Some(HookMethod::Get),
        filters: Some(vec![WebhookEventType::OnMessageAdded, WebhookEventType::OnConversationRemoved]),
        pre_webhook_url: Some(Some("https://hooks.example/pre".into())),
        post_webhook_url: Some(Some("https://hooks.example/post".into())),
        target: Some("flex".into()),
    };
    let updated = world.store.update_webhook_settings(&WebhookScope::Account, patch).await.unwrap();
    assert_eq!(updated.method, HookMethod::Get);
    assert_eq!(updated.filters, [WebhookEventType::OnMessageAdded, WebhookEventType::OnConversationRemoved]);
    assert_eq!(updated.post_webhook_url.as_deref(), Some("https://hooks.example/post"));
    assert_eq!(updated.target, "flex");
    assert_eq!(world.store.webhook_settings(&WebhookScope::Account).await.unwrap(), updated);

    let service = WebhookScope::Service(world.service.clone());
    assert!(world.store.webhook_settings(&service).await.unwrap().post_webhook_url.is_none(), "scopes stay apart");
    let service_patch = WebhookSettingsPatch {
        post_webhook_url: Some(Some("https://hooks.example/service".into())),
        filters: Some(vec![WebhookEventType::OnParticipantAdded]),
        ..Default::default()
    };
    let service_settings = world.store.update_webhook_settings(&service, service_patch).await.unwrap();

    let cleared = world
        .store
        .update_webhook_settings(
            &WebhookScope::Account,
            WebhookSettingsPatch { pre_webhook_url: Some(None), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(cleared.pre_webhook_url, None);
    assert_eq!(cleared.post_webhook_url, updated.post_webhook_url, "fields left out stay");

    let config = world.store.webhook_config().await.unwrap();
    let mut settings = config.settings.clone();
    settings.sort_by_key(|(scope, _)| scope.key());
    let mut expected = vec![(WebhookScope::Account, cleared), (service, service_settings)];
    expected.sort_by_key(|(scope, _)| scope.key());
    assert_eq!(settings, expected);
}

/// A conversation takes up to the maximum of scoped webhooks; they are listed oldest first, changed, deleted,
/// and go away with their conversation.
pub async fn conversation_webhooks_are_limited_listed_and_deleted(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let conv = by_sid(&conversation);
    let mut hooks = Vec::new();
    for i in 0..MAX_SCOPED_WEBHOOKS {
        let hook = scoped(&conversation, &format!("https://hooks.example/{i}"));
        let created = world.store.create_conversation_webhook(&world.service, &conv, hook.clone()).await.unwrap();
        assert_eq!(created, hook);
        hooks.push(created);
    }
    let one_more = scoped(&conversation, "https://hooks.example/extra");
    assert_fails(world.store.create_conversation_webhook(&world.service, &conv, one_more).await, |e| {
        matches!(e, Error::LimitExceeded(Limit::ScopedWebhooks(_)))
    });
    let listed = walk(2, false, async |q| world.store.list_conversation_webhooks(&world.service, &conv, q).await).await;
    assert_eq!(listed, hooks);
    assert_eq!(world.store.get_conversation_webhook(&world.service, &conv, &hooks[1].sid).await.unwrap(), hooks[1]);

    let patch = ConversationWebhookPatch {
        url: Some("https://hooks.example/moved".into()),
        method: Some(HookMethod::Post),
        filters: Some(vec![WebhookEventType::OnMessageRemoved]),
        now: Some(at(1)),
        ..Default::default()
    };
    let changed = world.store.update_conversation_webhook(&world.service, &conv, &hooks[1].sid, patch).await.unwrap();
    assert_eq!(
        (changed.url.as_deref(), changed.method, changed.date_updated),
        (Some("https://hooks.example/moved"), HookMethod::Post, at(1))
    );
    assert_eq!(changed.filters, [WebhookEventType::OnMessageRemoved]);
    assert_eq!(world.store.get_conversation_webhook(&world.service, &conv, &hooks[1].sid).await.unwrap(), changed);

    world.store.delete_conversation_webhook(&world.service, &conv, &hooks[0].sid).await.unwrap();
    assert_fails(world.store.get_conversation_webhook(&world.service, &conv, &hooks[0].sid).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    assert_fails(world.store.delete_conversation_webhook(&world.service, &conv, &hooks[0].sid).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    let config = world.store.webhook_config().await.unwrap();
    assert_eq!(config.scoped.len(), MAX_SCOPED_WEBHOOKS - 1);
    assert!(config.scoped.contains(&changed));

    // Another conversation's hooks are its own; deleting a conversation takes its hooks along.
    let other = world.conversation().await;
    assert_fails(world.store.get_conversation_webhook(&world.service, &by_sid(&other), &hooks[2].sid).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    let kept = world
        .store
        .create_conversation_webhook(&world.service, &by_sid(&other), scoped(&other, "https://hooks.example/other"))
        .await
        .unwrap();
    world.store.delete_conversation(&world.service, &conv, at(2), &api()).await.unwrap();
    assert_eq!(world.store.webhook_config().await.unwrap().scoped, [kept]);
}

/// Enqueuing writes the deliveries and moves the cursor together; an empty batch only moves the cursor.
pub async fn enqueuing_webhooks_moves_the_cursor(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 0);
    assert!(world.store.due_webhooks(at(1_000), 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);

    let planned = vec![delivery(3, "https://a.example/"), delivery(7, "https://b.example/")];
    world.store.enqueue_webhooks(planned.clone(), 7, T0).await.unwrap();
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 7);
    let due = world.store.due_webhooks(T0, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.request.clone()).collect::<Vec<_>>(), planned, "stored as planned, in order");
    assert!(due.iter().all(|d| d.attempts == 0));
    assert!(due[0].id != due[1].id);

    world.store.enqueue_webhooks(Vec::new(), 9, at(1)).await.unwrap();
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 9);
    assert_eq!(world.store.due_webhooks(at(1), 10).await.unwrap(), due, "an empty batch adds nothing");
}

/// Entries are due from the time they were enqueued (or rescheduled) for, oldest first, at most `limit`.
pub async fn due_webhooks_come_at_their_time_oldest_first(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world.store.enqueue_webhooks(vec![delivery(2, "https://late.example/")], 2, at(10)).await.unwrap();
    world.store.enqueue_webhooks(vec![delivery(1, "https://early.example/")], 2, at(5)).await.unwrap();
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(5)));
    assert!(world.store.due_webhooks(at(4), 10).await.unwrap().is_empty());
    let urls = |due: Vec<palaver_core::webhook::Delivery>| due.into_iter().map(|d| d.request.url).collect::<Vec<_>>();
    assert_eq!(urls(world.store.due_webhooks(at(5), 10).await.unwrap()), ["https://early.example/"]);
    assert_eq!(
        urls(world.store.due_webhooks(at(10), 10).await.unwrap()),
        ["https://early.example/", "https://late.example/"]
    );
    assert_eq!(urls(world.store.due_webhooks(at(10), 1).await.unwrap()), ["https://early.example/"]);
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 2, "the cursor is where the planner left it");
}

/// A failed attempt is counted and retried at its new time; an entry given up on is never due again.
pub async fn failed_webhooks_are_retried_then_given_up(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world
        .store
        .enqueue_webhooks(vec![delivery(1, "https://flaky.example/"), delivery(1, "https://ok.example/")], 1, T0)
        .await
        .unwrap();
    let due = world.store.due_webhooks(T0, 10).await.unwrap();
    let (flaky, ok) = (due[0].clone(), due[1].clone());
    world.store.webhook_failed(flaky.id, Some(at(30)), "503".into()).await.unwrap();
    assert_eq!(world.store.due_webhooks(at(29), 10).await.unwrap(), std::slice::from_ref(&ok));
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(T0));
    world.store.webhook_delivered(ok.id).await.unwrap();
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(30)));
    let retried = world.store.due_webhooks(at(30), 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts, &retried[0].request), (flaky.id, 1, &flaky.request));

    world.store.webhook_failed(flaky.id, Some(at(90)), "503".into()).await.unwrap();
    assert_eq!(world.store.due_webhooks(at(90), 10).await.unwrap()[0].attempts, 2);
    world.store.webhook_failed(flaky.id, None, "gave up".into()).await.unwrap();
    assert!(world.store.due_webhooks(at(100_000), 10).await.unwrap().is_empty(), "a dead entry is never sent again");
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);
}

/// A delivered entry leaves the outbox for good.
pub async fn delivered_webhooks_leave_the_outbox(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world
        .store
        .enqueue_webhooks(vec![delivery(1, "https://a.example/"), delivery(2, "https://b.example/")], 2, T0)
        .await
        .unwrap();
    let due = world.store.due_webhooks(T0, 10).await.unwrap();
    world.store.webhook_delivered(due[0].id).await.unwrap();
    assert_eq!(world.store.due_webhooks(at(100_000), 10).await.unwrap(), [due[1].clone()]);
    world.store.webhook_delivered(due[1].id).await.unwrap();
    assert!(world.store.due_webhooks(at(100_000), 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);
}

/// The cursor and the outbox, attempts included, survive a restart.
pub async fn the_webhook_outbox_survives_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world.store.enqueue_webhooks(vec![delivery(4, "https://a.example/")], 4, T0).await.unwrap();
    let entry = world.store.due_webhooks(T0, 10).await.unwrap().remove(0);
    world.store.webhook_failed(entry.id, Some(at(60)), "timeout".into()).await.unwrap();
    let world = restart(factory, world).await;
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 4);
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(60)));
    let due = world.store.due_webhooks(at(60), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts, &due[0].request), (entry.id, 1, &entry.request));
}
