//! Push notification resources: credentials (`/v1/Credentials`), a service's bindings
//! (`/v1/Services/{IS}/Bindings`) and its notification settings (`/v1/Services/{IS}/Configuration/Notifications`).
//!
//! A credential's keys are checked when they are given (a key that does not parse is a 400 naming the field,
//! not a failure at the first push) and never returned.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use palaver_api::rest::{BindingResource, CredentialResource, NotificationResource};
use palaver_api::sid::{CredentialSid, PushBindingSid};
use palaver_core::push::*;
use serde_json::json;

use super::configuration::Origin;
use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::push::keys;
use crate::resources::date;
use crate::scope::Scope;

/// The routes of this module (behind the REST API's authentication).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/Credentials", get(list_credentials).post(create_credential))
        .route("/v1/Credentials/{credential}", get(fetch_credential).post(update_credential).delete(delete_credential))
        .route("/v1/Services/{service}/Bindings", get(list_bindings))
        .route("/v1/Services/{service}/Bindings/{binding}", get(fetch_binding).delete(delete_binding))
        .route(
            "/v1/Services/{service}/Configuration/Notifications",
            get(fetch_notifications).post(update_notifications),
        )
}

fn credential_resource(origin: &str, account: &str, c: &Credential) -> CredentialResource {
    CredentialResource {
        url: format!("{origin}/v1/Credentials/{}", c.sid),
        sid: c.sid.to_string(),
        account_sid: account.to_string(),
        friendly_name: c.friendly_name.clone(),
        kind: c.kind.as_str().to_string(),
        sandbox: Some(if c.sandbox { "True" } else { "False" }.to_string()),
        date_created: date(c.date_created),
        date_updated: date(c.date_updated),
        public_key: keys::vapid_public_key(c),
    }
}

fn credential_sid(raw: &str) -> ApiResult<CredentialSid> {
    CredentialSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Credentials/{raw}")))
}

/// Checks that `credential`'s keys can sign for its push service.
fn check_keys(credential: &Credential) -> ApiResult<()> {
    keys::provider_keys(credential).map(drop).map_err(|e| ApiError::invalid(e.field, e.reason))
}

/// GET /v1/Credentials
pub(crate) async fn list_credentials(
    State(state): State<AppState>,
    Origin(origin): Origin,
    query: ListQuery,
) -> ApiResult<Response> {
    let request = query.page(100, false)?;
    let page = state.palaver.list_credentials(request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("credentials", page, |c| credential_resource(&origin, &account, &c))))
}

/// POST /v1/Credentials
pub(crate) async fn create_credential(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: FormFields,
) -> ApiResult<Response> {
    let kind =
        CredentialKind::parse("Type", form.get("Type").ok_or_else(|| ApiError::invalid("Type", "is required"))?)?;
    let mut secrets = CredentialSecrets {
        certificate: form.get("Certificate").map(str::to_string),
        private_key: form.get("PrivateKey").map(str::to_string),
        api_key: form.get("ApiKey").map(str::to_string),
        secret: form.get("Secret").map(str::to_string),
    };
    if kind == CredentialKind::WebPush && secrets.private_key.is_none() {
        // A browser subscribes with the public half: the server may as well make the pair.
        secrets.private_key = Some(keys::Es256Key::generate_pem());
    }
    let create = CreateCredential {
        kind,
        friendly_name: form.get("FriendlyName").map(str::to_string),
        sandbox: form.bool("Sandbox")?.unwrap_or(false),
        secrets,
    };
    let unchecked = Credential {
        sid: CredentialSid::generate(),
        friendly_name: create.friendly_name.clone(),
        kind,
        sandbox: create.sandbox,
        secrets: create.secrets.clone(),
        date_created: time::OffsetDateTime::UNIX_EPOCH,
        date_updated: time::OffsetDateTime::UNIX_EPOCH,
    };
    check_keys(&unchecked)?;
    let created = state.palaver.create_credential(create).await?;
    Ok(json(StatusCode::CREATED, credential_resource(&origin, state.credentials.account_sid.as_str(), &created)))
}

/// GET /v1/Credentials/{Sid}
pub(crate) async fn fetch_credential(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let credential = state.palaver.credential(&credential_sid(&raw)?).await?;
    Ok(json(StatusCode::OK, credential_resource(&origin, state.credentials.account_sid.as_str(), &credential)))
}

/// POST /v1/Credentials/{Sid}
pub(crate) async fn update_credential(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(raw): Path<String>,
    form: FormFields,
) -> ApiResult<Response> {
    let sid = credential_sid(&raw)?;
    let current = state.palaver.credential(&sid).await?;
    let patch = CredentialPatch {
        friendly_name: form.get("FriendlyName").map(str::to_string),
        kind: form.get("Type").map(|t| CredentialKind::parse("Type", t)).transpose()?,
        sandbox: form.bool("Sandbox")?,
        certificate: form.get("Certificate").map(str::to_string),
        private_key: form.get("PrivateKey").map(str::to_string),
        api_key: form.get("ApiKey").map(str::to_string),
        secret: form.get("Secret").map(str::to_string),
        now: None,
    };
    check_keys(&patch.clone().apply(current))?;
    let updated = state.palaver.update_credential(&sid, patch).await?;
    Ok(json(StatusCode::OK, credential_resource(&origin, state.credentials.account_sid.as_str(), &updated)))
}

