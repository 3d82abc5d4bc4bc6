//! What an operator sees of each HTTP request: a request id (the caller's `X-Request-Id` when it is a sensible
//! one, else a new `RQ…`) returned on every response and named in every error body, a tracing span carrying
//! it around everything logged while the request is handled, one log line when it is answered, and the
//! request's figures in [`Metrics`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The header a request id travels in, both ways.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request being handled, for error bodies.
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task is handling, if it is handling one.
pub(crate) fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// A span for a WebSocket session of `api` upgraded from the request being handled: the session outlives its
/// upgrade request's span, and its log lines carry that request's id in this one instead.
pub(crate) fn session_span(api: &'static str) -> tracing::Span {
    let request_id = current_request_id().unwrap_or_else(|| Arc::from(""));
    tracing::info_span!(parent: None, "session", api, request_id = %request_id, session_id = tracing::field::Empty)
}

/// The caller's id when it is 1 to 128 visible ASCII characters without quotes or backslashes (so that it is
/// safe in a header, a log line and JSON); otherwise none.
fn accepted_request_id(given: &HeaderValue) -> Option<&str> {
    let id = given.to_str().ok()?;
    let sensible = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    sensible.then_some(id)
}

/// A new id in Twilio's shape: `RQ` and 32 random hex digits (those of a freshly generated SID).
fn new_request_id() -> String {
    format!("RQ{}", &palaver_api::sid::ApiKeySid::generate().as_str()[2..])
}

/// Middleware (outermost): gives the request its id and span, answers with the id, logs the answer and
/// records it in the metrics by route template.
pub(crate) async fn observe_request(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = match request.headers().get(REQUEST_ID_HEADER).and_then(accepted_request_id) {
        Some(given) => given.into(),
        None => new_request_id().into(),
    };
    let method = request.method().clone();
    // The template (`/v1/Conversations/{conversation}`), not the path: bounded, and free of SIDs.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status();
    metrics.request_answered(method.as_str(), &route, status.as_u16(), elapsed);
    span.in_scope(|| {
        let millis = elapsed.as_micros() as f64 / 1000.0;
        // Failures are worth a line at the default level; successes only when asked for (PALAVER_LOG=debug).
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), millis, "answered");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), millis, "answered");
        } else {
            tracing::debug!(status = status.as_u16(), millis, "answered");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensible_ids_are_kept_and_others_replaced() {
        let id = |raw: &str| accepted_request_id(&HeaderValue::from_str(raw).unwrap()).map(str::to_string);
        assert_eq!(id("abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"));
        assert_eq!(id(""), None);
        assert_eq!(id("has space"), None);
        assert_eq!(id("quote\"d"), None);
        assert_eq!(id(&"x".repeat(129)), None);
        let new = new_request_id();
        assert!(new.starts_with("RQ") && new.len() == 34 && new[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new, new_request_id());
    }
}
