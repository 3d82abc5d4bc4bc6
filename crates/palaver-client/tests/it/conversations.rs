//! Creating, finding, updating and deleting conversations.

use palaver_client::{
    ClientError, ClientEventName, ConversationEvent, ConversationEventName, ConversationStateKind, ConversationStatus,
    ConversationUpdateReason, CreateConversationOptions, MediaContent, MessageContent, NotificationLevel,
    SendEmailOptions,
};
use palaver_testkit::TestServer;
use serde_json::json;

use crate::support::{Recorder, connect, conversation_with, joined};

#[tokio::test]
async fn create_find_update_and_delete() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let mut added = Recorder::new(&alice.events(), ClientEventName::ConversationAdded);
    let conversation = alice
        .create_conversation(
            CreateConversationOptions::new()
                .friendly_name("Support")
                .unique_name("support")
                .attributes(json!({"topic": "billing"})),
        )
        .await
        .unwrap();
    added.next().await;
    assert_eq!(conversation.status(), ConversationStatus::NotParticipating, "creating does not join");
    assert_eq!(conversation.friendly_name().as_deref(), Some("Support"));
    assert_eq!(conversation.unique_name().as_deref(), Some("support"));
    assert_eq!(conversation.attributes(), json!({"topic": "billing"}));
    assert_eq!(conversation.created_by(), "alice");
    assert!(conversation.date_created().is_some());
    assert_eq!(conversation.state().map(|s| s.current), Some(ConversationStateKind::Active));
    assert_eq!(conversation.notification_level(), NotificationLevel::Default);
    assert!(conversation.limits().media_attachments_count_limit > 0);
    let taken = alice.create_conversation(CreateConversationOptions::new().unique_name("support")).await.unwrap_err();
    assert_eq!(taken.code(), Some(50353));

    let mut joins = Recorder::new(&alice.events(), ClientEventName::ConversationJoined);
    conversation.join().await.unwrap();
    assert_eq!(conversation.status(), ConversationStatus::Joined);
    joins.next().await;
    conversation.add("bob", None).await.unwrap();
    let bobs = joined(&bob, conversation.sid()).await;
    let by_name = bob.get_conversation_by_unique_name("support").await.unwrap();
    assert_eq!(by_name.sid(), conversation.sid());

    // One update, every reason in one event, seen by the other participant.
    let mut bob_updates = Recorder::new(&bobs.events(), ConversationEventName::Updated);
    let updated = conversation.update_friendly_name("Billing").await.unwrap();
    assert_eq!(updated.friendly_name().as_deref(), Some("Billing"), "visible locally once the call returns");
    let ConversationEvent::Updated { update_reasons, conversation: seen } = bob_updates.next().await else {
        unreachable!()
    };
    assert!(update_reasons.contains(&ConversationUpdateReason::FriendlyName), "{update_reasons:?}");
    assert_eq!(seen.friendly_name().as_deref(), Some("Billing"));
    // Unchanged values make no call and no event.
    conversation.update_friendly_name("Billing").await.unwrap();
    conversation.update_unique_name(Some("support")).await.unwrap();
    bob_updates.assert_silent(std::time::Duration::from_millis(200)).await;

    conversation.update_attributes(json!({"topic": "refunds", "priority": 2})).await.unwrap();
    assert_eq!(conversation.get_attributes().await.unwrap(), json!({"topic": "refunds", "priority": 2}));
    conversation.update_unique_name(Some("billing")).await.unwrap();
    assert_eq!(conversation.unique_name().as_deref(), Some("billing"));
    conversation.update_unique_name(None).await.unwrap();
    assert_eq!(conversation.unique_name(), None);

    conversation.set_user_notification_level(NotificationLevel::Muted).await.unwrap();
    assert_eq!(conversation.notification_level(), NotificationLevel::Muted);

    // Messages through the builder, and what is not supported yet.
    let index = conversation
        .prepare_message()
        .set_body("built")
        .set_attributes(json!({"x": 1}))
        .build()
        .unwrap()
        .send()
        .await
        .unwrap();
    let page = conversation.get_messages(Some(1), None, None).await.unwrap();
    assert_eq!(page.items()[0].index(), index);
    assert_eq!(page.items()[0].body(), Some("built"));
    let with_subject =
        conversation.send_message(MessageContent::None, None, Some(SendEmailOptions::subject("Hi"))).await.unwrap();
    assert!(with_subject > index);
    let media = conversation.send_message(MediaContent::new("image/png", vec![1, 2, 3]), None, None).await;
    assert!(matches!(media, Err(ClientError::Unsupported(_))), "{media:?}");
    let built = conversation.prepare_message().add_media(MediaContent::new("image/png", vec![0])).build().unwrap();
    assert!(matches!(built.send().await, Err(ClientError::Unsupported(_))));
    let mut too_many = conversation.prepare_message();
    for _ in 0..=conversation.limits().media_attachments_count_limit {
        too_many = too_many.add_media(MediaContent::new("image/png", vec![0]));
    }
    assert!(matches!(too_many.build(), Err(ClientError::InvalidArgument(_))));
    assert!(matches!(
        conversation
            .prepare_message()
            .set_email_body("application/x-nope", MediaContent::new("application/x-nope", vec![]))
            .build(),
        Err(ClientError::InvalidArgument(_))
    ));

    // Deleting: both sides see `removed`.
    let mut removed = Recorder::new(&bobs.events(), ConversationEventName::Removed);
    let mut client_removed = Recorder::new(&bob.events(), ClientEventName::ConversationRemoved);
    let mut alice_removed = Recorder::new(&alice.events(), ClientEventName::ConversationRemoved);
    conversation.delete().await.unwrap();
    removed.next().await;
    client_removed.next().await;
    // Alice's own cache forgets it when her client hears of the removal (the reply may come first).
    alice_removed.next().await;
    let err = alice.get_conversation_by_sid(conversation.sid()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn users_are_readable_and_the_own_user_is_editable() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let mut updates = Recorder::new(&alice.events(), ClientEventName::UserUpdated);
    let me = alice.user();
    let renamed = me.update_friendly_name("Alice A.").await.unwrap();
    assert_eq!(renamed.friendly_name().as_deref(), Some("Alice A."));
    me.update_attributes(json!({"team": "support"})).await.unwrap();
    updates.next().await;
    assert_eq!(alice.user().attributes(), json!({"team": "support"}));
    let seen_by_bob = bob.get_user("alice").await.unwrap();
    assert_eq!(seen_by_bob.friendly_name().as_deref(), Some("Alice A."));
    assert!(matches!(seen_by_bob.update_friendly_name("nope").await, Err(ClientError::InvalidArgument(_))));
    assert!(bob.get_user("nobody-at-all").await.unwrap_err().is_not_found());
    let _ = conversation_with(&alice, "x", &[]).await;
}
