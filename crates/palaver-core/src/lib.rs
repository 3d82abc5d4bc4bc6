//! Palaver's domain: what a conversation is and which changes to it are allowed.
//!
//! - [`model`]: conversations, participants, messages, users, roles, services, API keys (plain data, no
//!   serialisation: the wire format belongs to `palaver-api` and the transports);
//! - [`input`]: validated values (attributes, names, identities, durations) built only by `parse`;
//! - [`store`]: the [`Store`](store::Store) port that every storage backend implements, with the rule that each
//!   change is written in the same transaction as an [`Event`](event::Event) in its stream's log;
//! - [`service`]: [`Palaver`](service::Palaver), the operations the transports call;
//! - [`timers`]: the scheduler that moves conversations to `inactive` and `closed` on time;
//! - [`webhook`]: which webhook events exist, where they go and what they carry;
//! - [`push`]: push credentials, device bindings, notification settings and who gets which notification;
//! - [`channel`]: delivery to SMS/WhatsApp/email participants, receipts, inbound messages and addresses;
//! - [`error`]: the typed errors of all of the above.
//!
//! There is no HTTP and no SQL in this crate.

pub mod channel;
pub mod clock;
pub mod cluster;
pub mod error;
pub mod event;
pub mod feed;
pub mod input;
pub mod limits;
pub mod media;
pub mod model;
pub mod push;
pub mod routing;
pub mod service;
pub mod session;
pub mod store;
pub mod timers;
pub mod webhook;

pub use clock::{Clock, SystemClock};
pub use error::{Error, Result};
pub use service::Palaver;
pub use store::Store;
