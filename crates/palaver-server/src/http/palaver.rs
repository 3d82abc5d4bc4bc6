//! Palaver's own REST resources, under `/palaver/v1` (not part of Twilio's API): what an operator's tools,
//! such as the web console, need beyond it. All take the account's Basic credentials (or an API key's).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use palaver_api::sid::{ApiKeySid, ConversationSid, ServiceSid};
use palaver_core::input::{FriendlyName, Identity};
use serde::Serialize;
use time::OffsetDateTime;

use super::json;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::recent::{AttemptOutcome, ReceiptChange, WebhookAttempt};

/// The routes, behind Basic authentication.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/palaver/v1/AccessTokens", post(create_access_token))
        .route("/palaver/v1/WebhookDeliveries", get(list_webhook_deliveries))
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
    api_key_sid: String,
    ttl: i64,
    date_expires: String,
    token: String,
}

/// POST /palaver/v1/AccessTokens — an access token for `Identity` (and `ChatServiceSid`, else the default
/// service), valid `Ttl` seconds (default 3600, at most 86400), for the realtime API and the JS SDK.
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
    let logged_in_key = crate::auth::basic_credentials(&headers).and_then(|(user, _)| ApiKeySid::parse(&user).ok());
    let key = match logged_in_key {
        Some(sid) => state.palaver.api_key(&sid).await?,
        None => match state.palaver.list_api_keys().await?.into_iter().next() {
            Some(key) => key,
            None => state.palaver.create_api_key(FriendlyName::parse("FriendlyName", SIGNING_KEY_NAME)?).await?,
        },
    };
    let token = crate::token::mint(&crate::token::MintRequest {
        key_sid: &key.sid,
        key_secret: &key.secret,
        account_sid: &state.credentials.account_sid,
        identity: identity.as_str(),
        service_sid: service.as_ref(),
        ttl_secs: ttl,
    });
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(ttl);
    Ok(json(
        StatusCode::CREATED,
        AccessTokenResource {
            account_sid: state.credentials.account_sid.to_string(),
            identity: identity.as_str().to_string(),
            chat_service_sid: service.map(|s| s.to_string()),
            api_key_sid: key.sid.to_string(),
            ttl,
            date_expires: crate::resources::date(expires),
            token,
        },
    ))
}

#[derive(Debug, Serialize)]
struct RecentPage<T> {
    #[serde(flatten)]
    items: std::collections::BTreeMap<&'static str, Vec<T>>,
    meta: RecentMeta,
}

#[derive(Debug, Serialize)]
struct RecentMeta {
    key: &'static str,
    page_size: usize,
    /// How many entries the node keeps: older ones are gone.
    kept: usize,
}

fn page_of<T>(key: &'static str, items: Vec<T>) -> RecentPage<T> {
    let page_size = items.len();
    RecentPage {
        items: std::collections::BTreeMap::from([(key, items)]),
        meta: RecentMeta { key, page_size, kept: crate::recent::KEPT },
    }
}

fn page_size(query: &ListQuery) -> ApiResult<usize> {
    match query.get("PageSize") {
        None => Ok(50),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|size| *size >= 1)
            .map(|size| size.min(crate::recent::KEPT))
            .ok_or_else(|| ApiError::invalid("PageSize", "must be a positive number")),
    }
}

fn conversation_filter(query: &ListQuery) -> ApiResult<Option<ConversationSid>> {
    query
        .get("ConversationSid")
        .map(|raw| ConversationSid::parse(raw).map_err(|e| ApiError::invalid("ConversationSid", e)))
        .transpose()
}

/// GET /palaver/v1/WebhookDeliveries — this node's recent webhook attempts, newest first: where each went,
/// for which event, how it ended (`delivered`, `retrying`, `gave_up`), the error and the next retry.
/// Filters: `Outcome`, `ConversationSid`; `PageSize` (default 50).
async fn list_webhook_deliveries(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let outcome = match query.get("Outcome") {
        None => None,
        Some("delivered") => Some(AttemptOutcome::Delivered),
        Some("retrying") => Some(AttemptOutcome::Retrying),
        Some("gave_up") => Some(AttemptOutcome::GaveUp),
        Some(other) => {
            return Err(ApiError::invalid("Outcome", format!("{other:?} is not delivered, retrying or gave_up")));
        }
    };
    let conversation = conversation_filter(&query)?;
    let size = page_size(&query)?;
    let attempts: Vec<WebhookAttempt> = state
        .recent
        .webhook_attempts()
        .into_iter()
        .filter(|a| outcome.is_none_or(|o| a.outcome == o))
        .filter(|a| conversation.as_ref().is_none_or(|c| a.conversation_sid.as_deref() == Some(c.as_str())))
        .take(size)
        .collect();
    Ok(json(StatusCode::OK, page_of("webhook_deliveries", attempts)))
}

/// GET /palaver/v1/ChannelDeliveries — recent changes of SMS, WhatsApp and email delivery receipts, newest
/// first, across conversations. Filters: `Status` (`queued`, `sent`, `delivered`, `read`, `failed`,
/// `undelivered`), `Failed=true` (failed or undelivered), `ConversationSid`; `PageSize` (default 50).
async fn list_channel_deliveries(State(state): State<AppState>, query: ListQuery) -> ApiResult<Response> {
    let status = query.get("Status");
    if let Some(status) = status
        && !["queued", "sent", "delivered", "read", "failed", "undelivered"].contains(&status)
    {
        return Err(ApiError::invalid("Status", format!("{status:?} is not a delivery status")));
    }
    let failed_only = match query.get("Failed") {
        None => false,
        Some(raw) if raw.eq_ignore_ascii_case("true") => true,
        Some(raw) if raw.eq_ignore_ascii_case("false") => false,
        Some(raw) => return Err(ApiError::invalid("Failed", format!("{raw:?} is not true or false"))),
    };
    let conversation = conversation_filter(&query)?;
    let size = page_size(&query)?;
    let changes: Vec<ReceiptChange> = state
        .recent
        .receipt_changes()
        .into_iter()
        .filter(|c| status.is_none_or(|s| c.status() == s))
        .filter(|c| !failed_only || c.is_failure())
        .filter(|c| {
            conversation.as_ref().is_none_or(|sid| {
                c.receipt.get("conversation_sid").and_then(serde_json::Value::as_str) == Some(sid.as_str())
            })
        })
        .take(size)
        .collect();
    Ok(json(StatusCode::OK, page_of("channel_deliveries", changes)))
}
