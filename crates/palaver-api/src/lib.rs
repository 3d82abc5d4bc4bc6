//! The wire contract shared by the Palaver server and its clients.
//!
//! Nothing here performs I/O. The crate owns three things:
//! - [`sid`]: validated resource identifiers (`CH…`, `IM…`, `MB…`), the two-letter prefix plus 32 hex digits
//!   that Twilio uses, so a SID can never be confused with another kind of resource;
//! - [`error`]: the numbered error codes and the `{code, message, more_info, status}` body of the REST API;
//! - [`rest`]: the JSON resources of the Twilio-compatible REST API v1 and its list pages;
//! - [`twilsock`]: the v3 framing the official JS SDK speaks on `GET /v3/wsconnect`.
//!
//! Resources are plain structs with every field documented; dates travel as ISO-8601 strings and JSON
//! attributes as strings holding JSON, exactly as Twilio's API sends them.

pub mod error;
pub mod realtime;
pub mod rest;
pub mod sid;
pub mod token;
pub mod twilsock;

pub use error::{ErrorBody, ErrorCode};
