//! Channel traffic: inbound SMS/WhatsApp (Twilio Messaging webhook form) and email, the gateway's status
//! callbacks, delivery receipts (`/Messages/{IM}/Receipts`) and address configurations
//! (`/v1/Configuration/Addresses`).

use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palaver_api::ErrorCode;
use palaver_api::rest::{AddressConfigurationResource, DeliveryReceiptResource};
use palaver_api::sid::{AddressConfigurationSid, DeliveryReceiptSid, MessageSid, ServiceSid};
use palaver_core::channel::*;
use palaver_core::media::{MediaCategory, Upload};
use palaver_core::model::BindingKind;
use palaver_core::routing::{CreateAddressConfiguration, Inbound};
use palaver_core::store::ConversationRef;
use serde_json::json;

use super::configuration::Origin;
use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources::date;
use crate::scope::Scope;

/// Accepts a channel callback signed by the messaging gateway (its auth token) or by us, or sent with the
/// account's Basic credentials.
fn check_caller(state: &AppState, headers: &HeaderMap, url: &str, form: &FormFields) -> ApiResult<()> {
    if let Some(signature) = headers.get("X-Twilio-Signature").and_then(|v| v.to_str().ok()) {
        let params = form.pairs();
        let mut keys = vec![state.credentials.auth_token.as_str()];
        if let Some(gateway) = &state.channels.messaging_gateway {
            keys.push(gateway.auth_token.as_str());
        }
        if keys.iter().any(|key| crate::auth::same_secret(&crate::webhooks::signature(key, url, &params), signature)) {
            return Ok(());
        }
    }
    let account_matches = crate::auth::basic_credentials(headers).is_some_and(|(user, password)| {
        user == state.credentials.account_sid.as_str()
            && crate::auth::same_secret(&password, &state.credentials.auth_token)
    });
    if account_matches {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::AuthenticationFailed, "Authentication Error - invalid signature or credentials"))
}

/// The form of a request from the messaging gateway or a mail relay, once its caller is checked.
pub(crate) struct CallerForm(FormFields);

impl axum::extract::FromRequest<AppState> for CallerForm {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let origin = crate::scope::origin_of(&parts);
        let uri = axum::extract::OriginalUri::from_request_parts(&mut parts, state)
            .await
            .map_or_else(|_| parts.uri.clone(), |OriginalUri(uri)| uri);
        let max = state.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
            ApiError::new(palaver_api::ErrorCode::PayloadTooLarge, format!("The request body is over {max} bytes"))
        })?;
        crate::form::check_field_count(&bytes, state.limits.max_form_fields)?;
        let form = FormFields::parse(&bytes)?;
        check_caller(state, &parts.headers, &called_url(state, &origin, &uri), &form)?;
        Ok(Self(form))
    }
}

/// The URL the caller used, as it signed it: the configured public URL when there is one.
fn called_url(state: &AppState, origin: &str, uri: &axum::http::Uri) -> String {
    let base = state.channels.public_url.as_deref().unwrap_or(origin).trim_end_matches('/');
    format!("{base}{}", uri.path_and_query().map_or("", |p| p.as_str()))
}

/// An empty TwiML answer: the message is taken, and nothing is replied through the gateway.
fn empty_twiml() -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#)
        .into_response()
}

