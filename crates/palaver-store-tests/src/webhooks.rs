//! Webhook settings and the webhook outbox, as the dispatcher (`palaver_server::webhooks`) uses them: it plans
//! the log after a durable cursor into the outbox (moving the cursor in the same write, only if no other
//! planner moved it first), claims due entries for a lease, deletes an entry after a 2xx answer and
//! reschedules it otherwise, until it gives up on it. Several nodes' dispatchers do all this at once.

use std::sync::Arc;

use palaver_api::sid::WebhookSid;
use palaver_core::error::{Error, Limit};
use palaver_core::model::Conversation;
use palaver_core::webhook::{
    AttemptFilter, AttemptOutcome, AttemptRetention, ConversationWebhook, ConversationWebhookPatch, Delivery,
    HookMethod, MAX_SCOPED_WEBHOOKS, NewDelivery, OutboxFilter, ScopedTarget, WebhookAttempt, WebhookEventType,
    WebhookScope, WebhookSettingsPatch,
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

/// Records a delivered attempt at `delivery`, as the dispatcher does after a 2xx answer.
async fn delivered(world: &World, delivery: &Delivery) {
    let attempt = WebhookAttempt::of(delivery, None, None, T0);
    world.store.record_webhook_attempt(attempt, AttemptRetention::default()).await.unwrap();
}

/// Records a failed attempt at `delivery`: retried at `retry_at`, or given up when `None`.
async fn failed(world: &World, delivery: &Delivery, retry_at: Option<time::OffsetDateTime>, error: &str) {
    let attempt = WebhookAttempt::of(delivery, Some(error.to_string()), retry_at, T0);
    world.store.record_webhook_attempt(attempt, AttemptRetention::default()).await.unwrap();
}

/// What `due` asks to send, in order.
fn requests(due: &[Delivery]) -> Vec<NewDelivery> {
    due.iter().map(|d| d.request.clone()).collect()
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
    assert!(world.store.due_webhooks(at(1_000), LEASE, 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);

    let planned = vec![delivery(3, "https://a.example/"), delivery(7, "https://b.example/")];
    assert_eq!(world.store.enqueue_webhooks(planned.clone(), 0, 7, T0).await.unwrap(), 7);
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 7);
    assert_eq!(world.store.enqueue_webhooks(Vec::new(), 7, 9, at(1)).await.unwrap(), 9);
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 9);
    let due = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    assert_eq!(requests(&due), planned, "stored as planned, in order");
    assert!(due.iter().all(|d| d.attempts == 0));
    assert!(due[0].id != due[1].id);
    assert_eq!(world.store.due_webhooks(T0 + LEASE, LEASE, 10).await.unwrap(), due, "an empty batch adds nothing");
}

/// A batch offered from a cursor that another planner has moved past covers events planned already: it adds
/// nothing, leaves the cursor, and answers with the stored cursor for the planner to go on from. A range
/// offered twice (a planner retrying after a lost answer) is planned once.
pub async fn a_batch_from_a_stale_cursor_adds_nothing(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let first = vec![delivery(1, "https://first.example/"), delivery(5, "https://first.example/")];
    assert_eq!(world.store.enqueue_webhooks(first.clone(), 0, 5, T0).await.unwrap(), 5);
    assert_eq!(world.store.enqueue_webhooks(first.clone(), 0, 5, T0).await.unwrap(), 5, "the range is planned");
    // A second planner started from 0 too, and read further.
    let second = vec![delivery(1, "https://second.example/"), delivery(8, "https://second.example/")];
    assert_eq!(world.store.enqueue_webhooks(second, 0, 8, T0).await.unwrap(), 5, "answered with the stored cursor");
    assert_eq!(world.store.enqueue_webhooks(Vec::new(), 0, 9, T0).await.unwrap(), 5, "empty batches too");
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 5);
    assert_eq!(requests(&world.store.due_webhooks(T0, LEASE, 10).await.unwrap()), first, "only the first batch");

    // Going on from the answer plans the rest.
    let rest = vec![delivery(8, "https://second.example/")];
    assert_eq!(world.store.enqueue_webhooks(rest.clone(), 5, 8, at(1)).await.unwrap(), 8);
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 8);
    assert_eq!(requests(&world.store.due_webhooks(at(1), LEASE, 10).await.unwrap()), rest);
}

