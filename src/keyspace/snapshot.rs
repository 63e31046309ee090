//! A consistent view of the keyspace at one instant, walked while writes go on.
//!
//! Owns the walker's side of iterate-and-record: it visits one shard at a time, takes the
//! entries there (a key's recorded old entry wins over the table, a recorded absence hides
//! a key added since), marks the shard visited so the apply thread stops recording there,
//! and hands the entries out after releasing the lock. It must never hold a shard lock
//! while calling back into user code.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Db, Entry, SnapState};

pub struct Snapshot {
    epoch: u64,
    dbs: Vec<(u64, Arc<Db>)>,
    state: Arc<SnapState>,
    /// Next (db position, shard) to visit.
    pos: (usize, usize),
}

impl Snapshot {
    pub(super) fn new(epoch: u64, dbs: Vec<(u64, Arc<Db>)>, state: Arc<SnapState>) -> Snapshot {
        Snapshot {
            epoch,
            dbs,
            state,
            pos: (0, 0),
        }
    }

    /// The databases in the view, in order, with their key counts when it was taken
    /// (approximate: a hint for RESIZEDB, not used for anything exact).
    pub fn databases(&self) -> Vec<u64> {
        self.dbs.iter().map(|(n, _)| *n).collect()
    }

    /// The next shard's entries as of the snapshot, with their database; `None` at the end.
    pub fn next_shard(&mut self) -> Option<(u64, Vec<Entry>)> {
        loop {
            let (di, si) = self.pos;
            let (dbn, db) = self.dbs.get(di)?;
            if si >= db.shards.len() {
                self.pos = (di + 1, 0);
                continue;
            }
            self.pos = (di, si + 1);
            let mut out = Vec::new();
            {
                let mut s = db.shards[si].lock().unwrap_or_else(|p| p.into_inner());
                let rec = s.record.take().filter(|r| r.epoch == self.epoch);
                match &rec {
                    None => out.extend(s.table.iter().cloned()),
                    Some(r) => {
                        out.extend(
                            s.table
                                .iter()
                                .filter(|e| !r.old.contains_key(e.key()))
                                .cloned(),
                        );
                        out.extend(r.old.values().flatten().cloned());
                    }
                }
                s.walked = self.epoch;
            }
            if !out.is_empty() {
                return Some((*dbn, out));
            }
        }
    }

    /// Visit every entry of the view, database by database.
    pub fn walk(mut self, mut f: impl FnMut(u64, &Entry)) {
        while let Some((db, entries)) = self.next_shard() {
            // Each entry let go once seen: the live keyspace then changes it in place.
            for e in entries {
                f(db, &e);
            }
        }
    }
}

impl Drop for Snapshot {
    /// Finished or abandoned: stop recording, and drop what was recorded for shards the
    /// walk did not reach so it does not linger.
    fn drop(&mut self) {
        let (di, si) = self.pos;
        for (i, (_, db)) in self.dbs.iter().enumerate().skip(di) {
            let from = if i == di { si } else { 0 };
            for m in db.shards.iter().skip(from) {
                let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                if s.record.as_ref().is_some_and(|r| r.epoch == self.epoch) {
                    s.record = None;
                }
                s.walked = self.epoch;
            }
        }
        let _ =
            self.state
                .active
                .compare_exchange(self.epoch, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}
