//! What a non-participant can and cannot do.

use std::time::Duration;

use palaver_client::{ClientError, ConversationEventName, ConversationStatus};
use palaver_testkit::TestServer;

use crate::support::{Recorder, connect, conversation_with};

#[tokio::test]
async fn a_non_participant_cannot_read_messages_or_the_roster() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let carol = connect(&server, "carol").await;
    let conversation = conversation_with(&alice, "private", &[]).await;
    conversation.send_message("secret", None, None).await.unwrap();

    let seen = carol.get_conversation_by_sid(conversation.sid()).await.expect("carol can see the conversation");
    assert_eq!(seen.status(), ConversationStatus::NotParticipating);
    assert_eq!(seen.friendly_name().as_deref(), Some("private"));
    let err = seen.get_messages(None, None, None).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { status: 403, .. }), "{err:?}");
    assert!(seen.get_participants().await.is_err());
    assert!(seen.get_unread_messages_count().await.is_err());
    assert!(seen.advance_last_read_message_index(0).await.is_err());
    assert!(seen.send_message("let me in", None, None).await.is_err());
    // Not subscribed to the roster: no participant, and no error.
    assert!(seen.get_participant_by_identity("alice").await.unwrap().is_none());
    // Leaving without being a participant does nothing.
    seen.leave().await.unwrap();

    // Even while following the conversation, Carol gets no message events.
    let mut added = Recorder::new(&seen.events(), ConversationEventName::MessageAdded);
    conversation.send_message("still secret", None, None).await.unwrap();
    added.assert_silent(Duration::from_millis(300)).await;

    // Unknown conversations are typed errors.
    let err = carol.get_conversation_by_sid("CH00000000000000000000000000000000").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = carol.get_conversation_by_unique_name("no-such-name").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
