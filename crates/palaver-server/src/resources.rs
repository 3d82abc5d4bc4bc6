//! Domain values → REST resources. Every URL is absolute and built from the request's [`Scope`].

use std::collections::BTreeMap;

use palaver_api::rest::*;
use palaver_core::model::*;
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;

use crate::scope::Scope;

/// Twilio's date format: seconds precision, `Z`.
pub(crate) fn date(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| t.format(&Iso8601::DEFAULT).unwrap_or_default())
}

fn links(pairs: &[(&str, String)]) -> Links {
    pairs.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect::<BTreeMap<_, _>>()
}

/// `…/Conversations/CH…` under the scope.
pub(crate) fn conversation_url(scope: &Scope, c: &palaver_api::sid::ConversationSid) -> String {
    format!("{}/Conversations/{c}", scope.base)
}

fn timers(t: &Timers) -> TimersResource {
    TimersResource { date_inactive: t.date_inactive.map(date), date_closed: t.date_closed.map(date) }
}

/// A conversation.
pub(crate) fn conversation(scope: &Scope, account: &str, c: Conversation) -> ConversationResource {
    let url = conversation_url(scope, &c.sid);
    let bindings = (c.email_binding.address.is_some() || c.email_binding.name.is_some())
        .then(|| serde_json::json!({"email": {"address": c.email_binding.address, "name": c.email_binding.name}}));
    ConversationResource {
        account_sid: account.to_string(),
        chat_service_sid: c.service_sid.to_string(),
        messaging_service_sid: c.messaging_service_sid.map(|s| s.to_string()),
        sid: c.sid.to_string(),
        friendly_name: c.friendly_name,
        unique_name: c.unique_name,
        attributes: c.attributes.as_str().to_string(),
        state: c.state.as_str().to_string(),
        date_created: date(c.date_created),
        date_updated: date(c.date_updated),
        timers: timers(&c.timers),
        links: links(&[
            ("participants", format!("{url}/Participants")),
            ("messages", format!("{url}/Messages")),
            ("webhooks", format!("{url}/Webhooks")),
        ]),
        url,
        bindings,
    }
}

/// A messaging binding.
pub(crate) fn binding(b: MessagingBinding) -> MessagingBindingResource {
    MessagingBindingResource {
        kind: b.kind.as_str().to_string(),
        address: b.address,
        proxy_address: b.proxy_address,
        projected_address: b.projected_address,
        name: b.name,
        level: b.level,
    }
}

/// A participant.
pub(crate) fn participant(scope: &Scope, account: &str, p: Participant) -> ParticipantResource {
    ParticipantResource {
        account_sid: account.to_string(),
        chat_service_sid: p.service_sid.to_string(),
        url: format!("{}/Participants/{}", conversation_url(scope, &p.conversation_sid), p.sid),
        conversation_sid: p.conversation_sid.to_string(),
        sid: p.sid.to_string(),
        identity: p.identity.map(|i| i.as_str().to_string()),
        attributes: p.attributes.as_str().to_string(),
        messaging_binding: p.binding.map(binding),
        role_sid: p.role_sid.map(|r| r.to_string()),
        date_created: date(p.date_created),
        date_updated: date(p.date_updated),
        last_read_message_index: p.last_read_message_index,
        last_read_timestamp: p.last_read_timestamp.map(date),
    }
}

/// A message.
pub(crate) fn message(scope: &Scope, account: &str, m: Message) -> MessageResource {
    let url = format!("{}/Messages/{}", conversation_url(scope, &m.conversation_sid), m.sid);
    MessageResource {
        account_sid: account.to_string(),
        chat_service_sid: m.service_sid.to_string(),
        conversation_sid: m.conversation_sid.to_string(),
        sid: m.sid.to_string(),
        index: m.index,
        author: Some(m.author),
        body: m.body,
        media: (!m.media.is_empty()).then_some(m.media),
        attributes: m.attributes.as_str().to_string(),
        participant_sid: m.participant_sid.map(|p| p.to_string()),
        date_created: date(m.date_created),
        date_updated: m.date_updated.map(date),
        links: links(&[
            ("delivery_receipts", format!("{url}/Receipts")),
            ("channel_metadata", format!("{url}/ChannelMetadata")),
        ]),
        url,
        delivery: m.delivery.map(|d| d.aggregate()),
        content_sid: m.content_sid,
        subject: m.subject,
    }
}

/// A user.
pub(crate) fn user(scope: &Scope, account: &str, u: User) -> UserResource {
    let url = format!("{}/Users/{}", scope.base, u.sid);
    UserResource {
        sid: u.sid.to_string(),
        account_sid: account.to_string(),
        chat_service_sid: u.service_sid.to_string(),
        role_sid: u.role_sid.map(|r| r.to_string()),
        identity: u.identity.as_str().to_string(),
        friendly_name: u.friendly_name,
        attributes: u.attributes.as_str().to_string(),
        is_online: None,
        is_notifiable: None,
        date_created: date(u.date_created),
        date_updated: date(u.date_updated),
        links: links(&[("user_conversations", format!("{url}/Conversations"))]),
        url,
    }
}

