//! The servers under test: ones we start (`palaver serve` children: one on a temporary SQLite data directory,
//! or one or more on PostgreSQL, joined over NATS) or ones given by URL (the nodes of one deployment).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use palaver_api::sid::{AccountSid, ApiKeySid};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::{BenchError, Result};

/// How to reach (or start) the servers.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Running servers to measure: the nodes of one deployment, sharing their database (so one API key and
    /// one account work on all of them). Servers are started when this is empty.
    pub urls: Vec<String>,
    /// Their account SID (REST user name).
    pub account_sid: Option<String>,
    /// Their auth token.
    pub auth_token: Option<String>,
    /// An API key of theirs (to mint access tokens).
    pub key_sid: Option<String>,
    /// The key's secret.
    pub key_secret: Option<String>,
    /// Start the servers on this PostgreSQL database instead of SQLite. Unless the URL selects a schema
    /// itself (`search_path`), they get a fresh schema `t_<unix seconds>_<hex>`, dropped by [`Target::close`].
    pub database: Option<String>,
    /// How many servers to start (0 counts as 1); more than one needs `database` and `nats`.
    pub nodes: usize,
    /// Join the started servers over this NATS (a random subject prefix per run).
    pub nats: Option<String>,
    /// The `palaver` binary to start; the current executable by default.
    pub binary: Option<PathBuf>,
}

impl TargetOptions {
    /// Checks that the options describe one way to get servers.
    ///
    /// # Errors
    /// [`BenchError::Server`] for combinations that cannot work (several nodes on SQLite, NATS without
    /// PostgreSQL, servers to start beside given URLs).
    pub fn check(&self) -> Result<()> {
        let fail = |why: &str| Err(BenchError::Server(why.to_string()));
        if !self.urls.is_empty() {
            if self.database.is_some() || self.nats.is_some() || self.nodes > 1 {
                return fail("--url measures running servers; --database, --nodes and --nats start servers");
            }
            if self.urls.iter().any(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return fail("--url takes http://host:port addresses");
            }
            return Ok(());
        }
        if let Some(url) = &self.database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return fail("--database must be a PostgreSQL URL (postgres://…)");
        }
        if self.nats.is_some() && self.database.is_none() {
            return fail("--nats needs --database postgres://… (the embedded database belongs to one process)");
        }
        if self.nodes > 1 && (self.database.is_none() || self.nats.is_none()) {
            return fail("--nodes above 1 needs --database postgres://… and --nats nats://…");
        }
        Ok(())
    }
}

/// Reachable servers with credentials.
#[derive(Debug)]
pub struct Target {
    nodes: Vec<Node>,
    layout: Layout,
    account_sid: AccountSid,
    auth_token: String,
    key_sid: ApiKeySid,
    key_secret: String,
    /// The PostgreSQL schema made for this run, dropped at the end.
    schema: Option<Schema>,
    /// Data directories of the started servers (and their shared media directory); removed when dropped.
    _dirs: Option<tempfile::TempDir>,
}

/// One server.
#[derive(Debug)]
struct Node {
    /// `http://host:port`.
    url: String,
    /// The process, when we started it.
    child: Option<tokio::process::Child>,
}

/// What the servers are, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Given by `--url`: unknown database.
    Given,
    /// One child on a temporary SQLite data directory.
    Sqlite,
    /// Children on PostgreSQL, joined over NATS or not.
    Postgres { nats: bool },
}

/// A schema created for a run and the URL without it (to drop it from).
#[derive(Debug)]
struct Schema {
    name: String,
    base_url: String,
}

fn missing(what: &str) -> BenchError {
    BenchError::Server(format!("--url needs {what}"))
}

fn invalid(e: impl std::fmt::Display) -> BenchError {
    BenchError::Server(e.to_string())
}

/// Ten random hex digits (the random tail of a time-ordered SID).
fn random_hex() -> String {
    let sid = AccountSid::generate();
    sid.as_str()[sid.as_str().len() - 10..].to_string()
}

