//! Group commit keeps each write atomic on its own: concurrent writes commit together, and one that fails
//! rolls back only itself.

use std::sync::Arc;

use palaver_core::error::Error;
use palaver_core::input::UniqueName;
use palaver_core::service::{CreateConversation, PostMessage, Settings};
use palaver_core::store::{ConversationRef, PageQuery};
use palaver_core::{Palaver, SystemClock};
use palaver_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_commit_together_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
    let palaver = Palaver::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let config = palaver.bootstrap().await.unwrap();
    let service = config.default_service_sid;
    let conv = palaver.create_conversation(&service, CreateConversation::default()).await.unwrap();
    let conv_ref = ConversationRef::Sid(conv.sid.clone());

    let mut tasks = Vec::new();
    for i in 0..200 {
        let (palaver, service, conv_ref) = (palaver.clone(), service.clone(), conv_ref.clone());
        tasks.push(tokio::spawn(async move {
            if i % 10 == 0 {
                // Every tenth write fails inside the group: a unique name taken by the first of them.
                let create = CreateConversation {
                    unique_name: Some(UniqueName::parse("only-once").unwrap()),
                    ..Default::default()
                };
                palaver.create_conversation(&service, create).await.map(|_| ())
            } else {
                let post = PostMessage { body: Some(format!("m{i}")), ..Default::default() };
                palaver.post_message(&service, &conv_ref, post).await.map(|_| ())
            }
        }));
    }
    let mut conflicts = 0;
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            Err(Error::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(conflicts, 19, "all but the first unique-name create conflict");
    assert_eq!(created, 181);
    let page = palaver
        .list_messages(&service, &conv_ref, PageQuery { size: 100, cursor: None, descending: false })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 100);
    let conv = palaver.conversation(&service, &conv_ref).await.unwrap();
    assert_eq!(conv.messages_count, 180);
    assert_eq!(conv.last_message_index, Some(179), "indices are dense when nothing failed in between");
}
