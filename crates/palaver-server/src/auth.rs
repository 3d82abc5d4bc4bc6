//! HTTP Basic authentication: the account SID with its auth token, or an API key SID with its secret.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use palaver_api::ErrorCode;
use palaver_api::sid::ApiKeySid;

use crate::AppState;
use crate::error::ApiError;

/// Compares secrets in constant time: both are hashed first, so neither how much of a guess was right nor the
/// secret's length shows in the response time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rejects requests without valid credentials.
pub(crate) async fn require_basic_auth(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !basic_credentials_valid(&state, request.headers()).await? {
        return Err(denied());
    }
    Ok(next.run(request).await)
}

/// Whether the request carries valid Basic credentials (account or API key).
///
/// # Errors
/// When the store fails while looking up an API key.
pub(crate) async fn basic_credentials_valid(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some((user, password)) = basic_credentials(headers) else { return Ok(false) };
    let credentials = &state.credentials;
    Ok(if user == credentials.account_sid.as_str() {
        same_secret(&password, &credentials.auth_token)
    } else if let Ok(key_sid) = ApiKeySid::parse(&user) {
        match state.palaver.api_key(&key_sid).await {
            Ok(key) => same_secret(&password, &key.secret),
            Err(palaver_core::Error::NotFound { .. }) => false,
            Err(other) => return Err(other.into()),
        }
    } else {
        false
    })
}

/// The user name and password of an `Authorization: Basic …` header, if it holds well-formed ones.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    // The scheme name is case-insensitive (RFC 9110 §11.1, which RFC 7617 builds on).
    let (scheme, encoded) = header.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The 401 answer.
pub(crate) fn denied() -> ApiError {
    ApiError::new(ErrorCode::AuthenticationFailed, "Authentication Error - invalid username or password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret("s3cret-token", "s3cret-token"));
        assert!(!same_secret("s3cret-token", "s3cret-tokem"));
        assert!(!same_secret("s3cret-token", "s3cret"), "a prefix is not the secret");
        assert!(!same_secret("", "s3cret-token"));
        assert!(same_secret("", ""));
    }
}
