//! One conformance suite for Palaver's storage port, run against every backend: the behaviour the rest of
//! Palaver relies on lives here, not in one backend's tests.
//!
//! Each behaviour is a `pub async fn` taking a [`StoreFactory`]; it builds valid inputs the way
//! `palaver_core::Palaver` does and asserts outcomes through the [`Store`] trait only (no SQL). A backend runs
//! all of them with one line in its tests:
//!
//! ```ignore
//! palaver_store_tests::store_conformance_tests!(SqliteFactory::default());
//! ```
//!
//! which expands to one `#[tokio::test]` per behaviour, grouped in one module per area:
//!
//! - [`services`]: bootstrap, account configuration, services, roles, API keys, users, writability, change
//!   notifications;
//! - [`events`]: every mutation appends its event with the stream's next sequence number; user streams;
//! - [`conversations`]: unique names, rules checked inside a write (a refusal changes and appends nothing),
//!   the closed state, filters, creation with participants;
//! - [`participants`]: participants, implicit users, a user's conversations, lookups by identity or address;
//! - [`messages`]: indices never reused (across restarts too), idempotency keys, exact unread counts;
//! - [`paging`]: keyset pages that never skip or repeat under concurrent inserts, in both directions;
//! - [`timers`]: due timers as the scheduler applies them;
//! - [`webhooks`]: settings and the webhook outbox with its cursor: planners racing over one log plan each
//!   event once, claims hand each entry out once for a lease;
//! - [`channels`]: the channel outbox (delivery receipts), claimed for a lease as webhooks are, inbound
//!   routing, address configurations;
//! - [`media`]: uploads attached once to a message, in its transaction;
//! - [`push`]: push credentials, bindings (one per address), notification settings and the push outbox;
//! - [`concurrency`]: concurrent writes, failures that stay alone, rules under races.
//!
//! *Invariant:* nothing here knows a backend; a behaviour that cannot be said through [`Store`] does not
//! belong here but in that backend's own tests.

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use palaver_core::store::Store;

pub mod channels;
pub mod concurrency;
pub mod conversations;
pub mod events;
mod fixtures;
pub mod media;
pub mod messages;
pub mod paging;
pub mod participants;
pub mod push;
pub mod services;
pub mod timers;
pub mod webhooks;

/// Makes the stores the behaviours run against. The macro builds one factory per test, so a factory may keep
/// whatever its stores need (temporary directories, schema names) until the test ends.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// An empty, migrated store (not bootstrapped), isolated from every other store: its own file, its own
    /// database schema.
    async fn fresh(&self) -> Arc<dyn Store>;

    /// Restarts `store` as a server restart would: drops the handle (the caller's last one), then opens the
    /// same data again and returns the new store. [`Locations`] finds the data again by the handle.
    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store>;
}

/// What a factory keeps for each store it made, to open the store's data again: the SQLite factory keeps the
/// store's temporary directory, a PostgreSQL one would keep the schema's name.
///
/// Stores are told apart by their handle's address; each entry holds a weak reference to its store, so the
/// address cannot be reused by another store while the entry exists.
#[derive(Debug)]
pub struct Locations<T> {
    entries: Mutex<Vec<(Weak<dyn Store>, T)>>,
}

impl<T> Default for Locations<T> {
    fn default() -> Self {
        Self { entries: Mutex::new(Vec::new()) }
    }
}

impl<T> Locations<T> {
    /// Remembers where `store` keeps its data.
    pub fn remember(&self, store: &Arc<dyn Store>, location: T) {
        self.lock().push((Arc::downgrade(store), location));
    }

