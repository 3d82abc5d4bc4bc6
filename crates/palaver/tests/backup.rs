//! Backups and exports, through the `palaver` command and real `palaver serve` processes:
//!
//! - `palaver export` of a populated server (services, roles, users, conversations in every state with timers,
//!   unique names and email bindings, chat and non-chat participants with horizons, messages with attributes,
//!   edits, a deletion and media, webhooks) and `palaver import FILE` into a fresh data directory (and into
//!   PostgreSQL when `PALAVER_TEST_DATABASE_URL` is set, as CI does) give a server whose every REST resource
//!   reads the same; an import into a server that holds data, or of a truncated file, is refused;
//! - `palaver backup` taken while clients write messages restores (`palaver restore`) to a server whose
//!   database passes `PRAGMA integrity_check`, holds every message acknowledged before the backup began, with
//!   contiguous indices per conversation, and goes on from there;
//! - `palaver restore` refuses a running server's data directory and a damaged backup, leaving the database as
//!   it was.
// Servers are killed and waited for when `Node` is dropped.
#![allow(clippy::zombie_processes)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::{ACCOUNT, BIN, Node, TOKEN, call};

/// Runs `palaver ARGS` with the test account and no database URL from the environment.
fn palaver(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("PALAVER_DATABASE_URL")
        .env_remove("PALAVER_DATA_DIR")
        .env("PALAVER_ACCOUNT_SID", ACCOUNT)
        .env("PALAVER_AUTH_TOKEN", TOKEN)
        .env("PALAVER_LOG", "warn")
        .output()
        .expect("run palaver")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn succeeds(args: &[&str]) -> String {
    let out = palaver(args);
    assert!(out.status.success(), "palaver {args:?} failed: {}", text(&out));
    text(&out)
}

fn fails(args: &[&str]) -> String {
    let out = palaver(args);
    assert!(!out.status.success(), "palaver {args:?} should fail: {}", text(&out));
    text(&out)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn post(http: &reqwest::Client, url: String, form: &[(&str, &str)]) -> Value {
    let (status, body) = call(http, Method::POST, url.clone(), form).await;
    assert!(status == 200 || status == 201, "POST {url}: {status} {body}");
    body
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let (status, body) = call(http, Method::GET, url.clone(), &[]).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Every item of the list at `url` (one page of 100; the test data is smaller).
async fn list(http: &reqwest::Client, url: String, key: &str) -> Vec<Value> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let page = get(http, format!("{url}{separator}PageSize=100")).await;
    assert!(page["meta"]["next_page_url"].is_null(), "{url} fits one page");
    page[key].as_array().unwrap_or_else(|| panic!("{url} lists {key}: {page}")).clone()
}

fn sid(value: &Value) -> String {
    value["sid"].as_str().unwrap_or_else(|| panic!("no sid in {value}")).to_string()
}

/// Fills the server at `base` with a bit of everything an export carries.
async fn populate(http: &reqwest::Client, base: &str) {
    // A second service with a custom role, a user and a conversation of its own.
    let service = sid(&post(http, format!("{base}/v1/Services"), &[("FriendlyName", "Second")]).await);
    let s = format!("{base}/v1/Services/{service}");
    let role = post(
        http,
        format!("{s}/Roles"),
        &[("FriendlyName", "moderator"), ("Type", "conversation"), ("Permission", "sendMessage")],
    )
    .await;
    post(http, format!("{s}/Configuration"), &[("ReachabilityEnabled", "true")]).await;
    post(http, format!("{s}/Users"), &[("Identity", "zoe"), ("FriendlyName", "Zoe"), ("Attributes", r#"{"z":1}"#)])
        .await;
    let other = sid(&post(http, format!("{s}/Conversations"), &[("FriendlyName", "elsewhere")]).await);
    post(http, format!("{s}/Conversations/{other}/Participants"), &[("Identity", "zoe"), ("RoleSid", &sid(&role))])
        .await;
    post(http, format!("{s}/Conversations/{other}/Messages"), &[("Author", "zoe"), ("Body", "over here")]).await;
    post(
        http,
        format!("{s}/Configuration/Webhooks"),
        &[("PostWebhookUrl", "https://hooks.example.com/s"), ("Filters", "onMessageAdded"), ("Method", "GET")],
    )
    .await;
    post(
        http,
        format!("{base}/v1/Configuration/Webhooks"),
        &[("PostWebhookUrl", "https://hooks.example.com/a"), ("Filters", "onConversationAdded")],
    )
    .await;

    // The default service: users (one whose user is deleted later), conversations in every state.
    post(http, format!("{base}/v1/Users"), &[("Identity", "alice"), ("FriendlyName", "Alice")]).await;
    post(http, format!("{base}/v1/Users"), &[("Identity", "gone")]).await;
    let main = post(
        http,
        format!("{base}/v1/Conversations"),
        &[
            ("FriendlyName", "Main"),
            ("UniqueName", "main"),
            ("Attributes", r#"{"topic":"backups","n":[1,2]}"#),
            ("Timers.Inactive", "PT5M"),
            ("Timers.Closed", "PT1H"),
            ("Bindings.Email.Address", "team@example.com"),
            ("Bindings.Email.Name", "Team"),
            ("DateCreated", "2024-01-02T03:04:05Z"),
        ],
    )
    .await;
    let c = format!("{base}/v1/Conversations/{}", sid(&main));
    post(http, format!("{c}/Participants"), &[("Identity", "alice"), ("Attributes", r#"{"seat":1}"#)]).await;
    post(http, format!("{c}/Participants"), &[("Identity", "bob")]).await;
    post(http, format!("{c}/Participants"), &[("Identity", "gone")]).await;
    post(
        http,
        format!("{c}/Participants"),
        &[("MessagingBinding.Address", "+15551230001"), ("MessagingBinding.ProxyAddress", "+15559990000")],
    )
    .await;
    post(
        http,
        format!("{c}/Participants"),
        &[
            ("MessagingBinding.Address", "whatsapp:+15551230002"),
            ("MessagingBinding.ProxyAddress", "whatsapp:+15559990000"),
        ],
    )
    .await;
    let upload = http
        .post(format!("{base}/v1/Media?Filename=hello.txt"))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .header("Content-Type", "text/plain")
        .body("hello, media")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status().as_u16(), 201, "media upload");
    let media: Value = upload.json().await.unwrap();
    let mut messages = Vec::new();
    for (author, body) in [("alice", "first"), ("bob", "second"), ("alice", "third"), ("+15551230001", "by sms")] {
        messages.push(sid(&post(
            http,
            format!("{c}/Messages"),
            &[("Author", author), ("Body", body), ("Attributes", r#"{"k":"v"}"#)],
        )
        .await));
    }
    post(http, format!("{c}/Messages"), &[("Author", "bob"), ("MediaSid", &sid(&media))]).await;
    post(
        http,
        format!("{c}/Messages"),
        &[("Author", "alice"), ("Body", "dated"), ("DateCreated", "2024-02-03T04:05:06Z")],
    )
    .await;
    post(http, format!("{c}/Messages/{}", messages[0]), &[("Body", "first, edited")]).await;
    let (status, _) = call(http, Method::DELETE, format!("{c}/Messages/{}", messages[1]), &[]).await;
    assert_eq!(status, 204);
    post(
        http,
        format!("{c}/Participants/alice"),
        &[("LastReadMessageIndex", "2"), ("LastReadTimestamp", "2024-03-01T00:00:00Z")],
    )
    .await;
    post(http, format!("{c}/Participants/bob"), &[("LastReadMessageIndex", "0")]).await;
    post(
        http,
        format!("{c}/Webhooks"),
        &[
            ("Target", "webhook"),
            ("Configuration.Url", "https://hooks.example.com/c"),
            ("Configuration.Filters", "onMessageAdded"),
        ],
    )
    .await;
    let (status, _) = call(http, Method::DELETE, format!("{base}/v1/Users/gone"), &[]).await;
    assert_eq!(status, 204);

    let quiet =
        sid(&post(http, format!("{base}/v1/Conversations"), &[("FriendlyName", "Quiet"), ("Timers.Closed", "PT2H")])
            .await);
    post(http, format!("{base}/v1/Conversations/{quiet}/Participants"), &[("Identity", "alice")]).await;
    post(http, format!("{base}/v1/Conversations/{quiet}/Messages"), &[("Author", "alice"), ("Body", "anyone?")]).await;
    post(http, format!("{base}/v1/Conversations/{quiet}"), &[("State", "inactive")]).await;
    let done = sid(&post(http, format!("{base}/v1/Conversations"), &[("UniqueName", "done")]).await);
    post(http, format!("{base}/v1/Conversations/{done}/Participants"), &[("Identity", "bob")]).await;
    for body in ["a", "b", "c"] {
        post(http, format!("{base}/v1/Conversations/{done}/Messages"), &[("Author", "bob"), ("Body", body)]).await;
    }
    let last = list(http, format!("{base}/v1/Conversations/{done}/Messages"), "messages").await;
    let (status, _) =
        call(http, Method::DELETE, format!("{base}/v1/Conversations/{done}/Messages/{}", sid(&last[2])), &[]).await;
    assert_eq!(status, 204, "the last message deleted: its index stays used");
    post(http, format!("{base}/v1/Conversations/{done}"), &[("State", "closed")]).await;
    post(http, format!("{base}/v1/Conversations"), &[("FriendlyName", "Empty")]).await;
}

/// Everything the REST API shows of the server at `base`, with its address replaced by `BASE` (the two servers
/// compared listen on different ports) and receipt SIDs dropped (an import makes receipts anew).
async fn everything(http: &reqwest::Client, base: &str) -> Value {
    let mut all = BTreeMap::new();
    all.insert("configuration".to_string(), get(http, format!("{base}/v1/Configuration")).await);
    all.insert("account webhooks".to_string(), get(http, format!("{base}/v1/Configuration/Webhooks")).await);
    for service in list(http, format!("{base}/v1/Services"), "services").await {
        let s = format!("{base}/v1/Services/{}", sid(&service));
        let mut conversations = Vec::new();
        for conversation in list(http, format!("{s}/Conversations"), "conversations").await {
            let c = format!("{s}/Conversations/{}", sid(&conversation));
            let mut messages = Vec::new();
            for message in list(http, format!("{c}/Messages"), "messages").await {
                let mut receipts =
                    list(http, format!("{c}/Messages/{}/Receipts", sid(&message)), "delivery_receipts").await;
                for receipt in &mut receipts {
                    receipt.as_object_mut().unwrap().remove("sid");
                    receipt.as_object_mut().unwrap().remove("url");
                }
                let mut media = Vec::new();
                for item in message["media"].as_array().cloned().unwrap_or_default() {
                    let content = http
                        .get(format!("{s}/Media/{}/Content", sid(&item)))
                        .basic_auth(ACCOUNT, Some(TOKEN))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(content.status().as_u16(), 200, "media content");
                    media.push(json!(content.text().await.unwrap()));
                }
                messages.push(json!({ "message": message, "receipts": receipts, "media content": media }));
            }
            conversations.push(json!({
                "conversation": get(http, c.clone()).await,
                "participants": list(http, format!("{c}/Participants"), "participants").await,
                "messages": messages,
                "webhooks": list(http, format!("{c}/Webhooks"), "webhooks").await,
            }));
        }
        let mut users = Vec::new();
        for user in list(http, format!("{s}/Users"), "users").await {
            let joined = list(http, format!("{s}/Users/{}/Conversations", sid(&user)), "conversations").await;
            users.push(json!({ "user": user, "conversations": joined }));
        }
        all.insert(
            format!("service {}", sid(&service)),
            json!({
                "service": service,
                "configuration": get(http, format!("{s}/Configuration")).await,
                "webhooks": get(http, format!("{s}/Configuration/Webhooks")).await,
                "roles": list(http, format!("{s}/Roles"), "roles").await,
                "users": users,
                "conversations": conversations,
            }),
        );
    }
    let text = serde_json::to_string(&all).unwrap().replace(base, "BASE");
    serde_json::from_str(&text).unwrap()
}

/// The first difference between `a` and `b`, as a JSON path, for a readable failure.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let (p, q) = (x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null));
                if let Some(d) = first_difference(p, q, &format!("{at}.{key}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// The lines of an export after its header, without receipt SIDs (an import makes receipts anew).
fn records(export: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(export).unwrap();
    let mut records: Vec<Value> = text.lines().skip(1).map(|line| serde_json::from_str(line).unwrap()).collect();
    for record in &mut records {
        for receipt in record["receipts"].as_array_mut().into_iter().flatten() {
            receipt.as_object_mut().unwrap().remove("sid");
        }
    }
    records
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_a_server_that_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    let export = dir.path().join("export.jsonl");
    let http = reqwest::Client::new();
    let node = Node::start(&source, &[]);
    populate(&http, &node.url).await;
    let expected = everything(&http, &node.url).await;
    // Exported while the server runs: the export reads a snapshot of its own.
    let report = succeeds(&["export", path(&export), "--data-dir", path(&source)]);
    assert!(report.contains("exported 2 services, 3 users, 5 conversations, 8 participants, 9 messages"), "{report}");
    let scratch = std::fs::read_dir(&source)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".export"));
    assert_eq!(scratch.count(), 0, "the export's snapshot is removed");

    let report = succeeds(&["import", path(&export), "--data-dir", path(&target)]);
    assert!(report.contains("imported 2 services, 3 users, 5 conversations, 8 participants, 9 messages"), "{report}");
    copy_dir(&source.join("media"), &target.join("media"));
    let imported = Node::start(&target, &[]);
    let got = everything(&http, &imported.url).await;
    assert_eq!(first_difference(&expected, &got, ""), None, "the imported server reads the same");
    assert_eq!(expected, got);

    // The imported server goes on where the source stopped: the next index follows the deleted last one.
    let done = format!("{}/v1/Conversations/done", imported.url);
    let (status, body) = call(&http, Method::POST, format!("{}/Messages", done), &[("Body", "x")]).await;
    assert_eq!((status, &body["code"]), (400, &json!(50377)), "a closed conversation stays closed: {body}");
    let main = format!("{}/v1/Conversations/main/Messages", imported.url);
    let next = post(&http, main, &[("Author", "alice"), ("Body", "after the import")]).await;
    assert_eq!(next["index"], 6);
    drop(imported);

    // A target that holds data is refused, and so is a truncated export; neither changes anything.
    let err = fails(&["import", path(&export), "--data-dir", path(&target)]);
    assert!(err.contains("already holds data"), "{err}");
    let whole = std::fs::read_to_string(&export).unwrap();
    let truncated = dir.path().join("truncated.jsonl");
    std::fs::write(&truncated, &whole[..whole.len() * 2 / 3]).unwrap();
    let fresh = dir.path().join("fresh");
    let err = fails(&["import", path(&truncated), "--data-dir", path(&fresh)]);
    assert!(err.contains("truncated"), "{err}");
    assert!(!fresh.join("palaver.sqlite3").exists(), "a refused file opens no target");
    let err = fails(&["import", "--data-dir", path(&fresh)]);
    assert!(err.contains("FILE") || err.contains("--from"), "{err}");

    if let Some(url) = support::required_url("PALAVER_TEST_DATABASE_URL") {
        let schema = support::Schema::create(&url).await;
        let postgres = dir.path().join("postgres");
        let report = succeeds(&["import", path(&export), "--data-dir", path(&postgres), "--database", &schema.url]);
        assert!(report.contains("9 messages"), "{report}");
        copy_dir(&source.join("media"), &postgres.join("media"));
        let node = Node::start(&postgres, &["--database", &schema.url]);
        let got = everything(&http, &node.url).await;
        assert_eq!(first_difference(&expected, &got, ""), None, "imported into PostgreSQL");
        // And exported from there again, the same file but for its date line.
        let again = dir.path().join("again.jsonl");
        succeeds(&["export", path(&again), "--data-dir", path(&postgres), "--database", &schema.url]);
        assert_eq!(records(&export), records(&again), "PostgreSQL exports what SQLite exported");
    }
    drop(node);
}

/// What the writers were told, shared with the test.
#[derive(Default)]
struct Acknowledged {
    /// Per conversation: body → index of each acknowledged message, with when the answer came.
    messages: Mutex<Vec<(usize, String, i64, Instant)>>,
    /// The slowest answer while the backup ran.
    slowest_during_backup: Mutex<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_a_consistent_server() {
    const CONVERSATIONS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.sqlite3");
    let http = reqwest::Client::new();
    let node = Node::start(&data, &[]);
    let mut conversations = Vec::new();
    for i in 0..CONVERSATIONS {
        let c = post(&http, format!("{}/v1/Conversations", node.url), &[("UniqueName", &format!("load{i}"))]).await;
        conversations.push(sid(&c));
    }
    // About 6 MB of messages first, so that the backup takes several steps while the writers go on.
    let filler = "x".repeat(16 * 1024);
    for i in 0..360 {
        let c = &conversations[i % CONVERSATIONS];
        post(&http, format!("{}/v1/Conversations/{c}/Messages", node.url), &[("Body", &filler)]).await;
    }
    let acknowledged = Arc::new(Acknowledged::default());
    let stop = Arc::new(AtomicBool::new(false));
    let backing_up = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, c) in conversations.iter().cloned().enumerate() {
        let (http, base) = (http.clone(), node.url.clone());
        let (acknowledged, stop, backing_up) = (acknowledged.clone(), stop.clone(), backing_up.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("w{w}-{n}");
                let started = Instant::now();
                let message = post(&http, format!("{base}/v1/Conversations/{c}/Messages"), &[("Body", &body)]).await;
                let took = started.elapsed();
                if backing_up.load(Ordering::Relaxed) {
                    let mut slowest = acknowledged.slowest_during_backup.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
                let index = message["index"].as_i64().unwrap();
                acknowledged.messages.lock().unwrap().push((w, body, index, Instant::now()));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_backup = acknowledged.messages.lock().unwrap().clone();
    backing_up.store(true, Ordering::Relaxed);
    let args = ["backup".to_string(), path(&backup).to_string(), "--data-dir".into(), path(&data).to_string()];
    let out = tokio::task::spawn_blocking(move || palaver(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap();
    backing_up.store(false, Ordering::Relaxed);
    assert!(out.status.success(), "backup: {}", text(&out));
    let during = acknowledged.messages.lock().unwrap().len() - before_backup.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let slowest = *acknowledged.slowest_during_backup.lock().unwrap();
    eprintln!("{}; {during} messages acknowledged while it ran, the slowest in {slowest:?}", text(&out).trim());
    assert!(during > 0, "the writers went on while the backup ran");
    assert!(slowest < Duration::from_secs(5), "the backup stalled writes for {slowest:?}");
    let total = acknowledged.messages.lock().unwrap().len();
    let mut node = node;
    assert!(node.terminate());

    // Restored in place of the database it was taken from, which is kept aside.
    let report = succeeds(&["restore", path(&backup), "--data-dir", path(&data)]);
    assert!(report.contains("is kept as"), "{report}");
    let db = rusqlite::Connection::open(data.join("palaver.sqlite3")).unwrap();
    let verdict: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(verdict, "ok");
    drop(db);
    let node = Node::start(&data, &[]);
    let mut restored_total = 0;
    for (w, c) in conversations.iter().enumerate() {
        let mut indices = Vec::new();
        let mut bodies = BTreeMap::new();
        let mut url = Some(format!("{}/v1/Conversations/{c}/Messages?PageSize=1000", node.url));
        while let Some(page_url) = url {
            let page = get(&http, page_url).await;
            for m in page["messages"].as_array().unwrap() {
                indices.push(m["index"].as_i64().unwrap());
                bodies.insert(m["body"].as_str().unwrap().to_string(), m["index"].as_i64().unwrap());
            }
            url = page["meta"]["next_page_url"].as_str().map(str::to_string);
        }
        assert_eq!(indices, (0..indices.len() as i64).collect::<Vec<_>>(), "contiguous indices in {c}");
        for (writer, body, index, _) in before_backup.iter().filter(|m| m.0 == w) {
            assert_eq!(
                bodies.get(body),
                Some(index),
                "message {body} of writer {writer}, acknowledged before the backup"
            );
        }
        for (_, body, index, _) in acknowledged.messages.lock().unwrap().iter().filter(|m| m.0 == w) {
            if let Some(restored) = bodies.get(body) {
                assert_eq!(restored, index, "a restored message keeps its index");
            }
        }
        restored_total += indices.len();
        // And the server goes on after the restored messages.
        let next = post(&http, format!("{}/v1/Conversations/{c}/Messages", node.url), &[("Body", "after")]).await;
        assert_eq!(next["index"], indices.len() as i64);
    }
    assert!(restored_total >= 360 + before_backup.len(), "everything acknowledged before the backup is back");
    assert!(restored_total <= 360 + total, "nothing that was never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_running_server_and_a_damaged_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.sqlite3");
    let http = reqwest::Client::new();
    let node = Node::start(&data, &[]);
    post(&http, format!("{}/v1/Conversations", node.url), &[("UniqueName", "kept")]).await;
    succeeds(&["backup", path(&backup), "--data-dir", path(&data)]);
    let err = fails(&["backup", path(&data.join("palaver.sqlite3")), "--data-dir", path(&data)]);
    assert!(err.contains("cannot be written over the database"), "{err}");

    let err = fails(&["restore", path(&backup), "--data-dir", path(&data)]);
    assert!(err.contains("is open in process") && err.contains("stop the `palaver serve`"), "{err}");
    let mut node = node;
    assert!(node.terminate());
    let database = data.join("palaver.sqlite3");
    let before = std::fs::read(&database).unwrap();

    // A backup with a damaged page, and a file that is no database at all.
    let mut damaged = std::fs::read(&backup).unwrap();
    let page = 4096 * 3;
    damaged[page..page + 4096].fill(0x5a);
    let damaged_path = dir.path().join("damaged.sqlite3");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let err = fails(&["restore", path(&damaged_path), "--data-dir", path(&data)]);
    assert!(err.contains("is not a sound database"), "{err}");
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, "not a database at all, just text that goes on for a while ".repeat(100)).unwrap();
    let err = fails(&["restore", path(&junk), "--data-dir", path(&data)]);
    assert!(err.contains("is not a sound database"), "{err}");
    let err = fails(&["restore", path(&dir.path().join("missing")), "--data-dir", path(&data)]);
    assert!(err.contains("there is no backup file"), "{err}");
    assert_eq!(std::fs::read(&database).unwrap(), before, "refused restores leave the database alone");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restor"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Into a new data directory: nothing to keep aside, and the server reads the backed-up data.
    let fresh = dir.path().join("fresh");
    let report = succeeds(&["restore", path(&backup), "--data-dir", path(&fresh)]);
    assert!(!report.contains("kept as"), "{report}");
    let node = Node::start(&fresh, &[]);
    let kept = get(&http, format!("{}/v1/Conversations/kept", node.url)).await;
    assert_eq!(kept["unique_name"], "kept");
}
