//! Palaver's own REST resources, under `/palaver/v1` (not part of Twilio's API): what an operator's tools,
//! such as the web console, need beyond it. All take the account's Basic credentials (or an API key's).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use palaver_api::sid::{ApiKeySid, ConversationSid, ServiceSid};
use palaver_core::channel::{ChannelDelivery, DeliveryStatus, ReceiptFilter, receipt_snapshot};
use palaver_core::input::{FriendlyName, Identity};
use palaver_core::webhook::{AttemptFilter, AttemptOutcome, OutboxEntry, OutboxFilter, WebhookAttempt};
use serde::Serialize;
use time::OffsetDateTime;

use super::json;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources::date;

/// The routes, behind Basic authentication.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/palaver/v1/AccessTokens", post(create_access_token))
        .route("/palaver/v1/WebhookDeliveries", get(list_webhook_deliveries))
        .route("/palaver/v1/WebhookOutbox", get(list_webhook_outbox))
        .route("/palaver/v1/ChannelDeliveries", get(list_channel_deliveries))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::auth::require_basic_auth))
}

/// The longest lifetime of a token minted here, as Twilio's: 24 hours.
const MAX_TOKEN_TTL_SECS: i64 = 24 * 3600;
const DEFAULT_TOKEN_TTL_SECS: i64 = 3600;
/// The name of the API key created to sign tokens when the account has none.
const SIGNING_KEY_NAME: &str = "palaver access tokens";

#[derive(Debug, Serialize)]
struct AccessTokenResource {
    account_sid: String,
    identity: String,
    chat_service_sid: Option<String>,
    /// Whether the token carries Palaver's observer grant.
    observer: bool,
    api_key_sid: String,
    ttl: i64,
    date_expires: String,
    token: String,
}

/// POST /palaver/v1/AccessTokens — an access token for `Identity` (and `ChatServiceSid`, else the default
/// service), valid `Ttl` seconds (default 3600, at most 86400), for the realtime API and the JS SDK. With
/// `Observer=true`, an observer's token instead: a realtime session holding it follows any conversation of
/// the service read-only (`Identity` then only names the observer; no user is created). Handing that out
/// grants nothing new: the caller holds the account's credentials or an API key, which read every
/// conversation through REST already.
///
/// Signed with the API key of the request's credentials when it logged in with one; with the account's
/// credentials, with its first API key (one named "palaver access tokens" is created when it has none).
async fn create_access_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: FormFields,
) -> ApiResult<Response> {
    let identity = form.get("Identity").ok_or_else(|| ApiError::invalid("Identity", "is required"))?;
    let identity = Identity::parse("Identity", identity)?;
    let service = match form.get("ChatServiceSid") {
        Some(raw) => {
            let sid = ServiceSid::parse(raw).map_err(|e| ApiError::invalid("ChatServiceSid", e))?;
            state.palaver.service(&sid).await?;
            Some(sid)
        }
        None => None,
    };
    let ttl = match form.get("Ttl") {
        Some(raw) => raw.parse::<i64>().ok().filter(|ttl| (1..=MAX_TOKEN_TTL_SECS).contains(ttl)).ok_or_else(|| {
            ApiError::invalid("Ttl", format!("must be a number of seconds from 1 to {MAX_TOKEN_TTL_SECS}"))
        })?,
        None => DEFAULT_TOKEN_TTL_SECS,
    };
    let observer = match form.get("Observer") {
        None => false,
        Some(raw) if raw.eq_ignore_ascii_case("true") => true,
        Some(raw) if raw.eq_ignore_ascii_case("false") => false,
        Some(raw) => return Err(ApiError::invalid("Observer", format!("{raw:?} is not true or false"))),
    };
    let logged_in_key = crate::auth::basic_credentials(&headers).and_then(|(user, _)| ApiKeySid::parse(&user).ok());
    let key = match logged_in_key {
        Some(sid) => state.palaver.api_key(&sid).await?,
        None => match state.palaver.list_api_keys().await?.into_iter().next() {
            Some(key) => key,
            None => state.palaver.create_api_key(FriendlyName::parse("FriendlyName", SIGNING_KEY_NAME)?).await?,
        },
    };
    let request = crate::token::MintRequest {
        key_sid: &key.sid,
        key_secret: &key.secret,
        account_sid: &state.credentials.account_sid,
        identity: identity.as_str(),
        service_sid: service.as_ref(),
        ttl_secs: ttl,
    };
    let token = if observer { crate::token::mint_observer(&request) } else { crate::token::mint(&request) };
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(ttl);
    Ok(json(
        StatusCode::CREATED,
        AccessTokenResource {
            account_sid: state.credentials.account_sid.to_string(),
            identity: identity.as_str().to_string(),
            chat_service_sid: service.map(|s| s.to_string()),
            observer,
            api_key_sid: key.sid.to_string(),
            ttl,
            date_expires: date(expires),
            token,
        },
    ))
}

