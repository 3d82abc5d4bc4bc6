//! Access tokens: JWTs (HS256) in Twilio's format, so tokens minted by Twilio's helper libraries
//! (`AccessToken` + `ChatGrant`) are accepted. Header `{"typ":"JWT","alg":"HS256","cty":"twilio-fpa;v=1"}`;
//! the claims are [`AccessTokenClaims`]; the signing key is the secret of the API key named in `iss`.
//!
//! [`encode`] signs claims into a token and [`decode`] reads one back without trusting it: the caller looks up
//! the key named in `iss` and asks [`SignedToken::is_signed_with`]. HS256 is implemented with `hmac` + `sha2`
//! rather than a JWT crate: the JWT crates pull in RSA and elliptic-curve stacks for a single HMAC, which
//! costs minutes of build time on small machines.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The `cty` header value of Twilio access tokens.
pub const CONTENT_TYPE: &str = "twilio-fpa;v=1";

/// The `alg` header value: HMAC-SHA256, the only algorithm accepted.
pub const ALGORITHM: &str = "HS256";

/// The JOSE header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHeader {
    /// Always `JWT`.
    #[serde(default)]
    pub typ: Option<String>,
    /// Always `HS256`.
    pub alg: String,
    /// `twilio-fpa;v=1`.
    #[serde(default)]
    pub cty: Option<String>,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Unique token id (`{iss}-{issued at}` by convention).
    #[serde(default)]
    pub jti: Option<String>,
    /// The API key SID (`SK…`) whose secret signed the token.
    pub iss: String,
    /// The account SID (`AC…`).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// What the token grants.
    pub grants: Grants,
}

/// The `grants` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Grants {
    /// The user the token is for.
    #[serde(default)]
    pub identity: Option<String>,
    /// The conversations grant (called `chat` for historical reasons).
    #[serde(default)]
    pub chat: Option<ChatGrant>,
    /// Palaver's own grant; Twilio's libraries neither mint nor read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palaver: Option<PalaverGrant>,
}

/// The `palaver` grant: capabilities of Palaver's own, beyond Twilio's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PalaverGrant {
    /// The holder observes: its realtime session may follow any conversation of its service (stored and live
    /// events, typing) and changes nothing. Minted only for account credentials or API keys
    /// (`POST /palaver/v1/AccessTokens` with `Observer=true`), which read everything through REST anyway.
    #[serde(default)]
    pub observer: bool,
}

/// The `chat` grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChatGrant {
    /// The conversation service; the account's default service when absent.
    #[serde(default)]
    pub service_sid: Option<String>,
    /// Push endpoint id, unused by Palaver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// Push credential, unused by Palaver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_credential_sid: Option<String>,
}

/// Why text is not an access token of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFormatError {
    /// Not `header.claims.signature`.
    #[error("a JWT has three parts")]
    NotThreeParts,
    /// The header or the claims (named) are not base64url.
    #[error("the {0} is not base64url")]
    NotBase64(&'static str),
    /// The header or the claims (named) are not the JSON object expected.
    #[error("the {part} is not valid: {reason}")]
    NotValid {
        /// `header` or `claims`.
        part: &'static str,
        /// What serde_json said.
        reason: String,
    },
    /// An `alg` other than [`ALGORITHM`].
    #[error("algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
}

/// A token read by [`decode`]: its header and claims, and the signature that has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken<'a> {
    /// The header; its `alg` is [`ALGORITHM`].
    pub header: TokenHeader,
    /// The claims, to be trusted only once [`SignedToken::is_signed_with`] holds.
    pub claims: AccessTokenClaims,
    /// `header.claims` as sent: what the signature covers.
    signing_input: &'a str,
    /// The signature part as sent.
    signature: &'a str,
}

