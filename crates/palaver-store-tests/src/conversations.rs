//! Conversations: unique names, the rules checked inside a write (which change nothing and append nothing when
//! they refuse), the closed state, filters, and creation together with participants.

use palaver_core::error::{Conflict, Error, ResourceKind};
use palaver_core::input::{Attributes, NotificationLevel};
use palaver_core::model::{Conversation, ConversationState};
use palaver_core::store::{
    ConversationFilter, ConversationPatch, ConversationRef, MessagePatch, ParticipantPatch, UserRef,
};

use crate::StoreFactory;
use crate::fixtures::*;

/// What a refused write must leave as it was: the whole log and the conversation's stored state.
async fn snapshot(world: &World, conversation: &Conversation) -> (i64, i64, Conversation) {
    let stream = world.store.stream_position(conversation.sid.as_str()).await.unwrap();
    (world.log_position().await, stream, world.reload(conversation).await)
}

fn rename(unique_name: Option<&str>) -> ConversationPatch {
    ConversationPatch { unique_name: Some(unique_name.map(str::to_string)), now: Some(at(1)), ..Default::default() }
}

/// A unique name is taken once per service, by creation or by rename; a refusal appends nothing.
pub async fn unique_names_are_unique_per_service(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let owner = world.named("support").await.unwrap();
    let other = world.conversation().await;
    let before = snapshot(&world, &other).await;

    assert_fails(
        world.named("support").await,
        |e| matches!(e, Error::Conflict(Conflict::UniqueNameTaken(name)) if name == "support"),
    );
    assert_fails(
        world.store.update_conversation(&world.service, &by_sid(&other), rename(Some("support")), &api()).await,
        |e| matches!(e, Error::Conflict(Conflict::UniqueNameTaken(_))),
    );
    assert_eq!(snapshot(&world, &other).await, before, "refused names change nothing and append nothing");
    let listed = world.store.list_conversations(&world.service, ConversationFilter::default(), first_page(50)).await;
    assert_eq!(listed.unwrap().items.len(), 2, "the refused creation left no conversation");

    // Keeping one's own name is no conflict.
    let kept = world.store.update_conversation(&world.service, &by_sid(&owner), rename(Some("support")), &api()).await;
    assert_eq!(kept.unwrap().unique_name.as_deref(), Some("support"));
}

/// A cleared unique name is free again.
pub async fn a_cleared_unique_name_can_be_reused(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let first = world.named("desk").await.unwrap();
    let cleared = world.store.update_conversation(&world.service, &by_sid(&first), rename(None), &api()).await.unwrap();
    assert_eq!(cleared.unique_name, None);
    assert_fails(
        world.store.get_conversation(&world.service, &ConversationRef::UniqueName("desk".into())).await,
        |e| matches!(e, Error::NotFound { kind: ResourceKind::Conversation, .. }),
    );
    let second = world.named("desk").await.unwrap();
    let found = world.store.get_conversation(&world.service, &ConversationRef::UniqueName("desk".into())).await;
    assert_eq!(found.unwrap().sid, second.sid);
    // And renaming frees the old name too.
    world.store.update_conversation(&world.service, &by_sid(&second), rename(Some("desk-2")), &api()).await.unwrap();
    assert_eq!(world.named("desk").await.unwrap().unique_name.as_deref(), Some("desk"));
}

