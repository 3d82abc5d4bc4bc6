//! [`User`]: a chat user of the service.

use std::sync::Arc;

use palaver_api::realtime::{Call, UserInfo};
use serde_json::Value;

use crate::client::ClientInner;
use crate::emitter::ReplayEventEmitter;
use crate::error::{ClientError, Result};
use crate::util::{attributes_text, parse_attributes};

/// Why a user's `updated` event fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserUpdateReason {
    /// The display name changed.
    FriendlyName,
    /// The attributes changed.
    Attributes,
    /// Presence changed.
    ReachabilityOnline,
    /// Push reachability changed.
    ReachabilityNotifiable,
}

impl UserUpdateReason {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FriendlyName => "friendlyName",
            Self::Attributes => "attributes",
            Self::ReachabilityOnline => "reachabilityOnline",
            Self::ReachabilityNotifiable => "reachabilityNotifiable",
        }
    }
}

/// Names of a user's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserEventName {
    /// `updated`.
    Updated,
}

impl UserEventName {
    /// The name Twilio's SDK uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
        }
    }
}

/// A user's events (the client also emits `userUpdated`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UserEvent {
    /// The user changed; `update_reasons` lists every field that did.
    Updated {
        /// The user after the change.
        user: User,
        /// What changed.
        update_reasons: Vec<UserUpdateReason>,
    },
}

impl UserEvent {
    /// The event's name.
    pub fn name(&self) -> UserEventName {
        match self {
            Self::Updated { .. } => UserEventName::Updated,
        }
    }
}

/// The emitter behind [`User::events`].
pub type UserEmitter = ReplayEventEmitter<UserEventName, UserEvent>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserData {
    pub(crate) sid: String,
    pub(crate) identity: String,
    pub(crate) friendly_name: Option<String>,
    pub(crate) attributes: Value,
    pub(crate) is_online: Option<bool>,
    pub(crate) is_notifiable: Option<bool>,
}

impl UserData {
    pub(crate) fn from_info(info: &UserInfo) -> Self {
        Self {
            sid: info.sid.clone(),
            identity: info.identity.clone(),
            friendly_name: info.friendly_name.clone(),
            attributes: parse_attributes(&info.attributes),
            is_online: info.is_online,
            is_notifiable: info.is_notifiable,
        }
    }

    pub(crate) fn diff(&self, old: &Self) -> Vec<UserUpdateReason> {
        let mut reasons = Vec::new();
        if self.friendly_name != old.friendly_name {
            reasons.push(UserUpdateReason::FriendlyName);
        }
        if self.attributes != old.attributes {
            reasons.push(UserUpdateReason::Attributes);
        }
        if self.is_online != old.is_online {
            reasons.push(UserUpdateReason::ReachabilityOnline);
        }
        if self.is_notifiable != old.is_notifiable {
            reasons.push(UserUpdateReason::ReachabilityNotifiable);
        }
        reasons
    }
}

/// A chat user. The client's own user ([`Client::user`](crate::Client::user)) is kept current by events;
/// others are as of the last [`Client::get_user`](crate::Client::get_user).
#[derive(Clone)]
pub struct User {
    pub(crate) client: Arc<ClientInner>,
    pub(crate) snapshot: Arc<UserData>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.data();
        f.debug_struct("User")
            .field("identity", &data.identity)
            .field("friendly_name", &data.friendly_name)
            .finish_non_exhaustive()
    }
}

impl User {
    pub(crate) fn new(client: Arc<ClientInner>, data: Arc<UserData>) -> Self {
        Self { client, snapshot: data }
    }

    fn data(&self) -> Arc<UserData> {
        self.client.user_data(&self.snapshot.identity).unwrap_or_else(|| self.snapshot.clone())
    }

    /// The identity.
    pub fn identity(&self) -> &str {
        &self.snapshot.identity
    }

    /// The user SID (`US…`).
    pub fn sid(&self) -> &str {
        &self.snapshot.sid
    }

    /// Display name.
    pub fn friendly_name(&self) -> Option<String> {
        self.data().friendly_name.clone()
    }

    /// Custom attributes (`{}` by default).
    pub fn attributes(&self) -> Value {
        self.data().attributes.clone()
    }

    /// Presence; `None` unless the server tracks reachability.
    pub fn is_online(&self) -> Option<bool> {
        self.data().is_online
    }

    /// Push reachability; `None` unless the server tracks reachability.
    pub fn is_notifiable(&self) -> Option<bool> {
        self.data().is_notifiable
    }

    /// Whether this is the client's own user (the only one it can change).
    pub fn is_me(&self) -> bool {
        self.client.my_identity().as_deref() == Some(self.identity())
    }

    /// This user's events: `updated`.
    pub fn events(&self) -> Arc<UserEmitter> {
        self.client.user_emitter(&self.snapshot.identity)
    }

    /// Changes the display name of the client's own user.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for another user; [`ClientError::Server`] when refused.
    pub async fn update_friendly_name(&self, friendly_name: &str) -> Result<User> {
        self.update(Some(friendly_name.to_string()), None).await
    }

    /// Replaces the attributes of the client's own user.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for another user; [`ClientError::Server`] when refused.
    pub async fn update_attributes(&self, attributes: Value) -> Result<User> {
        self.update(None, Some(attributes_text(&attributes))).await
    }

    async fn update(&self, friendly_name: Option<String>, attributes: Option<String>) -> Result<User> {
        if !self.is_me() {
            return Err(ClientError::InvalidArgument("only the client's own user can be modified".into()));
        }
        let info: UserInfo = self.client.call_as(Call::UpdateUser { friendly_name, attributes }, false).await?;
        Ok(self.client.upsert_user(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_reasons() {
        let info = UserInfo {
            sid: "US00000000000000000000000000000001".into(),
            identity: "alice".into(),
            friendly_name: None,
            attributes: "{}".into(),
            role_sid: None,
            is_online: None,
            is_notifiable: None,
            date_created: "2026-01-01T00:00:00Z".into(),
            date_updated: "2026-01-01T00:00:00Z".into(),
        };
        let old = UserData::from_info(&info);
        let new = UserData { friendly_name: Some("Alice".into()), is_online: Some(true), ..old.clone() };
        assert_eq!(new.diff(&old), vec![UserUpdateReason::FriendlyName, UserUpdateReason::ReachabilityOnline]);
    }
}
