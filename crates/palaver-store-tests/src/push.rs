//! Push credentials, bindings, notification settings and the push outbox, as the REST API and the push
//! dispatcher (`palaver_server::push`) use them: the dispatcher plans the log after a durable cursor into the
//! outbox (compare-and-set, like webhooks), claims due entries for a lease with their bindings, deletes an
//! entry once a push service accepted it and reschedules it otherwise.

use std::sync::Arc;

use palaver_api::sid::{CredentialSid, PushBindingSid, ServiceSid};
use palaver_core::error::{Error, ResourceKind};
use palaver_core::push::*;

use crate::StoreFactory;
use crate::fixtures::*;

fn credential(kind: CredentialKind, name: &str) -> Credential {
    Credential {
        sid: CredentialSid::generate(),
        friendly_name: Some(name.to_string()),
        kind,
        sandbox: false,
        secrets: CredentialSecrets {
            certificate: Some(r#"{"key_id":"K","team_id":"T","topic":"app"}"#.into()),
            private_key: Some("-----BEGIN PRIVATE KEY-----".into()),
            api_key: None,
            secret: Some("{}".into()),
        },
        date_created: T0,
        date_updated: T0,
    }
}

fn registration(service: &ServiceSid, identity: &str, kind: BindingType, address: &str) -> NewPushBinding {
    NewPushBinding {
        sid: PushBindingSid::generate(),
        service_sid: service.clone(),
        credential_sid: None,
        identity: identity.to_string(),
        kind,
        address: address.to_string(),
        message_types: PushType::ALL.to_vec(),
        now: T0,
    }
}

fn notification(body: &str) -> PushNotification {
    PushNotification {
        kind: PushType::NewMessage,
        body: body.to_string(),
        sound: Some("ring".into()),
        badge: Some(2),
        conversation_sid: "CH00000000000000000000000000000001".into(),
        conversation_title: "Team".into(),
        message_sid: Some("IM00000000000000000000000000000001".into()),
        message_index: Some(0),
        author: Some("alice".into()),
        media_count: None,
        media: None,
    }
}

fn push(event_id: i64, binding: &PushBinding, body: &str) -> NewPush {
    NewPush { event_id, binding_sid: binding.sid.clone(), notification: notification(body) }
}

fn bodies(jobs: &[PushJob]) -> Vec<String> {
    jobs.iter().map(|j| j.notification.body.clone()).collect()
}

/// Credentials are stored with their secrets, listed oldest first a page at a time, patched field by field
/// (secrets left out stay) and deleted.
pub async fn credentials_round_trip_with_their_secrets(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mut created = Vec::new();
    for (i, kind) in [CredentialKind::Apn, CredentialKind::Fcm, CredentialKind::WebPush].into_iter().enumerate() {
        let new = credential(kind, &format!("c{i}"));
        let stored = world.store.create_credential(new.clone()).await.unwrap();
        assert_eq!(stored, new);
        created.push(stored);
    }
    assert_eq!(world.store.get_credential(&created[1].sid).await.unwrap(), created[1]);
    assert_eq!(walk(2, false, async |q| world.store.list_credentials(q).await).await, created);

    let patch = CredentialPatch {
        friendly_name: Some("renamed".into()),
        sandbox: Some(true),
        private_key: Some("new key".into()),
        now: Some(at(5)),
        ..Default::default()
    };
    let updated = world.store.update_credential(&created[0].sid, patch).await.unwrap();
    assert_eq!(updated.friendly_name.as_deref(), Some("renamed"));
    assert!(updated.sandbox);
    assert_eq!(updated.secrets.private_key.as_deref(), Some("new key"));
    assert_eq!(updated.secrets.certificate, created[0].secrets.certificate, "secrets left out stay");
    assert_eq!((updated.date_created, updated.date_updated), (T0, at(5)));
    assert_eq!(world.store.get_credential(&created[0].sid).await.unwrap(), updated);

    world.store.delete_credential(&created[0].sid).await.unwrap();
    let gone = |e: &Error| matches!(e, Error::NotFound { kind: ResourceKind::Credential, .. });
    assert_fails(world.store.get_credential(&created[0].sid).await, gone);
    assert_fails(world.store.delete_credential(&created[0].sid).await, gone);
    assert_fails(world.store.update_credential(&created[0].sid, CredentialPatch::default()).await, gone);
}

/// A binding is unique per service, kind and address: registering the address again keeps its SID and moves
/// it to the new identity with the new types; lists filter by kinds and identities and page; another
/// service does not see it.
pub async fn bindings_are_registered_once_per_address(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let store = &world.store;
    let first =
        store.register_push_binding(registration(&world.service, "alice", BindingType::Fcm, "tok-1")).await.unwrap();
    assert_eq!((first.identity.as_str(), first.kind, first.address.as_str()), ("alice", BindingType::Fcm, "tok-1"));
    assert_eq!(first.message_types, PushType::ALL);

    let again = NewPushBinding {
        message_types: vec![PushType::NewMessage],
        now: at(9),
        ..registration(&world.service, "bob", BindingType::Fcm, "tok-1")
    };
    let moved = store.register_push_binding(again).await.unwrap();
    assert_eq!(moved.sid, first.sid, "one binding per address");
    assert_eq!((moved.identity.as_str(), moved.message_types.clone()), ("bob", vec![PushType::NewMessage]));
    assert_eq!((moved.date_created, moved.date_updated), (T0, at(9)));

    let apn =
        store.register_push_binding(registration(&world.service, "bob", BindingType::Apn, "tok-1")).await.unwrap();
    assert_ne!(apn.sid, first.sid, "the same token of another kind is another binding");
    let long_address = format!("{{\"endpoint\":\"https://push.example/{}\"}}", "x".repeat(3000));
    let web = store
        .register_push_binding(registration(&world.service, "carol", BindingType::WebPush, &long_address))
        .await
        .unwrap();
    assert_eq!(web.address, long_address, "addresses of a few kilobytes are kept whole");

    let all =
        walk(2, false, async |q| store.list_push_bindings(&world.service, &BindingFilter::default(), q).await).await;
    assert_eq!(all, vec![moved.clone(), apn.clone(), web.clone()]);
    let bobs = BindingFilter { identities: vec!["bob".into()], ..Default::default() };
    assert_eq!(
        walk(1, false, async |q| store.list_push_bindings(&world.service, &bobs, q).await).await,
        vec![moved.clone(), apn.clone()]
    );
    let kinds = BindingFilter { kinds: vec![BindingType::Apn, BindingType::WebPush], ..Default::default() };
    assert_eq!(
        walk(5, false, async |q| store.list_push_bindings(&world.service, &kinds, q).await).await,
        vec![apn.clone(), web.clone()]
    );
    let both = BindingFilter { kinds: vec![BindingType::WebPush], identities: vec!["bob".into()] };
    assert!(walk(5, false, async |q| store.list_push_bindings(&world.service, &both, q).await).await.is_empty());

    let other = store.create_service(new_service("other")).await.unwrap().sid;
    let gone = |e: &Error| matches!(e, Error::NotFound { kind: ResourceKind::PushBinding, .. });
    assert_fails(store.get_push_binding(&other, &apn.sid).await, gone);
    assert_fails(store.delete_push_binding(&other, &apn.sid).await, gone);
    assert!(
        store.list_push_bindings(&other, &BindingFilter::default(), first_page(10)).await.unwrap().items.is_empty()
    );

    assert_eq!(store.get_push_binding(&world.service, &apn.sid).await.unwrap(), apn);
    store.delete_push_binding(&world.service, &apn.sid).await.unwrap();
    assert_fails(store.get_push_binding(&world.service, &apn.sid).await, gone);
}

/// Settings are all off until set, change field by field, stay apart per service, and survive a restart.
pub async fn notification_settings_are_patched_per_service(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_eq!(world.store.notification_settings(&world.service).await.unwrap(), NotificationSettings::default());
    let patch = NotificationSettingsPatch {
        log_enabled: Some(true),
        new_message: EventNotificationPatch {
            enabled: Some(true),
            template: Some("${MESSAGE}".into()),
            sound: Some("ring".into()),
        },
        badge_count_enabled: Some(true),
        ..Default::default()
    };
    let updated = world.store.update_notification_settings(&world.service, patch).await.unwrap();
    assert!(updated.log_enabled && updated.new_message.enabled && updated.badge_count_enabled);
    let second = NotificationSettingsPatch {
        removed_from_conversation: EventNotificationPatch { enabled: Some(true), ..Default::default() },
        ..Default::default()
    };
    let merged = world.store.update_notification_settings(&world.service, second).await.unwrap();
    assert_eq!(merged.new_message, updated.new_message, "fields left out stay");
    assert!(merged.removed_from_conversation.enabled);
    let other = world.store.create_service(new_service("other")).await.unwrap().sid;
    assert_eq!(world.store.notification_settings(&other).await.unwrap(), NotificationSettings::default());
    let world = restart(factory, world).await;
    assert_eq!(world.store.notification_settings(&world.service).await.unwrap(), merged);
}

/// Planners racing over one log (several nodes) add each event's pushes once: a batch from a stale cursor
/// adds nothing and learns the stored cursor.
pub async fn racing_push_planners_plan_each_event_once(factory: &dyn StoreFactory) {
    const EVENTS: i64 = 40;
    const STEPS: [i64; 4] = [1, 2, 3, 7];
    let world = world(factory).await;
    let binding = world
        .store
        .register_push_binding(registration(&world.service, "alice", BindingType::Fcm, "tok"))
        .await
        .unwrap();
    assert_eq!(world.store.push_cursor().await.unwrap(), 0);
    let start = Arc::new(tokio::sync::Barrier::new(STEPS.len()));
    let planners: Vec<_> = STEPS
        .into_iter()
        .map(|step| {
            let (store, start, binding) = (Arc::clone(&world.store), Arc::clone(&start), binding.clone());
            tokio::spawn(async move {
                let mut saved = store.push_cursor().await.unwrap();
                start.wait().await;
                while saved < EVENTS {
                    let to = (saved + step).min(EVENTS);
                    let batch = (saved + 1..=to).map(|event| push(event, &binding, &format!("{event}"))).collect();
                    let stored = store.enqueue_pushes(batch, saved, to, T0).await.unwrap();
                    assert!(stored > saved, "the cursor moves on, by this planner or another");
                    saved = stored;
                }
            })
        })
        .collect();
    for planner in planners {
        planner.await.unwrap();
    }
    assert_eq!(world.store.push_cursor().await.unwrap(), EVENTS);
    let stale = world.store.enqueue_pushes(vec![push(1, &binding, "again")], 0, 1, T0).await.unwrap();
    assert_eq!(stale, EVENTS, "a stale batch is refused with the stored cursor");
    let due = world.store.due_pushes(T0, LEASE, 10 * EVENTS as u32).await.unwrap();
    let mut events: Vec<i64> = due.iter().map(|j| j.notification.body.parse().unwrap()).collect();
    events.sort_unstable();
    assert_eq!(events, (1..=EVENTS).collect::<Vec<_>>(), "every event planned once, none skipped");
}

/// A claim hands out due entries oldest first with their bindings as they are now, each for a lease: a
/// second claim gets nothing until the lease ends. A failure reschedules (or kills) the entry; a delivered
/// one leaves the outbox.
pub async fn claimed_pushes_are_leased_with_their_bindings(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let store = &world.store;
    let a =
        store.register_push_binding(registration(&world.service, "alice", BindingType::Apn, "apn-tok")).await.unwrap();
    let b =
        store.register_push_binding(registration(&world.service, "bob", BindingType::Fcm, "fcm-tok")).await.unwrap();
    store.enqueue_pushes(vec![push(1, &a, "late")], 0, 1, at(10)).await.unwrap();
    store.enqueue_pushes(vec![push(2, &b, "early")], 1, 2, at(5)).await.unwrap();
    assert_eq!(store.next_push_due().await.unwrap(), Some(at(5)));
    assert!(store.due_pushes(at(4), LEASE, 10).await.unwrap().is_empty());

    let claimed = store.due_pushes(at(10), LEASE, 10).await.unwrap();
    assert_eq!(bodies(&claimed), ["early", "late"]);
    assert_eq!(claimed[0].binding, b);
    assert_eq!(claimed[0].notification, notification("early"));
    assert_eq!(claimed[0].attempts, 0);
    assert!(store.due_pushes(at(10), LEASE, 10).await.unwrap().is_empty(), "a second claim gets nothing");
    assert_eq!(store.next_push_due().await.unwrap(), Some(at(10) + LEASE));

    store.push_delivered(claimed[1].id).await.unwrap();
    store.push_failed(claimed[0].id, Some(at(20)), "answered 503".into()).await.unwrap();
    let retried = store.due_pushes(at(20), LEASE, 10).await.unwrap();
    assert_eq!((bodies(&retried), retried[0].attempts), (vec!["early".to_string()], 1));
    store.push_failed(retried[0].id, None, "gave up".into()).await.unwrap();
    assert!(store.due_pushes(at(10_000), LEASE, 10).await.unwrap().is_empty(), "dead entries are not due");
    assert_eq!(store.next_push_due().await.unwrap(), None);
}

/// Deleting a binding drops the notifications waiting for it; a re-registration that moved the address to
/// another user delivers to the binding as it is when claimed.
pub async fn deleted_bindings_take_their_pushes_along(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let store = &world.store;
    let kept =
        store.register_push_binding(registration(&world.service, "alice", BindingType::Fcm, "kept")).await.unwrap();
    let doomed =
        store.register_push_binding(registration(&world.service, "bob", BindingType::Fcm, "doomed")).await.unwrap();
    store.enqueue_pushes(vec![push(1, &kept, "kept"), push(1, &doomed, "doomed")], 0, 1, T0).await.unwrap();
    store.delete_push_binding(&world.service, &doomed.sid).await.unwrap();
    let moved =
        store.register_push_binding(registration(&world.service, "carol", BindingType::Fcm, "kept")).await.unwrap();
    let due = store.due_pushes(T0, LEASE, 10).await.unwrap();
    assert_eq!(bodies(&due), ["kept"]);
    assert_eq!(due[0].binding, moved);
}

/// Two claims at once (two nodes) never both get an entry.
pub async fn concurrent_claims_hand_each_push_to_one_claimer(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let binding = world
        .store
        .register_push_binding(registration(&world.service, "alice", BindingType::Fcm, "tok"))
        .await
        .unwrap();
    let pushes = (1..=30).map(|i| push(i, &binding, &i.to_string())).collect();
    world.store.enqueue_pushes(pushes, 0, 30, T0).await.unwrap();
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&world.store);
            tokio::spawn(async move { store.due_pushes(T0, LEASE, 10).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap().into_iter().map(|j| j.id));
    }
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "no entry handed out twice");
    assert_eq!(count, 30, "four claims of ten take all thirty");
}

/// Planned notifications, the cursor and the bindings survive a restart; an entry claimed before it is due
/// again when its lease ends.
pub async fn the_push_outbox_survives_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let binding = world
        .store
        .register_push_binding(registration(&world.service, "alice", BindingType::Apn, "tok"))
        .await
        .unwrap();
    world.store.enqueue_pushes(vec![push(1, &binding, "one"), push(2, &binding, "two")], 0, 2, T0).await.unwrap();
    assert_eq!(world.store.due_pushes(T0, LEASE, 1).await.unwrap().len(), 1);
    let world = restart(factory, world).await;
    assert_eq!(world.store.push_cursor().await.unwrap(), 2);
    assert_eq!(bodies(&world.store.due_pushes(T0, LEASE, 10).await.unwrap()), ["two"]);
    let after_lease = world.store.due_pushes(T0 + LEASE, LEASE, 10).await.unwrap();
    assert_eq!(bodies(&after_lease), ["one", "two"], "both leases ended; oldest first");
    assert_eq!(after_lease[0].binding, binding);
}
