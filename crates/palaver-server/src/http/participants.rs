//! `/v1/Conversations/{ConversationSid}/Participants`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::sid::RoleSid;
use palaver_core::input::*;
use palaver_core::model::{BindingKind, MessagingBinding};
use palaver_core::service::{AddParticipant, ParticipantKind};
use palaver_core::store::{ConversationRef, ParticipantPatch, ParticipantRef};

use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

/// Decides between a chat participant (identity) and a non-chat one (address + proxy address).
///
/// # Errors
/// When both or neither are given, or an SMS/WhatsApp address comes without a proxy address.
pub(crate) fn participant_kind(
    identity: Option<&str>,
    address: Option<&str>,
    proxy: Option<&str>,
    projected: Option<&str>,
) -> ApiResult<ParticipantKind> {
    match (identity.filter(|s| !s.is_empty()), address.filter(|s| !s.is_empty())) {
        (Some(_), Some(_)) => {
            Err(ApiError::invalid("Identity", "give either Identity or MessagingBinding.Address, not both"))
        }
        (None, None) => Err(ApiError::invalid("Identity", "either Identity or MessagingBinding.Address is required")),
        (Some(identity), None) => Ok(ParticipantKind::Chat(Identity::parse("Identity", identity)?)),
        (None, Some(address)) => {
            let address = Address::parse("MessagingBinding.Address", address)?;
            let kind = BindingKind::of_address(address.as_str());
            let proxy = proxy
                .filter(|s| !s.is_empty())
                .map(|p| Address::parse("MessagingBinding.ProxyAddress", p))
                .transpose()?;
            if kind != BindingKind::Email && proxy.is_none() {
                return Err(ApiError::invalid(
                    "MessagingBinding.ProxyAddress",
                    "is required for SMS and WhatsApp participants",
                ));
            }
            let projected = projected
                .filter(|s| !s.is_empty())
                .map(|p| Address::parse("MessagingBinding.ProjectedAddress", p))
                .transpose()?;
            Ok(ParticipantKind::NonChat(MessagingBinding {
                kind,
                address: address.as_str().to_string(),
                proxy_address: proxy.map(|p| p.as_str().to_string()),
                projected_address: projected.map(|p| p.as_str().to_string()),
                name: None,
                level: (kind == BindingKind::Email).then(|| "to".to_string()),
            }))
        }
    }
}

/// Palaver's extensions for email participants: `MessagingBinding.Name` (display name) and
/// `MessagingBinding.Level` (`to` or `cc`), which Twilio sets only from inbound email headers.
fn email_extras(form: &FormFields, kind: &mut ParticipantKind) -> ApiResult<()> {
    let ParticipantKind::NonChat(binding) = kind else { return Ok(()) };
    if binding.kind != BindingKind::Email {
        return Ok(());
    }
    if let Some(name) = form.get("MessagingBinding.Name").filter(|n| !n.is_empty()) {
        if name.chars().count() > 256 || name.contains(['\r', '\n']) {
            return Err(ApiError::invalid("MessagingBinding.Name", "must be one line of at most 256 characters"));
        }
        binding.name = Some(name.to_string());
    }
    if let Some(level) = form.get("MessagingBinding.Level") {
        match level.to_ascii_lowercase().as_str() {
            "to" | "cc" => binding.level = Some(level.to_ascii_lowercase()),
            other => {
                return Err(ApiError::invalid("MessagingBinding.Level", format!("'{other}' is not one of to, cc")));
            }
        }
    }
    Ok(())
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

fn refs(scope: &Scope) -> (ConversationRef, ParticipantRef) {
    (ConversationRef::parse(scope.param("conversation")), ParticipantRef::parse(scope.param("participant")))
}

/// GET /v1/Conversations/{ConversationSid}/Participants
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(100, false)?;
    let conv = ConversationRef::parse(scope.param("conversation"));
    let page = scope.palaver.list_participants(&scope.service, &conv, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("participants", page, |p| resources::participant(&scope, &account, p))))
}

/// POST /v1/Conversations/{ConversationSid}/Participants
pub(crate) async fn create(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let mut kind = participant_kind(
        form.get("Identity"),
        form.get("MessagingBinding.Address"),
        form.get("MessagingBinding.ProxyAddress"),
        form.get("MessagingBinding.ProjectedAddress"),
    )?;
    email_extras(&form, &mut kind)?;
    let add = AddParticipant {
        kind,
        attributes: attributes(&form)?,
        role_sid: role(&form)?,
        date_created: form.date("DateCreated")?,
        date_updated: form.date("DateUpdated")?,
    };
    let conv = ConversationRef::parse(scope.param("conversation"));
    let created = scope.palaver.add_participant(&scope.service, &conv, add).await?;
    Ok(json(StatusCode::CREATED, resources::participant(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Conversations/{ConversationSid}/Participants/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let (conv, participant) = refs(&scope);
    let found = scope.palaver.participant(&scope.service, &conv, &participant).await?;
    Ok(json(StatusCode::OK, resources::participant(&scope, state.credentials.account_sid.as_str(), found)))
}

/// Parses `LastReadMessageIndex`: an integer, or empty / `null` to clear the horizon.
pub(crate) fn last_read_index(form: &FormFields) -> ApiResult<Option<Option<i64>>> {
    form.get("LastReadMessageIndex")
        .map(|raw| match raw {
            "" | "null" => Ok(None),
            _ => raw.parse::<i64>().ok().filter(|i| *i >= 0).map(Some).ok_or_else(|| {
                ApiError::invalid("LastReadMessageIndex", format!("'{raw}' is not a non-negative integer"))
            }),
        })
        .transpose()
}

/// POST /v1/Conversations/{ConversationSid}/Participants/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let nullable = |field: &'static str| -> ApiResult<Option<Option<String>>> {
        form.get(field)
            .map(|raw| match raw {
                "" | "null" => Ok(None),
                _ => Address::parse(field, raw).map(|a| Some(a.as_str().to_string())).map_err(ApiError::from),
            })
            .transpose()
    };
    let patch =
        ParticipantPatch {
            attributes: attributes(&form)?,
            role_sid: role(&form)?,
            identity: form.get("Identity").map(|raw| Identity::parse("Identity", raw)).transpose()?,
            // Chosen by the service when the identity changes.
            new_user_sid: None,
            proxy_address: nullable("MessagingBinding.ProxyAddress")?,
            projected_address: nullable("MessagingBinding.ProjectedAddress")?,
            last_read_message_index: last_read_index(&form)?,
            last_read_timestamp: form
                .get("LastReadTimestamp")
                .map(|raw| {
                    if raw.is_empty() { Ok(None) } else { crate::form::parse_date("LastReadTimestamp", raw).map(Some) }
                })
                .transpose()?,
            notification_level: None,
            date_created: form.date("DateCreated")?,
            now: None,
        };
    let (conv, participant) = refs(&scope);
    let updated = scope.palaver.update_participant(&scope.service, &conv, &participant, patch).await?;
    Ok(json(StatusCode::OK, resources::participant(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Conversations/{ConversationSid}/Participants/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    let (conv, participant) = refs(&scope);
    scope.palaver.remove_participant(&scope.service, &conv, &participant).await?;
    Ok(deleted())
}
