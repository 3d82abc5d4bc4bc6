//! JSON resources of the Twilio-compatible REST API v1 (`/v1/…`), as the server sends them.
//!
//! Field names are snake_case, dates are ISO-8601 strings (`2026-01-02T03:04:05Z`), `attributes` is a string
//! holding JSON, and every `url`/`links` value is absolute so helper libraries can follow it.

mod page;
mod push;
mod resources;

pub use page::{ListPage, PageMeta, PageToken};
pub use push::{BindingResource, CredentialResource, NotificationResource};
pub use resources::*;
