//! Operations on channel traffic: messages arriving from SMS/WhatsApp/email, delivery receipts, and the
//! address configurations that decide where a message to one of our addresses goes.

use palaver_api::sid::{AddressConfigurationSid, DeliveryReceiptSid, MessageSid, ServiceSid};

use crate::channel::*;
use crate::error::{InvalidInput, Result};
use crate::event::Origin;
use crate::input::FriendlyName;
use crate::model::{BindingKind, Message, MessagingBinding};
use crate::service::{AddParticipant, CreateConversation, CreateConversationWebhook, ParticipantKind, PostMessage};
use crate::store::{ConversationRef, Page, PageQuery};
use crate::webhook::{HookMethod, ScopedTarget, WebhookEventType};
use crate::{Error, Palaver};

/// What became of an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Stored in an existing conversation.
    Routed(Message),
    /// Stored in a conversation created for it by an address configuration.
    Created(Message),
    /// No conversation has this sender on this address, and no address configuration creates one.
    Unroutable,
}

/// A new address configuration as the caller describes it.
#[derive(Debug, Clone)]
pub struct CreateAddressConfiguration {
    /// `sms`, `whatsapp`, `email`, …
    pub kind: String,
    /// The address.
    pub address: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Automatic conversation creation.
    pub auto_creation: AutoCreation,
    /// ISO country.
    pub address_country: Option<String>,
}

impl Palaver {
    /// Stores a message that arrived from a channel in the conversation where its sender talks to that
    /// address, creating the conversation (and the sender's participant) when an address configuration with
    /// auto-creation covers the address.
    ///
    /// # Errors
    /// When storage fails, or the conversation's rules refuse the message (e.g. too long).
    pub async fn receive_inbound(&self, inbound: InboundMessage) -> Result<Inbound> {
        let (from, to) = match inbound.channel {
            BindingKind::Email => (bare_email(&inbound.from), bare_email(&inbound.to)),
            _ => (inbound.from.trim().to_string(), inbound.to.trim().to_string()),
        };
        let source = match inbound.channel {
            BindingKind::Sms => crate::event::Source::Sms,
            BindingKind::Whatsapp => crate::event::Source::Whatsapp,
            BindingKind::Email => crate::event::Source::Email,
        };
        let acting = self.acting_as(Origin::inbound(source));
        let post = |media| PostMessage {
            author: Some(from.clone()),
            body: inbound.body.clone(),
            subject: inbound.subject.clone(),
            media,
            ..PostMessage::default()
        };
        let mut ours = vec![to.clone()];
        ours.extend(inbound.cc.iter().map(|c| bare_email(c)));
        for address in &ours {
            if let Some((service, conversation)) =
                self.store().find_conversation_by_binding(inbound.channel, &from, address).await?
            {
                let media = self.record_inbound_media(&service, &inbound.media).await?;
                let message = acting.post_message(&service, &ConversationRef::Sid(conversation), post(media)).await?;
                return Ok(Inbound::Routed(message));
            }
        }
        let Some(config) = self.store().find_address_configuration(&to).await? else { return Ok(Inbound::Unroutable) };
        if !config.auto_creation.enabled {
            return Ok(Inbound::Unroutable);
        }
        let service = match &config.auto_creation.conversation_service_sid {
            Some(service) => service.clone(),
            None => self.default_service().await?,
        };
        let friendly_name =
            config.friendly_name.as_deref().map(|name| FriendlyName::parse("FriendlyName", name)).transpose()?;
        let mut create = CreateConversation { friendly_name, ..CreateConversation::default() };
        if inbound.channel == BindingKind::Email {
            create.email_address = Some(to.clone());
        }
        let binding = MessagingBinding {
            kind: inbound.channel,
            address: from.clone(),
            proxy_address: (inbound.channel != BindingKind::Email).then(|| to.clone()),
            projected_address: (inbound.channel == BindingKind::Email).then(|| to.clone()),
            name: inbound.from_name.clone(),
            level: (inbound.channel == BindingKind::Email).then(|| "to".to_string()),
        };
        let participant = AddParticipant {
            kind: ParticipantKind::NonChat(binding),
            attributes: None,
            role_sid: None,
            date_created: None,
            date_updated: None,
        };
        let (conversation, _) =
            acting.create_conversation_with_participants(&service, create, vec![participant]).await?;
        let conv = ConversationRef::Sid(conversation.sid.clone());
        if config.auto_creation.kind == "webhook"
            && let Some(url) = &config.auto_creation.webhook_url
        {
            let filters =
                config.auto_creation.webhook_filters.iter().filter_map(|f| WebhookEventType::parse(f)).collect();
            let method = config.auto_creation.webhook_method.as_deref().map(|m| HookMethod::parse("Method", m));
            let hook = CreateConversationWebhook {
                target: ScopedTarget::Webhook,
                url: Some(url.clone()),
                method: method.transpose()?,
                filters,
                triggers: Vec::new(),
                flow_sid: None,
                replay_after: None,
            };
            self.create_conversation_webhook(&service, &conv, hook).await?;
        }
        let media = self.record_inbound_media(&service, &inbound.media).await?;
        let message = acting.post_message(&service, &conv, post(media)).await?;
        Ok(Inbound::Created(message))
    }

