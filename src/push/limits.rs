//! What keeps the push endpoint cheap to refuse: failed authorisations per
//! client address, pushes per second, and the `webhook-id`s already used.
//! Pure state, bounded in memory, with the clock passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The window failed authorisations are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses followed at once; past it the longest-known is dropped, so
/// that many addresses cost bounded memory.
const MAX_ADDRESSES: usize = 10_000;

/// Failed authorisations per client address: at most `limit` per minute,
/// then the address is refused (429) until its minute is over.
#[derive(Debug)]
pub struct FailureLimit {
    limit: u32,
    /// Address → (failures, when its window started).
    addresses: HashMap<String, (u32, Instant)>,
}

impl FailureLimit {
    pub fn new(limit: u32) -> FailureLimit {
        FailureLimit {
            limit,
            addresses: HashMap::new(),
        }
    }

    /// `None` when `address` may try, else how long it must wait.
    pub fn wait(&self, address: &str, now: Instant) -> Option<Duration> {
        let (failures, since) = self.addresses.get(address)?;
        let left = FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(*since));
        (*failures >= self.limit && !left.is_zero()).then_some(left)
    }

    pub fn record(&mut self, address: &str, now: Instant) {
        if let Some((failures, since)) = self.addresses.get_mut(address) {
            if now.saturating_duration_since(*since) >= FAILURE_WINDOW {
                *failures = 0;
                *since = now;
            }
            *failures += 1;
            return;
        }
        if self.addresses.len() >= MAX_ADDRESSES {
            self.addresses
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
        }
        if self.addresses.len() >= MAX_ADDRESSES {
            let oldest = self
                .addresses
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(address, _)| address.clone());
            if let Some(oldest) = oldest {
                self.addresses.remove(&oldest);
            }
        }
        self.addresses.insert(address.to_owned(), (1, now));
    }
}

/// Pushes per second: a bucket of `rate` tokens, refilled at `rate` a second.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl RateLimit {
    pub fn new(rate: f64) -> RateLimit {
        RateLimit {
            rate,
            tokens: rate.max(1.0),
            at: None,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate.max(1.0));
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The `webhook-id`s of signed pushes accepted, each kept until its
/// timestamp leaves the tolerance window (after which the push is refused
/// for its age anyway). At most `capacity` ids: as many as the push rate
/// lets through in that window.
#[derive(Debug)]
pub struct Replays {
    capacity: usize,
    /// Id → Unix second after which it may be forgotten.
    seen: HashMap<String, u64>,
}

/// Why a signed push's id is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    /// Already used within the window.
    Seen,
    /// More ids in the window than the rate allows (cannot happen while
    /// the rate limit holds; refused rather than forgetting one early).
    Full,
}

impl Replays {
    pub fn new(capacity: usize) -> Replays {
        Replays {
            capacity: capacity.max(1),
            seen: HashMap::new(),
        }
    }

    /// Records `id`, signed at `timestamp`, unless it was seen: `tolerance`
    /// is the window's half-width, `now` in Unix seconds.
    pub fn check(
        &mut self,
        id: &str,
        timestamp: u64,
        tolerance: u64,
        now: u64,
    ) -> Result<(), Replayed> {
        if self.seen.get(id).is_some_and(|&until| until >= now) {
            return Err(Replayed::Seen);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(Replayed::Full);
            }
        }
        self.seen
            .insert(id.to_owned(), timestamp.saturating_add(tolerance));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_address_and_forgotten_after_a_minute() {
        let start = Instant::now();
        let mut limit = FailureLimit::new(3);
        for _ in 0..3 {
            assert_eq!(limit.wait("192.0.2.1", start), None);
            limit.record("192.0.2.1", start);
        }
        assert_eq!(limit.wait("192.0.2.1", start), Some(FAILURE_WINDOW));
        assert_eq!(limit.wait("192.0.2.2", start), None, "another address");
        let later = start + Duration::from_secs(45);
        assert_eq!(
            limit.wait("192.0.2.1", later),
            Some(Duration::from_secs(15))
        );
        let after = start + FAILURE_WINDOW;
        assert_eq!(limit.wait("192.0.2.1", after), None);
        limit.record("192.0.2.1", after);
        assert_eq!(limit.wait("192.0.2.1", after), None, "a new window");
    }

    #[test]
    fn many_addresses_cost_bounded_memory() {
        let now = Instant::now();
        let mut limit = FailureLimit::new(1);
        for i in 0..MAX_ADDRESSES + 10 {
            limit.record(&format!("a{i}"), now + Duration::from_millis(i as u64));
        }
        assert_eq!(limit.addresses.len(), MAX_ADDRESSES);
        assert_eq!(limit.wait("a0", now), None, "the longest known went first");
        assert!(limit
            .wait(&format!("a{}", MAX_ADDRESSES + 9), now)
            .is_some());
    }

    #[test]
    fn the_rate_allows_a_burst_then_refills() {
        let start = Instant::now();
        let mut rate = RateLimit::new(2.0);
        assert!(rate.take(start) && rate.take(start));
        assert!(!rate.take(start));
        assert!(rate.take(start + Duration::from_millis(500)));
        assert!(!rate.take(start + Duration::from_millis(500)));
        let mut slow = RateLimit::new(0.5);
        assert!(slow.take(start) && !slow.take(start));
        assert!(slow.take(start + Duration::from_secs(2)));
    }

    #[test]
    fn an_id_is_refused_again_within_its_window_only() {
        let mut replays = Replays::new(2);
        assert_eq!(replays.check("a", 1000, 300, 1000), Ok(()));
        assert_eq!(replays.check("a", 1000, 300, 1200), Err(Replayed::Seen));
        assert_eq!(replays.check("b", 1100, 300, 1200), Ok(()));
        assert_eq!(replays.check("c", 1200, 300, 1250), Err(Replayed::Full));
        // Once a's timestamp is out of the window, its place is free.
        assert_eq!(replays.check("c", 1301, 300, 1301), Ok(()));
        assert_eq!(replays.check("c", 1301, 300, 1302), Err(Replayed::Seen));
    }
}
