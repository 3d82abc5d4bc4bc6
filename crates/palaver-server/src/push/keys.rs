//! The keys of push credentials: reading them from what the API was given, and signing the JSON Web Tokens
//! push services want (ES256 for APNs and VAPID, RS256 for Google's OAuth token endpoint). All crypto is
//! `ring`'s, already in the build through rustls.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use palaver_core::push::{Credential, CredentialKind};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::Value;

/// Why a credential's keys cannot be used, said to the API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct KeyError {
    /// The form field at fault.
    pub(crate) field: &'static str,
    /// What is wrong with it.
    pub(crate) reason: String,
}

fn key_error(field: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError { field, reason: reason.into() }
}

/// The DER bytes of the first PEM block of `pem` whose label is one of `labels`.
pub(crate) fn pem_der(pem: &str, labels: &[&str]) -> Option<Vec<u8>> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = pem.find(&begin) {
            let body = &pem[start + begin.len()..];
            let body = &body[..body.find(&end)?];
            let text: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            return STANDARD.decode(text).ok();
        }
    }
    None
}

/// PEM text of `der` under `label`, 64 characters a line.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let lines: Vec<&str> = text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A P-256 key that signs ES256 tokens.
#[derive(Debug)]
pub(crate) struct Es256Key(EcdsaKeyPair);

impl Es256Key {
    /// Reads a PKCS#8 PEM key (an APNs `.p8` file, or a VAPID key).
    pub(crate) fn from_pem(field: &'static str, pem: &str) -> Result<Self, KeyError> {
        let der = pem_der(pem, &["PRIVATE KEY"])
            .ok_or_else(|| key_error(field, "expected a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----)"))?;
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map(Self)
            .map_err(|e| key_error(field, format!("not a P-256 private key: {e}")))
    }

    /// A new random key, as PKCS#8 PEM.
    pub(crate) fn generate_pem() -> String {
        // The system's random source failing leaves nothing sensible to do.
        let der = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("the system random source works");
        to_pem("PRIVATE KEY", der.as_ref())
    }

