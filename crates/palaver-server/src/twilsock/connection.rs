//! One twilsock connection, from `init` to close: the transport half of [`super`].
//!
//! The connection is one task that `select!`s over a closed set of inputs ([`Input`]): frames from the client,
//! finished tunnel requests, notifications from the app, the token's warning and expiry timers, an idle check
//! and server shutdown. Every write goes through a bounded queue to a writer task, which also sends WebSocket
//! pings: twilsock has no heartbeat of its own, and every WebSocket stack answers pings, so a peer that stays
//! silent for [`IDLE_LIMIT`] is gone. Tunnelled requests run as tasks of their own, at most [`MAX_IN_FLIGHT`]
//! per connection (the socket is not read while that many run), and each writes its own reply.
//!
//! Close codes: the twilsock `close` frame tells the SDK what to do (410 token expired, 308 reconnect on
//! shutdown, 406 not twilsock); the WebSocket close code that follows is for logs and other clients.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use palaver_api::ErrorCode;
use palaver_api::twilsock::{self, Frame, Header, InitHeader, MessageHeader, Status, UpdateHeader, method};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::app::TunnelSession;
use super::{Notification, Notifier, TunnelRequest, TunnelResponse};
use crate::AppState;
use crate::error::ApiError;
use crate::limits::ConnectionBudget;
use crate::token::{self, TokenError, VerifiedToken};

/// GET /v3/wsconnect — upgrades to twilsock v3 (the official JS SDK's transport).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    budget: Option<axum::Extension<ConnectionBudget>>,
    ws: WebSocketUpgrade,
) -> Response {
    // The socket spends the request budget of the connection it was upgraded from.
    let budget = budget.map_or_else(|| ConnectionBudget::new(state.limits.connection_rate, &state.metrics), |b| b.0);
    // Tunnelled bodies are JSON (media goes over plain HTTP), so the frame limit bounds what one message can make
    // the server hold without ever cutting off what the SDK sends.
    let max_message = state.limits.max_frame_bytes;
    // Made here, while the upgrade request's id is known: the session runs in a task of its own.
    let session = crate::observe::session_span("twilsock");
    // Small socket buffers, as for the realtime gateway: most connections idle most of the time.
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| tracing::Instrument::instrument(run(socket, state, budget), session))
}
/// Read and write buffer of each socket; larger frames are still handled, in several reads or writes.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Silence (not even a pong) after which the client is considered gone: three pings unanswered.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// How often silence is checked.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a client has to send `init` after connecting.
const INIT_DEADLINE: Duration = Duration::from_secs(10);
/// After the server's `close` or a refused `init`, how long the client has to close the socket itself (the
/// SDK acknowledges, sends its own `close` and closes within milliseconds).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long the writer may take to send what is queued once the connection ends (bounds shutdown).
const WRITER_DRAIN: Duration = Duration::from_secs(1);
/// Tunnelled requests of one connection that may run at once.
const MAX_IN_FLIGHT: usize = 64;
/// Notifications the app may queue before its `Notifier::send` waits.
const NOTIFICATION_QUEUE: usize = 256;
/// The longest warning before the token expires; shorter tokens are warned at half their remaining life.
const WARNING_LEAD: Duration = Duration::from_secs(180);
/// What the server supports, confirmed in the `init` reply when the client asks for it.
const CAPABILITIES: [&str; 3] = ["client_update", "offline_storage", "telemetry.v1"];

/// WebSocket close codes.
mod ws_close {
    /// The client said `close`.
    pub(super) const NORMAL: u16 = 1000;
    /// Server shutdown, or a silent peer.
    pub(super) const GOING_AWAY: u16 = 1001;
    /// A binary message that is not a twilsock frame.
    pub(super) const PROTOCOL_ERROR: u16 = 1002;
    /// A text message (twilsock frames are binary).
    pub(super) const UNSUPPORTED_DATA: u16 = 1003;
    /// No `init` in time.
    pub(super) const POLICY: u16 = 1008;
    /// `init` was refused (same number as the realtime gateway's denial).
    pub(super) const DENIED: u16 = 4401;
    /// The client let its send queue fill up.
    pub(super) const TOO_SLOW: u16 = 4408;
    /// The access token expired.
    pub(super) const TOKEN_EXPIRED: u16 = 4410;
}

/// What the connection task hands the writer.
enum Outgoing {
    /// An encoded twilsock frame.
    Frame(Bytes),
    /// Send a WebSocket close frame and stop.
    Close(u16, &'static str),
    /// Flush and stop (the client already closed).
    Stop,
}

/// How the connection ends.
enum Ending {
    /// The client closed the socket or it broke: nothing more can be sent.
    Gone,
    /// Close the socket; with `linger`, first give the client [`CLOSE_GRACE`] to close it itself.
    Close { code: u16, reason: &'static str, linger: bool },
}

impl Ending {
    fn close(code: u16, reason: &'static str) -> Self {
        Self::Close { code, reason, linger: false }
    }

