//! Operating a running `palaver serve`: JSON log lines that carry the request id, `palaver status`, and
//! `/metrics` of a server on PostgreSQL.
// Servers are reaped by `stop` at the end of each test (or killed when the test fails first).
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_palaver");

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `palaver serve` on a free port with `args`, its log on a pipe.
fn serve(data_dir: &Path, args: &[&str]) -> (Served, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("PALAVER_ACCOUNT_SID")
        .env_remove("PALAVER_AUTH_TOKEN")
        .env_remove("PALAVER_LOG_FORMAT")
        .env("PALAVER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palaver serve");
    let log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        if let Some(url) = line.split("listening on ").nth(1) {
            return (Served { child, url: url.trim().to_string() }, log);
        }
    }
}

#[tokio::test]
async fn json_log_lines_carry_the_request_id() {
    let data_dir = tempfile::tempdir().unwrap();
    let (served, mut log) = serve(data_dir.path(), &["--log-format", "json"]);
    let answer = reqwest::Client::new()
        .get(format!("{}/v1/Conversations", served.url))
        .header("X-Request-Id", "log-test-7")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401, "no credentials: a failure, logged at the default level");
    assert_eq!(answer.headers()["x-request-id"], "log-test-7");
    // Every line is one JSON object; the request's line names it in its span. Read on a thread of its own, so
    // that a missing line fails the test after a while instead of blocking it.
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in log.by_ref() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut line_of = |request_id: &str| loop {
        let raw = received
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no log line of request {request_id} among {seen:?}"));
        let parsed: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: not JSON: {raw}"));
        if parsed["span"]["request_id"] == request_id {
            break parsed;
        }
        seen.push(raw);
    };
    let line = line_of("log-test-7");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["status"], 401, "{line}");
    assert_eq!(line["span"]["route"], "/v1/Conversations", "{line}");
    assert!(line["timestamp"].as_str().is_some(), "{line}");

    // A WebSocket session outlives its upgrade request; its lines carry that request's id in a span of their own.
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut upgrade = format!("{}/v3/wsconnect", served.url.replacen("http", "ws", 1)).into_client_request().unwrap();
    upgrade.headers_mut().insert("X-Request-Id", "log-test-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    socket.send(tokio_tungstenite::tungstenite::Message::Text("not a twilsock frame".into())).await.unwrap();
    let line = line_of("log-test-ws");
    assert_eq!(line["span"]["name"], "session", "{line}");
    assert_eq!(line["span"]["api"], "twilsock", "{line}");
    assert_eq!(line["level"], "WARN", "{line}");
}

#[tokio::test]
async fn status_once_summarizes_a_running_server() {
    let data_dir = tempfile::tempdir().unwrap();
    let (served, _log) = serve(data_dir.path(), &[]);
    let mut status = Command::new(BIN)
        .args(["status", "--once", "--interval", "1", "--url", &served.url, "--data-dir"])
        .arg(data_dir.path())
        .env_remove("PALAVER_ACCOUNT_SID")
        .env_remove("PALAVER_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Traffic for as long as status measures: requests without credentials, refused (4xx), every 20 ms.
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "status did not finish");
        http.get(format!("{}/v1/Conversations", served.url)).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = status.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.starts_with(&format!("Palaver at {}: ready (database ok, nats not configured)", served.url)),
        "{text}"
    );
    let requests = text.lines().find_map(|l| l.trim().strip_prefix("requests")).expect("a requests line");
    let per_second: f64 = requests.trim().split("/s").next().unwrap().parse().unwrap();
    assert!(per_second >= 5.0, "a request every 20 ms or so: {text}");
    let four_xx = requests.split("4xx ").nth(1).and_then(|r| r.split(',').next()).unwrap();
    assert!(four_xx.parse::<f64>().unwrap() >= 5.0, "{text}");
    for part in ["connections", "sessions: 0 realtime, 0 twilsock", "events", "webhooks", "channels", "database"] {
        assert!(text.contains(part), "no {part} in {text}");
    }

    let refused = Command::new(BIN)
        .args(["status", "--once", "--url", &served.url, "--account-sid", "AC0123456789abcdef0123456789abcdef"])
        .args(["--auth-token", "not-the-token"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the credentials"));
}

#[tokio::test]
async fn store_operations_are_timed_on_postgresql_too() {
    let Some(url) = support::required_url("PALAVER_TEST_DATABASE_URL") else { return };
    let schema = support::Schema::create(&url).await;
    let data_dir = tempfile::tempdir().unwrap();
    let node = support::Node::start(data_dir.path(), &["--database", &schema.url]);
    let http = reqwest::Client::new();
    let (status, conversation) =
        support::call(&http, reqwest::Method::POST, format!("{}/v1/Conversations", node.url), &[]).await;
    assert_eq!(status, 201, "{conversation}");
    let messages = format!("{}/v1/Conversations/{}/Messages", node.url, conversation["sid"].as_str().unwrap());
    for body in ["one", "two"] {
        let (status, _) = support::call(&http, reqwest::Method::POST, messages.clone(), &[("Body", body)]).await;
        assert_eq!(status, 201);
    }
    let text = http
        .get(format!("{}/metrics", node.url))
        .basic_auth(support::ACCOUNT, Some(support::TOKEN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = palaver_server::metrics::text::parse(&text).unwrap_or_else(|e| panic!("{e} in\n{text}"));
    let writes = [("operation", "add_message"), ("kind", "write")];
    assert_eq!(metrics.sum("palaver_db_operation_duration_seconds_count", &writes), 2.0);
    assert!(metrics.sum("palaver_db_operation_duration_seconds_count", &[("kind", "read")]) >= 1.0);
    assert!(metrics.sum("palaver_db_operation_duration_seconds_count", &[("operation", "outbox_depths")]) >= 1.0);
    assert_eq!(metrics.sum("palaver_sqlite_group_commit_writes_count", &[]), 0.0, "no SQLite here");
    assert_eq!(metrics.sum("palaver_webhook_outbox", &[("state", "pending")]), 0.0);
    // The pool: at least the connection the scrape's own reads used is open, and none is over the maximum.
    let open = metrics.sum("palaver_db_pool_connections", &[]);
    let max = metrics.sum("palaver_db_pool_max_connections", &[]);
    assert!(open >= 1.0 && open <= max, "open {open} of {max}");
    assert!(text.contains("palaver_db_pool_connections{state=\"idle\"}"), "{text}");
    assert_eq!(metrics.sum("palaver_db_pool_waiting", &[]), 0.0);
}

#[tokio::test]
async fn the_log_format_comes_from_the_config_file_unless_a_flag_says_otherwise() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("palaver.toml");
    std::fs::write(&config, "log_format = \"json\"\n").unwrap();
    let config = config.to_str().unwrap();
    let first_line = |args: &[&str]| {
        let (served, mut log) = serve(data_dir.path(), args);
        // The server logs its start at the info level.
        let line = log.next().expect("a log line").unwrap();
        drop(served);
        line
    };
    let from_file = first_line(&["--config", config]);
    let parsed: Value = serde_json::from_str(&from_file).unwrap_or_else(|e| panic!("{e}: not JSON: {from_file}"));
    assert!(parsed["level"].is_string(), "{parsed}");
    let overridden = first_line(&["--config", config, "--log-format", "text"]);
    assert!(serde_json::from_str::<Value>(&overridden).is_err(), "a text line: {overridden}");
    std::fs::write(data_dir.path().join("bad.toml"), "log_format = \"xml\"\n").unwrap();
    let refused = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(data_dir.path().join("bad.toml"))
        .env_remove("PALAVER_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("bad.toml"), "{refused:?}");
}
