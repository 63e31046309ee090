//! The daemon's Prometheus metrics (SPEC §5): one [`Metrics`] owning a registry with every
//! `replisnap_*` series, the process collector, and the text rendering `/metrics` serves.
//!
//! Owns the metric names, types, units, help texts, histogram buckets and label sets.
//! Other modules report events through plain methods (`set_link_up`, `snapshot_ok`, …);
//! the handles stay private so no caller can invent a label value or misuse a type.
//! It must never block the caller beyond an atomic update or a short uncontended lock,
//! never take a label value from outside data except through the closed lists in
//! [`labels`], and never do I/O except the process collector's reads of `/proc/self`
//! at scrape time.
//!
//! Files: this one holds the series and the snapshot/storage/verify/notify events and
//! `render`; `register.rs` builds them (`Metrics::new`); `replication.rs` the replication
//! and dataset events; `labels.rs` the closed label sets; `lag.rs` the lag from samples.

mod labels;
mod lag;
mod register;
mod replication;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

pub use labels::{
    command_index, LinkErrorReason, Outcome, ResyncReason, VerifyOutcome, COMMANDS, HOOKS,
    HOOK_RESULTS, OTHER_COMMAND,
};
pub use lag::LagTracker;

/// Every metric name starts with this.
pub const NAMESPACE: &str = "replisnap";

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for `snapshot_pause_seconds`: the replica stops applying only to start a
/// snapshot (iterate-and-record, no fork), so pauses are µs to ms; the top buckets are
/// there to show a regression, not an expected case.
pub const PAUSE_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 1.0,
];

/// Buckets for whole-operation durations (snapshot write, upload): 0.1 s to an hour.
pub const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric {name}: {err}")]
    Register {
        name: &'static str,
        err: prometheus::Error,
    },
}

/// `snapshot_refusals_total{reason}`: before the first full sync, while another snapshot
/// runs, storage refused the reservation, the daemon is stopping.
pub const REFUSAL_REASONS: [&str; 4] = ["not_ready", "busy", "storage_error", "shutting_down"];

/// `upload_retries_total{op}`: the S3 operations an upload is made of, `other` (lease,
/// listing, reads), and `staged_upload` (a whole upload retried from the staged file).
pub const UPLOAD_RETRY_OPS: [&str; 6] = [
    "put_object",
    "upload_part",
    "complete_multipart_upload",
    "create_multipart_upload",
    "other",
    "staged_upload",
];

/// Copies what the replica knows (link, applied offset, counters) into the metrics; run at
/// every scrape, so those series are as of the scrape, not of the last poll.
pub type Follow = Box<dyn Fn(&Metrics) + Send + Sync>;

