//! Messages: indices from a per-conversation counter that never goes back, idempotent sends, exact unread
//! counts, and the links and counts a message keeps.

use palaver_core::error::{Error, ResourceKind};
use palaver_core::event::EventKind;
use palaver_core::input::Attributes;
use palaver_core::model::{BindingKind, Conversation, Message};
use palaver_core::store::{ConversationPatch, NewMessage, PageQuery, ParticipantPatch, UserRef};

use crate::StoreFactory;
use crate::fixtures::*;

async fn delete(world: &World, conversation: &Conversation, message: &Message) {
    world.store.delete_message(&world.service, &by_sid(conversation), &message.sid, at(1), &api()).await.unwrap();
}

async fn indices(world: &World, conversation: &Conversation) -> Vec<i64> {
    walk(50, false, async |q| world.store.list_messages(&world.service, &by_sid(conversation), q).await)
        .await
        .into_iter()
        .map(|m| m.index)
        .collect()
}

/// Indices start at 0 and go up by one per message, in each conversation on its own; the conversation keeps
/// its count, last index and next index in step.
pub async fn message_indices_start_at_zero_and_increase(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (first, second) = (world.conversation().await, world.conversation().await);
    assert_eq!((first.messages_count, first.last_message_index, first.next_message_index), (0, None, 0));
    for i in 0..5 {
        let mut message = new_message(&format!("m{i}"));
        message.date_created = at(i);
        assert_eq!(world.send(&first, message).await.unwrap().index, i);
    }
    assert_eq!(world.post(&second, "other").await.index, 0, "indices are per conversation");
    let first = world.reload(&first).await;
    assert_eq!((first.messages_count, first.last_message_index, first.next_message_index), (5, Some(4), 5));
    assert_eq!(first.last_message_date, Some(at(4)));
    assert_eq!(indices(&world, &first).await, [0, 1, 2, 3, 4]);
}

/// A deleted message's index is never given again, not even when it was the newest.
pub async fn message_indices_are_never_reused(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let sent: Vec<Message> = post_many(&world, &conversation, 3).await;
    delete(&world, &conversation, &sent[2]).await;
    let after_newest = world.reload(&conversation).await;
    assert_eq!(
        (after_newest.messages_count, after_newest.last_message_index, after_newest.next_message_index),
        (2, Some(1), 3)
    );
    assert_eq!(world.post(&conversation, "after").await.index, 3);
    delete(&world, &conversation, &sent[0]).await;
    delete(&world, &conversation, &sent[1]).await;
    assert_eq!(indices(&world, &conversation).await, [3]);
    let all_gone = world.post(&conversation, "later").await;
    assert_eq!(all_gone.index, 4);
    let stored = world.reload(&conversation).await;
    assert_eq!((stored.messages_count, stored.last_message_index, stored.next_message_index), (2, Some(4), 5));
    assert_fails(world.store.get_message(&world.service, &by_sid(&conversation), &sent[0].sid).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Message, .. })
    });
    assert_fails(
        world.store.delete_message(&world.service, &by_sid(&conversation), &sent[0].sid, at(2), &api()).await,
        |e| matches!(e, Error::NotFound { .. }),
    );
}

async fn post_many(world: &World, conversation: &Conversation, n: usize) -> Vec<Message> {
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(world.post(conversation, &format!("m{i}")).await);
    }
    sent
}

/// Indices continue after a restart, skipping the ones deleted before it.
pub async fn message_indices_are_never_reused_across_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let sent = post_many(&world, &conversation, 3).await;
    delete(&world, &conversation, &sent[2]).await;
    let world = restart(factory, world).await;
    assert_eq!(world.reload(&conversation).await.next_message_index, 3);
    assert_eq!(world.post(&conversation, "after restart").await.index, 3);
    assert_eq!(indices(&world, &conversation).await, [0, 1, 3]);
    let events = world.events(conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    assert_eq!(events.len(), 6, "the log continues too");
}