/// Planners racing over one log, as the dispatchers of several nodes do, each offering batches of its own
/// size from the cursor it last saw and going on from the store's answer, plan every event exactly once.
pub async fn racing_planners_plan_each_event_once(factory: &dyn StoreFactory) {
    const EVENTS: i64 = 60;
    const STEPS: [i64; 6] = [1, 2, 3, 5, 7, 11];
    let world = world(factory).await;
    let start = Arc::new(tokio::sync::Barrier::new(STEPS.len()));
    let planners: Vec<_> = STEPS
        .into_iter()
        .map(|step| {
            let (store, start) = (Arc::clone(&world.store), Arc::clone(&start));
            tokio::spawn(async move {
                let mut saved = store.webhook_cursor().await.unwrap();
                start.wait().await;
                while saved < EVENTS {
                    let to = (saved + step).min(EVENTS);
                    let url = format!("https://planner-{step}.example/");
                    let batch = (saved + 1..=to).map(|event| delivery(event, &url)).collect();
                    let stored = store.enqueue_webhooks(batch, saved, to, T0).await.unwrap();
                    assert!(stored > saved, "the cursor moves on, by this planner or another");
                    saved = stored;
                }
            })
        })
        .collect();
    for planner in planners {
        planner.await.unwrap();
    }
    assert_eq!(world.store.webhook_cursor().await.unwrap(), EVENTS);
    let due = world.store.due_webhooks(T0, LEASE, 10 * EVENTS as u32).await.unwrap();
    let mut events: Vec<i64> = due.iter().map(|d| d.request.event_id).collect();
    events.sort_unstable();
    assert_eq!(events, (1..=EVENTS).collect::<Vec<_>>(), "every event planned once, none skipped");
}

/// Entries are due from the time they were enqueued (or rescheduled) for, oldest first, at most `limit`.
pub async fn due_webhooks_come_at_their_time_oldest_first(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world.store.enqueue_webhooks(vec![delivery(1, "https://late.example/")], 0, 1, at(10)).await.unwrap();
    world.store.enqueue_webhooks(vec![delivery(2, "https://early.example/")], 1, 2, at(5)).await.unwrap();
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(5)));
    assert!(world.store.due_webhooks(at(4), LEASE, 10).await.unwrap().is_empty());
    let urls = |due: Vec<palaver_core::webhook::Delivery>| due.into_iter().map(|d| d.request.url).collect::<Vec<_>>();
    assert_eq!(urls(world.store.due_webhooks(at(10), LEASE, 1).await.unwrap()), ["https://early.example/"]);
    // The early entry is claimed until `at(10) + LEASE`; once that has passed, both are due, the late one
    // (due since `at(10)`) first.
    assert_eq!(
        urls(world.store.due_webhooks(at(10) + LEASE, LEASE, 10).await.unwrap()),
        ["https://late.example/", "https://early.example/"]
    );
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 2, "the cursor is where the planner left it");
}

/// A claim hands each due entry out for a lease: a second claim at the same time (another node's) gets
/// nothing, and the entry is due again when the lease ends (its sender may have died). A recorded outcome
/// ends the lease: a delivered entry is never due again, a failed one is due at its retry time.
pub async fn claimed_webhooks_are_leased(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let planned = vec![delivery(1, "https://ok.example/"), delivery(2, "https://flaky.example/")];
    world.store.enqueue_webhooks(planned.clone(), 0, 2, T0).await.unwrap();
    let claimed = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    assert_eq!(requests(&claimed), planned);
    assert!(world.store.due_webhooks(T0, LEASE, 10).await.unwrap().is_empty(), "a second claim gets nothing");
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(T0 + LEASE), "due again when the lease ends");
    let just_before = T0 + LEASE - std::time::Duration::from_millis(1);
    assert!(world.store.due_webhooks(just_before, LEASE, 10).await.unwrap().is_empty());

    let again = world.store.due_webhooks(T0 + LEASE, LEASE, 10).await.unwrap();
    assert_eq!(again, claimed, "taken over as they were, attempts and all");
    let (ok, flaky) = (&again[0], &again[1]);
    let retry_at = T0 + LEASE + std::time::Duration::from_secs(5);
    delivered(&world, ok).await;
    failed(&world, flaky, Some(retry_at), "503").await;
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(retry_at), "the retry time replaces the lease");
    let retried = world.store.due_webhooks(retry_at, LEASE, 10).await.unwrap();
    assert_eq!(retried.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(flaky.id, 1)]);
    let later = world.store.due_webhooks(at(100_000), LEASE, 10).await.unwrap();
    assert_eq!(later.iter().map(|d| d.id).collect::<Vec<_>>(), [flaky.id], "the delivered entry never again");
}

