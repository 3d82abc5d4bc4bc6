//! Limits that keep one client from taking the server from the others: action and request rates, caps on
//! sizes and connections, and timeouts for slow clients. Every one is a setting of `palaver serve` (README,
//! "Limits"); [`ServerLimits::default`] holds the defaults.
//!
//! | Limit | Defends against |
//! |---|---|
//! | actions per conversation / service | one conversation or service flooded with changes (Twilio's 30/s, answered 429 / 20429 with `Retry-After`) |
//! | requests per connection | one HTTP connection or realtime socket flooding the server |
//! | connections per IP, sessions per identity | one host or one user holding every socket and its memory |
//! | body, form fields, header bytes, frame bytes | memory held (and parsing time) per request |
//! | header read timeout | connections opened and never used, or headers sent a byte at a time (also closes idle keep-alive connections) |
//! | request timeout | bodies sent a byte at a time, requests that never finish |
//!
//! Attribute JSON is also bounded in nesting depth (`palaver_core::input`), a fixed rule of the domain.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palaver_api::ErrorCode;
use palaver_core::limits::{RateLimit, TokenBucket};

use crate::error::ApiError;

/// The server's limits. `None` turns a rate or cap off.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Changes per second to one conversation (conversation update, participant and message changes).
    pub conversation_rate: Option<RateLimit>,
    /// Creations and deletions per second in one service (conversations, users, roles).
    pub service_rate: Option<RateLimit>,
    /// Requests per second on one HTTP connection or realtime socket.
    pub connection_rate: Option<RateLimit>,
    /// Open connections from one IP address (HTTP and WebSocket alike).
    pub max_connections_per_ip: Option<usize>,
    /// Realtime sessions (both WebSocket APIs) of one identity in one service.
    pub max_sessions_per_identity: Option<usize>,
    /// Request body bytes, except media uploads (bounded by the media limits).
    pub max_body_bytes: usize,
    /// Fields in one form body or query string.
    pub max_form_fields: usize,
    /// Bytes of a request's head (request line and headers).
    pub max_header_bytes: usize,
    /// Bytes of one WebSocket message from a client.
    pub max_frame_bytes: usize,
    /// How long a client has to send a request's head; also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// How long a request (its body included) may take before it is answered 408.
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            conversation_rate: Some(RateLimit::per_second(30.0)),
            service_rate: Some(RateLimit::per_second(30.0)),
            connection_rate: Some(connection_rate(200.0)),
            max_connections_per_ip: Some(1000),
            max_sessions_per_identity: Some(64),
            max_body_bytes: 1 << 20,
            max_form_fields: 256,
            max_header_bytes: 16 << 10,
            max_frame_bytes: 1 << 20,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerLimits {
    /// The defaults without any rate: for tests and benchmarks that send faster than any client should.
    pub fn without_rates() -> Self {
        Self { conversation_rate: None, service_rate: None, connection_rate: None, ..Self::default() }
    }

    /// The action rates the domain enforces.
    pub fn action_rates(&self) -> palaver_core::limits::ActionRates {
        palaver_core::limits::ActionRates::new(self.conversation_rate, self.service_rate)
    }
}

/// A per-connection request rate of `per_second`, with room for a burst of five seconds' worth (an SDK opening
/// many conversations at start-up sends that many requests at once, then few).
pub fn connection_rate(per_second: f64) -> RateLimit {
    let limit = RateLimit::per_second(per_second);
    RateLimit { burst: limit.burst * 5.0, ..limit }
}

/// One connection's request budget.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionBudget {
    limit: Option<RateLimit>,
    bucket: Arc<Mutex<Option<TokenBucket>>>,
    /// Counts this budget's refusals (`palaver_rate_limited_total{limit="connection_rate"}`).
    metrics: Arc<crate::metrics::Metrics>,
}

impl ConnectionBudget {
    /// A full budget for a new connection.
    pub(crate) fn new(limit: Option<RateLimit>, metrics: &Arc<crate::metrics::Metrics>) -> Self {
        Self {
            limit,
            bucket: Arc::new(Mutex::new(limit.as_ref().map(TokenBucket::full))),
            metrics: Arc::clone(metrics),
        }
    }

