//! Mapping of every failure to an HTTP status and a Twilio-format body, in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_api::{ErrorBody, ErrorCode};
use palaver_core::error::{Conflict, Error, InvalidInput, InvalidKind, Limit, ResourceKind};

/// A failed request: the code and the sentence sent back.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A malformed parameter.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidParameter, format!("Invalid {field}: {reason}"))
    }

    /// A resource that does not exist.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("The requested resource {what} was not found"))
    }
}

impl ApiError {
    /// The error as the realtime protocol reports it.
    pub fn realtime(&self) -> palaver_api::realtime::RealtimeError {
        palaver_api::realtime::RealtimeError {
            code: self.code.number(),
            message: self.message.clone(),
            status: self.code.http_status(),
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
            Error::NotFound { kind: ResourceKind::Conversation, .. } => ErrorCode::ConversationNotFound,
            Error::NotFound { kind: ResourceKind::Participant, .. } => ErrorCode::ParticipantNotFound,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::Conflict(Conflict::UniqueNameTaken(_)) => ErrorCode::UniqueNameTaken,
            Error::Conflict(Conflict::ParticipantIdentityTaken(_)) => ErrorCode::ParticipantAlreadyExists,
            Error::Conflict(Conflict::ParticipantAddressTaken(_)) => ErrorCode::BindingAlreadyExists,
            Error::Conflict(Conflict::UserIdentityTaken(_)) => ErrorCode::UserAlreadyExists,
            Error::Conflict(Conflict::InUse(_) | Conflict::AddressConfigured(_)) => ErrorCode::InvalidParameter,
            Error::ConversationClosed(_) => ErrorCode::ConversationClosed,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotAParticipant(_) => ErrorCode::NotAParticipant,
            Error::LimitExceeded(Limit::Participants(_)) => ErrorCode::ParticipantLimitExceeded,
            Error::LimitExceeded(Limit::NonChatParticipants(_)) => ErrorCode::NonChatParticipantLimitExceeded,
            Error::LimitExceeded(Limit::ParticipantsPerRequest(_)) => ErrorCode::TooManyParticipantsInRequest,
            Error::LimitExceeded(Limit::ScopedWebhooks(_)) => ErrorCode::InvalidParameter,
            Error::RejectedByWebhook(_) => ErrorCode::Forbidden,
            Error::MediaTooLarge(_) => ErrorCode::MediaTooLarge,
            Error::Invalid(invalid) => return invalid.clone().into(),
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
        (status, Json(body)).into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
