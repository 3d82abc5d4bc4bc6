//! The connection task: one WebSocket at a time, requests matched to replies by `id`, automatic reconnection
//! with exponential backoff and jitter, and resume from the last sequence number seen per stream.
//!
//! The task owns the socket and `select!`s over a closed set of inputs ([`Command`]s from SDK handles, frames
//! from the server, an idle check). Everything that is not a reply is handed to a [`Handler`] synchronously and
//! in arrival order, so the client's state sees events in stream order. The task holds the handler weakly: when
//! every handle of the client is gone the task stops by itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palaver_api::realtime::{self, Call, ConnectParams, Connected, PROTOCOL_VERSION, Reply, Request, ServerFrame};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::error::{ClientError, Result};

/// The state of the connection to the server, as reported by `connectionStateChanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a socket or waiting to retry after a failure.
    Connecting,
    /// Authenticated and receiving events.
    Connected,
    /// [`Client::shutdown`](crate::Client::shutdown) is closing the connection.
    Disconnecting,
    /// Not connected and not retrying: shut down, or waiting for a new token after expiry.
    Disconnected,
    /// The server rejected the token; call [`Client::update_token`](crate::Client::update_token).
    Denied,
}

impl ConnectionState {
    /// The name Twilio's SDK uses for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnecting => "disconnecting",
            Self::Disconnected => "disconnected",
            Self::Denied => "denied",
        }
    }
}

/// Where the realtime endpoint is, asked again before every connection attempt (so a test, or an application
/// with failover, can move the client to another address).
pub type UrlProvider = Arc<dyn Fn() -> String + Send + Sync>;

/// How the connection task behaves.
#[derive(Clone)]
pub(crate) struct TransportConfig {
    pub(crate) url: UrlProvider,
    pub(crate) token: String,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("url", &(self.url)())
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What the connection task tells the client about.
pub(crate) trait Handler: Send + Sync + 'static {
    /// A frame that is not a reply: an event, a typing or unread notice, a token warning.
    fn on_frame(&self, frame: ServerFrame);
    /// The connection state changed.
    fn on_state(&self, state: ConnectionState);
    /// A connection was authenticated (before any request or replayed event of it is processed).
    fn on_connected(&self, connected: &Connected, first: bool);
    /// A connection attempt or a connection failed (it will be retried unless the state says otherwise).
    fn on_error(&self, reason: &str);
    /// The server closed the connection because the token expired.
    fn on_token_expired(&self);
    /// The last sequence number processed per stream, for `connect.resume`.
    fn resume(&self) -> BTreeMap<String, i64>;
}

/// A request waiting for its reply.
struct Pending {
    id: u64,
    call: Call,
    reply: oneshot::Sender<Result<Value>>,
    /// Safe to send again on a new connection if the old one died before the reply arrived.
    retry: bool,
}

enum Command {
    Request(Pending),
    SetToken(String),
    Shutdown(oneshot::Sender<()>),
}

/// The handle SDK objects use to talk to the connection task.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    shared: Arc<TransportShared>,
}

#[derive(Debug)]
struct TransportShared {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    next_id: AtomicU64,
    request_timeout: Duration,
}

