//! Webhook settings: `/v1/Configuration/Webhooks` (account), `/v1/Services/{IS}/Configuration/Webhooks`
//! (service) and `/v1/Conversations/{CH}/Webhooks` (conversation-scoped).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use palaver_api::rest::{ConversationScopedWebhookResource, WebhookConfigurationResource};
use palaver_api::sid::{ServiceSid, WebhookSid};
use palaver_core::service::CreateConversationWebhook;
use palaver_core::store::ConversationRef;
use palaver_core::webhook::*;
use serde_json::{Map, Value, json};

use super::configuration::Origin;
use super::{deleted, json};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::FormFields;
use crate::paging::ListQuery;
use crate::resources::date;
use crate::scope::Scope;

fn parse_filters(field: &'static str, values: Vec<String>) -> ApiResult<Vec<WebhookEventType>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|name| {
            WebhookEventType::parse(name)
                .ok_or_else(|| ApiError::invalid(field, format!("'{name}' is not a webhook event type")))
        })
        .collect()
}

fn settings_patch(form: &FormFields, account_level: bool) -> ApiResult<WebhookSettingsPatch> {
    let mut patch = WebhookSettingsPatch::default();
    if let Some(raw) = form.get("Method") {
        patch.method = Some(HookMethod::parse("Method", raw)?);
    }
    if form.get("Filters").is_some() {
        let filters = parse_filters("Filters", form.all("Filters"))?;
        if !account_level && let Some(user_event) = filters.iter().find(|f| f.is_user_event()) {
            return Err(ApiError::invalid(
                "Filters",
                format!("'{}' can only be set on the account's webhook configuration", user_event.as_str()),
            ));
        }
        patch.filters = Some(filters);
    }
    for (field, slot) in
        [("PreWebhookUrl", &mut patch.pre_webhook_url), ("PostWebhookUrl", &mut patch.post_webhook_url)]
    {
        if let Some(raw) = form.get(field) {
            *slot = Some((!raw.is_empty()).then(|| raw.to_string()));
        }
    }
    if let Some(raw) = form.get("Target") {
        if !account_level {
            return Err(ApiError::invalid("Target", "can only be set on the account's webhook configuration"));
        }
        match raw {
            "webhook" | "flex" => patch.target = Some(raw.to_string()),
            other => return Err(ApiError::invalid("Target", format!("'{other}' is not one of webhook, flex"))),
        }
    }
    Ok(patch)
}

fn settings_resource(
    url: String,
    account: &str,
    service: Option<&ServiceSid>,
    s: WebhookSettings,
) -> WebhookConfigurationResource {
    WebhookConfigurationResource {
        account_sid: account.to_string(),
        chat_service_sid: service.map(ToString::to_string),
        method: s.method.as_str().to_string(),
        filters: s.filters.iter().map(|f| f.as_str().to_string()).collect(),
        pre_webhook_url: s.pre_webhook_url,
        post_webhook_url: s.post_webhook_url,
        target: service.is_none().then_some(s.target),
        url,
    }
}

/// GET /v1/Configuration/Webhooks
pub(crate) async fn fetch_account(State(state): State<AppState>, Origin(origin): Origin) -> ApiResult<Response> {
    let settings = state.palaver.webhook_settings(&WebhookScope::Account).await?;
    let url = format!("{origin}/v1/Configuration/Webhooks");
    Ok(json(StatusCode::OK, settings_resource(url, state.credentials.account_sid.as_str(), None, settings)))
}

/// POST /v1/Configuration/Webhooks
pub(crate) async fn update_account(
    State(state): State<AppState>,
    Origin(origin): Origin,
    form: FormFields,
) -> ApiResult<Response> {
    let patch = settings_patch(&form, true)?;
    let settings = state.palaver.update_webhook_settings(&WebhookScope::Account, patch).await?;
    let url = format!("{origin}/v1/Configuration/Webhooks");
    Ok(json(StatusCode::OK, settings_resource(url, state.credentials.account_sid.as_str(), None, settings)))
}

fn service_sid(raw: &str) -> ApiResult<ServiceSid> {
    ServiceSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Services/{raw}")))
}

/// GET /v1/Services/{ChatServiceSid}/Configuration/Webhooks
pub(crate) async fn fetch_service(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(service): Path<String>,
) -> ApiResult<Response> {
    let sid = service_sid(&service)?;
    let settings = state.palaver.webhook_settings(&WebhookScope::Service(sid.clone())).await?;
    let url = format!("{origin}/v1/Services/{sid}/Configuration/Webhooks");
    Ok(json(StatusCode::OK, settings_resource(url, state.credentials.account_sid.as_str(), Some(&sid), settings)))
}

/// POST /v1/Services/{ChatServiceSid}/Configuration/Webhooks
pub(crate) async fn update_service(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Path(service): Path<String>,
    form: FormFields,
) -> ApiResult<Response> {
    let sid = service_sid(&service)?;
    let patch = settings_patch(&form, false)?;
    let settings = state.palaver.update_webhook_settings(&WebhookScope::Service(sid.clone()), patch).await?;
    let url = format!("{origin}/v1/Services/{sid}/Configuration/Webhooks");
    Ok(json(StatusCode::OK, settings_resource(url, state.credentials.account_sid.as_str(), Some(&sid), settings)))
}

