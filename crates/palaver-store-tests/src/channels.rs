//! The channel outbox, as the channel dispatcher (`palaver_server::channels`) uses it: `add_message` queues a
//! receipt per non-chat recipient; the dispatcher claims due receipts for a lease, with what sending needs,
//! and records each outcome with `update_delivery` (a retry time, or a status that never moves backwards).
//! Several nodes' dispatchers claim at once. Also inbound routing by binding and address configurations.

use std::collections::BTreeSet;
use std::sync::Arc;

use palaver_api::sid::AddressConfigurationSid;
use palaver_core::channel::{
    AddressConfiguration, AddressConfigurationPatch, AutoCreation, DeliveryCounts, DeliveryStatus, DeliveryUpdate,
    ReceiptFilter, ReceiptRef,
};
use palaver_core::error::{Conflict, Error};
use palaver_core::event::{EventKind, Origin};
use palaver_core::model::{BindingKind, Conversation, ConversationState, EmailBinding, Message, Participant};
use palaver_core::store::{ConversationPatch, NewMessage};
use time::OffsetDateTime;

use crate::StoreFactory;
use crate::fixtures::*;

const ALL: [BindingKind; 3] = [BindingKind::Sms, BindingKind::Whatsapp, BindingKind::Email];

/// A conversation with a chat user, an SMS participant and an email participant, and a message from the
/// chat user.
struct Mixed {
    conversation: Conversation,
    sms: Participant,
    email: Participant,
    message: Message,
}

async fn mixed(world: &World) -> Mixed {
    let conversation = Conversation {
        friendly_name: Some("Orders".into()),
        email_binding: EmailBinding { address: Some("help@shop.example".into()), name: Some("Shop".into()) },
        ..new_conversation(&world.service)
    };
    let participants = vec![
        chat("alice"),
        non_chat(BindingKind::Sms, "+15550100001", Some("+15559990000")),
        non_chat(BindingKind::Email, "ann@mail.example", None),
    ];
    let (conversation, added) = world.create(conversation, participants).await.unwrap();
    let message = world
        .send(&conversation, NewMessage { author: "alice".into(), ..new_message("your order shipped") })
        .await
        .unwrap();
    Mixed { conversation, sms: added[1].clone(), email: added[2].clone(), message }
}

fn update(status: DeliveryStatus, now: OffsetDateTime) -> DeliveryUpdate {
    DeliveryUpdate { status, channel_message_sid: None, error_code: None, retry_at: None, last_error: None, now }
}

async fn receipt_of(world: &World, mixed: &Mixed, participant: &Participant) -> palaver_core::channel::DeliveryReceipt {
    let receipts = walk(10, false, async |q| {
        world.store.list_receipts(&world.service, &by_sid(&mixed.conversation), &mixed.message.sid, q).await
    })
    .await;
    receipts.into_iter().find(|r| r.participant_sid == participant.sid).expect("a receipt for the participant")
}

