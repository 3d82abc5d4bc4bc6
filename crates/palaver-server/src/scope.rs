//! Which conversation service a request works in: the one named in `/v1/Services/{ChatServiceSid}/…`, or the
//! account's default service for the unscoped paths. The scope also knows the absolute URL prefix under which
//! the request's resources live, so responses link back to the same form of path.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use palaver_api::sid::ServiceSid;

use crate::AppState;
use crate::error::ApiError;

/// The service and URL prefix of a request.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// The service.
    pub(crate) service: ServiceSid,
    /// `http://host/v1` or `http://host/v1/Services/IS…`.
    pub(crate) base: String,
    /// Path parameters of the route, by name.
    pub(crate) params: HashMap<String, String>,
    /// The domain, acting for this REST call: its changes fire post-event webhooks only when the request says
    /// `X-Twilio-Webhook-Enabled: true`, as in Twilio.
    pub(crate) palaver: palaver_core::Palaver,
}

/// Whether a request asks for webhooks (`X-Twilio-Webhook-Enabled: true`); absent means no.
///
/// # Errors
/// When the header is neither `true` nor `false`.
pub(crate) fn webhooks_enabled(parts: &Parts) -> Result<bool, ApiError> {
    let Some(header) = parts.headers.get(WEBHOOK_ENABLED) else { return Ok(false) };
    let value = String::from_utf8_lossy(header.as_bytes());
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid(WEBHOOK_ENABLED, format!("'{value}' is not true or false"))),
    }
}

const WEBHOOK_ENABLED: &str = "X-Twilio-Webhook-Enabled";

impl Scope {
    /// A path parameter the route declares.
    pub(crate) fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// The origin a client used, from the Host header.
pub(crate) fn origin_of(parts: &Parts) -> String {
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|_| Path(HashMap::new()));
        let origin = origin_of(parts);
        let (service, base) = match params.get("service") {
            Some(raw) => {
                let sid = ServiceSid::parse(raw).map_err(|_| ApiError::not_found(format!("/Services/{raw}")))?;
                state.palaver.service(&sid).await?;
                let base = format!("{origin}/v1/Services/{sid}");
                (sid, base)
            }
            None => (state.palaver.default_service().await?, format!("{origin}/v1")),
        };
        let palaver = state.palaver.acting_as(palaver_core::event::Origin::api(webhooks_enabled(parts)?));
        Ok(Self { service, base, params, palaver })
    }
}