/// `url` with connection options that select `schema` (appended to its query).
fn with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A schema name the PostgreSQL tests' sweep recognises (`t_<unix seconds>_<hex>`) and drops when an hour old,
/// should a run die before dropping it itself.
fn fresh_schema_name() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("t_{secs}_{}", random_hex())
}

impl Target {
    /// Starts the servers (or checks the given ones).
    ///
    /// # Errors
    /// When the options do not fit together, a server cannot be started, or options are missing for `--url`.
    pub async fn open(options: TargetOptions) -> Result<Self> {
        options.check()?;
        if !options.urls.is_empty() {
            return Self::given(options);
        }
        let binary = match &options.binary {
            Some(path) => path.clone(),
            None => std::env::current_exe()?,
        };
        let dirs = tempfile::tempdir()?;
        let count = options.nodes.max(1);
        let node_dir = |i: usize| dirs.path().join(format!("node-{i}"));
        let account_sid = AccountSid::generate();
        let auth_token = ApiKeySid::generate().as_str()[2..].to_string();
        let (database, schema) = match &options.database {
            Some(url) if url.contains("search_path") => (Some(url.clone()), None),
            Some(url) => {
                let name = fresh_schema_name();
                (Some(with_schema(url, &name)), Some(Schema { name, base_url: url.clone() }))
            }
            None => (None, None),
        };
        // From here on the schema exists once the key is made: a failure still drops it.
        let mut target = Self {
            nodes: Vec::new(),
            layout: match database {
                None => Layout::Sqlite,
                Some(_) => Layout::Postgres { nats: options.nats.is_some() },
            },
            account_sid,
            auth_token,
            key_sid: ApiKeySid::generate(),
            key_secret: String::new(),
            schema,
            _dirs: None,
        };
        let started = async {
            // The key is created in the (shared) database before any server runs, which also migrates it.
            let (key_sid, key_secret) = create_key(&binary, &node_dir(0), database.as_deref()).await?;
            target.key_sid = ApiKeySid::parse(&key_sid).map_err(invalid)?;
            target.key_secret = key_secret;
            let prefix = format!("bench_{}", random_hex());
            let media = dirs.path().join("media");
            for i in 0..count {
                let mut args: Vec<String> = Vec::new();
                if let Some(url) = &database {
                    args.extend(["--database".into(), url.clone()]);
                    args.extend(["--media-store-url".into(), format!("file://{}", media.display())]);
                    std::fs::create_dir_all(&media)?;
                }
                if let Some(nats) = &options.nats {
                    args.extend(["--nats".into(), nats.clone(), "--nats-subject-prefix".into(), prefix.clone()]);
                }
                let (url, child) = start_server(&binary, &node_dir(i), &args, &target, i, count).await?;
                target.nodes.push(Node { url, child: Some(child) });
            }
            Ok::<_, BenchError>(())
        }
        .await;
        target._dirs = Some(dirs);
        match started {
            Ok(()) => Ok(target),
            Err(err) => {
                target.close().await;
                Err(err)
            }
        }
    }

    /// The servers at `--url`, with the credentials given for them.
    fn given(options: TargetOptions) -> Result<Self> {
        let account_sid =
            AccountSid::parse(&options.account_sid.ok_or_else(|| missing("PALAVER_ACCOUNT_SID"))?).map_err(invalid)?;
        let key_sid = ApiKeySid::parse(&options.key_sid.ok_or_else(|| missing("--key-sid"))?).map_err(invalid)?;
        Ok(Self {
            nodes: options
                .urls
                .iter()
                .map(|url| Node { url: url.trim_end_matches('/').to_string(), child: None })
                .collect(),
            layout: Layout::Given,
            account_sid,
            auth_token: options.auth_token.ok_or_else(|| missing("PALAVER_AUTH_TOKEN"))?,
            key_sid,
            key_secret: options.key_secret.ok_or_else(|| missing("--key-secret"))?,
            schema: None,
            _dirs: None,
        })
    }