    /// Forgets `store` and returns where it kept its data.
    ///
    /// # Panics
    /// When `store` was not remembered here: it was made by another factory.
    pub fn take(&self, store: &Arc<dyn Store>) -> T {
        let mut entries = self.lock();
        let position = entries
            .iter()
            .position(|(known, _)| std::ptr::addr_eq(known.as_ptr(), Arc::as_ptr(store)))
            .expect("the store was made by this factory");
        entries.remove(position).1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<dyn Store>, T)>> {
        // A test that panicked while holding the lock has failed already; its entries are still sound.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Expands to one `#[tokio::test]` per behaviour of the suite, each running against a store made by
/// `$factory` (an expression evaluated anew in every test, so each test has a factory of its own). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::__behaviours! { $factory;
            services: [
                bootstrap_is_idempotent,
                services_start_with_the_default_roles,
                account_config_round_trips,
                services_are_created_listed_updated_and_deleted,
                the_default_service_cannot_be_deleted,
                roles_are_managed_and_default_roles_are_kept,
                api_keys_round_trip,
                users_are_unique_per_service_and_logged_on_their_stream,
                a_healthy_store_is_writable,
                committed_writes_are_notified,
            ],
            events: [
                conversation_changes_append_their_events,
                participant_changes_append_their_events,
                message_changes_append_their_events,
                events_record_their_origin,
                the_log_is_read_by_stream_or_as_a_whole,
                joining_and_leaving_appear_on_the_users_stream,
                horizon_and_level_changes_appear_on_the_users_stream,
            ],
            conversations: [
                unique_names_are_unique_per_service,
                a_cleared_unique_name_can_be_reused,
                a_deleted_conversations_unique_name_can_be_reused,
                the_same_unique_name_in_two_services_is_fine,
                conversations_are_addressed_by_unique_name,
                a_taken_participant_identity_changes_nothing,
                non_chat_participants_are_unique_and_limited,
                the_participant_limit_is_enforced,
                creating_with_participants_is_all_or_nothing,
                a_closed_conversation_refuses_changes,
                a_missing_conversation_is_not_found,
                conversations_are_filtered_by_state_and_creation_date,
                conversations_are_stored_as_given,
                a_restored_lifecycle_is_stored_as_given,
            ],
            participants: [
                participants_are_stored_and_addressed_by_sid_or_identity,
                chat_participants_create_their_user_once,
                a_users_conversations_are_its_participations,
                participant_conversations_are_found_by_identity_or_address,
                renaming_a_chat_participant_moves_it_between_users,
            ],
            messages: [
                message_indices_start_at_zero_and_increase,
                message_indices_are_never_reused,
                message_indices_are_never_reused_across_a_restart,
                messages_are_stored_as_given_and_linked_to_their_author,
                an_idempotency_key_returns_the_first_message,
                idempotency_keys_survive_a_restart,
                unread_count_is_none_without_a_horizon,
                unread_count_counts_existing_messages_above_the_horizon,
                unread_count_stays_exact_across_large_gaps,
                message_pages_report_whether_messages_lead_them,
            ],
            paging: [
                conversation_pages_neither_skip_nor_repeat,
                participant_pages_neither_skip_nor_repeat,
                message_pages_neither_skip_nor_repeat,
                user_conversation_pages_neither_skip_nor_repeat,
                user_pages_neither_skip_nor_repeat,
            ],
            timers: [
                due_timers_make_conversations_inactive_then_closed,
                a_conversation_due_for_both_timers_closes_at_once,
                the_next_timer_due_is_the_earliest_of_all,
                messages_rearm_timers_and_wake_inactive_conversations,
                updates_rearm_or_clear_timers,
                timers_survive_a_restart,
            ],
            webhooks: [
                webhook_settings_round_trip,
                conversation_webhooks_are_limited_listed_and_deleted,
                enqueuing_webhooks_moves_the_cursor,
                a_batch_from_a_stale_cursor_adds_nothing,
                racing_planners_plan_each_event_once,
                due_webhooks_come_at_their_time_oldest_first,
                claimed_webhooks_are_leased,
                concurrent_claims_hand_each_webhook_to_one_claimer,
                failed_webhooks_are_retried_then_given_up,
                delivered_webhooks_leave_the_outbox,
                the_webhook_outbox_reports_its_depth,
                the_webhook_outbox_survives_a_restart,
                attempts_are_recorded_with_their_outbox_entry,
                pending_outbox_entries_are_listed_with_their_next_attempt,
                the_attempt_history_is_pruned_by_count_and_age,
            ],
            channels: [
                messages_queue_a_receipt_per_non_chat_recipient,
                the_channel_outbox_reports_its_depth,
                channel_jobs_are_rescheduled,
                channel_jobs_are_claimed_for_a_lease,
                concurrent_claims_hand_each_receipt_to_one_claimer,
                delivery_updates_move_receipts_and_message_counts,
                a_receipt_status_never_moves_backwards,
                a_leaving_participants_queued_receipts_fail,
                inbound_traffic_finds_its_conversation_by_binding,
                address_configurations_are_unique_per_address,
                channel_deliveries_are_listed_across_conversations,
            ],
            media: [
                media_records_round_trip,
                media_are_attached_once_and_listed_on_their_message,
                media_beyond_the_size_limit_are_refused,
                media_of_another_service_cannot_be_attached,
                channel_jobs_carry_their_messages_media,
            ],
            push: [
                credentials_round_trip_with_their_secrets,
                bindings_are_registered_once_per_address,
                notification_settings_are_patched_per_service,
                racing_push_planners_plan_each_event_once,
                claimed_pushes_are_leased_with_their_bindings,
                deleted_bindings_take_their_pushes_along,
                concurrent_claims_hand_each_push_to_one_claimer,
                the_push_outbox_survives_a_restart,
            ],
            concurrency: [
                concurrent_messages_get_distinct_indices_and_sequence_numbers,
                concurrent_streams_stay_whole,
                a_failing_write_among_concurrent_ones_fails_alone,
                messages_refused_by_a_rule_leave_concurrent_ones_alone,
                unacknowledged_writes_leave_no_trace,
                concurrent_joins_with_one_identity_admit_one,
                concurrent_claims_of_a_unique_name_admit_one,
                concurrent_idempotent_sends_store_one_message,
            ],
        }
    };
}

