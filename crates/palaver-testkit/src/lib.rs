//! Test support: [`TestServer::spawn`] starts the real Palaver server in-process on `127.0.0.1:0` with its
//! own temporary data directory, and can stop and restart it on the same data to test durability.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use palaver_api::sid::{AccountSid, ApiKeySid};
use palaver_core::input::FriendlyName;
use palaver_core::service::Settings;
use palaver_server::Credentials;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server owned by a test. Dropping it stops the server and deletes its data.
#[derive(Debug)]
pub struct TestServer {
    address: SocketAddr,
    account_sid: AccountSid,
    auth_token: String,
    settings: Settings,
    api_key: Option<(ApiKeySid, String)>,
    realtime: palaver_server::RealtimeLimits,
    limits: palaver_server::limits::ServerLimits,
    channels: palaver_server::channels::ChannelSettings,
    push: palaver_server::push::PushSettings,
    data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// The running server's domain, for what tests set up behind the APIs' back (API keys).
    palaver: Option<palaver_core::Palaver>,
}

impl TestServer {
    /// Starts a server with fresh storage. Timer minimums are off so tests can use timers of seconds.
    ///
    /// # Panics
    /// When the server cannot start; a test cannot continue then.
    pub async fn spawn() -> Self {
        Self::spawn_with_realtime_limits(palaver_server::RealtimeLimits::default()).await
    }

    /// Like [`TestServer::spawn`], with other flow-control limits for realtime connections (to test slow
    /// clients without sending megabytes).
    ///
    /// # Panics
    /// When the server cannot start.
    pub async fn spawn_with_realtime_limits(realtime: palaver_server::RealtimeLimits) -> Self {
        let data_dir = tempfile::tempdir().expect("create a temporary data directory");
        let mut server = Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid: AccountSid::generate(),
            auth_token: AccountSid::generate().as_str()[2..].to_string(),
            settings: Settings { enforce_timer_minimums: false, ..Settings::default() },
            api_key: None,
            realtime: palaver_server::RealtimeLimits::default(),
            limits: palaver_server::limits::ServerLimits::without_rates(),
            channels: palaver_server::channels::ChannelSettings::default(),
            push: palaver_server::push::PushSettings::default(),
            data_dir,
            stop: None,
            task: None,
            palaver: None,
        };
        server.realtime = realtime;
        server.start(None).await;
        server
    }

    /// Starts a server with `limits` instead of the tests' default (the server's defaults without rates, so
    /// that tests may write as fast as they like).
    ///
    /// # Panics
    /// When the server cannot start.
    pub async fn spawn_with_limits(limits: palaver_server::limits::ServerLimits) -> Self {
        let mut server = Self::spawn().await;
        server.stop().await;
        server.limits = limits;
        server.start(None).await;
        server
    }

    /// Starts a server that reaches non-chat participants as `channels` says. Without a public URL of its own,
    /// the server's address is used for status callbacks.
    ///
    /// # Panics
    /// When the server cannot start.
    pub async fn spawn_with_channels(channels: palaver_server::channels::ChannelSettings) -> Self {
        let mut server = Self::spawn().await;
        server.stop().await;
        server.channels = channels;
        server.start(None).await;
        server
    }

    /// Starts a server that reaches push services as `push` says (tests point it at local doubles).
    ///
    /// # Panics
    /// When the server cannot start.
    pub async fn spawn_with_push(push: palaver_server::push::PushSettings) -> Self {
        let mut server = Self::spawn().await;
        server.stop().await;
        server.push = push;
        server.start(None).await;
        server
    }

    async fn start(&mut self, address: Option<SocketAddr>) {
        let credentials = Credentials { account_sid: self.account_sid.clone(), auth_token: self.auth_token.clone() };
        let mut state = palaver_server::open_embedded(self.data_dir.path(), credentials, self.settings)
            .await
            .expect("open the test server's storage");
        state.realtime = self.realtime;
        let mut state = state.with_limits(self.limits.clone());
        if self.api_key.is_none() {
            let key = state
                .palaver
                .create_api_key(FriendlyName::parse("name", "testkit").expect("valid name"))
                .await
                .expect("create the test API key");
            self.api_key = Some((key.sid, key.secret));
        }
        let listener = match address {
            Some(address) => bind_again(address).await,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port"),
        };
        self.address = listener.local_addr().expect("local address");
        let mut channels = self.channels.clone();
        if channels.public_url.is_none() {
            channels.public_url = Some(format!("http://{}", self.address));
        }
        state.channels = std::sync::Arc::new(channels);
        self.palaver = Some(state.palaver.clone());
        state.push = std::sync::Arc::new(self.push.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(palaver_server::run(listener, state, async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// Stops the server gracefully, waiting until it has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the server and starts it again on the same data (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start(None).await;
    }

    /// Stops the server and starts it again on the same data and the same port, as a restarted production
    /// server would be; clients can reconnect to the URL they had.
    pub async fn restart_on_same_port(&mut self) {
        self.stop().await;
        self.start(Some(self.address)).await;
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.address)
    }

    /// An access token for `identity` in the default service, valid for an hour.
    pub fn access_token(&self, identity: &str) -> String {
        self.access_token_with_ttl(identity, 3600)
    }

    /// An access token for `identity` valid for `ttl_secs` seconds (negative for an expired one).
    pub fn access_token_with_ttl(&self, identity: &str, ttl_secs: i64) -> String {
        self.mint(identity, None, ttl_secs)
    }

    /// An access token for `identity` in `service`, valid for an hour.
    pub fn access_token_in_service(&self, identity: &str, service: &palaver_api::sid::ServiceSid) -> String {
        self.mint(identity, Some(service), 3600)
    }

    fn mint(&self, identity: &str, service_sid: Option<&palaver_api::sid::ServiceSid>, ttl_secs: i64) -> String {
        let (key_sid, secret) = self.api_key.as_ref().expect("the server has started");
        palaver_server::token::mint(&palaver_server::token::MintRequest {
            key_sid,
            key_secret: secret,
            account_sid: &self.account_sid,
            identity,
            service_sid,
            ttl_secs,
        })
    }

    /// The API key the server was started with: (SID, secret).
    pub fn api_key(&self) -> (&str, &str) {
        let (sid, secret) = self.api_key.as_ref().expect("the server has started");
        (sid.as_str(), secret)
    }

    /// The running server's domain (`Palaver`): for tests that manage what has no API, such as API keys.
    ///
    /// # Panics
    /// Before the server has started.
    pub fn palaver(&self) -> &palaver_core::Palaver {
        self.palaver.as_ref().expect("the server has started")
    }

    /// The account SID (HTTP Basic user name).
    pub fn account_sid(&self) -> &str {
        self.account_sid.as_str()
    }

    /// The auth token (HTTP Basic password).
    pub fn auth_token(&self) -> &str {
        &self.auth_token
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The path of the embedded database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.path().join(palaver_server::DATABASE_FILE)
    }
}

/// Binds `address` again right after the previous listener closed, retrying briefly while the OS releases it.
async fn bind_again(address: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..50 {
        if let Ok(listener) = tokio::net::TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("could not bind {address} again");
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