/// A message queues one receipt per non-chat participant other than its author, due at once, and the
/// message counts them.
pub async fn messages_queue_a_receipt_per_non_chat_recipient(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    assert_eq!(mixed.message.delivery, Some(DeliveryCounts::queued(2)));
    let conv = by_sid(&mixed.conversation);
    assert_eq!(world.store.get_message(&world.service, &conv, &mixed.message.sid).await.unwrap(), mixed.message);
    let receipts =
        world.store.list_receipts(&world.service, &conv, &mixed.message.sid, first_page(10)).await.unwrap().items;
    assert_eq!(
        receipts.iter().map(|r| r.participant_sid.clone()).collect::<Vec<_>>(),
        [mixed.sms.sid.clone(), mixed.email.sid.clone()]
    );
    assert!(receipts.iter().all(|r| r.status == DeliveryStatus::Queued && r.message_sid == mixed.message.sid));
    assert!(receipts.iter().all(|r| r.conversation_sid == mixed.conversation.sid && r.service_sid == world.service));
    let one = world.store.get_receipt(&world.service, &conv, &mixed.message.sid, &receipts[0].sid).await.unwrap();
    assert_eq!(one, receipts[0]);

    // Only once due, and only on the channels asked for.
    assert!(world.store.due_channel_jobs(&[], T0, LEASE, 10).await.unwrap().is_empty());
    assert!(world.store.due_channel_jobs(&[BindingKind::Whatsapp], T0, LEASE, 10).await.unwrap().is_empty());
    assert!(world.store.due_channel_jobs(&ALL, at(-1), LEASE, 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_channel_job_due(&[BindingKind::Email]).await.unwrap(), Some(T0));
    assert_eq!(world.store.next_channel_job_due(&[BindingKind::Whatsapp]).await.unwrap(), None);
    let sms_only = world.store.due_channel_jobs(&[BindingKind::Sms], T0, LEASE, 10).await.unwrap();
    assert_eq!(sms_only.iter().map(|j| j.channel).collect::<Vec<_>>(), [BindingKind::Sms]);
    let rest = world.store.due_channel_jobs(&ALL, T0, LEASE, 10).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.channel).collect::<Vec<_>>(), [BindingKind::Email], "the SMS one is claimed");

    // Once their leases have ended: both, oldest first, at most `limit`, with what sending needs.
    let jobs = world.store.due_channel_jobs(&ALL, T0 + LEASE, LEASE, 10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.receipt_sid.clone()).collect::<Vec<_>>(),
        [receipts[0].sid.clone(), receipts[1].sid.clone()]
    );
    assert_eq!(world.store.due_channel_jobs(&ALL, T0 + 2 * LEASE, LEASE, 1).await.unwrap().len(), 1);
    let sms = &jobs[0];
    assert_eq!(
        (sms.channel, sms.to.as_str(), sms.proxy_address.as_deref()),
        (BindingKind::Sms, "+15550100001", Some("+15559990000"))
    );
    assert_eq!((sms.author.as_str(), sms.body.as_deref(), sms.attempts), ("alice", Some("your order shipped"), 0));
    assert_eq!((&sms.message_sid, &sms.conversation_sid), (&mixed.message.sid, &mixed.conversation.sid));
    let email = &jobs[1];
    assert_eq!((email.channel, email.to.as_str()), (BindingKind::Email, "ann@mail.example"));
    assert_eq!(email.conversation_email, Some(("help@shop.example".to_string(), Some("Shop".to_string()))));
    assert_eq!(email.conversation_name.as_deref(), Some("Orders"));

    // The author gets no receipt of its own message; chat-only conversations get none at all.
    let from_sms = world
        .send(&mixed.conversation, NewMessage { author: "+15550100001".into(), ..new_message("reply") })
        .await
        .unwrap();
    assert_eq!(from_sms.delivery, Some(DeliveryCounts::queued(1)));
    let receipts = world.store.list_receipts(&world.service, &conv, &from_sms.sid, first_page(10)).await.unwrap().items;
    assert_eq!(receipts.iter().map(|r| &r.participant_sid).collect::<Vec<_>>(), [&mixed.email.sid]);
    let chat_only = world.conversation().await;
    world.join(&chat_only, "bob").await;
    assert_eq!(world.post(&chat_only, "no channels").await.delivery, None);
}

/// The channel outbox reports its queued receipts per channel, every channel listed; a sent receipt no longer
/// counts, one waiting for a retry still does.
pub async fn the_channel_outbox_reports_its_depth(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let count = |depths: &palaver_core::store::OutboxDepths, kind: BindingKind| {
        depths.channels_pending.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n)
    };
    let empty = world.store.outbox_depths().await.unwrap();
    assert_eq!(ALL.map(|kind| count(&empty, kind)), [Some(0); 3]);
    let mixed = mixed(&world).await;
    let depths = world.store.outbox_depths().await.unwrap();
    assert_eq!(ALL.map(|kind| count(&depths, kind)), [Some(1), Some(0), Some(1)]);
    let sms = receipt_of(&world, &mixed, &mixed.sms).await;
    let email = receipt_of(&world, &mixed, &mixed.email).await;
    world.store.update_delivery(&ReceiptRef::Sid(sms.sid), update(DeliveryStatus::Sent, at(1))).await.unwrap();
    let retry = DeliveryUpdate { retry_at: Some(at(30)), ..update(DeliveryStatus::Queued, at(1)) };
    world.store.update_delivery(&ReceiptRef::Sid(email.sid), retry).await.unwrap();
    let depths = world.store.outbox_depths().await.unwrap();
    assert_eq!(ALL.map(|kind| count(&depths, kind)), [Some(0), Some(0), Some(1)]);
}

