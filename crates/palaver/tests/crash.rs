//! Crash safety of the embedded database: `palaver serve` is SIGKILLed again and again under mixed write load
//! (REST message creates retried with their idempotency keys, realtime sends from the Rust SDK, participants
//! added, a read horizon moved), and after every kill the database passes `PRAGMA integrity_check` and the
//! restarted server holds every acknowledged message, participant and horizon, each message once and in its
//! sender's order. Then a SIGTERM under the same load stops the server within seconds, losing nothing either.
//!
//! `PALAVER_CRASH_CYCLES` sets the number of kills (default 6; run it with a few hundred by hand).
// The server is killed and waited for by `Node`.
#![allow(clippy::zombie_processes)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use palaver_client::{Client, ClientOptions, Conversation};
use reqwest::Method;
use support::{ACCOUNT, Node, TOKEN, call};

/// REST writers, realtime senders.
const REST_WRITERS: usize = 2;
const SDK_SENDERS: usize = 2;

/// What the load generators were told was done, shared with the checker.
#[derive(Default)]
struct Acknowledged {
    /// Message body → index, for every create the server answered.
    messages: Mutex<HashMap<String, i64>>,
    /// Identities of the participants whose addition was answered.
    participants: Mutex<Vec<String>>,
    /// The horizon last acknowledged, and the highest one ever asked for.
    horizon: Mutex<(Option<i64>, Option<i64>)>,
    /// Answers no client should ever get (a 4xx other than the expected ones, a malformed body).
    unexpected: Mutex<Vec<String>>,
}

/// The address of the server currently running, for clients that reconnect after a crash.
type CurrentUrl = Arc<RwLock<String>>;

struct Load {
    acknowledged: Arc<Acknowledged>,
    /// Asks every generator to finish its current operation (retrying it until answered) and stop.
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Kept alive while the load runs.
    clients: Vec<Client>,
}

fn database_file(dir: &Path) -> std::path::PathBuf {
    dir.join("palaver.sqlite3")
}

/// `PRAGMA integrity_check` on the database of a stopped server.
fn assert_intact(dir: &Path, when: &str) {
    let db = rusqlite::Connection::open(database_file(dir)).expect("open the database");
    let verdict: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity_check");
    assert_eq!(verdict, "ok", "integrity after {when}");
}

