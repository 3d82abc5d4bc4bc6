//! Access tokens: JWTs (HS256) in Twilio's format, so tokens minted by Twilio's helper libraries
//! (`AccessToken` + `ChatGrant`) are accepted. Header `{"typ":"JWT","alg":"HS256","cty":"twilio-fpa;v=1"}`;
//! the claims are [`AccessTokenClaims`]; the signing key is the secret of the API key named in `iss`.

use serde::{Deserialize, Serialize};

/// The `cty` header value of Twilio access tokens.
pub const CONTENT_TYPE: &str = "twilio-fpa;v=1";

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