/// Claims made at once, as the dispatchers of several nodes make them, hand each due entry to exactly one
/// claimer: the claimers' sets are disjoint and together hold every entry.
pub async fn concurrent_claims_hand_each_webhook_to_one_claimer(factory: &dyn StoreFactory) {
    const ENTRIES: i64 = 40;
    const CLAIMERS: usize = 8;
    let world = world(factory).await;
    let planned = (1..=ENTRIES).map(|event| delivery(event, "https://hooks.example/")).collect();
    world.store.enqueue_webhooks(planned, 0, ENTRIES, T0).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (store, start) = (Arc::clone(&world.store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                store.due_webhooks(T0, LEASE, ENTRIES as u32).await.unwrap()
            })
        })
        .collect();
    let mut events = Vec::new();
    for claimer in claimers {
        events.extend(claimer.await.unwrap().into_iter().map(|d| d.request.event_id));
    }
    events.sort_unstable();
    assert_eq!(events, (1..=ENTRIES).collect::<Vec<_>>(), "each entry claimed once");
    assert!(world.store.due_webhooks(T0, LEASE, ENTRIES as u32).await.unwrap().is_empty());
}

/// A failed attempt is counted and retried at its new time; an entry given up on is never due again.
pub async fn failed_webhooks_are_retried_then_given_up(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world
        .store
        .enqueue_webhooks(vec![delivery(1, "https://flaky.example/"), delivery(1, "https://ok.example/")], 0, 1, T0)
        .await
        .unwrap();
    let due = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    let (flaky, ok) = (due[0].clone(), due[1].clone());
    failed(&world, &flaky, Some(at(30)), "503").await;
    assert!(world.store.due_webhooks(at(29), LEASE, 10).await.unwrap().is_empty(), "not before its retry time");
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(30)), "before the other one's lease ends");
    delivered(&world, &ok).await;
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(30)));
    let retried = world.store.due_webhooks(at(30), LEASE, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts, &retried[0].request), (flaky.id, 1, &flaky.request));

    failed(&world, &flaky, Some(at(50)), "503").await;
    assert_eq!(world.store.due_webhooks(at(50), LEASE, 10).await.unwrap()[0].attempts, 2);
    failed(&world, &flaky, None, "gave up").await;
    assert!(
        world.store.due_webhooks(at(100_000), LEASE, 10).await.unwrap().is_empty(),
        "a dead entry is never sent again"
    );
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);
}

/// A delivered entry leaves the outbox for good.
pub async fn delivered_webhooks_leave_the_outbox(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world
        .store
        .enqueue_webhooks(vec![delivery(1, "https://a.example/"), delivery(2, "https://b.example/")], 0, 2, T0)
        .await
        .unwrap();
    let due = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    delivered(&world, &due[0]).await;
    assert_eq!(world.store.due_webhooks(at(100_000), LEASE, 10).await.unwrap(), [due[1].clone()]);
    delivered(&world, &due[1]).await;
    assert!(world.store.due_webhooks(at(200_000), LEASE, 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_webhook_due().await.unwrap(), None);
}

/// The outbox reports how many entries wait (those leased or failed included) and how many were given up on;
/// a delivered entry no longer counts.
pub async fn the_webhook_outbox_reports_its_depth(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let empty = world.store.outbox_depths().await.unwrap();
    assert_eq!((empty.webhooks_pending, empty.webhooks_dead), (0, 0));
    let urls = ["https://a.example/", "https://b.example/", "https://c.example/"];
    world.store.enqueue_webhooks(urls.iter().map(|url| delivery(1, url)).collect(), 0, 1, T0).await.unwrap();
    let depths = world.store.outbox_depths().await.unwrap();
    assert_eq!((depths.webhooks_pending, depths.webhooks_dead), (3, 0));
    let due = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    assert_eq!(world.store.outbox_depths().await.unwrap().webhooks_pending, 3, "leased entries still wait");
    delivered(&world, &due[0]).await;
    failed(&world, &due[1], Some(at(30)), "503").await;
    failed(&world, &due[2], None, "gave up").await;
    let depths = world.store.outbox_depths().await.unwrap();
    assert_eq!((depths.webhooks_pending, depths.webhooks_dead), (1, 1));
}

/// The cursor and the outbox, attempts included, survive a restart.
pub async fn the_webhook_outbox_survives_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world.store.enqueue_webhooks(vec![delivery(4, "https://a.example/")], 0, 4, T0).await.unwrap();
    let entry = world.store.due_webhooks(T0, LEASE, 10).await.unwrap().remove(0);
    failed(&world, &entry, Some(at(60)), "timeout").await;
    let world = restart(factory, world).await;
    assert_eq!(world.store.webhook_cursor().await.unwrap(), 4);
    assert_eq!(world.store.next_webhook_due().await.unwrap(), Some(at(60)));
    let due = world.store.due_webhooks(at(60), LEASE, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts, &due[0].request), (entry.id, 1, &entry.request));
}

