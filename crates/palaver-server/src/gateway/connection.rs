//! One realtime connection, from `connect` to close.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use palaver_api::realtime::{
    self, Call, ConnectParams, Connected, Reply, Request, ServerFrame, TypingFrame, UnreadFrame, UserConversationChange,
};
use palaver_api::sid::ServiceSid;
use palaver_core::event::EventKind;
use palaver_core::feed::{FeedItem, event_frame};
use palaver_core::input::Identity;
use palaver_core::service::TypingNotice;
use palaver_core::session::UserSession;
use palaver_core::store::ConversationRef;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::calls;
use crate::AppState;
use crate::error::ApiError;
use crate::limits::{ConnectionBudget, SessionSlot};
use crate::token::{self, TokenError, VerifiedToken};

/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Silence after which the client is considered gone.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// How long a client has to send `connect`.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Events read from the store per batch when replaying.
const REPLAY_BATCH: u32 = 500;

enum Outgoing {
    Text(Utf8Bytes),
    Close(u16, &'static str),
}

/// Why the connection ends.
enum Ending {
    ClientLeft,
    Close(u16, &'static str),
}

pub(super) async fn run(socket: WebSocket, state: AppState, budget: ConnectionBudget) {
    let (mut sink, mut stream) = socket.split();
    // Frames are shared bytes, so a full queue costs little beyond the handles (see `RealtimeLimits`).
    let (queue, mut queued) = mpsc::channel::<Outgoing>(state.realtime.send_queue.max(1));
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                next = queued.recv() => {
                    // Write everything already queued, then flush once: one syscall for a burst of frames.
                    let mut next = next;
                    loop {
                        match next {
                            Some(Outgoing::Text(text)) => {
                                if sink.feed(Message::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                            Some(Outgoing::Close(code, reason)) => {
                                let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                                return;
                            }
                            None => {
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
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let out = Out { queue, grace: state.realtime.slow_consumer_grace };
    let ending = match handshake(&state, &mut stream, &out, budget).await {
        Some(mut connection) => connection.serve(&mut stream).await,
        None => Ending::Close(realtime::CLOSE_DENIED, "denied"),
    };
    if let Ending::Close(code, reason) = ending {
        let _ = out.queue.send(Outgoing::Close(code, reason)).await;
    }
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// The sending half, with the slow-consumer rule.
struct Out {
    queue: mpsc::Sender<Outgoing>,
    grace: Duration,
}

impl Out {
    /// Queues a frame, waiting while the queue is full; false when the client has not made room within
    /// the configured grace period (it is too slow) or is gone.
    async fn send(&self, text: Utf8Bytes) -> bool {
        match self.queue.try_send(Outgoing::Text(text)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) => self.queue.send_timeout(frame, self.grace).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    async fn frame(&self, frame: &ServerFrame) -> bool {
        match serde_json::to_string(frame) {
            Ok(text) => self.send(text.into()).await,
            Err(_) => true,
        }
    }

    async fn reply(&self, reply_to: u64, result: calls::CallResult) -> bool {
        /// `ServerFrame::Reply` with the result already serialised.
        #[derive(serde::Serialize)]
        struct RawReply<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            reply_to: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            result: Option<&'a serde_json::value::RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<palaver_api::realtime::RealtimeError>,
        }
        let frame = match &result {
            Ok(value) => RawReply { kind: "reply", reply_to, result: Some(value), error: None },
            Err(err) => RawReply { kind: "reply", reply_to, result: None, error: Some(err.realtime()) },
        };
        match serde_json::to_string(&frame) {
            Ok(text) => self.send(text.into()).await,
            Err(_) => true,
        }
    }
}

fn parse_request(message: &Message) -> Option<Result<Request, String>> {
    match message {
        Message::Text(text) => Some(serde_json::from_str::<Request>(text).map_err(|e| e.to_string())),
        Message::Binary(bytes) => Some(serde_json::from_slice::<Request>(bytes).map_err(|e| e.to_string())),
        _ => None,
    }
}

/// A refused token, as both WebSocket APIs answer it: 20104 when it expired, 20101 for every other reason (the
/// access-token codes of Twilio's SDKs), with status 401.
pub(crate) fn token_error(err: &TokenError) -> ApiError {
    match err {
        TokenError::Expired => ApiError::new(palaver_api::ErrorCode::AccessTokenExpired, "Access token expired"),
        TokenError::Storage(e) => ApiError::new(palaver_api::ErrorCode::InternalError, e.to_string()),
        other => ApiError::new(palaver_api::ErrorCode::AccessTokenInvalid, format!("Invalid access token: {other}")),
    }
}

async fn handshake(
    state: &AppState,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    out: &Out,
    budget: ConnectionBudget,
) -> Option<Connection> {
    let deadline = tokio::time::sleep(CONNECT_DEADLINE);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            () = &mut deadline => return None,
            message = stream.next() => message?.ok()?,
        };
        let request = match parse_request(&message)? {
            Ok(request) => request,
            Err(err) => {
                out.frame(&ServerFrame::Reply(Reply {
                    reply_to: 0,
                    result: None,
                    error: Some(ApiError::invalid("frame", err).realtime()),
                }))
                .await;
                continue;
            }
        };
        let Call::Connect(params) = request.call else {
            out.reply(
                request.id,
                Err(ApiError::new(palaver_api::ErrorCode::AuthenticationFailed, "the first request must be connect")),
            )
            .await;
            return None;
        };
        if let Err(refused) = budget.take() {
            out.reply(request.id, Err(refused)).await;
            return None;
        }
        return match Box::pin(Connection::open(state.clone(), params.clone(), out.queue.clone(), budget)).await {
            Ok((mut connection, connected)) => {
                let value = serde_json::value::to_raw_value(&connected)
                    .map_err(|e| ApiError::new(palaver_api::ErrorCode::InternalError, e.to_string()));
                if !out.reply(request.id, value).await {
                    return None;
                }
                connection.replay_resume(&params).await;
                Some(connection)
            }
            Err(err) => {
                out.reply(request.id, Err(err)).await;
                None
            }
        };
    }
}

/// A connected, authenticated session.
pub(super) struct Connection {
    state: AppState,
    pub(super) session: UserSession,
    /// The user's own stream; `None` for an observer, who is no user.
    user_stream: Option<String>,
    out: Out,
    feed: broadcast::Receiver<Arc<FeedItem>>,
    typing: broadcast::Receiver<Arc<TypingNotice>>,
    /// Streams whose events this session receives.
    pub(super) subscribed: HashSet<String>,
    /// Conversations the user participates in (typing and unread counts are sent for these; an observer has
    /// none, and gets typing for the conversations it subscribed to).
    pub(super) joined: HashSet<String>,
    /// Last sequence number sent per stream.
    pub(super) delivered: HashMap<String, i64>,
    pub(super) token: VerifiedToken,
    token_warned: bool,
    /// The socket's request budget (the connection rate).
    budget: ConnectionBudget,
    /// This session's place in the per-identity count, freed when it ends.
    _session_slot: SessionSlot,
    /// Its place in `palaver_realtime_sessions`.
    _open: crate::metrics::Open,
    shutdown: tokio::sync::watch::Receiver<bool>,
    too_slow: bool,
    /// Conversations whose unread count may have changed since it was last pushed.
    unread_dirty: HashSet<String>,
    /// The unread count last pushed per conversation, to push only changes.
    unread_sent: HashMap<String, Option<i64>>,
    /// The caller's unread count per conversation, kept current from the events this session forwards, so a
    /// push reads the database only the first time and after a removal or a horizon change.
    unread_tally: HashMap<String, UnreadTally>,
}

/// What a session knows of its unread count in one conversation.
#[derive(Debug, Clone, Copy)]
struct UnreadTally {
    /// The caller's read horizon.
    horizon: Option<i64>,
    /// The unread count (none while the caller has no read horizon).
    count: Option<i64>,
    /// Every message with a lower index is in `count` (indices are never reused, so a message added event at
    /// or above it is a message not counted yet, whenever the feed delivers it).
    counted_below: i64,
}

impl UnreadTally {
    /// Counts a newly delivered message, unless the count already includes it.
    fn count_message(&mut self, index: i64) {
        if index >= self.counted_below {
            self.count = self.count.map(|count| count + 1);
            self.counted_below = index + 1;
        }
    }
}

/// Requests of one session that may run at once; the socket is not read while this many are running.
const MAX_IN_FLIGHT: usize = 64;

/// A session's running requests, each a task of its own: a request holding a database connection (or a row
/// lock) must finish even while the session waits on the database for something else, or a pipelining client
/// could hold every pooled connection with requests nobody drives. Those still running when the session ends
/// are left to finish, so no write the client sent is cut off half-way.
struct InFlight {
    tasks: JoinSet<calls::CallResult>,
    request_ids: HashMap<tokio::task::Id, u64>,
}

impl InFlight {
    fn new() -> Self {
        Self { tasks: JoinSet::new(), request_ids: HashMap::new() }
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn spawn(&mut self, request_id: u64, call: impl std::future::Future<Output = calls::CallResult> + Send + 'static) {
        let task = self.tasks.spawn(call);
        self.request_ids.insert(task.id(), request_id);
    }

    /// The next finished request: its id and result (a request whose task panicked gets an internal error).
    async fn next(&mut self) -> Option<(u64, calls::CallResult)> {
        let (task, result) = match self.tasks.join_next_with_id().await? {
            Ok((task, result)) => (task, result),
            Err(err) => {
                let failure = ApiError::new(palaver_api::ErrorCode::InternalError, "the request failed");
                (err.id(), Err(failure))
            }
        };
        let request_id = self.request_ids.remove(&task).unwrap_or(0);
        Some((request_id, result))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tasks.detach_all();
    }
}

/// How often changed unread counts are pushed: counts are exact when sent, and a burst of messages costs one
/// count per interval instead of one per message.
const UNREAD_INTERVAL: Duration = Duration::from_millis(100);

impl Connection {
    async fn open(
        state: AppState,
        params: ConnectParams,
        queue: mpsc::Sender<Outgoing>,
        budget: ConnectionBudget,
    ) -> Result<(Self, Connected), ApiError> {
        let token = token::verify_allowing_observers(&state, &params.token).await.map_err(|e| token_error(&e))?;
        // Subscribe before reading anything, so nothing committed from now on can be missed.
        let feed = state.palaver.feed().subscribe();
        let typing = state.palaver.typing_notices();
        let service: ServiceSid = match &token.service_sid {
            Some(sid) => sid.clone(),
            None => state.palaver.default_service().await?,
        };
        let identity = Identity::parse("identity", &token.identity)?;
        let session_slot = state
            .sessions
            .claim(service.as_str(), identity.as_str(), state.limits.max_sessions_per_identity)
            .inspect_err(|_| state.metrics.refused(crate::metrics::Refusal::SessionsPerIdentity))?;
        let (session, user) = if token.observer {
            (UserSession::observe(state.palaver.clone(), service.clone(), identity).await?, None)
        } else {
            let (session, user) = UserSession::open(state.palaver.clone(), service.clone(), identity).await?;
            (session, Some(user))
        };
        let user_stream = user.as_ref().map(|user| user.sid.to_string());
        let grace = state.realtime.slow_consumer_grace;
        let open = state.metrics.session_opened(crate::metrics::Api::Realtime);
        let mut connection = Self {
            shutdown: state.shutdown.subscribe(),
            state,
            session,
            user_stream: user_stream.clone(),
            out: Out { queue, grace },
            feed,
            typing,
            subscribed: user_stream.iter().cloned().collect(),
            joined: HashSet::new(),
            delivered: HashMap::new(),
            token,
            token_warned: false,
            budget,
            _session_slot: session_slot,
            _open: open,
            too_slow: false,
            unread_dirty: HashSet::new(),
            unread_sent: HashMap::new(),
            unread_tally: HashMap::new(),
        };
        // Positions first, then the membership list: events committed in between are replayed or come live.
        if let Some(user_stream) = user_stream {
            let position = connection.position(&user_stream).await;
            connection.delivered.insert(user_stream, position);
        }
        if connection.session.is_observer() {
            connection.observe_resumed(&params).await;
        }
        for conv in calls::all_my_conversations(&connection.session).await? {
            let sid = conv.conversation.sid.to_string();
            let position = connection.position(&sid).await;
            connection.delivered.insert(sid.clone(), position);
            connection.subscribed.insert(sid.clone());
            connection.joined.insert(sid);
        }
        let session_id = palaver_api::sid::random_secret()[..16].to_string();
        tracing::Span::current().record("session_id", session_id.as_str());
        let connected = Connected {
            identity: connection.session.identity().as_str().to_string(),
            service_sid: service.to_string(),
            user: user.as_ref().map(palaver_core::event::user_info),
            observer: connection.session.is_observer(),
            token_expires_at: palaver_core::event::rfc3339(connection.token.expires_at),
            typing_timeout_ms: connection.state.palaver.typing_timeout().as_millis() as u64,
            limits: calls::limits(),
            session_id,
        };
        Ok((connection, connected))
    }

    pub(super) async fn position(&self, stream: &str) -> i64 {
        self.state.palaver.store().stream_position(stream).await.unwrap_or(0)
    }

    /// An observer follows again the conversations it followed before reconnecting (the conversation streams
    /// of its `resume` map), so that the replay below covers them: it has no membership that would.
    async fn observe_resumed(&mut self, params: &ConnectParams) {
        for stream in params.resume.keys() {
            let Ok(sid) = palaver_api::sid::ConversationSid::parse(stream) else { continue };
            if self.session.conversation(&ConversationRef::Sid(sid)).await.is_ok() {
                let position = self.position(stream).await;
                self.subscribed.insert(stream.clone());
                self.delivered.insert(stream.clone(), position);
            }
        }
    }

    /// Replays what the client missed, per the `resume` map of `connect`.
    async fn replay_resume(&mut self, params: &ConnectParams) {
        for (stream, after) in &params.resume {
            if self.subscribed.contains(stream) {
                self.replay(stream, *after).await;
            }
        }
    }

    /// Sends stored events of `stream` after `after` (up to what was already sent live), and records them.
    pub(super) async fn replay(&mut self, stream: &str, after: i64) {
        let mut cursor = after;
        loop {
            let events = match self.state.palaver.store().read_events(stream, cursor, REPLAY_BATCH).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(%err, stream, "replay failed");
                    return;
                }
            };
            let count = events.len();
            for event in events {
                cursor = event.seq;
                if !self.out.send(event_frame(&event).into()).await {
                    self.too_slow = true;
                    return;
                }
                self.state.metrics.event_delivered(crate::metrics::Api::Realtime, None);
            }
            if count < REPLAY_BATCH as usize {
                break;
            }
        }
        let delivered = self.delivered.entry(stream.to_string()).or_insert(0);
        *delivered = (*delivered).max(cursor);
    }

    async fn serve(&mut self, stream: &mut futures_util::stream::SplitStream<WebSocket>) -> Ending {
        let mut last_heard = Instant::now();
        let mut idle_check = tokio::time::interval(Duration::from_secs(5));
        let mut unread_tick = tokio::time::interval(UNREAD_INTERVAL);
        let mut in_flight = InFlight::new();
        let mut armed_for = self.token.expires_at;
        // Armed once and reset only when the token changes: a timer made per loop turn (per event) costs a
        // timer-wheel insertion and removal every time.
        let warn = tokio::time::sleep_until(self.token_warning_time());
        let expire = tokio::time::sleep_until(self.token_expiry_time());
        tokio::pin!(warn, expire);
        unread_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.too_slow {
                self.out.frame(&ServerFrame::Closing { reason: "too_slow".into() }).await;
                return Ending::Close(realtime::CLOSE_TOO_SLOW, "too slow");
            }
            if armed_for != self.token.expires_at {
                armed_for = self.token.expires_at;
                warn.as_mut().reset(self.token_warning_time());
                expire.as_mut().reset(self.token_expiry_time());
            }
            tokio::select! {
                Some((id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    if !self.out.reply(id, result).await {
                        self.too_slow = true;
                    }
                }
                message = stream.next(), if in_flight.len() < MAX_IN_FLIGHT => {
                    let Some(Ok(message)) = message else { return Ending::ClientLeft };
                    last_heard = Instant::now();
                    if let Message::Close(_) = message {
                        return Ending::ClientLeft;
                    }
                    let Some(parsed) = parse_request(&message) else { continue };
                    if let (Ok(request), Err(refused)) = (&parsed, self.budget.take()) {
                        if !self.out.reply(request.id, Err(refused)).await {
                            self.too_slow = true;
                        }
                        continue;
                    }
                    match parsed {
                        Ok(request) if calls::is_session_call(&request.call) => {
                            // Runs beside the session's other requests: a client that pipelines gets its
                            // answers as they complete (each carries its request id).
                            let session = self.session.clone();
                            in_flight.spawn(request.id, calls::handle_session_call(session, request.call));
                        }
                        Ok(request) => {
                            // Calls that change the connection's own state run after everything before them.
                            while let Some((id, result)) = in_flight.next().await {
                                if !self.out.reply(id, result).await {
                                    self.too_slow = true;
                                }
                            }
                            let result = Box::pin(calls::handle(self, request.call)).await;
                            if !self.out.reply(request.id, result).await {
                                self.too_slow = true;
                            }
                        }
                        Err(err) => {
                            self.out.frame(&ServerFrame::Reply(Reply { reply_to: 0, result: None, error: Some(ApiError::invalid("frame", err).realtime()) })).await;
                        }
                    }
                }
                item = self.feed.recv() => match item {
                    Ok(item) => self.forward(&item).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => return Ending::Close(realtime::CLOSE_GOING_AWAY, "shutdown"),
                },
                notice = self.typing.recv() => {
                    if let Ok(notice) = notice {
                        self.forward_typing(&notice).await;
                    }
                }
                () = &mut warn, if !self.token_warned => {
                    self.token_warned = true;
                    self.out.frame(&ServerFrame::TokenAboutToExpire { expires_at: palaver_core::event::rfc3339(self.token.expires_at) }).await;
                }
                () = &mut expire => {
                    self.out.frame(&ServerFrame::Closing { reason: "token_expired".into() }).await;
                    return Ending::Close(realtime::CLOSE_TOKEN_EXPIRED, "token expired");
                }
                _ = unread_tick.tick(), if !self.unread_dirty.is_empty() => {
                    for conversation in std::mem::take(&mut self.unread_dirty) {
                        self.push_unread(&conversation).await;
                    }
                }
                _ = idle_check.tick() => {
                    if last_heard.elapsed() > IDLE_LIMIT {
                        return Ending::Close(realtime::CLOSE_GOING_AWAY, "idle");
                    }
                }
                _ = self.shutdown.changed() => {
                    self.out.frame(&ServerFrame::Closing { reason: "shutdown".into() }).await;
                    return Ending::Close(realtime::CLOSE_GOING_AWAY, "shutdown");
                }
            }
        }
    }

    fn remaining(&self) -> Duration {
        let left = self.token.expires_at - time::OffsetDateTime::now_utc();
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }

    fn token_expiry_time(&self) -> Instant {
        Instant::now() + self.remaining()
    }

    fn token_warning_time(&self) -> Instant {
        let left = self.remaining();
        let lead = Duration::from_secs(180).min(left / 2);
        Instant::now() + (left - lead)
    }

    /// A new token was accepted: re-arm the warning.
    pub(super) fn token_renewed(&mut self, token: VerifiedToken) {
        self.token = token;
        self.token_warned = false;
    }

    /// Forwards one live event if this session follows its stream and has not sent it yet.
    async fn forward(&mut self, item: &FeedItem) {
        let event = &item.event;
        if !self.subscribed.contains(&event.stream) {
            return;
        }
        let delivered = self.delivered.get(&event.stream).copied().unwrap_or(0);
        if event.seq <= delivered {
            return;
        }
        if event.seq > delivered + 1 && delivered > 0 {
            // A gap means the feed skipped something for us; the store has it.
            self.replay(&event.stream.clone(), delivered).await;
            return;
        }
        // The frame's bytes are shared by every session; only the UTF-8 check is repeated, not the copy.
        let Ok(text) = Utf8Bytes::try_from(item.frame.clone()) else { return };
        if !self.out.send(text).await {
            self.too_slow = true;
            return;
        }
        self.state.metrics.event_delivered(crate::metrics::Api::Realtime, Some(event.at));
        match self.delivered.get_mut(&event.stream) {
            Some(position) => *position = event.seq,
            None => {
                self.delivered.insert(event.stream.clone(), event.seq);
            }
        }
        if self.user_stream.as_ref() == Some(&event.stream) {
            self.on_user_event(event).await;
        } else if self.joined.contains(&event.stream) {
            self.on_conversation_event(event).await;
        }
    }

    async fn on_user_event(&mut self, event: &palaver_core::event::Event) {
        let Ok(change) = serde_json::from_value::<UserConversationChange>(event.data.clone()) else { return };
        let conv = change.conversation.sid;
        match event.kind {
            EventKind::UserConversationJoined => {
                self.joined.insert(conv.clone());
                if self.subscribed.insert(conv.clone()) || !self.delivered.contains_key(&conv) {
                    let from = change.joined_at_seq.map_or(0, |seq| seq - 1);
                    self.delivered.insert(conv.clone(), from);
                    self.replay(&conv, from).await;
                }
            }
            EventKind::UserConversationLeft => {
                self.unread_sent.remove(&conv);
                self.unread_dirty.remove(&conv);
                self.unread_tally.remove(&conv);
                self.joined.remove(&conv);
                self.subscribed.remove(&conv);
                self.delivered.remove(&conv);
            }
            _ => {}
        }
    }

    async fn on_conversation_event(&mut self, event: &palaver_core::event::Event) {
        let changes_unread = match event.kind {
            EventKind::MessageAdded => {
                match event.data.get("index").and_then(|v| v.as_i64()) {
                    Some(index) => {
                        if let Some(tally) = self.unread_tally.get_mut(&event.stream) {
                            tally.count_message(index);
                        }
                    }
                    None => {
                        self.unread_tally.remove(&event.stream);
                    }
                }
                true
            }
            // Whether a removed message was counted depends on when the count was read: read it again.
            EventKind::MessageRemoved => {
                self.unread_tally.remove(&event.stream);
                true
            }
            EventKind::ParticipantUpdated => {
                let mine =
                    event.data.get("identity").and_then(|v| v.as_str()) == Some(self.session.identity().as_str());
                if mine {
                    self.unread_tally.remove(&event.stream);
                }
                mine
            }
            _ => false,
        };
        if changes_unread && !self.unread_dirty.contains(&event.stream) {
            self.unread_dirty.insert(event.stream.clone());
        }
    }

    /// Sends the caller's current unread count in a conversation, if it changed since the last one sent.
    pub(super) async fn push_unread(&mut self, conversation: &str) {
        let tally = match self.unread_tally.get(conversation) {
            Some(tally) => *tally,
            None => {
                let Ok(uc) = self.session.user_conversation(&ConversationRef::parse(conversation)).await else {
                    return;
                };
                let tally = UnreadTally {
                    horizon: uc.participant.last_read_message_index,
                    count: uc.unread_messages_count,
                    counted_below: uc.conversation.next_message_index,
                };
                self.unread_tally.insert(conversation.to_string(), tally);
                tally
            }
        };
        if self.unread_sent.get(conversation) == Some(&tally.count) {
            return;
        }
        self.unread_sent.insert(conversation.to_string(), tally.count);
        let frame = ServerFrame::Unread(UnreadFrame {
            conversation_sid: conversation.to_string(),
            unread_messages_count: tally.count,
            last_read_message_index: tally.horizon,
        });
        if !self.out.frame(&frame).await {
            self.too_slow = true;
        }
    }

    /// After the feed dropped events for this session, reads each followed stream from the store.
    async fn catch_up(&mut self) {
        let streams: Vec<(String, i64)> =
            self.subscribed.iter().map(|s| (s.clone(), self.delivered.get(s).copied().unwrap_or(0))).collect();
        for (stream, after) in streams {
            self.replay(&stream, after).await;
        }
    }

    async fn forward_typing(&mut self, notice: &TypingNotice) {
        let conversation = notice.conversation_sid.to_string();
        let follows = self.joined.contains(&conversation)
            || (self.session.is_observer() && self.subscribed.contains(&conversation));
        // An observer is no participant: its identity may be anyone's, whose typing it still wants to see.
        let own = !self.session.is_observer() && notice.identity == self.session.identity().as_str();
        if !follows || own {
            return;
        }
        let frame = ServerFrame::Typing(TypingFrame {
            conversation_sid: conversation,
            identity: notice.identity.clone(),
            participant_sid: Some(notice.participant_sid.to_string()),
            // One second more than senders wait, for network latency.
            timeout_ms: self.state.palaver.typing_timeout().as_millis() as u64 + 1000,
        });
        if !self.out.frame(&frame).await {
            self.too_slow = true;
        }
    }

    pub(super) fn state(&self) -> &AppState {
        &self.state
    }
}
