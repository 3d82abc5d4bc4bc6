//! The push notification resources: credentials, bindings and a service's notification settings.

use serde::{Deserialize, Serialize};

/// `conversations.v1.credential`. The keys are write-only: no field returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialResource {
    /// `CR…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// `apn`, `gcm`, `fcm` or `webpush`.
    #[serde(rename = "type")]
    pub kind: String,
    /// APNs sandbox, as Twilio writes it (`"True"` / `"False"`).
    pub sandbox: Option<String>,
    /// When it was created.
    pub date_created: String,
    /// When it last changed.
    pub date_updated: String,
    /// This resource's URL.
    pub url: String,
    /// Web Push only (a Palaver extension): the VAPID public key (base64url) browsers subscribe with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// `conversations.v1.service.service_binding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingResource {
    /// `BS…`.
    pub sid: String,
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// The credential the binding was registered with, if any.
    pub credential_sid: Option<String>,
    /// When it was created.
    pub date_created: String,
    /// When it was last registered.
    pub date_updated: String,
    /// The device token, or a browser subscription's push service URL.
    pub endpoint: String,
    /// The user.
    pub identity: String,
    /// `apn`, `gcm`, `fcm`, `twilsock` or `webpush`.
    pub binding_type: String,
    /// `new_message`, `added_to_conversation`, `removed_from_conversation`.
    pub message_types: Vec<String>,
    /// This resource's URL.
    pub url: String,
}

/// `conversations.v1.service.service_configuration.service_notification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationResource {
    /// The owning account.
    pub account_sid: String,
    /// The service.
    pub chat_service_sid: String,
    /// `{enabled, template, sound, badge_count_enabled, with_media: {enabled, template}}`.
    pub new_message: serde_json::Value,
    /// `{enabled, template, sound}`.
    pub added_to_conversation: serde_json::Value,
    /// `{enabled, template, sound}`.
    pub removed_from_conversation: serde_json::Value,
    /// Whether each notification sent is logged.
    pub log_enabled: bool,
    /// This resource's URL.
    pub url: String,
}
