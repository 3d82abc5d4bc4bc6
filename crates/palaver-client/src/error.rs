//! The one error type of the SDK, [`ClientError`].

use palaver_api::realtime::RealtimeError;

/// Why an SDK call failed.
///
/// Server-side refusals keep the server's Twilio-style `code` (see [`palaver_api::ErrorCode`]) so applications
/// can branch on it; everything detected on the client has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the request.
    #[error("server error {code} (status {status}): {message}")]
    Server {
        /// Twilio-style error code, e.g. 20404 (the resource was not found).
        code: u32,
        /// What went wrong, for a developer to read.
        message: String,
        /// The HTTP status the REST API would have answered with.
        status: u16,
    },
    /// The server refused the request because the caller is going too fast (code 20429): the conversation or
    /// service took more actions this second than its rate allows, or this connection sent more requests than
    /// its rate. Nothing was changed; retry after `retry_after`.
    #[error("too many requests (code {code}): {message}; retry after {retry_after:?}")]
    RateLimited {
        /// 20429.
        code: u32,
        /// What the server said.
        message: String,
        /// How long to wait before trying again.
        retry_after: std::time::Duration,
    },
    /// An argument was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Something looked up locally does not exist (e.g. a participant missing from the roster).
    #[error("not found: {0}")]
    NotFound(String),
    /// The connection to the server is down and the request could not be delivered (or its answer was lost).
    #[error("the connection to the server is unavailable")]
    TransportUnavailable,
    /// The first connection could not be established.
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The realtime URL that was tried.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server rejected the access token; retrying with the same token is pointless.
    #[error("access denied: {0}")]
    Denied(String),
    /// The access token expired; call [`Client::update_token`](crate::Client::update_token).
    #[error("the access token expired")]
    TokenExpired,
    /// The feature exists in the API but is not available yet (e.g. media upload).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server sent something this SDK does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No answer arrived within the request timeout although the connection is up.
    #[error("the request timed out")]
    Timeout,
    /// There is no page in the asked direction.
    #[error("no {0} page")]
    NoPage(PageDirection),
    /// The client was shut down.
    #[error("the client was shut down")]
    Shutdown,
}

/// Which neighbour page was asked for in [`ClientError::NoPage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageDirection {
    /// `next_page` (newer messages).
    Next,
    /// `prev_page` (older messages).
    Previous,
}

impl std::fmt::Display for PageDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Next => "next",
            Self::Previous => "previous",
        })
    }
}

impl ClientError {
    /// The server's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::Server { code, .. } | Self::RateLimited { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the thing asked for does not exist, whether the server or the client found that out.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound(_) => true,
            Self::Server { status, .. } => *status == 404,
            _ => false,
        }
    }

    /// How long to wait before retrying, when the server said the caller is going too fast.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// True for failures of the connection rather than of the request (worth retrying later).
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::TransportUnavailable | Self::Timeout | Self::Connect { .. })
    }
}

impl From<RealtimeError> for ClientError {
    fn from(err: RealtimeError) -> Self {
        match err.retry_after_ms {
            Some(ms) if err.status == 429 => Self::RateLimited {
                code: err.code,
                message: err.message,
                retry_after: std::time::Duration::from_millis(ms),
            },
            _ => Self::Server { code: err.code, message: err.message, status: err.status },
        }
    }
}

/// Shorthand for the SDK's results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
