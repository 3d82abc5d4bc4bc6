//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::Duration;

use palaver_client::emitter::ReplayEventEmitter;
use palaver_client::{Client, ClientOptions, Conversation, CreateConversationOptions};
use palaver_testkit::TestServer;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly.
pub(crate) const PROMPT: Duration = Duration::from_secs(5);

/// Options tests use: fast reconnects.
pub(crate) fn options(url: String, token: String) -> ClientOptions {
    ClientOptions::new(url, token).with_backoff(Duration::from_millis(20), Duration::from_millis(300))
}

/// Connects as `identity`.
pub(crate) async fn connect(server: &TestServer, identity: &str) -> Client {
    Client::connect_with(options(server.ws_url(), server.access_token(identity))).await.expect("connect")
}

/// A conversation created and joined by `owner`, with `others` added.
pub(crate) async fn conversation_with(owner: &Client, name: &str, others: &[&str]) -> Conversation {
    let conversation = owner
        .create_conversation(CreateConversationOptions::new().friendly_name(name))
        .await
        .expect("create a conversation");
    conversation.join().await.expect("join");
    for other in others {
        conversation.add(other, None).await.expect("add a participant");
    }
    conversation
}

/// The handle of a conversation as seen by `client`, once it knows it is a participant.
pub(crate) async fn joined(client: &Client, sid: &str) -> Conversation {
    let client = client.clone();
    let sid = sid.to_string();
    eventually("the client to learn it joined", || {
        let client = client.clone();
        let sid = sid.clone();
        async move {
            let conversation = client.get_conversation_by_sid(&sid).await.ok()?;
            (conversation.status() == palaver_client::ConversationStatus::Joined).then_some(conversation)
        }
    })
    .await
}

/// Polls `probe` until it returns `Some`, for at most [`PROMPT`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records the events of one name from an emitter.
pub(crate) struct Recorder<V> {
    receiver: mpsc::UnboundedReceiver<V>,
}

impl<V: Clone + Send + Sync + 'static> Recorder<V> {
    pub(crate) fn new<K>(emitter: &ReplayEventEmitter<K, V>, name: K) -> Self
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

    /// The next event, failing the test after [`PROMPT`].
    pub(crate) async fn next(&mut self) -> V {
        self.next_within(PROMPT).await
    }

    /// The next event, failing the test after `limit`.
    pub(crate) async fn next_within(&mut self, limit: Duration) -> V {
        tokio::time::timeout(limit, self.receiver.recv()).await.expect("an event in time").expect("emitter alive")
    }

    /// Everything received so far.
    pub(crate) fn received(&mut self) -> Vec<V> {
        let mut all = Vec::new();
        while let Ok(value) = self.receiver.try_recv() {
            all.push(value);
        }
        all
    }

    /// The next event matching `pred`, skipping others.
    pub(crate) async fn next_matching(&mut self, pred: impl Fn(&V) -> bool) -> V {
        loop {
            let value = self.next().await;
            if pred(&value) {
                return value;
            }
        }
    }

    /// Asserts that nothing arrives within `quiet`.
    pub(crate) async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(_)) = tokio::time::timeout(quiet, self.receiver.recv()).await {
            panic!("unexpected event");
        }
    }

    /// Drops whatever arrived so far.
    pub(crate) fn drain(&mut self) {
        while self.receiver.try_recv().is_ok() {}
    }
}
