//! The account, its services, roles, API keys and users; writability and change notifications.

use palaver_api::sid::{ApiKeySid, MessagingServiceSid, RoleSid, UserSid};
use palaver_core::error::{Conflict, Error, ResourceKind};
use palaver_core::event::EventKind;
use palaver_core::input::{Attributes, Identity, TimerDuration};
use palaver_core::model::{ApiKey, DEFAULT_ROLES, RoleKind};
use palaver_core::store::{
    AccountConfigPatch, ConversationRef, NewRole, NewUser, ServiceConfigPatch, UserPatch, UserRef,
};

use crate::StoreFactory;
use crate::fixtures::*;

/// Bootstrapping a second time changes nothing and answers with the configuration of the first.
pub async fn bootstrap_is_idempotent(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let first = new_service("first");
    let config = store.bootstrap(first.clone()).await.unwrap();
    assert_eq!(config.default_service_sid, first.sid);
    assert_eq!(config.default_messaging_service_sid, None);
    assert_eq!((config.default_inactive_timer, config.default_closed_timer), (None, None));

    let second = new_service("second");
    let again = store.bootstrap(second.clone()).await.unwrap();
    assert_eq!(again, config);
    assert_fails(store.get_service(&second.sid).await, |e| matches!(e, Error::NotFound { .. }));
    let services = store.list_services(first_page(50)).await.unwrap();
    assert_eq!(services.items.len(), 1, "bootstrap made one service: {services:?}");
    assert_eq!(store.account_config().await.unwrap(), config);
}

/// The default service starts with the default roles, and its defaults point at them.
pub async fn services_start_with_the_default_roles(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let extra = world.store.create_service(new_service("extra")).await.unwrap();
    for service in [world.store.get_service(&world.service).await.unwrap(), extra] {
        let roles = world.store.list_roles(&service.sid, first_page(50)).await.unwrap().items;
        let described: Vec<(String, RoleKind, Vec<String>)> =
            roles.iter().map(|r| (r.friendly_name.clone(), r.kind, r.permissions.clone())).collect();
        let expected: Vec<(String, RoleKind, Vec<String>)> = DEFAULT_ROLES
            .iter()
            .map(|(name, kind, permissions)| {
                (name.to_string(), *kind, permissions.iter().map(|p| p.to_string()).collect())
            })
            .collect();
        assert_eq!(described, expected);
        let sid_of = |name: &str| roles.iter().find(|r| r.friendly_name == name).unwrap().sid.clone();
        assert_eq!(service.creator_role_sid, sid_of("channel admin"));
        assert_eq!(service.participant_role_sid, sid_of("channel user"));
        assert_eq!(service.user_role_sid, sid_of("service user"));
        assert!(roles.iter().all(|r| r.service_sid == service.sid));
    }
}

