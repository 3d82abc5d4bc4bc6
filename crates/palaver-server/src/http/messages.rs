//! `/v1/Conversations/{ConversationSid}/Messages`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use palaver_api::sid::{ContentSid, MediaSid, MessageSid};
use palaver_core::input::*;
use palaver_core::service::PostMessage;
use palaver_core::store::{ConversationRef, MessagePatch};

use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources;
use crate::scope::Scope;

fn attributes(form: &FormFields) -> ApiResult<Option<Attributes>> {
    Ok(form
        .get("Attributes")
        .map(|raw| Attributes::parse("Attributes", raw, MAX_SMALL_ATTRIBUTES_BYTES))
        .transpose()?)
}

fn author(form: &FormFields) -> ApiResult<Option<String>> {
    form.get("Author")
        .filter(|s| !s.is_empty())
        .map(|raw| Identity::parse("Author", raw).map(|i| i.as_str().to_string()).map_err(ApiError::from))
        .transpose()
}

fn message_sid(scope: &Scope) -> ApiResult<MessageSid> {
    let raw = scope.param("message");
    MessageSid::parse(raw).map_err(|_| ApiError::not_found(format!("Message {raw}")))
}

/// GET /v1/Conversations/{ConversationSid}/Messages
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let descending = match query.get("Order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::invalid("Order", format!("'{other}' is not asc or desc"))),
    };
    let request = query.page(100, descending)?;
    let conv = ConversationRef::parse(scope.param("conversation"));
    let page = scope.palaver.list_messages(&scope.service, &conv, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("messages", page, |m| resources::message(&scope, &account, m))))
}

/// The key a client sends so that retrying a create stores one message: `Idempotency-Key` (the IETF HTTP
/// header) or `I-Twilio-Idempotency-Token`; 1 to 128 visible ASCII characters. Keys of REST callers live
/// apart from those of realtime users, so one cannot answer a retry of the other.
fn rest_idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some((name, value)) = ["idempotency-key", "i-twilio-idempotency-token"]
        .iter()
        .find_map(|name| headers.get(*name).map(|value| (*name, value)))
    else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 128);
    match key {
        Some(key) if key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(format!("rest\u{1f}{key}"))),
        _ => Err(ApiError::invalid(name, "must be 1 to 128 visible ASCII characters")),
    }
}

/// POST /v1/Conversations/{ConversationSid}/Messages
///
/// With an `Idempotency-Key` header, a retry of the same create answers the message the first one stored.
pub(crate) async fn create(
    State(state): State<AppState>,
    scope: Scope,
    headers: HeaderMap,
    form: FormFields,
) -> ApiResult<Response> {
    let media = form
        .all("MediaSid")
        .iter()
        .map(|raw| MediaSid::parse(raw).map_err(|e| ApiError::invalid("MediaSid", e)))
        .collect::<ApiResult<Vec<_>>>()?;
    let content_sid = form
        .get("ContentSid")
        .map(|raw| ContentSid::parse(raw).map(|s| s.to_string()).map_err(|e| ApiError::invalid("ContentSid", e)))
        .transpose()?;
    let body = form.get("Body").map(str::to_string);
    if body.is_none() && content_sid.is_none() && media.is_empty() {
        return Err(ApiError::invalid("Body", "a message needs a Body, MediaSid or ContentSid"));
    }
    let post = PostMessage {
        author: author(&form)?,
        body,
        subject: form.get("Subject").map(str::to_string),
        attributes: attributes(&form)?,
        content_sid,
        date_created: form.date("DateCreated")?,
        date_updated: form.date("DateUpdated")?,
        idempotency_key: rest_idempotency_key(&headers)?,
        media,
    };
    let conv = ConversationRef::parse(scope.param("conversation"));
    let created = scope.palaver.post_message(&scope.service, &conv, post).await?;
    Ok(json(StatusCode::CREATED, resources::message(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Conversations/{ConversationSid}/Messages/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let conv = ConversationRef::parse(scope.param("conversation"));
    let found = scope.palaver.message(&scope.service, &conv, &message_sid(&scope)?).await?;
    Ok(json(StatusCode::OK, resources::message(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Conversations/{ConversationSid}/Messages/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let patch = MessagePatch {
        author: author(&form)?,
        body: form.get("Body").map(str::to_string),
        subject: form.get("Subject").map(str::to_string),
        attributes: attributes(&form)?,
        date_created: form.date("DateCreated")?,
        date_updated: form.date("DateUpdated")?,
        now: None,
    };
    let conv = ConversationRef::parse(scope.param("conversation"));
    let updated = scope.palaver.update_message(&scope.service, &conv, &message_sid(&scope)?, patch).await?;
    Ok(json(StatusCode::OK, resources::message(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Conversations/{ConversationSid}/Messages/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    let conv = ConversationRef::parse(scope.param("conversation"));
    scope.palaver.delete_message(&scope.service, &conv, &message_sid(&scope)?).await?;
    Ok(deleted())
}
