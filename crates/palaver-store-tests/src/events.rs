//! The event log: every mutation appends its event, in the same transaction, with the stream's next sequence
//! number; the log is read by stream and sequence number or as a whole by log id.

use palaver_api::realtime::UserConversationChange;
use palaver_core::event::{self, EventKind, Origin, Source};
use palaver_core::input::{Attributes, NotificationLevel};
use palaver_core::model::ConversationState;
use palaver_core::store::{ConversationPatch, MessagePatch, ParticipantPatch, UserRef};

use crate::StoreFactory;
use crate::fixtures::*;

/// Creating, changing, closing and deleting a conversation append `conversation.*` events to its stream.
pub async fn conversation_changes_append_their_events(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_eq!(world.log_position().await, 0, "bootstrapping appends nothing");
    let created = world.conversation().await;
    let stream = created.sid.as_str();
    assert_eq!(world.store.stream_position(stream).await.unwrap(), 1);

    let rename =
        ConversationPatch { friendly_name: Some(Some("renamed".into())), now: Some(at(1)), ..Default::default() };
    let renamed = world.store.update_conversation(&world.service, &by_sid(&created), rename, &api()).await.unwrap();
    let close = ConversationPatch { state: Some(ConversationState::Closed), now: Some(at(2)), ..Default::default() };
    let closed = world.store.update_conversation(&world.service, &by_sid(&created), close, &api()).await.unwrap();
    world.store.delete_conversation(&world.service, &by_sid(&created), at(3), &api()).await.unwrap();

    // The log outlives the conversation: clients that resume still learn that it was removed.
    let events = world.events(stream).await;
    assert_whole_stream(&events);
    assert_eq!(
        kinds(&events),
        [
            "conversation.added",
            "conversation.updated",
            "conversation.updated",
            "conversation.state_updated",
            "conversation.removed"
        ]
    );
    assert!(events.iter().all(|e| e.subject == stream && e.stream == stream));
    assert!(events.iter().all(|e| e.service_sid == world.service.as_str()));
    assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), [T0, at(1), at(2), at(2), at(3)]);
    assert_eq!(events[0].data, event::conversation_snapshot(&created));
    assert_eq!(events[1].data, event::conversation_snapshot(&renamed));
    assert_eq!(events[3].data, event::conversation_snapshot(&closed));
    assert_eq!(events[4].data["friendly_name"], "renamed", "a removal carries the last state");
    assert_eq!(world.store.stream_position(stream).await.unwrap(), 5);
    assert_eq!(world.log_position().await, events[4].id);
}