/// A message keeps every field it was given, and links to the participant whose identity or address wrote it.
pub async fn messages_are_stored_as_given_and_linked_to_their_author(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let alice = world.join(&conversation, "alice").await;
    let phone = world
        .store
        .add_participant(
            &world.service,
            &by_sid(&conversation),
            non_chat(BindingKind::Sms, "+15550002222", None),
            &api(),
        )
        .await
        .unwrap();
    let imported = NewMessage {
        author: "alice".into(),
        subject: Some("Re: invoice".into()),
        attributes: Attributes::parse("Attributes", r#"{"k":"v"}"#, 4096).unwrap(),
        content_sid: Some("HX00000000000000000000000000000000".into()),
        date_created: at(-3600),
        date_updated: Some(at(-1800)),
        ..new_message("imported")
    };
    let stored = world.send(&conversation, imported).await.unwrap();
    assert_eq!(stored.participant_sid, Some(alice.sid.clone()));
    assert_eq!(
        (stored.author.as_str(), stored.body.as_deref(), stored.subject.as_deref()),
        ("alice", Some("imported"), Some("Re: invoice"))
    );
    assert_eq!(
        (stored.attributes.as_str(), stored.content_sid.as_deref()),
        (r#"{"k":"v"}"#, Some("HX00000000000000000000000000000000"))
    );
    assert_eq!((stored.date_created, stored.date_updated), (at(-3600), Some(at(-1800))));
    assert_eq!(
        (stored.conversation_sid.clone(), stored.service_sid.clone()),
        (conversation.sid.clone(), world.service.clone())
    );
    assert_eq!(world.store.get_message(&world.service, &by_sid(&conversation), &stored.sid).await.unwrap(), stored);

    let by_phone =
        world.send(&conversation, NewMessage { author: "+15550002222".into(), ..new_message("sms") }).await.unwrap();
    assert_eq!(by_phone.participant_sid, Some(phone.sid));
    let by_system = world.post(&conversation, "note").await;
    assert_eq!(by_system.participant_sid, None);
}

/// The same idempotency key in a conversation answers with the first message and stores nothing more.
pub async fn an_idempotency_key_returns_the_first_message(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let keyed = |body: &str, key: &str| NewMessage { idempotency_key: Some(key.to_string()), ..new_message(body) };
    let first = world.send(&conversation, keyed("first", "k-1")).await.unwrap();
    let position = world.log_position().await;
    let retry = world.send(&conversation, keyed("retried with another body", "k-1")).await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(world.log_position().await, position, "a retry appends no event");
    let stored = world.reload(&conversation).await;
    assert_eq!((stored.messages_count, stored.next_message_index), (1, 1), "a retry takes no index");

    // Another key is another message; the same key in another conversation is another message.
    assert_eq!(world.send(&conversation, keyed("second", "k-2")).await.unwrap().index, 1);
    let other = world.conversation().await;
    let elsewhere = world.send(&other, keyed("elsewhere", "k-1")).await.unwrap();
    assert_ne!(elsewhere.sid, first.sid);

    // A retry after the conversation closed still answers with the message it sent.
    let close = ConversationPatch { state: Some(palaver_core::model::ConversationState::Closed), ..Default::default() };
    world.store.update_conversation(&world.service, &by_sid(&conversation), close, &api()).await.unwrap();
    assert_eq!(world.send(&conversation, keyed("again", "k-1")).await.unwrap(), first);
    assert_eq!(world.events_of(conversation.sid.as_str(), EventKind::MessageAdded).await.len(), 2);
}

/// Keys survive a restart.
pub async fn idempotency_keys_survive_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let keyed = NewMessage { idempotency_key: Some("k".into()), ..new_message("once") };
    let first = world.send(&conversation, keyed.clone()).await.unwrap();
    let world = restart(factory, world).await;
    assert_eq!(
        world.send(&conversation, NewMessage { sid: palaver_api::sid::MessageSid::generate(), ..keyed }).await.unwrap(),
        first
    );
    assert_eq!(world.reload(&conversation).await.messages_count, 1);
}

async fn unread(world: &World, conversation: &Conversation, identity: &str) -> Option<i64> {
    let uc = world
        .store
        .get_user_conversation(&world.service, &UserRef::Identity(identity.into()), &by_sid(conversation))
        .await
        .unwrap();
    // The list says the same as the single read.
    let listed = walk(50, false, async |q| {
        world.store.list_user_conversations(&world.service, &UserRef::Identity(identity.into()), q).await
    })
    .await;
    let in_list = listed.iter().find(|l| l.conversation.sid == conversation.sid).expect("listed");
    assert_eq!(in_list.unread_messages_count, uc.unread_messages_count, "get and list agree");
    uc.unread_messages_count
}

async fn read_up_to(world: &World, conversation: &Conversation, identity: &str, horizon: Option<i64>) {
    let patch = ParticipantPatch { last_read_message_index: Some(horizon), now: Some(at(1)), ..Default::default() };
    let participant = palaver_core::store::ParticipantRef::Identity(identity.into());
    let updated = world
        .store
        .update_participant(&world.service, &by_sid(conversation), &participant, patch, &api())
        .await
        .unwrap();
    assert_eq!(updated.last_read_message_index, horizon);
}

/// Without a read horizon the unread count is unknown, not zero.
pub async fn unread_count_is_none_without_a_horizon(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    world.join(&conversation, "reader").await;
    assert_eq!(unread(&world, &conversation, "reader").await, None);
    post_many(&world, &conversation, 3).await;
    assert_eq!(unread(&world, &conversation, "reader").await, None);
    read_up_to(&world, &conversation, "reader", Some(0)).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(2));
    read_up_to(&world, &conversation, "reader", None).await;
    assert_eq!(unread(&world, &conversation, "reader").await, None, "a cleared horizon is unknown again");
}

