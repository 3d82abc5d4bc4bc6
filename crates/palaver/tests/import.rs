//! `palaver import`: an embedded deployment moved to PostgreSQL reads back the same through REST and goes on
//! where it stopped. Needs `PALAVER_TEST_DATABASE_URL` (required under CI); each test works in a schema of its
//! own, `t_<unix seconds>_<hex>` as the PostgreSQL store's tests name theirs (so their sweep drops what a
//! failed run leaves), selected through the URL's `options=-c search_path=…`, and drops it at the end.
// Servers are reaped by `stop` or killed and waited for when dropped.
#![allow(clippy::zombie_processes)]

mod support;

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::Value;
use support::{ACCOUNT, BIN, Node, TOKEN, call};

fn database_url() -> Option<String> {
    support::required_url("PALAVER_TEST_DATABASE_URL")
}

/// A fresh schema on the test database, and the URL that selects it.
struct Schema {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Schema {
    async fn create(url: &str) -> Schema {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let name = format!("t_{secs}_{:016x}", RandomState::new().hash_one(std::process::id()));
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{name}");
        Schema { admin, name, url }
    }

    async fn count(&self, sql: &str) -> i64 {
        let sql = sql.replace("{s}", &self.name);
        self.admin.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// Every table's row count, for "nothing changed".
    async fn counts(&self) -> Vec<(String, i64)> {
        let tables = self
            .admin
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
                &[&self.name],
            )
            .await
            .unwrap();
        let mut counts = Vec::new();
        for table in tables {
            let table: String = table.get(0);
            counts.push((table.clone(), self.count(&format!("SELECT COUNT(*) FROM {{s}}.{table}")).await));
        }
        counts
    }

    async fn drop(self) {
        self.admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)).await.unwrap();
    }
}

fn serve(data_dir: &Path, database: Option<&str>) -> Node {
    match database {
        Some(database) => Node::start(data_dir, &["--database", database]),
        None => Node::start(data_dir, &[]),
    }
}

/// Stops `node` with SIGTERM, as an operator would before importing, and waits for it.
fn stop(mut node: Node) {
    assert!(node.terminate(), "a graceful stop exits 0");
}

