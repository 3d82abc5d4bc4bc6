//! Read horizon and unread counts.

use palaver_client::{ConversationEvent, ConversationEventName, ConversationUpdateReason};
use palaver_testkit::TestServer;

use crate::support::{Recorder, connect, conversation_with, eventually, joined};

#[tokio::test]
async fn horizon_calls_return_exact_counts_and_events_move_local_state() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let bob = connect(&server, "bob").await;
    let conversation = conversation_with(&alice, "horizon", &["bob"]).await;
    let bobs = joined(&bob, conversation.sid()).await;
    let mut unread = Recorder::new(&bobs.events(), ConversationEventName::UnreadCountChanged);
    let mut updates = Recorder::new(&bobs.events(), ConversationEventName::Updated);
    for n in 0..5 {
        conversation.send_message(format!("m{n}"), None, None).await.unwrap();
    }
    assert_eq!(bobs.get_unread_messages_count().await.unwrap(), None, "no horizon yet");
    assert_eq!(bobs.last_read_message_index(), None);

    assert_eq!(bobs.advance_last_read_message_index(2).await.unwrap(), 2);
    // The call itself does not move local state; the server's event does.
    eventually("the horizon event", || async { (bobs.last_read_message_index() == Some(2)).then_some(()) }).await;
    let ConversationEvent::Updated { update_reasons, .. } = updates
        .next_matching(|e| {
            matches!(e, ConversationEvent::Updated { update_reasons, .. }
                if update_reasons.contains(&ConversationUpdateReason::LastReadMessageIndex))
        })
        .await
    else {
        unreachable!()
    };
    assert!(update_reasons.contains(&ConversationUpdateReason::LastReadMessageIndex));
    assert!(matches!(
        unread.next_matching(|e| matches!(e, ConversationEvent::UnreadCountChanged(Some(2)))).await,
        ConversationEvent::UnreadCountChanged(Some(2))
    ));
    assert_eq!(bobs.unread_messages_count(), Some(2));

    // Advancing to a lower index keeps the horizon.
    assert_eq!(bobs.advance_last_read_message_index(1).await.unwrap(), 2);
    // Setting it exactly may move it backwards.
    assert_eq!(bobs.update_last_read_message_index(Some(0)).await.unwrap(), 4);
    assert_eq!(bobs.get_unread_messages_count().await.unwrap(), Some(4));
    assert_eq!(bobs.set_all_messages_read().await.unwrap(), 0);
    eventually("all read", || async { (bobs.last_read_message_index() == Some(4)).then_some(()) }).await;
    let after_unread = bobs.set_all_messages_unread().await.unwrap();
    assert_eq!(after_unread, 5, "every message is unread");
    eventually("horizon cleared", || async { bobs.last_read_message_index().is_none().then_some(()) }).await;
    assert_eq!(bobs.get_unread_messages_count().await.unwrap(), None, "no horizon: no stored count");
    assert_eq!(bobs.update_last_read_message_index(None).await.unwrap(), 5);
    // Removed messages are not counted.
    let newest = conversation.get_messages(Some(1), None, None).await.unwrap();
    newest.items()[0].remove().await.unwrap();
    assert_eq!(bobs.set_all_messages_unread().await.unwrap(), 4);

    // A new message pushes a new count.
    bobs.update_last_read_message_index(Some(4)).await.unwrap();
    unread.drain();
    conversation.send_message("one more", None, None).await.unwrap();
    unread.next_matching(|e| matches!(e, ConversationEvent::UnreadCountChanged(Some(1)))).await;

    // Invalid indices never reach the server.
    assert!(matches!(
        bobs.advance_last_read_message_index(-1).await,
        Err(palaver_client::ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        bobs.update_last_read_message_index(Some(-3)).await,
        Err(palaver_client::ClientError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn an_empty_conversation_is_all_read() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let conversation = conversation_with(&alice, "empty", &[]).await;
    assert_eq!(conversation.set_all_messages_read().await.unwrap(), 0);
}
