//! Mapping of every failure to an HTTP status and a Twilio-format body, in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_api::{ErrorBody, ErrorCode};
use palaver_core::error::{Conflict, Error, InvalidInput, InvalidKind, Limit};

/// A failed request: the code and the sentence sent back.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// A looked-up resource does not exist: the REST layer names the requested path in the message, as
    /// Twilio does (see [`name_missing_resource`]).
    missing_resource: bool,
    /// For a rate refusal: when to try again (`Retry-After`).
    retry_after: Option<std::time::Duration>,
}

/// Marks a response that reports a missing resource, for [`name_missing_resource`].
#[derive(Clone, Copy)]
struct MissingResource;

impl ApiError {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), missing_resource: false, retry_after: None }
    }

    /// Too many requests: 429 / 20429, to be retried after `retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(ErrorCode::TooManyRequests, message) }
    }

    /// When the caller may try again, for a rate refusal.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// A malformed parameter.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidParameter, format!("Invalid {field}: {reason}"))
    }

    /// A resource that does not exist; `path` is how it was asked for (`/Conversations/CH…`).
    pub fn not_found(path: impl std::fmt::Display) -> Self {
        Self {
            missing_resource: true,
            ..Self::new(ErrorCode::NotFound, format!("The requested resource {path} was not found"))
        }
    }
}

impl ApiError {
    /// The error as the realtime protocol reports it.
    pub fn realtime(&self) -> palaver_api::realtime::RealtimeError {
        palaver_api::realtime::RealtimeError {
            code: self.code.number(),
            message: self.message.clone(),
            status: self.code.http_status(),
            retry_after_ms: self.retry_after.map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)),
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(err: InvalidInput) -> Self {
        let code = match err.kind {
            InvalidKind::General => ErrorCode::InvalidParameter,
            InvalidKind::UniqueNameLooksLikeSid => ErrorCode::UniqueNameLooksLikeSid,
        };
        Self::new(code, err.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        let code = match &err {
            // Twilio answers every missing resource with 20404 naming it; REST replaces this path with the
            // request's own.
            Error::NotFound { kind, id } => return Self::not_found(format_args!("/{}/{id}", kind.collection())),
            Error::Conflict(Conflict::UniqueNameTaken(_)) => ErrorCode::UniqueNameTaken,
            Error::Conflict(Conflict::ParticipantIdentityTaken(_)) => ErrorCode::ParticipantAlreadyExists,
            Error::Conflict(Conflict::ParticipantAddressTaken(_)) => ErrorCode::BindingAlreadyExists,
            Error::Conflict(Conflict::UserIdentityTaken(_)) => ErrorCode::UserAlreadyExists,
            Error::Conflict(Conflict::InUse(_) | Conflict::AddressConfigured(_)) => ErrorCode::InvalidParameter,
            Error::ConversationClosed(_) => ErrorCode::ConversationClosed,
            Error::Forbidden(_) | Error::ReadOnly => ErrorCode::Forbidden,
            Error::NotAParticipant(_) => ErrorCode::NotAParticipant,
            Error::LimitExceeded(Limit::Participants(_)) => ErrorCode::ParticipantLimitExceeded,
            Error::LimitExceeded(Limit::NonChatParticipants(_)) => ErrorCode::NonChatParticipantLimitExceeded,
            Error::LimitExceeded(Limit::ParticipantsPerRequest(_)) => ErrorCode::TooManyParticipantsInRequest,
            Error::LimitExceeded(Limit::ScopedWebhooks(_)) => ErrorCode::InvalidParameter,
            Error::RejectedByWebhook(_) => ErrorCode::Forbidden,
            Error::MediaTooLarge(_) => ErrorCode::MediaTooLarge,
            Error::Invalid(invalid) => return invalid.clone().into(),
            Error::RateLimited { retry_after, .. } => return Self::rate_limited(message, *retry_after),
            Error::Storage(detail) => {
                tracing::error!(%detail, "storage failure");
                return Self::new(ErrorCode::InternalError, "An internal error occurred; the request was not applied");
            }
        };
        Self::new(code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.code, self.message);
        let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = crate::observe::current_request_id();
        let body = WithRequestId { body, request_id: request_id.as_deref() };
        let mut response = (status, Json(body)).into_response();
        if self.missing_resource {
            response.extensions_mut().insert(MissingResource);
        }
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_seconds(wait).into());
        }
        response
    }
}

/// Twilio's error body with one field of ours, the request's id (also in the `X-Request-Id` header and the
/// logs), so that a reported error can be found in the server's logs. Clients ignore fields they do not know.
#[derive(serde::Serialize)]
struct WithRequestId<'a> {
    #[serde(flatten)]
    body: ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// Middleware: a 404 for a missing resource names the path that was requested, without the API version
/// (`The requested resource /Conversations/CH…/Participants/MB… was not found`), whichever part of it was
/// missing — Twilio's wording, which client code and logs match on.
pub(crate) async fn name_missing_resource(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    if response.extensions().get::<MissingResource>().is_none() {
        return response;
    }
    ApiError::not_found(resource_path(&path)).into_response()
}

/// Middleware: a handler that panics answers 500 with Twilio's error body (and the panic is logged), instead of
/// the connection being dropped without an answer. Nothing about the failure reaches the client.
pub(crate) async fn answer_panics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures_util::FutureExt;
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, path, panic = what, "a request handler panicked");
            ApiError::new(ErrorCode::InternalError, "An internal error occurred; the request may not have been applied")
                .into_response()
        }
    }
}

/// A request path as Twilio's messages name it: without the `/v1` version prefix.
pub(crate) fn resource_path(path: &str) -> &str {
    path.strip_prefix("/v1").filter(|rest| rest.starts_with('/')).unwrap_or(path)
}

/// `Retry-After` in whole seconds (the header has no fractions), rounded up so a client that waits that long
/// is allowed again.
pub(crate) fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower_service::Service;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_twilio_500() {
        async fn broken() -> &'static str {
            panic!("a bug")
        }
        let mut app: Router =
            Router::new().route("/broken", get(broken)).layer(axum::middleware::from_fn(answer_panics));
        let request = axum::http::Request::get("/broken").body(Body::empty()).unwrap();
        let response = app.call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!((body.code, body.status), (20500, 500));
        assert!(!body.message.contains("a bug"), "nothing of the failure reaches the client");
    }
}
