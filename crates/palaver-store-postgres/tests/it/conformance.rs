//! The behaviours of the conformance suite (`palaver-store-tests`) that this store implements. The suite's
//! macro runs every behaviour and cannot leave one out, so the implemented ones are listed here; the areas
//! left out (webhooks, channels, media) need methods listed in `palaver_store_postgres::UNSUPPORTED`.

use crate::{PostgresFactory, database_url};

macro_rules! behaviours {
    ($($area:ident: [$($behaviour:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $area {
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $behaviour() {
                        let Some(url) = database_url() else { return };
                        palaver_store_tests::$area::$behaviour(&PostgresFactory::new(url)).await;
                    }
                )*
            }
        )*
    };
}

behaviours! {
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
    ],
    participants: [
        participants_are_stored_and_addressed_by_sid_or_identity,
        chat_participants_create_their_user_once,
        a_users_conversations_are_its_participations,
        participant_conversations_are_found_by_identity_or_address,
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
