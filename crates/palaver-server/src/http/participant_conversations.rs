//! `/v1/ParticipantConversations`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palaver_core::store::ParticipantLookup;

use super::json;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

/// GET /v1/ParticipantConversations
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let lookup = match (query.get("Identity"), query.get("Address")) {
        (Some(identity), None) => ParticipantLookup::Identity(identity.to_string()),
        (None, Some(address)) => ParticipantLookup::Address(address.to_string()),
        _ => return Err(ApiError::invalid("Identity", "exactly one of Identity and Address is required")),
    };
    let request = query.page(50, false)?;
    let page = scope.palaver.list_participant_conversations(&scope.service, &lookup, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(
        StatusCode::OK,
        request.respond("conversations", page, |pc| resources::participant_conversation(&scope, &account, pc)),
    ))
}
