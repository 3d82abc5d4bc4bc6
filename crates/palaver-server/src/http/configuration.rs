//! `/v1/Configuration`: account-wide settings.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use palaver_api::sid::{MessagingServiceSid, ServiceSid};
use palaver_core::service::TimerKind;
use palaver_core::store::AccountConfigPatch;

use super::json;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::resources;
use crate::scope::origin_of;

/// The origin of the request, for absolute URLs of account-level resources.
pub(crate) struct Origin(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(origin_of(parts)))
    }
}

/// GET /v1/Configuration
pub(crate) async fn fetch(State(state): State<AppState>, Origin(origin): Origin) -> ApiResult<Response> {
    let config = state.palaver.account_config().await?;
    Ok(json(StatusCode::OK, resources::configuration(&origin, state.credentials.account_sid.as_str(), config)))
}

/// POST /v1/Configuration
pub(crate) async fn update(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: FormFields,
) -> ApiResult<Response> {
    let mut patch = AccountConfigPatch::default();
    if let Some(raw) = form.get("DefaultChatServiceSid") {
        patch.default_service_sid =
            Some(ServiceSid::parse(raw).map_err(|e| ApiError::invalid("DefaultChatServiceSid", e))?);
    }
    if let Some(raw) = form.get("DefaultMessagingServiceSid") {
        patch.default_messaging_service_sid = Some(if raw.is_empty() {
            None
        } else {
            Some(MessagingServiceSid::parse(raw).map_err(|e| ApiError::invalid("DefaultMessagingServiceSid", e))?)
        });
    }
    for (field, kind) in [("DefaultInactiveTimer", TimerKind::Inactive), ("DefaultClosedTimer", TimerKind::Closed)] {
        if let Some(raw) = form.get(field) {
            let value = if raw.is_empty() { None } else { Some(state.palaver.parse_timer(field, raw, kind)?) };
            match kind {
                TimerKind::Inactive => patch.default_inactive_timer = Some(value),
                TimerKind::Closed => patch.default_closed_timer = Some(value),
            }
        }
    }
    let config = state.palaver.update_account_config(patch).await?;
    Ok(json(StatusCode::OK, resources::configuration(&origin, state.credentials.account_sid.as_str(), config)))
}