/// The unread count is the number of messages that still exist above the horizon.
pub async fn unread_count_counts_existing_messages_above_the_horizon(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    world.join(&conversation, "reader").await;
    let sent = post_many(&world, &conversation, 5).await;
    read_up_to(&world, &conversation, "reader", Some(1)).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(3));
    delete(&world, &conversation, &sent[3]).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(2), "a removed message is not unread");
    delete(&world, &conversation, &sent[0]).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(2), "removals below the horizon change nothing");
    delete(&world, &conversation, &sent[1]).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(2), "nor does removing the horizon's message");
    world.post(&conversation, "new").await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(3));
    read_up_to(&world, &conversation, "reader", Some(5)).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(0));
    read_up_to(&world, &conversation, "reader", Some(1000)).await;
    assert_eq!(unread(&world, &conversation, "reader").await, Some(0), "a horizon past the end leaves nothing unread");
    // Each participant has its own horizon.
    world.join(&conversation, "other").await;
    read_up_to(&world, &conversation, "other", Some(2)).await;
    assert_eq!(unread(&world, &conversation, "other").await, Some(2));
}

/// Unread counts stay exact over long conversations with many removals, wherever the horizon is.
pub async fn unread_count_stays_exact_across_large_gaps(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    world.join(&conversation, "reader").await;
    let mut sent = Vec::new();
    // Concurrent sends group-commit, which keeps a long conversation quick to build.
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (store, service, conv) = (world.store.clone(), world.service.clone(), by_sid(&conversation));
            tokio::spawn(async move { store.add_message(&service, &conv, new_message(&format!("m{i}")), &api()).await })
        })
        .collect();
    for task in tasks {
        sent.push(task.await.unwrap().unwrap());
    }
    sent.sort_by_key(|m| m.index);
    // Remove a long run and a scattering: indices 100..300 and every seventh one.
    let removed: Vec<&Message> = sent.iter().filter(|m| (100..300).contains(&m.index) || m.index % 7 == 0).collect();
    let deletions: Vec<_> = removed
        .iter()
        .map(|m| {
            let (store, service, conv, sid) =
                (world.store.clone(), world.service.clone(), by_sid(&conversation), m.sid.clone());
            tokio::spawn(async move { store.delete_message(&service, &conv, &sid, at(1), &api()).await })
        })
        .collect();
    for task in deletions {
        task.await.unwrap().unwrap();
    }
    let existing: Vec<i64> = indices(&world, &conversation).await;
    assert_eq!(existing.len(), 400 - removed.len());
    for horizon in [0, 6, 7, 99, 100, 150, 299, 300, 301, 398, 399, 500] {
        read_up_to(&world, &conversation, "reader", Some(horizon)).await;
        let expected = existing.iter().filter(|&&i| i > horizon).count() as i64;
        assert_eq!(unread(&world, &conversation, "reader").await, Some(expected), "horizon {horizon}");
    }
}

/// A page of messages says whether more messages lie before its first item in list order.
pub async fn message_pages_report_whether_messages_lead_them(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let conv = by_sid(&conversation);
    let empty = world.store.list_messages_and_lead(&world.service, &conv, first_page(2)).await.unwrap();
    assert_eq!((empty.0.items.len(), empty.1), (0, false));
    let sent = post_many(&world, &conversation, 5).await;
    let (first, lead) = world.store.list_messages_and_lead(&world.service, &conv, first_page(2)).await.unwrap();
    assert_eq!((first.items.iter().map(|m| m.index).collect::<Vec<_>>(), lead), (vec![0, 1], false));
    let second_query = PageQuery { cursor: first.next, ..first_page(2) };
    let (second, lead) = world.store.list_messages_and_lead(&world.service, &conv, second_query).await.unwrap();
    assert_eq!((second.items.iter().map(|m| m.index).collect::<Vec<_>>(), lead), (vec![2, 3], true));
    let newest = PageQuery { descending: true, ..first_page(2) };
    let (page, lead) = world.store.list_messages_and_lead(&world.service, &conv, newest).await.unwrap();
    assert_eq!((page.items.iter().map(|m| m.index).collect::<Vec<_>>(), lead), (vec![4, 3], false));
    let older = PageQuery { cursor: page.next, ..newest };
    let (page, lead) = world.store.list_messages_and_lead(&world.service, &conv, older).await.unwrap();
    assert_eq!((page.items.iter().map(|m| m.index).collect::<Vec<_>>(), lead), (vec![2, 1], true));
    // A removed message leads nothing.
    delete(&world, &conversation, &sent[0]).await;
    let (page, lead) = world.store.list_messages_and_lead(&world.service, &conv, first_page(2)).await.unwrap();
    assert_eq!((page.items.iter().map(|m| m.index).collect::<Vec<_>>(), lead), (vec![1, 2], false));
}
