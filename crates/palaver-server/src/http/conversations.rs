//! `/v1/Conversations` and `/v1/ConversationWithParticipants`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::sid::{MessagingServiceSid, RoleSid};
use palaver_core::input::*;
use palaver_core::model::ConversationState;
use palaver_core::service::{AddParticipant, CreateConversation, TimerKind};
use palaver_core::store::{ConversationFilter, ConversationPatch, ConversationRef};
use serde::Deserialize;

use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::{FormFields, parse_date};
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

pub(crate) fn parse_state(field: &str, raw: &str) -> ApiResult<ConversationState> {
    ConversationState::parse(raw).ok_or_else(|| {
        ApiError::invalid(field, format!("'{raw}' is not one of initializing, active, inactive, closed"))
    })
}

fn attributes(form: &FormFields, max: usize) -> ApiResult<Option<Attributes>> {
    Ok(form.get("Attributes").map(|raw| Attributes::parse("Attributes", raw, max)).transpose()?)
}

fn messaging_service(form: &FormFields) -> ApiResult<Option<MessagingServiceSid>> {
    form.get("MessagingServiceSid")
        .filter(|s| !s.is_empty())
        .map(|raw| MessagingServiceSid::parse(raw).map_err(|e| ApiError::invalid("MessagingServiceSid", e)))
        .transpose()
}

fn timers(state: &AppState, form: &FormFields) -> ApiResult<(Option<TimerDuration>, Option<TimerDuration>)> {
    let inactive = form
        .get("Timers.Inactive")
        .map(|raw| state.palaver.parse_timer("Timers.Inactive", raw, TimerKind::Inactive))
        .transpose()?;
    let closed = form
        .get("Timers.Closed")
        .map(|raw| state.palaver.parse_timer("Timers.Closed", raw, TimerKind::Closed))
        .transpose()?;
    Ok((inactive, closed))
}

fn parse_create(state: &AppState, form: &FormFields) -> ApiResult<CreateConversation> {
    let (inactive_after, closed_after) = timers(state, form)?;
    Ok(CreateConversation {
        friendly_name: form.get("FriendlyName").map(|raw| FriendlyName::parse("FriendlyName", raw)).transpose()?,
        unique_name: form.get("UniqueName").filter(|s| !s.is_empty()).map(UniqueName::parse).transpose()?,
        attributes: attributes(form, MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
        messaging_service_sid: messaging_service(form)?,
        state: form.get("State").map(|raw| parse_state("State", raw)).transpose()?,
        inactive_after,
        closed_after,
        email_address: form.get("Bindings.Email.Address").map(str::to_string),
        email_name: form.get("Bindings.Email.Name").map(str::to_string),
        date_created: form.date("DateCreated")?,
        date_updated: form.date("DateUpdated")?,
        created_by: None,
    })
}

fn conversation_ref(scope: &Scope) -> ConversationRef {
    ConversationRef::parse(scope.param("conversation"))
}

/// GET /v1/Conversations
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(100, false)?;
    let filter = ConversationFilter {
        created_from: query.get("StartDate").map(|raw| parse_date("StartDate", raw)).transpose()?,
        created_before: query
            .get("EndDate")
            .map(|raw| {
                parse_date("EndDate", raw).and_then(|d| {
                    if raw.len() != 10 {
                        return Ok(d);
                    }
                    // A bare date includes that whole day.
                    d.checked_add(time::Duration::days(1))
                        .ok_or_else(|| ApiError::invalid("EndDate", format!("'{raw}' is past the last date supported")))
                })
            })
            .transpose()?,
        state: query.get("State").map(|raw| parse_state("State", raw)).transpose()?,
    };
    let page = scope.palaver.list_conversations(&scope.service, filter, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("conversations", page, |c| resources::conversation(&scope, &account, c))))
}

