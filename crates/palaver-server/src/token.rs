//! Signing and checking access tokens (see `palaver_api::token` for the format).
//!
//! HS256 is implemented here with `hmac` + `sha2` rather than a JWT crate: the JWT crates pull in RSA and
//! elliptic-curve stacks for a single HMAC, which costs minutes of build time on small machines.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use palaver_api::sid::{AccountSid, ApiKeySid, ServiceSid};
use palaver_api::token::{AccessTokenClaims, CONTENT_TYPE, ChatGrant, Grants, PalaverGrant, TokenHeader};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::AppState;

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not one of ours.
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    /// The signature does not match the API key's secret, or the key or account is unknown.
    #[error("the access token is not valid for this server")]
    Invalid,
    /// Past `exp`.
    #[error("the access token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// An observer's token where only a user's is accepted.
    #[error("the access token is an observer's, which opens read-only realtime sessions (/v1/realtime) only")]
    ObserverOnly,
    /// The store failed while checking.
    #[error("{0}")]
    Storage(#[from] palaver_core::Error),
}

/// A checked token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The user.
    pub identity: String,
    /// The service, when the token names one.
    pub service_sid: Option<ServiceSid>,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// It carries Palaver's observer grant (see `palaver_api::token::PalaverGrant`).
    pub observer: bool,
}

fn sign(secret: &str, signing_input: &str) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(signing_input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// The signing key.
    pub key_sid: &'a ApiKeySid,
    /// Its secret.
    pub key_secret: &'a str,
    /// The account.
    pub account_sid: &'a AccountSid,
    /// The user.
    pub identity: &'a str,
    /// The service, if not the default one.
    pub service_sid: Option<&'a ServiceSid>,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
}

/// Mints a token in Twilio's format.
pub fn mint(request: &MintRequest<'_>) -> String {
    mint_with(request, None)
}

/// Mints an observer's token: Twilio's format plus Palaver's observer grant, for read-only realtime sessions
/// that follow any conversation of the service.
pub fn mint_observer(request: &MintRequest<'_>) -> String {
    mint_with(request, Some(PalaverGrant { observer: true }))
}

fn mint_with(request: &MintRequest<'_>, palaver: Option<PalaverGrant>) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let header = TokenHeader { typ: Some("JWT".into()), alg: "HS256".into(), cty: Some(CONTENT_TYPE.into()) };
    let claims = AccessTokenClaims {
        jti: Some(format!("{}-{now}", request.key_sid)),
        iss: request.key_sid.to_string(),
        sub: request.account_sid.to_string(),
        exp: now + request.ttl_secs,
        nbf: Some(now),
        grants: Grants {
            identity: Some(request.identity.to_string()),
            chat: Some(ChatGrant { service_sid: request.service_sid.map(|s| s.to_string()), ..ChatGrant::default() }),
            palaver,
        },
    };
    let signing_input = format!("{}.{}", encode_json(&header), encode_json(&claims));
    let signature = URL_SAFE_NO_PAD.encode(sign(request.key_secret, &signing_input));
    format!("{signing_input}.{signature}")
}

fn encode_json<T: serde::Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers always serialise.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("the {what} is not valid: {e}")))
}

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 5;

/// Checks a user's token: its format, signature, account and validity period. An observer's token is
/// refused ([`TokenError::ObserverOnly`]): only the realtime API, which knows how to keep it read-only,
/// accepts one ([`verify_allowing_observers`]).
///
/// # Errors
/// [`TokenError`] for every reason a token can be refused.
pub async fn verify(state: &AppState, token: &str) -> Result<VerifiedToken, TokenError> {
    let verified = verify_allowing_observers(state, token).await?;
    if verified.observer {
        return Err(TokenError::ObserverOnly);
    }
    Ok(verified)
}

/// Checks a token as [`verify`] does, accepting observers' tokens too ([`VerifiedToken::observer`]). The grants
/// are read only once the signature matched, so a grant added to a token by anyone without the key's secret
/// makes it a bad token like any other change.
///
/// # Errors
/// [`TokenError`] for every reason a token can be refused.
pub async fn verify_allowing_observers(state: &AppState, token: &str) -> Result<VerifiedToken, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(header_part), Some(claims_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWT has three parts".into()));
    };
    let header: TokenHeader = decode_part(header_part, "header")?;
    if header.alg != "HS256" {
        return Err(TokenError::Malformed(format!("algorithm {} is not supported", header.alg)));
    }
    let claims: AccessTokenClaims = decode_part(claims_part, "claims")?;
    let key_sid = ApiKeySid::parse(&claims.iss).map_err(|_| TokenError::Invalid)?;
    let key = match state.palaver.api_key(&key_sid).await {
        Ok(key) => key,
        Err(palaver_core::Error::NotFound { .. }) => return Err(TokenError::Invalid),
        Err(other) => return Err(other.into()),
    };
    let expected = sign(&key.secret, &format!("{header_part}.{claims_part}"));
    let given = URL_SAFE_NO_PAD.decode(signature_part.trim_end_matches('=')).map_err(|_| TokenError::Invalid)?;
    if given.len() != expected.len() || given.iter().zip(&expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(TokenError::Invalid);
    }
    if claims.sub != state.credentials.account_sid.as_str() {
        return Err(TokenError::Invalid);
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if claims.exp.saturating_add(LEEWAY_SECS) < now {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }
    let identity = claims
        .grants
        .identity
        .filter(|i| !i.is_empty())
        .ok_or_else(|| TokenError::Malformed("the token grants no identity".into()))?;
    let service_sid = match claims.grants.chat.and_then(|c| c.service_sid) {
        Some(raw) => Some(ServiceSid::parse(&raw).map_err(|e| TokenError::Malformed(e.to_string()))?),
        None => None,
    };
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
        .map_err(|_| TokenError::Malformed("exp is out of range".into()))?;
    let observer = claims.grants.palaver.is_some_and(|grant| grant.observer);
    Ok(VerifiedToken { identity, service_sid, expires_at, observer })
}