/// POST /v1/Channels/Messaging/Inbound — an SMS or WhatsApp message (Twilio Messaging webhook form:
/// `From`, `To`, `Body`, `NumMedia`, `MediaUrl0…`, `MessageSid`).
pub(crate) async fn inbound_messaging(
    State(state): State<AppState>,
    CallerForm(form): CallerForm,
) -> ApiResult<Response> {
    let from = form.get("From").filter(|f| !f.is_empty()).ok_or_else(|| ApiError::invalid("From", "is required"))?;
    let to = form.get("To").filter(|t| !t.is_empty()).ok_or_else(|| ApiError::invalid("To", "is required"))?;
    let channel = if from.starts_with("whatsapp:") { BindingKind::Whatsapp } else { BindingKind::Sms };
    let media_count: usize = form.get("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
    let inbound = InboundMessage {
        channel,
        from: from.to_string(),
        to: to.to_string(),
        cc: Vec::new(),
        from_name: form.get("ProfileName").map(str::to_string),
        body: form.get("Body").map(str::to_string),
        subject: None,
        media: fetch_inbound_media(&state, &form, media_count).await,
        channel_message_sid: form.get("MessageSid").or(form.get("SmsSid")).map(str::to_string),
    };
    route(&state, inbound).await?;
    Ok(empty_twiml())
}

/// POST /v1/Channels/Email/Inbound — an email (`From`, `To`, `Cc`, `Subject`, `Text`; names in either case,
/// as inbound-parse services post them).
pub(crate) async fn inbound_email(State(state): State<AppState>, CallerForm(form): CallerForm) -> ApiResult<Response> {
    let field = |name: &str| form.get(name).or_else(|| form.get(&name.to_ascii_lowercase())).filter(|v| !v.is_empty());
    let from = field("From").ok_or_else(|| ApiError::invalid("From", "is required"))?;
    let to_field = field("To").ok_or_else(|| ApiError::invalid("To", "is required"))?;
    let mut recipients = to_field.split(',').map(str::trim).filter(|t| !t.is_empty());
    let to = recipients.next().ok_or_else(|| ApiError::invalid("To", "is required"))?.to_string();
    let mut cc: Vec<String> = recipients.map(str::to_string).collect();
    cc.extend(
        field("Cc").into_iter().flat_map(|c| c.split(',')).map(|c| c.trim().to_string()).filter(|c| !c.is_empty()),
    );
    let from_name = from.rfind('<').map(|at| from[..at].trim().trim_matches('"').to_string()).filter(|n| !n.is_empty());
    let inbound = InboundMessage {
        channel: BindingKind::Email,
        from: from.to_string(),
        to,
        cc,
        from_name,
        body: field("Text").or_else(|| field("Body")).map(str::to_string),
        subject: field("Subject").map(str::to_string),
        media: Vec::new(),
        channel_message_sid: field("Message-Id").map(str::to_string),
    };
    let routed = route(&state, inbound).await?;
    Ok(json(StatusCode::OK, routed))
}

/// Downloads the media an inbound message points at (`MediaUrl0…`, fetched with the gateway's credentials, as
/// Twilio's media URLs need) into the media store. A media item that cannot be fetched is left out and logged:
/// the text still gets through.
async fn fetch_inbound_media(state: &AppState, form: &FormFields, count: usize) -> Vec<Upload> {
    let limits = palaver_core::media::MediaLimits::default();
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build().unwrap_or_default();
    let mut uploads = Vec::new();
    for i in 0..count.min(limits.count as usize) {
        let Some(url) = form.get(&format!("MediaUrl{i}")) else { continue };
        let mut request = http.get(url);
        if let Some(gateway) = &state.channels.messaging_gateway {
            request = request.basic_auth(&gateway.account_sid, Some(&gateway.auth_token));
        }
        let fetched = async {
            let response =
                request.send().await.map_err(|e| e.to_string())?.error_for_status().map_err(|e| e.to_string())?;
            let content_type = form
                .get(&format!("MediaContentType{i}"))
                .map(str::to_string)
                .or_else(|| response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string))
                .unwrap_or_else(|| "application/octet-stream".into());
            let bytes = response.bytes().await.map_err(|e| e.to_string())?;
            if bytes.len() as u64 > limits.item_bytes() {
                return Err(format!("larger than {} MB", limits.item_mb));
            }
            let size = bytes.len() as u64;
            let sha256 = state.media.put(bytes).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Upload {
                content_type,
                filename: None,
                size,
                sha256,
                author: None,
                category: MediaCategory::Media,
            })
        };
        match fetched.await {
            Ok(upload) => uploads.push(upload),
            Err(err) => tracing::warn!(%url, %err, "could not fetch inbound media"),
        }
    }
    uploads
}

async fn route(state: &AppState, inbound: InboundMessage) -> ApiResult<serde_json::Value> {
    let (from, to) = (inbound.from.clone(), inbound.to.clone());
    Ok(match state.palaver.receive_inbound(inbound).await? {
        Inbound::Routed(m) | Inbound::Created(m) => {
            json!({"routed": true, "conversation_sid": m.conversation_sid.as_str(), "message_sid": m.sid.as_str()})
        }
        Inbound::Unroutable => {
            tracing::info!(%from, %to, "inbound message matches no conversation or address configuration; dropped");
            json!({"routed": false})
        }
    })
}

