//! `/v1/Services`: conversation services and their configuration.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::sid::{RoleSid, ServiceSid};
use palaver_core::input::FriendlyName;
use palaver_core::store::ServiceConfigPatch;

use super::configuration::Origin;
use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

fn service_sid(raw: &str) -> ApiResult<ServiceSid> {
    ServiceSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Services/{raw}")))
}

/// GET /v1/Services
pub(crate) async fn list(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(100, false)?;
    let page = state.palaver.list_services(request.page).await?;
    let origin = query.origin().to_string();
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("services", page, |s| resources::service(&origin, &account, s))))
}

/// POST /v1/Services
pub(crate) async fn create(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: FormFields,
) -> ApiResult<Response> {
    let name = form.get("FriendlyName").ok_or_else(|| ApiError::invalid("FriendlyName", "is required"))?;
    let service = state.palaver.create_service(FriendlyName::parse("FriendlyName", name)?).await?;
    Ok(json(StatusCode::CREATED, resources::service(&origin, state.credentials.account_sid.as_str(), service)))
}

/// GET /v1/Services/{Sid}
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(sid): Path<String>,
) -> ApiResult<Response> {
    let service = state.palaver.service(&service_sid(&sid)?).await?;
    Ok(json(StatusCode::OK, resources::service(&origin, state.credentials.account_sid.as_str(), service)))
}

/// DELETE /v1/Services/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    scope.palaver.delete_service(&scope.service).await?;
    Ok(deleted())
}

/// GET /v1/Services/{ChatServiceSid}/Configuration
pub(crate) async fn fetch_configuration(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(sid): Path<String>,
) -> ApiResult<Response> {
    let service = state.palaver.service(&service_sid(&sid)?).await?;
    Ok(json(StatusCode::OK, resources::service_configuration(&origin, service)))
}

/// POST /v1/Services/{ChatServiceSid}/Configuration
pub(crate) async fn update_configuration(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(sid): Path<String>,
    form: FormFields,
) -> ApiResult<Response> {
    let role = |field: &'static str| -> ApiResult<Option<RoleSid>> {
        form.get(field).map(|raw| RoleSid::parse(raw).map_err(|e| ApiError::invalid(field, e))).transpose()
    };
    let patch = ServiceConfigPatch {
        creator_role_sid: role("DefaultConversationCreatorRoleSid")?,
        participant_role_sid: role("DefaultConversationRoleSid")?,
        user_role_sid: role("DefaultChatServiceRoleSid")?,
        reachability_enabled: form.bool("ReachabilityEnabled")?,
        now: None,
    };
    let service = state.palaver.update_service_config(&service_sid(&sid)?, patch).await?;
    Ok(json(StatusCode::OK, resources::service_configuration(&origin, service)))
}