/// Every field of the account configuration can be set, read back, cleared, and survives a restart.
pub async fn account_config_round_trips(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let messaging = MessagingServiceSid::generate();
    let patch = AccountConfigPatch {
        default_service_sid: Some(other.sid.clone()),
        default_messaging_service_sid: Some(Some(messaging.clone())),
        default_inactive_timer: Some(Some(TimerDuration::from_secs(60))),
        default_closed_timer: Some(Some(TimerDuration::from_secs(600))),
    };
    let updated = world.store.update_account_config(patch).await.unwrap();
    assert_eq!(updated.default_service_sid, other.sid);
    assert_eq!(updated.default_messaging_service_sid, Some(messaging.clone()));
    assert_eq!(updated.default_inactive_timer, Some(TimerDuration::from_secs(60)));
    assert_eq!(updated.default_closed_timer, Some(TimerDuration::from_secs(600)));
    assert_eq!(world.store.account_config().await.unwrap(), updated);

    // Leaving fields out keeps them; `Some(None)` clears them.
    let cleared = world
        .store
        .update_account_config(AccountConfigPatch { default_inactive_timer: Some(None), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(cleared.default_inactive_timer, None);
    assert_eq!(cleared.default_closed_timer, Some(TimerDuration::from_secs(600)));
    assert_eq!(cleared.default_messaging_service_sid, Some(messaging));

    // An unknown default service is refused.
    let missing = new_service("never created").sid;
    assert_fails(
        world
            .store
            .update_account_config(AccountConfigPatch { default_service_sid: Some(missing), ..Default::default() })
            .await,
        |e| matches!(e, Error::NotFound { kind: ResourceKind::Service, .. }),
    );
    assert_eq!(world.store.account_config().await.unwrap(), cleared);

    let world = restart(factory, world).await;
    assert_eq!(world.store.account_config().await.unwrap(), cleared);
}

/// Services are created, read, listed oldest first, reconfigured, and deleted with everything in them.
pub async fn services_are_created_listed_updated_and_deleted(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let a = world.store.create_service(new_service("a")).await.unwrap();
    let b = world.store.create_service(new_service("b")).await.unwrap();
    assert_eq!(a.friendly_name, "a");
    assert_eq!(world.store.get_service(&a.sid).await.unwrap(), a);
    let listed: Vec<_> = world.store.list_services(first_page(50)).await.unwrap().items;
    let sids: Vec<_> = listed.iter().map(|s| s.sid.clone()).collect();
    assert_eq!(sids, [world.service.clone(), a.sid.clone(), b.sid.clone()]);

    let moderator = world
        .store
        .create_role(
            &a.sid,
            NewRole {
                sid: RoleSid::generate(),
                friendly_name: "moderator".into(),
                kind: RoleKind::Conversation,
                permissions: vec!["sendMessage".into()],
                now: at(1),
            },
        )
        .await
        .unwrap();
    let patch = ServiceConfigPatch {
        participant_role_sid: Some(moderator.sid.clone()),
        reachability_enabled: Some(true),
        now: Some(at(2)),
        ..Default::default()
    };
    let updated = world.store.update_service_config(&a.sid, patch).await.unwrap();
    assert_eq!(updated.participant_role_sid, moderator.sid);
    assert!(updated.reachability_enabled);
    assert_eq!(updated.creator_role_sid, a.creator_role_sid, "fields left out stay");
    assert_eq!(updated.date_updated, at(2));
    assert_eq!(world.store.get_service(&a.sid).await.unwrap(), updated);

    // Deleting a service deletes its conversations, users and roles; other services keep theirs.
    let in_a = World { store: world.store.clone(), service: a.sid.clone() };
    let conversation = in_a.conversation().await;
    in_a.join(&conversation, "alice").await;
    let kept = world.conversation().await;
    let alice = in_a.store.get_user(&a.sid, &UserRef::Identity("alice".into())).await.unwrap();
    let before = world.log_position().await;
    world.store.delete_service(&a.sid, at(3), &api()).await.unwrap();
    // Its listeners hear of it as of a conversation's deletion: the conversation is gone, its users left.
    let told: Vec<_> = world
        .store
        .read_log(before, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.stream, e.kind, e.subject, e.service_sid))
        .collect();
    let (conversation_sid, service_sid) = (conversation.sid.to_string(), a.sid.to_string());
    assert_eq!(
        told,
        [
            (alice.sid.to_string(), EventKind::UserConversationLeft, conversation_sid.clone(), service_sid.clone()),
            (conversation_sid.clone(), EventKind::ConversationRemoved, conversation_sid, service_sid),
        ]
    );
    assert_fails(world.store.get_service(&a.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_fails(world.store.get_conversation(&a.sid, &by_sid(&conversation)).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    assert_fails(world.store.get_user(&a.sid, &UserRef::Identity("alice".into())).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    assert_fails(world.store.get_role(&a.sid, &moderator.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_eq!(world.reload(&kept).await.sid, kept.sid);
    let sids: Vec<_> =
        world.store.list_services(first_page(50)).await.unwrap().items.into_iter().map(|s| s.sid).collect();
    assert_eq!(sids, [world.service.clone(), b.sid]);
    assert_fails(world.store.delete_service(&a.sid, at(4), &api()).await, |e| matches!(e, Error::NotFound { .. }));
}

/// The default service cannot be deleted, and the refusal leaves it whole.
pub async fn the_default_service_cannot_be_deleted(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = world.conversation().await;
    assert_fails(world.store.delete_service(&world.service, at(4), &api()).await, |e| {
        matches!(e, Error::Conflict(Conflict::InUse(_)))
    });
    assert_eq!(world.store.get_service(&world.service).await.unwrap().sid, world.service);
    assert_eq!(world.reload(&conversation).await.sid, conversation.sid);

    // Once another service is the default, the first one can go.
    let other = world.store.create_service(new_service("other")).await.unwrap();
    world
        .store
        .update_account_config(AccountConfigPatch {
            default_service_sid: Some(other.sid.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    world.store.delete_service(&world.service, at(4), &api()).await.unwrap();
    assert_fails(world.store.delete_service(&other.sid, at(4), &api()).await, |e| {
        matches!(e, Error::Conflict(Conflict::InUse(_)))
    });
}

/// Roles are created, listed after the default ones, updated, and deleted unless a service default uses them.
pub async fn roles_are_managed_and_default_roles_are_kept(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let service = world.store.get_service(&world.service).await.unwrap();
    let role = world
        .store
        .create_role(
            &world.service,
            NewRole {
                sid: RoleSid::generate(),
                friendly_name: "moderator".into(),
                kind: RoleKind::Conversation,
                permissions: vec!["sendMessage".into(), "removeParticipant".into()],
                now: at(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(role.permissions, ["sendMessage", "removeParticipant"]);
    assert_eq!(world.store.get_role(&world.service, &role.sid).await.unwrap(), role);
    let listed = world.store.list_roles(&world.service, first_page(50)).await.unwrap().items;
    assert_eq!(listed.len(), DEFAULT_ROLES.len() + 1);
    assert_eq!(listed.last().unwrap().sid, role.sid, "roles are listed oldest first");

    let updated =
        world.store.update_role(&world.service, &role.sid, vec!["deleteAnyMessage".into()], at(2)).await.unwrap();
    assert_eq!(updated.permissions, ["deleteAnyMessage"]);
    assert_eq!(updated.date_updated, at(2));
    assert_eq!(world.store.get_role(&world.service, &role.sid).await.unwrap(), updated);

    assert_fails(world.store.delete_role(&world.service, &service.user_role_sid).await, |e| {
        matches!(e, Error::Conflict(Conflict::InUse(_)))
    });
    assert!(world.store.get_role(&world.service, &service.user_role_sid).await.is_ok());
    world.store.delete_role(&world.service, &role.sid).await.unwrap();
    assert_fails(world.store.get_role(&world.service, &role.sid).await, |e| matches!(e, Error::NotFound { .. }));

    // A role is found only in its own service.
    let other = world.store.create_service(new_service("other")).await.unwrap();
    assert_fails(world.store.get_role(&other.sid, &service.user_role_sid).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
}

/// API keys are stored with their secrets, listed oldest first and deleted once.
pub async fn api_keys_round_trip(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let key = |name: &str| ApiKey {
        sid: ApiKeySid::generate(),
        friendly_name: name.to_string(),
        secret: format!("secret of {name}"),
        date_created: T0,
    };
    let (first, second) = (key("first"), key("second"));
    assert_eq!(store.create_api_key(first.clone()).await.unwrap(), first);
    store.create_api_key(second.clone()).await.unwrap();
    assert_eq!(store.get_api_key(&first.sid).await.unwrap(), first);
    assert_eq!(store.list_api_keys().await.unwrap(), [first.clone(), second.clone()]);
    store.delete_api_key(&first.sid).await.unwrap();
    assert_fails(store.get_api_key(&first.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_fails(store.delete_api_key(&first.sid).await, |e| matches!(e, Error::NotFound { .. }));
    assert_eq!(store.list_api_keys().await.unwrap(), [second]);
}

/// A user's identity is unique in its service; creating, changing and deleting a user appends to its stream.
pub async fn users_are_unique_per_service_and_logged_on_their_stream(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let service = world.store.get_service(&world.service).await.unwrap();
    let new_user = |identity: &str| NewUser {
        sid: UserSid::generate(),
        identity: Identity::parse("Identity", identity).unwrap(),
        friendly_name: Some("Dana".into()),
        attributes: Attributes::parse("Attributes", r#"{"a":1}"#, 4096).unwrap(),
        role_sid: None,
        now: at(1),
    };
    let dana = world.store.create_user(&world.service, new_user("dana"), &api()).await.unwrap();
    assert_eq!(dana.identity.as_str(), "dana");
    assert_eq!(dana.role_sid, Some(service.user_role_sid.clone()), "the service's user role by default");
    assert_eq!(dana.attributes.as_str(), r#"{"a":1}"#);
    assert_eq!(world.store.get_user(&world.service, &UserRef::Identity("dana".into())).await.unwrap(), dana);
    assert_eq!(world.store.get_user(&world.service, &UserRef::Sid(dana.sid.clone())).await.unwrap(), dana);

    let before = world.log_position().await;
    assert_fails(world.store.create_user(&world.service, new_user("dana"), &api()).await, |e| {
        matches!(e, Error::Conflict(Conflict::UserIdentityTaken(_)))
    });
    assert_eq!(world.log_position().await, before, "a refused user appends nothing");
    let other = world.store.create_service(new_service("other")).await.unwrap();
    world.store.create_user(&other.sid, new_user("dana"), &api()).await.unwrap();

    let patch = UserPatch { friendly_name: Some(None), now: Some(at(2)), ..Default::default() };
    let updated =
        world.store.update_user(&world.service, &UserRef::Identity("dana".into()), patch, &api()).await.unwrap();
    assert_eq!((updated.friendly_name.clone(), updated.date_updated), (None, at(2)));
    assert_eq!(updated.attributes, dana.attributes, "fields left out stay");

    let conversation = world.conversation().await;
    let participant = world.join(&conversation, "dana").await;
    world.store.delete_user(&world.service, &UserRef::Sid(dana.sid.clone()), at(3), &api()).await.unwrap();
    assert_fails(world.store.get_user(&world.service, &UserRef::Sid(dana.sid.clone())).await, |e| {
        matches!(e, Error::NotFound { .. })
    });
    let kept = world
        .store
        .get_participant(
            &world.service,
            &ConversationRef::Sid(conversation.sid.clone()),
            &participant_ref(&participant),
        )
        .await
        .unwrap();
    assert_eq!(kept, participant, "a deleted user's participants stay");

    let events = world.events(dana.sid.as_str()).await;
    assert_whole_stream(&events);
    assert_eq!(
        kinds(&events),
        ["user.added", "user.updated", "user.conversation_joined", "user.removed"],
        "the user's stream"
    );
    assert!(
        events.iter().filter(|e| e.kind != EventKind::UserConversationJoined).all(|e| e.subject == dana.sid.as_str())
    );
    assert_eq!(events[1].at, at(2));
    assert_eq!(events[0].service_sid, world.service.as_str());
}

/// A healthy store takes a write that changes nothing.
pub async fn a_healthy_store_is_writable(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    world.store.check_writable().await.unwrap();
    assert_eq!(world.log_position().await, 0, "checking writes nothing to the log");
}

/// Committed writes wake whoever waits on [`Store::changes`](palaver_core::store::Store::changes).
pub async fn committed_writes_are_notified(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let changes = world.store.changes();
    // Take any wake-up left by earlier writes, so the next one can only come from the write below.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), changes.notified()).await;
    let waiting = changes.notified();
    world.conversation().await;
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
    assert!(woken.is_ok(), "no wake-up after a committed write");
}