    /// The uncompressed public point (65 bytes), as VAPID's `k` and browsers' `applicationServerKey` want it.
    pub(crate) fn public_key(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    /// A signed token: `header` and `claims` are JSON objects.
    pub(crate) fn jwt(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).expect("ECDSA signing does not fail");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// An RSA key that signs RS256 tokens (a Google service account's).
#[derive(Debug)]
pub(crate) struct Rs256Key(RsaKeyPair);

impl Rs256Key {
    /// Reads a PKCS#8 PEM key.
    pub(crate) fn from_pem(field: &'static str, pem: &str) -> Result<Self, KeyError> {
        let der = pem_der(pem, &["PRIVATE KEY"])
            .ok_or_else(|| key_error(field, "the service account's private_key is not a PKCS#8 PEM key"))?;
        RsaKeyPair::from_pkcs8(&der).map(Self).map_err(|e| key_error(field, format!("not an RSA private key: {e}")))
    }

    /// A signed token.
    pub(crate) fn jwt(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
            .expect("RSA signing into a buffer of the modulus' length does not fail");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// APNs token-based authentication: the `.p8` key and what names it.
#[derive(Debug)]
pub(crate) struct ApnsKey {
    /// The key's id (`kid`).
    pub(crate) key_id: String,
    /// The developer team (`iss`).
    pub(crate) team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub(crate) topic: String,
    /// The key.
    pub(crate) key: Es256Key,
    /// The development service.
    pub(crate) sandbox: bool,
}

/// A Google service account allowed to send with FCM.
#[derive(Debug)]
pub(crate) struct FcmAccount {
    /// The Firebase project.
    pub(crate) project_id: String,
    /// The account (`iss`).
    pub(crate) client_email: String,
    /// Where tokens are obtained (`aud`).
    pub(crate) token_uri: String,
    /// The key.
    pub(crate) key: Rs256Key,
}

/// A VAPID identity.
#[derive(Debug)]
pub(crate) struct VapidKey {
    /// Who to contact about the pushes (`sub`: a `mailto:` or `https:` URI).
    pub(crate) subject: String,
    /// The key.
    pub(crate) key: Es256Key,
}

/// A credential's keys, ready to sign.
#[derive(Debug)]
pub(crate) enum ProviderKeys {
    /// APNs.
    Apns(ApnsKey),
    /// FCM.
    Fcm(FcmAccount),
    /// Web Push.
    WebPush(VapidKey),
    /// GCM, which no longer exists: stored for compatibility, never sent to.
    Gcm,
}

fn settings_json(field: &'static str, raw: Option<&str>, what: &str) -> Result<Value, KeyError> {
    let raw = raw.ok_or_else(|| key_error(field, format!("is required: {what}")))?;
    serde_json::from_str::<Value>(raw)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| key_error(field, format!("is not a JSON object: {what}")))
}

fn text_field(value: &Value, field: &'static str, name: &str) -> Result<String, KeyError> {
    value[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| key_error(field, format!("has no \"{name}\"")))
}

/// Reads a credential's keys.
///
/// # Errors
/// [`KeyError`] naming the field that is missing or unusable.
pub(crate) fn provider_keys(credential: &Credential) -> Result<ProviderKeys, KeyError> {
    let secrets = &credential.secrets;
    match credential.kind {
        CredentialKind::Apn => {
            let certificate = secrets.certificate.as_deref();
            if certificate.is_some_and(|c| c.contains("-----BEGIN CERTIFICATE-----")) {
                return Err(key_error(
                    "Certificate",
                    "certificate-based APNs authentication is not supported: use a token signing key (.p8) as \
                     PrivateKey and {\"key_id\", \"team_id\", \"topic\"} as Certificate",
                ));
            }
            let settings = settings_json("Certificate", certificate, "{\"key_id\", \"team_id\", \"topic\"}")?;
            let private_key = secrets
                .private_key
                .as_deref()
                .ok_or_else(|| key_error("PrivateKey", "is required: the APNs signing key (.p8)"))?;
            Ok(ProviderKeys::Apns(ApnsKey {
                key_id: text_field(&settings, "Certificate", "key_id")?,
                team_id: text_field(&settings, "Certificate", "team_id")?,
                topic: text_field(&settings, "Certificate", "topic")?,
                key: Es256Key::from_pem("PrivateKey", private_key)?,
                sandbox: credential.sandbox,
            }))
        }
        CredentialKind::Fcm => {
            let account = settings_json("Secret", secrets.secret.as_deref(), "the service account's JSON key file")?;
            Ok(ProviderKeys::Fcm(FcmAccount {
                project_id: text_field(&account, "Secret", "project_id")?,
                client_email: text_field(&account, "Secret", "client_email")?,
                token_uri: account["token_uri"].as_str().unwrap_or("https://oauth2.googleapis.com/token").to_string(),
                key: Rs256Key::from_pem("Secret", &text_field(&account, "Secret", "private_key")?)?,
            }))
        }
        CredentialKind::WebPush => {
            let settings = settings_json("Certificate", secrets.certificate.as_deref(), "{\"subject\"}")?;
            let subject = text_field(&settings, "Certificate", "subject")?;
            if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
                return Err(key_error("Certificate", "the subject is a mailto: or https: URI"));
            }
            let private_key = secrets
                .private_key
                .as_deref()
                .ok_or_else(|| key_error("PrivateKey", "is required: the VAPID key (PKCS#8 PEM)"))?;
            Ok(ProviderKeys::WebPush(VapidKey { subject, key: Es256Key::from_pem("PrivateKey", private_key)? }))
        }
        CredentialKind::Gcm => {
            if secrets.api_key.as_deref().is_none_or(str::is_empty) {
                return Err(key_error("ApiKey", "is required for gcm credentials"));
            }
            Ok(ProviderKeys::Gcm)
        }
    }
}

/// The VAPID public key of a web push credential (base64url), which a browser subscribes with.
pub(crate) fn vapid_public_key(credential: &Credential) -> Option<String> {
    match provider_keys(credential) {
        Ok(ProviderKeys::WebPush(vapid)) => Some(URL_SAFE_NO_PAD.encode(vapid.key.public_key())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let key = Es256Key::from_pem("k", &Es256Key::generate_pem()).unwrap();
        let token = key.jwt(&serde_json::json!({"alg": "ES256"}), &serde_json::json!({"iss": "T"}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public_key());
        public.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    }

    #[test]
    fn pem_round_trips_and_other_labels_are_not_read() {
        let der = vec![1u8, 2, 3, 250];
        assert_eq!(pem_der(&to_pem("PRIVATE KEY", &der), &["PRIVATE KEY"]), Some(der.clone()));
        assert_eq!(pem_der(&to_pem("CERTIFICATE", &der), &["PRIVATE KEY"]), None);
    }
}