/// A failed attempt that will be retried keeps the receipt queued until its new time, counting the attempt,
/// and appends nothing.
pub async fn channel_jobs_are_rescheduled(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    let receipt = receipt_of(&world, &mixed, &mixed.sms).await;
    let position = world.log_position().await;
    let retry = DeliveryUpdate {
        retry_at: Some(at(30)),
        last_error: Some("gateway timeout".into()),
        ..update(DeliveryStatus::Queued, at(1))
    };
    let updated = world.store.update_delivery(&ReceiptRef::Sid(receipt.sid.clone()), retry).await.unwrap().unwrap();
    assert_eq!(updated.status, DeliveryStatus::Queued);
    assert_eq!(world.log_position().await, position, "no status change, no event");
    let due_now = world.store.due_channel_jobs(&[BindingKind::Sms], at(29), LEASE, 10).await.unwrap();
    assert!(due_now.is_empty(), "not before its retry time");
    assert_eq!(world.store.next_channel_job_due(&[BindingKind::Sms]).await.unwrap(), Some(at(30)));
    assert_eq!(
        world.store.next_channel_job_due(&ALL).await.unwrap(),
        Some(T0),
        "the earliest of all: the email still waits"
    );
    let due = world.store.due_channel_jobs(&[BindingKind::Sms], at(30), LEASE, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    assert_eq!(due[0].receipt_sid, receipt.sid);
}

/// A claim hands each due receipt out for a lease, still queued: a second claim at the same time (another
/// node's) gets nothing, and the receipt is due again when the lease ends (its sender may have died). A
/// recorded outcome ends the lease: a sent receipt is no longer due, a failed attempt is due at its retry time.
pub async fn channel_jobs_are_claimed_for_a_lease(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    let sids =
        |jobs: &[palaver_core::channel::ChannelJob]| jobs.iter().map(|j| j.receipt_sid.clone()).collect::<Vec<_>>();
    let claimed = world.store.due_channel_jobs(&ALL, T0, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(world.store.due_channel_jobs(&ALL, T0, LEASE, 10).await.unwrap().is_empty(), "a second claim gets nothing");
    assert_eq!(world.store.next_channel_job_due(&ALL).await.unwrap(), Some(T0 + LEASE), "due when the lease ends");
    let just_before = T0 + LEASE - std::time::Duration::from_millis(1);
    assert!(world.store.due_channel_jobs(&ALL, just_before, LEASE, 10).await.unwrap().is_empty());
    for participant in [&mixed.sms, &mixed.email] {
        assert_eq!(
            receipt_of(&world, &mixed, participant).await.status,
            DeliveryStatus::Queued,
            "claimed, still queued"
        );
    }

    let again = world.store.due_channel_jobs(&ALL, T0 + LEASE, LEASE, 10).await.unwrap();
    assert_eq!(sids(&again), sids(&claimed), "taken over when the lease ends");
    assert!(again.iter().all(|j| j.attempts == 0), "a lost claim is not a failed attempt");
    let (sms, email) = (&again[0], &again[1]);
    let sent =
        DeliveryUpdate { channel_message_sid: Some("SM0001".into()), ..update(DeliveryStatus::Sent, T0 + LEASE) };
    world.store.update_delivery(&ReceiptRef::Sid(sms.receipt_sid.clone()), sent).await.unwrap();
    let retry_at = T0 + LEASE + std::time::Duration::from_secs(5);
    let retry = DeliveryUpdate {
        retry_at: Some(retry_at),
        last_error: Some("gateway timeout".into()),
        ..update(DeliveryStatus::Queued, T0 + LEASE)
    };
    world.store.update_delivery(&ReceiptRef::Sid(email.receipt_sid.clone()), retry).await.unwrap();
    assert_eq!(world.store.next_channel_job_due(&ALL).await.unwrap(), Some(retry_at), "the retry replaces the lease");
    let retried = world.store.due_channel_jobs(&ALL, retry_at, LEASE, 10).await.unwrap();
    assert_eq!(
        retried.iter().map(|j| (j.receipt_sid.clone(), j.attempts)).collect::<Vec<_>>(),
        [(email.receipt_sid.clone(), 1)]
    );
    let later = world.store.due_channel_jobs(&ALL, at(100_000), LEASE, 10).await.unwrap();
    assert_eq!(sids(&later), std::slice::from_ref(&email.receipt_sid), "the sent receipt never again");
}

/// Claims made at once, as the dispatchers of several nodes make them, hand each due receipt to exactly one
/// claimer: the claimers' sets are disjoint and together hold every receipt.
pub async fn concurrent_claims_hand_each_receipt_to_one_claimer(factory: &dyn StoreFactory) {
    const MESSAGES: usize = 10;
    const CLAIMERS: usize = 6;
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    for i in 1..MESSAGES {
        world
            .send(&mixed.conversation, NewMessage { author: "alice".into(), ..new_message(&format!("m{i}")) })
            .await
            .unwrap();
    }
    let start = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (store, start) = (Arc::clone(&world.store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                store.due_channel_jobs(&ALL, T0, LEASE, 2 * MESSAGES as u32).await.unwrap()
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap().into_iter().map(|j| j.receipt_sid));
    }
    let distinct: BTreeSet<_> = claimed.iter().cloned().collect();
    assert_eq!((claimed.len(), distinct.len()), (2 * MESSAGES, 2 * MESSAGES), "each receipt claimed once");
    assert!(world.store.due_channel_jobs(&ALL, T0, LEASE, 100).await.unwrap().is_empty());
}

/// A recorded outcome moves the receipt and the message's counts, appends `delivery.updated`, and ends the
/// receipt's time in the outbox.
pub async fn delivery_updates_move_receipts_and_message_counts(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    let stream = mixed.conversation.sid.as_str();
    let receipt = receipt_of(&world, &mixed, &mixed.sms).await;
    let sent = DeliveryUpdate { channel_message_sid: Some("SM0001".into()), ..update(DeliveryStatus::Sent, at(2)) };
    let updated = world.store.update_delivery(&ReceiptRef::Sid(receipt.sid.clone()), sent).await.unwrap().unwrap();
    assert_eq!(
        (updated.status, updated.channel_message_sid.as_deref(), updated.date_updated),
        (DeliveryStatus::Sent, Some("SM0001"), at(2))
    );
    assert_eq!(receipt_of(&world, &mixed, &mixed.sms).await, updated);
    let jobs = world.store.due_channel_jobs(&ALL, at(1_000), LEASE, 10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.channel).collect::<Vec<_>>(),
        [BindingKind::Email],
        "a sent receipt is no longer due"
    );
    let message =
        world.store.get_message(&world.service, &by_sid(&mixed.conversation), &mixed.message.sid).await.unwrap();
    let counts = DeliveryCounts::queued(2).moved(DeliveryStatus::Queued, DeliveryStatus::Sent);
    assert_eq!(message.delivery, Some(counts));

    let events = world.events(stream).await;
    assert_whole_stream(&events);
    let last = events.last().unwrap();
    assert_eq!((last.kind, last.subject.as_str(), last.at), (EventKind::DeliveryUpdated, receipt.sid.as_str(), at(2)));
    assert_eq!((&last.origin, last.service_sid.as_str()), (&Origin::system(), world.service.as_str()));
    assert_eq!(last.data["sid"], mixed.message.sid.as_str());
    assert_eq!(
        (last.data["receipt"]["status"].as_str(), last.data["receipt"]["sid"].as_str()),
        (Some("sent"), Some(receipt.sid.as_str()))
    );

    // Status callbacks find the receipt by the channel's id.
    let delivered = world
        .store
        .update_delivery(&ReceiptRef::ChannelMessage("SM0001".into()), update(DeliveryStatus::Delivered, at(3)))
        .await;
    assert_eq!(delivered.unwrap().unwrap().status, DeliveryStatus::Delivered);
    let email = receipt_of(&world, &mixed, &mixed.email).await;
    let failed = DeliveryUpdate { error_code: Some(30003), ..update(DeliveryStatus::Failed, at(4)) };
    let failed = world.store.update_delivery(&ReceiptRef::Sid(email.sid), failed).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error_code), (DeliveryStatus::Failed, Some(30003)));
    assert!(world.store.due_channel_jobs(&ALL, at(1_000), LEASE, 10).await.unwrap().is_empty());
    assert_eq!(world.store.next_channel_job_due(&ALL).await.unwrap(), None);
    let message =
        world.store.get_message(&world.service, &by_sid(&mixed.conversation), &mixed.message.sid).await.unwrap();
    let counts = counts
        .moved(DeliveryStatus::Sent, DeliveryStatus::Delivered)
        .moved(DeliveryStatus::Queued, DeliveryStatus::Failed);
    assert_eq!(message.delivery, Some(counts));
    assert_eq!(world.events_of(stream, EventKind::DeliveryUpdated).await.len(), 3);

    // No receipt matches: nothing happens.
    let position = world.log_position().await;
    let none = world
        .store
        .update_delivery(&ReceiptRef::ChannelMessage("SM-unknown".into()), update(DeliveryStatus::Sent, at(5)))
        .await;
    assert_eq!(none.unwrap(), None);
    assert_eq!(world.log_position().await, position);
}

