//! `replication_lag_seconds` as a pure computation over (time, master offset) samples.
//!
//! Owns the definition of SPEC §5: the age of the oldest master write not yet applied,
//! i.e. the time since the first sample whose master offset exceeds our applied offset,
//! and 0 when caught up. It never reads a clock or the network: callers pass the times
//! and offsets, so the rule is tested with made-up instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples of the master's offset over time (one a second from `INFO replication`), kept
/// only while they are ahead of what we applied.
///
/// Offsets are kept strictly increasing: a sample equal to the previous one adds nothing
/// (the earlier time is the better bound on when those bytes were written), and a sample
/// below the previous one means the master's offset space changed (a restart or a
/// failover), so the old samples no longer compare with anything and are dropped.
#[derive(Debug, Clone)]
pub struct LagTracker {
    samples: VecDeque<(Instant, i64)>,
    cap: usize,
}

/// Enough for over an hour of one-a-second samples while the replica is stuck; past it
/// the history is thinned, never cut at an end (see [`LagTracker::record`]).
const DEFAULT_CAP: usize = 4096;

impl Default for LagTracker {
    fn default() -> Self {
        LagTracker::with_capacity(DEFAULT_CAP)
    }
}

impl LagTracker {
    pub fn new() -> Self {
        LagTracker::default()
    }

    /// A tracker holding at most `cap` samples (at least 2).
    pub fn with_capacity(cap: usize) -> Self {
        LagTracker {
            samples: VecDeque::new(),
            cap: cap.max(2),
        }
    }

    /// Record that at `at` the master reported `master_offset`.
    ///
    /// When full, every other sample between the first and the last is dropped: the first
    /// must stay (it is the one that dates the oldest unapplied write), and thinning the
    /// rest halves the resolution evenly instead of losing a whole stretch of time.
    pub fn record(&mut self, at: Instant, master_offset: i64) {
        if let Some(&(_, last)) = self.samples.back() {
            if master_offset == last {
                return;
            }
            if master_offset < last {
                self.samples.clear();
            }
        }
        if self.samples.len() >= self.cap {
            let last = self.samples.len() - 1;
            let mut i = 0usize;
            self.samples.retain(|_| {
                let keep = i == 0 || i == last || i.is_multiple_of(2);
                i += 1;
                keep
            });
        }
        self.samples.push_back((at, master_offset));
    }

    /// Drop the samples we have caught up with: they can never date a write again while
    /// the applied offset only grows.
    pub fn forget_applied(&mut self, applied: i64) {
        while self.samples.front().is_some_and(|&(_, off)| off <= applied) {
            self.samples.pop_front();
        }
    }

    /// The age at `now` of the oldest master write not yet applied at `applied`: the time
    /// since the first sample whose offset exceeds it; zero when none does.
    pub fn lag(&self, now: Instant, applied: i64) -> Duration {
        // Offsets are strictly increasing, so the first sample ahead is a binary search.
        let i = self.samples.partition_point(|&(_, off)| off <= applied);
        match self.samples.get(i) {
            Some(&(at, _)) => now.saturating_duration_since(at),
            None => Duration::ZERO,
        }
    }

    /// Forget every sample (the link to a different master, say).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(base: Instant, s: u64) -> Instant {
        base + Duration::from_secs(s)
    }

    #[test]
    fn caught_up_is_zero_and_behind_dates_the_first_sample_ahead() {
        let t0 = Instant::now();
        let mut l = LagTracker::new();
        assert_eq!(l.lag(secs(t0, 5), 0), Duration::ZERO, "no samples");
        l.record(secs(t0, 0), 100);
        l.record(secs(t0, 1), 150);
        l.record(secs(t0, 2), 200);
        // Applied 100: the first write beyond it was seen at t0+1.
        assert_eq!(l.lag(secs(t0, 10), 100), Duration::from_secs(9));
        // Applied 99: the sample at t0 is already ahead.
        assert_eq!(l.lag(secs(t0, 10), 99), Duration::from_secs(10));
        assert_eq!(l.lag(secs(t0, 10), 200), Duration::ZERO);
        assert_eq!(l.lag(secs(t0, 10), 250), Duration::ZERO, "ahead of samples");
    }

    #[test]
    fn lag_keeps_growing_while_the_replica_is_stuck() {
        let t0 = Instant::now();
        let mut l = LagTracker::new();
        l.record(t0, 10);
        for s in 1..=30 {
            l.record(secs(t0, s), 10 + s as i64);
            // The first write past 10 was seen at t0+1; the one past 9 at t0.
            assert_eq!(l.lag(secs(t0, s), 10), Duration::from_secs(s - 1));
            assert_eq!(l.lag(secs(t0, s), 9), Duration::from_secs(s));
        }
    }

    #[test]
    fn repeated_offsets_keep_the_earliest_time() {
        let t0 = Instant::now();
        let mut l = LagTracker::new();
        l.record(secs(t0, 0), 100);
        l.record(secs(t0, 1), 200);
        l.record(secs(t0, 2), 200);
        l.record(secs(t0, 3), 200);
        assert_eq!(l.len(), 2);
        assert_eq!(l.lag(secs(t0, 3), 150), Duration::from_secs(2));
    }

    #[test]
    fn a_falling_master_offset_starts_over() {
        let t0 = Instant::now();
        let mut l = LagTracker::new();
        l.record(secs(t0, 0), 1000);
        l.record(secs(t0, 1), 2000);
        l.record(secs(t0, 5), 50);
        assert_eq!(l.len(), 1);
        assert_eq!(l.lag(secs(t0, 6), 0), Duration::from_secs(1));
    }

    #[test]
    fn forgetting_applied_samples_does_not_change_the_answer() {
        let t0 = Instant::now();
        let mut l = LagTracker::new();
        for s in 0..10 {
            l.record(secs(t0, s), (s as i64 + 1) * 100);
        }
        let before = l.lag(secs(t0, 20), 450);
        l.forget_applied(450);
        assert_eq!(l.len(), 6);
        assert_eq!(l.lag(secs(t0, 20), 450), before);
        assert_eq!(before, Duration::from_secs(16));
        l.forget_applied(10_000);
        assert!(l.is_empty());
    }

    #[test]
    fn a_full_tracker_thins_but_keeps_the_oldest_and_newest() {
        let t0 = Instant::now();
        let mut l = LagTracker::with_capacity(8);
        for s in 0..100u64 {
            l.record(secs(t0, s), s as i64 + 1);
            assert!(l.len() <= 8);
        }
        // The oldest unapplied write (offset 1, at t0) still dates the lag exactly.
        assert_eq!(l.lag(secs(t0, 100), 0), Duration::from_secs(100));
        // The newest sample is still there: one byte short of it is at most 1 s old
        // plus the thinning's resolution, never more than the true age.
        let newest = l.lag(secs(t0, 100), 99);
        assert_eq!(newest, Duration::from_secs(1));
        // An intermediate answer is bounded by the truth (never overstated).
        let mid = l.lag(secs(t0, 100), 50);
        assert!(mid <= Duration::from_secs(50), "{mid:?}");
    }
}