/// A conversation as a user sees it.
pub(crate) fn user_conversation(scope: &Scope, account: &str, uc: UserConversation) -> UserConversationResource {
    let c = uc.conversation;
    let p = uc.participant;
    let conv_url = conversation_url(scope, &c.sid);
    UserConversationResource {
        account_sid: account.to_string(),
        chat_service_sid: c.service_sid.to_string(),
        conversation_sid: c.sid.to_string(),
        unread_messages_count: uc.unread_messages_count,
        last_read_message_index: p.last_read_message_index,
        participant_sid: p.sid.to_string(),
        url: format!("{}/Users/{}/Conversations/{}", scope.base, uc.user_sid, c.sid),
        user_sid: uc.user_sid.to_string(),
        friendly_name: c.friendly_name,
        conversation_state: c.state.as_str().to_string(),
        timers: timers(&c.timers),
        attributes: c.attributes.as_str().to_string(),
        date_created: date(c.date_created),
        date_updated: date(c.date_updated),
        created_by: c.created_by,
        notification_level: p.notification_level.as_str().to_string(),
        unique_name: c.unique_name,
        links: links(&[("participant", format!("{conv_url}/Participants/{}", p.sid)), ("conversation", conv_url)]),
    }
}

/// A conversation found through a participant.
pub(crate) fn participant_conversation(
    scope: &Scope,
    account: &str,
    pc: ParticipantConversation,
) -> ParticipantConversationResource {
    let c = pc.conversation;
    let p = pc.participant;
    let conv_url = conversation_url(scope, &c.sid);
    ParticipantConversationResource {
        account_sid: account.to_string(),
        chat_service_sid: c.service_sid.to_string(),
        participant_sid: p.sid.to_string(),
        participant_user_sid: pc.user_sid.map(|u| u.to_string()),
        participant_identity: p.identity.map(|i| i.as_str().to_string()),
        participant_messaging_binding: p.binding.map(binding),
        conversation_sid: c.sid.to_string(),
        conversation_unique_name: c.unique_name,
        conversation_friendly_name: c.friendly_name,
        conversation_attributes: c.attributes.as_str().to_string(),
        conversation_date_created: date(c.date_created),
        conversation_date_updated: date(c.date_updated),
        conversation_created_by: c.created_by,
        conversation_state: c.state.as_str().to_string(),
        conversation_timers: timers(&c.timers),
        links: links(&[("participant", format!("{conv_url}/Participants/{}", p.sid)), ("conversation", conv_url)]),
    }
}

/// A role.
pub(crate) fn role(scope: &Scope, account: &str, r: Role) -> RoleResource {
    RoleResource {
        url: format!("{}/Roles/{}", scope.base, r.sid),
        sid: r.sid.to_string(),
        account_sid: account.to_string(),
        chat_service_sid: r.service_sid.to_string(),
        friendly_name: r.friendly_name,
        kind: r.kind.as_str().to_string(),
        permissions: r.permissions,
        date_created: date(r.date_created),
        date_updated: date(r.date_updated),
    }
}

/// A service.
pub(crate) fn service(origin: &str, account: &str, s: Service) -> ServiceResource {
    let url = format!("{origin}/v1/Services/{}", s.sid);
    ServiceResource {
        account_sid: account.to_string(),
        sid: s.sid.to_string(),
        friendly_name: s.friendly_name,
        date_created: date(s.date_created),
        date_updated: date(s.date_updated),
        links: links(&[
            ("conversations", format!("{url}/Conversations")),
            ("users", format!("{url}/Users")),
            ("roles", format!("{url}/Roles")),
            ("bindings", format!("{url}/Bindings")),
            ("configuration", format!("{url}/Configuration")),
            ("participant_conversations", format!("{url}/ParticipantConversations")),
        ]),
        url,
    }
}

/// A service's configuration.
pub(crate) fn service_configuration(origin: &str, s: Service) -> ServiceConfigurationResource {
    let url = format!("{origin}/v1/Services/{}/Configuration", s.sid);
    ServiceConfigurationResource {
        chat_service_sid: s.sid.to_string(),
        default_conversation_creator_role_sid: s.creator_role_sid.to_string(),
        default_conversation_role_sid: s.participant_role_sid.to_string(),
        default_chat_service_role_sid: s.user_role_sid.to_string(),
        links: links(&[("notifications", format!("{url}/Notifications")), ("webhooks", format!("{url}/Webhooks"))]),
        url,
        reachability_enabled: s.reachability_enabled,
    }
}

/// The account configuration.
pub(crate) fn configuration(origin: &str, account: &str, c: AccountConfig) -> ConfigurationResource {
    let url = format!("{origin}/v1/Configuration");
    ConfigurationResource {
        account_sid: account.to_string(),
        default_chat_service_sid: c.default_service_sid.to_string(),
        default_messaging_service_sid: c.default_messaging_service_sid.map(|s| s.to_string()),
        default_inactive_timer: c.default_inactive_timer.map(|d| d.to_iso8601()),
        default_closed_timer: c.default_closed_timer.map(|d| d.to_iso8601()),
        links: links(&[
            ("service", format!("{origin}/v1/Services/{}", c.default_service_sid)),
            ("webhooks", format!("{url}/Webhooks")),
        ]),
        url,
    }
}
