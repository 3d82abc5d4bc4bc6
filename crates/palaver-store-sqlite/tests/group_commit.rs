//! Group commit keeps each write atomic on its own: concurrent writes commit together, and one that fails
//! rolls back only itself.

use std::sync::Arc;

use palaver_api::sid::MessageSid;
use palaver_core::error::Error;
use palaver_core::event::Origin;
use palaver_core::input::{Attributes, UniqueName};
use palaver_core::model::ConversationState;
use palaver_core::service::{CreateConversation, PostMessage, Settings};
use palaver_core::store::{ConversationPatch, ConversationRef, NewMessage, PageQuery, Store};
use palaver_core::{Palaver, SystemClock};
use palaver_store_sqlite::SqliteStore;
use time::OffsetDateTime;

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

fn new_message(sid: MessageSid, body: &str) -> NewMessage {
    let now = OffsetDateTime::now_utc();
    NewMessage {
        sid,
        author: "writer".into(),
        body: Some(body.into()),
        subject: None,
        attributes: Attributes::default(),
        content_sid: None,
        date_created: now,
        idempotency_key: None,
        media: Vec::new(),
        max_media_bytes: 0,
        date_updated: None,
        now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_refused_before_any_change_leave_their_group_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
    let palaver = Palaver::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let service = palaver.bootstrap().await.unwrap().default_service_sid;
    let open = palaver.create_conversation(&service, CreateConversation::default()).await.unwrap();
    let closed = palaver.create_conversation(&service, CreateConversation::default()).await.unwrap();
    let close = ConversationPatch { state: Some(ConversationState::Closed), ..Default::default() };
    palaver.update_conversation(&service, &ConversationRef::Sid(closed.sid.clone()), close).await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..200 {
        let (palaver, service) = (palaver.clone(), service.clone());
        let target = ConversationRef::Sid(if i % 2 == 0 { open.sid.clone() } else { closed.sid.clone() });
        tasks.push(tokio::spawn(async move {
            let post = PostMessage { body: Some(format!("m{i}")), ..Default::default() };
            palaver.post_message(&service, &target, post).await.map(|_| ())
        }));
    }
    let (mut sent, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => sent += 1,
            Err(Error::ConversationClosed(_)) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((sent, refused), (100, 100));
    let open = palaver.conversation(&service, &ConversationRef::Sid(open.sid)).await.unwrap();
    assert_eq!(open.messages_count, 100);
    assert_eq!(open.last_message_index, Some(99));
    let closed = palaver.conversation(&service, &ConversationRef::Sid(closed.sid)).await.unwrap();
    assert_eq!(closed.messages_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_failing_part_way_rolls_back_its_group_and_nothing_unacknowledged_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
    let palaver = Palaver::new(store.clone(), Arc::new(SystemClock), Settings::default());
    let service = palaver.bootstrap().await.unwrap().default_service_sid;
    let conv = palaver.create_conversation(&service, CreateConversation::default()).await.unwrap();
    let conv_ref = ConversationRef::Sid(conv.sid.clone());
    let taken = store
        .add_message(&service, &conv_ref, new_message(MessageSid::generate(), "first"), &Origin::system())
        .await
        .unwrap()
        .sid;

    // The duplicate SID passes every check and fails on the insert, after the index was taken.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (store, service, conv_ref) = (store.clone(), service.clone(), conv_ref.clone());
        let sid = if i == 150 { taken.clone() } else { MessageSid::generate() };
        tasks.push(tokio::spawn(async move {
            let body = format!("m{i}");
            store.add_message(&service, &conv_ref, new_message(sid, &body), &Origin::system()).await
        }));
    }
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(message) => acknowledged.push(message),
            Err(Error::Storage(_)) => failed += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(failed >= 1, "the duplicate must fail");
    let conv = palaver.conversation(&service, &conv_ref).await.unwrap();
    assert_eq!(conv.messages_count, acknowledged.len() as i64 + 1, "exactly the acknowledged messages were kept");
    for message in &acknowledged {
        let stored = palaver.message(&service, &conv_ref, &message.sid).await.unwrap();
        assert_eq!((stored.index, stored.body.clone()), (message.index, message.body.clone()));
    }
    // The store goes on writing after the rolled-back group.
    let after =
        store.add_message(&service, &conv_ref, new_message(MessageSid::generate(), "after"), &Origin::system()).await;
    assert_eq!(after.unwrap().body.as_deref(), Some("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_ahead_log_stays_bounded_under_steady_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let palaver = Palaver::new(Arc::new(SqliteStore::open(&path).unwrap()), Arc::new(SystemClock), Settings::default());
    let service = palaver.bootstrap().await.unwrap().default_service_sid;
    let conv = palaver.create_conversation(&service, CreateConversation::default()).await.unwrap();
    let conv_ref = ConversationRef::Sid(conv.sid.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (palaver, service, conv_ref, stop) = (palaver.clone(), service.clone(), conv_ref.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                palaver.conversation(&service, &conv_ref).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let body = "x".repeat(2000);
    let mut largest_wal = 0;
    for round in 0..40 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let (palaver, service, conv_ref) = (palaver.clone(), service.clone(), conv_ref.clone());
            let post = PostMessage { body: Some(body.clone()), ..Default::default() };
            batch.push(tokio::spawn(async move { palaver.post_message(&service, &conv_ref, post).await }));
        }
        for task in batch {
            task.await.unwrap().unwrap();
        }
        if round % 5 == 4 {
            let wal = std::fs::metadata(dir.path().join("db.sqlite3-wal")).map(|m| m.len()).unwrap_or(0);
            largest_wal = largest_wal.max(wal);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.await.unwrap();
    // 4 000 messages of 2 KB each with their events are well over 16 MB of pages; the log restarts long before.
    assert!(largest_wal < 16 * 1024 * 1024, "the WAL grew to {largest_wal} bytes");
    let conv = palaver.conversation(&service, &conv_ref).await.unwrap();
    assert_eq!(conv.messages_count, 4000);
}