/// A late report never moves a receipt back (its channel id is kept), and appends nothing.
pub async fn a_receipt_status_never_moves_backwards(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    let receipt = receipt_of(&world, &mixed, &mixed.email).await;
    let by = ReceiptRef::Sid(receipt.sid.clone());
    world.store.update_delivery(&by, update(DeliveryStatus::Delivered, at(1))).await.unwrap();
    let position = world.log_position().await;
    let late =
        DeliveryUpdate { channel_message_sid: Some("<id@mail.example>".into()), ..update(DeliveryStatus::Sent, at(2)) };
    let after = world.store.update_delivery(&by, late).await.unwrap().unwrap();
    assert_eq!(after.status, DeliveryStatus::Delivered);
    assert_eq!(after.channel_message_sid.as_deref(), Some("<id@mail.example>"));
    assert_eq!(world.log_position().await, position);
    let back_to_queue = world.store.update_delivery(&by, update(DeliveryStatus::Queued, at(3))).await.unwrap().unwrap();
    assert_eq!(back_to_queue.status, DeliveryStatus::Delivered);
    assert!(world.store.due_channel_jobs(&[BindingKind::Email], at(1_000), LEASE, 10).await.unwrap().is_empty());
    let read = world.store.update_delivery(&by, update(DeliveryStatus::Read, at(4))).await.unwrap().unwrap();
    assert_eq!(read.status, DeliveryStatus::Read, "forward moves still apply");
}

