//! Participants, the users behind chat participants, and the conversations seen from a user or an address.

use palaver_api::sid::RoleSid;
use palaver_core::error::{Error, ResourceKind};
use palaver_core::event::EventKind;
use palaver_core::input::{Attributes, NotificationLevel};
use palaver_core::model::{BindingKind, RoleKind};
use palaver_core::store::{NewRole, ParticipantLookup, ParticipantPatch, ParticipantRef, UserRef};

use crate::StoreFactory;
use crate::fixtures::*;

/// Participants are found by SID or by identity, take the service's participant role by default, and keep
/// every field they were given.
pub async fn participants_are_stored_and_addressed_by_sid_or_identity(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let service = world.store.get_service(&world.service).await.unwrap();
    let conversation = world.conversation().await;
    let conv = by_sid(&conversation);
    let alice = world.join(&conversation, "alice").await;
    assert_eq!(alice.role_sid, Some(service.participant_role_sid.clone()));
    assert_eq!(
        (alice.conversation_sid.clone(), alice.service_sid.clone()),
        (conversation.sid.clone(), world.service.clone())
    );
    assert_eq!((alice.last_read_message_index, alice.notification_level), (None, NotificationLevel::Default));
    assert_eq!(
        world.store.get_participant(&world.service, &conv, &ParticipantRef::Identity("alice".into())).await.unwrap(),
        alice
    );
    assert_eq!(world.store.get_participant(&world.service, &conv, &participant_ref(&alice)).await.unwrap(), alice);

    let role = world
        .store
        .create_role(
            &world.service,
            NewRole {
                sid: RoleSid::generate(),
                friendly_name: "guest".into(),
                kind: RoleKind::Conversation,
                permissions: vec!["sendMessage".into()],
                now: T0,
            },
        )
        .await
        .unwrap();
    let mut sms = non_chat(BindingKind::Sms, "+15551230000", Some("+15559990000"));
    sms.role_sid = Some(role.sid.clone());
    sms.attributes = Attributes::parse("Attributes", r#"{"vip":true}"#, 4096).unwrap();
    sms.date_created = at(-50);
    let phone = world.store.add_participant(&world.service, &conv, sms.clone(), &api()).await.unwrap();
    assert_eq!(phone.binding, sms.binding);
    assert_eq!((phone.identity.clone(), phone.role_sid.clone()), (None, Some(role.sid)));
    assert_eq!((phone.attributes.as_str(), phone.date_created), (r#"{"vip":true}"#, at(-50)));
    assert_eq!(world.store.get_participant(&world.service, &conv, &participant_ref(&phone)).await.unwrap(), phone);

    let listed = world.store.list_participants(&world.service, &conv, first_page(10)).await.unwrap().items;
    assert_eq!(listed, [alice.clone(), phone.clone()], "participants are listed in joining order");
    assert_eq!(world.reload(&conversation).await.participants_count, 2);

    let patch = ParticipantPatch {
        proxy_address: Some(Some("+15559990001".into())),
        projected_address: Some(Some("+15559990002".into())),
        now: Some(at(1)),
        ..Default::default()
    };
    let moved =
        world.store.update_participant(&world.service, &conv, &participant_ref(&phone), patch, &api()).await.unwrap();
    let binding = moved.binding.clone().unwrap();
    assert_eq!(
        (binding.proxy_address.as_deref(), binding.projected_address.as_deref()),
        (Some("+15559990001"), Some("+15559990002"))
    );
    assert_eq!(moved.attributes, phone.attributes, "fields left out stay");

    world
        .store
        .remove_participant(&world.service, &conv, &ParticipantRef::Identity("alice".into()), at(2), &api())
        .await
        .unwrap();
    assert_fails(world.store.get_participant(&world.service, &conv, &participant_ref(&alice)).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::Participant, .. })
    });
    assert_fails(
        world.store.remove_participant(&world.service, &conv, &participant_ref(&alice), at(3), &api()).await,
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_eq!(world.reload(&conversation).await.participants_count, 1);
}

/// A chat participant whose identity has no user creates the user once, with the service's user role; later
/// participations reuse it.
pub async fn chat_participants_create_their_user_once(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let service = world.store.get_service(&world.service).await.unwrap();
    let (first, second) = (world.conversation().await, world.conversation().await);
    let new = chat("erin");
    let new_user_sid = new.new_user_sid.clone();
    world.store.add_participant(&world.service, &by_sid(&first), new, &api()).await.unwrap();
    world.join(&second, "erin").await;
    let user = world.store.get_user(&world.service, &UserRef::Identity("erin".into())).await.unwrap();
    assert_eq!(user.sid, new_user_sid, "the user takes the SID chosen for it");
    assert_eq!(user.role_sid, Some(service.user_role_sid));
    let added = world.events_of(user.sid.as_str(), EventKind::UserAdded).await;
    assert_eq!(added.len(), 1, "one user, created once");
    let users = world.store.list_users(&world.service, first_page(10)).await.unwrap().items;
    assert_eq!(users, [user]);
    // Non-chat participants have no user.
    world
        .store
        .add_participant(&world.service, &by_sid(&first), non_chat(BindingKind::Sms, "+15550001111", None), &api())
        .await
        .unwrap();
    assert_eq!(world.store.list_users(&world.service, first_page(10)).await.unwrap().items.len(), 1);
}

/// A user's conversations are those it participates in, in its service, each with its participant.
pub async fn a_users_conversations_are_its_participations(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (first, second, third) = (world.conversation().await, world.conversation().await, world.conversation().await);
    let in_first = world.join(&first, "frank").await;
    world.join(&second, "frank").await;
    world.join(&third, "grace").await;
    // The same identity in another service is another user, with conversations of its own.
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let elsewhere = World { store: world.store.clone(), service: other.sid.clone() };
    let there = elsewhere.conversation().await;
    elsewhere.join(&there, "frank").await;
    let frank = UserRef::Identity("frank".into());
    let listed = world.store.list_user_conversations(&world.service, &frank, first_page(10)).await.unwrap().items;
    assert_eq!(
        listed.iter().map(|uc| uc.conversation.sid.clone()).collect::<Vec<_>>(),
        [first.sid.clone(), second.sid.clone()]
    );
    let user = world.store.get_user(&world.service, &frank).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|uc| uc.user_sid == user.sid && uc.participant.identity.as_ref().unwrap().as_str() == "frank")
    );
    assert_eq!(listed[0].participant, in_first);
    let one = world
        .store
        .get_user_conversation(&world.service, &UserRef::Sid(user.sid.clone()), &by_sid(&first))
        .await
        .unwrap();
    assert_eq!(one, listed[0]);
    assert_fails(world.store.get_user_conversation(&world.service, &frank, &by_sid(&third)).await, |e| {
        matches!(e, Error::NotFound { kind: ResourceKind::UserConversation, .. })
    });
    assert_fails(
        world.store.list_user_conversations(&world.service, &UserRef::Identity("nobody".into()), first_page(10)).await,
        |e| matches!(e, Error::NotFound { kind: ResourceKind::User, .. }),
    );
    world
        .store
        .remove_participant(&world.service, &by_sid(&first), &participant_ref(&in_first), at(1), &api())
        .await
        .unwrap();
    let listed = world.store.list_user_conversations(&world.service, &frank, first_page(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|uc| &uc.conversation.sid).collect::<Vec<_>>(), [&second.sid]);
}