/// Adding, changing and removing a participant append `participant.*` events to the conversation's stream.
pub async fn participant_changes_append_their_events(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let stream = conversation.sid.as_str();
    let alice = world.join(&conversation, "alice").await;
    let patch = ParticipantPatch {
        attributes: Some(Attributes::parse("Attributes", r#"{"x":1}"#, 4096).unwrap()),
        now: Some(at(1)),
        ..Default::default()
    };
    let updated = world
        .store
        .update_participant(&world.service, &by_sid(&conversation), &participant_ref(&alice), patch, &api())
        .await
        .unwrap();
    assert_eq!(updated.attributes.as_str(), r#"{"x":1}"#);
    assert_eq!(updated.date_updated, at(1));
    world
        .store
        .remove_participant(&world.service, &by_sid(&conversation), &participant_ref(&alice), at(2), &api())
        .await
        .unwrap();

    let events = world.events(stream).await;
    assert_whole_stream(&events);
    assert_eq!(
        kinds(&events),
        ["conversation.added", "participant.added", "participant.updated", "participant.removed"]
    );
    assert!(events[1..].iter().all(|e| e.subject == alice.sid.as_str()));
    assert_eq!(events[1].data, event::participant_snapshot(&alice));
    assert_eq!(events[2].data, event::participant_snapshot(&updated));
    assert_eq!(events[3].data, event::participant_snapshot(&updated), "a removal carries the last state");
    assert_eq!(events[3].at, at(2));
}

/// Adding, editing and deleting a message append `message.*` events to the conversation's stream, carrying
/// the message as stored.
pub async fn message_changes_append_their_events(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let stream = conversation.sid.as_str();
    let added = world.send(&conversation, new_message("hello")).await.unwrap();
    let stored = world.store.get_message(&world.service, &by_sid(&conversation), &added.sid).await.unwrap();
    assert_eq!(added, stored, "add_message answers with the message as stored");
    let patch =
        MessagePatch { body: Some("edited".into()), date_updated: Some(at(1)), now: Some(at(1)), ..Default::default() };
    let edited =
        world.store.update_message(&world.service, &by_sid(&conversation), &added.sid, patch, &api()).await.unwrap();
    assert_eq!((edited.body.as_deref(), edited.date_updated), (Some("edited"), Some(at(1))));
    assert_eq!(world.store.get_message(&world.service, &by_sid(&conversation), &added.sid).await.unwrap(), edited);
    world.store.delete_message(&world.service, &by_sid(&conversation), &added.sid, at(2), &api()).await.unwrap();

    let events = world.events(stream).await;
    assert_whole_stream(&events);
    assert_eq!(kinds(&events), ["conversation.added", "message.added", "message.updated", "message.removed"]);
    assert!(events[1..].iter().all(|e| e.subject == added.sid.as_str()));
    assert_eq!(events[1].data, event::message_snapshot(&stored));
    assert_eq!(events[2].data, event::message_snapshot(&edited));
    assert_eq!(events[3].data, event::message_snapshot(&edited));
    assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), [T0, T0, at(1), at(2)]);
}

/// Each event records who caused it and whether webhooks fire for it.
pub async fn events_record_their_origin(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let conv = by_sid(&conversation);
    let origins = [Origin::api(false), Origin::api(true), Origin::sdk("alice"), Origin::inbound(Source::Sms)];
    for origin in &origins {
        world.store.add_message(&world.service, &conv, new_message("hi"), origin).await.unwrap();
    }
    let events = world.events_of(conversation.sid.as_str(), EventKind::MessageAdded).await;
    assert_eq!(events.iter().map(|e| e.origin.clone()).collect::<Vec<_>>(), origins);
    assert_eq!(events[2].origin.client_identity.as_deref(), Some("alice"));
    assert!(!events[0].origin.webhooks);
}

/// Streams are numbered on their own; the log orders all of them by commit, and both read from a position.
pub async fn the_log_is_read_by_stream_or_as_a_whole(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (a, b) = (world.conversation().await, world.conversation().await);
    for i in 0..5 {
        world.post(&a, &format!("a{i}")).await;
        world.post(&b, &format!("b{i}")).await;
    }
    assert_eq!(world.store.stream_position(a.sid.as_str()).await.unwrap(), 6);
    assert_eq!(world.store.stream_position(b.sid.as_str()).await.unwrap(), 6);
    assert_eq!(world.store.stream_position("CH00000000000000000000000000000000").await.unwrap(), 0);
    assert!(world.store.read_events("CH00000000000000000000000000000000", 0, 10).await.unwrap().is_empty());

    // By stream: after a sequence number, at most `limit`.
    let window = world.store.read_events(a.sid.as_str(), 2, 3).await.unwrap();
    assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(window.iter().all(|e| e.stream == a.sid.as_str()));
    assert!(world.store.read_events(a.sid.as_str(), 6, 10).await.unwrap().is_empty());

    // As a whole: every event once, in commit order, after a log id.
    let log = world.store.read_log(0, 100).await.unwrap();
    assert_eq!(log.len(), 12);
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
    let bodies: Vec<String> =
        log.iter().filter_map(|e| e.data["body"].as_str().map(str::to_string)).collect::<Vec<_>>();
    let expected: Vec<String> = (0..5).flat_map(|i| [format!("a{i}"), format!("b{i}")]).collect();
    assert_eq!(bodies, expected);
    assert_eq!(world.log_position().await, log.last().unwrap().id);
    let tail = world.store.read_log(log[8].id, 2).await.unwrap();
    assert_eq!(tail, log[9..11].to_vec());
    let mut by_stream = world.events(a.sid.as_str()).await;
    by_stream.extend(world.events(b.sid.as_str()).await);
    by_stream.sort_by_key(|e| e.id);
    assert_eq!(by_stream, log, "the streams together are the log");
}

/// Joining appends `user.conversation_joined` to the user's stream, pointing at the `participant.added` event;
/// leaving appends `user.conversation_left`, and so does the conversation's deletion.
pub async fn joining_and_leaving_appear_on_the_users_stream(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (first, second) = (world.conversation().await, world.conversation().await);
    let in_first = world.join(&first, "alice").await;
    world.join(&second, "alice").await;
    let user = world.store.get_user(&world.service, &UserRef::Identity("alice".into())).await.unwrap();
    world
        .store
        .remove_participant(&world.service, &by_sid(&first), &participant_ref(&in_first), at(1), &api())
        .await
        .unwrap();
    world.store.delete_conversation(&world.service, &by_sid(&second), at(2), &api()).await.unwrap();

    let events = world.events(user.sid.as_str()).await;
    assert_whole_stream(&events);
    assert_eq!(
        kinds(&events),
        [
            "user.added",
            "user.conversation_joined",
            "user.conversation_joined",
            "user.conversation_left",
            "user.conversation_left"
        ],
        "the user was created by joining, then joined, left and lost a conversation"
    );
    let subjects: Vec<&str> = events[1..].iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, [first.sid.as_str(), second.sid.as_str(), first.sid.as_str(), second.sid.as_str()]);
    for (joined, conversation) in [(&events[1], &first), (&events[2], &second)] {
        let change: UserConversationChange = serde_json::from_value(joined.data.clone()).unwrap();
        let added = world.events_of(conversation.sid.as_str(), EventKind::ParticipantAdded).await;
        assert_eq!(change.joined_at_seq, Some(added[0].seq), "the join points at participant.added");
        assert_eq!(change.conversation.sid, conversation.sid.as_str());
        assert_eq!(change.participant.identity.as_deref(), Some("alice"));
    }
    let left: UserConversationChange = serde_json::from_value(events[3].data.clone()).unwrap();
    assert_eq!((left.joined_at_seq, left.participant.sid.as_str()), (None, in_first.sid.as_str()));
    assert_eq!((events[3].at, events[4].at), (at(1), at(2)));
    assert!(events.iter().all(|e| e.stream == user.sid.as_str()));
}

