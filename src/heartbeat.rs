//! Liveness of the daemon's long-running threads, as cheap as a counter: a part that is
//! working calls [`Heartbeat::beat`] as it makes progress (the replica on every read and
//! every turn of its loops, the snapshot writer on every write into storage and between
//! steps), and a [`Watch`] on another thread notices when the count stopped moving while
//! the part said it was busy. systemd's watchdog is fed only while no watch reports a
//! stall (`daemon/notify.rs`).
//!
//! Owns the rule "busy and not moving for longer than its bound = wedged"; an idle part (a
//! writer waiting for its next job) is never wedged. It must never take a lock, read a
//! clock or allocate on the beating side: `beat` is one relaxed atomic add, called from
//! the apply loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A part's progress counter and whether it is expected to move.
#[derive(Debug, Default)]
pub struct Heartbeat {
    beats: AtomicU64,
    busy: AtomicBool,
}

impl Heartbeat {
    /// Progress was made.
    #[inline]
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// The part starts (`true`) or stops (`false`) work that must keep moving; either way
    /// counts as a beat, so a watch never mistakes a new job for a stuck old one.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
        self.beat();
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    pub fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }
}

/// One part watched from another thread: its name for messages, and how long it may be
/// busy without a beat before it counts as wedged.
#[derive(Debug)]
pub struct Watch {
    pub name: &'static str,
    pub bound: Duration,
    last: u64,
    since: Instant,
}

impl Watch {
    pub fn new(name: &'static str, bound: Duration, now: Instant) -> Watch {
        Watch {
            name,
            bound,
            last: u64::MAX,
            since: now,
        }
    }

    /// How long `hb` has been busy without a beat, when that is longer than the bound.
    pub fn stalled(&mut self, hb: &Heartbeat, now: Instant) -> Option<Duration> {
        let n = hb.beats();
        if n != self.last || !hb.is_busy() {
            self.last = n;
            self.since = now;
            return None;
        }
        let stuck = now.saturating_duration_since(self.since);
        (stuck > self.bound).then_some(stuck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_without_beats_past_the_bound_is_stalled() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let hb = Heartbeat::default();
        let mut w = Watch::new("writer", Duration::from_secs(10), t0);
        // Idle: never stalled, however long.
        assert_eq!(w.stalled(&hb, s(0)), None);
        assert_eq!(w.stalled(&hb, s(100)), None);
        hb.set_busy(true);
        assert_eq!(w.stalled(&hb, s(101)), None);
        assert_eq!(w.stalled(&hb, s(110)), None);
        assert_eq!(w.stalled(&hb, s(112)), Some(Duration::from_secs(11)));
        // One beat and it counts from there again.
        hb.beat();
        assert_eq!(w.stalled(&hb, s(113)), None);
        assert_eq!(w.stalled(&hb, s(123)), None);
        assert_eq!(w.stalled(&hb, s(124)), Some(Duration::from_secs(11)));
        // Going idle clears it.
        hb.set_busy(false);
        assert_eq!(w.stalled(&hb, s(200)), None);
        assert_eq!(w.stalled(&hb, s(300)), None);
    }
}