    /// Takes one request from the budget; when it is spent, the refusal to send.
    pub(crate) fn take(&self) -> Result<(), ApiError> {
        let Some(limit) = &self.limit else { return Ok(()) };
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = bucket.get_or_insert_with(|| TokenBucket::full(limit));
        bucket.take(limit).map_err(|retry_after| {
            self.metrics.refused(crate::metrics::Refusal::ConnectionRate);
            ApiError::rate_limited("Too many requests on this connection; slow down and retry", retry_after)
        })
    }
}

/// Middleware: spends one request of the connection's budget, or answers 429.
pub(crate) async fn limit_connection_rate(request: Request, next: Next) -> Response {
    if let Some(budget) = request.extensions().get::<ConnectionBudget>()
        && let Err(refused) = budget.take()
    {
        return refused.into_response();
    }
    next.run(request).await
}

/// Middleware: answers 408 when a request (reading its body included) takes longer than its limit. WebSocket
/// upgrades answer at once, so this bounds only their handshake.
pub(crate) async fn limit_request_time(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(ErrorCode::RequestTimeout, "The request took too long to arrive or to answer").into_response()
        }
    }
}

/// Counts open connections per IP address; a [`Slot`] holds one until dropped.
#[derive(Debug, Default)]
pub(crate) struct ConnectionsPerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Slot {
    counter: Arc<ConnectionsPerIp>,
    ip: IpAddr,
}

impl ConnectionsPerIp {
    /// A place for one more connection from `ip`, unless `max` are open.
    pub(crate) fn claim(self: &Arc<Self>, ip: IpAddr, max: Option<usize>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(Slot { counter: Arc::clone(self), ip })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().map(|open| open.get(&ip).copied().unwrap_or(0)).unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Counts open realtime sessions per user (service and identity); a [`SessionSlot`] holds one until dropped.
#[derive(Debug, Default)]
pub struct SessionsPerIdentity {
    open: Mutex<HashMap<(String, String), usize>>,
}

/// One counted session.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    counter: Arc<SessionsPerIdentity>,
    key: (String, String),
}

impl SessionsPerIdentity {
    /// A place for one more session of `identity` in `service`, or the refusal to answer with.
    pub(crate) fn claim(
        self: &Arc<Self>,
        service: &str,
        identity: &str,
        max: Option<usize>,
    ) -> Result<SessionSlot, ApiError> {
        let key = (service.to_string(), identity.to_string());
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key.clone()).or_insert(0);
        if let Some(max) = max.filter(|max| *count >= *max) {
            return Err(ApiError::rate_limited(
                format!("Too many open connections for identity {identity} ({max}); close one and retry"),
                Duration::from_secs(5),
            ));
        }
        *count += 1;
        Ok(SessionSlot { counter: Arc::clone(self), key })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_counted_per_ip_and_freed() {
        let counter = Arc::new(ConnectionsPerIp::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = counter.claim(a, Some(2)).unwrap();
        let second = counter.claim(a, Some(2)).unwrap();
        assert!(counter.claim(a, Some(2)).is_none(), "a third from one address is refused");
        assert!(counter.claim(b, Some(2)).is_some(), "another address is not");
        drop(first);
        assert_eq!(counter.open(a), 1);
        let _third = counter.claim(a, Some(2)).expect("a place was freed");
        drop(second);
        assert!(counter.claim(a, None).is_some(), "no cap, no refusal");
    }

    #[test]
    fn sessions_are_counted_per_service_and_identity() {
        let counter = Arc::new(SessionsPerIdentity::default());
        let one = counter.claim("IS1", "alice", Some(1)).unwrap();
        let refused = counter.claim("IS1", "alice", Some(1)).unwrap_err();
        assert_eq!(refused.realtime().code, 20429);
        assert!(refused.retry_after().is_some());
        assert!(counter.claim("IS2", "alice", Some(1)).is_ok(), "another service");
        assert!(counter.claim("IS1", "bob", Some(1)).is_ok(), "another identity");
        drop(one);
        assert!(counter.claim("IS1", "alice", Some(1)).is_ok());
    }
}