impl Transport {
    /// Starts the connection task and waits for the first connection.
    ///
    /// # Errors
    /// [`ClientError::Denied`] when the token is rejected, [`ClientError::Connect`] when the server cannot be
    /// reached; no retry happens for the first connection.
    pub(crate) async fn start<H: Handler>(config: TransportConfig, handler: Weak<H>) -> Result<(Self, Connected)> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (first_tx, first_rx) = oneshot::channel();
        let request_timeout = config.request_timeout;
        tokio::spawn(run(config, handler, receiver, state_tx, first_tx));
        let connected = first_rx.await.map_err(|_| ClientError::Shutdown)??;
        let transport = Self {
            shared: Arc::new(TransportShared {
                commands,
                state: state_rx,
                next_id: AtomicU64::new(1),
                request_timeout,
            }),
        };
        Ok((transport, connected))
    }

    /// The current connection state.
    pub(crate) fn state(&self) -> ConnectionState {
        *self.shared.state.borrow()
    }

    /// Sends `call` and waits for its result.
    ///
    /// Requests made while the connection is down are queued and sent once it is back. If the connection dies
    /// before the reply arrives, `retry` requests are sent again on the next connection; others fail with
    /// [`ClientError::TransportUnavailable`].
    pub(crate) async fn call(&self, call: Call, retry: bool) -> Result<Value> {
        let (reply, receiver) = oneshot::channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .commands
            .send(Command::Request(Pending { id, call, reply, retry }))
            .map_err(|_| ClientError::Shutdown)?;
        match tokio::time::timeout(self.shared.request_timeout, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Shutdown),
            Err(_) if self.state() == ConnectionState::Connected => Err(ClientError::Timeout),
            Err(_) => Err(ClientError::TransportUnavailable),
        }
    }

    /// [`call`](Self::call), then decodes the result.
    pub(crate) async fn call_as<T: DeserializeOwned>(&self, call: Call, retry: bool) -> Result<T> {
        let value = self.call(call, retry).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(format!("unexpected result: {e}")))
    }

    /// Remembers the token for the next connections (and wakes a connection waiting for one).
    pub(crate) fn set_token(&self, token: String) {
        let _ = self.shared.commands.send(Command::SetToken(token));
    }

    /// Closes the connection and stops the task; waits until it has stopped.
    pub(crate) async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.shared.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = stopped.await;
        }
    }

    /// Asks the task to stop without waiting (for drop guards).
    pub(crate) fn shutdown_now(&self) {
        let (done, _) = oneshot::channel();
        let _ = self.shared.commands.send(Command::Shutdown(done));
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why one connection attempt failed.
enum ConnectFailure {
    Denied(String),
    Transport(String),
}

/// Why a connected session ended.
enum Ended {
    /// The socket failed or the server closed it with a retryable code.
    Lost(String),
    Denied(String),
    TokenExpired,
    Shutdown(Option<oneshot::Sender<()>>),
}

/// The task's mutable state across connections.
struct Task<H: Handler> {
    config: TransportConfig,
    handler: Weak<H>,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<ConnectionState>,
    /// Requests not sent yet, oldest first.
    queue: VecDeque<Pending>,
}

async fn run<H: Handler>(
    config: TransportConfig,
    handler: Weak<H>,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<ConnectionState>,
    first: oneshot::Sender<Result<Connected>>,
) {
    let mut task = Task { config, handler, commands, state, queue: VecDeque::new() };
    let mut first = Some(first);
    let mut attempt: u32 = 0;
    loop {
        task.set_state(ConnectionState::Connecting);
        let url = (task.config.url)();
        let outcome = match task.connect(&url).await {
            Ok(outcome) => outcome,
            Err(done) => return task.stop(done, ClientError::Shutdown),
        };
        let ended = match outcome {
            Ok((socket, connected, early)) => {
                attempt = 0;
                let Some(handler) = task.handler.upgrade() else { return };
                handler.on_connected(&connected, first.is_none());
                drop(handler);
                task.set_state(ConnectionState::Connected);
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(connected));
                }
                for frame in early {
                    task.deliver(frame);
                }
                task.session(socket).await
            }
            Err(ConnectFailure::Denied(reason)) => {
                let expired = token_expired(&reason);
                if let Some(first) = first.take() {
                    let _ =
                        first.send(Err(if expired { ClientError::TokenExpired } else { ClientError::Denied(reason) }));
                    return;
                }
                if expired { Ended::TokenExpired } else { Ended::Denied(reason) }
            }
            Err(ConnectFailure::Transport(reason)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(ClientError::Connect { url, reason }));
                    return;
                }
                Ended::Lost(reason)
            }
        };
        match ended {
            Ended::Lost(reason) => {
                tracing::debug!(%reason, "realtime connection lost");
                task.with_handler(|h| h.on_error(&reason));
                task.set_state(ConnectionState::Connecting);
                let delay = backoff(attempt, task.config.backoff_min, task.config.backoff_max);
                attempt = attempt.saturating_add(1);
                if let Err(done) = task.idle_for(delay).await {
                    return task.stop(done, ClientError::Shutdown);
                }
            }
            Ended::Denied(reason) => {
                task.with_handler(|h| h.on_error(&reason));
                task.set_state(ConnectionState::Denied);
                if let Err(done) = task.wait_for_token(ClientError::Denied(reason)).await {
                    return task.stop(done, ClientError::Shutdown);
                }
            }
            Ended::TokenExpired => {
                task.with_handler(|h| h.on_token_expired());
                task.set_state(ConnectionState::Disconnected);
                if let Err(done) = task.wait_for_token(ClientError::TokenExpired).await {
                    return task.stop(done, ClientError::Shutdown);
                }
            }
            Ended::Shutdown(done) => return task.stop(done, ClientError::Shutdown),
        }
    }
}