/// POST /v1/Conversations
pub(crate) async fn create(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let create = parse_create(&state, &form)?;
    let created = scope.palaver.create_conversation(&scope.service, create).await?;
    Ok(json(StatusCode::CREATED, resources::conversation(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Conversations/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let found = scope.palaver.conversation(&scope.service, &conversation_ref(&scope)).await?;
    Ok(json(StatusCode::OK, resources::conversation(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Conversations/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let (inactive_after, closed_after) = timers(&state, &form)?;
    let optional_text = |field: &str| form.get(field).map(|raw| (!raw.is_empty()).then(|| raw.to_string()));
    let patch =
        ConversationPatch {
            friendly_name: form
                .get("FriendlyName")
                .map(|raw| FriendlyName::parse("FriendlyName", raw).map(|n| (!raw.is_empty()).then(|| n.into_string())))
                .transpose()?,
            unique_name: form
                .get("UniqueName")
                .map(|raw| {
                    if raw.is_empty() { Ok(None) } else { UniqueName::parse(raw).map(|u| Some(u.as_str().to_string())) }
                })
                .transpose()?,
            attributes: attributes(&form, MAX_CONVERSATION_ATTRIBUTES_BYTES)?,
            messaging_service_sid: form.get("MessagingServiceSid").map(|_| messaging_service(&form)).transpose()?,
            state: form.get("State").map(|raw| parse_state("State", raw)).transpose()?,
            inactive_after,
            closed_after,
            email_address: optional_text("Bindings.Email.Address"),
            email_name: optional_text("Bindings.Email.Name"),
            date_created: form.date("DateCreated")?,
            now: None,
        };
    let updated = scope.palaver.update_conversation(&scope.service, &conversation_ref(&scope), patch).await?;
    Ok(json(StatusCode::OK, resources::conversation(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Conversations/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    scope.palaver.delete_conversation(&scope.service, &conversation_ref(&scope)).await?;
    Ok(deleted())
}

/// One element of `Participant` in ConversationWithParticipants: the fields of a participant create, in JSON.
#[derive(Debug, Deserialize)]
struct ParticipantSpec {
    identity: Option<String>,
    attributes: Option<String>,
    role_sid: Option<String>,
    messaging_binding: Option<BindingSpec>,
}

#[derive(Debug, Deserialize)]
struct BindingSpec {
    address: Option<String>,
    proxy_address: Option<String>,
    projected_address: Option<String>,
}

fn parse_participant_spec(raw: &str) -> ApiResult<AddParticipant> {
    let spec: ParticipantSpec = serde_json::from_str(raw)
        .map_err(|e| ApiError::invalid("Participant", format!("each value must be a JSON object: {e}")))?;
    let binding =
        spec.messaging_binding.unwrap_or(BindingSpec { address: None, proxy_address: None, projected_address: None });
    let kind = super::participants::participant_kind(
        spec.identity.as_deref(),
        binding.address.as_deref(),
        binding.proxy_address.as_deref(),
        binding.projected_address.as_deref(),
    )?;
    Ok(AddParticipant {
        kind,
        attributes: spec
            .attributes
            .map(|raw| Attributes::parse("Participant.attributes", &raw, MAX_SMALL_ATTRIBUTES_BYTES))
            .transpose()?,
        role_sid: spec
            .role_sid
            .map(|raw| RoleSid::parse(&raw).map_err(|e| ApiError::invalid("Participant.role_sid", e)))
            .transpose()?,
        date_created: None,
        date_updated: None,
    })
}

/// POST /v1/ConversationWithParticipants
pub(crate) async fn create_with_participants(
    State(state): State<AppState>,
    scope: Scope,
    form: FormFields,
) -> ApiResult<Response> {
    let create = parse_create(&state, &form)?;
    let participants =
        form.all("Participant").iter().map(|raw| parse_participant_spec(raw)).collect::<ApiResult<Vec<_>>>()?;
    let (created, _) =
        scope.palaver.create_conversation_with_participants(&scope.service, create, participants).await?;
    Ok(json(StatusCode::CREATED, resources::conversation(&scope, state.credentials.account_sid.as_str(), created)))
}
