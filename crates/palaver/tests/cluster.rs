//! Cluster mode: three `palaver serve` processes on loopback ports sharing the test PostgreSQL
//! (`PALAVER_TEST_DATABASE_URL`, a schema per test) and NATS (`PALAVER_TEST_NATS_URL`, a subject prefix per
//! test). Rust SDK clients spread over the nodes see each other's messages, typing and read horizons live, REST
//! writes through one node reach listeners on the others, webhooks fire once per event whichever node plans
//! them, and a node SIGKILLed under load costs no acknowledged message. Both URLs are required under CI.
// Servers are killed and waited for when their `Node` is dropped.
#![allow(clippy::zombie_processes)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_client::emitter::ReplayEventEmitter;
use palaver_client::{
    Client, ClientEvent, ClientEventName, ClientOptions, ConnectionState, Conversation, ConversationEvent,
    ConversationEventName, CreateConversationOptions, ParticipantUpdateReason,
};
use reqwest::Method;
use support::{Node, Schema, call, mint_token, required_url, unique_name};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly.
const PROMPT: Duration = Duration::from_secs(10);

struct Cluster {
    nodes: Vec<Node>,
    schema: Schema,
    /// What every node of this cluster is started with (after `serve --listen … --data-dir …`).
    args: Vec<String>,
    // Kept for the nodes' lifetime.
    _dirs: Vec<tempfile::TempDir>,
    _media: tempfile::TempDir,
}

impl Cluster {
    /// `count` nodes on one fresh schema and one NATS subject prefix, media in one shared directory (as a
    /// cluster needs: a shared object store).
    async fn start(count: usize) -> Option<Cluster> {
        Self::start_with(count, &[]).await
    }

    /// [`Cluster::start`], each node also given `extra` arguments.
    async fn start_with(count: usize, extra: &[&str]) -> Option<Cluster> {
        let database = required_url("PALAVER_TEST_DATABASE_URL")?;
        let nats = required_url("PALAVER_TEST_NATS_URL")?;
        let schema = Schema::create(&database).await;
        let prefix = unique_name("palaver");
        let media = tempfile::tempdir().unwrap();
        let media_url = format!("file://{}", media.path().display());
        let args = ["--database", &schema.url, "--nats", &nats, "--nats-subject-prefix", &prefix, "--media-store-url"]
            .iter()
            .map(|a| a.to_string())
            .chain([media_url])
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let mut cluster = Cluster { nodes: Vec::new(), schema, args, _dirs: Vec::new(), _media: media };
        for _ in 0..count {
            cluster.add_node();
        }
        Some(cluster)
    }

    /// Starts one more node of this cluster; it is `self.nodes.last()`.
    fn add_node(&mut self) {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.nodes.push(Node::start(dir.path(), &args));
        self._dirs.push(dir);
    }

    fn token(&self, identity: &str) -> String {
        mint_token(&self.schema.url, self._dirs[0].path(), identity)
    }

    /// A client of node `first` that, when its connection drops, tries the next node, and so on round the
    /// cluster (what a load balancer in front of the nodes gives real clients).
    async fn client(&self, identity: &str, first: usize) -> Client {
        let urls: Vec<String> = self.nodes.iter().map(Node::ws_url).collect();
        let attempt = AtomicUsize::new(first);
        let options = ClientOptions::with_url_provider(
            move || urls[attempt.fetch_add(1, Ordering::Relaxed) % urls.len()].clone(),
            self.token(identity),
        )
        .with_backoff(Duration::from_millis(20), Duration::from_millis(300));
        Client::connect_with(options).await.expect("connect")
    }
}

/// Records the events of one name from an emitter.
struct Recorder<V> {
    receiver: mpsc::UnboundedReceiver<V>,
}

