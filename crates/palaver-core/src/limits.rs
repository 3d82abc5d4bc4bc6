//! Action rates: how many changes a client may make per second to one conversation, and per service, before
//! it is told to slow down.
//!
//! Twilio allows 30 actions a second per conversation (conversation update, participant add/update/remove,
//! message create/update/delete) and 30 per service (conversation create/delete, user and role
//! create/update/delete), and answers more with 429 / 20429, which clients retry with backoff. Palaver applies
//! the same rules to changes made through the REST API and by SDK users; its own changes (timers) and inbound
//! channel traffic (SMS, WhatsApp, email, whose gateways do not retry a refusal) are not counted.
//!
//! Each rule is a token bucket per key: `per_second` tokens a second up to `burst`, one per action. In a
//! cluster each node counts its own traffic: a client spread over nodes by a load balancer gets up to the
//! rate on each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate: `per_second` actions a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained actions per second (more than zero).
    pub per_second: f64,
    /// Actions allowed at once after a quiet period (at least one).
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` a second, with a burst of one second's worth.
    ///
    /// # Panics
    /// Never: a rate of zero or less is raised to the smallest useful one.
    pub fn per_second(per_second: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 { per_second } else { f64::MIN_POSITIVE };
        Self { per_second, burst: per_second.max(1.0) }
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(limit: &RateLimit) -> Self {
        Self { tokens: limit.burst, updated: Instant::now() }
    }

    /// Takes one token; when there is none, how long until there will be one.
    pub fn take(&mut self, limit: &RateLimit) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.updated = now;
        // A hair under a whole token counts as one: a client that waited exactly the time it was told (rounded
        // to nanoseconds) must be let in.
        if self.tokens >= 1.0 - 1e-6 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / limit.per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    /// Whether the bucket has been refilled to the brim by now (its key can be forgotten).
    fn is_full(&self, limit: &RateLimit, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.updated).as_secs_f64() * limit.per_second >= limit.burst
    }
}

/// Token buckets by key (a conversation, a service), forgetting keys whose buckets have refilled.
#[derive(Debug)]
pub struct KeyedRate {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    /// Actions refused so far, for the server's metrics.
    refused: std::sync::atomic::AtomicU64,
}

/// Keys kept before full buckets are swept out.
const SWEEP_AT: usize = 4096;

impl KeyedRate {
    /// Buckets of `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()), refused: Default::default() }
    }

    /// Counts one action for `key`; when over the rate, how long until the next one is allowed.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let taken = self.take_from_bucket(key);
        if taken.is_err() {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        taken
    }

    /// Actions refused since this rate was made.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn take_from_bucket(&self, key: &str) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT && !buckets.contains_key(key) {
            let now = Instant::now();
            buckets.retain(|_, bucket| !bucket.is_full(&self.limit, now));
        }
        match buckets.get_mut(key) {
            Some(bucket) => bucket.take(&self.limit),
            None => {
                let mut bucket = TokenBucket::full(&self.limit);
                let taken = bucket.take(&self.limit);
                buckets.insert(key.to_string(), bucket);
                taken
            }
        }
    }

    /// Keys tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// The action rates a [`Palaver`](crate::Palaver) enforces; `None` leaves that rule off.
#[derive(Debug, Default)]
pub struct ActionRates {
    /// Per conversation.
    pub conversation: Option<KeyedRate>,
    /// Per service.
    pub service: Option<KeyedRate>,
}

impl ActionRates {
    /// Twilio's: 30 actions a second per conversation and per service.
    pub fn twilio() -> Self {
        Self::new(Some(RateLimit::per_second(30.0)), Some(RateLimit::per_second(30.0)))
    }

    /// The given rules.
    pub fn new(conversation: Option<RateLimit>, service: Option<RateLimit>) -> Self {
        Self { conversation: conversation.map(KeyedRate::new), service: service.map(KeyedRate::new) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = RateLimit::per_second(30.0);
        let rate = KeyedRate::new(limit);
        for _ in 0..30 {
            assert!(rate.take("CH1").is_ok());
        }
        let wait = rate.take("CH1").expect_err("the 31st action within a second is refused");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(34), "{wait:?}");
        // Other keys are not affected.
        assert!(rate.take("CH2").is_ok());
        tokio::time::advance(wait).await;
        assert!(rate.take("CH1").is_ok(), "allowed again once the wait is over");
        assert!(rate.take("CH1").is_err());
        // A second later the bucket is full again, and never fuller.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..30 {
            assert!(rate.take("CH1").is_ok());
        }
        assert!(rate.take("CH1").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_forgotten() {
        let rate = KeyedRate::new(RateLimit::per_second(5.0));
        for n in 0..SWEEP_AT {
            rate.take(&format!("CH{n}")).unwrap();
        }
        assert_eq!(rate.tracked(), SWEEP_AT);
        tokio::time::advance(Duration::from_secs(1)).await;
        rate.take("new").unwrap();
        assert_eq!(rate.tracked(), 1, "refilled buckets are swept");
    }

    #[test]
    fn nonsense_rates_are_raised_not_divided_by() {
        let limit = RateLimit::per_second(0.0);
        assert!(limit.per_second > 0.0 && limit.burst >= 1.0);
        let limit = RateLimit::per_second(f64::NAN);
        assert!(limit.per_second > 0.0);
        let mut bucket = TokenBucket::full(&limit);
        assert!(bucket.take(&limit).is_ok());
        assert!(bucket.take(&limit).is_err());
    }
}
