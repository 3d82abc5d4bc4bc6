//! APNs over HTTP/2 with token-based authentication: `POST /3/device/{token}` with an ES256 provider token.

use std::time::{Duration, Instant};

use palaver_api::sid::CredentialSid;
use palaver_core::push::PushJob;
use serde_json::{Map, Value, json};

use super::keys::ApnsKey;
use super::{Outcome, Senders};

/// How long a provider token is reused: Apple accepts one for an hour and refuses new ones more often than
/// every 20 minutes.
const TOKEN_REUSE: Duration = Duration::from_secs(40 * 60);

/// Apple's hosts.
const PRODUCTION: &str = "https://api.push.apple.com";
const SANDBOX: &str = "https://api.sandbox.push.apple.com";

/// The payload: the alert in `aps`, the SDK's data beside it.
pub(crate) fn payload(job: &PushJob) -> Value {
    let n = &job.notification;
    let mut aps = Map::new();
    aps.insert("alert".into(), json!({"body": n.body}));
    if let Some(sound) = &n.sound {
        aps.insert("sound".into(), json!(sound));
    }
    if let Some(badge) = n.badge {
        aps.insert("badge".into(), json!(badge));
    }
    let mut body = n.sdk_data();
    body.remove("twi_body");
    body.remove("twi_sound");
    body.insert("aps".into(), Value::Object(aps));
    Value::Object(body)
}

fn provider_token(senders: &Senders, sid: &CredentialSid, key: &ApnsKey) -> String {
    let mut tokens = senders.apns_tokens.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((made, token)) = tokens.get(sid)
        && made.elapsed() < TOKEN_REUSE
    {
        return token.clone();
    }
    let issued_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let token =
        key.key.jwt(&json!({"alg": "ES256", "kid": key.key_id}), &json!({"iss": key.team_id, "iat": issued_at}));
    tokens.insert(sid.clone(), (Instant::now(), token.clone()));
    token
}

pub(crate) async fn send(senders: &Senders, sid: &CredentialSid, key: &ApnsKey, job: &PushJob) -> Outcome {
    let base = senders.settings.apns_url.as_deref().unwrap_or(if key.sandbox { SANDBOX } else { PRODUCTION });
    let device: String = job.binding.address.chars().filter(char::is_ascii_hexdigit).collect();
    if device.is_empty() {
        return Outcome::Gone("the device token is not hexadecimal".into());
    }
    let url = format!("{}/3/device/{device}", base.trim_end_matches('/'));
    let response = senders
        .h2
        .post(&url)
        .header("authorization", format!("bearer {}", provider_token(senders, sid, key)))
        .header("apns-topic", &key.topic)
        .header("apns-push-type", "alert")
        .header("apns-priority", "10")
        .json(&payload(job))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) => return Outcome::Retry(format!("APNs did not answer: {err}")),
    };
    let status = response.status().as_u16();
    if status == 200 {
        return Outcome::Sent;
    }
    let body = response.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default();
    match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            Outcome::Gone(format!("APNs: {status} {reason}"))
        }
        (403, "ExpiredProviderToken") => {
            senders.apns_tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(sid);
            Outcome::Retry("APNs: the provider token expired".into())
        }
        _ => Outcome::of_status(status, &body),
    }
}
