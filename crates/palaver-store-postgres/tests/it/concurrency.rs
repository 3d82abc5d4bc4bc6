//! What the conformance suite cannot say through one `Store` handle: two nodes (two `PostgresStore`s, two
//! pools) writing to one database at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use palaver_api::sid::{ConversationSid, MessageSid, ServiceSid};
use palaver_core::event::{EventKind, Origin};
use palaver_core::input::Attributes;
use palaver_core::model::{Conversation, ConversationState, EmailBinding, Timers};
use palaver_core::store::{ConversationRef, NewConversation, NewMessage, NewService, Store};
use time::OffsetDateTime;

use crate::{PostgresFactory, database_url};

const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);

fn new_conversation(service: &ServiceSid) -> NewConversation {
    NewConversation {
        conversation: Conversation {
            sid: ConversationSid::generate(),
            service_sid: service.clone(),
            friendly_name: None,
            unique_name: None,
            attributes: Attributes::empty(),
            messaging_service_sid: None,
            state: ConversationState::Active,
            state_updated: T0,
            timers: Timers::default(),
            created_by: None,
            email_binding: EmailBinding::default(),
            date_created: T0,
            date_updated: T0,
            last_message_index: None,
            last_message_date: None,
            messages_count: 0,
            next_message_index: 0,
            participants_count: 0,
        },
    }
}

fn new_message(body: String) -> NewMessage {
    NewMessage {
        sid: MessageSid::generate(),
        author: "system".to_string(),
        body: Some(body),
        subject: None,
        attributes: Attributes::empty(),
        content_sid: None,
        date_created: T0,
        idempotency_key: None,
        media: Vec::new(),
        max_media_bytes: u64::MAX,
        date_updated: None,
        now: T0,
    }
}

/// Two nodes on one fresh schema, bootstrapped, and the default service.
async fn two_nodes(factory: &PostgresFactory) -> (Arc<dyn Store>, Arc<dyn Store>, ServiceSid) {
    let (a, schema) = factory.fresh_with_schema().await;
    let b = factory.second_node(&schema).await;
    let config = a
        .bootstrap(NewService { sid: ServiceSid::generate(), friendly_name: "Default".into(), now: T0 })
        .await
        .expect("bootstrap");
    // The second node's bootstrap finds the first one's configuration.
    let again = b
        .bootstrap(NewService { sid: ServiceSid::generate(), friendly_name: "Other".into(), now: T0 })
        .await
        .expect("bootstrap on the second node");
    assert_eq!(again.default_service_sid, config.default_service_sid);
    (Arc::new(a), Arc::new(b), config.default_service_sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_writing_one_conversation_get_distinct_gap_free_indices_and_sequence_numbers() {
    let Some(url) = database_url() else { return };
    let factory = PostgresFactory::new(url);
    let (a, b, service) = two_nodes(&factory).await;
    let (conv, _) = a.create_conversation(new_conversation(&service), vec![], &Origin::system()).await.unwrap();
    let conv_ref = ConversationRef::Sid(conv.sid.clone());
    let before = a.stream_position(conv.sid.as_str()).await.unwrap();

    const PER_NODE: usize = 40;
    let mut writers = Vec::new();
    for (node, store) in [(0, &a), (1, &b)] {
        for i in 0..PER_NODE {
            let (store, service, conv_ref) = (Arc::clone(store), service.clone(), conv_ref.clone());
            writers.push(tokio::spawn(async move {
                store
                    .add_message(&service, &conv_ref, new_message(format!("{node}-{i}")), &Origin::system())
                    .await
                    .expect("add a message")
                    .index
            }));
        }
    }
    let mut indices = Vec::new();
    for writer in writers {
        indices.push(writer.await.unwrap());
    }
    indices.sort_unstable();
    let expected: Vec<i64> = (0..2 * PER_NODE as i64).collect();
    assert_eq!(indices, expected, "every index once, none skipped");

    // Both nodes see the same conversation stream: one event per message, sequence numbers without gaps, and
    // log ids that grow with them (one stream commits in sequence order).
    for store in [&a, &b] {
        let events = store.read_events(conv.sid.as_str(), before, 1000).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (before + 1..=before + 2 * PER_NODE as i64).collect::<Vec<_>>());
        assert!(events.iter().all(|e| e.kind == EventKind::MessageAdded));
        assert!(events.windows(2).all(|w| w[0].id < w[1].id), "log ids in sequence order");
        assert_eq!(store.stream_position(conv.sid.as_str()).await.unwrap(), before + 2 * PER_NODE as i64);
    }
    let stored = a.get_conversation(&service, &conv_ref).await.unwrap();
    assert_eq!(stored.messages_count, 2 * PER_NODE as i64);
    assert_eq!(stored.next_message_index, 2 * PER_NODE as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_global_tail_never_skips_an_event_under_concurrent_commits() {
    let Some(url) = database_url() else { return };
    let factory = PostgresFactory::new(url);
    let (a, b, service) = two_nodes(&factory).await;
    // Many conversations, so that writes do not wait for each other's row locks and commit in any order.
    let mut conversations = Vec::new();
    for _ in 0..8 {
        let (conv, _) = a.create_conversation(new_conversation(&service), vec![], &Origin::system()).await.unwrap();
        conversations.push(ConversationRef::Sid(conv.sid));
    }
    let start = a.last_log_id().await.unwrap();

    // The tailer reads like the live feed: everything above the last id it saw, over and over.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tailer = {
        let (reader, done) = (Arc::clone(&b), Arc::clone(&done));
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (start, Vec::new());
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let events = reader.read_log(cursor, 500).await.expect("read the log");
                if let Some(last) = events.last() {
                    cursor = last.id;
                }
                let empty = events.is_empty();
                seen.extend(events.into_iter().map(|e| e.id));
                if finished && empty {
                    return seen;
                }
            }
        })
    };

    let mut writers = Vec::new();
    for (n, store) in [&a, &b].into_iter().enumerate() {
        for (c, conv) in conversations.iter().enumerate() {
            let (store, service, conv) = (Arc::clone(store), service.clone(), conv.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..15 {
                    store
                        .add_message(&service, &conv, new_message(format!("{n}-{c}-{i}")), &Origin::system())
                        .await
                        .expect("add a message");
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = tailer.await.unwrap();

    let all: Vec<i64> = a.read_log(start, 10_000).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(all.len(), 2 * 8 * 15);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "the tail reads ids in increasing order");
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    let missed: Vec<i64> = all.iter().copied().filter(|id| !seen.contains(id)).collect();
    assert!(missed.is_empty(), "the tail skipped events {missed:?}");
}

#[tokio::test]
async fn unimplemented_methods_fail_with_a_typed_error() {
    let Some(url) = database_url() else { return };
    let (store, _) = PostgresFactory::new(url).fresh_with_schema().await;
    let err = store.webhook_cursor().await.unwrap_err();
    assert!(
        matches!(&err, palaver_core::Error::Storage(m) if m == "the PostgreSQL store does not support webhook_cursor yet"),
        "{err:?}"
    );
    assert!(palaver_store_postgres::UNSUPPORTED.contains(&"webhook_cursor"));
}

#[tokio::test]
async fn an_invalid_schema_name_is_refused() {
    let Some(url) = database_url() else { return };
    let err = palaver_store_postgres::PostgresStore::open_in_schema(&url, "x; DROP TABLE y").await.unwrap_err();
    assert!(matches!(err, palaver_core::Error::Storage(_)), "{err:?}");
}
