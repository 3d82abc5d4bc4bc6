//! Time as a port, so timers can be tested without waiting.

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in UTC, truncated to milliseconds (the precision the stores keep).
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_to_millis(OffsetDateTime::now_utc())
    }
}

/// Drops sub-millisecond precision so that a value survives a round trip through storage unchanged.
pub fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let millis = t.unix_timestamp_nanos() / 1_000_000;
    from_unix_millis(millis as i64)
}

/// The time `millis` milliseconds after the Unix epoch (saturating at the representable range).
pub fn from_unix_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
