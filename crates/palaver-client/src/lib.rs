//! The Palaver client SDK: a Rust counterpart of Twilio's Conversations JS SDK (`Client`, `Conversation`,
//! `Participant`, `Message`, `User`, their methods and events) over Palaver's own realtime protocol
//! (`docs/protocol.md`, [`palaver_api::realtime`]).
//!
//! # Map
//! - [`client`](Client): connecting, the conversation cache, client-level events.
//! - `transport`: the connection task (request/reply matching, reconnect with backoff, resume).
//! - [`conversation`](Conversation): every method, accessor and event of the seed `TwilioConversation`.
//! - [`Participant`], [`Message`] (+ [`MessageBuilder`]), [`User`], [`Paginator`].
//! - [`emitter`]: `ReplayEventEmitter`, the event surface of every object.
//!
//! # Architecture invariants
//! - Only replies and events change local state; calls that write the read horizon never do (Twilio's
//!   semantics), the server's `unread` and participant events do.
//! - Listeners are never called while the client's state lock is held, so they may call any accessor.
//! - The SDK depends on `palaver-api` only, never on the server's crates.
//!
//! # Examples
//! ```no_run
//! # async fn demo() -> Result<(), palaver_client::ClientError> {
//! use palaver_client::{Client, ConversationEvent, ConversationEventName};
//!
//! let client = Client::connect("ws://127.0.0.1:8088/v1/realtime", "<access token>").await?;
//! let conversation = client.get_conversation_by_unique_name("support").await?;
//! conversation.events().on(ConversationEventName::MessageAdded, |event| {
//!     if let ConversationEvent::MessageAdded(message) = event {
//!         println!("{}: {}", message.author().unwrap_or("?"), message.body().unwrap_or(""));
//!     }
//!     Ok(())
//! });
//! let page = conversation.get_messages(Some(20), None, None).await?;
//! for message in page.items() {
//!     println!("#{} {:?}", message.index(), message.body());
//! }
//! # Ok(()) }
//! ```

mod client;
mod conversation;
pub mod emitter;
mod error;
mod message;
mod paginator;
mod participant;
mod transport;
mod typing;
mod user;
mod util;

pub use client::{Client, ClientEmitter, ClientEvent, ClientEventName, ClientOptions, CreateConversationOptions};
pub use conversation::{
    Conversation, ConversationBindings, ConversationEmailBinding, ConversationEmitter, ConversationEvent,
    ConversationEventName, ConversationLinks, ConversationState, ConversationStateKind, ConversationStatus,
    ConversationUpdateReason, LastMessage, NotificationLevel, ParticipantBindingOptions, ParticipantEmailBinding,
    ParticipantEmailLevel, ParticipantResponse, RecipientDescriptor,
};
pub use error::{ClientError, PageDirection, Result};
pub use message::{
    AggregatedDeliveryReceipt, DetailedDeliveryReceipt, Media, MediaContent, Message, MessageBuilder, MessageContent,
    MessageEmitter, MessageEvent, MessageEventName, MessageType, MessageUpdateReason, SendEmailOptions, UnsentMessage,
};
pub use paginator::Paginator;
pub use palaver_api::realtime::{ConversationLimits, Direction, ParticipantInfo};
pub use participant::{
    Participant, ParticipantBindings, ParticipantEmitter, ParticipantEvent, ParticipantEventName, ParticipantKind,
    ParticipantRef, ParticipantUpdateReason,
};
pub use transport::{ConnectionState, UrlProvider};
pub use user::{User, UserEmitter, UserEvent, UserEventName, UserUpdateReason};
