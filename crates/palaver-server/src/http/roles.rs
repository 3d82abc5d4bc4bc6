//! `/v1/Roles`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::sid::RoleSid;
use palaver_core::input::FriendlyName;
use palaver_core::model::RoleKind;

use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

fn role_sid(scope: &Scope) -> ApiResult<RoleSid> {
    let raw = scope.param("role");
    RoleSid::parse(raw).map_err(|_| ApiError::not_found(format!("Role {raw}")))
}

/// GET /v1/Roles
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(50, false)?;
    let page = state.palaver.list_roles(&scope.service, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("roles", page, |r| resources::role(&scope, &account, r))))
}

/// POST /v1/Roles
pub(crate) async fn create(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let name = form.get("FriendlyName").ok_or_else(|| ApiError::invalid("FriendlyName", "is required"))?;
    let kind_raw = form.get("Type").ok_or_else(|| ApiError::invalid("Type", "is required"))?;
    let kind = RoleKind::parse(kind_raw)
        .ok_or_else(|| ApiError::invalid("Type", format!("'{kind_raw}' is not conversation or service")))?;
    let created = state
        .palaver
        .create_role(&scope.service, FriendlyName::parse("FriendlyName", name)?, kind, form.all("Permission"))
        .await?;
    Ok(json(StatusCode::CREATED, resources::role(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Roles/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let found = state.palaver.role(&scope.service, &role_sid(&scope)?).await?;
    Ok(json(StatusCode::OK, resources::role(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Roles/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let updated = state.palaver.update_role(&scope.service, &role_sid(&scope)?, form.all("Permission")).await?;
    Ok(json(StatusCode::OK, resources::role(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Roles/{Sid}
pub(crate) async fn delete(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    state.palaver.delete_role(&scope.service, &role_sid(&scope)?).await?;
    Ok(deleted())
}