fn scoped_resource(scope: &Scope, account: &str, hook: ConversationWebhook) -> ConversationScopedWebhookResource {
    let mut configuration = Map::new();
    if let Some(url) = &hook.url {
        configuration.insert("url".into(), json!(url));
    }
    configuration.insert("method".into(), json!(hook.method.as_str()));
    if hook.target == ScopedTarget::Webhook {
        configuration.insert("filters".into(), json!(hook.filters.iter().map(|f| f.as_str()).collect::<Vec<_>>()));
    }
    if hook.target == ScopedTarget::Trigger {
        configuration.insert("triggers".into(), json!(hook.triggers));
    }
    if let Some(flow) = &hook.flow_sid {
        configuration.insert("flow_sid".into(), json!(flow));
    }
    if let Some(replay) = hook.replay_after {
        configuration.insert("replay_after".into(), json!(replay));
    }
    ConversationScopedWebhookResource {
        url: format!("{}/Conversations/{}/Webhooks/{}", scope.base, hook.conversation_sid, hook.sid),
        sid: hook.sid.to_string(),
        account_sid: account.to_string(),
        conversation_sid: hook.conversation_sid.to_string(),
        target: hook.target.as_str().to_string(),
        configuration: Value::Object(configuration),
        date_created: date(hook.date_created),
        date_updated: date(hook.date_updated),
    }
}

fn conversation_ref(scope: &Scope) -> ConversationRef {
    ConversationRef::parse(scope.param("conversation"))
}

fn webhook_sid(scope: &Scope) -> ApiResult<WebhookSid> {
    let raw = scope.param("webhook");
    WebhookSid::parse(raw).map_err(|_| ApiError::not_found(format!("Webhook {raw}")))
}

fn triggers(form: &FormFields) -> Option<Vec<String>> {
    form.get("Configuration.Triggers").is_some().then(|| {
        form.all("Configuration.Triggers")
            .iter()
            .flat_map(|t| t.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    })
}

/// GET /v1/Conversations/{ConversationSid}/Webhooks
pub(crate) async fn list(State(state): State<AppState>, scope: Scope, query: ListQuery) -> ApiResult<Response> {
    let request = query.page(MAX_SCOPED_WEBHOOKS as u32, false)?;
    let page =
        scope.palaver.list_conversation_webhooks(&scope.service, &conversation_ref(&scope), request.page).await?;
    let account = state.credentials.account_sid.to_string();
    Ok(json(StatusCode::OK, request.respond("webhooks", page, |h| scoped_resource(&scope, &account, h))))
}

/// POST /v1/Conversations/{ConversationSid}/Webhooks
pub(crate) async fn create(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let raw_target = form.get("Target").ok_or_else(|| ApiError::invalid("Target", "is required"))?;
    let target = ScopedTarget::parse(raw_target)
        .ok_or_else(|| ApiError::invalid("Target", format!("'{raw_target}' is not one of webhook, trigger, studio")))?;
    let create = CreateConversationWebhook {
        target,
        url: form.get("Configuration.Url").filter(|u| !u.is_empty()).map(str::to_string),
        method: form.get("Configuration.Method").map(|m| HookMethod::parse("Configuration.Method", m)).transpose()?,
        filters: parse_filters("Configuration.Filters", form.all("Configuration.Filters"))?,
        triggers: triggers(&form).unwrap_or_default(),
        flow_sid: form.get("Configuration.FlowSid").map(str::to_string),
        replay_after: form
            .get("Configuration.ReplayAfter")
            .map(|raw| {
                raw.parse::<i64>().map_err(|_| ApiError::invalid("Configuration.ReplayAfter", "is not an integer"))
            })
            .transpose()?,
    };
    let created = scope.palaver.create_conversation_webhook(&scope.service, &conversation_ref(&scope), create).await?;
    Ok(json(StatusCode::CREATED, scoped_resource(&scope, state.credentials.account_sid.as_str(), created)))
}

/// GET /v1/Conversations/{ConversationSid}/Webhooks/{Sid}
pub(crate) async fn fetch(State(state): State<AppState>, scope: Scope) -> ApiResult<Response> {
    let found =
        scope.palaver.conversation_webhook(&scope.service, &conversation_ref(&scope), &webhook_sid(&scope)?).await?;
    Ok(json(StatusCode::OK, scoped_resource(&scope, state.credentials.account_sid.as_str(), found)))
}

/// POST /v1/Conversations/{ConversationSid}/Webhooks/{Sid}
pub(crate) async fn update(State(state): State<AppState>, scope: Scope, form: FormFields) -> ApiResult<Response> {
    let patch = ConversationWebhookPatch {
        url: form.get("Configuration.Url").map(str::to_string),
        method: form.get("Configuration.Method").map(|m| HookMethod::parse("Configuration.Method", m)).transpose()?,
        filters: form
            .get("Configuration.Filters")
            .is_some()
            .then(|| parse_filters("Configuration.Filters", form.all("Configuration.Filters")))
            .transpose()?,
        triggers: triggers(&form),
        flow_sid: form.get("Configuration.FlowSid").map(str::to_string),
        now: None,
    };
    let sid = webhook_sid(&scope)?;
    let updated =
        scope.palaver.update_conversation_webhook(&scope.service, &conversation_ref(&scope), &sid, patch).await?;
    Ok(json(StatusCode::OK, scoped_resource(&scope, state.credentials.account_sid.as_str(), updated)))
}

/// DELETE /v1/Conversations/{ConversationSid}/Webhooks/{Sid}
pub(crate) async fn delete(scope: Scope) -> ApiResult<Response> {
    scope.palaver.delete_conversation_webhook(&scope.service, &conversation_ref(&scope), &webhook_sid(&scope)?).await?;
    Ok(deleted())
}