    async fn record_inbound_media(
        &self,
        service: &ServiceSid,
        uploads: &[crate::media::Upload],
    ) -> Result<Vec<palaver_api::sid::MediaSid>> {
        let mut sids = Vec::with_capacity(uploads.len());
        for upload in uploads {
            sids.push(self.record_upload(service, upload.clone()).await?.sid);
        }
        Ok(sids)
    }

    /// Records what a channel reported about a receipt. `None` when no receipt matches.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn update_delivery(
        &self,
        receipt: &ReceiptRef,
        update: DeliveryUpdate,
    ) -> Result<Option<DeliveryReceipt>> {
        self.store().update_delivery(receipt, update).await
    }

    /// A message's delivery receipts.
    ///
    /// # Errors
    /// When the conversation or message does not exist.
    pub async fn list_receipts(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        page: PageQuery,
    ) -> Result<Page<DeliveryReceipt>> {
        self.store().list_receipts(service, conv, message, page).await
    }

    /// One delivery receipt.
    ///
    /// # Errors
    /// When the conversation, message or receipt does not exist.
    pub async fn receipt(
        &self,
        service: &ServiceSid,
        conv: &ConversationRef,
        message: &MessageSid,
        sid: &DeliveryReceiptSid,
    ) -> Result<DeliveryReceipt> {
        self.store().get_receipt(service, conv, message, sid).await
    }

    /// Configures an address.
    ///
    /// # Errors
    /// When the address is empty or already configured, or the auto-creation settings are invalid.
    pub async fn create_address_configuration(
        &self,
        create: CreateAddressConfiguration,
    ) -> Result<AddressConfiguration> {
        if create.address.trim().is_empty() {
            return Err(InvalidInput::new("Address", "is required").into());
        }
        self.check_auto_creation(&create.auto_creation).await?;
        let now = self.clock().now();
        let config = AddressConfiguration {
            sid: AddressConfigurationSid::generate(),
            kind: create.kind,
            address: create.address.trim().to_string(),
            friendly_name: create.friendly_name,
            auto_creation: create.auto_creation,
            address_country: create.address_country,
            date_created: now,
            date_updated: now,
        };
        self.store().create_address_configuration(config).await
    }

    async fn check_auto_creation(&self, auto: &AutoCreation) -> Result<()> {
        if let Some(service) = &auto.conversation_service_sid {
            // A setting that names a missing service is bad input; the address configuration itself exists.
            match self.service(service).await {
                Err(Error::NotFound { .. }) => {
                    let reason = format!("there is no service {service}");
                    return Err(InvalidInput::new("AutoCreation.ConversationServiceSid", reason).into());
                }
                found => found?,
            };
        }
        if let Some(flow) = &auto.studio_flow_sid {
            crate::service::check_studio_flow_sid("AutoCreation.StudioFlowSid", flow)?;
        }
        match auto.kind.as_str() {
            "default" | "studio" => {}
            "webhook" => match &auto.webhook_url {
                Some(url) => crate::service::validate_webhook_url("AutoCreation.WebhookUrl", url)?,
                None if auto.enabled => {
                    return Err(InvalidInput::new("AutoCreation.WebhookUrl", "is required for type webhook").into());
                }
                None => {}
            },
            other => {
                return Err(InvalidInput::new(
                    "AutoCreation.Type",
                    format!("'{other}' is not one of webhook, studio, default"),
                )
                .into());
            }
        }
        for filter in &auto.webhook_filters {
            if WebhookEventType::parse(filter).is_none() {
                return Err(Error::Invalid(InvalidInput::new(
                    "AutoCreation.WebhookFilters",
                    format!("'{filter}' is not a webhook event type"),
                )));
            }
        }
        if let Some(method) = &auto.webhook_method {
            HookMethod::parse("AutoCreation.WebhookMethod", method)?;
        }
        Ok(())
    }

    /// One address configuration.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn address_configuration(&self, sid: &AddressConfigurationSid) -> Result<AddressConfiguration> {
        self.store().get_address_configuration(sid).await
    }

    /// Address configurations, optionally of one type.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn list_address_configurations(
        &self,
        kind: Option<String>,
        page: PageQuery,
    ) -> Result<Page<AddressConfiguration>> {
        self.store().list_address_configurations(kind, page).await
    }

    /// Changes an address configuration.
    ///
    /// # Errors
    /// When it does not exist or the new settings are invalid.
    pub async fn update_address_configuration(
        &self,
        sid: &AddressConfigurationSid,
        mut patch: AddressConfigurationPatch,
    ) -> Result<AddressConfiguration> {
        if let Some(auto) = &patch.auto_creation {
            self.check_auto_creation(auto).await?;
        }
        patch.now = Some(self.clock().now());
        self.store().update_address_configuration(sid, patch).await
    }

    /// Deletes an address configuration.
    ///
    /// # Errors
    /// When it does not exist.
    pub async fn delete_address_configuration(&self, sid: &AddressConfigurationSid) -> Result<()> {
        self.store().delete_address_configuration(sid).await
    }
}