/// A request about a conversation, as the planner makes them (its parameters name the event and conversation).
fn conversation_delivery(event_id: i64, url: &str, conversation: &str) -> NewDelivery {
    let mut request = delivery(event_id, url);
    request.params.push(("ConversationSid".into(), conversation.to_string()));
    request
}

/// Each recorded attempt changes its outbox entry and joins the delivery history in the same write: a
/// delivered entry leaves the outbox, a retried one waits with its attempts and last error, a given-up one
/// stays as dead; the history lists every attempt newest first, filtered by outcome and conversation, and
/// both survive a restart.
pub async fn attempts_are_recorded_with_their_outbox_entry(factory: &dyn StoreFactory) {
    const ROOM: &str = "CH00000000000000000000000000000001";
    let world = world(factory).await;
    let planned = vec![
        conversation_delivery(1, "https://ok.example/", ROOM),
        conversation_delivery(1, "https://flaky.example/", ROOM),
        delivery(2, "https://down.example/"),
    ];
    world.store.enqueue_webhooks(planned, 0, 2, T0).await.unwrap();
    let first = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    let (ok, flaky, down) = (&first[0], &first[1], &first[2]);
    let record = async |attempt: WebhookAttempt| {
        world.store.record_webhook_attempt(attempt, AttemptRetention::default()).await.unwrap();
    };
    record(WebhookAttempt::of(ok, None, None, at(1))).await;
    record(WebhookAttempt::of(flaky, Some("answered 503".into()), Some(at(10)), at(2))).await;
    record(WebhookAttempt::of(down, Some("no answer: refused".into()), Some(at(10)), at(3))).await;
    let second = world.store.due_webhooks(at(10), LEASE, 10).await.unwrap();
    assert_eq!(second.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(flaky.id, 1), (down.id, 1)]);
    record(WebhookAttempt::of(&second[0], None, None, at(11))).await;
    record(WebhookAttempt::of(&second[1], Some("no answer: refused".into()), None, at(12))).await;

    let world = restart(factory, world).await;
    let history = walk(10, true, async |q| world.store.list_webhook_attempts(AttemptFilter::default(), q).await).await;
    let summary: Vec<_> = history.iter().map(|a| (a.delivery_id, a.attempt, a.outcome, a.at)).collect();
    assert_eq!(
        summary,
        [
            (down.id, 2, AttemptOutcome::GaveUp, at(12)),
            (flaky.id, 2, AttemptOutcome::Delivered, at(11)),
            (down.id, 1, AttemptOutcome::Retrying, at(3)),
            (flaky.id, 1, AttemptOutcome::Retrying, at(2)),
            (ok.id, 1, AttemptOutcome::Delivered, at(1)),
        ],
        "newest first"
    );
    let retried = &history[3];
    assert_eq!(
        (retried.url.as_str(), retried.method, retried.event_id),
        ("https://flaky.example/", HookMethod::Post, 1)
    );
    assert_eq!(
        (retried.event_type.as_deref(), retried.conversation_sid.as_deref()),
        (Some("onMessageAdded"), Some(ROOM))
    );
    assert_eq!((retried.error.as_deref(), retried.next_retry), (Some("answered 503"), Some(at(10))));
    assert_eq!((history[4].error.as_deref(), history[4].next_retry), (None, None));
    assert_eq!((history[0].next_retry, history[2].conversation_sid.as_deref()), (None, None));

    let only = async |filter: AttemptFilter| {
        let page = world.store.list_webhook_attempts(filter, first_page(10)).await.unwrap();
        page.items.iter().map(|a| (a.delivery_id, a.attempt)).collect::<Vec<_>>()
    };
    let retrying = AttemptFilter { outcome: Some(AttemptOutcome::Retrying), conversation_sid: None };
    assert_eq!(only(retrying).await, [(flaky.id, 1), (down.id, 1)], "oldest first for an ascending page");
    let in_room = AttemptFilter { outcome: None, conversation_sid: Some(ROOM.parse().unwrap()) };
    assert_eq!(only(in_room.clone()).await, [(ok.id, 1), (flaky.id, 1), (flaky.id, 2)]);
    let delivered_in_room = AttemptFilter { outcome: Some(AttemptOutcome::Delivered), ..in_room };
    assert_eq!(only(delivered_in_room).await, [(ok.id, 1), (flaky.id, 2)]);

    // The outbox keeps the dead entry only, with its attempts and last error.
    let outbox = async |dead: Option<bool>| {
        world.store.list_webhook_outbox(OutboxFilter { dead }, first_page(10)).await.unwrap().items
    };
    let everything = outbox(None).await;
    assert_eq!(everything.len(), 1);
    let dead = &everything[0];
    assert_eq!((dead.delivery.id, dead.delivery.attempts, dead.dead), (down.id, 2, true));
    assert_eq!((dead.last_error.as_deref(), dead.date_created), (Some("no answer: refused"), Some(T0)));
    assert_eq!(dead.delivery.request, down.request);
    assert_eq!(outbox(Some(true)).await, everything);
    assert!(outbox(Some(false)).await.is_empty());
}

