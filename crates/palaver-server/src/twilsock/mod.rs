//! The twilsock endpoint (`GET /v3/wsconnect`), which the official `@twilio/conversations` JS SDK connects to.
//!
//! The SDK speaks to one WebSocket only: twilsock v3 frames (`palaver_api::twilsock`) carry `init` (the access
//! token, which binds the connection to a user), `update` (a renewed token) and `message` frames, each of
//! which tunnels an HTTP request for the SDK's client API or for Sync. The server pushes `notification` frames
//! (Sync events, typing indicators) and `client_update` / `close` for the token's lifetime.
//!
//! Two halves with one seam between them:
//! - `connection` is the transport: framing, the token's lifecycle, acks, pings, concurrency, shutdown. It
//!   knows nothing of conversations.
//! - [`app`] is what the tunnel reaches: the client API (`Client/v2/…`), the Sync projection of the event
//!   log (`/v3/…`, `/v4/Subscriptions`) and typing. It knows nothing of frames.
//!
//! The transport opens an [`app::TunnelSession`] once `init` is accepted, hands it every tunnelled request,
//! and gives it a [`Notifier`] for what it pushes by itself.

pub(crate) mod app;
mod client_api;
mod connection;
mod pump;
mod sync;
mod sync_api;

pub(crate) use connection::upgrade;

/// A request tunnelled through a `message` frame.
#[derive(Debug, Clone)]
pub(crate) struct TunnelRequest {
    /// `GET`, `POST`, `DELETE`…, upper-case.
    pub(crate) method: String,
    /// The host the SDK addressed (only a routing key: nothing connects to it), e.g. `127.0.0.1:8088`.
    pub(crate) host: String,
    /// The path, without a query string, still percent-encoded as sent (`/v3/Maps/CH…%2Eroster`).
    pub(crate) path: String,
    /// Query parameters, percent-decoded, in the order sent.
    pub(crate) params: Vec<(String, String)>,
    /// Request headers as sent (`Content-Type`, `X-Twilio-Mutation-Id`, …).
    pub(crate) headers: Vec<(String, String)>,
    /// The body (JSON or form-encoded, as `content_type` says).
    pub(crate) body: bytes::Bytes,
    /// The frame's `payload_type`, i.e. the body's content type.
    pub(crate) content_type: Option<String>,
}

impl TunnelRequest {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The last query parameter named `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The answer to a tunnelled request: sent back as `http_status`, `http_headers` and a JSON payload.
#[derive(Debug, Clone)]
pub(crate) struct TunnelResponse {
    /// The HTTP status (200, 201, 202, 204, 4xx…).
    pub(crate) status: u16,
    /// Extra response headers (e.g. `Retry-After`).
    pub(crate) headers: Vec<(String, String)>,
    /// The JSON body; `Null` sends no payload.
    pub(crate) body: serde_json::Value,
}

impl TunnelResponse {
    /// A JSON answer with `status`.
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, headers: Vec::new(), body }
    }
}

/// A frame the app pushes without being asked.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    /// `twilio.sync.event` or `twilio.ipmsg.typing_indicator`.
    pub(crate) message_type: &'static str,
    /// The JSON payload.
    pub(crate) payload: serde_json::Value,
}

/// Pushes notifications to one connection's client. Cheap to clone; all clones fail once the connection ends.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    queue: tokio::sync::mpsc::Sender<Notification>,
}

impl Notifier {
    /// A notifier feeding `queue`, which the connection drains into `notification` frames.
    pub(crate) fn new(queue: tokio::sync::mpsc::Sender<Notification>) -> Self {
        Self { queue }
    }

    /// Queues a notification; false once the connection is gone (the caller should stop).
    pub(crate) async fn send(&self, notification: Notification) -> bool {
        self.queue.send(notification).await.is_ok()
    }

    /// Completes when the connection is gone.
    pub(crate) async fn closed(&self) {
        self.queue.closed().await;
    }
}