/// The conversations of a participant are found by its identity or by its address.
pub async fn participant_conversations_are_found_by_identity_or_address(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let (first, second) = (world.conversation().await, world.conversation().await);
    world.join(&first, "hank").await;
    world.join(&second, "hank").await;
    let phone = world
        .store
        .add_participant(&world.service, &by_sid(&second), non_chat(BindingKind::Sms, "+15557770000", None), &api())
        .await
        .unwrap();
    let hank = world.store.get_user(&world.service, &UserRef::Identity("hank".into())).await.unwrap();
    let by_identity = world
        .store
        .list_participant_conversations(&world.service, &ParticipantLookup::Identity("hank".into()), first_page(10))
        .await
        .unwrap()
        .items;
    assert_eq!(
        by_identity.iter().map(|pc| pc.conversation.sid.clone()).collect::<Vec<_>>(),
        [first.sid.clone(), second.sid.clone()]
    );
    assert!(by_identity.iter().all(|pc| pc.user_sid.as_ref() == Some(&hank.sid)));
    let by_address = world
        .store
        .list_participant_conversations(
            &world.service,
            &ParticipantLookup::Address("+15557770000".into()),
            first_page(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(by_address.len(), 1);
    assert_eq!((&by_address[0].participant, by_address[0].user_sid.as_ref()), (&phone, None));
    assert_eq!(by_address[0].conversation.sid, second.sid);
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let elsewhere = world
        .store
        .list_participant_conversations(&other.sid, &ParticipantLookup::Identity("hank".into()), first_page(10))
        .await
        .unwrap();
    assert!(elsewhere.items.is_empty(), "lookups stay in their service");
}

/// A chat participant given another identity moves from one user to the other: the old user's stream says it
/// left, a user is created for the new identity when there is none, its stream says it joined (from the
/// `participant.updated` event on), and each user's conversation list follows.
pub async fn renaming_a_chat_participant_moves_it_between_users(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    let conv = by_sid(&conversation);
    let alice = world.join(&conversation, "alice").await;
    let old_user = world.store.get_user(&world.service, &UserRef::Identity("alice".into())).await.unwrap();
    let new_user_sid = palaver_api::sid::UserSid::generate();
    let patch = ParticipantPatch {
        identity: Some(palaver_core::input::Identity::parse("Identity", "zed").unwrap()),
        new_user_sid: Some(new_user_sid.clone()),
        now: Some(at(1)),
        ..Default::default()
    };
    let zed =
        world.store.update_participant(&world.service, &conv, &participant_ref(&alice), patch, &api()).await.unwrap();
    assert_eq!((zed.sid.clone(), zed.identity.as_ref().map(|i| i.as_str())), (alice.sid.clone(), Some("zed")));

    let left = world.events_of(old_user.sid.as_str(), EventKind::UserConversationLeft).await;
    assert_eq!(left.iter().map(|e| e.subject.clone()).collect::<Vec<_>>(), [conversation.sid.to_string()]);
    let new_user = world.store.get_user(&world.service, &UserRef::Identity("zed".into())).await.unwrap();
    assert_eq!(new_user.sid, new_user_sid, "the user is created with the SID the patch brought");
    let new_stream = world.events(new_user.sid.as_str()).await;
    assert_eq!(kinds(&new_stream), ["user.added", "user.conversation_joined"]);
    let updated = world.events_of(conversation.sid.as_str(), EventKind::ParticipantUpdated).await;
    assert_eq!(new_stream[1].data["joined_at_seq"], serde_json::json!(updated.last().unwrap().seq));

    let listed = |identity: &'static str| {
        let store = world.store.clone();
        let service = world.service.clone();
        async move { store.list_user_conversations(&service, &UserRef::Identity(identity.into()), first_page(10)).await }
    };
    assert!(listed("alice").await.unwrap().items.is_empty());
    let zeds = listed("zed").await.unwrap().items;
    assert_eq!(zeds.iter().map(|uc| &uc.conversation.sid).collect::<Vec<_>>(), [&conversation.sid]);

    // Renaming onto an identity that already has a user reuses it (no second user.added).
    world.join(&world.conversation().await, "yan").await;
    let yan = world.store.get_user(&world.service, &UserRef::Identity("yan".into())).await.unwrap();
    let patch = ParticipantPatch {
        identity: Some(palaver_core::input::Identity::parse("Identity", "yan").unwrap()),
        new_user_sid: Some(palaver_api::sid::UserSid::generate()),
        now: Some(at(2)),
        ..Default::default()
    };
    world.store.update_participant(&world.service, &conv, &participant_ref(&zed), patch, &api()).await.unwrap();
    let yans = world.events(yan.sid.as_str()).await;
    assert_eq!(kinds(&yans).iter().filter(|k| **k == "user.added").count(), 1);
    assert_eq!(kinds(&yans).iter().filter(|k| **k == "user.conversation_joined").count(), 2);
    assert_eq!(world.events_of(new_user.sid.as_str(), EventKind::UserConversationLeft).await.len(), 1);
}