/// The most items a page of the lists below holds.
const MAX_PAGE_SIZE: u32 = 100;

/// One attempt of the webhook delivery history.
#[derive(Debug, Serialize)]
struct WebhookDeliveryResource {
    /// The outbox entry (the same across its retries).
    outbox_id: i64,
    event_id: i64,
    url: String,
    method: &'static str,
    event_type: Option<String>,
    conversation_sid: Option<String>,
    /// Which attempt this was, from 1.
    attempt: u32,
    /// `delivered`, `retrying` or `gave_up`.
    outcome: &'static str,
    error: Option<String>,
    next_retry: Option<String>,
    /// When the attempt ended.
    date_created: String,
}

impl From<WebhookAttempt> for WebhookDeliveryResource {
    fn from(attempt: WebhookAttempt) -> Self {
        Self {
            outbox_id: attempt.delivery_id,
            event_id: attempt.event_id,
            url: attempt.url,
            method: attempt.method.as_str(),
            event_type: attempt.event_type,
            conversation_sid: attempt.conversation_sid,
            attempt: attempt.attempt,
            outcome: attempt.outcome.as_str(),
            error: attempt.error,
            next_retry: attempt.next_retry.map(date),
            date_created: date(attempt.at),
        }
    }
}

/// An entry of the webhook outbox.
#[derive(Debug, Serialize)]
struct WebhookOutboxResource {
    outbox_id: i64,
    event_id: i64,
    url: String,
    method: &'static str,
    event_type: Option<String>,
    conversation_sid: Option<String>,
    /// Attempts so far.
    attempts: u32,
    /// `pending` (still to send) or `dead` (given up on, never sent again).
    state: &'static str,
    /// When it is tried next (for an entry being sent, when its sender's lease ends); `null` when dead.
    next_attempt: Option<String>,
    last_error: Option<String>,
    /// When it was planned; `null` for entries planned before Palaver recorded it.
    date_created: Option<String>,
}

impl From<OutboxEntry> for WebhookOutboxResource {
    fn from(entry: OutboxEntry) -> Self {
        let request = &entry.delivery.request;
        Self {
            outbox_id: entry.delivery.id,
            event_id: request.event_id,
            url: request.url.clone(),
            method: request.method.as_str(),
            event_type: request.param("EventType").map(str::to_owned),
            conversation_sid: request.param("ConversationSid").map(str::to_owned),
            attempts: entry.delivery.attempts,
            state: if entry.dead { "dead" } else { "pending" },
            next_attempt: (!entry.dead).then(|| date(entry.next_attempt)),
            last_error: entry.last_error,
            date_created: entry.date_created.map(date),
        }
    }
}

/// A channel delivery receipt with its sending state and its message.
#[derive(Debug, Serialize)]
struct ChannelDeliveryResource {
    service_sid: String,
    /// The receipt, as the realtime protocol's `DeliveryReceiptInfo`.
    receipt: serde_json::Value,
    /// `sms`, `whatsapp` or `email`.
    channel: &'static str,
    /// The recipient's address.
    address: Option<String>,
    /// Attempts at handing the message to the channel.
    attempts: u32,
    last_error: Option<String>,
    /// When a queued receipt is tried next.
    next_attempt: Option<String>,
    message_index: Option<i64>,
    message_author: Option<String>,
    /// The message's aggregated delivery status.
    message_delivery: Option<serde_json::Value>,
    /// When the receipt last changed (its `date_updated`).
    date_created: String,
}