fn import(data_dir: &Path, database: &str) -> Output {
    Command::new(BIN)
        .args(["import", "--from"])
        .arg(data_dir)
        .args(["--database", database])
        .env("PALAVER_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// `POST base + path`, expecting 201, returning the resource.
async fn create(http: &reqwest::Client, base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let (status, body) = call(http, Method::POST, format!("{base}{path}"), form).await;
    assert_eq!(status, 201, "POST {path}: {body}");
    body
}

/// `GET base + path` as text with the node's address and the signatures of temporary links (which expire a
/// while after each request) taken out, so two nodes' answers compare.
async fn read(http: &reqwest::Client, base: &str, path: &str) -> String {
    let response = http.get(format!("{base}{path}")).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let mut text = response.text().await.unwrap().replace(base, "http://node");
    while let Some(start) = text.find("?Expires=") {
        let end = text[start..].find('"').map_or(text.len(), |e| start + e);
        text.replace_range(start..end, "");
    }
    text
}

fn sid(resource: &Value) -> String {
    resource["sid"].as_str().unwrap_or_else(|| panic!("no sid in {resource}")).to_string()
}

#[tokio::test]
async fn an_embedded_deployment_moves_to_postgres_and_continues_where_it_stopped() {
    let Some(url) = database_url() else { return };
    let schema = Schema::create(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // An embedded deployment with a bit of everything.
    let embedded = serve(dir.path(), None);
    let base = embedded.url.clone();
    let service = sid(&create(&http, &base, "/v1/Services", &[("FriendlyName", "Support")]).await);
    let general = create(
        &http,
        &base,
        "/v1/Conversations",
        &[("UniqueName", "general"), ("FriendlyName", "General"), ("Attributes", r#"{"topic":"all"}"#)],
    )
    .await;
    let general = sid(&general);
    let tickets = sid(&create(
        &http,
        &base,
        &format!("/v1/Services/{service}/Conversations"),
        &[("UniqueName", "tickets"), ("Attributes", r#"{"priority":1}"#)],
    )
    .await);
    let in_general = |rest: &str| format!("/v1/Conversations/{general}{rest}");
    create(&http, &base, &in_general("/Participants"), &[("Identity", "alice")]).await;
    let bob = sid(&create(&http, &base, &in_general("/Participants"), &[("Identity", "bob")]).await);
    create(
        &http,
        &base,
        &in_general("/Participants"),
        &[("MessagingBinding.Address", "+15550100"), ("MessagingBinding.ProxyAddress", "+15550199")],
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
    assert_eq!(upload.status(), 201);
    let media = sid(&upload.json().await.unwrap());
    let mut messages = Vec::new();
    for (author, body) in [("alice", "one"), ("bob", "two"), ("alice", "three"), ("bob", "four"), ("alice", "five")] {
        let form = [("Author", author), ("Body", body), ("Attributes", r#"{"n":1}"#)];
        messages.push(sid(&create(&http, &base, &in_general("/Messages"), &form).await));
    }
    create(&http, &base, &in_general("/Messages"), &[("Author", "alice"), ("MediaSid", &media)]).await;
    let (status, _) =
        call(&http, Method::DELETE, format!("{base}{}", in_general(&format!("/Messages/{}", messages[2]))), &[]).await;
    assert_eq!(status, 204);
    let (status, horizon) = call(
        &http,
        Method::POST,
        format!("{base}{}", in_general(&format!("/Participants/{bob}"))),
        &[("LastReadMessageIndex", "1")],
    )
    .await;
    assert_eq!(status, 200, "{horizon}");
    create(&http, &base, &format!("/v1/Services/{service}/Conversations/{tickets}/Messages"), &[("Body", "help")])
        .await;
    let (status, hooks) = call(
        &http,
        Method::POST,
        format!("{base}/v1/Configuration/Webhooks"),
        &[("PostWebhookUrl", "https://hooks.invalid/post"), ("Filters", "onMessageAdded"), ("Method", "POST")],
    )
    .await;
    assert_eq!(status, 200, "{hooks}");
    create(
        &http,
        &base,
        &in_general("/Webhooks"),
        &[
            ("Target", "webhook"),
            ("Configuration.Url", "https://hooks.invalid/general"),
            ("Configuration.Filters", "onMessageAdded"),
        ],
    )
    .await;

    let paths = [
        "/v1/Configuration".to_string(),
        "/v1/Configuration/Webhooks".into(),
        "/v1/Services".into(),
        format!("/v1/Services/{service}"),
        "/v1/Conversations".into(),
        "/v1/Conversations/general".into(),
        in_general("/Participants"),
        in_general("/Messages"),
        in_general(&format!("/Messages/{}/Receipts", messages[0])),
        in_general("/Webhooks"),
        format!("/v1/Services/{service}/Conversations"),
        format!("/v1/Services/{service}/Conversations/{tickets}/Messages"),
        "/v1/Users".into(),
        "/v1/Users/bob/Conversations".into(),
        "/v1/Roles".into(),
        format!("/v1/Media/{media}"),
    ];
    let mut before = Vec::new();
    for path in &paths {
        before.push(read(&http, &base, path).await);
    }
    let bob_view: Value = serde_json::from_str(&before[13]).unwrap();
    let unread = &bob_view["conversations"][0]["unread_messages_count"];
    assert_eq!(unread, 3, "indices 3, 4 and 5 are above the horizon; 2 was deleted: {bob_view}");

    // The server must be stopped first: a running one is refused and nothing is written.
    let refused = import(dir.path(), &schema.url);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("stop the `palaver serve`"), "{stderr}");
    assert!(schema.counts().await.is_empty(), "the target is untouched");
    stop(embedded);

    // A PostgreSQL node's first start (migration and bootstrap) does not stop the import: it replaces that.
    stop(serve(tempfile::tempdir().unwrap().path(), Some(&schema.url)));
    let out = import(dir.path(), &schema.url);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("imported"), "{stdout}");
    // Not a terminal: progress comes as lines, per table and overall.
    assert!(stderr.contains("import: table") && stderr.contains("messages 6/6 rows"), "{stderr}");
    assert!(stderr.contains("import: committing"), "{stderr}");

    let last_log_id = schema.count("SELECT MAX(id) FROM {s}.events").await;
    let last_seq = schema.count(&format!("SELECT last_seq FROM {{s}}.streams WHERE stream = '{general}'")).await;

    // Every resource reads back the same from PostgreSQL, with the same data directory.
    let moved = serve(dir.path(), Some(&schema.url));
    let base = moved.url.clone();
    for (path, expected) in paths.iter().zip(&before) {
        assert_eq!(&read(&http, &base, path).await, expected, "GET {path}");
    }
    let content =
        http.get(format!("{base}/v1/Media/{media}/Content")).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(content.text().await.unwrap(), "hello, media", "media files stay in the data directory");

    // New writes continue after the imported ones: the next message index, the next sequence number and
    // log id, fresh row ids, and the imported unique names still taken.
    let next = create(&http, &base, &in_general("/Messages"), &[("Author", "alice"), ("Body", "six")]).await;
    assert_eq!(next["index"], 6, "{next}");
    let (_, listed) = call(&http, Method::GET, format!("{base}{}", in_general("/Messages")), &[]).await;
    let indices: Vec<i64> =
        listed["messages"].as_array().unwrap().iter().map(|m| m["index"].as_i64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 3, 4, 5, 6]);
    let (_, bob_view) = call(&http, Method::GET, format!("{base}/v1/Users/bob/Conversations"), &[]).await;
    assert_eq!(bob_view["conversations"][0]["unread_messages_count"], 4, "{bob_view}");
    let newest = schema
        .admin
        .query_one(
            &format!("SELECT seq, id FROM {}.events WHERE stream = $1 ORDER BY seq DESC LIMIT 1", schema.name),
            &[&general],
        )
        .await
        .unwrap();
    let (seq, id): (i64, i64) = (newest.get(0), newest.get(1));
    assert_eq!(seq, last_seq + 1, "the conversation's stream goes on without a gap or a reuse");
    assert!(id > last_log_id, "the log id {id} continues after {last_log_id}");
    create(&http, &base, "/v1/Conversations", &[("UniqueName", "after")]).await;
    create(&http, &base, &in_general("/Participants"), &[("Identity", "carol")]).await;
    create(&http, &base, "/v1/Services", &[("FriendlyName", "Sales")]).await;
    let (status, taken) =
        call(&http, Method::POST, format!("{base}/v1/Conversations"), &[("UniqueName", "general")]).await;
    assert_eq!((status, taken["code"].as_u64()), (409, Some(50353)), "{taken}");
    drop(moved);
    schema.drop().await;
}

#[tokio::test]
async fn an_import_into_a_database_with_data_fails_and_changes_nothing() {
    let Some(url) = database_url() else { return };
    let schema = Schema::create(&url).await;
    let http = reqwest::Client::new();
    {
        let node = serve(tempfile::tempdir().unwrap().path(), Some(&schema.url));
        create(&http, &node.url, "/v1/Conversations", &[("UniqueName", "already-here")]).await;
        stop(node);
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let embedded = serve(dir.path(), None);
        create(&http, &embedded.url, "/v1/Conversations", &[("UniqueName", "embedded")]).await;
        stop(embedded);
    }
    let before = schema.counts().await;
    let out = import(dir.path(), &schema.url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the PostgreSQL database already holds data (conversations: 1 row"), "{stderr}");
    assert_eq!(schema.counts().await, before, "nothing changed");
    let names = schema.count("SELECT COUNT(*) FROM {s}.conversations WHERE unique_name = 'already-here'").await;
    assert_eq!(names, 1);

    // A data directory without an embedded database is named as such.
    let empty = tempfile::tempdir().unwrap();
    let out = import(empty.path(), &schema.url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("there is no embedded database at"), "{stderr}");
    schema.drop().await;
}
