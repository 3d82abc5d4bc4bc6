//! Conversation timers, as the scheduler (`palaver_core::timers`) drives them: it asks when the next timer is
//! due, and at that time lets the store apply every due timer.

use palaver_core::event::{self, EventKind, Origin};
use palaver_core::input::TimerDuration;
use palaver_core::model::{Conversation, ConversationState};
use palaver_core::service::arm_timers;
use palaver_core::store::ConversationPatch;

use crate::StoreFactory;
use crate::fixtures::*;

/// An active conversation created at [`T0`] that becomes inactive after `inactive` seconds and closes after
/// `closed` seconds without activity.
async fn timed(world: &World, inactive: i64, closed: i64) -> Conversation {
    let timers = arm_timers(
        ConversationState::Active,
        Some(TimerDuration::from_secs(inactive)),
        Some(TimerDuration::from_secs(closed)),
        T0,
    );
    let conversation = Conversation { timers, ..new_conversation(&world.service) };
    world.create(conversation, Vec::new()).await.unwrap().0
}

async fn fire(world: &World, secs: i64) -> Vec<Conversation> {
    world.store.fire_due_timers(at(secs)).await.unwrap()
}

/// An active conversation becomes inactive when its inactive timer is due, then closed when its closed timer
/// is; each change is a `conversation.state_updated` event made by the system, and nothing fires twice.
pub async fn due_timers_make_conversations_inactive_then_closed(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let untimed = world.conversation().await;
    let conversation = timed(&world, 60, 600).await;
    assert_eq!((conversation.timers.date_inactive, conversation.timers.date_closed), (Some(at(60)), Some(at(600))));
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(60)));
    let position = world.store.stream_position(conversation.sid.as_str()).await.unwrap();

    assert!(fire(&world, 59).await.is_empty(), "nothing is due before its time");
    assert_eq!(world.store.stream_position(conversation.sid.as_str()).await.unwrap(), position);

    let changed = fire(&world, 60).await;
    assert_eq!(changed.len(), 1);
    let inactive = &changed[0];
    assert_eq!(
        (inactive.sid.clone(), inactive.state, inactive.state_updated),
        (conversation.sid.clone(), ConversationState::Inactive, at(60))
    );
    assert_eq!((inactive.timers.date_inactive, inactive.timers.date_closed), (None, Some(at(600))));
    assert_eq!(&world.reload(&conversation).await, inactive);
    let events = world.events(conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    let last = events.last().unwrap();
    assert_eq!((last.kind, last.at, &last.origin), (EventKind::ConversationStateUpdated, at(60), &Origin::system()));
    assert_eq!(last.data, event::conversation_snapshot(inactive));
    assert_eq!(last.service_sid, world.service.as_str());

    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(600)));
    assert!(fire(&world, 61).await.is_empty(), "a timer fires once");
    let closed = fire(&world, 600).await;
    assert_eq!(
        closed.iter().map(|c| (c.sid.clone(), c.state)).collect::<Vec<_>>(),
        [(conversation.sid.clone(), ConversationState::Closed)]
    );
    assert_eq!((closed[0].timers.date_inactive, closed[0].timers.date_closed), (None, None));
    assert_eq!(world.store.next_timer_due().await.unwrap(), None);
    assert!(fire(&world, 100_000).await.is_empty());
    assert_eq!(world.events_of(conversation.sid.as_str(), EventKind::ConversationStateUpdated).await.len(), 2);
    assert_eq!(world.reload(&untimed).await, untimed, "conversations without timers are never touched");
}

/// A conversation whose closed timer is due closes at once, even when its inactive timer is due too.
pub async fn a_conversation_due_for_both_timers_closes_at_once(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = timed(&world, 60, 600).await;
    let changed = fire(&world, 700).await;
    assert_eq!(changed.iter().map(|c| c.state).collect::<Vec<_>>(), [ConversationState::Closed]);
    assert_eq!(world.reload(&conversation).await.state, ConversationState::Closed);
    assert_eq!(world.events_of(conversation.sid.as_str(), EventKind::ConversationStateUpdated).await.len(), 1);
    assert_eq!(world.store.next_timer_due().await.unwrap(), None);
}