/// When a participant leaves, its queued receipts fail: there is no one to send them to.
pub async fn a_leaving_participants_queued_receipts_fail(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mixed = mixed(&world).await;
    world
        .store
        .remove_participant(&world.service, &by_sid(&mixed.conversation), &participant_ref(&mixed.sms), at(1), &api())
        .await
        .unwrap();
    let jobs = world.store.due_channel_jobs(&ALL, at(1_000), LEASE, 10).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.channel).collect::<Vec<_>>(), [BindingKind::Email]);
    assert_eq!(receipt_of(&world, &mixed, &mixed.sms).await.status, DeliveryStatus::Failed);
    let message =
        world.store.get_message(&world.service, &by_sid(&mixed.conversation), &mixed.message.sid).await.unwrap();
    assert_eq!(message.delivery, Some(DeliveryCounts::queued(2).moved(DeliveryStatus::Queued, DeliveryStatus::Failed)));
    let events = world.events(mixed.conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    assert!(kinds(&events).ends_with(&["delivery.updated", "participant.removed"]), "{:?}", kinds(&events));
}

/// Inbound traffic finds the newest open conversation in which the sender takes part through the address it
/// wrote to; email addresses match ignoring case.
pub async fn inbound_traffic_finds_its_conversation_by_binding(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let with_sms = || vec![non_chat(BindingKind::Sms, "+15550100001", Some("+15559990000"))];
    let (older, _) = world.create(new_conversation(&world.service), with_sms()).await.unwrap();
    let (newer, _) = world.create(new_conversation(&world.service), with_sms()).await.unwrap();
    let find = async |channel: BindingKind, from: &str, to: &str| {
        world.store.find_conversation_by_binding(channel, from, to).await.unwrap()
    };
    assert_eq!(
        find(BindingKind::Sms, "+15550100001", "+15559990000").await,
        Some((world.service.clone(), newer.sid.clone()))
    );
    let close = ConversationPatch { state: Some(ConversationState::Closed), ..Default::default() };
    world.store.update_conversation(&world.service, &by_sid(&newer), close, &api()).await.unwrap();
    assert_eq!(
        find(BindingKind::Sms, "+15550100001", "+15559990000").await,
        Some((world.service.clone(), older.sid.clone())),
        "closed ones are skipped"
    );
    assert_eq!(find(BindingKind::Whatsapp, "+15550100001", "+15559990000").await, None, "the channel must match");
    assert_eq!(find(BindingKind::Sms, "+15550100001", "+15550000000").await, None, "our address must match");
    assert_eq!(find(BindingKind::Sms, "+15550100002", "+15559990000").await, None, "the sender must match");

    let mailed = Conversation {
        email_binding: EmailBinding { address: Some("Help@Shop.Example".into()), name: None },
        ..new_conversation(&world.service)
    };
    let (mailed, _) = world.create(mailed, vec![non_chat(BindingKind::Email, "Ann@Mail.Example", None)]).await.unwrap();
    assert_eq!(
        find(BindingKind::Email, "ann@mail.example", "help@shop.example").await,
        Some((world.service.clone(), mailed.sid))
    );
}

