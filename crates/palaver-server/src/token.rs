//! Minting and checking access tokens against this server's keys and account (`palaver_api::token` has the
//! format and the signature).

use palaver_api::sid::{AccountSid, ApiKeySid, ServiceSid};
use palaver_api::token::{AccessTokenClaims, ChatGrant, Grants, PalaverGrant};
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
    let claims = AccessTokenClaims {
        jti: Some(format!("{}-{now}", request.key_sid)),
        iss: request.key_sid.to_string(),
        sub: request.account_sid.to_string(),
        // Saturating: `palaver token --ttl` takes any number, and an overflow here was a panic.
        exp: now.saturating_add(request.ttl_secs),
        nbf: Some(now),
        grants: Grants {
            identity: Some(request.identity.to_string()),
            chat: Some(ChatGrant { service_sid: request.service_sid.map(|s| s.to_string()), ..ChatGrant::default() }),
            palaver,
        },
    };
    palaver_api::token::encode(&claims, request.key_secret)
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
    let signed = palaver_api::token::decode(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let key_sid = ApiKeySid::parse(&signed.claims.iss).map_err(|_| TokenError::Invalid)?;
    let key = match state.palaver.api_key(&key_sid).await {
        Ok(key) => key,
        Err(palaver_core::Error::NotFound { .. }) => return Err(TokenError::Invalid),
        Err(other) => return Err(other.into()),
    };
    if !signed.is_signed_with(&key.secret) {
        return Err(TokenError::Invalid);
    }
    let claims = signed.claims;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_ttl_mints_a_token() {
        let (key_sid, account_sid) = (ApiKeySid::generate(), AccountSid::generate());
        for ttl_secs in [3600, 0, -60, i64::MAX, i64::MIN] {
            let request = MintRequest {
                key_sid: &key_sid,
                key_secret: "secret",
                account_sid: &account_sid,
                identity: "dana",
                service_sid: None,
                ttl_secs,
            };
            let token = mint(&request);
            let signed = palaver_api::token::decode(&token).unwrap();
            assert!(signed.is_signed_with("secret"));
            let nbf = signed.claims.nbf.unwrap();
            assert_eq!(signed.claims.exp, nbf.saturating_add(ttl_secs), "ttl {ttl_secs}");
        }
    }
}