/// Whether a rejection of `connect` was for an expired token (error 20104, "Access token expired"; older servers
/// put 20104 in the message of a 20003 error).
fn token_expired(reason: &str) -> bool {
    reason.contains("20104") || reason.to_ascii_lowercase().contains("expired")
}

/// The delay before reconnection attempt `attempt` (0-based): doubling from `min`, capped at `max`, with ±20 %
/// jitter so that many clients cut off at once do not come back at once.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let base = min.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(max);
    let jitter = (crate::util::random_u64() % 401) as f64 / 1000.0 + 0.8;
    base.mul_f64(jitter).min(max.mul_f64(1.2))
}

impl<H: Handler> Task<H> {
    fn set_state(&self, state: ConnectionState) {
        let changed = self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if changed {
            self.with_handler(|h| h.on_state(state));
        }
    }

    fn with_handler(&self, f: impl FnOnce(&H)) {
        if let Some(handler) = self.handler.upgrade() {
            f(&handler);
        }
    }

    fn deliver(&self, frame: ServerFrame) {
        self.with_handler(|h| h.on_frame(frame));
    }

    /// Fails every waiting request with `error`, tells the caller of `shutdown` it is done.
    fn stop(mut self, done: Option<oneshot::Sender<()>>, error: ClientError) {
        for pending in self.queue.drain(..) {
            let _ = pending.reply.send(Err(error.clone()));
        }
        self.set_state(ConnectionState::Disconnected);
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Request(pending) = command {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Handles a command while no socket is open. `Err` carries a shutdown request.
    fn offline_command(&mut self, command: Option<Command>) -> Result<(), Option<oneshot::Sender<()>>> {
        match command {
            None => Err(None),
            Some(Command::Shutdown(done)) => Err(Some(done)),
            Some(Command::Request(pending)) => {
                self.queue.push_back(pending);
                Ok(())
            }
            Some(Command::SetToken(token)) => {
                self.config.token = token;
                Ok(())
            }
        }
    }

    /// Waits `delay` while queueing requests.
    async fn idle_for(&mut self, delay: Duration) -> Result<(), Option<oneshot::Sender<()>>> {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return Ok(()),
                command = self.commands.recv() => self.offline_command(command)?,
            }
        }
    }

    /// Waits until a new token arrives; requests fail meanwhile with `error`.
    async fn wait_for_token(&mut self, error: ClientError) -> Result<(), Option<oneshot::Sender<()>>> {
        for pending in self.queue.drain(..) {
            let _ = pending.reply.send(Err(error.clone()));
        }
        loop {
            match self.commands.recv().await {
                None => return Err(None),
                Some(Command::Shutdown(done)) => return Err(Some(done)),
                Some(Command::Request(pending)) => {
                    let _ = pending.reply.send(Err(error.clone()));
                }
                Some(Command::SetToken(token)) => {
                    self.config.token = token;
                    return Ok(());
                }
            }
        }
    }