impl SignedToken<'_> {
    /// Whether the signature is the HS256 of the token under `secret`, compared in constant time.
    pub fn is_signed_with(&self, secret: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(self.signature.trim_end_matches('=')) else {
            return false;
        };
        let expected = sign(secret, self.signing_input);
        given.len() == expected.len() && given.iter().zip(&expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Signs `claims` with HS256 under `secret` into a token with Twilio's header
/// (`{"typ":"JWT","alg":"HS256","cty":"twilio-fpa;v=1"}`).
pub fn encode(claims: &AccessTokenClaims, secret: &str) -> String {
    let header = TokenHeader { typ: Some("JWT".into()), alg: ALGORITHM.into(), cty: Some(CONTENT_TYPE.into()) };
    let signing_input = format!("{}.{}", encode_json(&header), encode_json(claims));
    let signature = URL_SAFE_NO_PAD.encode(sign(secret, &signing_input));
    format!("{signing_input}.{signature}")
}

/// Reads a token's header and claims (surrounding whitespace ignored) without checking its signature.
///
/// # Errors
/// [`TokenFormatError`] when the text is not three base64url parts holding a JSON header with
/// `alg: HS256` and JSON claims; no input makes this panic.
pub fn decode(token: &str) -> Result<SignedToken<'_>, TokenFormatError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header_part), Some(claims_part), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenFormatError::NotThreeParts);
    };
    let header: TokenHeader = decode_part(header_part, "header")?;
    if header.alg != ALGORITHM {
        return Err(TokenFormatError::UnsupportedAlgorithm(header.alg));
    }
    let claims: AccessTokenClaims = decode_part(claims_part, "claims")?;
    let signing_input = &token[..header_part.len() + 1 + claims_part.len()];
    Ok(SignedToken { header, claims, signing_input, signature })
}

fn sign(secret: &str, signing_input: &str) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(signing_input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn encode_json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers always serialise.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, TokenFormatError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| TokenFormatError::NotBase64(what))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenFormatError::NotValid { part: what, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            jti: Some("SK1-1900000000".into()),
            iss: "SK1".into(),
            sub: "AC1".into(),
            exp: 1_900_003_600,
            nbf: Some(1_900_000_000),
            grants: Grants {
                identity: Some("dana".into()),
                chat: Some(ChatGrant { service_sid: Some("IS1".into()), ..ChatGrant::default() }),
                ..Grants::default()
            },
        }
    }

    #[test]
    fn decodes_what_it_encodes_and_checks_the_secret() {
        let token = encode(&claims(), "secret");
        let signed = decode(&token).unwrap();
        assert_eq!(signed.claims, claims());
        assert_eq!(signed.header.cty.as_deref(), Some(CONTENT_TYPE));
        assert!(signed.is_signed_with("secret"));
        assert!(!signed.is_signed_with("secret2"));
        assert!(!signed.is_signed_with(""));
        // Whitespace around the token and padding on the signature are tolerated.
        assert!(decode(&format!(" {token}==\n")).unwrap().is_signed_with("secret"));
    }

    #[test]
    fn a_changed_character_breaks_the_signature() {
        let token = encode(&claims(), "secret");
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let mangled = String::from_utf8(bytes).unwrap();
            assert!(decode(&mangled).map_or(true, |t| !t.is_signed_with("secret")), "{mangled}");
        }
    }

    #[test]
    fn malformed_tokens_say_why() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let cases = [
            ("", "a JWT has three parts"),
            ("a.b", "a JWT has three parts"),
            ("a.b.c.d", "a JWT has three parts"),
            ("*.b.c", "the header is not base64url"),
            (
                &format!("{claims}.{claims}.c") as &str,
                "the header is not valid: missing field `alg` at line 1 column 140",
            ),
            (&format!("{none}.{claims}.c"), "algorithm none is not supported"),
            (&format!("{header}.*.c"), "the claims is not base64url"),
            (&format!("{header}.{header}.c"), "the claims is not valid: missing field `iss` at line 1 column 15"),
        ];
        for (token, message) in cases {
            assert_eq!(decode(token).unwrap_err().to_string(), message, "{token}");
        }
        assert!(!decode(&format!("{header}.{claims}.%%%")).unwrap().is_signed_with("x"));
    }
}