/// Entries still to send are listed with their next attempt (their lease's end while claimed), newest first,
/// page by page without skipping or repeating one.
pub async fn pending_outbox_entries_are_listed_with_their_next_attempt(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let planned = (1..=5).map(|event| delivery(event, &format!("https://hooks.example/{event}"))).collect();
    world.store.enqueue_webhooks(planned, 0, 5, T0).await.unwrap();
    let claimed = world.store.due_webhooks(T0, LEASE, 1).await.unwrap();
    let retry = WebhookAttempt::of(&claimed[0], Some("answered 500".into()), Some(at(40)), at(1));
    world.store.record_webhook_attempt(retry, AttemptRetention::default()).await.unwrap();
    world.store.due_webhooks(at(2), LEASE, 1).await.unwrap();

    let pending =
        walk(2, true, async |q| world.store.list_webhook_outbox(OutboxFilter { dead: Some(false) }, q).await).await;
    let events: Vec<i64> = pending.iter().map(|e| e.delivery.request.event_id).collect();
    assert_eq!(events, [5, 4, 3, 2, 1], "newest first, each once");
    assert!(pending.iter().all(|e| !e.dead && e.date_created == Some(T0)));
    let next: Vec<_> = pending.iter().map(|e| (e.delivery.attempts, e.next_attempt, e.last_error.as_deref())).collect();
    assert_eq!(
        next,
        [(0, T0, None), (0, T0, None), (0, T0, None), (0, at(2) + LEASE, None), (1, at(40), Some("answered 500"))],
        "claimed: due when the lease ends; failed: at its retry"
    );
}

/// The delivery history keeps the newest `max_rows` attempts and none older than `max_age` before the newest:
/// older ones go as new ones are recorded.
pub async fn the_attempt_history_is_pruned_by_count_and_age(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let retention = AttemptRetention { max_rows: 3, max_age: std::time::Duration::from_secs(3600) };
    let planned = (1..=6).map(|event| delivery(event, "https://hooks.example/")).collect();
    world.store.enqueue_webhooks(planned, 0, 6, T0).await.unwrap();
    let due = world.store.due_webhooks(T0, LEASE, 10).await.unwrap();
    for (n, entry) in due.iter().take(5).enumerate() {
        let attempt = WebhookAttempt::of(entry, Some("answered 500".into()), Some(at(600)), at(n as i64));
        world.store.record_webhook_attempt(attempt, retention).await.unwrap();
    }
    let kept = async || {
        let page = world.store.list_webhook_attempts(AttemptFilter::default(), first_page(10)).await.unwrap();
        page.items.iter().map(|a| a.event_id).collect::<Vec<_>>()
    };
    assert_eq!(kept().await, [3, 4, 5], "the newest three");
    // An hour and more later, everything before the last hour goes.
    let late = WebhookAttempt::of(&due[5], None, None, at(3 * 3600));
    world.store.record_webhook_attempt(late, retention).await.unwrap();
    assert_eq!(kept().await, [6]);
    // The outbox is not the history: the retried entries still wait.
    let waiting = world.store.list_webhook_outbox(OutboxFilter { dead: Some(false) }, first_page(10)).await.unwrap();
    assert_eq!(waiting.items.len(), 5);
}