/// POST /v1/Channels/Messaging/Status — the gateway's status callback (`MessageSid`, `MessageStatus`,
/// `ErrorCode`).
pub(crate) async fn messaging_status(
    State(state): State<AppState>,
    CallerForm(form): CallerForm,
) -> ApiResult<Response> {
    let sid =
        form.get("MessageSid").or(form.get("SmsSid")).ok_or_else(|| ApiError::invalid("MessageSid", "is required"))?;
    let raw_status = form
        .get("MessageStatus")
        .or(form.get("SmsStatus"))
        .ok_or_else(|| ApiError::invalid("MessageStatus", "is required"))?;
    let status = DeliveryStatus::parse(raw_status)
        .ok_or_else(|| ApiError::invalid("MessageStatus", format!("'{raw_status}' is not a message status")))?;
    let update = DeliveryUpdate {
        status,
        channel_message_sid: None,
        error_code: form.get("ErrorCode").and_then(|c| c.parse().ok()).filter(|c| *c != 0),
        retry_at: None,
        last_error: None,
        now: time::OffsetDateTime::now_utc(),
    };
    match state.palaver.update_delivery(&ReceiptRef::ChannelMessage(sid.to_string()), update).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ApiError::not_found(format!("no delivery receipt for message {sid}"))),
    }
}

fn receipt_resource(scope: &Scope, account: &str, r: DeliveryReceipt) -> DeliveryReceiptResource {
    DeliveryReceiptResource {
        url: format!(
            "{}/Conversations/{}/Messages/{}/Receipts/{}",
            scope.base, r.conversation_sid, r.message_sid, r.sid
        ),
        sid: r.sid.to_string(),
        account_sid: account.to_string(),
        chat_service_sid: r.service_sid.to_string(),
        conversation_sid: r.conversation_sid.to_string(),
        message_sid: r.message_sid.to_string(),
        channel_message_sid: r.channel_message_sid,
        participant_sid: r.participant_sid.to_string(),
        status: r.status.as_str().to_string(),
        error_code: r.error_code.unwrap_or(0),
        date_created: date(r.date_created),
        date_updated: date(r.date_updated),
    }
}

fn message_sid(scope: &Scope) -> ApiResult<MessageSid> {
    let raw = scope.param("message");
    MessageSid::parse(raw).map_err(|_| ApiError::not_found(format!("Message {raw}")))
}

/// GET /v1/Conversations/{ConversationSid}/Messages/{MessageSid}/Receipts
pub(crate) async fn list_receipts(
    State(state): State<AppState>,
    scope: Scope,
    query: ListQuery,
) -> ApiResult<Response> {
    let request = query.page(50, false)?;
    let conv = ConversationRef::parse(scope.param("conversation"));
    let page = scope.palaver.list_receipts(&scope.service, &conv, &message_sid(&scope)?, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("delivery_receipts", page, |r| receipt_resource(&scope, &account, r))))
}

/// GET /v1/Conversations/{ConversationSid}/Messages/{MessageSid}/Receipts/{Sid}
pub(crate) async fn fetch_receipt(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let conv = ConversationRef::parse(scope.param("conversation"));
    let raw = scope.param("receipt");
    let sid = DeliveryReceiptSid::parse(raw).map_err(|_| ApiError::not_found(format!("Delivery receipt {raw}")))?;
    let receipt = scope.palaver.receipt(&scope.service, &conv, &message_sid(&scope)?, &sid).await?;
    Ok(json(StatusCode::OK, receipt_resource(&scope, state.credentials.account_sid.as_str(), receipt)))
}

fn address_resource(origin: &str, account: &str, a: AddressConfiguration) -> AddressConfigurationResource {
    let auto = &a.auto_creation;
    AddressConfigurationResource {
        url: format!("{origin}/v1/Configuration/Addresses/{}", a.sid),
        sid: a.sid.to_string(),
        account_sid: account.to_string(),
        kind: a.kind,
        address: a.address,
        friendly_name: a.friendly_name,
        auto_creation: json!({
            "enabled": auto.enabled,
            "type": auto.kind,
            "conversation_service_sid": auto.conversation_service_sid.as_ref().map(ToString::to_string),
            "webhook_url": auto.webhook_url,
            "webhook_method": auto.webhook_method,
            "webhook_filters": auto.webhook_filters,
            "studio_flow_sid": auto.studio_flow_sid,
            "studio_retry_count": auto.studio_retry_count,
        }),
        date_created: date(a.date_created),
        date_updated: date(a.date_updated),
        address_country: a.address_country,
    }
}

