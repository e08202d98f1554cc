//! The request budget of a replica (`upload-rate`, `upload-burst`): a token bucket on
//! uploads of captured files.
//!
//! Owns: the bucket arithmetic ([`Bucket`]) and the budget's settings
//! ([`UploadBudget`]). The capture loop holds one bucket per budgeted replica and asks it
//! before each capture: a capture (and so the one upload of its file to each replica)
//! starts only once every budgeted replica has a token, and takes one from each when it
//! produced a file. While a bucket is empty, commits wait in the WAL and the next capture
//! carries them all, so one upload always covers everything since the last one and the
//! lost window is at most one token's refill (1 / rate) plus the upload.
//!
//! Bypass: a `sync` request (control socket, `sync -wait`), `replicate -once` and the
//! final sync at shutdown capture at once, taking a token if one is there (never going
//! into debt). An idle database waits on nothing here: no timer, no request.
//!
//! Depends on tokio's clock only (`tokio::time::Instant`), so tests run on the paused
//! clock.

use std::time::Duration;

use tokio::time::Instant;

/// `upload-rate` and `upload-burst` of one replica.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UploadBudget {
    /// Sustained uploads per second (> 0).
    pub per_sec: f64,
    /// Uploads that may go back to back (at the `sync-interval` pace) after a quiet
    /// spell: the bucket's size (>= 1).
    pub burst: u32,
}

impl UploadBudget {
    /// The default of object stores (S3, GCS, Azure): see `defaults::OBJECT_STORE_*`.
    pub fn object_store_default() -> UploadBudget {
        UploadBudget {
            per_sec: crate::defaults::OBJECT_STORE_UPLOAD_RATE,
            burst: crate::defaults::UPLOAD_BURST,
        }
    }
}

/// Tokens within this much of a whole one count as whole (float rounding of the refill).
const EPSILON: f64 = 1e-9;

/// One replica's token bucket: starts full, refills at `per_sec`, holds at most `burst`.
#[derive(Clone, Debug)]
pub struct Bucket {
    budget: UploadBudget,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(budget: UploadBudget, now: Instant) -> Bucket {
        let burst = f64::from(budget.burst.max(1));
        Bucket {
            budget: UploadBudget {
                per_sec: budget.per_sec,
                burst: budget.burst.max(1),
            },
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let earned = (now - self.at).as_secs_f64() * self.budget.per_sec;
            self.tokens = (self.tokens + earned).min(f64::from(self.budget.burst));
            self.at = now;
        }
    }

    /// Tokens in the bucket at `now` (fractions included).
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// When the bucket holds a whole token: `now` if it does already.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = 1.0 - self.tokens;
        if missing <= EPSILON || self.budget.per_sec <= 0.0 {
            return now;
        }
        // Rounded up to the next microsecond, so the bucket is full enough by then.
        let micros = (missing / self.budget.per_sec * 1e6).ceil();
        now + Duration::from_micros(micros.min(u64::MAX as f64 / 2.0) as u64)
    }

    /// Takes one token for an upload at `now`. A bypassing upload (sync request, final
    /// sync) on an empty bucket takes what is there: the bucket never goes into debt.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_sec: f64, burst: u32) -> UploadBudget {
        UploadBudget { per_sec, burst }
    }

    /// Uploads as fast as the bucket allows, at most one per `pace`, for `window`:
    /// returns how many went.
    async fn drain(b: &mut Bucket, pace: Duration, window: Duration) -> u32 {
        let end = Instant::now() + window;
        let mut n = 0;
        loop {
            let at = b.ready_at(Instant::now());
            if at >= end {
                return n;
            }
            tokio::time::sleep_until(at).await;
            b.take(Instant::now());
            n += 1;
            tokio::time::sleep(pace).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_uploads_go_at_the_rate_after_the_burst() {
        let mut b = Bucket::new(budget(1.0, 10), Instant::now());
        let n = drain(&mut b, Duration::from_millis(20), Duration::from_secs(60)).await;
        // The burst at once, then one a second: 10 + 60, give or take the last.
        assert!((69..=70).contains(&n), "{n}");

        let mut b = Bucket::new(budget(0.5, 1), Instant::now());
        let n = drain(&mut b, Duration::from_millis(20), Duration::from_secs(60)).await;
        assert!((30..=31).contains(&n), "{n}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_the_pace_and_refills_after_a_quiet_spell() {
        let pace = Duration::from_millis(20);
        let mut b = Bucket::new(budget(1.0, 5), Instant::now());
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                b.ready_at(Instant::now()),
                Instant::now(),
                "a token is there"
            );
            b.take(Instant::now());
            tokio::time::sleep(pace).await;
        }
        assert!(start.elapsed() <= 5 * pace);
        // Empty: the next token comes 1 s after the last was taken.
        let wait = b.ready_at(Instant::now()) - Instant::now();
        assert!(
            wait > Duration::from_millis(850) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // A quiet spell of 5 s and more refills it to the burst, no further.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!((b.tokens(Instant::now()) - 5.0).abs() < EPSILON);
        for _ in 0..5 {
            assert_eq!(b.ready_at(Instant::now()), Instant::now());
            b.take(Instant::now());
        }
        assert!(b.ready_at(Instant::now()) > Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bypassing_take_on_an_empty_bucket_leaves_no_debt() {
        let mut b = Bucket::new(budget(2.0, 1), Instant::now());
        b.take(Instant::now());
        b.take(Instant::now());
        b.take(Instant::now());
        assert_eq!(b.tokens(Instant::now()), 0.0);
        // One refill period later there is a token again, however many bypassed.
        let at = b.ready_at(Instant::now());
        assert_eq!(at - Instant::now(), Duration::from_millis(500));
        tokio::time::sleep_until(at).await;
        assert_eq!(b.ready_at(Instant::now()), Instant::now());
    }
}
