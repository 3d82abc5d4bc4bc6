//! Creating, finding, updating and deleting conversations.

use palaver_client::{
    ClientError, ClientEventName, ConversationEvent, ConversationEventName, ConversationStateKind, ConversationStatus,
    ConversationUpdateReason, CreateConversationOptions, MediaContent, MessageContent, MessageType, NotificationLevel,
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
    // Media: uploaded, attached, seen by the other participant and downloadable from a temporary URL.
    let mut bob_added = Recorder::new(&bobs.events(), ConversationEventName::MessageAdded);
    let with_media = conversation
        .send_message(MediaContent::new("image/png", vec![1, 2, 3]).with_filename("dot.png"), None, None)
        .await
        .unwrap();
    let seen = loop {
        if let ConversationEvent::MessageAdded(m) = bob_added.next().await
            && m.index() == with_media
        {
            break m;
        }
    };
    assert_eq!(seen.message_type(), MessageType::Media);
    let attached = seen.attached_media();
    assert_eq!(attached.len(), 1);
    assert_eq!((attached[0].filename.as_deref(), attached[0].size), (Some("dot.png"), Some(3)));
    let urls = seen.get_temporary_content_urls_for_attached_media().await.unwrap();
    let url = urls.get(attached[0].sid.as_deref().unwrap()).unwrap();
    assert_eq!(reqwest::get(url).await.unwrap().bytes().await.unwrap().as_ref(), [1, 2, 3]);
    // The builder: attachments plus an HTML email body, in one message.
    let built = conversation
        .prepare_message()
        .set_body("see attached")
        .add_media(MediaContent::new("text/csv", b"a,b".to_vec()).with_filename("t.csv"))
        .set_email_body("text/html", MediaContent::new("text/html", b"<b>see attached</b>".to_vec()))
        .build()
        .unwrap();
    let built_index = built.send().await.unwrap();
    let page = conversation.get_messages(Some(1), None, None).await.unwrap();
    let sent = &page.items()[0];
    assert_eq!(sent.index(), built_index);
    assert_eq!(sent.get_media_by_categories(&["media"]).len(), 1);
    assert!(sent.get_email_body(Some("text/html")).is_some());
    assert!(sent.get_email_body(None).is_none(), "no text/plain body was attached");
    let too_big = conversation
        .send_message(MediaContent::new("video/mp4", vec![0; 16 * 1024 * 1024 + 1]), None, None)
        .await
        .unwrap_err();
    assert!(matches!(too_big, ClientError::Server { code: 50512, .. }), "{too_big:?}");
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
