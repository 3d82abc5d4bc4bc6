//! Every route of the REST API, in one list, and the handlers (one module per resource).
//!
//! Each conversation-service resource is served both at `/v1/<Resource>` (the default service) and at
//! `/v1/Services/{ChatServiceSid}/<Resource>`; the [`Scope`](crate::scope::Scope) extractor tells them apart.

mod channels;
mod configuration;
mod conversations;
mod media;
mod messages;
mod palaver;
mod participant_conversations;
mod participants;
mod push;
mod roles;
mod services;
mod users;
mod webhooks;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use palaver_api::ErrorCode;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

/// Routes that exist once per conversation service: `(path below the service, handlers)`.
fn service_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/Conversations", get(conversations::list).post(conversations::create)),
        (
            "/Conversations/{conversation}",
            get(conversations::fetch).post(conversations::update).delete(conversations::delete),
        ),
        ("/Conversations/{conversation}/Participants", get(participants::list).post(participants::create)),
        (
            "/Conversations/{conversation}/Participants/{participant}",
            get(participants::fetch).post(participants::update).delete(participants::delete),
        ),
        ("/Conversations/{conversation}/Messages", get(messages::list).post(messages::create)),
        (
            "/Conversations/{conversation}/Messages/{message}",
            get(messages::fetch).post(messages::update).delete(messages::delete),
        ),
        ("/Conversations/{conversation}/Messages/{message}/Receipts", get(channels::list_receipts)),
        ("/Conversations/{conversation}/Messages/{message}/Receipts/{receipt}", get(channels::fetch_receipt)),
        ("/Conversations/{conversation}/Webhooks", get(webhooks::list).post(webhooks::create)),
        (
            "/Conversations/{conversation}/Webhooks/{webhook}",
            get(webhooks::fetch).post(webhooks::update).delete(webhooks::delete),
        ),
        ("/ConversationWithParticipants", post(conversations::create_with_participants)),
        ("/ParticipantConversations", get(participant_conversations::list)),
        ("/Users", get(users::list).post(users::create)),
        ("/Users/{user}", get(users::fetch).post(users::update).delete(users::delete)),
        ("/Users/{user}/Conversations", get(users::list_conversations)),
        (
            "/Users/{user}/Conversations/{conversation}",
            get(users::fetch_conversation).post(users::update_conversation).delete(users::leave_conversation),
        ),
        ("/Roles", get(roles::list).post(roles::create)),
        ("/Roles/{role}", get(roles::fetch).post(roles::update).delete(roles::delete)),
    ]
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new()
        .route("/v1/Configuration", get(configuration::fetch).post(configuration::update))
        .route("/v1/Configuration/Webhooks", get(webhooks::fetch_account).post(webhooks::update_account))
        .route(
            "/v1/Services/{service}/Configuration/Webhooks",
            get(webhooks::fetch_service).post(webhooks::update_service),
        )
        .route("/v1/Configuration/Addresses", get(channels::list_addresses).post(channels::create_address))
        .route(
            "/v1/Configuration/Addresses/{address}",
            get(channels::fetch_address).post(channels::update_address).delete(channels::delete_address),
        )
        .route("/v1/Services", get(services::list).post(services::create))
        .route("/v1/Services/{service}", get(services::fetch).delete(services::delete))
        .route(
            "/v1/Services/{service}/Configuration",
            get(services::fetch_configuration).post(services::update_configuration),
        )
        .merge(push::routes());
    for (path, handlers) in service_routes() {
        api = api
            .route(&format!("/v1{path}"), handlers.clone())
            .route(&format!("/v1/Services/{{service}}{path}"), handlers);
    }
    let api = api
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_basic_auth));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/realtime", get(crate::gateway::upgrade))
        .route("/v3/wsconnect", get(crate::twilsock::upgrade))
        // Called by the messaging gateway and mail relays, which sign their requests instead of logging in.
        .route("/v1/Channels/Messaging/Inbound", post(channels::inbound_messaging))
        .route("/v1/Channels/Messaging/Status", post(channels::messaging_status))
        .route("/v1/Channels/Email/Inbound", post(channels::inbound_email))
        // Media accept Basic credentials or an access token (X-Twilio-Token), so they check for themselves.
        .route("/v1/Media", media_upload())
        .route("/v1/Services/{service}/Media", media_upload())
        .route("/v1/Media/{media}", get(media::fetch))
        .route("/v1/Services/{service}/Media/{media}", get(media::fetch))
        .route("/v1/Media/{media}/Content", get(media::content))
        .route("/v1/Services/{service}/Media/{media}/Content", get(media::content))
        .route("/v1/MediaContent/{media}", get(media::signed_content))
        // The same media in the shape of Twilio's media service, where the JS SDK's Configuration points it.
        .route("/mcs/v1/Services/{service}/Media", media_upload())
        .route("/mcs/v1/Services/{service}/Media/{media}", get(media::fetch))
        .route("/mcs/v1/Services/{service}/Media/{media}/Content", get(media::content))
        .route("/mcs/v1/Services/{service}/MediaSet", post(media::media_set))
        .merge(api)
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_basic_auth)),
        )
        .merge(palaver::routes(state.clone()))
        .merge(crate::console::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::error::name_missing_resource))
        .layer(axum::middleware::from_fn(crate::error::answer_panics))
        .layer(axum::middleware::from_fn(crate::form::refuse_nul_characters))
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.limits.request_timeout, crate::limits::limit_request_time))
        .layer(axum::middleware::from_fn(crate::limits::limit_connection_rate))
        // Outermost, so that every answer (a refusal by the layers above included) carries the request id.
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), crate::observe::observe_request))
        .with_state(state)
}