/// All of replisnap's metrics. Cheap to share (`Arc<Metrics>`); every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    started: Instant,

    master_link_up: IntGauge,
    replication_offset_bytes: IntGauge,
    master_offset_bytes: IntGauge,
    replication_lag_bytes: IntGauge,
    replication_lag_seconds: Gauge,
    master_last_io_age_seconds: Gauge,
    full_resyncs_total: IntCounter,
    partial_resyncs_total: IntCounter,
    dual_channel_syncs_total: IntCounter,
    dual_channel_refusals_total: IntCounter,
    dual_channel_buffered_bytes_total: IntCounter,
    dual_channel_spilled_bytes_total: IntCounter,
    link_errors_total: IntCounterVec,
    resyncs_forced_total: IntCounterVec,
    /// One resolved handle per name in [`COMMANDS`], then `other`: the replica thread pays
    /// one atomic add per command, not a label lookup.
    commands_applied: Vec<IntCounter>,

    dataset_keys: IntGaugeVec,
    dataset_memory_bytes: IntGauge,
    /// The databases that currently have a `dataset_keys` series, to remove vanished ones.
    dataset_dbs: Mutex<Vec<u64>>,

    snapshot_pause_seconds: Histogram,
    snapshot_duration_seconds: Histogram,
    snapshots_total: IntCounterVec,
    snapshot_refusals_total: IntCounterVec,
    snapshot_size_bytes: IntGauge,
    last_snapshot_success_timestamp_seconds: Gauge,

    uploads_total: IntCounterVec,
    upload_retries_total: IntCounterVec,
    upload_bytes_total: IntCounter,
    upload_duration_seconds: Histogram,
    last_upload_success_timestamp_seconds: Gauge,
    retention_deleted_total: IntCounter,
    stored_snapshots: IntGauge,
    oldest_snapshot_timestamp_seconds: Gauge,

    verify_total: IntCounterVec,
    last_verify_success_timestamp_seconds: Gauge,

    heartbeats_total: IntCounterVec,
    hooks_total: IntCounterVec,

    archive_lag_seconds: Gauge,
    archive_lag_bytes: IntGauge,
    archive_segments_total: IntCounterVec,

    lag: Mutex<LagTracker>,
    /// The applied offset read just before the last master sample (`i64::MIN`: none yet):
    /// the lag is the distance between the two readings of one poll, never the master's
    /// last sample against an applied offset read later.
    sampled_applied: std::sync::atomic::AtomicI64,
    /// Run at each scrape before anything is read ([`Metrics::follow`]).
    follow: Mutex<Option<Follow>>,
    /// Nanoseconds after `started` of the last byte from the master, plus one (0: never).
    last_master_io: AtomicU64,
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// The registry, for a caller that wants to add its own collector.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    // ---- snapshots ----

    /// How long the stream was paused to start a snapshot.
    pub fn observe_snapshot_pause(&self, seconds: f64) {
        self.snapshot_pause_seconds.observe(seconds);
    }

    /// A snapshot stored (RDB and manifest): counts `ok`, records its duration and size
    /// and the success time.
    pub fn snapshot_ok(&self, duration_seconds: f64, rdb_bytes: u64, at: SystemTime) {
        self.snapshots_total
            .with_label_values(&[Outcome::Ok.as_str()])
            .inc();
        self.snapshot_duration_seconds.observe(duration_seconds);
        self.snapshot_size_bytes
            .set(i64::try_from(rdb_bytes).unwrap_or(i64::MAX));
        self.last_snapshot_success_timestamp_seconds
            .set(unix_seconds(at));
    }

    /// A snapshot failed. Its duration is not observed: a failure's time says nothing
    /// about how long snapshots take and would skew the histogram alerts use.
    pub fn snapshot_failed(&self) {
        self.snapshots_total
            .with_label_values(&[Outcome::Error.as_str()])
            .inc();
    }

    /// A snapshot request refused; `reason` is one of [`REFUSAL_REASONS`] (another name is
    /// ignored: the label set stays closed).
    pub fn snapshot_refused(&self, reason: &str) {
        if REFUSAL_REASONS.contains(&reason) {
            self.snapshot_refusals_total
                .with_label_values(&[reason])
                .inc();
        }
    }

    // ---- storage ----

    pub fn upload_ok(&self, bytes: u64, duration_seconds: f64, at: SystemTime) {
        self.uploads_total
            .with_label_values(&[Outcome::Ok.as_str()])
            .inc();
        self.upload_bytes_total.inc_by(bytes);
        self.upload_duration_seconds.observe(duration_seconds);
        self.last_upload_success_timestamp_seconds
            .set(unix_seconds(at));
    }

    pub fn upload_failed(&self) {
        self.uploads_total
            .with_label_values(&[Outcome::Error.as_str()])
            .inc();
    }

    /// Storage's retried attempts of `op` so far (a running total the backend keeps):
    /// the counter catches up to it. An op not in [`UPLOAD_RETRY_OPS`] is ignored.
    pub fn set_upload_retries(&self, op: &str, total: u64) {
        if !UPLOAD_RETRY_OPS.contains(&op) {
            return;
        }
        let c = self.upload_retries_total.with_label_values(&[op]);
        let seen = c.get();
        if total > seen {
            c.inc_by(total - seen);
        }
    }

    pub fn inc_retention_deleted(&self, n: u64) {
        self.retention_deleted_total.inc_by(n);
    }

    /// What storage holds after a listing: complete snapshots and the oldest one's time.
    pub fn set_stored_snapshots(&self, count: u64, oldest: Option<SystemTime>) {
        self.stored_snapshots
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.oldest_snapshot_timestamp_seconds
            .set(oldest.map_or(0.0, unix_seconds));
    }

    // ---- verification ----

    /// A verification finished with `outcome`; `at` is when, recorded only for `Ok`.
    pub fn verify_finished(&self, outcome: VerifyOutcome, at: SystemTime) {
        self.verify_total
            .with_label_values(&[outcome.as_str()])
            .inc();
        if outcome == VerifyOutcome::Ok {
            self.last_verify_success_timestamp_seconds
                .set(unix_seconds(at));
        }
    }

    // ---- stream archive ----

    /// How far the stored archive is behind what was applied: the age of the oldest
    /// byte not yet stored, and the bytes applied but not yet stored.
    pub fn archive_lag(&self, seconds: f64, bytes: i64) {
        self.archive_lag_seconds.set(seconds);
        self.archive_lag_bytes.set(bytes);
    }

    /// A segment store attempt finished.
    pub fn archive_segment(&self, outcome: Outcome) {
        self.archive_segments_total
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    // ---- notify ----

    /// A heartbeat call finished.
    pub fn heartbeat(&self, outcome: Outcome) {
        self.heartbeats_total
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// A hook (one of [`HOOKS`]) finished with one of [`HOOK_RESULTS`].
    pub fn hook(&self, hook: &str, result: &str) {
        self.hooks_total.with_label_values(&[hook, result]).inc();
    }

    // ---- rendering ----

    /// Run `copy` at every scrape (and in [`Self::lag_now`]) before anything is read: the
    /// replica's status copied then is as of the scrape. Replaces an earlier one.
    pub fn follow(&self, copy: Follow) {
        if let Ok(mut f) = self.follow.lock() {
            *f = Some(copy);
        }
    }

    /// Bring the values that depend on the current time up to date (the followed
    /// replica's status, lag, I/O age).
    fn refresh(&self, now: Instant) {
        if let Ok(f) = self.follow.lock() {
            if let Some(copy) = f.as_ref() {
                copy(self);
            }
        }
        let applied = match self.sampled_applied.load(Ordering::Relaxed) {
            i64::MIN => self.replication_offset_bytes.get(),
            a => a,
        };
        let master = self.master_offset_bytes.get();
        self.replication_lag_bytes
            .set(master.saturating_sub(applied).max(0));
        let lag = match self.lag.lock() {
            Ok(mut l) => {
                l.forget_applied(applied);
                l.lag(now, applied).as_secs_f64()
            }
            Err(_) => 0.0,
        };
        self.replication_lag_seconds.set(lag);
        let io = self.last_master_io.load(Ordering::Relaxed);
        let since_start = now.saturating_duration_since(self.started).as_secs_f64();
        let age = if io == 0 {
            since_start
        } else {
            (since_start - (io - 1) as f64 / 1e9).max(0.0)
        };
        self.master_last_io_age_seconds.set(age);
    }

    /// The replication lag as a scrape now would show it: (bytes, seconds).
    pub fn lag_now(&self) -> (i64, f64) {
        self.refresh(Instant::now());
        (
            self.replication_lag_bytes.get(),
            self.replication_lag_seconds.get(),
        )
    }

    /// Everything in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        self.refresh(Instant::now());
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            // Only a malformed metric family can fail here; show what encoded, say why.
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// A cluster daemon's exposition: `build_info` and the process collector from `self`
    /// (the process's own registry), every other family from the `shards`' registries
    /// (each series labelled with its shard), one `# HELP`/`# TYPE` per family.
    pub fn render_all(&self, shards: &[&Metrics]) -> String {
        let process_wide =
            |name: &str| name == "replisnap_build_info" || name.starts_with("process_");
        let mut families: Vec<prometheus::proto::MetricFamily> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| process_wide(f.name()))
            .collect();
        let mut index: std::collections::BTreeMap<String, usize> = families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().to_string(), i))
            .collect();
        for shard in shards {
            shard.refresh(Instant::now());
            for f in shard.registry.gather() {
                if process_wide(f.name()) {
                    continue;
                }
                match index.get(f.name()) {
                    Some(&i) => {
                        let mut ms = f.get_metric().to_vec();
                        families[i].mut_metric().append(&mut ms);
                    }
                    None => {
                        index.insert(f.name().to_string(), families.len());
                        families.push(f);
                    }
                }
            }
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::with_capacity(16 * 1024 * (1 + shards.len()));
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests;
