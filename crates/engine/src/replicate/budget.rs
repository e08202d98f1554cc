//! The request budget of a replica (`upload-rate`, `upload-burst`): a token bucket on
//! uploads of captured files.
//!
//! Owns: the bucket arithmetic ([`Bucket`]) and the budget's settings
//! ([`UploadBudget`]). The capture loop holds one bucket per budgeted replica and asks it
//! before each capture: a capture (and so the upload of its file to each replica) starts
//! only once every budgeted replica has a token, and takes one from each for every file
//! it produced. While a bucket is empty, commits wait in the WAL and the next capture
//! carries them all, so one upload always covers everything since the last one and the
//! lost window is at most one token's refill (1 / rate) plus the upload.
//!
//! A cycle that checkpoints may produce a second file (what was committed while the
//! unlocked backfill ran, captured under the checkpoint's lock): a second upload, so it
//! takes a second token, owed if the bucket has none (the next capture waits for it).
//! Counting captures instead let 200 tx/s at the default budget make 1.2-1.3 uploads a
//! second, not 1 (issue 27).
//!
//! Bypass: a `sync` request (control socket, `sync -wait`), `replicate -once` and the
//! final sync at shutdown capture at once, their first file taking a token if one is
//! there (never going into debt). An idle database waits on nothing here: no timer, no
//! request.
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

    /// Takes a token for each of the `files` one capture produced at `now` (each is an
    /// upload). The first takes what is there (a bypassing capture, sync request or
    /// final sync, on an empty bucket leaves no debt); each further file is owed if the
    /// bucket is empty, so the next capture waits until it is paid back.
    pub fn take(&mut self, now: Instant, files: u32) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0) - f64::from(files.saturating_sub(1));
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
            b.take(Instant::now(), 1);
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
            b.take(Instant::now(), 1);
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
            b.take(Instant::now(), 1);
        }
        assert!(b.ready_at(Instant::now()) > Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bypassing_take_on_an_empty_bucket_leaves_no_debt() {
        let mut b = Bucket::new(budget(2.0, 1), Instant::now());
        b.take(Instant::now(), 1);
        b.take(Instant::now(), 1);
        b.take(Instant::now(), 1);
        assert_eq!(b.tokens(Instant::now()), 0.0);
        // One refill period later there is a token again, however many bypassed.
        let at = b.ready_at(Instant::now());
        assert_eq!(at - Instant::now(), Duration::from_millis(500));
        tokio::time::sleep_until(at).await;
        assert_eq!(b.ready_at(Instant::now()), Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn every_file_of_a_capture_takes_a_token_and_a_second_one_is_owed() {
        let mut b = Bucket::new(budget(1.0, 2), Instant::now());
        // A checkpointing capture made two files: both tokens go.
        b.take(Instant::now(), 2);
        assert!(b.tokens(Instant::now()).abs() < EPSILON);
        assert_eq!(
            b.ready_at(Instant::now()) - Instant::now(),
            Duration::from_secs(1)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Two more on one token: the second is owed, so the next capture waits 2 s.
        b.take(Instant::now(), 2);
        assert_eq!(
            b.ready_at(Instant::now()) - Instant::now(),
            Duration::from_secs(2)
        );
        // Sustained: 60 s of captures that each made two files upload at the rate.
        let mut b = Bucket::new(budget(1.0, 1), Instant::now());
        let end = Instant::now() + Duration::from_secs(60);
        let mut files = 0;
        loop {
            let at = b.ready_at(Instant::now());
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at).await;
            b.take(Instant::now(), 2);
            files += 2;
        }
        assert!((60..=62).contains(&files), "{files} uploads in 60 s at 1/s");
    }
}
