//! Media: files uploaded before the message that carries them (`ME…`), stored by content hash, and the limits
//! the server enforces and announces to clients (Twilio's `ConversationLimits`).

use palaver_api::sid::{ConversationSid, MediaSid, MessageSid, ServiceSid};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::InvalidInput;

/// What a media item is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaCategory {
    /// An attachment.
    Media,
    /// The body of an email, in one content type.
    Body,
    /// The quoted history of an email.
    History,
}

impl MediaCategory {
    /// Parses `media|body|history`.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        match raw.to_ascii_lowercase().as_str() {
            "media" => Ok(Self::Media),
            "body" => Ok(Self::Body),
            "history" => Ok(Self::History),
            other => Err(InvalidInput::new("Category", format!("'{other}' is not one of media, body, history"))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Media => "media",
            Self::Body => "body",
            Self::History => "history",
        }
    }
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// `ME…`.
    pub sid: MediaSid,
    /// The service it was uploaded to.
    pub service_sid: ServiceSid,
    /// MIME type.
    pub content_type: String,
    /// File name, if given.
    pub filename: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content: where the bytes are stored.
    pub sha256: String,
    /// Who uploaded it (identity), when a chat user did.
    pub author: Option<String>,
    /// What it is for.
    pub category: MediaCategory,
    /// The message it is attached to, once it is.
    pub message_sid: Option<MessageSid>,
    /// That message's conversation.
    pub conversation_sid: Option<ConversationSid>,
    /// Uploaded at.
    pub date_created: OffsetDateTime,
}

impl Media {
    /// The descriptor a message carries, as REST and the SDK show it.
    pub fn descriptor(&self) -> Value {
        json!({
            "sid": self.sid.as_str(),
            "content_type": self.content_type,
            "filename": self.filename,
            "size": self.size,
            "category": self.category.as_str(),
        })
    }
}

/// An upload whose bytes are stored, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// MIME type.
    pub content_type: String,
    /// File name, if given.
    pub filename: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// The uploading chat user, if any.
    pub author: Option<String>,
    /// What it is for.
    pub category: MediaCategory,
}

/// The limits on media, per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLimits {
    /// Items per message.
    pub count: u32,
    /// One item, in MB.
    pub item_mb: u32,
    /// All items of a message, in MB.
    pub total_mb: u32,
    /// Content types allowed for email bodies.
    pub email_body_types: Vec<String>,
    /// Content types allowed for email histories.
    pub email_history_types: Vec<String>,
}

impl Default for MediaLimits {
    /// Twilio's Messaging limits where they exist: 10 items (error 21623), 16 MB each (WhatsApp's limit).
    fn default() -> Self {
        let email = vec!["text/plain".to_string(), "text/html".to_string()];
        Self { count: 10, item_mb: 16, total_mb: 32, email_body_types: email.clone(), email_history_types: email }
    }
}

impl MediaLimits {
    /// One item's limit in bytes.
    pub fn item_bytes(&self) -> u64 {
        u64::from(self.item_mb) * 1024 * 1024
    }

    /// All items' limit in bytes.
    pub fn total_bytes(&self) -> u64 {
        u64::from(self.total_mb) * 1024 * 1024
    }

    /// Checks an upload's content type for its category.
    ///
    /// # Errors
    /// When an email body or history has a content type that is not allowed, or the type is empty.
    pub fn check_upload(&self, category: MediaCategory, content_type: &str) -> Result<(), InvalidInput> {
        let base = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if base.is_empty() || !base.contains('/') {
            return Err(InvalidInput::new("Content-Type", "a MIME type such as image/png is required"));
        }
        let allowed = match category {
            MediaCategory::Media => return Ok(()),
            MediaCategory::Body => &self.email_body_types,
            MediaCategory::History => &self.email_history_types,
        };
        if allowed.contains(&base) {
            Ok(())
        } else {
            Err(InvalidInput::new(
                "Content-Type",
                format!("unsupported email {} content type {base}", category.as_str()),
            ))
        }
    }
}