/// A deleted conversation's unique name is free again.
pub async fn a_deleted_conversations_unique_name_can_be_reused(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let first = world.named("gone").await.unwrap();
    world
        .store
        .delete_conversation(&world.service, &ConversationRef::UniqueName("gone".into()), at(1), &api())
        .await
        .unwrap();
    assert_fails(world.store.get_conversation(&world.service, &by_sid(&first)).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    let second = world.named("gone").await.unwrap();
    assert_ne!(second.sid, first.sid);
}

/// The same unique name in two services names two conversations, each found in its own service.
pub async fn the_same_unique_name_in_two_services_is_fine(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let elsewhere = World { store: world.store.clone(), service: other.sid.clone() };
    let here = world.named("shared").await.unwrap();
    let there = elsewhere.named("shared").await.unwrap();
    let by_name = ConversationRef::UniqueName("shared".into());
    assert_eq!(world.store.get_conversation(&world.service, &by_name).await.unwrap().sid, here.sid);
    assert_eq!(world.store.get_conversation(&other.sid, &by_name).await.unwrap().sid, there.sid);
    // A conversation is found only in its own service, by SID too.
    assert_fails(world.store.get_conversation(&other.sid, &by_sid(&here)).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
}

/// Every operation that takes a conversation accepts its unique name.
pub async fn conversations_are_addressed_by_unique_name(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let created = world.named("lobby").await.unwrap();
    let lobby = ConversationRef::UniqueName("lobby".into());
    assert_eq!(world.store.get_conversation(&world.service, &lobby).await.unwrap(), created);
    let patch = ConversationPatch { friendly_name: Some(Some("Lobby".into())), now: Some(at(1)), ..Default::default() };
    let updated = world.store.update_conversation(&world.service, &lobby, patch, &api()).await.unwrap();
    assert_eq!((updated.sid.clone(), updated.friendly_name.as_deref()), (created.sid.clone(), Some("Lobby")));
    let participant = world.store.add_participant(&world.service, &lobby, chat("alice"), &api()).await.unwrap();
    assert_eq!(participant.conversation_sid, created.sid);
    let message = world.store.add_message(&world.service, &lobby, new_message("hi"), &api()).await.unwrap();
    assert_eq!(message.conversation_sid, created.sid);
    let listed = world.store.list_messages(&world.service, &lobby, first_page(10)).await.unwrap();
    assert_eq!(listed.items, [message]);
    let uc = world.store.get_user_conversation(&world.service, &UserRef::Identity("alice".into()), &lobby).await;
    assert_eq!(uc.unwrap().conversation.sid, created.sid);
}

/// A taken identity refuses a second participant, by adding or by renaming, and the refusal appends nothing.
pub async fn a_taken_participant_identity_changes_nothing(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    world.join(&conversation, "alice").await;
    let bob = world.join(&conversation, "bob").await;
    let before = snapshot(&world, &conversation).await;
    assert_fails(
        world.store.add_participant(&world.service, &by_sid(&conversation), chat("alice"), &api()).await,
        |e| matches!(e, Error::Conflict(Conflict::ParticipantIdentityTaken(_))),
    );
    let patch = ParticipantPatch { identity: Some(chat("alice").identity.unwrap()), ..Default::default() };
    assert_fails(
        world
            .store
            .update_participant(&world.service, &by_sid(&conversation), &participant_ref(&bob), patch, &api())
            .await,
        |e| matches!(e, Error::Conflict(Conflict::ParticipantIdentityTaken(_))),
    );
    assert_eq!(snapshot(&world, &conversation).await, before);
    assert_eq!(world.reload(&conversation).await.participants_count, 2);
}

/// A taken address refuses a second non-chat participant, and the non-chat limit is enforced.
pub async fn non_chat_participants_are_unique_and_limited(factory: &dyn StoreFactory) {
    use palaver_core::input::MAX_NON_CHAT_PARTICIPANTS;
    use palaver_core::model::BindingKind;
    let world = world(factory).await;
    let participants: Vec<_> = (0..MAX_NON_CHAT_PARTICIPANTS)
        .map(|i| non_chat(BindingKind::Sms, &format!("+1555000{i:04}"), Some("+15559999999")))
        .collect();
    let (conversation, added) = world.create(new_conversation(&world.service), participants).await.unwrap();
    assert_eq!(added.len(), MAX_NON_CHAT_PARTICIPANTS);
    assert_eq!(conversation.participants_count, MAX_NON_CHAT_PARTICIPANTS as i64);
    let before = snapshot(&world, &conversation).await;
    let conv = by_sid(&conversation);
    assert_fails(
        world
            .store
            .add_participant(&world.service, &conv, non_chat(BindingKind::Sms, "+15550000000", None), &api())
            .await,
        |e| matches!(e, Error::Conflict(Conflict::ParticipantAddressTaken(_)) | Error::LimitExceeded(_)),
    );
    assert_fails(
        world
            .store
            .add_participant(&world.service, &conv, non_chat(BindingKind::Sms, "+15551234567", None), &api())
            .await,
        |e| matches!(e, Error::LimitExceeded(palaver_core::error::Limit::NonChatParticipants(_))),
    );
    assert_eq!(snapshot(&world, &conversation).await, before);
    // Chat participants do not count against the non-chat limit.
    world.join(&conversation, "alice").await;

    let small = world.conversation().await;
    world
        .store
        .add_participant(&world.service, &by_sid(&small), non_chat(BindingKind::Sms, "+15550000001", None), &api())
        .await
        .unwrap();
    assert_fails(
        world
            .store
            .add_participant(&world.service, &by_sid(&small), non_chat(BindingKind::Sms, "+15550000001", None), &api())
            .await,
        |e| matches!(e, Error::Conflict(Conflict::ParticipantAddressTaken(_))),
    );
}

/// A conversation takes at most [`MAX_PARTICIPANTS`](palaver_core::input::MAX_PARTICIPANTS) participants.
pub async fn the_participant_limit_is_enforced(factory: &dyn StoreFactory) {
    use palaver_core::input::MAX_PARTICIPANTS;
    let world = world(factory).await;
    let participants: Vec<_> = (0..MAX_PARTICIPANTS).map(|i| chat(&format!("user-{i}"))).collect();
    let (conversation, _) = world.create(new_conversation(&world.service), participants).await.unwrap();
    assert_eq!(conversation.participants_count, MAX_PARTICIPANTS as i64);
    let before = snapshot(&world, &conversation).await;
    assert_fails(
        world.store.add_participant(&world.service, &by_sid(&conversation), chat("one-more"), &api()).await,
        |e| matches!(e, Error::LimitExceeded(palaver_core::error::Limit::Participants(_))),
    );
    assert_eq!(snapshot(&world, &conversation).await, before);
    assert_fails(world.store.get_user(&world.service, &UserRef::Identity("one-more".into())).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
}

/// Creating a conversation with participants is one transaction: a refused participant leaves no conversation,
/// no participant, no user and no event.
pub async fn creating_with_participants_is_all_or_nothing(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = new_conversation(&world.service);
    let refused = world.create(conversation.clone(), vec![chat("carol"), chat("dave"), chat("carol")]).await;
    assert_fails(refused, |e| matches!(e, Error::Conflict(Conflict::ParticipantIdentityTaken(_))));
    assert_fails(world.store.get_conversation(&world.service, &by_sid(&conversation)).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    for identity in ["carol", "dave"] {
        assert_fails(world.store.get_user(&world.service, &UserRef::Identity(identity.into())).await, |e| {
            matches!(e, Error::NotFound { .. })
        });
    }
    assert_eq!(world.log_position().await, 0);
    assert_eq!(world.store.stream_position(conversation.sid.as_str()).await.unwrap(), 0);

    let (created, participants) = world.create(conversation, vec![chat("carol"), chat("dave")]).await.unwrap();
    assert_eq!(created.participants_count, 2);
    assert_eq!(
        participants.iter().map(|p| p.identity.clone().unwrap().as_str().to_string()).collect::<Vec<_>>(),
        ["carol", "dave"]
    );
    let events = world.events(created.sid.as_str()).await;
    assert_whole_stream(&events);
    assert_eq!(kinds(&events), ["conversation.added", "participant.added", "participant.added"]);
}

/// A closed conversation refuses every change but reading progress and deletion, and a refusal appends nothing.
pub async fn a_closed_conversation_refuses_changes(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let alice = world.join(&conversation, "alice").await;
    let message = world.post(&conversation, "before closing").await;
    let close = ConversationPatch { state: Some(ConversationState::Closed), now: Some(at(1)), ..Default::default() };
    world.store.update_conversation(&world.service, &by_sid(&conversation), close, &api()).await.unwrap();
    let before = snapshot(&world, &conversation).await;
    let conv = by_sid(&conversation);
    let closed = |e: &Error| matches!(e, Error::ConversationClosed(sid) if *sid == conversation.sid.to_string());

    assert_fails(world.send(&conversation, new_message("after closing")).await, closed);
    assert_fails(world.store.add_participant(&world.service, &conv, chat("bob"), &api()).await, closed);
    let reopen = ConversationPatch { state: Some(ConversationState::Active), ..Default::default() };
    assert_fails(world.store.update_conversation(&world.service, &conv, reopen, &api()).await, closed);
    let edit = MessagePatch { body: Some("edited".into()), ..Default::default() };
    assert_fails(world.store.update_message(&world.service, &conv, &message.sid, edit, &api()).await, closed);
    assert_fails(world.store.delete_message(&world.service, &conv, &message.sid, at(2), &api()).await, closed);
    let attributes = ParticipantPatch {
        attributes: Some(Attributes::parse("Attributes", r#"{"a":1}"#, 100).unwrap()),
        ..Default::default()
    };
    assert_fails(
        world.store.update_participant(&world.service, &conv, &participant_ref(&alice), attributes, &api()).await,
        closed,
    );
    assert_eq!(snapshot(&world, &conversation).await, before, "refusals change nothing and append nothing");
    assert_eq!(before.2.state, ConversationState::Closed);

    // Reading is still reading: the horizon and the notification level move.
    let read = ParticipantPatch {
        last_read_message_index: Some(Some(message.index)),
        notification_level: Some(NotificationLevel::Muted),
        now: Some(at(3)),
        ..Default::default()
    };
    let updated = world.store.update_participant(&world.service, &conv, &participant_ref(&alice), read, &api()).await;
    assert_eq!(updated.unwrap().last_read_message_index, Some(message.index));
    // And a closed conversation can still be deleted.
    world.store.delete_conversation(&world.service, &conv, at(4), &api()).await.unwrap();
    assert_fails(world.store.get_conversation(&world.service, &conv).await, |e| matches!(e, Error::NotFound { .. }));
}

/// Operations on a conversation that does not exist fail as not found and append nothing.
pub async fn a_missing_conversation_is_not_found(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let missing = by_sid(&new_conversation(&world.service));
    let not_found = |e: &Error| matches!(e, Error::NotFound { kind: ResourceKind::Conversation, .. });
    assert_fails(world.store.get_conversation(&world.service, &missing).await, not_found);
    assert_fails(world.store.add_message(&world.service, &missing, new_message("x"), &api()).await, not_found);
    assert_fails(world.store.add_participant(&world.service, &missing, chat("x"), &api()).await, not_found);
    assert_fails(world.store.update_conversation(&world.service, &missing, rename(Some("x")), &api()).await, not_found);
    assert_fails(world.store.delete_conversation(&world.service, &missing, at(1), &api()).await, not_found);
    assert_fails(world.store.list_messages(&world.service, &missing, first_page(10)).await, not_found);
    assert_eq!(world.log_position().await, 0);
}

/// Conversations are filtered by state and by creation date (from inclusive, before exclusive).
pub async fn conversations_are_filtered_by_state_and_creation_date(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let mut created = Vec::new();
    for (secs, state) in
        [(0, ConversationState::Active), (10, ConversationState::Inactive), (20, ConversationState::Active)]
    {
        let conversation =
            Conversation { state, date_created: at(secs), date_updated: at(secs), ..new_conversation(&world.service) };
        created.push(world.create(conversation, Vec::new()).await.unwrap().0);
    }
    let list = |filter: ConversationFilter| {
        let (store, service) = (world.store.clone(), world.service.clone());
        async move {
            let page = store.list_conversations(&service, filter, first_page(50)).await.unwrap();
            page.items.into_iter().map(|c| c.sid).collect::<Vec<_>>()
        }
    };
    let sids: Vec<_> = created.iter().map(|c| c.sid.clone()).collect();
    assert_eq!(list(ConversationFilter::default()).await, sids);
    let active = ConversationFilter { state: Some(ConversationState::Active), ..Default::default() };
    assert_eq!(list(active).await, [sids[0].clone(), sids[2].clone()]);
    let window = ConversationFilter { created_from: Some(at(10)), created_before: Some(at(20)), ..Default::default() };
    assert_eq!(list(window).await, [sids[1].clone()]);
    let both =
        ConversationFilter { created_from: Some(at(1)), state: Some(ConversationState::Active), ..Default::default() };
    assert_eq!(list(both).await, [sids[2].clone()]);
    // Another service's conversations are never listed.
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let listed = world.store.list_conversations(&other.sid, ConversationFilter::default(), first_page(50)).await;
    assert!(listed.unwrap().items.is_empty());
}

/// Every field of a new conversation is stored as given.
pub async fn conversations_are_stored_as_given(factory: &dyn StoreFactory) {
    use palaver_api::sid::MessagingServiceSid;
    use palaver_core::model::EmailBinding;
    let world = world(factory).await;
    let given = Conversation {
        friendly_name: Some("Support".into()),
        unique_name: Some("support-1".into()),
        attributes: Attributes::parse("Attributes", r#"{"topic":"billing"}"#, 16384).unwrap(),
        messaging_service_sid: Some(MessagingServiceSid::generate()),
        created_by: Some("alice".into()),
        email_binding: EmailBinding { address: Some("help@example.com".into()), name: Some("Help".into()) },
        date_created: at(-100),
        date_updated: at(5),
        ..new_conversation(&world.service)
    };
    let (created, _) = world.create(given.clone(), Vec::new()).await.unwrap();
    assert_eq!(created, given);
    assert_eq!(world.reload(&created).await, given);
    assert_eq!(world.events(created.sid.as_str()).await[0].data, palaver_core::event::conversation_snapshot(&given));
}

/// A restored lifecycle is stored verbatim on any conversation, a closed one included, and its timers are
/// not re-armed: an import ends each conversation with it. It appends `conversation.updated` at its
/// `date_updated`, and `conversation.state_updated` when the state changed.
pub async fn a_restored_lifecycle_is_stored_as_given(factory: &dyn StoreFactory) {
    use palaver_core::input::TimerDuration;
    use palaver_core::model::Timers;
    use palaver_core::store::ConversationLifecycle;
    let world = world(factory).await;
    let conversation = world.conversation().await;
    world.post(&conversation, "before the restore").await;
    let inactive = ConversationLifecycle {
        state: ConversationState::Inactive,
        state_updated: at(50),
        timers: Timers {
            inactive_after: Some(TimerDuration::from_secs(60)),
            closed_after: Some(TimerDuration::from_secs(600)),
            date_inactive: None,
            date_closed: Some(at(590)),
        },
        date_updated: at(70),
    };
    let target = by_sid(&conversation);
    let origin = api();
    let restore = |lifecycle: ConversationLifecycle| {
        world.store.restore_conversation_lifecycle(&world.service, &target, lifecycle, &origin)
    };
    let restored = restore(inactive.clone()).await.unwrap();
    let expected = Conversation {
        state: inactive.state,
        state_updated: inactive.state_updated,
        timers: inactive.timers,
        date_updated: inactive.date_updated,
        ..world.reload(&conversation).await
    };
    assert_eq!(restored, expected);
    assert_eq!(world.reload(&conversation).await, expected);
    assert_eq!(restored.messages_count, 1, "messages stay");
    let events = world.events(conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    let tail: Vec<_> = events.iter().rev().take(2).rev().map(|e| (e.kind, e.at)).collect();
    assert_eq!(
        tail,
        [
            (palaver_core::event::EventKind::ConversationUpdated, at(70)),
            (palaver_core::event::EventKind::ConversationStateUpdated, at(50))
        ]
    );

    let closed = ConversationLifecycle {
        state: ConversationState::Closed,
        state_updated: at(80),
        timers: Timers::default(),
        date_updated: at(80),
    };
    restore(closed.clone()).await.unwrap();
    let again = ConversationLifecycle { date_updated: at(90), ..closed };
    let restored = restore(again).await.unwrap();
    assert_eq!((restored.state, restored.date_updated), (ConversationState::Closed, at(90)), "closed is no barrier");
    let before = world.store.stream_position(conversation.sid.as_str()).await.unwrap();
    let kinds: Vec<_> =
        world.events(conversation.sid.as_str()).await.iter().skip(before as usize - 1).map(|e| e.kind).collect();
    assert_eq!(kinds, [palaver_core::event::EventKind::ConversationUpdated], "no state change, no state event");
}
