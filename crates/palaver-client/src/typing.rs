//! Typing indicators: the sender's throttle and the receiver's per-participant timers, as pure state machines
//! driven by the caller's clock so they can be tested with paused time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The sender side: at most one `typing` request per typing timeout (semantics §3).
#[derive(Debug, Clone)]
pub(crate) struct TypingThrottle {
    last_sent: Option<Instant>,
}

impl TypingThrottle {
    pub(crate) fn new() -> Self {
        Self { last_sent: None }
    }

    /// True (and records `now`) when a request should be sent; false when the last one is younger than `timeout`.
    pub(crate) fn try_send(&mut self, now: Instant, timeout: Duration) -> bool {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < timeout => false,
            _ => {
                self.last_sent = Some(now);
                true
            }
        }
    }

    /// Forgets the last send (when it failed), so the next call tries again.
    pub(crate) fn reset(&mut self) {
        self.last_sent = None;
    }
}

/// The receiver side: who is typing, and which timer generation may end it.
///
/// Every indicator bumps the participant's generation; a timer carries the generation it was started for and
/// ends the indicator only if no newer one arrived meanwhile.
#[derive(Debug, Default)]
pub(crate) struct TypingTracker {
    typing: HashMap<String, u64>,
    next: u64,
}

impl TypingTracker {
    /// An indicator arrived for `participant`: returns the generation its timer must carry.
    pub(crate) fn started(&mut self, participant: &str) -> u64 {
        self.next += 1;
        self.typing.insert(participant.to_string(), self.next);
        self.next
    }

    /// The timer of `generation` fired: true when that ended the indicator.
    pub(crate) fn expired(&mut self, participant: &str, generation: u64) -> bool {
        if self.typing.get(participant) == Some(&generation) {
            self.typing.remove(participant);
            true
        } else {
            false
        }
    }

    /// A message from `participant` arrived (or it left): true when it was typing.
    pub(crate) fn stopped(&mut self, participant: &str) -> bool {
        self.typing.remove(participant).is_some()
    }

    pub(crate) fn is_typing(&self, participant: &str) -> bool {
        self.typing.contains_key(participant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_sender_sends_once_per_timeout() {
        let timeout = Duration::from_secs(5);
        let mut throttle = TypingThrottle::new();
        assert!(throttle.try_send(Instant::now(), timeout));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!throttle.try_send(Instant::now(), timeout));
        tokio::time::advance(Duration::from_millis(3999)).await;
        assert!(!throttle.try_send(Instant::now(), timeout));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(throttle.try_send(Instant::now(), timeout));
        throttle.reset();
        assert!(throttle.try_send(Instant::now(), timeout));
    }

    #[test]
    fn only_the_latest_timer_ends_an_indicator() {
        let mut tracker = TypingTracker::default();
        let first = tracker.started("MB1");
        let second = tracker.started("MB1");
        assert!(!tracker.expired("MB1", first), "an older timer must not end a renewed indicator");
        assert!(tracker.is_typing("MB1"));
        assert!(tracker.expired("MB1", second));
        assert!(!tracker.is_typing("MB1"));
        let third = tracker.started("MB1");
        assert!(tracker.stopped("MB1"));
        assert!(!tracker.expired("MB1", third), "a message already ended it");
        assert!(!tracker.stopped("MB1"));
    }
}