    /// One connection attempt, queueing commands meanwhile. The outer `Err` is a shutdown request.
    #[allow(clippy::type_complexity)]
    async fn connect(
        &mut self,
        url: &str,
    ) -> Result<Result<(Socket, Connected, Vec<ServerFrame>), ConnectFailure>, Option<oneshot::Sender<()>>> {
        let resume = self.handler.upgrade().map(|h| h.resume()).unwrap_or_default();
        let attempt = tokio::time::timeout(
            self.config.connect_timeout,
            connect_once(url.to_string(), self.config.token.clone(), resume),
        );
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => {
                    return Ok(result.unwrap_or_else(|_| Err(ConnectFailure::Transport("connection attempt timed out".into()))));
                }
                command = self.commands.recv() => self.offline_command(command)?,
            }
        }
    }

    /// Serves one authenticated connection until it ends.
    async fn session(&mut self, socket: Socket) -> Ended {
        let (mut sink, mut stream) = socket.split();
        let mut inflight: HashMap<u64, Pending> = HashMap::new();
        let mut last_heard = Instant::now();
        let mut idle_check = tokio::time::interval(Duration::from_secs(1).min(self.config.idle_timeout));
        let mut close_reason: Option<String> = None;
        let queued: Vec<Pending> = self.queue.drain(..).collect();
        let mut ended = None;
        for pending in queued {
            if ended.is_some() {
                self.queue.push_back(pending);
                continue;
            }
            if let Err(reason) = send_request(&mut sink, pending, &mut inflight).await {
                ended = Some(Ended::Lost(reason));
            }
        }
        let ended = match ended {
            Some(ended) => ended,
            None => loop {
                tokio::select! {
                    message = stream.next() => {
                        last_heard = Instant::now();
                        match message {
                            Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()) {
                                Ok(ServerFrame::Reply(reply)) => complete(&mut inflight, reply),
                                Ok(ServerFrame::Closing { reason }) => close_reason = Some(reason),
                                Ok(frame) => self.deliver(frame),
                                Err(err) => tracing::debug!(%err, "ignoring a frame this SDK does not understand"),
                            },
                            Some(Ok(WsMessage::Close(frame))) => {
                                let code = frame.as_ref().map(|f| u16::from(f.code));
                                break match code {
                                    Some(realtime::CLOSE_DENIED) => Ended::Denied(close_reason.unwrap_or_else(|| "denied".into())),
                                    Some(realtime::CLOSE_TOKEN_EXPIRED) => Ended::TokenExpired,
                                    _ => Ended::Lost(format!("closed by the server ({})", close_reason.as_deref().unwrap_or("no reason"))),
                                };
                            }
                            Some(Ok(_)) => {}
                            Some(Err(err)) => break Ended::Lost(err.to_string()),
                            None => break Ended::Lost("the server closed the connection".into()),
                        }
                    }
                    command = self.commands.recv() => match command {
                        Some(Command::Request(pending)) => {
                            if let Err(reason) = send_request(&mut sink, pending, &mut inflight).await {
                                break Ended::Lost(reason);
                            }
                        }
                        Some(Command::SetToken(token)) => self.config.token = token,
                        Some(Command::Shutdown(done)) => {
                            self.set_state(ConnectionState::Disconnecting);
                            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                            break Ended::Shutdown(Some(done));
                        }
                        None => {
                            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                            break Ended::Shutdown(None);
                        }
                    },
                    _ = idle_check.tick() => {
                        if last_heard.elapsed() > self.config.idle_timeout {
                            break Ended::Lost("no frame from the server for too long".into());
                        }
                    }
                }
            },
        };
        // Requests whose answer was lost: send again where that is safe, fail the others.
        let mut lost: Vec<Pending> = inflight.into_values().collect();
        lost.sort_by_key(|p| std::cmp::Reverse(p.id));
        for pending in lost {
            if pending.retry && matches!(ended, Ended::Lost(_)) {
                self.queue.push_front(pending);
            } else {
                let _ = pending.reply.send(Err(ClientError::TransportUnavailable));
            }
        }
        ended
    }
}

