//! Backups and exports of a Palaver deployment.
//!
//! - [`snapshot`]: `palaver backup FILE` copies the embedded SQLite database beside a running server, in one
//!   consistent snapshot, with SQLite's online backup API; `palaver restore FILE` puts such a copy in place for a
//!   stopped server. A byte-for-byte copy of everything the database holds (API keys and the event log
//!   included); SQLite only.
//! - [`export`] and [`import`]: `palaver export FILE` writes the deployment's data as JSON lines
//!   ([`records`] is the format) and `palaver import FILE` reads them into an empty deployment, both through the
//!   `Store` port, so either side may be SQLite or PostgreSQL.
//! - [`progress`]: bars on a terminal, lines otherwise, on stderr.
//!
//! # What an export carries
//!
//! Services (name, dates, default roles, reachability, webhook settings), their roles (with their SIDs and
//! permissions), users, conversations (names, unique name, attributes, messaging service, state and when it
//! changed, timers with their due times, creator, email binding, dates, the next message index), participants
//! (chat and non-chat with their bindings, attributes, roles, read horizons and their times, notification
//! level, dates), conversation-scoped webhooks, messages (SID, index, author, body, subject, attributes,
//! content SID, dates), the records of their media (SID, type, name, size, SHA-256, uploader, category, date),
//! the delivery status of each message for each non-chat recipient, the account configuration (default
//! service, default messaging service and timers) and the account's webhook settings. Every SID, date (to the
//! millisecond the stores keep), index and attribute text is imported as it was.
//!
//! # What it does not carry, and why
//!
//! - **Media bytes**: they are files in the media store (`<data dir>/media`, content-addressed, or the
//!   `--media-store-url` bucket), not in the database; copy that folder or bucket beside the export.
//! - **API keys**: credentials, not data; an export is meant to be moved and read. Create keys anew on the
//!   target (`palaver keys create`). The account SID and auth token live in `credentials.toml` anyway.
//! - **The event log** (realtime resume positions, webhook history): the import writes history, so its own
//!   log starts anew; clients connect afresh. Sequence numbers and log ids therefore differ.
//! - **Delivery receipt SIDs**: the import makes each message's receipts anew (they get new `DY…` SIDs) and
//!   gives them their exported status, channel message id and error code; receipts still `queued` stay queued
//!   and are sent by the target.
//! - **Uploads not attached to any message**: the `Store` port lists media only through their message; an
//!   upload is attached within minutes or never.
//! - **Outboxes, idempotency keys, address configurations**: pending webhook deliveries and idempotency keys
//!   are short-lived state of the running source; address configurations (inbound routing) belong to the
//!   deployment's channel setup and are recreated with it.
//! - A message's `participant_sid` is derived again from its author when it is imported, as the store does
//!   for every new message: the same unless the author's participant left, or joined later than its
//!   `date_created` says.
//!
//! A deleted message's index stays unused in the target, as in the source: the import adds and deletes a
//! placeholder message at it (visible only in the target's event log).

pub mod export;
pub mod import;
pub mod progress;
pub mod records;
pub mod snapshot;

pub use export::{ExportError, export};
pub use import::{ImportError, check_file, ensure_empty, import};
pub use progress::{NoProgress, Progress, StderrProgress};
pub use records::Counts;
pub use snapshot::{BackupError, BackupSummary, RestoreError, RestoreSummary, backup, restore};

/// Another process that has the file at `path` open (its pid and program name), where the system tells (Linux).
pub fn process_holding(path: &std::path::Path) -> Option<(u32, String)> {
    palaver_store_sqlite::holder::holder(path)
}
