//! Wall-clock helpers: the milliseconds since the Unix epoch that LTX headers, the lease
//! record, status and metrics carry, and their conversion back to [`SystemTime`].
//!
//! Owns only the conversion; never used to judge expiry or order events (leases and
//! pacing use the monotonic clock, see `lease`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time `ms` milliseconds after the Unix epoch; the epoch itself for negative values
/// (a header written by a host whose clock was before 1970).
pub fn ms_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_clamp_before_the_epoch() {
        let now = now_ms();
        assert!(now > 1_600_000_000_000, "{now}");
        let t = ms_to_time(now);
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
            now
        );
        assert_eq!(ms_to_time(-5), UNIX_EPOCH);
    }
}
