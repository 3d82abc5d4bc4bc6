//! The server under test: one we start (a child `palaver serve`) or one given by URL.

use std::process::Stdio;
use std::time::Duration;

use palaver_api::sid::{AccountSid, ApiKeySid};
use tokio::io::AsyncBufReadExt;

use crate::{BenchError, Result};

/// How to reach (or start) the server.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// An already running server; a new one is started when absent.
    pub url: Option<String>,
    /// Its account SID and auth token (REST).
    pub account_sid: Option<String>,
    /// Its auth token.
    pub auth_token: Option<String>,
    /// An API key of it (to mint access tokens).
    pub key_sid: Option<String>,
    /// The key's secret.
    pub key_secret: Option<String>,
    /// The `palaver` binary to start; the current executable by default.
    pub binary: Option<std::path::PathBuf>,
}

/// A reachable server with credentials.
#[derive(Debug)]
pub struct Target {
    /// `http://host:port`.
    pub url: String,
    account_sid: AccountSid,
    auth_token: String,
    key_sid: ApiKeySid,
    key_secret: String,
    child: Option<tokio::process::Child>,
    _data_dir: Option<tempfile::TempDir>,
}

fn missing(what: &str) -> BenchError {
    BenchError::Server(format!("--url needs {what}"))
}

impl Target {
    /// Starts a server (or checks the given one).
    ///
    /// # Errors
    /// When the server cannot be started, or options are missing for `--url`.
    pub async fn open(options: TargetOptions) -> Result<Self> {
        if let Some(url) = options.url {
            let account_sid = AccountSid::parse(&options.account_sid.ok_or_else(|| missing("PALAVER_ACCOUNT_SID"))?)
                .map_err(|e| BenchError::Server(e.to_string()))?;
            let key_sid = ApiKeySid::parse(&options.key_sid.ok_or_else(|| missing("--key-sid"))?)
                .map_err(|e| BenchError::Server(e.to_string()))?;
            return Ok(Self {
                url: url.trim_end_matches('/').to_string(),
                account_sid,
                auth_token: options.auth_token.ok_or_else(|| missing("PALAVER_AUTH_TOKEN"))?,
                key_sid,
                key_secret: options.key_secret.ok_or_else(|| missing("--key-secret"))?,
                child: None,
                _data_dir: None,
            });
        }
        let binary = match options.binary {
            Some(path) => path,
            None => std::env::current_exe()?,
        };
        let data_dir = tempfile::tempdir()?;
        let account_sid = AccountSid::generate();
        let auth_token = ApiKeySid::generate().as_str()[2..].to_string();
        let keys = tokio::process::Command::new(&binary)
            .args(["keys", "create", "--name", "bench", "--data-dir"])
            .arg(data_dir.path())
            .env("PALAVER_LOG", "error")
            .output()
            .await?;
        let printed = String::from_utf8_lossy(&keys.stdout).to_string();
        let field = |label: &str| printed.lines().find_map(|l| l.strip_prefix(label)).map(|v| v.trim().to_string());
        let (Some(key_sid), Some(key_secret)) = (field("sid:"), field("secret:")) else {
            return Err(BenchError::Server(format!("could not create an API key: {printed}")));
        };
        let mut child = tokio::process::Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("PALAVER_ACCOUNT_SID", account_sid.as_str())
            .env("PALAVER_AUTH_TOKEN", &auth_token)
            .env("PALAVER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Server("no stdout".into()))?;
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
        .ok_or_else(|| BenchError::Server("the server did not start".into()))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            url,
            account_sid,
            auth_token,
            key_sid: ApiKeySid::parse(&key_sid).map_err(|e| BenchError::Server(e.to_string()))?,
            key_secret,
            child: Some(child),
            _data_dir: Some(data_dir),
        })
    }

    /// The realtime endpoint.
    pub fn ws_url(&self) -> String {
        format!("{}/v1/realtime", self.url.replacen("http", "ws", 1))
    }

    /// An access token for `identity`.
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

    /// The server's resident memory in bytes and CPU seconds used so far, when it is our child on Linux.
    pub fn usage(&self) -> Option<(u64, f64)> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((rss_kb * 1024, ticks / 100.0))
    }
}