fn media_upload() -> MethodRouter<AppState> {
    let limit = palaver_core::media::MediaLimits::default().item_bytes() as usize;
    post(media::upload).layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// GET /healthz — answers 200 while the server runs and its store takes writes, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let probe = tokio::time::timeout(HEALTH_PROBE_TIMEOUT, state.palaver.store().check_writable()).await;
    match probe {
        Ok(Ok(())) => "ok".into_response(),
        Ok(Err(err)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: the store cannot write: {err}")).into_response()
        }
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: the store did not answer a write in time").into_response()
        }
    }
}

/// GET /readyz — whether a load balancer should send this node traffic: 200 when the database takes writes,
/// the cluster bus is connected (when the node is in a cluster) and the node is not draining; 503 otherwise.
/// The JSON body says which check failed.
async fn readyz(State(state): State<AppState>) -> Response {
    let probe = tokio::time::timeout(HEALTH_PROBE_TIMEOUT, state.palaver.store().check_writable()).await;
    let database = match probe {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(err)) => format!("cannot write: {err}"),
        Err(_) => "did not answer a write in time".to_string(),
    };
    let nats = match &state.cluster {
        None => "not configured",
        Some(bus) if bus.is_connected() => "ok",
        Some(_) => "disconnected",
    };
    let draining = state.draining.load(std::sync::atomic::Ordering::Acquire);
    let ready = database == "ok" && nats != "disconnected" && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(
        status,
        serde_json::json!({
            "status": if ready { "ready" } else { "unready" },
            "database": database,
            "nats": nats,
            "draining": draining,
        }),
    )
}

/// GET /metrics — the server's metrics (`docs/operations.md`) in the Prometheus text format, or in OpenMetrics
/// when the scraper's `Accept` asks for it. Basic credentials as for the REST API (an API key suits a scraper).
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let text = state.metrics.render(&state.palaver, openmetrics).await;
    let content_type =
        if openmetrics { crate::metrics::OPENMETRICS_CONTENT_TYPE } else { crate::metrics::PROMETHEUS_CONTENT_TYPE };
    ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
}

/// How long `/healthz` and `/readyz` wait for their probe write.
const HEALTH_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("Method {method} is not allowed on {}", uri.path()))
}

/// A JSON response with a status.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}

/// The response to a successful DELETE.
pub(crate) fn deleted() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