/// A token for `identity` minted with the server's API key (the server may be down: the key is in the file).
fn token(dir: &Path, identity: &str) -> String {
    let out = std::process::Command::new(support::BIN)
        .args(["token", "--identity", identity, "--data-dir"])
        .arg(dir)
        .env("PALAVER_ACCOUNT_SID", ACCOUNT)
        .env("PALAVER_AUTH_TOKEN", TOKEN)
        .env_remove("PALAVER_DATABASE_URL")
        .env("PALAVER_LOG", "warn")
        .output()
        .expect("run palaver token");
    assert!(out.status.success(), "palaver token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn sdk_client(url: &CurrentUrl, dir: &Path, identity: &str) -> Client {
    let ws = url.clone();
    let options = ClientOptions::with_url_provider(
        move || format!("{}/v1/realtime", ws.read().unwrap().replacen("http://", "ws://", 1)),
        token(dir, identity),
    )
    .with_backoff(Duration::from_millis(20), Duration::from_millis(200));
    Client::connect_with(options).await.expect("connect")
}

async fn conversation_of(client: &Client, sid: &str) -> Conversation {
    for _ in 0..200 {
        if let Ok(conversation) = client.get_conversation_by_sid(sid).await {
            return conversation;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the client never saw conversation {sid}");
}

/// POSTs `form` to the current server until it answers with one of `done` (retrying the same request, headers
/// included, across crashes); returns that answer.
async fn until_answered(
    http: &reqwest::Client,
    url: &CurrentUrl,
    path: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
    done: &[u16],
    acknowledged: &Acknowledged,
) -> (u16, serde_json::Value) {
    loop {
        let base = url.read().unwrap().clone();
        let mut request = http
            .post(format!("{base}{path}"))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .form(form)
            .timeout(Duration::from_secs(5));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // An error is a server that is down or died mid-request: not acknowledged, so ask again.
        if let Ok(response) = request.send().await {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            if done.contains(&status) {
                return (status, body);
            }
            if status < 500 {
                acknowledged.unexpected.lock().unwrap().push(format!("{path}: {status} {body}"));
                return (status, body);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Load {
    async fn start(http: &reqwest::Client, url: &CurrentUrl, dir: &Path, sid: &str) -> Load {
        let acknowledged = Arc::new(Acknowledged::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut clients = Vec::new();
        for writer in 0..REST_WRITERS {
            let (http, url, acknowledged, stop) = (http.clone(), url.clone(), acknowledged.clone(), stop.clone());
            let path = format!("/v1/Conversations/{sid}/Messages");
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!("rest{writer}-{n}");
                    let author = format!("rest{writer}");
                    let (status, message) = until_answered(
                        &http,
                        &url,
                        &path,
                        &[("Idempotency-Key", &body)],
                        &[("Author", &author), ("Body", &body)],
                        &[201],
                        &acknowledged,
                    )
                    .await;
                    if status == 201 {
                        let index = message["index"].as_i64().expect("a created message has an index");
                        acknowledged.messages.lock().unwrap().insert(body, index);
                    }
                }
            }));
        }
        for sender in 0..SDK_SENDERS {
            let identity = format!("sdk{sender}");
            let client = sdk_client(url, dir, &identity).await;
            let conversation = conversation_of(&client, sid).await;
            clients.push(client);
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!("{identity}-{n}");
                    // An error is an unacknowledged send: stored once or not at all, never twice.
                    match conversation.send_message(&body, None, None).await {
                        Ok(index) => {
                            acknowledged.messages.lock().unwrap().insert(body, index);
                        }
                        // Fails fast while disconnected: do not spin.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        {
            let (http, url, acknowledged, stop) = (http.clone(), url.clone(), acknowledged.clone(), stop.clone());
            let path = format!("/v1/Conversations/{sid}/Participants");
            tasks.push(tokio::spawn(async move {
                // Below the 1 000 participants a conversation may have, however long the run.
                for n in 0..900 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let identity = format!("guest{n}");
                    // 409: an earlier attempt that died unanswered had added it.
                    let (status, _) =
                        until_answered(&http, &url, &path, &[], &[("Identity", &identity)], &[201, 409], &acknowledged)
                            .await;
                    if status == 201 || status == 409 {
                        acknowledged.participants.lock().unwrap().push(identity);
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }));
        }
        {
            let client = sdk_client(url, dir, "reader").await;
            let conversation = conversation_of(&client, sid).await;
            clients.push(client);
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    acknowledged.horizon.lock().unwrap().1 = Some(n);
                    if conversation.update_last_read_message_index(Some(n)).await.is_ok() {
                        acknowledged.horizon.lock().unwrap().0 = Some(n);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        Load { acknowledged, stop, tasks, clients }
    }

    /// Lets every generator finish what it started (a REST create is retried until answered) and stops them.
    async fn finish(self) -> Arc<Acknowledged> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(90), task).await.expect("the load stops").expect("no panic");
        }
        drop(self.clients);
        self.acknowledged
    }

    /// What was acknowledged so far.
    fn snapshot(&self) -> (HashMap<String, i64>, Vec<String>, Option<i64>) {
        let acknowledged = &self.acknowledged;
        let messages = acknowledged.messages.lock().unwrap().clone();
        let participants = acknowledged.participants.lock().unwrap().clone();
        let horizon = acknowledged.horizon.lock().unwrap().0;
        (messages, participants, horizon)
    }
}

/// Everything of conversation `sid` a running server holds: messages as (index, body), participants'
/// identities, and the reader's horizon.
struct Stored {
    messages: Vec<(i64, String)>,
    participants: Vec<String>,
    horizon: Option<i64>,
}

async fn stored(http: &reqwest::Client, base: &str, sid: &str) -> Stored {
    let mut messages = Vec::new();
    let mut next = Some(format!("{base}/v1/Conversations/{sid}/Messages?PageSize=100"));
    while let Some(url) = next {
        let (status, page) = call(http, Method::GET, url, &[]).await;
        assert_eq!(status, 200, "{page}");
        for message in page["messages"].as_array().unwrap() {
            messages.push((message["index"].as_i64().unwrap(), message["body"].as_str().unwrap_or_default().into()));
        }
        next = page["meta"]["next_page_url"].as_str().map(str::to_string);
    }
    let mut participants = Vec::new();
    let mut horizon = None;
    let mut next = Some(format!("{base}/v1/Conversations/{sid}/Participants?PageSize=100"));
    while let Some(url) = next {
        let (status, page) = call(http, Method::GET, url, &[]).await;
        assert_eq!(status, 200, "{page}");
        for participant in page["participants"].as_array().unwrap() {
            let identity = participant["identity"].as_str().unwrap_or_default().to_string();
            if identity == "reader" {
                horizon = participant["last_read_message_index"].as_i64();
            }
            participants.push(identity);
        }
        next = page["meta"]["next_page_url"].as_str().map(str::to_string);
    }
    Stored { messages, participants, horizon }
}

/// Checks what a restarted server holds against what was acknowledged before it went down.
fn check(
    stored: &Stored,
    (messages, participants, horizon): &(HashMap<String, i64>, Vec<String>, Option<i64>),
    highest_horizon_asked: Option<i64>,
    when: &str,
) {
    let mut by_body: HashMap<&str, i64> = HashMap::new();
    for (index, body) in &stored.messages {
        assert!(by_body.insert(body.as_str(), *index).is_none(), "{when}: {body} stored twice");
    }
    assert!(stored.messages.windows(2).all(|w| w[0].0 < w[1].0), "{when}: indices increase");
    for (body, index) in messages {
        assert_eq!(by_body.get(body.as_str()), Some(index), "{when}: acknowledged {body} is stored at its index");
    }
    // Each sender's messages are in the order it sent them.
    let mut last_by_sender: HashMap<&str, (u64, i64)> = HashMap::new();
    for (index, body) in &stored.messages {
        let Some((sender, n)) = body.rsplit_once('-') else { continue };
        let n: u64 = n.parse().unwrap();
        if let Some((previous, _)) = last_by_sender.insert(sender, (n, *index)) {
            assert!(previous < n, "{when}: {sender}'s messages out of order at index {index}");
        }
    }
    for identity in participants {
        assert!(stored.participants.contains(identity), "{when}: acknowledged participant {identity} is there");
    }
    let mut identities = stored.participants.clone();
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), stored.participants.len(), "{when}: no participant twice");
    if let Some(acknowledged) = horizon {
        let kept = stored.horizon.expect("the reader's horizon is kept");
        assert!(
            kept >= *acknowledged && Some(kept) <= highest_horizon_asked,
            "{when}: horizon {kept} is the acknowledged {acknowledged} or a later one asked for"
        );
    }
}

fn cycles() -> usize {
    std::env::var("PALAVER_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(6)
}

fn start(dir: &Path, url: &CurrentUrl) -> Node {
    let node = Node::start(dir, &[]);
    *url.write().unwrap() = node.url.clone();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged_and_sigterm_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let url: CurrentUrl = Arc::new(RwLock::new(String::new()));
    let mut node = start(dir.path(), &url);
    let (status, created) =
        call(&http, Method::POST, format!("{}/v1/Conversations", node.url), &[("FriendlyName", "crash")]).await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().unwrap().to_string();
    for identity in (0..SDK_SENDERS).map(|n| format!("sdk{n}")).chain(["reader".to_string()]) {
        let (status, body) = call(
            &http,
            Method::POST,
            format!("{}/v1/Conversations/{sid}/Participants", node.url),
            &[("Identity", identity.as_str())],
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let load = Load::start(&http, &url, dir.path(), &sid).await;
    for cycle in 0..cycles() {
        // Load for a while, a different while each time, so the kill lands at different points.
        tokio::time::sleep(Duration::from_millis(400 + (cycle as u64 * 277) % 900)).await;
        node.kill();
        let before = load.snapshot();
        let when = format!("kill {}", cycle + 1);
        assert_intact(dir.path(), &when);
        node = start(dir.path(), &url);
        // The load goes on against the new server: read what it asked for after what is stored.
        let now_stored = stored(&http, &node.url, &sid).await;
        let asked = load.acknowledged.horizon.lock().unwrap().1;
        check(&now_stored, &before, asked, &when);
    }
    let (messages, participants, _) = load.snapshot();
    assert!(messages.len() > 20 && participants.len() > 5, "the load got through: {} messages", messages.len());

    // SIGTERM under load: the server drains its requests and sessions and exits within seconds.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked_to_stop = Instant::now();
    assert!(node.terminate(), "a SIGTERM ends the server with success");
    let took = asked_to_stop.elapsed();
    eprintln!("SIGTERM under load: stopped after {took:?}");
    assert!(took < Duration::from_secs(3), "stopped {took:?} after SIGTERM");
    let before = load.snapshot();
    assert_intact(dir.path(), "SIGTERM");
    node = start(dir.path(), &url);
    let now_stored = stored(&http, &node.url, &sid).await;
    let asked = load.acknowledged.horizon.lock().unwrap().1;
    check(&now_stored, &before, asked, "SIGTERM");

    // Every retried create ends answered: then each acknowledged message is there exactly once.
    let acknowledged = load.finish().await;
    let unexpected = acknowledged.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "{} answers no client should get, first: {:?}",
        unexpected.len(),
        unexpected.first()
    );
    let last = (
        acknowledged.messages.lock().unwrap().clone(),
        acknowledged.participants.lock().unwrap().clone(),
        acknowledged.horizon.lock().unwrap().0,
    );
    let asked = acknowledged.horizon.lock().unwrap().1;
    check(&stored(&http, &node.url, &sid).await, &last, asked, "the end");
    eprintln!(
        "{} kills: {} messages and {} participants acknowledged, horizon at {:?}",
        cycles(),
        last.0.len(),
        last.1.len(),
        last.2
    );
    assert!(node.terminate());
    assert_intact(dir.path(), "the end");
}
