//! `/v1/Users` and `/v1/Users/{UserSid}/Conversations`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::sid::RoleSid;
use palaver_core::input::*;
use palaver_core::service::CreateUser;
use palaver_core::store::{ConversationRef, ParticipantPatch, UserPatch, UserRef};

use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

fn user_ref(scope: &Scope) -> UserRef {
    UserRef::parse(scope.param("user"))
}

fn role(form: &FormFields) -> ApiResult<Option<RoleSid>> {
    form.get("RoleSid").map(|raw| RoleSid::parse(raw).map_err(|e| ApiError::invalid("RoleSid", e))).transpose()
}

fn attributes(form: &FormFields) -> ApiResult<Option<Attributes>> {
    Ok(form
        .get("Attributes")
        .map(|raw| Attributes::parse("Attributes", raw, MAX_SMALL_ATTRIBUTES_BYTES))
        .transpose()?)
}

/// GET /v1/Users
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(50, false)?;
    let page = scope.palaver.list_users(&scope.service, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("users", page, |u| resources::user(&scope, &account, u))))
}

/// POST /v1/Users
pub(crate) async fn create(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let identity = form.get("Identity").ok_or_else(|| ApiError::invalid("Identity", "is required"))?;
    let create = CreateUser {
        identity: Identity::parse("Identity", identity)?,
        friendly_name: form.get("FriendlyName").map(|raw| FriendlyName::parse("FriendlyName", raw)).transpose()?,
        attributes: attributes(&form)?,
        role_sid: role(&form)?,
    };
    let created = scope.palaver.create_user(&scope.service, create).await?;
    Ok(json(StatusCode::CREATED, resources::user(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Users/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let found = scope.palaver.user(&scope.service, &user_ref(&scope)).await?;
    Ok(json(StatusCode::OK, resources::user(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Users/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let patch = UserPatch {
        friendly_name: form
            .get("FriendlyName")
            .map(|raw| FriendlyName::parse("FriendlyName", raw).map(|n| (!raw.is_empty()).then(|| n.into_string())))
            .transpose()?,
        attributes: attributes(&form)?,
        role_sid: role(&form)?,
        now: None,
    };
    let updated = scope.palaver.update_user(&scope.service, &user_ref(&scope), patch).await?;
    Ok(json(StatusCode::OK, resources::user(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Users/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    scope.palaver.delete_user(&scope.service, &user_ref(&scope)).await?;
    Ok(deleted())
}

/// GET /v1/Users/{UserSid}/Conversations
pub(crate) async fn list_conversations(
    State(state): State<AppState>,
    scope: Scope,
    query: ListQuery,
) -> ApiResult<Response> {
    let request = query.page(50, false)?;
    let page = scope.palaver.list_user_conversations(&scope.service, &user_ref(&scope), request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(
        StatusCode::OK,
        request.respond("conversations", page, |uc| resources::user_conversation(&scope, &account, uc)),
    ))
}

/// GET /v1/Users/{UserSid}/Conversations/{ConversationSid}
pub(crate) async fn fetch_conversation(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let conv = ConversationRef::parse(scope.param("conversation"));
    let found = scope.palaver.user_conversation(&scope.service, &user_ref(&scope), &conv).await?;
    Ok(json(StatusCode::OK, resources::user_conversation(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Users/{UserSid}/Conversations/{ConversationSid}
pub(crate) async fn update_conversation(
    State(state): State<AppState>,
    scope: Scope,
    form: FormFields,
) -> ApiResult<Response> {
    let patch =
        ParticipantPatch {
            notification_level: form.get("NotificationLevel").map(NotificationLevel::parse).transpose()?,
            last_read_message_index: super::participants::last_read_index(&form)?,
            last_read_timestamp: form
                .get("LastReadTimestamp")
                .map(|raw| {
                    if raw.is_empty() { Ok(None) } else { crate::form::parse_date("LastReadTimestamp", raw).map(Some) }
                })
                .transpose()?,
            ..ParticipantPatch::default()
        };
    let conv = ConversationRef::parse(scope.param("conversation"));
    let updated = scope.palaver.update_user_conversation(&scope.service, &user_ref(&scope), &conv, patch).await?;
    Ok(json(StatusCode::OK, resources::user_conversation(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Users/{UserSid}/Conversations/{ConversationSid}
pub(crate) async fn leave_conversation(scope: Scope) -> ApiResult<Response> {
    let conv = ConversationRef::parse(scope.param("conversation"));
    scope.palaver.leave_user_conversation(&scope.service, &user_ref(&scope), &conv).await?;
    Ok(deleted())
}