/// Writes one request; a request whose caller has given up is dropped instead.
async fn send_request(
    sink: &mut futures_util::stream::SplitSink<Socket, WsMessage>,
    pending: Pending,
    inflight: &mut HashMap<u64, Pending>,
) -> Result<(), String> {
    if pending.reply.is_closed() {
        return Ok(());
    }
    let text = match serde_json::to_string(&Request { id: pending.id, call: pending.call.clone() }) {
        Ok(text) => text,
        Err(err) => {
            let _ = pending.reply.send(Err(ClientError::Protocol(err.to_string())));
            return Ok(());
        }
    };
    let id = pending.id;
    inflight.insert(id, pending);
    sink.send(WsMessage::text(text)).await.map_err(|e| e.to_string())
}

fn complete(inflight: &mut HashMap<u64, Pending>, reply: Reply) {
    let Some(pending) = inflight.remove(&reply.reply_to) else {
        if let Some(error) = reply.error {
            tracing::debug!(code = error.code, message = %error.message, "server error without a request");
        }
        return;
    };
    let result = match (reply.result, reply.error) {
        (_, Some(error)) => Err(ClientError::from(error)),
        (Some(value), None) => Ok(value),
        (None, None) => Ok(Value::Object(Default::default())),
    };
    let _ = pending.reply.send(result);
}

