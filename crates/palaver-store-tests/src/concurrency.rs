//! Concurrent writes, as many connections make them: every write that succeeds is kept with its event and a
//! distinct index and sequence number; a write that fails fails alone (or, for a backend that must, takes
//! only unacknowledged writes with it), and rules checked inside a write hold under races.

use std::collections::BTreeSet;
use std::sync::Arc;

use palaver_api::sid::MessageSid;
use palaver_core::error::{Conflict, Error};
use palaver_core::event::EventKind;
use palaver_core::model::{Conversation, ConversationState, Message};
use palaver_core::store::{ConversationPatch, NewMessage, Store};
use tokio::task::JoinHandle;

use crate::StoreFactory;
use crate::fixtures::*;

fn spawn_message(
    world: &World,
    conversation: &Conversation,
    message: NewMessage,
) -> JoinHandle<Result<Message, Error>> {
    let (store, service, conv) = (Arc::clone(&world.store), world.service.clone(), by_sid(conversation));
    tokio::spawn(async move { store.add_message(&service, &conv, message, &api()).await })
}

/// Concurrent messages to one conversation all succeed with distinct, dense indices, and the stream holds one
/// `message.added` per message with sequence numbers that have no gaps.
pub async fn concurrent_messages_get_distinct_indices_and_sequence_numbers(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let tasks: Vec<_> = (0..200).map(|i| spawn_message(&world, &conversation, new_message(&format!("m{i}")))).collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.unwrap().unwrap());
    }
    let indices: BTreeSet<i64> = sent.iter().map(|m| m.index).collect();
    assert_eq!(indices, (0..200).collect::<BTreeSet<_>>(), "200 distinct indices, none skipped");
    let stored = world.reload(&conversation).await;
    assert_eq!((stored.messages_count, stored.last_message_index), (200, Some(199)));

    let events = world.events(conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    let added: Vec<_> = events.iter().filter(|e| e.kind == EventKind::MessageAdded).collect();
    assert_eq!(added.len(), 200);
    for event in added {
        let message = sent.iter().find(|m| m.sid.as_str() == event.subject).expect("an event per acknowledged message");
        assert_eq!(event.data["index"], message.index);
        assert_eq!(event.data["body"], message.body.as_deref().unwrap());
    }
    // The log holds each of them once.
    let log = world.store.read_log(0, 1000).await.unwrap();
    let ids: BTreeSet<i64> = log.iter().map(|e| e.id).collect();
    assert_eq!((ids.len(), log.len()), (201, 201));
}