/// Moving the read horizon or the notification level appends `user.conversation_updated`; other changes of
/// the participant do not.
pub async fn horizon_and_level_changes_appear_on_the_users_stream(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let alice = world.join(&conversation, "alice").await;
    world.post(&conversation, "one").await;
    let user = world.store.get_user(&world.service, &UserRef::Identity("alice".into())).await.unwrap();
    let update = |patch: ParticipantPatch| {
        let (store, service, conv, p) =
            (world.store.clone(), world.service.clone(), by_sid(&conversation), participant_ref(&alice));
        async move { store.update_participant(&service, &conv, &p, patch, &api()).await.unwrap() }
    };
    let before = world.store.stream_position(user.sid.as_str()).await.unwrap();
    update(ParticipantPatch {
        attributes: Some(Attributes::parse("Attributes", "{}", 10).unwrap()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        world.store.stream_position(user.sid.as_str()).await.unwrap(),
        before,
        "attributes are not the user's view"
    );

    let read =
        update(ParticipantPatch { last_read_message_index: Some(Some(0)), now: Some(at(1)), ..Default::default() })
            .await;
    let muted = update(ParticipantPatch {
        notification_level: Some(NotificationLevel::Muted),
        now: Some(at(2)),
        ..Default::default()
    })
    .await;
    assert_eq!(muted.notification_level, NotificationLevel::Muted);
    let events = world.events(user.sid.as_str()).await;
    assert_whole_stream(&events);
    let updates: Vec<_> = events.iter().filter(|e| e.kind == EventKind::UserConversationUpdated).collect();
    assert_eq!(updates.len(), 2);
    assert_eq!(kinds(&events).last(), Some(&"user.conversation_updated"));
    assert!(updates.iter().all(|e| e.subject == conversation.sid.as_str()));
    let change: UserConversationChange = serde_json::from_value(updates[0].data.clone()).unwrap();
    assert_eq!(change.participant.last_read_message_index, read.last_read_message_index);
    let change: UserConversationChange = serde_json::from_value(updates[1].data.clone()).unwrap();
    assert_eq!(change.notification_level.as_deref(), Some("muted"));
    assert_eq!((updates[0].at, updates[1].at), (at(1), at(2)));
}
