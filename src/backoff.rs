//! Exponential backoff, the one rule every wait before trying again follows
//! here (a failed POST, a held stanza, a room to join again): the n-th wait
//! (1 for the first) doubles from `first`, capped at `max`. Depends on
//! nothing.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before try `n` again (1: after the first failure).
    pub fn wait(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        assert_eq!(backoff.wait(0), Duration::from_millis(250));
        assert_eq!(backoff.wait(1), Duration::from_millis(250));
        assert_eq!(backoff.wait(2), Duration::from_millis(500));
        assert_eq!(backoff.wait(6), Duration::from_secs(8));
        assert_eq!(backoff.wait(7), Duration::from_secs(10));
        assert_eq!(backoff.wait(u32::MAX), Duration::from_secs(10));
    }
}