    /// How many nodes there are (at least one).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The base URL (`http://host:port`) of node `i` (taken modulo the node count).
    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i % self.nodes.len()].url
    }

    /// The realtime endpoint of node `i` (modulo the node count).
    pub fn ws_url(&self, i: usize) -> String {
        format!("{}/v1/realtime", self.url(i).replacen("http", "ws", 1))
    }

    /// What the servers are, for the report: who started them, their database, NATS and how many nodes.
    pub fn describe(&self) -> Value {
        let (servers, database, nats) = match self.layout {
            Layout::Given => ("given", "unknown", Value::Null),
            Layout::Sqlite => ("started", "sqlite", json!(false)),
            Layout::Postgres { nats } => ("started", "postgres", json!(nats)),
        };
        let mut described = json!({"servers": servers, "database": database, "nats": nats, "nodes": self.nodes.len()});
        if let Some(schema) = &self.schema {
            described["schema"] = json!(schema.name);
        }
        described
    }

    /// An access token for `identity` (valid on every node: they share the database holding the key).
    pub fn token(&self, identity: &str) -> String {
        palaver_server::token::mint(&palaver_server::token::MintRequest {
            key_sid: &self.key_sid,
            key_secret: &self.key_secret,
            account_sid: &self.account_sid,
            identity,
            service_sid: None,
            ttl_secs: 3600,
        })
    }

    /// REST credentials.
    pub fn basic_auth(&self) -> (&str, &str) {
        (self.account_sid.as_str(), &self.auth_token)
    }

    /// Resident memory in bytes and CPU seconds used so far of each node, when it is our child on Linux
    /// (`None` for a node we did not start).
    pub fn node_usage(&self) -> Vec<Option<(u64, f64)>> {
        self.nodes.iter().map(|node| node.child.as_ref().and_then(|c| c.id()).and_then(process_usage)).collect()
    }

    /// The nodes' resident memory and CPU seconds, summed; `None` unless every node is our child.
    pub fn usage(&self) -> Option<(u64, f64)> {
        self.node_usage().into_iter().try_fold((0, 0.0), |(rss, cpu), node| node.map(|(r, c)| (rss + r, cpu + c)))
    }

    /// Stops the servers we started and drops the PostgreSQL schema made for this run. Realtime connections
    /// should be closed first (the scenarios drop theirs before they return).
    pub async fn close(mut self) {
        // Connections of a failed scenario are dropped by tasks being aborted: let them go first, so that
        // stopping the servers is not reported as a connection failure.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        if let Some(schema) = self.schema.take()
            && let Err(err) = drop_schema(&schema).await
        {
            eprintln!("could not drop the schema {} (drop it by hand): {err}", schema.name);
        }
    }
}

/// `DROP SCHEMA … CASCADE` on the database the schema was made in.
async fn drop_schema(schema: &Schema) -> Result<()> {
    // The URL may carry the servers' own parameters (`pool_max_conns`), which tokio-postgres refuses.
    let config = palaver_store_postgres::PostgresStore::connection_config(&schema.base_url).map_err(invalid)?;
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(invalid)?;
    let connection = tokio::spawn(connection);
    let dropped = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.name)).await;
    drop(client);
    let _ = connection.await;
    dropped.map_err(invalid)
}

/// `palaver keys create` on the data directory (and database): the key's SID and secret.
async fn create_key(binary: &Path, data_dir: &Path, database: Option<&str>) -> Result<(String, String)> {
    let mut command = tokio::process::Command::new(binary);
    command.args(["keys", "create", "--name", "bench", "--data-dir"]).arg(data_dir).env("PALAVER_LOG", "error");
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let keys = command.output().await?;
    let printed = String::from_utf8_lossy(&keys.stdout).to_string();
    let field = |label: &str| printed.lines().find_map(|l| l.strip_prefix(label)).map(|v| v.trim().to_string());
    match (field("sid:"), field("secret:")) {
        (Some(sid), Some(secret)) => Ok((sid, secret)),
        _ => Err(BenchError::Server(format!(
            "could not create an API key: {printed}{}",
            String::from_utf8_lossy(&keys.stderr)
        ))),
    }
}

