//! `palaver serve --database postgres://…`: two server processes on one PostgreSQL database share their data,
//! and it outlives them. Needs `PALAVER_TEST_DATABASE_URL` (required under CI); each run uses a database of its
//! own, dropped afterwards.
// Servers are killed and waited for at the end of the test.
#![allow(clippy::zombie_processes)]

mod support;

use std::process::Command;

use support::{BIN, Node, call};

fn database_url() -> Option<String> {
    support::required_url("PALAVER_TEST_DATABASE_URL")
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn node(database: &str, data_dir: &std::path::Path) -> Node {
    Node::start(data_dir, &["--database", database])
}

#[tokio::test]
async fn two_nodes_on_one_postgres_database_share_conversations_and_keep_them() {
    let Some(url) = database_url() else { return };
    let name = format!("palaver_cli_{}", std::process::id());
    let (admin, connection) =
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let database = with_database(&url, &name);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // `palaver migrate` prepares the database ahead of the nodes, and may run again.
    for _ in 0..2 {
        let out = Command::new(BIN)
            .args(["migrate", "--database", &database])
            .arg("--data-dir")
            .arg(dir_a.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    }
    let (migrated, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let versions = migrated.query("SELECT 1 FROM schema_version", &[]).await.expect("the schema is there");
    assert!(!versions.is_empty(), "migrations are recorded");
    drop(migrated);
    let http = reqwest::Client::new();
    {
        // Both nodes start together: the migration runs once.
        let (a, b) = (node(&database, dir_a.path()), node(&database, dir_b.path()));
        let (status, conv) =
            call(&http, reqwest::Method::POST, format!("{}/v1/Conversations", a.url), &[("UniqueName", "shared")])
                .await;
        assert_eq!(status, 201, "{conv}");
        let sid = conv["sid"].as_str().unwrap().to_string();
        let messages = |node: &Node| format!("{}/v1/Conversations/{sid}/Messages", node.url);
        let (status, first) =
            call(&http, reqwest::Method::POST, messages(&a), &[("Author", "alice"), ("Body", "from a")]).await;
        assert_eq!((status, first["index"].as_i64()), (201, Some(0)), "{first}");
        // Written through one node, read and continued through the other.
        let (status, seen) = call(&http, reqwest::Method::GET, format!("{}/v1/Conversations/shared", b.url), &[]).await;
        assert_eq!((status, seen["sid"].as_str()), (200, Some(sid.as_str())), "{seen}");
        let (_, second) =
            call(&http, reqwest::Method::POST, messages(&b), &[("Author", "bob"), ("Body", "from b")]).await;
        assert_eq!(second["index"].as_i64(), Some(1), "{second}");
        let (_, listed) = call(&http, reqwest::Method::GET, messages(&a), &[]).await;
        let bodies: Vec<&str> =
            listed["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["from a", "from b"]);
        // A unique name is unique across nodes.
        let (status, taken) =
            call(&http, reqwest::Method::POST, format!("{}/v1/Conversations", b.url), &[("UniqueName", "shared")])
                .await;
        assert_eq!((status, taken["code"].as_u64()), (409, Some(50353)), "{taken}");
    }
    // Both nodes gone: a new one finds everything.
    {
        let c = node(&database, tempfile::tempdir().unwrap().path());
        let (_, listed) =
            call(&http, reqwest::Method::GET, format!("{}/v1/Conversations/shared/Messages", c.url), &[]).await;
        assert_eq!(listed["messages"].as_array().map(Vec::len), Some(2), "{listed}");
    }
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}

/// More requests in flight on one realtime connection than the node has pooled database connections: each
/// request runs on its own task, so none waits on the session's loop while holding a connection (a session
/// that polled its requests itself stopped for good here, with connections idle in transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_pipelining_past_the_pool_size_is_answered() {
    let Some(database) = database_url() else { return };
    let schema = support::Schema::create(&database).await;
    let dir = tempfile::tempdir().unwrap();
    let node = node(&schema.url, dir.path());
    let http = reqwest::Client::new();
    let (status, conv) =
        call(&http, reqwest::Method::POST, format!("{}/v1/Conversations", node.url), &[("FriendlyName", "pipe")]).await;
    assert_eq!(status, 201, "{conv}");
    let sid = conv["sid"].as_str().unwrap().to_string();
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/Conversations/{sid}/Participants", node.url),
        &[("Identity", "piper")],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = support::mint_token(&schema.url, dir.path(), "piper");
    let client = palaver_client::Client::connect(&node.ws_url(), &token).await.expect("connect");
    let conversation = client.get_conversation_by_sid(&sid).await.expect("conversation");
    // Three times the pool (16), within the 64 a connection may have in flight; twice, so the second burst
    // meets the unread counts the first one left to push.
    for round in 0..2 {
        let mut sends = tokio::task::JoinSet::new();
        for n in 0..48 {
            let conversation = conversation.clone();
            sends.spawn(async move { conversation.send_message(&format!("{round}-{n}"), None, None).await });
        }
        let answered = tokio::time::timeout(std::time::Duration::from_secs(60), sends.join_all()).await;
        let mut indices: Vec<i64> =
            answered.expect("every send answered").into_iter().map(|r| r.expect("send accepted")).collect();
        indices.sort_unstable();
        assert_eq!(indices, (round * 48..round * 48 + 48).collect::<Vec<i64>>(), "distinct, gap-free indices");
    }
}