impl<V: Clone + Send + Sync + 'static> Recorder<V> {
    fn new<K>(emitter: &ReplayEventEmitter<K, V>, name: K) -> Self
    where
        K: Clone + Eq + std::hash::Hash + Send + Sync + std::fmt::Debug + 'static,
    {
        let (sender, receiver) = mpsc::unbounded_channel();
        emitter.on(name, move |value: &V| {
            let _ = sender.send(value.clone());
            Ok(())
        });
        Self { receiver }
    }

    async fn next(&mut self) -> V {
        tokio::time::timeout(PROMPT, self.receiver.recv()).await.expect("an event in time").expect("emitter alive")
    }

    async fn next_matching(&mut self, pred: impl Fn(&V) -> bool) -> V {
        loop {
            let value = self.next().await;
            if pred(&value) {
                return value;
            }
        }
    }

    fn received(&mut self) -> Vec<V> {
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }
}

/// Polls `probe` until it returns `Some`, for at most [`PROMPT`].
async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> Fut) -> T {
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `client`'s handle of conversation `sid`, once it knows it participates.
async fn joined(client: &Client, sid: &str) -> Conversation {
    eventually("the client to learn it joined", || async {
        let conversation = client.get_conversation_by_sid(sid).await.ok()?;
        (conversation.status() == palaver_client::ConversationStatus::Joined).then_some(conversation)
    })
    .await
}

/// The bodies and indices of every message of `sid`, read through `node`, oldest first.
async fn stored_messages(http: &reqwest::Client, node: &Node, sid: &str) -> Vec<(i64, String)> {
    let mut all = Vec::new();
    let mut next = Some(format!("{}/v1/Conversations/{sid}/Messages?PageSize=100", node.url));
    while let Some(url) = next {
        let (status, page) = call(http, Method::GET, url, &[]).await;
        assert_eq!(status, 200, "{page}");
        for message in page["messages"].as_array().unwrap() {
            all.push((message["index"].as_i64().unwrap(), message["body"].as_str().unwrap_or_default().to_string()));
        }
        next = page["meta"]["next_page_url"].as_str().map(str::to_string);
    }
    all
}

/// A webhook receiver on a free port: answers 200 to everything and keeps each request's form.
/// The forms of the webhook requests received so far.
type Received = Arc<Mutex<Vec<HashMap<String, String>>>>;

fn webhook_receiver() -> (String, Received) {
    webhook_receiver_holding(0)
}

/// [`webhook_receiver`] that keeps the first `unanswered` requests (recorded) without ever answering them, as
/// a receiver whose sender dies mid-request sees it.
fn webhook_receiver_holding(unanswered: usize) -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let held = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let keep = keep.clone();
            let held = held.clone();
            std::thread::spawn(move || {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request per connection is enough for a test; read the head, then the body by its length.
                let (head_end, length) = loop {
                    let Ok(n) = stream.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0usize);
                        break (end + 4, length);
                    }
                };
                while buffer.len() < head_end + length {
                    let Ok(n) = stream.read(&mut chunk) else { return };
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let form: HashMap<String, String> =
                    serde_urlencoded::from_bytes(&buffer[head_end..]).unwrap_or_default();
                let count = {
                    let mut received = keep.lock().unwrap();
                    received.push(form);
                    received.len()
                };
                if count <= unanswered {
                    held.lock().unwrap().push(stream);
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            });
        }
    });
    (url, received)
}

