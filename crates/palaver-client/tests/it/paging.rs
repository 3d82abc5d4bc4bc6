//! Paging through messages in both directions.

use palaver_client::{ClientError, Direction, Message, PageDirection};
use palaver_testkit::TestServer;

use crate::support::{connect, conversation_with};

fn indices(items: &[Message]) -> Vec<i64> {
    items.iter().map(Message::index).collect()
}

#[tokio::test]
async fn pages_go_both_ways_with_items_ascending() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    let conversation = conversation_with(&alice, "paging", &[]).await;
    for n in 0..25 {
        conversation.send_message(format!("m{n}"), None, None).await.unwrap();
    }
    assert_eq!(conversation.get_messages_count().await.unwrap(), 25);

    // Backwards from the end (the default): newest page first, prev = older.
    let newest = conversation.get_messages(Some(10), None, None).await.unwrap();
    assert_eq!(indices(newest.items()), (15..25).collect::<Vec<_>>());
    assert!(newest.has_prev_page());
    assert!(!newest.has_next_page());
    assert_eq!(newest.next_page().await.unwrap_err(), ClientError::NoPage(PageDirection::Next));
    let middle = newest.prev_page().await.unwrap();
    assert_eq!(indices(middle.items()), (5..15).collect::<Vec<_>>());
    assert_eq!(indices(newest.items()), (15..25).collect::<Vec<_>>(), "the original page is unchanged");
    let oldest = middle.prev_page().await.unwrap();
    assert_eq!(indices(oldest.items()), (0..5).collect::<Vec<_>>());
    assert!(!oldest.has_prev_page());
    assert!(oldest.has_next_page());
    assert_eq!(oldest.prev_page().await.unwrap_err(), ClientError::NoPage(PageDirection::Previous));
    let again = oldest.next_page().await.unwrap();
    assert_eq!(indices(again.items()), (5..15).collect::<Vec<_>>());

    // Forward from an anchor (inclusive): next = newer.
    let forward = conversation.get_messages(Some(10), Some(0), Some(Direction::Forward)).await.unwrap();
    assert_eq!(indices(forward.items()), (0..10).collect::<Vec<_>>());
    assert!(!forward.has_prev_page());
    assert!(forward.has_next_page());
    let forward2 = forward.next_page().await.unwrap();
    assert_eq!(indices(forward2.items()), (10..20).collect::<Vec<_>>());
    let forward3 = forward2.next_page().await.unwrap();
    assert_eq!(indices(forward3.items()), (20..25).collect::<Vec<_>>());
    assert!(!forward3.has_next_page());
    assert_eq!(indices(forward3.prev_page().await.unwrap().items()), (10..20).collect::<Vec<_>>());

    // Backwards from an anchor includes the anchor.
    let around = conversation.get_messages(Some(5), Some(7), Some(Direction::Backwards)).await.unwrap();
    assert_eq!(indices(around.items()), (3..8).collect::<Vec<_>>());
    assert!(around.has_next_page() && around.has_prev_page());

    // Page sizes: capped at 100, zero rejected, negative anchors rejected.
    let all = conversation.get_messages(Some(500), None, None).await.unwrap();
    assert_eq!(all.items().len(), 25);
    assert!(matches!(conversation.get_messages(Some(0), None, None).await, Err(ClientError::InvalidArgument(_))));
    assert!(matches!(conversation.get_messages(None, Some(-1), None).await, Err(ClientError::InvalidArgument(_))));
    let default = conversation.get_messages(None, None, None).await.unwrap();
    assert_eq!(default.items().len(), 25);
}

#[tokio::test]
async fn subscribed_conversations_page() {
    let server = TestServer::spawn().await;
    let alice = connect(&server, "alice").await;
    for n in 0..3 {
        conversation_with(&alice, &format!("c{n}"), &[]).await;
    }
    let page = alice.get_subscribed_conversations().await.unwrap();
    assert_eq!(page.items().len(), 3);
    assert!(!page.has_next_page());
    assert!(page.items().iter().all(|c| c.status() == palaver_client::ConversationStatus::Joined));
}