impl From<ChannelDelivery> for ChannelDeliveryResource {
    fn from(delivery: ChannelDelivery) -> Self {
        Self {
            service_sid: delivery.receipt.service_sid.to_string(),
            receipt: receipt_snapshot(&delivery.receipt),
            channel: delivery.channel.as_str(),
            address: delivery.address,
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            next_attempt: delivery.next_attempt.map(date),
            message_index: delivery.message_index,
            message_author: delivery.message_author,
            message_delivery: delivery.message_delivery.map(|counts| counts.aggregate()),
            date_created: date(delivery.receipt.date_updated),
        }
    }
}

fn conversation_filter(query: &ListQuery) -> ApiResult<Option<ConversationSid>> {
    query
        .get("ConversationSid")
        .map(|raw| ConversationSid::parse(raw).map_err(|e| ApiError::invalid("ConversationSid", e)))
        .transpose()
}

/// GET /palaver/v1/WebhookDeliveries — the webhook delivery history, newest first: every attempt with where
/// it went, for which event, how it ended (`delivered`, `retrying`, `gave_up`), the error and the next retry.
/// Filters: `Outcome`, `ConversationSid`. Recorded in the database by whichever node made the attempt, so
/// every node lists the whole cluster's; the newest 10 000 attempts of the last week are kept.
async fn list_webhook_deliveries(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let outcome =
        match query.get("Outcome") {
            None => None,
            Some(raw) => Some(AttemptOutcome::parse(raw).ok_or_else(|| {
                ApiError::invalid("Outcome", format!("{raw:?} is not delivered, retrying or gave_up"))
            })?),
        };
    let filter = AttemptFilter { outcome, conversation_sid: conversation_filter(&query)? };
    let request = query.page(MAX_PAGE_SIZE, true)?;
    let page = state.palaver.store().list_webhook_attempts(filter, request.page).await?;
    Ok(json(StatusCode::OK, request.respond("webhook_deliveries", page, WebhookDeliveryResource::from)))
}

/// GET /palaver/v1/WebhookOutbox — the webhook requests still to send and those given up on, newest first:
/// attempts so far, next attempt, last error. Filter: `State` (`pending` or `dead`).
async fn list_webhook_outbox(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let dead = match query.get("State") {
        None => None,
        Some("pending") => Some(false),
        Some("dead") => Some(true),
        Some(other) => return Err(ApiError::invalid("State", format!("{other:?} is not pending or dead"))),
    };
    let request = query.page(MAX_PAGE_SIZE, true)?;
    let page = state.palaver.store().list_webhook_outbox(OutboxFilter { dead }, request.page).await?;
    Ok(json(StatusCode::OK, request.respond("webhook_outbox", page, WebhookOutboxResource::from)))
}

/// GET /palaver/v1/ChannelDeliveries — the SMS, WhatsApp and email delivery receipts of every conversation,
/// newest first, with the recipient's address, attempts, last error and the message. Filters: `Status`
/// (`queued`, `sent`, `delivered`, `read`, `failed`, `undelivered`), `Failed=true` (failed or undelivered),
/// `ConversationSid`, `ChatServiceSid`.
async fn list_channel_deliveries(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let status = match query.get("Status") {
        None => None,
        Some(raw) => Some(
            DeliveryStatus::ALL
                .into_iter()
                .find(|status| status.as_str() == raw)
                .ok_or_else(|| ApiError::invalid("Status", format!("{raw:?} is not a delivery status")))?,
        ),
    };
    let failed = match query.get("Failed") {
        None => false,
        Some(raw) if raw.eq_ignore_ascii_case("true") => true,
        Some(raw) if raw.eq_ignore_ascii_case("false") => false,
        Some(raw) => return Err(ApiError::invalid("Failed", format!("{raw:?} is not true or false"))),
    };
    let service_sid = query
        .get("ChatServiceSid")
        .map(|raw| ServiceSid::parse(raw).map_err(|e| ApiError::invalid("ChatServiceSid", e)))
        .transpose()?;
    let filter = ReceiptFilter { status, failed, conversation_sid: conversation_filter(&query)?, service_sid };
    let request = query.page(MAX_PAGE_SIZE, true)?;
    let page = state.palaver.store().list_channel_deliveries(filter, request.page).await?;
    Ok(json(StatusCode::OK, request.respond("channel_deliveries", page, ChannelDeliveryResource::from)))
}