/// Address configurations are unique per address ignoring case, found by address, listed by type, changed
/// and deleted.
pub async fn address_configurations_are_unique_per_address(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let config = |kind: &str, address: &str| AddressConfiguration {
        sid: AddressConfigurationSid::generate(),
        kind: kind.to_string(),
        address: address.to_string(),
        friendly_name: Some(format!("{kind} line")),
        auto_creation: AutoCreation { enabled: true, kind: "default".into(), ..AutoCreation::default() },
        address_country: Some("US".into()),
        date_created: T0,
        date_updated: T0,
    };
    let sms = config("sms", "+15559990000");
    let email = config("email", "Support@Shop.Example");
    assert_eq!(store.create_address_configuration(sms.clone()).await.unwrap(), sms);
    assert_eq!(store.create_address_configuration(email.clone()).await.unwrap(), email);
    assert_fails(store.create_address_configuration(config("email", "support@shop.example")).await, |e| {
        matches!(e, Error::Conflict(Conflict::AddressConfigured(_)))
    });
    assert_eq!(store.get_address_configuration(&sms.sid).await.unwrap(), sms);
    assert_eq!(store.find_address_configuration("SUPPORT@shop.example").await.unwrap(), Some(email.clone()));
    assert_eq!(store.find_address_configuration("+15550000000").await.unwrap(), None);
    let all = walk(1, false, async |q| store.list_address_configurations(None, q).await).await;
    assert_eq!(all, [sms.clone(), email.clone()]);
    let only_email = store.list_address_configurations(Some("email".into()), first_page(10)).await.unwrap().items;
    assert_eq!(only_email, std::slice::from_ref(&email));

    let auto = AutoCreation {
        enabled: false,
        kind: "webhook".into(),
        webhook_url: Some("https://hooks.example/new".into()),
        webhook_filters: vec!["onMessageAdded".into()],
        ..AutoCreation::default()
    };
    let patch = AddressConfigurationPatch {
        friendly_name: Some("renamed".into()),
        auto_creation: Some(auto.clone()),
        now: Some(at(1)),
    };
    let updated = store.update_address_configuration(&sms.sid, patch).await.unwrap();
    assert_eq!(
        (updated.friendly_name.as_deref(), &updated.auto_creation, updated.date_updated),
        (Some("renamed"), &auto, at(1))
    );
    assert_eq!(store.get_address_configuration(&sms.sid).await.unwrap(), updated);

    store.delete_address_configuration(&sms.sid).await.unwrap();
    assert_fails(store.get_address_configuration(&sms.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_fails(store.delete_address_configuration(&sms.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_eq!(store.find_address_configuration("+15559990000").await.unwrap(), None);
    store.create_address_configuration(config("sms", "+15559990000")).await.unwrap();
}

/// Receipts are listed across conversations, newest first and page by page, with their recipient's address
/// (kept after the participant leaves), their sending state and their message; filtered by status, failure,
/// conversation and service.
pub async fn channel_deliveries_are_listed_across_conversations(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let first = mixed(&world).await;
    let second = mixed(&world).await;
    let sms = receipt_of(&world, &second, &second.sms).await;
    let failure = DeliveryUpdate {
        error_code: Some(30003),
        last_error: Some("the gateway answered 400".into()),
        ..update(DeliveryStatus::Failed, at(5))
    };
    world.store.update_delivery(&ReceiptRef::Sid(sms.sid.clone()), failure).await.unwrap();
    let email = receipt_of(&world, &first, &first.email).await;
    world
        .store
        .update_delivery(&ReceiptRef::Sid(email.sid.clone()), update(DeliveryStatus::Delivered, at(6)))
        .await
        .unwrap();
    world
        .store
        .remove_participant(&world.service, &by_sid(&first.conversation), &participant_ref(&first.sms), at(7), &api())
        .await
        .unwrap();

    let all = walk(1, true, async |q| world.store.list_channel_deliveries(ReceiptFilter::default(), q).await).await;
    let listed: Vec<_> = all.iter().map(|d| (d.receipt.participant_sid.clone(), d.receipt.status)).collect();
    assert_eq!(
        listed,
        [
            (second.email.sid.clone(), DeliveryStatus::Queued),
            (second.sms.sid.clone(), DeliveryStatus::Failed),
            (first.email.sid.clone(), DeliveryStatus::Delivered),
            (first.sms.sid.clone(), DeliveryStatus::Failed),
        ],
        "newest first, every receipt once, unchanged ones too"
    );
    let failed = &all[1];
    assert_eq!((failed.channel, failed.address.as_deref()), (BindingKind::Sms, Some("+15550100001")));
    assert_eq!((failed.receipt.error_code, failed.attempts), (Some(30003), 1));
    assert_eq!((failed.last_error.as_deref(), failed.next_attempt), (Some("the gateway answered 400"), None));
    assert_eq!((failed.message_index, failed.message_author.as_deref()), (Some(0), Some("alice")));
    assert_eq!(
        failed.message_delivery,
        Some(DeliveryCounts::queued(2).moved(DeliveryStatus::Queued, DeliveryStatus::Failed))
    );
    assert_eq!(failed.receipt, receipt_of(&world, &second, &second.sms).await);
    let queued = &all[0];
    assert_eq!((queued.channel, queued.address.as_deref()), (BindingKind::Email, Some("ann@mail.example")));
    assert_eq!((queued.attempts, queued.next_attempt), (0, Some(T0)));
    assert_eq!(all[3].address.as_deref(), Some("+15550100001"), "the address outlives the participant");

    let list = async |filter: ReceiptFilter| {
        let page = world.store.list_channel_deliveries(filter, first_page(10)).await.unwrap();
        page.items.iter().map(|d| d.receipt.participant_sid.clone()).collect::<Vec<_>>()
    };
    let failures = ReceiptFilter { failed: true, ..ReceiptFilter::default() };
    assert_eq!(list(failures.clone()).await, [first.sms.sid.clone(), second.sms.sid.clone()], "oldest first");
    let delivered = ReceiptFilter { status: Some(DeliveryStatus::Delivered), ..ReceiptFilter::default() };
    assert_eq!(list(delivered.clone()).await, std::slice::from_ref(&first.email.sid));
    assert!(list(ReceiptFilter { failed: true, ..delivered }).await.is_empty());
    let in_second = ReceiptFilter { conversation_sid: Some(second.conversation.sid.clone()), ..failures };
    assert_eq!(list(in_second).await, std::slice::from_ref(&second.sms.sid));
    let here = ReceiptFilter { service_sid: Some(world.service.clone()), ..ReceiptFilter::default() };
    assert_eq!(list(here).await.len(), 4);
    let elsewhere = world.store.create_service(new_service("elsewhere")).await.unwrap();
    assert!(list(ReceiptFilter { service_sid: Some(elsewhere.sid), ..ReceiptFilter::default() }).await.is_empty());
}
