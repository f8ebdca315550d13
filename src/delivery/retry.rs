//! When a failed POST is tried again, and after how long.

use std::time::{Duration, SystemTime};

use super::outcome::DeliveryError;
use crate::backoff::Backoff;
use crate::conversion::ReplyError;

/// Between the attempts of one POST.
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

/// Failures that another attempt may cure: the service was unreachable,
/// slow, or said so itself. Other 4xx, 500 and 501 will not change.
pub fn is_retryable(error: &DeliveryError) -> bool {
    match error {
        DeliveryError::Timeout | DeliveryError::Connection(_) => true,
        DeliveryError::Reply(ReplyError::Status { status, .. }) => is_retryable_status(*status),
        _ => false,
    }
}

pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 502 | 503 | 504)
}

/// The wait before attempt `retry` (1 for the first retry): exponential from
/// 250 ms, capped at 10 s, with full jitter over its upper half so that
/// many senders do not retry in step; a `Retry-After` asking for longer wins.
pub fn delay(retry: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = RETRY.wait(retry);
    let jittered = exponential.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(asked) if asked > jittered => asked,
        _ => jittered,
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_failures() {
        assert!(is_retryable(&DeliveryError::Timeout));
        assert!(is_retryable(&DeliveryError::Connection("refused".into())));
        for status in [408, 425, 429, 502, 503, 504] {
            assert!(
                is_retryable(&DeliveryError::Reply(ReplyError::Status {
                    status,
                    text: None
                })),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 410, 413, 500, 501, 505] {
            assert!(
                !is_retryable(&DeliveryError::Reply(ReplyError::Status {
                    status,
                    text: None
                })),
                "{status}"
            );
        }
        assert!(!is_retryable(&DeliveryError::Reply(ReplyError::Invalid(
            "x".into()
        ))));
        assert!(!is_retryable(&DeliveryError::TooLarge(1)));
    }

    #[test]
    fn delay_grows_from_250ms_and_is_capped() {
        for _ in 0..100 {
            let first = delay(1, None);
            assert!(first >= Duration::from_millis(125) && first <= RETRY.first);
            let third = delay(3, None);
            assert!(third >= Duration::from_millis(500) && third <= Duration::from_secs(1));
            assert!(delay(30, None) <= RETRY.max);
            assert!(delay(u32::MAX, None) <= RETRY.max);
        }
    }

    #[test]
    fn retry_after_asking_longer_wins() {
        assert_eq!(
            delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert!(delay(1, Some(Duration::ZERO)) <= RETRY.first);
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
