//! Web Push (RFC 8030) to a browser's push service: the payload encrypted for the subscription (RFC 8291,
//! `aes128gcm` content coding of RFC 8188) and the request signed with VAPID (RFC 8292).

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use palaver_core::push::PushJob;
use ring::{aead, agreement, hkdf, rand::SystemRandom};
use serde_json::{Value, json};

use super::keys::VapidKey;
use super::{Outcome, Senders};

/// How long the push service keeps a notification for an offline browser.
const TTL_SECS: u32 = 24 * 60 * 60;
/// How long a VAPID token is valid (at most a day, says RFC 8292).
const VAPID_VALIDITY_SECS: i64 = 12 * 60 * 60;
/// The record size written in the header; the whole payload is one record, well below it.
const RECORD_SIZE: u32 = 4096;

/// What the browser's service worker receives: the SDK's data, as FCM's `data` (so the JS SDK's
/// `handlePushNotification` reads it as it reads FCM's).
pub(crate) fn payload(job: &PushJob) -> Value {
    json!({"data": job.notification.sdk_data()})
}

/// A length for ring's HKDF output.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0; len];
    prk.expand(info, Len(len)).and_then(|okm| okm.fill(&mut out)).map_err(|_| "HKDF failed".to_string())?;
    Ok(out)
}

fn decode_key(raw: &str) -> Option<Vec<u8>> {
    let trimmed = raw.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).or_else(|_| URL_SAFE.decode(raw)).ok()
}

/// Encrypts `plaintext` for a subscription with public key `ua_public` (65 bytes) and `auth_secret` (16
/// bytes), with a fresh key pair and salt: the `aes128gcm` body of RFC 8291.
pub(crate) fn encrypt(plaintext: &[u8], ua_public: &[u8], auth_secret: &[u8]) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| "cannot make a key pair".to_string())?;
    let as_public = private.compute_public_key().map_err(|_| "cannot make a key pair".to_string())?;
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| "no randomness".to_string())?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let ecdh_secret = agreement::agree_ephemeral(private, &peer, |secret| secret.to_vec())
        .map_err(|_| "the subscription's p256dh is not a P-256 public key".to_string())?;
    // RFC 8291 section 3.4: the auth secret and both public keys go into the input keying material.
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(&ecdh_secret);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", ua_public, as_public.as_ref()], 32)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "bad content key".to_string())?,
    );
    // One record, the last: the content, then the delimiter 0x02, no padding.
    let mut record = plaintext.to_vec();
    record.push(2);
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| "bad nonce".to_string())?;
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record).map_err(|_| "sealing failed".to_string())?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.as_ref().len() as u8);
    body.extend_from_slice(as_public.as_ref());
    body.extend_from_slice(&record);
    Ok(body)
}

/// The `Authorization` header: a VAPID token for the endpoint's origin and the key that verifies it.
pub(crate) fn vapid_authorization(vapid: &VapidKey, endpoint: &url::Url) -> String {
    let audience = endpoint.origin().ascii_serialization();
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + VAPID_VALIDITY_SECS;
    let token = vapid
        .key
        .jwt(&json!({"typ": "JWT", "alg": "ES256"}), &json!({"aud": audience, "exp": expires, "sub": vapid.subject}));
    format!("vapid t={token}, k={}", URL_SAFE_NO_PAD.encode(vapid.key.public_key()))
}

pub(crate) async fn send(senders: &Senders, vapid: &VapidKey, job: &PushJob) -> Outcome {
    let subscription: Value = serde_json::from_str(&job.binding.address).unwrap_or(Value::Null);
    let endpoint = subscription["endpoint"].as_str().and_then(|e| url::Url::parse(e).ok());
    let (Some(endpoint), Some(p256dh), Some(auth)) = (
        endpoint,
        subscription["keys"]["p256dh"].as_str().and_then(decode_key),
        subscription["keys"]["auth"].as_str().and_then(decode_key),
    ) else {
        return Outcome::Gone("the subscription is not usable".into());
    };
    let allowed =
        endpoint.scheme() == "https" || (endpoint.scheme() == "http" && senders.settings.allow_http_endpoints);
    if !allowed {
        return Outcome::Failed(format!("push endpoints must be https:// ({endpoint})"));
    }
    let host = endpoint.host_str().unwrap_or_default();
    if !super::webpush_host_allowed(host, &senders.settings.webpush_hosts) {
        // Not a browser's push service: never post there, and forget the subscription.
        tracing::warn!(%host, "a web push subscription names a host that is not a known push service; dropped");
        return Outcome::Gone(format!("{host} is not an allowed web push service (--push-webpush-hosts)"));
    }
    let body = match encrypt(payload(job).to_string().as_bytes(), &p256dh, &auth) {
        Ok(body) => body,
        Err(err) => return Outcome::Gone(format!("cannot encrypt for the subscription: {err}")),
    };
    let response = senders
        .http
        .post(endpoint.clone())
        .header("authorization", vapid_authorization(vapid, &endpoint))
        .header("ttl", TTL_SECS.to_string())
        .header("urgency", "high")
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) => return Outcome::Retry(format!("the push service did not answer: {err}")),
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => Outcome::Sent,
        404 | 410 => Outcome::Gone(format!("the push service answered {status}: the subscription ended")),
        _ => Outcome::of_status(status, &response.text().await.unwrap_or_default()),
    }
}