/// Concurrent writes to several conversations keep every stream whole, and the log holds each event once.
pub async fn concurrent_streams_stay_whole(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mut conversations = Vec::new();
    for _ in 0..4 {
        conversations.push(world.conversation().await);
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        for conversation in &conversations {
            tasks.push(spawn_message(&world, conversation, new_message(&format!("m{i}"))));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut total = 0;
    for conversation in &conversations {
        let events = world.events(conversation.sid.as_str()).await;
        assert_whole_stream(&events);
        assert_eq!(events.len(), 51);
        let indices: BTreeSet<_> = events[1..].iter().map(|e| e.data["index"].as_i64().unwrap()).collect();
        assert_eq!(indices, (0..50).collect::<BTreeSet<_>>());
        total += events.len();
    }
    let log = world.store.read_log(0, 10_000).await.unwrap();
    assert_eq!(log.len(), total);
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
}

/// Among concurrent writes, the ones refused by a rule (a unique name taken by the first of them) fail alone:
/// every other write is kept.
pub async fn a_failing_write_among_concurrent_ones_fails_alone(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let mut tasks: Vec<JoinHandle<Result<(), Error>>> = Vec::new();
    for i in 0..200 {
        if i % 10 == 0 {
            let (store, service) = (Arc::clone(&world.store), world.service.clone());
            tasks.push(tokio::spawn(async move {
                let named = Conversation { unique_name: Some("only-once".into()), ..new_conversation(&service) };
                store
                    .create_conversation(
                        palaver_core::store::NewConversation { conversation: named },
                        Vec::new(),
                        &api(),
                    )
                    .await
                    .map(drop)
            }));
        } else {
            let task = spawn_message(&world, &conversation, new_message(&format!("m{i}")));
            tasks.push(tokio::spawn(async move { task.await.unwrap().map(drop) }));
        }
    }
    let (mut kept, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => kept += 1,
            Err(Error::Conflict(Conflict::UniqueNameTaken(_))) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((kept, conflicts), (181, 19), "all but the first unique-name claim conflict, nothing else fails");
    let stored = world.reload(&conversation).await;
    assert_eq!((stored.messages_count, stored.last_message_index), (180, Some(179)), "indices stay dense");
    let page = world.store.list_conversations(&world.service, Default::default(), first_page(50)).await.unwrap();
    assert_eq!(page.items.len(), 2);
}

/// Messages refused because their conversation is closed leave the concurrent messages to an open one alone.
pub async fn messages_refused_by_a_rule_leave_concurrent_ones_alone(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let open = world.conversation().await;
    let closed = world.conversation().await;
    let close = ConversationPatch { state: Some(ConversationState::Closed), ..Default::default() };
    world.store.update_conversation(&world.service, &by_sid(&closed), close, &api()).await.unwrap();
    let position = world.store.stream_position(closed.sid.as_str()).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| spawn_message(&world, if i % 2 == 0 { &open } else { &closed }, new_message(&format!("m{i}"))))
        .collect();
    let (mut sent, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => sent += 1,
            Err(Error::ConversationClosed(_)) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((sent, refused), (100, 100));
    let open = world.reload(&open).await;
    assert_eq!((open.messages_count, open.last_message_index), (100, Some(99)));
    assert_eq!(world.reload(&closed).await.messages_count, 0);
    assert_eq!(world.store.stream_position(closed.sid.as_str()).await.unwrap(), position);
}

/// A write that fails part-way (a message whose SID is taken passes every rule and fails on insert) keeps
/// nothing that was not acknowledged: every acknowledged message is stored as acknowledged, with its event,
/// nothing else is stored, and the store goes on writing.
pub async fn unacknowledged_writes_leave_no_trace(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let taken = world.post(&conversation, "first").await.sid;
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let sid = if i == 150 { taken.clone() } else { MessageSid::generate() };
            spawn_message(&world, &conversation, NewMessage { sid, ..new_message(&format!("m{i}")) })
        })
        .collect();
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(message) => acknowledged.push(message),
            Err(Error::Storage(_)) => failed += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(failed >= 1, "the duplicate SID must fail");
    let stored = world.reload(&conversation).await;
    assert_eq!(stored.messages_count, acknowledged.len() as i64 + 1, "exactly the acknowledged messages were kept");
    let conv = by_sid(&conversation);
    for message in &acknowledged {
        let found = world.store.get_message(&world.service, &conv, &message.sid).await.unwrap();
        assert_eq!((found.index, found.body.as_deref()), (message.index, message.body.as_deref()));
    }
    let events = world.events_of(conversation.sid.as_str(), EventKind::MessageAdded).await;
    assert_eq!(events.len(), acknowledged.len() + 1, "one event per kept message, none for the others");
    assert_whole_stream(&world.events(conversation.sid.as_str()).await);
    let original = world.store.get_message(&world.service, &conv, &taken).await.unwrap();
    assert_eq!(original.body.as_deref(), Some("first"), "the failed write did not touch the message it collided with");
    assert_eq!(world.post(&conversation, "after").await.body.as_deref(), Some("after"));
}

/// Concurrent joins with one identity admit exactly one participant, with one event and one user.
pub async fn concurrent_joins_with_one_identity_admit_one(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, service, conv): (Arc<dyn Store>, _, _) =
                (Arc::clone(&world.store), world.service.clone(), by_sid(&conversation));
            tokio::spawn(async move { store.add_participant(&service, &conv, chat("racer"), &api()).await })
        })
        .collect();
    let (mut joined, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => joined += 1,
            Err(Error::Conflict(Conflict::ParticipantIdentityTaken(_))) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((joined, conflicts), (1, 19));
    assert_eq!(world.reload(&conversation).await.participants_count, 1);
    assert_eq!(world.events_of(conversation.sid.as_str(), EventKind::ParticipantAdded).await.len(), 1);
    assert_eq!(world.store.list_users(&world.service, first_page(50)).await.unwrap().items.len(), 1);
}

/// Concurrent claims of one unique name admit exactly one conversation.
pub async fn concurrent_claims_of_a_unique_name_admit_one(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mut candidates = Vec::new();
    for _ in 0..10 {
        candidates.push(world.conversation().await);
    }
    let tasks: Vec<_> = candidates
        .iter()
        .map(|c| {
            let (store, service, conv) = (Arc::clone(&world.store), world.service.clone(), by_sid(c));
            let patch = ConversationPatch { unique_name: Some(Some("contested".into())), ..Default::default() };
            tokio::spawn(async move { store.update_conversation(&service, &conv, patch, &api()).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(winner) => winners.push(winner.sid),
            Err(Error::Conflict(Conflict::UniqueNameTaken(_))) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let owner = world
        .store
        .get_conversation(&world.service, &palaver_core::store::ConversationRef::UniqueName("contested".into()))
        .await
        .unwrap();
    assert_eq!(owner.sid, winners[0]);
}

/// Concurrent sends with one idempotency key store one message, and every send answers with it.
pub async fn concurrent_idempotent_sends_store_one_message(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let message =
                NewMessage { idempotency_key: Some("retry-storm".into()), ..new_message(&format!("attempt {i}")) };
            spawn_message(&world, &conversation, message)
        })
        .collect();
    let mut answers = BTreeSet::new();
    for task in tasks {
        answers.insert(task.await.unwrap().unwrap().sid);
    }
    assert_eq!(answers.len(), 1, "every send answers with the same message");
    assert_eq!(world.reload(&conversation).await.messages_count, 1);
    assert_eq!(world.events_of(conversation.sid.as_str(), EventKind::MessageAdded).await.len(), 1);
}
