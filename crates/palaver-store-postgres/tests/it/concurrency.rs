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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_for_one_upload_attach_it_once() {
    let Some(url) = database_url() else { return };
    let factory = PostgresFactory::new(url);
    let (a, b, service) = two_nodes(&factory).await;
    for round in 0..20 {
        let upload = palaver_core::media::Media {
            sid: palaver_api::sid::MediaSid::generate(),
            service_sid: service.clone(),
            content_type: "image/png".into(),
            filename: Some(format!("{round}.png")),
            size: 100,
            sha256: format!("{round:064x}"),
            author: None,
            category: palaver_core::media::MediaCategory::Media,
            message_sid: None,
            conversation_sid: None,
            date_created: T0,
        };
        let upload = a.create_media(upload).await.unwrap();
        // Eight senders, four per node, each in a conversation of its own, all start at once.
        let mut conversations = Vec::new();
        for node in [&a, &b, &a, &b, &a, &b, &a, &b] {
            let (conv, _) =
                node.create_conversation(new_conversation(&service), vec![], &Origin::system()).await.unwrap();
            conversations.push((node, conv));
        }
        let mut sends = Vec::new();
        for (node, conv) in conversations {
            let (node, service, media) = (Arc::clone(node), service.clone(), upload.sid.clone());
            sends.push(tokio::spawn(async move {
                let message = NewMessage { media: vec![media], ..new_message("with a picture".into()) };
                node.add_message(&service, &ConversationRef::Sid(conv.sid.clone()), message, &Origin::system()).await
            }));
        }
        let mut attached = Vec::new();
        for send in sends {
            match send.await.unwrap() {
                Ok(message) => attached.push(message),
                Err(palaver_core::Error::Invalid(_)) => {}
                Err(other) => panic!("unexpected failure: {other:?}"),
            }
        }
        assert_eq!(attached.len(), 1, "exactly one message takes the upload");
        let stored = b.find_media(&upload.sid).await.unwrap();
        assert_eq!(stored.message_sid.as_ref(), Some(&attached[0].sid));
        assert_eq!(attached[0].media, [stored.descriptor()]);
    }
}

/// What the tests claim outbox jobs for.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

fn delivery(event_id: i64) -> palaver_core::webhook::NewDelivery {
    palaver_core::webhook::NewDelivery {
        event_id,
        url: format!("https://{event_id}.example/"),
        method: palaver_core::webhook::HookMethod::Post,
        params: vec![("EventType".into(), "onMessageAdded".into())],
    }
}

/// An outbox claim skips the entries another node's claim holds, instead of waiting for them or returning
/// them too, and takes them once they are released. The other claim is played by a transaction that keeps
/// the first entry's row locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_claim_skips_the_entries_another_claim_holds() {
    let Some(url) = database_url() else { return };
    let factory = PostgresFactory::new(url.clone());
    let (store, schema) = factory.fresh_with_schema().await;
    store.enqueue_webhooks(vec![delivery(1), delivery(2)], 0, 2, T0).await.unwrap();

    let (other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    other.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
    let ids: Vec<i64> = other
        .query("SELECT id FROM webhook_outbox ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    other.batch_execute("BEGIN").await.unwrap();
    other.execute("SELECT 1 FROM webhook_outbox WHERE id = $1 FOR UPDATE", &[&ids[0]]).await.unwrap();
    let claim = tokio::time::timeout(std::time::Duration::from_secs(5), store.due_webhooks(T0, LEASE, 10))
        .await
        .expect("the claim does not wait for the held entry")
        .unwrap();
    assert_eq!(claim.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[1]], "the held entry is skipped");
    other.batch_execute("ROLLBACK").await.unwrap();
    let after = store.due_webhooks(T0, LEASE, 10).await.unwrap();
    assert_eq!(
        after.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[0]],
        "released, it is claimed; the other is leased"
    );
    drop(other);
    let _ = connection.await;
}

/// Two nodes run what their webhook dispatchers run, at once: planners offering batches of their own sizes
/// from the cursor they last saw, then claimers taking the outbox in rounds. Every event is planned once and
/// every entry is claimed by one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_plan_each_event_once_and_claim_each_entry_once() {
    const EVENTS: i64 = 200;
    let Some(url) = database_url() else { return };
    let factory = PostgresFactory::new(url);
    let (a, b, _) = two_nodes(&factory).await;

    let planners: Vec<_> = [(&a, 7), (&b, 11), (&a, 13), (&b, 3)]
        .into_iter()
        .map(|(node, step)| {
            let node = Arc::clone(node);
            tokio::spawn(async move {
                let mut saved = node.webhook_cursor().await.unwrap();
                while saved < EVENTS {
                    let to = (saved + step).min(EVENTS);
                    saved =
                        node.enqueue_webhooks((saved + 1..=to).map(delivery).collect(), saved, to, T0).await.unwrap();
                }
            })
        })
        .collect();
    for planner in planners {
        planner.await.unwrap();
    }

    let claimers: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|node| {
            let node = Arc::clone(node);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let round = node.due_webhooks(T0, LEASE, 16).await.unwrap();
                    if round.is_empty() {
                        return claimed;
                    }
                    claimed.extend(round.into_iter().map(|d| d.request.event_id));
                }
            })
        })
        .collect();
    let mut events = Vec::new();
    for claimer in claimers {
        events.extend(claimer.await.unwrap());
    }
    events.sort_unstable();
    assert_eq!(events, (1..=EVENTS).collect::<Vec<_>>(), "each event planned once and claimed once");
}

#[tokio::test]
async fn every_method_is_implemented() {
    assert!(palaver_store_postgres::UNSUPPORTED.is_empty(), "{:?}", palaver_store_postgres::UNSUPPORTED);
    let Some(url) = database_url() else { return };
    let (store, _) = PostgresFactory::new(url).fresh_with_schema().await;
    assert_eq!(store.webhook_cursor().await.unwrap(), 0);
}

#[tokio::test]
async fn an_invalid_schema_name_is_refused() {
    let Some(url) = database_url() else { return };
    let err = palaver_store_postgres::PostgresStore::open_in_schema(&url, "x; DROP TABLE y").await.unwrap_err();
    assert!(matches!(err, palaver_core::Error::Storage(_)), "{err:?}");
}

#[tokio::test]
async fn the_url_sizes_the_connection_pool() {
    let Some(url) = database_url() else { return };
    let separator = if url.contains('?') { '&' } else { '?' };
    let sized = format!("{url}{separator}pool_max_conns=3");
    let store = palaver_store_postgres::PostgresStore::open_in_schema(&sized, &crate::fresh_schema()).await.unwrap();
    // Six operations at once on three connections: they all complete, and never more than three are open.
    let reads = (0..6).map(|_| store.webhook_cursor());
    for cursor in futures_util::future::join_all(reads).await {
        assert_eq!(cursor.unwrap(), 0);
    }
    let pool = store.connection_pool().expect("a pooled store");
    assert_eq!(pool.max, 3);
    assert!((1..=3).contains(&pool.open), "{pool:?}");
}
