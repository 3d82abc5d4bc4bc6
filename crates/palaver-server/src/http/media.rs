//! Media upload and download: `/v1/Media` (the default service, or the access token's) and
//! `/v1/Services/{IS}/Media`, with Basic credentials or an access token in `X-Twilio-Token` (as the SDK sends
//! to Twilio's media service); and `/v1/MediaContent/{ME}`, the signed short-lived content URL.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palaver_api::sid::{MediaSid, ServiceSid};
use palaver_core::media::{Media, MediaCategory, Upload};
use palaver_core::store::{ConversationRef, ParticipantRef};
use serde_json::{Value, json};

use super::configuration::Origin;
use super::json;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::media::{MediaStoreError, content_url_valid, signed_content_url};
use crate::resources::date;

/// Who is asking.
enum Caller {
    /// The account (Basic credentials).
    Account,
    /// A chat user of a service (access token).
    User { identity: String, service: Option<ServiceSid> },
}

async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    if let Some(token) = headers.get("X-Twilio-Token").and_then(|v| v.to_str().ok()) {
        let verified = crate::token::verify(state, token).await.map_err(|_| crate::auth::denied())?;
        return Ok(Caller::User { identity: verified.identity, service: verified.service_sid });
    }
    if crate::auth::basic_credentials_valid(state, headers).await? {
        return Ok(Caller::Account);
    }
    Err(crate::auth::denied())
}

/// The service a request is about: the path's, else the token's, else the default one. A user may only use
/// the service of their token.
async fn service_of(state: &AppState, caller: &Caller, path_service: Option<&str>) -> ApiResult<ServiceSid> {
    let from_path = path_service
        .map(|raw| ServiceSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Services/{raw}"))))
        .transpose()?;
    let token_service = match caller {
        Caller::User { service, .. } => service.clone(),
        Caller::Account => None,
    };
    let service = match from_path.or(token_service.clone()) {
        Some(service) => service,
        None => state.palaver.default_service().await?,
    };
    if let Caller::User { .. } = caller {
        let allowed = match &token_service {
            Some(own) => *own == service,
            None => service == state.palaver.default_service().await?,
        };
        if !allowed {
            return Err(crate::auth::denied());
        }
    }
    Ok(service)
}

fn resource(origin: &str, account: &str, auth_token: &str, media: &Media) -> Value {
    let url = format!("{origin}/v1/Services/{}/Media/{}", media.service_sid, media.sid);
    json!({
        "sid": media.sid.as_str(),
        "account_sid": account,
        "service_sid": media.service_sid.as_str(),
        "date_created": date(media.date_created),
        "date_upload_completed": date(media.date_created),
        "channel_sid": media.conversation_sid.as_ref().map(ToString::to_string),
        "message_sid": media.message_sid.as_ref().map(ToString::to_string),
        "author": media.author,
        "content_type": media.content_type,
        "size": media.size,
        "filename": media.filename,
        "category": media.category.as_str(),
        "url": url,
        "links": {
            "content": format!("{url}/Content"),
            "content_direct_temporary": signed_content_url(origin, auth_token, media.sid.as_str(), time::OffsetDateTime::now_utc()),
        },
    })
}

/// POST /v1/Media and /v1/Services/{ChatServiceSid}/Media — the body is the file; `Content-Type` its type;
/// query `Filename` and `Category` (`media`, `body`, `history`).
pub(crate) async fn upload(
    State(state): State<AppState>,
    Origin(origin): Origin,
    service: Option<Path<String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers).await?;
    let limits = palaver_core::media::MediaLimits::default();
    // Only a body over the size limit fails to read (the route's body limit).
    let body = body.map_err(|_| ApiError::from(palaver_core::Error::MediaTooLarge(limits.item_mb)))?;
    let service = service_of(&state, &caller, service.as_deref().map(String::as_str)).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let category = query.get("Category").map(|c| MediaCategory::parse(c)).transpose()?.unwrap_or(MediaCategory::Media);
    if body.is_empty() {
        return Err(ApiError::invalid("body", "the file is empty"));
    }
    // Checked before storing, so refused uploads leave nothing behind.
    limits.check_upload(category, &content_type)?;
    if body.len() as u64 > limits.item_bytes() {
        return Err(palaver_core::Error::MediaTooLarge(limits.item_mb).into());
    }
    let size = body.len() as u64;
    let sha256 = state.media.put(body).await.map_err(storage_error)?;
    let upload = Upload {
        content_type,
        filename: query.get("Filename").filter(|f| !f.is_empty()).cloned(),
        size,
        sha256,
        author: match caller {
            Caller::User { identity, .. } => Some(identity),
            Caller::Account => None,
        },
        category,
    };
    let media = state.palaver.record_upload(&service, upload).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::CREATED, resource(&origin, &account, &state.credentials.auth_token, &media)))
}

fn storage_error(err: MediaStoreError) -> ApiError {
    match err {
        MediaStoreError::Missing => ApiError::not_found("media content"),
        MediaStoreError::Backend(detail) => palaver_core::Error::Storage(detail).into(),
    }
}

fn media_sid(raw: &str) -> ApiResult<MediaSid> {
    MediaSid::parse(raw).map_err(|_| ApiError::not_found(format!("Media {raw}")))
}

/// The service and media SID of a path: `/Media/{ME}` or `/Services/{IS}/Media/{ME}`.
fn path_parts(params: &HashMap<String, String>) -> ApiResult<(Option<String>, MediaSid)> {
    let sid = media_sid(params.get("media").map_or("", String::as_str))?;
    Ok((params.get("service").cloned(), sid))
}

