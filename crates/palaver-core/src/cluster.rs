//! The other nodes of a cluster, as the domain sees them.
//!
//! Everything durable reaches other nodes through the shared store (and its log, relayed by the live feed).
//! What no store holds must be told to them: typing notices, and that a cached decision (who may do what,
//! which webhooks are set) is stale. [`Peers`] is that port; `palaver-cluster` implements it over NATS.
//! Telling peers is best effort: a notice that is lost costs a typing indicator, and caches are also dropped
//! now and then by the receiving side, so a lost invalidation only delays a change, never loses it.

use crate::service::TypingNotice;

/// Tells the other nodes of a cluster what they cannot learn from the store.
pub trait Peers: Send + Sync + std::fmt::Debug + 'static {
    /// A participant of this node is typing.
    fn typing(&self, notice: &TypingNotice);
    /// Roles, role assignments, membership or unique names changed here: cached permission checks are stale.
    fn access_changed(&self);
    /// A webhook setting changed here: cached webhook settings are stale.
    fn webhooks_changed(&self);
}
