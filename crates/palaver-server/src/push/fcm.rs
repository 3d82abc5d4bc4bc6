//! FCM's HTTP v1 API: an OAuth2 access token from the service account (an RS256 assertion exchanged at
//! Google's token endpoint, kept until shortly before it expires), then
//! `POST /v1/projects/{project}/messages:send` with a data message the SDKs read.

use std::time::{Duration, Instant};

use palaver_api::sid::CredentialSid;
use palaver_core::push::PushJob;
use serde_json::{Value, json};

use super::keys::FcmAccount;
use super::{Outcome, Senders};

/// What a path segment escapes: everything but RFC 3986's unreserved characters (project ids have dashes).
const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The permission an access token asks for.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The message: the SDK's data (all strings, as FCM wants), delivered at high priority so a sleeping
/// Android device wakes for it.
pub(crate) fn message(job: &PushJob) -> Value {
    json!({
        "message": {
            "token": job.binding.address,
            "data": job.notification.sdk_data(),
            "android": {"priority": "HIGH"},
        }
    })
}

async fn access_token(senders: &Senders, sid: &CredentialSid, account: &FcmAccount) -> Result<String, Outcome> {
    if let Some((until, token)) = senders.fcm_tokens.lock().unwrap_or_else(|e| e.into_inner()).get(sid)
        && Instant::now() < *until
    {
        return Ok(token.clone());
    }
    let token_url = senders.settings.fcm_token_url.as_deref().unwrap_or(&account.token_uri);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let assertion = account.key.jwt(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &json!({"iss": account.client_email, "scope": SCOPE, "aud": account.token_uri, "iat": now, "exp": now + 3600}),
    );
    let response = senders
        .http
        .post(token_url)
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
        .send()
        .await
        .map_err(|e| Outcome::Retry(format!("Google's token endpoint did not answer: {e}")))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status != 200 {
        return Err(match status {
            400 | 401 | 403 => Outcome::Failed(format!("Google refused the service account: {status} {body}")),
            _ => Outcome::of_status(status, &body),
        });
    }
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(token) = answer["access_token"].as_str() else {
        return Err(Outcome::Retry("Google's token endpoint answered without an access_token".into()));
    };
    let lifetime = answer["expires_in"].as_u64().unwrap_or(3600);
    let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
    senders.fcm_tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(sid.clone(), (until, token.to_string()));
    Ok(token.to_string())
}

pub(crate) async fn send(senders: &Senders, sid: &CredentialSid, account: &FcmAccount, job: &PushJob) -> Outcome {
    let token = match access_token(senders, sid, account).await {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let url = format!(
        "{}/v1/projects/{}/messages:send",
        senders.settings.fcm_url.trim_end_matches('/'),
        percent_encoding::utf8_percent_encode(&account.project_id, PATH_SEGMENT)
    );
    let response = match senders.http.post(&url).bearer_auth(&token).json(&message(job)).send().await {
        Ok(response) => response,
        Err(err) => return Outcome::Retry(format!("FCM did not answer: {err}")),
    };
    let status = response.status().as_u16();
    if status == 200 {
        return Outcome::Sent;
    }
    let body = response.text().await.unwrap_or_default();
    let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = error["error"]["details"]
        .as_array()
        .and_then(|details| details.iter().find_map(|d| d["errorCode"].as_str()))
        .or(error["error"]["status"].as_str())
        .unwrap_or_default()
        .to_string();
    match (status, code.as_str()) {
        (404, _) | (_, "UNREGISTERED") => Outcome::Gone(format!("FCM: {status} {code}")),
        (401, _) => {
            // The access token was revoked or expired early: the next attempt gets a new one.
            senders.fcm_tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(sid);
            Outcome::Retry("FCM: the access token was refused".into())
        }
        _ => Outcome::of_status(status, &body),
    }
}