/// Starts `palaver serve` on a free port with `args` and the target's account; returns its URL once it
/// listens. Its stderr lines are passed on, prefixed with the node's number when there are several.
async fn start_server(
    binary: &Path,
    data_dir: &Path,
    args: &[String],
    target: &Target,
    index: usize,
    count: usize,
) -> Result<(String, tokio::process::Child)> {
    // Errors only by default, so that the bench's own output stays readable; PALAVER_BENCH_SERVER_LOG (a
    // PALAVER_LOG filter) shows more, e.g. `warn`.
    let log = std::env::var("PALAVER_BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into());
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("PALAVER_ACCOUNT_SID", target.account_sid.as_str())
        .env("PALAVER_AUTH_TOKEN", &target.auth_token)
        .env("PALAVER_LOG", log)
        // A benchmark is one client sending as fast as the server takes it, over thousands of connections from one
        // address: the limits that protect a server from such a client are off.
        .env("PALAVER_CONVERSATION_RATE", "0")
        .env("PALAVER_SERVICE_RATE", "0")
        .env("PALAVER_CONNECTION_RATE", "0")
        .env("PALAVER_MAX_CONNECTIONS_PER_IP", "0")
        .env("PALAVER_MAX_SESSIONS_PER_IDENTITY", "0")
        .env_remove("PALAVER_DATABASE_URL")
        .env_remove("PALAVER_NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| BenchError::Server("no stdout".into()))?;
    if let Some(stderr) = child.stderr.take() {
        let label = if count > 1 { format!("[node {index}] ") } else { String::new() };
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{label}{line}");
            }
        });
    }
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.split("listening on ").nth(1) {
                return Some(url.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| BenchError::Server(format!("server {index} did not start")))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((url, child))
}

/// Resident memory in bytes and CPU seconds (user + system) of process `pid`, from `/proc`.
fn process_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((rss_kb * 1024, cpu_seconds(&format!("/proc/{pid}/stat"))?))
}

/// User + system CPU seconds from a `/proc/…/stat` file.
pub(crate) fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds the whole machine spent busy so far (every core, every process: `/proc/stat` minus idle and
/// I/O wait), to tell what the database, NATS and the load generator took beside the servers.
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> TargetOptions {
        TargetOptions::default()
    }

    #[test]
    fn option_combinations() {
        assert!(options().check().is_ok(), "the default: one SQLite child");
        let urls = TargetOptions { urls: vec!["http://a:1".into(), "http://b:2".into()], ..options() };
        assert!(urls.check().is_ok());
        assert!(TargetOptions { nodes: 3, ..urls.clone() }.check().is_err());
        assert!(TargetOptions { urls: vec!["a:1".into()], ..options() }.check().is_err());
        let pg = TargetOptions { database: Some("postgres://u@h/db".into()), ..options() };
        assert!(pg.check().is_ok());
        assert!(TargetOptions { nodes: 3, ..pg.clone() }.check().is_err(), "several nodes need NATS");
        let cluster = TargetOptions { nodes: 3, nats: Some("nats://h:4222".into()), ..pg.clone() };
        assert!(cluster.check().is_ok());
        assert!(TargetOptions { database: None, ..cluster.clone() }.check().is_err());
        assert!(TargetOptions { database: Some("sqlite://x".into()), ..cluster }.check().is_err());
    }

    #[test]
    fn schema_urls() {
        assert_eq!(with_schema("postgres://u@h/db", "t_1_ab"), "postgres://u@h/db?options=-c%20search_path%3Dt_1_ab");
        assert_eq!(with_schema("postgres://u@h/db?x=1", "s"), "postgres://u@h/db?x=1&options=-c%20search_path%3Ds");
        let name = fresh_schema_name();
        assert!(name.starts_with("t_") && name.split('_').nth(1).unwrap().parse::<u64>().is_ok(), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
    }
}