/// The next timer due is the earliest of every conversation's timers, whatever its service.
pub async fn the_next_timer_due_is_the_earliest_of_all(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    assert_eq!(world.store.next_timer_due().await.unwrap(), None);
    timed(&world, 300, 900).await;
    let other = world.store.create_service(new_service("other")).await.unwrap();
    let elsewhere = World { store: world.store.clone(), service: other.sid };
    timed(&elsewhere, 120, 200).await;
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(120)));
    let changed = fire(&world, 200).await;
    assert_eq!(changed.iter().map(|c| c.state).collect::<Vec<_>>(), [ConversationState::Closed]);
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(300)));
}

/// A new message counts as activity: it re-arms both timers from its time, and wakes an inactive conversation
/// (appending `conversation.state_updated` after the message).
pub async fn messages_rearm_timers_and_wake_inactive_conversations(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = timed(&world, 60, 600).await;
    world
        .send(&conversation, palaver_core::store::NewMessage { now: at(30), ..new_message("activity") })
        .await
        .unwrap();
    let rearmed = world.reload(&conversation).await;
    assert_eq!((rearmed.timers.date_inactive, rearmed.timers.date_closed), (Some(at(90)), Some(at(630))));
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(90)));
    assert!(fire(&world, 60).await.is_empty(), "the old due time is gone");
    assert_eq!(fire(&world, 90).await.len(), 1);

    world
        .send(&conversation, palaver_core::store::NewMessage { now: at(100), ..new_message("wake up") })
        .await
        .unwrap();
    let awake = world.reload(&conversation).await;
    assert_eq!((awake.state, awake.state_updated), (ConversationState::Active, at(100)));
    assert_eq!((awake.timers.date_inactive, awake.timers.date_closed), (Some(at(160)), Some(at(700))));
    let events = world.events(conversation.sid.as_str()).await;
    assert_whole_stream(&events);
    let tail: Vec<&str> = kinds(&events).into_iter().rev().take(2).collect();
    assert_eq!(tail, ["conversation.state_updated", "message.added"]);
    assert_eq!(events.last().unwrap().data["state"], "active");
}

/// Changing the state or the timers through an update re-arms them from the update's time; closing clears
/// them.
pub async fn updates_rearm_or_clear_timers(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = timed(&world, 60, 600).await;
    let patch = ConversationPatch {
        inactive_after: Some(TimerDuration::from_secs(120)),
        now: Some(at(10)),
        ..Default::default()
    };
    let updated = world.store.update_conversation(&world.service, &by_sid(&conversation), patch, &api()).await.unwrap();
    assert_eq!((updated.timers.date_inactive, updated.timers.date_closed), (Some(at(130)), Some(at(610))));
    assert_eq!(updated.timers.inactive_after, Some(TimerDuration::from_secs(120)));
    let inactive =
        ConversationPatch { state: Some(ConversationState::Inactive), now: Some(at(20)), ..Default::default() };
    let updated =
        world.store.update_conversation(&world.service, &by_sid(&conversation), inactive, &api()).await.unwrap();
    assert_eq!((updated.timers.date_inactive, updated.timers.date_closed), (None, Some(at(620))));
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(620)));
    let close = ConversationPatch { state: Some(ConversationState::Closed), now: Some(at(30)), ..Default::default() };
    let closed = world.store.update_conversation(&world.service, &by_sid(&conversation), close, &api()).await.unwrap();
    assert_eq!((closed.timers.date_inactive, closed.timers.date_closed), (None, None));
    assert_eq!(world.store.next_timer_due().await.unwrap(), None);
    assert!(fire(&world, 10_000).await.is_empty());
}

/// Due times are stored: after a restart the same timer is due and fires.
pub async fn timers_survive_a_restart(factory: &dyn StoreFactory) {
    let world = world(factory).await;
    let conversation = timed(&world, 60, 600).await;
    let world = restart(factory, world).await;
    assert_eq!(world.store.next_timer_due().await.unwrap(), Some(at(60)));
    let changed = fire(&world, 3600).await;
    assert_eq!(
        changed.iter().map(|c| (c.sid.clone(), c.state)).collect::<Vec<_>>(),
        [(conversation.sid, ConversationState::Closed)]
    );
}
