//! What the tests that run `palaver` processes on the test PostgreSQL (and NATS) share: the URLs from the
//! environment (required under CI), a schema of one's own, and nodes as child processes.
// Each test file uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_palaver");
pub(crate) const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The URL in `variable`; panics under CI when it is missing, else `None` (the test is skipped).
pub(crate) fn required_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("{variable} must be set in CI"),
        _ => {
            eprintln!("skipped: set {variable} to run");
            None
        }
    }
}

/// A random lowercase name starting with `prefix`, unique enough for parallel tests.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{prefix}_{}_{:x}_{:x}", nanos.as_secs(), std::process::id(), nanos.subsec_nanos())
}

/// A schema of the test database, dropped when this goes away.
pub(crate) struct Schema {
    /// The database URL that selects the schema.
    pub(crate) url: String,
    name: String,
    base: String,
}

impl Schema {
    /// Creates a fresh schema on `url`.
    pub(crate) async fn create(url: &str) -> Schema {
        let name = unique_name("t");
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("PostgreSQL");
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        Schema { url: format!("{url}{separator}options=-c%20search_path%3D{name}"), name, base: url.to_string() }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Best effort, on a thread of its own: Drop may run inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.ok()
            })
        })
        .join();
    }
}

/// A `palaver serve` child process.
pub(crate) struct Node {
    pub(crate) child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) url: String,
}

impl Node {
    /// Starts `palaver serve` on a free port with `args` (after `serve --listen 127.0.0.1:0`), the test
    /// account's credentials, and waits for its listening line.
    pub(crate) fn start(data_dir: &Path, args: &[&str]) -> Node {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            // Only what `args` say: a database URL in the test's environment must not leak in.
            .env_remove("PALAVER_DATABASE_URL")
            .env("PALAVER_ACCOUNT_SID", ACCOUNT)
            .env("PALAVER_AUTH_TOKEN", TOKEN)
            .env("PALAVER_LOG", "warn")
            // These tests write faster than any client should (load, crash loops): no rates.
            .env("PALAVER_CONVERSATION_RATE", "0")
            .env("PALAVER_SERVICE_RATE", "0")
            .env("PALAVER_CONNECTION_RATE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start palaver serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the server prints its address").unwrap();
            if let Some(url) = line.split("listening on ").nth(1) {
                return Node { child, url: url.trim().to_string() };
            }
        }
    }

    /// The realtime WebSocket URL.
    pub(crate) fn ws_url(&self) -> String {
        format!("{}/v1/realtime", self.url.replacen("http://", "ws://", 1))
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for it; returns whether it exited successfully.
    pub(crate) fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().is_ok_and(|status| status.success())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A REST call with the test account's credentials; the status and the JSON body (`Null` when not JSON).
pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = http.request(method, url).basic_auth(ACCOUNT, Some(TOKEN)).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An access token for `identity`, minted by `palaver token` with the API key kept in `database`.
pub(crate) fn mint_token(database: &str, data_dir: &Path, identity: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--identity", identity, "--database", database, "--data-dir"])
        .arg(data_dir)
        .env("PALAVER_ACCOUNT_SID", ACCOUNT)
        .env("PALAVER_LOG", "warn")
        .output()
        .expect("run palaver token");
    assert!(out.status.success(), "palaver token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