    fn after_grace(code: u16, reason: &'static str) -> Self {
        Self::Close { code, reason, linger: true }
    }
}

async fn run(socket: WebSocket, state: AppState, budget: ConnectionBudget) {
    let (sink, mut stream) = socket.split();
    let (queue, queued) = mpsc::channel::<Outgoing>(state.realtime.send_queue.max(1));
    let mut writer = tokio::spawn(write_frames(sink, queued));
    let out = Out { queue, grace: state.realtime.slow_consumer_grace };
    let ending = match handshake(&state, &mut stream, &out, budget).await {
        Ok(connection) => connection.serve(&mut stream).await,
        Err(ending) => ending,
    };
    let last = match ending {
        Ending::Gone => Outgoing::Stop,
        Ending::Close { linger: true, .. } if linger(&mut stream).await => Outgoing::Stop,
        Ending::Close { code, reason, .. } => Outgoing::Close(code, reason),
    };
    // A full queue means the writer is stuck on a client that does not read: the timeout below ends it.
    let _ = out.queue.try_send(last);
    drop(out);
    if tokio::time::timeout(WRITER_DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Writes queued frames, a burst at a time with one flush, and pings every [`PING_EVERY`].
async fn write_frames(mut sink: SplitSink<WebSocket, Message>, mut queued: mpsc::Receiver<Outgoing>) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            next = queued.recv() => {
                let mut next = next;
                loop {
                    match next {
                        Some(Outgoing::Frame(bytes)) => {
                            if sink.feed(Message::Binary(bytes)).await.is_err() {
                                return;
                            }
                        }
                        Some(Outgoing::Close(code, reason)) => {
                            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                            return;
                        }
                        Some(Outgoing::Stop) | None => {
                            let _ = sink.flush().await;
                            return;
                        }
                    }
                    match queued.try_recv() {
                        Ok(more) => next = Some(more),
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// After the server's `close` or a refused `init`: reads (and drops) what the client still sends until it
/// closes the socket (true), says `close` itself, or [`CLOSE_GRACE`] passes (false: the server closes).
async fn linger(stream: &mut SplitStream<WebSocket>) -> bool {
    let deadline = Instant::now() + CLOSE_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                if twilsock::decode(&bytes).is_ok_and(|frame| frame.header.method == method::CLOSE) {
                    return false;
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The sending half, with the slow-consumer rule of the realtime gateway.
#[derive(Clone)]
struct Out {
    queue: mpsc::Sender<Outgoing>,
    grace: Duration,
}

impl Out {
    /// Queues a frame, waiting while the queue is full; false when the client has not made room within the
    /// grace period (it is too slow) or is gone.
    async fn send(&self, header: &Header, payload: &[u8]) -> bool {
        tracing::debug!(method = %header.method, id = ?header.id, payload = payload.len(), "twilsock frame out");
        let frame = Outgoing::Frame(Bytes::from(twilsock::encode(header, payload)));
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) => self.queue.send_timeout(frame, self.grace).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Answers the frame `id` with `status` and no payload.
    async fn reply(&self, id: &str, status: &Status) -> bool {
        self.send(&Header::reply(id, status).with_payload_type(twilsock::JSON), b"").await
    }

    /// Sends the server's `close` with `status`.
    async fn close(&self, status: &Status) -> bool {
        let header =
            Header::new(method::CLOSE).with_id(twilsock::new_frame_id()).with_field("status", status.to_json());
        self.send(&header, b"").await
    }
}

/// One message read from the socket, classified.
enum Read {
    /// A twilsock frame.
    Frame(Frame),
    /// A ping or pong: nothing to do.
    Nothing,
    /// The connection is over.
    End(Ending),
}

/// Classifies a message; on anything that is not twilsock, tells the client why before ending.
async fn read(message: Option<Result<Message, axum::Error>>, out: &Out) -> Read {
    let bytes = match message {
        Some(Ok(Message::Binary(bytes))) => bytes,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Read::Nothing,
        Some(Ok(Message::Close(_))) | None => return Read::End(Ending::Gone),
        Some(Err(err)) => {
            // Also a message above MAX_MESSAGE_BYTES.
            tracing::debug!(%err, "twilsock socket error");
            return Read::End(Ending::Gone);
        }
        Some(Ok(Message::Text(_))) => {
            tracing::warn!("twilsock client sent a text message; closing");
            out.close(&not_acceptable("twilsock frames are binary WebSocket messages")).await;
            return Read::End(Ending::close(ws_close::UNSUPPORTED_DATA, "twilsock frames are binary"));
        }
    };
    match twilsock::decode(&bytes) {
        Ok(frame) => {
            tracing::debug!(
                method = %frame.header.method,
                id = ?frame.header.id,
                payload = frame.payload.len(),
                "twilsock frame in"
            );
            Read::Frame(frame)
        }
        Err(err) => {
            tracing::warn!(%err, bytes = bytes.len(), "malformed twilsock frame; closing");
            out.close(&not_acceptable(&format!("malformed twilsock frame: {err}"))).await;
            Read::End(Ending::close(ws_close::PROTOCOL_ERROR, "malformed twilsock frame"))
        }
    }
}

/// Waits for `init` and answers it; other frames before it are answered 400 (or ignored, for acks and
/// telemetry).
async fn handshake(
    state: &AppState,
    stream: &mut SplitStream<WebSocket>,
    out: &Out,
    budget: ConnectionBudget,
) -> Result<Connection, Ending> {
    let deadline = tokio::time::sleep(INIT_DEADLINE);
    tokio::pin!(deadline);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let message = tokio::select! {
            () = &mut deadline => {
                tracing::warn!("twilsock client sent no init in time");
                return Err(Ending::close(ws_close::POLICY, "no init in time"));
            }
            Ok(_) = shutdown.wait_for(|stopping| *stopping) => {
                return Err(Ending::close(ws_close::GOING_AWAY, "server shutting down"));
            }
            message = stream.next() => message,
        };
        let frame = match read(message, out).await {
            Read::Frame(frame) => frame,
            Read::Nothing => continue,
            Read::End(ending) => return Err(ending),
        };
        match frame.header.method.as_str() {
            method::INIT => return init(state, &frame, out, budget).await,
            method::CLOSE => return Err(Ending::close(ws_close::NORMAL, "closed by the client")),
            method::REPLY | method::TELEMETRY => {}
            other => {
                tracing::warn!(method = other, "twilsock frame before init");
                if let Some(id) = &frame.header.id
                    && !out.reply(id, &bad_request("the connection is not initialised: send init first")).await
                {
                    return Err(Ending::Gone);
                }
            }
        }
    }
}

/// Checks `init`'s token, opens the app's session and replies; a refusal is replied and ends the connection.
async fn init(state: &AppState, frame: &Frame, out: &Out, budget: ConnectionBudget) -> Result<Connection, Ending> {
    let id = frame.header.id.clone().unwrap_or_default();
    let refuse = async |status: Status, reason: &'static str| {
        tracing::debug!(?status, "twilsock init refused");
        if out.reply(&id, &status).await { Ending::after_grace(ws_close::DENIED, reason) } else { Ending::Gone }
    };
    let init: InitHeader = match frame.header_as() {
        Ok(init) => init,
        Err(err) => return Err(refuse(bad_request(&format!("init is malformed: {err}")), "init is malformed").await),
    };
    let Some(raw_token) = init.token.as_deref() else {
        let status = unauthorized(ErrorCode::AccessTokenInvalid, "init carries no access token");
        return Err(refuse(status, "access token rejected").await);
    };
    let token = match token::verify(state, raw_token).await {
        Ok(token) => token,
        Err(err) => return Err(refuse(token_status(&err), "access token rejected").await),
    };
    let (notifier, notifications) = mpsc::channel(NOTIFICATION_QUEUE);
    let session = match TunnelSession::open(state.clone(), &token, Notifier::new(notifier)).await {
        Ok(session) => session,
        Err(err) => return Err(refuse(api_error_status(&err), "init refused").await),
    };
    let (continuation_token, reissued) = continuation_token(init.continuation_token.as_deref());
    let capabilities: Vec<&str> =
        CAPABILITIES.iter().copied().filter(|c| init.capabilities.iter().any(|asked| asked == c)).collect();
    let reply = Header::reply(&id, &Status::ok())
        .with_payload_type(twilsock::JSON)
        .with_field("continuation_token", json!(continuation_token))
        .with_field("continuation_token_status", json!({"reissued": reissued}))
        .with_field("capabilities", json!(capabilities))
        .with_field("init_registrations", Value::Null)
        .with_field("offline_storage", json!({"ip_messaging": {"storage_id": storage_id(&token)}}));
    if !out.send(&reply, b"").await {
        return Err(Ending::Gone);
    }
    tracing::debug!(identity = %token.identity, "twilsock connection initialised");
    Ok(Connection {
        state: state.clone(),
        session: Arc::new(session),
        token,
        out: out.clone(),
        notifications,
        notifications_open: true,
        in_flight: JoinSet::new(),
        warned: false,
        budget,
    })
}

/// An initialised connection.
struct Connection {
    state: AppState,
    /// What the tunnel reaches; shared with the running requests.
    session: Arc<TunnelSession>,
    /// The token the connection runs on (replaced by `update`); its expiry closes the connection.
    token: VerifiedToken,
    out: Out,
    /// What the app pushes through its `Notifier`.
    notifications: mpsc::Receiver<Notification>,
    /// False once the app dropped every `Notifier` (a closed queue would otherwise be ready forever).
    notifications_open: bool,
    /// Running tunnel requests; each yields whether its reply was queued. Dropped (aborting them) with the
    /// connection.
    in_flight: JoinSet<bool>,
    /// `client_update` was sent for the current token.
    warned: bool,
    /// The socket's request budget (the connection rate).
    budget: ConnectionBudget,
}

/// Everything the connection task waits for.
enum Input {
    Socket(Option<Result<Message, axum::Error>>),
    Answered(Option<Result<bool, tokio::task::JoinError>>),
    Notification(Option<Notification>),
    TokenWarning,
    TokenExpired,
    IdleCheck,
    Shutdown,
}

impl Connection {
    async fn serve(mut self, stream: &mut SplitStream<WebSocket>) -> Ending {
        let mut shutdown = self.state.shutdown.subscribe();
        let mut last_heard = Instant::now();
        let mut idle_check = tokio::time::interval_at(Instant::now() + IDLE_CHECK_EVERY, IDLE_CHECK_EVERY);
        // Armed once and reset only when the token changes (see the realtime gateway).
        let mut armed_for = self.token.expires_at;
        let warning = tokio::time::sleep_until(warning_time(&self.token));
        let expiry = tokio::time::sleep_until(expiry_time(&self.token));
        tokio::pin!(warning, expiry);
        loop {
            if armed_for != self.token.expires_at {
                armed_for = self.token.expires_at;
                self.warned = false;
                warning.as_mut().reset(warning_time(&self.token));
                expiry.as_mut().reset(expiry_time(&self.token));
            }
            let input = tokio::select! {
                message = stream.next(), if self.in_flight.len() < MAX_IN_FLIGHT => Input::Socket(message),
                done = self.in_flight.join_next(), if !self.in_flight.is_empty() => Input::Answered(done),
                notification = self.notifications.recv(), if self.notifications_open => {
                    Input::Notification(notification)
                }
                () = &mut warning, if !self.warned => Input::TokenWarning,
                () = &mut expiry => Input::TokenExpired,
                _ = idle_check.tick() => Input::IdleCheck,
                Ok(_) = shutdown.wait_for(|stopping| *stopping) => Input::Shutdown,
            };
            match input {
                Input::Socket(message) => {
                    last_heard = Instant::now();
                    match read(message, &self.out).await {
                        Read::Frame(frame) => {
                            if let Some(ending) = self.on_frame(frame).await {
                                return ending;
                            }
                        }
                        Read::Nothing => {}
                        Read::End(ending) => return ending,
                    }
                }
                Input::Answered(done) => match done {
                    Some(Ok(true)) | None => {}
                    Some(Ok(false)) => return self.too_slow(),
                    Some(Err(err)) => tracing::warn!(%err, "twilsock tunnel task failed"),
                },
                Input::Notification(Some(notification)) => {
                    if !self.notify(&notification).await {
                        return self.too_slow();
                    }
                }
                Input::Notification(None) => self.notifications_open = false,
                Input::TokenWarning => {
                    self.warned = true;
                    let header = Header::new(method::CLIENT_UPDATE)
                        .with_id(twilsock::new_frame_id())
                        .with_field("client_update_type", json!("token_about_to_expire"));
                    if !self.out.send(&header, b"").await {
                        return self.too_slow();
                    }
                }
                Input::TokenExpired => {
                    tracing::debug!(identity = %self.token.identity, "twilsock token expired");
                    self.out.close(&Status::new(twilsock::CLOSE_TOKEN_EXPIRED, "Token expired")).await;
                    return Ending::after_grace(ws_close::TOKEN_EXPIRED, "token expired");
                }
                Input::IdleCheck => {
                    if last_heard.elapsed() > IDLE_LIMIT {
                        tracing::debug!(identity = %self.token.identity, "twilsock peer silent; closing");
                        return Ending::close(ws_close::GOING_AWAY, "no pong");
                    }
                }
                Input::Shutdown => {
                    // 308: the SDK reconnects after its backoff, to whichever server then listens.
                    self.out.close(&Status::new(twilsock::CLOSE_OFFLOAD, "Server shutting down")).await;
                    return Ending::close(ws_close::GOING_AWAY, "server shutting down");
                }
            }
        }
    }

    /// Handles one frame after `init`; `Some` ends the connection.
    async fn on_frame(&mut self, frame: Frame) -> Option<Ending> {
        match frame.header.method.as_str() {
            method::MESSAGE => self.tunnel(frame),
            method::UPDATE => self.update(&frame).await,
            // Acknowledgements of the server's frames, and timing events: nothing to answer.
            method::REPLY | method::TELEMETRY => None,
            // The twilsock channel's own notification context: its notifications are the ones this connection
            // already gets (Sync events, typing), so there is nothing to keep; device pushes register through
            // the tunnel (`/v1/registrations`, see `app.rs`).
            method::PUT_NOTIFICATION_CTX | method::DELETE_NOTIFICATION_CTX => self.answer(&frame, &Status::ok()).await,
            method::CLOSE => Some(Ending::close(ws_close::NORMAL, "closed by the client")),
            method::INIT => self.answer(&frame, &bad_request("the connection is already initialised")).await,
            other => {
                tracing::warn!(method = other, "unknown twilsock method");
                self.answer(&frame, &bad_request(&format!("unknown method {other:?}"))).await
            }
        }
    }

    /// Replies to `frame` if it has an id; `Some` when the reply cannot be sent.
    async fn answer(&self, frame: &Frame, status: &Status) -> Option<Ending> {
        let Some(id) = &frame.header.id else {
            tracing::warn!(method = %frame.header.method, "twilsock frame without id; not answered");
            return None;
        };
        if self.out.reply(id, status).await { None } else { Some(self.too_slow()) }
    }

    /// Starts a tunnelled request; its task replies when the app answers.
    fn tunnel(&mut self, frame: Frame) -> Option<Ending> {
        let Some(id) = frame.header.id.clone() else {
            tracing::warn!("twilsock message without id; not answered");
            return None;
        };
        let out = self.out.clone();
        if let Err(refused) = self.budget.take() {
            let (header, payload) = tunnel_reply(&id, &super::app::error_response(&refused));
            self.in_flight.spawn(async move { out.send(&header, &payload).await });
            return None;
        }
        let request = match tunnel_request(frame) {
            Ok(request) => request,
            Err(reason) => {
                tracing::warn!(%reason, "malformed twilsock message");
                // Answered from a task too, so that a full queue never blocks the connection task here.
                self.in_flight.spawn(async move { out.reply(&id, &bad_request(&reason)).await });
                return None;
            }
        };
        let session = self.session.clone();
        self.in_flight.spawn(async move {
            let response = match AssertUnwindSafe(session.handle(request)).catch_unwind().await {
                Ok(response) => response,
                Err(_) => {
                    tracing::error!(id, "the twilsock tunnel handler panicked");
                    let body = palaver_api::ErrorBody::new(ErrorCode::InternalError, "An internal error occurred");
                    TunnelResponse::json(500, serde_json::to_value(body).unwrap_or(Value::Null))
                }
            };
            let (header, payload) = tunnel_reply(&id, &response);
            out.send(&header, &payload).await
        });
        None
    }

    /// `update`: a renewed token for the same user replaces the current one (re-arming the timers).
    async fn update(&mut self, frame: &Frame) -> Option<Ending> {
        let raw_token = frame.header_as::<UpdateHeader>().ok().and_then(|update| update.token);
        let status = match raw_token {
            None => unauthorized(ErrorCode::AccessTokenInvalid, "update carries no access token"),
            Some(raw_token) => match token::verify(&self.state, &raw_token).await {
                Ok(token) if token.identity == self.token.identity && token.service_sid == self.token.service_sid => {
                    self.token = token;
                    Status::ok()
                }
                Ok(_) => unauthorized(
                    ErrorCode::AccessTokenInvalid,
                    "the access token is for another identity or service than the connection",
                ),
                Err(err) => token_status(&err),
            },
        };
        if status.code != 200 {
            // The connection keeps its current token; the SDK treats the rejection as terminal and closes.
            tracing::debug!(?status, identity = %self.token.identity, "twilsock update refused");
        }
        self.answer(frame, &status).await
    }

    /// Sends a notification; false when the client is too slow or gone.
    async fn notify(&self, notification: &Notification) -> bool {
        let (header, payload) = notification_frame(notification);
        self.out.send(&header, &payload).await
    }

    fn too_slow(&self) -> Ending {
        tracing::warn!(identity = %self.token.identity, "twilsock client too slow; closing");
        Ending::close(ws_close::TOO_SLOW, "too slow")
    }
}

/// The request a `message` frame tunnels.
fn tunnel_request(frame: Frame) -> Result<TunnelRequest, String> {
    let header: MessageHeader = frame.header_as().map_err(|err| format!("message is malformed: {err}"))?;
    let http = header.http_request;
    let mut params = Vec::with_capacity(http.params.0.len());
    // `path` carries no query string, but one there is read too rather than routed as part of the path.
    let path = match http.path.split_once('?') {
        Some((path, query)) => {
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                params.push((decode_component(name), decode_component(value)));
            }
            path.to_string()
        }
        None => http.path,
    };
    for (name, value) in http.params.0 {
        push_param(&mut params, &decode_component(&name), value);
    }
    let headers = http
        .headers
        .0
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(text) => Some((name, text)),
            Value::Null => None,
            other => Some((name, other.to_string())),
        })
        .collect();
    Ok(TunnelRequest {
        method: http.method.to_ascii_uppercase(),
        host: http.host,
        path,
        params,
        headers,
        body: Bytes::from(frame.payload),
        content_type: frame.header.payload_type,
    })
}

/// Adds a parameter's values: the SDK sends each value as it appeared in the URL, still percent-encoded, and
/// a repeated name as an array; numbers and booleans are taken as their text.
fn push_param(params: &mut Vec<(String, String)>, name: &str, value: Value) {
    match value {
        Value::String(text) => params.push((name.to_string(), decode_component(&text))),
        Value::Array(values) => {
            for value in values {
                push_param(params, name, value);
            }
        }
        // `?Name` without `=` (JSON has no `undefined`).
        Value::Null => params.push((name.to_string(), String::new())),
        other => params.push((name.to_string(), other.to_string())),
    }
}

/// Decodes a query-string component: `+` is a space (URLSearchParams writes it), then `%XX` escapes.
fn decode_component(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The reply to a tunnelled request: HTTP's answer in `http_status`, `http_headers` and the payload, under a
/// twilsock status that is always 200 (an HTTP error in the twilsock status would lose its body in the SDK).
fn tunnel_reply(id: &str, response: &TunnelResponse) -> (Header, Vec<u8>) {
    let payload = match &response.body {
        Value::Null => Vec::new(),
        body => serde_json::to_vec(body).unwrap_or_default(),
    };
    let mut headers = Map::new();
    if !payload.is_empty() {
        headers.insert("Content-Type".into(), json!(twilsock::JSON));
    }
    for (name, value) in &response.headers {
        headers.insert(name.clone(), json!(value));
    }
    let header = Header::reply(id, &Status::ok())
        .with_payload_type(twilsock::JSON)
        .with_field("http_status", json!({"code": response.status, "status": reason_phrase(response.status)}))
        .with_field("http_headers", Value::Object(headers));
    (header, payload)
}

/// A `notification` frame.
fn notification_frame(notification: &Notification) -> (Header, Vec<u8>) {
    let header = Header::new(method::NOTIFICATION)
        .with_id(twilsock::new_frame_id())
        .with_payload_type(twilsock::JSON)
        .with_field("message_type", json!(notification.message_type));
    (header, serde_json::to_vec(&notification.payload).unwrap_or_default())
}

/// The reason phrase of an HTTP status.
fn reason_phrase(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown")
}

fn unauthorized(code: ErrorCode, description: &str) -> Status {
    Status::new(401, reason_phrase(401)).with_error(code.number(), description)
}

fn bad_request(description: &str) -> Status {
    Status::new(400, reason_phrase(400)).with_error(ErrorCode::InvalidParameter.number(), description)
}

fn not_acceptable(description: &str) -> Status {
    Status::new(twilsock::CLOSE_NOT_ACCEPTABLE, reason_phrase(twilsock::CLOSE_NOT_ACCEPTABLE))
        .with_error(ErrorCode::InvalidParameter.number(), description)
}

/// How a refused token is answered: 401 with 20104 when expired (the SDK then emits `tokenExpired`), 20101
/// otherwise; 500 (which the SDK retries) when the store could not be asked.
fn token_status(err: &TokenError) -> Status {
    match err {
        TokenError::Expired => unauthorized(ErrorCode::AccessTokenExpired, &err.to_string()),
        TokenError::Storage(detail) => {
            tracing::error!(%detail, "access token check failed");
            Status::new(500, reason_phrase(500))
                .with_error(ErrorCode::InternalError.number(), "the access token could not be checked; retry")
        }
        TokenError::Malformed(_) | TokenError::Invalid | TokenError::NotYetValid | TokenError::ObserverOnly => {
            unauthorized(ErrorCode::AccessTokenInvalid, &err.to_string())
        }
    }
}

/// How a refusal of the app's `TunnelSession::open` is answered: its HTTP status and Twilio code.
fn api_error_status(err: &ApiError) -> Status {
    let error = err.realtime();
    Status::new(error.status, reason_phrase(error.status)).with_error(error.code, error.message)
}

/// The continuation token of the `init` reply: a well-formed one the client presents is kept (it names the
/// client's session, which reconnects), anything else gets a new one (`reissued` when one was presented).
fn continuation_token(presented: Option<&str>) -> (String, bool) {
    match presented {
        Some(token) if palaver_api::sid::has_sid_shape(token, "CT") => (token.to_string(), false),
        Some(_) => (twilsock::random_id("CT"), true),
        None => (twilsock::random_id("CT"), false),
    }
}

/// The SDK's offline-storage id: stable per user (service and identity), so it survives reconnects and
/// restarts, and opaque.
fn storage_id(token: &VerifiedToken) -> String {
    let service = token.service_sid.as_ref().map_or("default", |sid| sid.as_str());
    let digest = Sha256::new()
        .chain_update(b"palaver twilsock offline storage\0")
        .chain_update(service.as_bytes())
        .chain_update(b"\0")
        .chain_update(token.identity.as_bytes())
        .finalize();
    let mut id = String::with_capacity(34);
    id.push_str("ST");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// Time left on `token` (zero once expired).
fn remaining(token: &VerifiedToken) -> Duration {
    Duration::try_from(token.expires_at - time::OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
}

fn expiry_time(token: &VerifiedToken) -> Instant {
    Instant::now() + remaining(token)
}

/// When to send `client_update`: [`WARNING_LEAD`] before expiry, or halfway for a token with less than twice
/// that left (a token with seconds left is still warned before it expires).
fn warning_time(token: &VerifiedToken) -> Instant {
    let left = remaining(token);
    Instant::now() + (left - WARNING_LEAD.min(left / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(http_request: Value, payload: &[u8]) -> Frame {
        let header = Header::new(method::MESSAGE)
            .with_id("TM1")
            .with_payload_type("application/json; charset=utf-8")
            .with_field("http_request", http_request);
        twilsock::decode(&twilsock::encode(&header, payload)).unwrap()
    }

    /// A frame from literal header text, so that its maps keep the order written here.
    fn raw_frame(header: &str, payload: &[u8]) -> Frame {
        let mut bytes = format!("TWILSOCK V3.0 {}\r\n{header}\r\n", header.len()).into_bytes();
        bytes.extend_from_slice(payload);
        twilsock::decode(&bytes).unwrap()
    }

    #[test]
    fn tunnel_requests_decode_their_parameters() {
        let frame = raw_frame(
            r#"{"id":"TM1","method":"message","payload_type":"application/json; charset=utf-8",
                "http_request":{"host":"127.0.0.1:9956","path":"/v3/Maps/CH1%2Eroster/Items","method":"get",
                "params":{"PageSize":50,"Key":["a%20b","c+d","e%2Bf"],"From%5B0%5D":"%E2%9C%93","Flag":true,
                          "Empty":null,"Order":"asc"},
                "headers":{"Content-Type":"application/json","X-Twilio-Mutation-Id":"m1","Skip":null}},
                "payload_size":7}"#,
            b"{\"a\":1}",
        );
        let request = tunnel_request(frame).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.host, "127.0.0.1:9956");
        assert_eq!(request.path, "/v3/Maps/CH1%2Eroster/Items", "the path stays encoded");
        let params: Vec<(&str, &str)> = request.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            params,
            [
                ("PageSize", "50"),
                ("Key", "a b"),
                ("Key", "c d"),
                ("Key", "e+f"),
                ("From[0]", "\u{2713}"),
                ("Flag", "true"),
                ("Empty", ""),
                ("Order", "asc"),
            ]
        );
        assert_eq!(request.param("Key"), Some("e+f"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("X-Twilio-Mutation-Id"), Some("m1"));
        assert_eq!(request.header("Skip"), None);
        assert_eq!(&request.body[..], b"{\"a\":1}");
        assert_eq!(request.content_type.as_deref(), Some("application/json; charset=utf-8"));
    }

    #[test]
    fn a_query_string_in_the_path_is_read_as_parameters() {
        let frame = message(json!({"path": "/a/b?X=1%202&Y", "method": "GET", "params": {"Z": "3"}}), b"");
        let request = tunnel_request(frame).unwrap();
        assert_eq!(request.path, "/a/b");
        assert_eq!(request.params, [("X".into(), "1 2".into()), ("Y".into(), String::new()), ("Z".into(), "3".into())]);
        assert!(request.body.is_empty());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let frame = message(json!({"method": "GET"}), b"");
        assert!(tunnel_request(frame).unwrap_err().contains("path"));
        let no_request = twilsock::decode(&twilsock::encode(&Header::new(method::MESSAGE), b"")).unwrap();
        assert!(tunnel_request(no_request).is_err());
    }

    #[test]
    fn tunnel_replies_carry_http_in_http_status() {
        let mut response = TunnelResponse::json(409, json!({"status": 409, "code": 50433}));
        response.headers.push(("Retry-After".into(), "3".into()));
        let (header, payload) = tunnel_reply("TM7", &response);
        let frame = twilsock::decode(&twilsock::encode(&header, &payload)).unwrap();
        assert_eq!(frame.header.method, "reply");
        assert_eq!(frame.header.id.as_deref(), Some("TM7"));
        assert_eq!(frame.header.payload_type.as_deref(), Some("application/json"));
        assert_eq!(frame.header.field("status"), Some(&json!({"code": 200, "status": "OK"})));
        assert_eq!(frame.header.field("http_status"), Some(&json!({"code": 409, "status": "Conflict"})));
        assert_eq!(
            frame.header.field("http_headers"),
            Some(&json!({"Content-Type": "application/json", "Retry-After": "3"}))
        );
        assert_eq!(frame.json_payload().unwrap(), json!({"status": 409, "code": 50433}));

        let (header, payload) = tunnel_reply("TM8", &TunnelResponse::json(204, Value::Null));
        assert!(payload.is_empty());
        assert_eq!(header.field("http_status"), Some(&json!({"code": 204, "status": "No Content"})));
        assert_eq!(header.field("http_headers"), Some(&json!({})));
        assert_eq!(reason_phrase(799), "Unknown");
    }

    #[test]
    fn notifications_have_the_sdk_shape() {
        let notification = Notification {
            message_type: "twilio.sync.event",
            payload: json!({"event_type": "map_item_added", "event": {"id": 1}}),
        };
        let (header, payload) = notification_frame(&notification);
        let frame = twilsock::decode(&twilsock::encode(&header, &payload)).unwrap();
        assert_eq!(frame.header.method, "notification");
        let id = frame.header.id.as_deref().unwrap();
        assert!(id.starts_with("TM") && id.len() == 34);
        assert_eq!(frame.header.payload_type.as_deref(), Some("application/json"));
        assert_eq!(frame.header.field("message_type"), Some(&json!("twilio.sync.event")));
        assert_eq!(frame.json_payload().unwrap(), notification.payload);
    }

    fn token_expiring_in(secs: i64, identity: &str) -> VerifiedToken {
        VerifiedToken {
            identity: identity.into(),
            service_sid: None,
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::seconds(secs),
            observer: false,
            push_credential_sid: None,
        }
    }

    #[test]
    fn tokens_are_warned_before_they_expire() {
        let now = Instant::now();
        let long = token_expiring_in(3600, "alice");
        let lead = expiry_time(&long) - warning_time(&long);
        assert!(lead.abs_diff(WARNING_LEAD) < Duration::from_millis(100), "{lead:?}");
        let short = token_expiring_in(4, "alice");
        let warn = warning_time(&short) - now;
        let expire = expiry_time(&short) - now;
        assert!(warn > Duration::from_millis(1800) && warn < Duration::from_millis(2200), "{warn:?}");
        assert!(expire > Duration::from_millis(3800) && expire < Duration::from_millis(4200), "{expire:?}");
        let expired = token_expiring_in(-3, "alice");
        assert!(warning_time(&expired) - now < Duration::from_millis(100));
        assert!(expiry_time(&expired) - now < Duration::from_millis(100));
    }

    #[test]
    fn storage_ids_are_stable_per_user() {
        let alice = storage_id(&token_expiring_in(10, "alice"));
        assert_eq!(alice, storage_id(&token_expiring_in(99, "alice")));
        assert_ne!(alice, storage_id(&token_expiring_in(10, "bob")));
        assert!(palaver_api::sid::has_sid_shape(&alice, "ST"), "{alice}");
    }

    #[test]
    fn continuation_tokens_are_kept_when_well_formed() {
        let (fresh, reissued) = continuation_token(None);
        assert!(palaver_api::sid::has_sid_shape(&fresh, "CT") && !reissued);
        assert_eq!(continuation_token(Some(&fresh)), (fresh.clone(), false));
        let (replaced, reissued) = continuation_token(Some("garbage"));
        assert!(palaver_api::sid::has_sid_shape(&replaced, "CT") && reissued);
    }

    #[test]
    fn refused_tokens_have_the_sdk_codes() {
        let expired = token_status(&TokenError::Expired);
        assert_eq!((expired.code, expired.status.as_str(), expired.error_code), (401, "Unauthorized", Some(20104)));
        for err in [TokenError::Invalid, TokenError::NotYetValid, TokenError::Malformed("x".into())] {
            assert_eq!(token_status(&err).error_code, Some(20101));
        }
        let storage = token_status(&TokenError::Storage(palaver_core::Error::Storage("disk".into())));
        assert_eq!(storage.code, 500);
    }
}
