//! Error codes and the REST error body.
//!
//! Codes are Twilio's public error numbers where Twilio has one for the situation, so applications that
//! branch on `code` keep working. The list is sorted by number.

use serde::{Deserialize, Serialize};

/// A numbered error the API can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 20001: a parameter is missing, malformed or out of range.
    InvalidParameter,
    /// 20003: the credentials are missing or wrong.
    AuthenticationFailed,
    /// 20004: the HTTP method is not supported on this resource.
    MethodNotAllowed,
    /// 20101: the access token is malformed, not signed by a known key, or not valid yet.
    AccessTokenInvalid,
    /// 20104: the access token has expired.
    AccessTokenExpired,
    /// 20403: the caller's roles do not allow the action.
    Forbidden,
    /// 20404: the resource does not exist.
    NotFound,
    /// 20408: the request took too long to arrive (Palaver's number, after Twilio's 20xxx-for-HTTP-status
    /// pattern: Twilio has none for this).
    RequestTimeout,
    /// 20413: the request body is larger than the server accepts (Palaver's number, as for 20408).
    PayloadTooLarge,
    /// 20429: too many requests; safe to retry with backoff.
    TooManyRequests,
    /// 20500: an internal failure the caller cannot fix.
    InternalError,
    /// 50201: a user with this identity already exists in the service.
    UserAlreadyExists,
    /// 50350: the conversation does not exist.
    ConversationNotFound,
    /// 50353: another conversation already has this unique name.
    UniqueNameTaken,
    /// 50377: the conversation is closed and cannot change any more.
    ConversationClosed,
    /// 50390: a unique name must not look like a conversation SID.
    UniqueNameLooksLikeSid,
    /// 50417: the conversation has reached its participant limit.
    ParticipantLimitExceeded,
    /// 50418: the conversation has reached its limit of non-chat (SMS, WhatsApp, email) participants.
    NonChatParticipantLimitExceeded,
    /// 50426: too many participants in one ConversationWithParticipants request.
    TooManyParticipantsInRequest,
    /// 50430: the caller is not a participant of the conversation.
    NotAParticipant,
    /// 50432: the participant does not exist.
    ParticipantNotFound,
    /// 50433: a participant with this identity already exists in the conversation.
    ParticipantAlreadyExists,
    /// 50437: a participant with this messaging binding already exists in the conversation.
    BindingAlreadyExists,
    /// 50512: a media item is larger than allowed.
    MediaTooLarge,
}

impl ErrorCode {
    /// The number sent as `code`.
    pub fn number(self) -> u32 {
        match self {
            Self::InvalidParameter => 20001,
            Self::AuthenticationFailed => 20003,
            Self::MethodNotAllowed => 20004,
            Self::AccessTokenInvalid => 20101,
            Self::AccessTokenExpired => 20104,
            Self::Forbidden => 20403,
            Self::NotFound => 20404,
            Self::RequestTimeout => 20408,
            Self::PayloadTooLarge => 20413,
            Self::TooManyRequests => 20429,
            Self::InternalError => 20500,
            Self::UserAlreadyExists => 50201,
            Self::ConversationNotFound => 50350,
            Self::UniqueNameTaken => 50353,
            Self::ConversationClosed => 50377,
            Self::UniqueNameLooksLikeSid => 50390,
            Self::ParticipantLimitExceeded => 50417,
            Self::NonChatParticipantLimitExceeded => 50418,
            Self::TooManyParticipantsInRequest => 50426,
            Self::NotAParticipant => 50430,
            Self::ParticipantNotFound => 50432,
            Self::ParticipantAlreadyExists => 50433,
            Self::BindingAlreadyExists => 50437,
            Self::MediaTooLarge => 50512,
        }
    }

    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::AuthenticationFailed | Self::AccessTokenInvalid | Self::AccessTokenExpired => 401,
            Self::MethodNotAllowed => 405,
            Self::NotFound | Self::ConversationNotFound | Self::ParticipantNotFound => 404,
            Self::UniqueNameTaken
            | Self::UserAlreadyExists
            | Self::ParticipantAlreadyExists
            | Self::BindingAlreadyExists => 409,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::TooManyRequests => 429,
            Self::InternalError => 500,
            Self::NotAParticipant | Self::Forbidden => 403,
            Self::InvalidParameter
            | Self::ConversationClosed
            | Self::UniqueNameLooksLikeSid
            | Self::ParticipantLimitExceeded
            | Self::NonChatParticipantLimitExceeded
            | Self::TooManyParticipantsInRequest
            | Self::MediaTooLarge => 400,
        }
    }
}

/// The JSON body of every failed REST request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The numbered error, see [`ErrorCode`].
    pub code: u32,
    /// A sentence saying what was wrong, for a developer to read.
    pub message: String,
    /// Where the code is documented.
    pub more_info: String,
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
}

impl ErrorBody {
    /// The body for `code` with a specific `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.number(),
            message: message.into(),
            more_info: format!("https://www.twilio.com/docs/errors/{}", code.number()),
            status: code.http_status(),
        }
    }
}