/// DELETE /v1/Credentials/{Sid}
pub(crate) async fn delete_credential(State(state): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    state.palaver.delete_credential(&credential_sid(&raw)?).await?;
    Ok(deleted())
}

fn binding_resource(scope: &Scope, account: &str, b: &PushBinding) -> BindingResource {
    BindingResource {
        url: format!("{}/Bindings/{}", scope.base, b.sid),
        sid: b.sid.to_string(),
        account_sid: account.to_string(),
        chat_service_sid: b.service_sid.to_string(),
        credential_sid: b.credential_sid.as_ref().map(ToString::to_string),
        date_created: date(b.date_created),
        date_updated: date(b.date_updated),
        endpoint: b.endpoint(),
        identity: b.identity.clone(),
        binding_type: b.kind.as_str().to_string(),
        message_types: b.message_types.iter().map(|t| t.as_str().to_string()).collect(),
    }
}

fn binding_sid(scope: &Scope) -> ApiResult<PushBindingSid> {
    let raw = scope.param("binding");
    PushBindingSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Bindings/{raw}")))
}

/// GET /v1/Services/{ChatServiceSid}/Bindings
pub(crate) async fn list_bindings(
    State(state): State<AppState>,
    scope: Scope,
    query: ListQuery,
) -> ApiResult<Response> {
    let kinds =
        query.all("BindingType").iter().map(|k| BindingType::parse("BindingType", k)).collect::<Result<Vec<_>, _>>()?;
    let filter = BindingFilter { kinds, identities: query.all("Identity") };
    let request = query.page(100, false)?;
    let page = state.palaver.list_push_bindings(&scope.service, &filter, request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("bindings", page, |b| binding_resource(&scope, &account, &b))))
}

/// GET /v1/Services/{ChatServiceSid}/Bindings/{Sid}
pub(crate) async fn fetch_binding(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let binding = state.palaver.push_binding(&scope.service, &binding_sid(&scope)?).await?;
    Ok(json(StatusCode::OK, binding_resource(&scope, state.credentials.account_sid.as_str(), &binding)))
}

/// DELETE /v1/Services/{ChatServiceSid}/Bindings/{Sid}
pub(crate) async fn delete_binding(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    state.palaver.delete_push_binding(&scope.service, &binding_sid(&scope)?).await?;
    Ok(deleted())
}

fn notification_resource(scope: &Scope, account: &str, s: &NotificationSettings) -> NotificationResource {
    let kind = |n: &EventNotification| json!({"enabled": n.enabled, "template": n.template, "sound": n.sound});
    let mut new_message = kind(&s.new_message);
    new_message["badge_count_enabled"] = json!(s.badge_count_enabled);
    new_message["with_media"] = json!({"enabled": s.with_media.enabled, "template": s.with_media.template});
    NotificationResource {
        account_sid: account.to_string(),
        chat_service_sid: scope.service.to_string(),
        new_message,
        added_to_conversation: kind(&s.added_to_conversation),
        removed_from_conversation: kind(&s.removed_from_conversation),
        log_enabled: s.log_enabled,
        url: format!("{}/Configuration/Notifications", scope.base),
    }
}

/// GET /v1/Services/{ChatServiceSid}/Configuration/Notifications
pub(crate) async fn fetch_notifications(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let settings = state.palaver.notification_settings(&scope.service).await?;
    Ok(json(StatusCode::OK, notification_resource(&scope, state.credentials.account_sid.as_str(), &settings)))
}

/// POST /v1/Services/{ChatServiceSid}/Configuration/Notifications
pub(crate) async fn update_notifications(
    State(state): State<AppState>,
    scope: Scope,
    form: FormFields,
) -> ApiResult<Response> {
    let kind = |prefix: &'static str, enabled: &'static str| -> ApiResult<EventNotificationPatch> {
        Ok(EventNotificationPatch {
            enabled: form.bool(enabled)?,
            template: form.get(&format!("{prefix}.Template")).map(str::to_string),
            sound: form.get(&format!("{prefix}.Sound")).map(str::to_string),
        })
    };
    let patch = NotificationSettingsPatch {
        log_enabled: form.bool("LogEnabled")?,
        new_message: kind("NewMessage", "NewMessage.Enabled")?,
        badge_count_enabled: form.bool("NewMessage.BadgeCountEnabled")?,
        with_media: kind("NewMessage.WithMedia", "NewMessage.WithMedia.Enabled")?,
        added_to_conversation: kind("AddedToConversation", "AddedToConversation.Enabled")?,
        removed_from_conversation: kind("RemovedFromConversation", "RemovedFromConversation.Enabled")?,
    };
    let settings = state.palaver.update_notification_settings(&scope.service, patch).await?;
    Ok(json(StatusCode::OK, notification_resource(&scope, state.credentials.account_sid.as_str(), &settings)))
}
