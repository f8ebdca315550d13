//! The one reading of the wall clock (signing timestamps, arrival stamps,
//! push timestamps, room delay stamps, `Retry-After` dates). Pure code
//! takes the time as a parameter; this is where it comes from. Monotonic
//! time (deadlines, backoff) is `Instant::now()`.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_millis() / 1000
}