/// Sends the account's `onMessageAdded` post-event webhooks to `url`, set through `node`.
async fn post_message_webhooks_to(http: &reqwest::Client, node: &Node, url: &str) {
    let (status, body) = call(
        http,
        Method::POST,
        format!("{}/v1/Configuration/Webhooks", node.url),
        &[("PostWebhookUrl", url), ("Method", "POST"), ("Filters", "onMessageAdded")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_see_each_others_changes_live() {
    let Some(cluster) = Cluster::start(3).await else { return };
    let http = reqwest::Client::new();
    let (hook_url, hooks) = webhook_receiver();
    // Set through one node; the others plan webhooks with it too.
    post_message_webhooks_to(&http, &cluster.nodes[0], &hook_url).await;

    let alice = cluster.client("alice", 0).await;
    let bob = cluster.client("bob", 1).await;
    let carol = cluster.client("carol", 2).await;
    let mut bob_joins = Recorder::new(&bob.events(), ClientEventName::ConversationJoined);
    let conversation = alice
        .create_conversation(CreateConversationOptions::new().friendly_name("across nodes"))
        .await
        .expect("create");
    conversation.join().await.expect("join");
    conversation.add("bob", None).await.expect("add bob");
    conversation.add("carol", None).await.expect("add carol");
    let sid = conversation.sid().to_string();
    // Committed on node 0, told to bob's session on node 1.
    let ClientEvent::ConversationJoined(seen) = bob_joins.next().await else { unreachable!() };
    assert_eq!(seen.sid(), sid);
    let bobs = joined(&bob, &sid).await;
    let carols = joined(&carol, &sid).await;

    // Messages.
    let mut bob_added = Recorder::new(&bobs.events(), ConversationEventName::MessageAdded);
    let mut carol_added = Recorder::new(&carols.events(), ConversationEventName::MessageAdded);
    let mut alice_added = Recorder::new(&conversation.events(), ConversationEventName::MessageAdded);
    let index = conversation.send_message("hello from node 0", None, None).await.unwrap();
    for recorder in [&mut bob_added, &mut carol_added] {
        let ConversationEvent::MessageAdded(message) = recorder.next().await else { unreachable!() };
        assert_eq!((message.index(), message.body()), (index, Some("hello from node 0")));
    }
    let index = bobs.send_message("hello from node 1", None, None).await.unwrap();
    for recorder in [&mut alice_added, &mut carol_added] {
        let ConversationEvent::MessageAdded(message) =
            recorder.next_matching(|e| matches!(e, ConversationEvent::MessageAdded(m) if m.index() == index)).await
        else {
            unreachable!()
        };
        assert_eq!(message.author(), Some("bob"));
    }

    // Typing is never stored: only the bus carries it from node 1 to node 0.
    let mut alice_typing = Recorder::new(&conversation.events(), ConversationEventName::TypingStarted);
    bobs.typing().await.unwrap();
    let ConversationEvent::TypingStarted(typist) = alice_typing.next().await else { unreachable!() };
    assert_eq!(typist.identity().as_deref(), Some("bob"));

    // A read horizon set on node 2 reaches node 0.
    let mut alice_roster = Recorder::new(&conversation.events(), ConversationEventName::ParticipantUpdated);
    assert_eq!(carols.advance_last_read_message_index(index).await.unwrap(), 0);
    let ConversationEvent::ParticipantUpdated { participant, update_reasons } = alice_roster
        .next_matching(|e| matches!(e, ConversationEvent::ParticipantUpdated { participant, .. } if participant.identity().as_deref() == Some("carol")))
        .await
    else {
        unreachable!()
    };
    assert!(update_reasons.contains(&ParticipantUpdateReason::LastReadMessageIndex), "{update_reasons:?}");
    assert_eq!(participant.last_read_message_index(), Some(index));
    // Bob (node 1) has read the first message: one unread.
    bobs.advance_last_read_message_index(0).await.unwrap();
    assert_eq!(bobs.get_unread_messages_count().await.unwrap(), Some(1));

    // A REST write through node 1 reaches the SDK listeners on nodes 0 and 2.
    let (status, posted) = call(
        &http,
        Method::POST,
        format!("{}/v1/Conversations/{sid}/Messages", cluster.nodes[1].url),
        &[("Author", "system"), ("Body", "via REST on node 1")],
    )
    .await;
    assert_eq!(status, 201, "{posted}");
    let rest_index = posted["index"].as_i64().unwrap();
    for recorder in [&mut alice_added, &mut carol_added] {
        let ConversationEvent::MessageAdded(message) = recorder
            .next_matching(|e| matches!(e, ConversationEvent::MessageAdded(m) if m.index() == rest_index))
            .await
        else {
            unreachable!()
        };
        assert_eq!(message.body(), Some("via REST on node 1"));
    }
    eventually("bob's unread count to count the REST message", || async {
        (bobs.get_unread_messages_count().await.ok()? == Some(2)).then_some(())
    })
    .await;

    // Messages from every node: each webhook is sent once, whichever node planned and sent it.
    for round in 0..4 {
        for (who, handle) in [("alice", &conversation), ("bob", &bobs), ("carol", &carols)] {
            handle.send_message(&format!("{who} {round}"), None, None).await.unwrap();
        }
    }
    let sdk_messages: Vec<String> = stored_messages(&http, &cluster.nodes[2], &sid)
        .await
        .into_iter()
        .filter(|(_, body)| body != "via REST on node 1")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(sdk_messages.len(), 14);
    eventually("a webhook per SDK message", || async {
        (hooks.lock().unwrap().len() >= sdk_messages.len()).then_some(())
    })
    .await;
    // Time for a duplicate to show up, if a second node were to send one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_body: BTreeMap<String, usize> = BTreeMap::new();
    for hook in hooks.lock().unwrap().iter() {
        assert_eq!(hook.get("EventType").map(String::as_str), Some("onMessageAdded"), "{hook:?}");
        *per_body.entry(hook.get("Body").cloned().unwrap_or_default()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = sdk_messages.iter().map(|b| (b.clone(), 1)).collect();
    assert_eq!(per_body, expected, "each SDK message's webhook once (REST writes without the header fire none)");

    // Removing carol through node 0 takes effect on node 2 at once: her session may no longer write.
    let carol_participant = conversation.get_participant_by_identity("carol").await.unwrap().unwrap();
    let (status, _) = call(
        &http,
        Method::DELETE,
        format!("{}/v1/Conversations/{sid}/Participants/{}", cluster.nodes[0].url, carol_participant.sid()),
        &[],
    )
    .await;
    assert_eq!(status, 204);
    eventually("carol's node to refuse her messages", || async {
        carols.send_message("still here?", None, None).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_message() {
    let Some(mut cluster) = Cluster::start(3).await else { return };
    let http = reqwest::Client::new();
    let (status, created) =
        call(&http, Method::POST, format!("{}/v1/Conversations", cluster.nodes[0].url), &[("FriendlyName", "load")])
            .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().unwrap().to_string();
    let senders = ["alice", "bob", "carol"];
    for identity in senders.iter().chain(&["dave"]) {
        let (status, body) = call(
            &http,
            Method::POST,
            format!("{}/v1/Conversations/{sid}/Participants", cluster.nodes[0].url),
            &[("Identity", identity)],
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Dave listens on node 1, the one that dies; one sender starts on each node.
    let dave = cluster.client("dave", 1).await;
    let daves = joined(&dave, &sid).await;
    let mut dave_added = Recorder::new(&daves.events(), ConversationEventName::MessageAdded);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (node, identity) in senders.iter().enumerate() {
        let client = cluster.client(identity, node).await;
        let conversation = joined(&client, &sid).await;
        let stop = stop.clone();
        let identity = identity.to_string();
        tasks.push(tokio::spawn(async move {
            // (body, index) of every send the server acknowledged.
            let mut acknowledged = Vec::new();
            let mut failed = 0;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("{identity}-{n}");
                n += 1;
                match conversation.send_message(&body, None, None).await {
                    Ok(index) => acknowledged.push((body, index)),
                    // Not acknowledged: it may or may not be stored, but never twice.
                    Err(_) => failed += 1,
                }
            }
            (client, acknowledged, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.nodes[1].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, acked, failed) = tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap();
        assert!(acked.len() > 5, "each sender got messages through ({} acknowledged, {failed} failed)", acked.len());
        acknowledged.extend(acked);
        clients.push(client);
    }

    let stored = stored_messages(&http, &cluster.nodes[2], &sid).await;
    // In index order, indices unique, bodies unique: nothing stored twice.
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "indices increase");
    let by_body: HashMap<&str, i64> = stored.iter().map(|(i, b)| (b.as_str(), *i)).collect();
    assert_eq!(by_body.len(), stored.len(), "no message stored twice");
    for (body, index) in &acknowledged {
        assert_eq!(by_body.get(body.as_str()), Some(index), "acknowledged {body} is stored at its index");
    }
    // Each sender's own messages are in the order it sent them.
    for identity in senders {
        let own: Vec<u64> = stored
            .iter()
            .filter_map(|(_, b)| b.strip_prefix(&format!("{identity}-")).and_then(|n| n.parse().ok()))
            .collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "{identity}'s messages in order: {own:?}");
    }
    // Dave's client came back through another node, resumed, and saw every message once.
    eventually("dave to reconnect", || async { (dave.connection_state() == ConnectionState::Connected).then_some(()) })
        .await;
    let mut seen: Vec<i64> = Vec::new();
    eventually("dave to see every stored message", || {
        seen.extend(dave_added.received().into_iter().filter_map(|e| match e {
            ConversationEvent::MessageAdded(m) => Some(m.index()),
            _ => None,
        }));
        let done = seen.len() >= stored.len();
        async move { done.then_some(()) }
    })
    .await;
    let expected: Vec<i64> = stored.iter().map(|(i, _)| *i).collect();
    assert_eq!(seen, expected, "every message once, in order");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_leaves_the_rotation_and_its_clients_move_on() {
    let Some(mut cluster) = Cluster::start_with(2, &["--drain-seconds", "2"]).await else { return };
    let http = reqwest::Client::new();
    for node in &cluster.nodes {
        let (status, ready) = call(&http, Method::GET, format!("{}/readyz", node.url), &[]).await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!((ready["database"].as_str(), ready["nats"].as_str()), (Some("ok"), Some("ok")), "{ready}");
    }
    let (_, created) =
        call(&http, Method::POST, format!("{}/v1/Conversations", cluster.nodes[1].url), &[("FriendlyName", "drain")])
            .await;
    let sid = created["sid"].as_str().unwrap().to_string();
    let (status, _) = call(
        &http,
        Method::POST,
        format!("{}/v1/Conversations/{sid}/Participants", cluster.nodes[1].url),
        &[("Identity", "erin")],
    )
    .await;
    assert_eq!(status, 201);
    let erin = cluster.client("erin", 0).await;
    let erins = joined(&erin, &sid).await;
    let mut added = Recorder::new(&erins.events(), ConversationEventName::MessageAdded);

    let pid = cluster.nodes[0].child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Out of the rotation at once, while it still answers.
    let readiness = eventually("the draining node to say so", || async {
        let (status, ready) = call(&http, Method::GET, format!("{}/readyz", cluster.nodes[0].url), &[]).await;
        (status == 503).then_some(ready)
    })
    .await;
    assert_eq!(readiness["draining"], true, "{readiness}");
    let (status, _) = call(&http, Method::GET, format!("{}/healthz", cluster.nodes[0].url), &[]).await;
    assert_eq!(status, 200, "alive while draining");
    let (status, _) = call(&http, Method::GET, format!("{}/v1/Conversations/{sid}", cluster.nodes[0].url), &[]).await;
    assert_eq!(status, 200, "still serving requests while draining");
    // Then it stops cleanly, and erin's client continues on the other node.
    let exited = tokio::task::spawn_blocking(move || {
        let ok = cluster.nodes[0].child.wait().is_ok_and(|s| s.success());
        (cluster, ok)
    });
    let (cluster, exited_cleanly) = tokio::time::timeout(PROMPT, exited).await.unwrap().unwrap();
    assert!(exited_cleanly, "a drained node exits 0");
    let (status, _) = call(
        &http,
        Method::POST,
        format!("{}/v1/Conversations/{sid}/Messages", cluster.nodes[1].url),
        &[("Author", "system"), ("Body", "after the drain")],
    )
    .await;
    assert_eq!(status, 201);
    let ConversationEvent::MessageAdded(message) = added.next().await else { unreachable!() };
    assert_eq!(message.body(), Some("after the drain"));
    assert_eq!(erin.connection_state(), ConnectionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_hears_nothing_on_nats_still_delivers_every_event_from_the_database() {
    let Some(database) = required_url("PALAVER_TEST_DATABASE_URL") else { return };
    let Some(nats) = required_url("PALAVER_TEST_NATS_URL") else { return };
    let schema = Schema::create(&database).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Different subject prefixes: the nodes share the database but not one publication.
    let (prefix_a, prefix_b) = (unique_name("deaf_a"), unique_name("deaf_b"));
    let a =
        Node::start(dir_a.path(), &["--database", &schema.url, "--nats", &nats, "--nats-subject-prefix", &prefix_a]);
    let b =
        Node::start(dir_b.path(), &["--database", &schema.url, "--nats", &nats, "--nats-subject-prefix", &prefix_b]);
    let http = reqwest::Client::new();
    let (_, created) =
        call(&http, Method::POST, format!("{}/v1/Conversations", a.url), &[("FriendlyName", "deaf")]).await;
    let sid = created["sid"].as_str().unwrap().to_string();
    call(&http, Method::POST, format!("{}/v1/Conversations/{sid}/Participants", a.url), &[("Identity", "frank")]).await;
    let token = mint_token(&schema.url, dir_a.path(), "frank");
    let frank = Client::connect_with(
        ClientOptions::new(b.ws_url(), token).with_backoff(Duration::from_millis(20), Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let franks = joined(&frank, &sid).await;
    let mut added = Recorder::new(&franks.events(), ConversationEventName::MessageAdded);
    for n in 0..5 {
        let body = format!("unheard {n}");
        let (status, _) = call(
            &http,
            Method::POST,
            format!("{}/v1/Conversations/{sid}/Messages", a.url),
            &[("Author", "system"), ("Body", body.as_str())],
        )
        .await;
        assert_eq!(status, 201);
    }
    for n in 0..5 {
        let ConversationEvent::MessageAdded(message) = added.next().await else { unreachable!() };
        assert_eq!((message.index(), message.body()), (n, Some(format!("unheard {n}").as_str())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_sender_died_mid_request_is_sent_by_another_node() {
    let Some(mut cluster) = Cluster::start(1).await else { return };
    let http = reqwest::Client::new();
    let (hook_url, hooks) = webhook_receiver_holding(1);
    post_message_webhooks_to(&http, &cluster.nodes[0], &hook_url).await;
    let (_, created) =
        call(&http, Method::POST, format!("{}/v1/Conversations", cluster.nodes[0].url), &[("FriendlyName", "lease")])
            .await;
    let sid = created["sid"].as_str().unwrap().to_string();
    let posted = http
        .post(format!("{}/v1/Conversations/{sid}/Messages", cluster.nodes[0].url))
        .basic_auth(support::ACCOUNT, Some(support::TOKEN))
        .header("X-Twilio-Webhook-Enabled", "true")
        .form(&[("Author", "system"), ("Body", "leased")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    // Node 0 is sending it (the receiver holds the request unanswered) when it dies; node 1 is alive.
    eventually("node 0 to send the webhook", || async { (hooks.lock().unwrap().len() == 1).then_some(()) }).await;
    let sent_first = std::time::Instant::now();
    cluster.add_node();
    cluster.nodes[0].kill();
    // The entry is node 0's until its lease (15 s) ends; then node 1 claims and sends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while hooks.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "another node sends the dead node's webhook");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = sent_first.elapsed();
    assert!(waited >= Duration::from_secs(10), "not taken over while the lease runs ({waited:?})");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hooks = hooks.lock().unwrap();
    assert_eq!(hooks.len(), 2, "sent again once, then answered: {hooks:?}");
    for hook in hooks.iter() {
        assert_eq!(hook.get("EventType").map(String::as_str), Some("onMessageAdded"));
        assert_eq!(hook.get("Body").map(String::as_str), Some("leased"));
    }
    assert_eq!(hooks[0].get("MessageSid"), hooks[1].get("MessageSid"));
}