/// Reads the `AutoCreation.*` fields over `base` (the current settings, or the defaults).
fn auto_creation(form: &FormFields, mut auto: AutoCreation) -> ApiResult<AutoCreation> {
    if let Some(enabled) = form.bool("AutoCreation.Enabled")? {
        auto.enabled = enabled;
    }
    if let Some(kind) = form.get("AutoCreation.Type") {
        auto.kind = kind.to_ascii_lowercase();
    }
    if let Some(raw) = form.get("AutoCreation.ConversationServiceSid") {
        auto.conversation_service_sid =
            Some(ServiceSid::parse(raw).map_err(|e| ApiError::invalid("AutoCreation.ConversationServiceSid", e))?);
    }
    if let Some(url) = form.get("AutoCreation.WebhookUrl") {
        auto.webhook_url = (!url.is_empty()).then(|| url.to_string());
    }
    if let Some(method) = form.get("AutoCreation.WebhookMethod") {
        auto.webhook_method = Some(method.to_ascii_uppercase());
    }
    if form.get("AutoCreation.WebhookFilters").is_some() {
        auto.webhook_filters = form
            .all("AutoCreation.WebhookFilters")
            .iter()
            .flat_map(|f| f.split(','))
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
    }
    if let Some(flow) = form.get("AutoCreation.StudioFlowSid") {
        auto.studio_flow_sid = Some(flow.to_string());
    }
    if let Some(count) = form.get("AutoCreation.StudioRetryCount") {
        auto.studio_retry_count =
            Some(count.parse().map_err(|_| ApiError::invalid("AutoCreation.StudioRetryCount", "is not a number"))?);
    }
    Ok(auto)
}

fn address_sid(raw: &str) -> ApiResult<AddressConfigurationSid> {
    AddressConfigurationSid::parse(raw).map_err(|_| ApiError::not_found(format!("Address configuration {raw}")))
}

/// GET /v1/Configuration/Addresses
pub(crate) async fn list_addresses(
    State(state): State<AppState>,
    Origin(origin): Origin,
    query: ListQuery,
) -> ApiResult<Response> {
    let kind = query.get("Type").map(parse_address_type).transpose()?;
    let request = query.page(50, false)?;
    let page = state.palaver.list_address_configurations(kind, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(
        StatusCode::OK,
        request.respond("address_configurations", page, |a| address_resource(&origin, &account, a)),
    ))
}

/// POST /v1/Configuration/Addresses
pub(crate) async fn create_address(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: FormFields,
) -> ApiResult<Response> {
    let kind = parse_address_type(form.get("Type").ok_or_else(|| ApiError::invalid("Type", "is required"))?)?;
    let address = form.get("Address").ok_or_else(|| ApiError::invalid("Address", "is required"))?.to_string();
    let defaults = AutoCreation { kind: "default".into(), ..AutoCreation::default() };
    let create = CreateAddressConfiguration {
        kind,
        address,
        friendly_name: form.get("FriendlyName").map(str::to_string),
        auto_creation: auto_creation(&form, defaults)?,
        address_country: form.get("AddressCountry").map(str::to_string),
    };
    let created = state.palaver.create_address_configuration(create).await?;
    Ok(json(StatusCode::CREATED, address_resource(&origin, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Configuration/Addresses/{Sid} (also by address, as Twilio allows)
pub(crate) async fn fetch_address(
    State(state): State<AppState>,
    Origin(origin): Origin,
    axum::extract::Path(raw): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let config = find_address(&state, &raw).await?;
    Ok(json(StatusCode::OK, address_resource(&origin, state.credentials.account_sid.as_str(), config)))
}

async fn find_address(state: &AppState, raw: &str) -> ApiResult<AddressConfiguration> {
    if raw.starts_with("IG") {
        return Ok(state.palaver.address_configuration(&address_sid(raw)?).await?);
    }
    state
        .palaver
        .store()
        .find_address_configuration(raw)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Address configuration {raw}")))
}

/// POST /v1/Configuration/Addresses/{Sid}
pub(crate) async fn update_address(
    State(state): State<AppState>,
    Origin(origin): Origin,
    axum::extract::Path(raw): axum::extract::Path<String>,
    form: FormFields,
) -> ApiResult<Response> {
    let current = find_address(&state, &raw).await?;
    let patch = AddressConfigurationPatch {
        friendly_name: form.get("FriendlyName").map(str::to_string),
        auto_creation: Some(auto_creation(&form, current.auto_creation.clone())?),
        now: None,
    };
    let updated = state.palaver.update_address_configuration(&current.sid, patch).await?;
    Ok(json(StatusCode::OK, address_resource(&origin, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Configuration/Addresses/{Sid}
pub(crate) async fn delete_address(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let current = find_address(&state, &raw).await?;
    state.palaver.delete_address_configuration(&current.sid).await?;
    Ok(deleted())
}