/// Opens a socket and authenticates with `connect`.
async fn connect_once(
    url: String,
    token: String,
    resume: BTreeMap<String, i64>,
) -> Result<(Socket, Connected, Vec<ServerFrame>), ConnectFailure> {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| ConnectFailure::Transport(e.to_string()))?;
    let request = Request {
        id: 0,
        call: Call::Connect(ConnectParams { token, protocol_version: Some(PROTOCOL_VERSION), resume }),
    };
    let text = serde_json::to_string(&request).map_err(|e| ConnectFailure::Transport(e.to_string()))?;
    socket.send(WsMessage::text(text)).await.map_err(|e| ConnectFailure::Transport(e.to_string()))?;
    let mut early = Vec::new();
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()) {
                Ok(ServerFrame::Reply(Reply { reply_to: 0, result, error })) => {
                    if let Some(error) = error {
                        return Err(if error.code == 20003 || error.status == 401 || error.status == 403 {
                            ConnectFailure::Denied(error.message)
                        } else {
                            ConnectFailure::Transport(format!("connect failed: {} ({})", error.message, error.code))
                        });
                    }
                    let connected = serde_json::from_value::<Connected>(result.unwrap_or_default())
                        .map_err(|e| ConnectFailure::Transport(format!("unexpected connect result: {e}")))?;
                    return Ok((socket, connected, early));
                }
                Ok(frame) => early.push(frame),
                Err(err) => tracing::debug!(%err, "ignoring a frame this SDK does not understand"),
            },
            Some(Ok(WsMessage::Close(frame))) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                return Err(if code == Some(realtime::CLOSE_DENIED) {
                    ConnectFailure::Denied("the server rejected the token".into())
                } else {
                    ConnectFailure::Transport(format!("closed during connect ({code:?})"))
                });
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(ConnectFailure::Transport(err.to_string())),
            None => return Err(ConnectFailure::Transport("closed during connect".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_api::realtime::SendMessageParams;
    use tokio::net::TcpListener;

    /// A handler that only records connection states.
    #[derive(Default)]
    struct Recording {
        states: std::sync::Mutex<Vec<ConnectionState>>,
    }

    impl Handler for Recording {
        fn on_frame(&self, _frame: ServerFrame) {}
        fn on_state(&self, state: ConnectionState) {
            self.states.lock().unwrap().push(state);
        }
        fn on_connected(&self, _connected: &Connected, _first: bool) {}
        fn on_error(&self, _reason: &str) {}
        fn on_token_expired(&self) {}
        fn resume(&self) -> BTreeMap<String, i64> {
            BTreeMap::from([("CH1".to_string(), 7)])
        }
    }

    fn connected() -> Value {
        serde_json::json!({
            "identity": "alice", "service_sid": "IS1", "token_expires_at": "2030-01-01T00:00:00Z",
            "typing_timeout_ms": 5000, "session_id": "s",
            "user": {"sid": "US1", "identity": "alice", "friendly_name": null, "attributes": "{}", "role_sid": null,
                     "is_online": null, "is_notifiable": null, "date_created": "2026-01-01T00:00:00Z",
                     "date_updated": "2026-01-01T00:00:00Z"},
            "limits": {"media_attachments_count_limit": 10, "media_attachment_size_limit_in_mb": 16,
                       "media_attachments_total_size_limit_in_mb": 32, "email_bodies_allowed_content_types": [],
                       "email_histories_allowed_content_types": []}
        })
    }

    async fn next_request(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Request {
        loop {
            match socket.next().await {
                Some(Ok(WsMessage::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("the client went away: {other:?}"),
            }
        }
    }

    async fn reply(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, id: u64, result: Value) {
        let frame = ServerFrame::Reply(Reply { reply_to: id, result: Some(result), error: None });
        socket.send(WsMessage::text(serde_json::to_string(&frame).unwrap())).await.unwrap();
    }

    /// A send whose reply is lost with the connection is sent again, with the same idempotency key, after the
    /// client reconnects (resuming its streams); a mutation that is not safe to repeat fails instead.
    #[tokio::test]
    async fn lost_replies_are_retried_or_fail_typed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for connection in 0..2 {
                let (stream, _) = listener.accept().await.unwrap();
                let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                let Request { id, call: Call::Connect(params) } = next_request(&mut socket).await else {
                    panic!("connect first")
                };
                seen.push(params.resume.clone());
                reply(&mut socket, id, connected()).await;
                if connection == 0 {
                    // Take both requests, answer neither, and drop the connection.
                    let first = next_request(&mut socket).await;
                    let second = next_request(&mut socket).await;
                    seen.push(BTreeMap::new());
                    drop(socket);
                    assert!(matches!(first.call, Call::SendMessage(_)) || matches!(second.call, Call::SendMessage(_)));
                } else {
                    let again = next_request(&mut socket).await;
                    let Call::SendMessage(params) = again.call else { panic!("only the send is retried") };
                    assert_eq!(params.idempotency_key.as_deref(), Some("key-1"));
                    reply(&mut socket, again.id, serde_json::json!({"index": 3})).await;
                    // Keep the socket open until the client is done.
                    let _ = socket.next().await;
                }
            }
            seen
        });

        let handler = Arc::new(Recording::default());
        let config = TransportConfig {
            url: Arc::new(move || url.clone()),
            token: "t".into(),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        };
        let (transport, connected) = Transport::start(config, Arc::downgrade(&handler)).await.unwrap();
        assert_eq!(connected.identity, "alice");
        let send = Call::SendMessage(SendMessageParams {
            conversation: "CH1".into(),
            body: Some("hi".into()),
            idempotency_key: Some("key-1".into()),
            ..SendMessageParams::default()
        });
        let leave = Call::Leave { conversation: "CH1".into() };
        let (sent, left) = tokio::join!(transport.call(send, true), transport.call(leave, false));
        assert_eq!(sent.unwrap(), serde_json::json!({"index": 3}));
        assert_eq!(left.unwrap_err(), ClientError::TransportUnavailable);
        transport.shutdown().await;
        let seen = server.await.unwrap();
        assert_eq!(seen[0], BTreeMap::from([("CH1".to_string(), 7)]), "connect carries the resume map");
        let states = handler.states.lock().unwrap().clone();
        assert_eq!(
            states,
            [
                ConnectionState::Connected,
                ConnectionState::Connecting,
                ConnectionState::Connected,
                ConnectionState::Disconnecting,
                ConnectionState::Disconnected
            ]
        );
    }

    #[test]
    fn expiry_is_told_apart_from_denial() {
        assert!(token_expired("Access token expired (20104)"));
        assert!(!token_expired("invalid signature"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 0..40 {
            let delay = backoff(attempt, min, max);
            let base = (min * 2u32.pow(attempt.min(20))).min(max);
            assert!(delay >= base.mul_f64(0.79), "attempt {attempt}: {delay:?} < {base:?}");
            assert!(delay <= base.mul_f64(1.21), "attempt {attempt}: {delay:?} > {base:?}");
        }
    }
}