async fn find(state: &AppState, headers: &HeaderMap, params: &HashMap<String, String>) -> ApiResult<Media> {
    let caller = caller(state, headers).await?;
    let (service, sid) = path_parts(params)?;
    let service = service_of(state, &caller, service.as_deref()).await?;
    let media = state.palaver.media(&service, &sid).await?;
    // A chat user reads the media of conversations they take part in, and their own unsent uploads.
    if let Caller::User { identity, .. } = &caller {
        let allowed = match &media.conversation_sid {
            Some(conversation) => state
                .palaver
                .participant(
                    &service,
                    &ConversationRef::Sid(conversation.clone()),
                    &ParticipantRef::Identity(identity.clone()),
                )
                .await
                .is_ok(),
            None => media.author.as_deref() == Some(identity.as_str()),
        };
        if !allowed {
            return Err(ApiError::new(palaver_api::ErrorCode::Forbidden, "this media belongs to another conversation"));
        }
    }
    Ok(media)
}

/// GET /v1/Media/{Sid} and /v1/Services/{ChatServiceSid}/Media/{Sid}
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let media = find(&state, &headers, &params).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, resource(&origin, &account, &state.credentials.auth_token, &media)))
}

/// POST /mcs/v1/Services/{ChatServiceSid}/MediaSet — the JS SDK's batch lookup: `{"command": "get", "list":
/// [{"media_sid": "ME…"}, …]}`, answered with one `{code, media_record}` per item, in order (a missing or
/// forbidden item gets its error code instead of a record).
pub(crate) async fn media_set(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // Who asks comes first: an anonymous caller learns nothing, not even whether its body would do.
    caller(&state, &headers).await?;
    let request: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("is not JSON: {e}")))?;
    if request.get("command").and_then(Value::as_str) != Some("get") {
        return Err(ApiError::invalid("command", "only get is supported"));
    }
    let list = request.get("list").and_then(Value::as_array).cloned().unwrap_or_default();
    if list.len() > 100 {
        return Err(ApiError::invalid("list", "at most 100 media per request"));
    }
    let account = state.credentials.account_sid.to_string();
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let sid = item.get("media_sid").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut one = params.clone();
        one.insert("media".into(), sid);
        out.push(match find(&state, &headers, &one).await {
            Ok(media) => {
                json!({"code": 200, "media_record": resource(&origin, &account, &state.credentials.auth_token, &media)})
            }
            Err(err) => {
                let error = err.realtime();
                json!({"code": error.status, "error": {"code": error.code, "message": error.message}})
            }
        });
    }
    Ok(json(StatusCode::OK, Value::Array(out)))
}

async fn content_response(state: &AppState, media: &Media) -> ApiResult<Response> {
    let bytes = state.media.get(&media.sha256).await.map_err(storage_error)?;
    let mut response = ([(header::CONTENT_TYPE, media.content_type.clone())], bytes).into_response();
    let headers = response.headers_mut();
    for (name, value) in untrusted_content_headers(media.filename.as_deref()) {
        headers.insert(name, value);
    }
    Ok(response)
}

/// Headers that keep uploaded content from running as part of this server's origin, whatever its type: it is
/// always an attachment (a browser downloads it instead of rendering it), never sniffed into another type, and
/// under a policy that allows no script, style, frame or plugin should it be rendered anyway.
fn untrusted_content_headers(filename: Option<&str>) -> Vec<(header::HeaderName, header::HeaderValue)> {
    let disposition = match filename {
        Some(name) => {
            let plain = name.replace(|c: char| c == '"' || c == '\\' || c.is_control() || !c.is_ascii(), "_");
            let mut value = format!("attachment; filename=\"{plain}\"");
            if !name.is_ascii() {
                // RFC 6266 / 8187: the exact name, UTF-8 and percent-encoded, for clients that read it.
                value.push_str("; filename*=UTF-8''");
                for byte in name.bytes() {
                    if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                        value.push(char::from(byte));
                    } else {
                        value.push_str(&format!("%{byte:02X}"));
                    }
                }
            }
            value
        }
        None => "attachment".to_string(),
    };
    let mut out = vec![
        (header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff")),
        (
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; sandbox; frame-ancestors 'none'"),
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            header::HeaderValue::from_static("cross-origin"),
        ),
    ];
    let disposition =
        header::HeaderValue::from_str(&disposition).unwrap_or_else(|_| header::HeaderValue::from_static("attachment"));
    out.push((header::CONTENT_DISPOSITION, disposition));
    out
}

/// GET /v1/Media/{Sid}/Content and /v1/Services/{ChatServiceSid}/Media/{Sid}/Content
pub(crate) async fn content(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let media = find(&state, &headers, &params).await?;
    content_response(&state, &media).await
}

/// GET /v1/MediaContent/{Sid}?Expires=…&Signature=… — no credentials; the signature is the permission.
pub(crate) async fn signed_content(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let sid = media_sid(&raw)?;
    let expires: i64 = query.get("Expires").and_then(|e| e.parse().ok()).unwrap_or(0);
    let signature = query.get("Signature").map_or("", String::as_str);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if !content_url_valid(&state.credentials.auth_token, sid.as_str(), expires, signature, now) {
        return Err(ApiError::new(palaver_api::ErrorCode::Forbidden, "the content URL is invalid or has expired"));
    }
    let media = state.palaver.store().find_media(&sid).await?;
    content_response(&state, &media).await
}
