//! The replication and dataset events of [`Metrics`]: link state, offsets, the master's
//! offset samples behind the lag, the master's last I/O, resyncs, link errors, commands
//! applied, keys and memory of the dataset.
//!
//! Owns only these methods (the series live in `mod.rs`). It must never take a label value
//! except through the closed lists in `labels`, and never block beyond a short lock.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{command_index, LinkErrorReason, Metrics, ResyncReason, COMMANDS};

impl Metrics {
    // ---- replication ----

    pub fn set_link_up(&self, up: bool) {
        self.master_link_up.set(i64::from(up));
    }

    /// The offset applied to our dataset (after each command, or periodically).
    pub fn set_replication_offset(&self, applied: i64) {
        self.replication_offset_bytes.set(applied);
    }

    /// The master's offset from its `INFO replication` (the daemon polls it each second),
    /// and `applied_before`, our applied offset read just before asking: the lag series
    /// are computed from this pair.
    pub fn observe_master_offset(&self, master_offset: i64, applied_before: i64) {
        self.observe_master_offset_at(master_offset, applied_before, Instant::now());
    }

    /// [`Metrics::observe_master_offset`] with an explicit time of the sample.
    pub fn observe_master_offset_at(&self, master_offset: i64, applied_before: i64, at: Instant) {
        self.master_offset_bytes.set(master_offset);
        self.sampled_applied
            .store(applied_before, Ordering::Relaxed);
        if let Ok(mut l) = self.lag.lock() {
            l.record(at, master_offset);
        }
    }

    /// Forget the master's offset history (the source changed: offsets no longer compare).
    pub fn reset_master_offsets(&self) {
        if let Ok(mut l) = self.lag.lock() {
            l.clear();
        }
    }

    /// Bytes arrived from the master (any: stream, keepalive, reply).
    pub fn note_master_io(&self) {
        let ns = self
            .started
            .elapsed()
            .as_nanos()
            .min(u128::from(u64::MAX - 1)) as u64;
        self.last_master_io.store(ns + 1, Ordering::Relaxed);
    }

    /// The master's last byte arrived `ago` before now (from the replica's own clock of
    /// real traffic: a silent master's age keeps growing).
    pub fn note_master_io_ago(&self, ago: Duration) {
        let at = Instant::now().checked_sub(ago).unwrap_or(self.started);
        let ns = at
            .saturating_duration_since(self.started)
            .as_nanos()
            .min(u128::from(u64::MAX - 1)) as u64;
        self.last_master_io.store(ns + 1, Ordering::Relaxed);
    }

    pub fn inc_full_resyncs(&self) {
        self.full_resyncs_total.inc();
    }

    pub fn inc_partial_resyncs(&self) {
        self.partial_resyncs_total.inc();
    }

    /// Dual-channel full syncs done, refused, and the stream bytes they buffered (and
    /// spilled to a file): each argument is added to its counter.
    pub fn add_dual_channel(&self, syncs: u64, refusals: u64, buffered: u64, spilled: u64) {
        self.dual_channel_syncs_total.inc_by(syncs);
        self.dual_channel_refusals_total.inc_by(refusals);
        self.dual_channel_buffered_bytes_total.inc_by(buffered);
        self.dual_channel_spilled_bytes_total.inc_by(spilled);
    }

    pub fn inc_link_errors(&self, reason: LinkErrorReason) {
        self.link_errors_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn inc_resyncs_forced(&self, reason: ResyncReason) {
        self.resyncs_forced_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// One command from the stream applied; `name` is `argv[0]` in any case. Names not in
    /// [`COMMANDS`] count as `other`, so a hostile stream cannot grow the label set.
    /// Add `n` to the command at `index` (as `command_index` gives it; past the end: other).
    pub fn commands_applied_at(&self, index: usize, n: u64) {
        let i = index.min(COMMANDS.len());
        if let Some(c) = self.commands_applied.get(i) {
            c.inc_by(n);
        }
    }

    pub fn command_applied(&self, name: &[u8]) {
        let i = command_index(name).unwrap_or(COMMANDS.len());
        if let Some(c) = self.commands_applied.get(i) {
            c.inc();
        }
    }

    // ---- dataset ----

    /// Keys per database (`db` label `db0`, `db1`… like redis_exporter's `redis_db_keys`).
    /// The given databases replace the previous set; db0 is always shown.
    pub fn set_dataset_keys(&self, per_db: impl IntoIterator<Item = (u64, u64)>) {
        let mut now: Vec<(u64, u64)> = per_db.into_iter().collect();
        if !now.iter().any(|&(db, _)| db == 0) {
            now.push((0, 0));
        }
        let Ok(mut known) = self.dataset_dbs.lock() else {
            return;
        };
        // Set first, then remove the vanished ones: a scrape in between never misses a db.
        for &(db, keys) in &now {
            let v = i64::try_from(keys).unwrap_or(i64::MAX);
            self.dataset_keys
                .with_label_values(&[&format!("db{db}")])
                .set(v);
        }
        for db in known.iter() {
            if !now.iter().any(|&(d, _)| d == *db) {
                let _ = self.dataset_keys.remove_label_values(&[&format!("db{db}")]);
            }
        }
        *known = now.into_iter().map(|(db, _)| db).collect();
    }

    pub fn set_dataset_memory_bytes(&self, bytes: u64) {
        self.dataset_memory_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