/// The expansion behind [`store_conformance_tests!`]: a module per area, a test per behaviour.
#[doc(hidden)]
#[macro_export]
macro_rules! __behaviours {
    ($factory:expr; $($area:ident: [$($behaviour:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    // Several worker threads, so that spawned writes really run side by side.
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $behaviour() {
                        let factory = $factory;
                        $crate::$area::$behaviour(&factory).await;
                    }
                )*
            }
        )*
    };
}

#[cfg(test)]
mod tidy {
    /// The source of each area, to check that the macro runs every behaviour it defines.
    const AREAS: &[(&str, &str)] = &[
        ("services", include_str!("services.rs")),
        ("events", include_str!("events.rs")),
        ("conversations", include_str!("conversations.rs")),
        ("participants", include_str!("participants.rs")),
        ("messages", include_str!("messages.rs")),
        ("paging", include_str!("paging.rs")),
        ("timers", include_str!("timers.rs")),
        ("webhooks", include_str!("webhooks.rs")),
        ("channels", include_str!("channels.rs")),
        ("media", include_str!("media.rs")),
        ("push", include_str!("push.rs")),
        ("concurrency", include_str!("concurrency.rs")),
    ];

    fn macro_list(area: &str) -> Vec<String> {
        let lib = include_str!("lib.rs");
        let start = lib.find(&format!("            {area}: [")).unwrap_or_else(|| panic!("{area} is not in the macro"));
        let list = &lib[start..];
        let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
        list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn the_macro_runs_every_behaviour_and_nothing_else() {
        for (area, source) in AREAS {
            let defined: Vec<String> = source
                .lines()
                .filter_map(|line| line.strip_prefix("pub async fn "))
                .map(|rest| rest.split('(').next().unwrap_or_default().to_string())
                .collect();
            assert_eq!(macro_list(area), defined, "the macro's list for {area} (in definition order)");
        }
    }
}
