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

mod labels;
mod lag;
mod replication;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
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

    lag: Mutex<LagTracker>,
    /// Nanoseconds after `started` of the last byte from the master, plus one (0: never).
    last_master_io: AtomicU64,
}

/// Registers metrics one after another, remembering the first error's name.
struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &'static str,
        m: Result<M, prometheus::Error>,
    ) -> Result<M, MetricsError> {
        let m = m.map_err(|err| MetricsError::Register { name, err })?;
        self.0
            .register(Box::new(m.clone()))
            .map_err(|err| MetricsError::Register { name, err })?;
        Ok(m)
    }
}

fn opts(name: &'static str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn hist(name: &'static str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(buckets.to_vec())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Build the registry: every SPEC §5 series, labelled counters at 0 for every known
    /// label value (so `increase()` works from the first scrape), `build_info` at 1 and,
    /// on Linux, the process collector.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = Reg(&registry);
        let mut m = Metrics {
            master_link_up: r.add(
                "master_link_up",
                IntGauge::with_opts(opts(
                    "master_link_up",
                    "1 while the replication link to the master is up.",
                )),
            )?,
            replication_offset_bytes: r.add(
                "replication_offset_bytes",
                IntGauge::with_opts(opts(
                    "replication_offset_bytes",
                    "Replication offset applied to our dataset.",
                )),
            )?,
            master_offset_bytes: r.add(
                "master_offset_bytes",
                IntGauge::with_opts(opts(
                    "master_offset_bytes",
                    "The master's own replication offset (INFO replication, polled).",
                )),
            )?,
            replication_lag_bytes: r.add(
                "replication_lag_bytes",
                IntGauge::with_opts(opts(
                    "replication_lag_bytes",
                    "Master offset minus applied offset, 0 when caught up.",
                )),
            )?,
            replication_lag_seconds: r.add(
                "replication_lag_seconds",
                Gauge::with_opts(opts(
                    "replication_lag_seconds",
                    "Age of the oldest master write not yet applied, 0 when caught up.",
                )),
            )?,
            master_last_io_age_seconds: r.add(
                "master_last_io_age_seconds",
                Gauge::with_opts(opts(
                    "master_last_io_age_seconds",
                    "Seconds since the last byte from the master (since start if none).",
                )),
            )?,
            full_resyncs_total: r.add(
                "full_resyncs_total",
                IntCounter::with_opts(opts(
                    "full_resyncs_total",
                    "Full synchronisations completed.",
                )),
            )?,
            partial_resyncs_total: r.add(
                "partial_resyncs_total",
                IntCounter::with_opts(opts(
                    "partial_resyncs_total",
                    "Partial resynchronisations (PSYNC +CONTINUE) accepted.",
                )),
            )?,
            link_errors_total: r.add(
                "link_errors_total",
                IntCounterVec::new(
                    opts("link_errors_total", "Replication links lost, by reason."),
                    &["reason"],
                ),
            )?,
            resyncs_forced_total: r.add(
                "resyncs_forced_total",
                IntCounterVec::new(
                    opts(
                        "resyncs_forced_total",
                        "Full resyncs replisnap forced by dropping its data, by reason.",
                    ),
                    &["reason"],
                ),
            )?,
            commands_applied: Vec::new(),
            dataset_keys: r.add(
                "dataset_keys",
                IntGaugeVec::new(
                    opts("dataset_keys", "Keys in our dataset, by database."),
                    &["db"],
                ),
            )?,
            dataset_memory_bytes: r.add(
                "dataset_memory_bytes",
                IntGauge::with_opts(opts("dataset_memory_bytes", "Bytes held by our dataset.")),
            )?,
            dataset_dbs: Mutex::new(Vec::new()),
            snapshot_pause_seconds: r.add(
                "snapshot_pause_seconds",
                Histogram::with_opts(hist(
                    "snapshot_pause_seconds",
                    "Time the replication stream was paused to start a snapshot.",
                    PAUSE_BUCKETS,
                )),
            )?,
            snapshot_duration_seconds: r.add(
                "snapshot_duration_seconds",
                Histogram::with_opts(hist(
                    "snapshot_duration_seconds",
                    "Time from a successful snapshot's start to its RDB and manifest being stored.",
                    DURATION_BUCKETS,
                )),
            )?,
            snapshots_total: r.add(
                "snapshots_total",
                IntCounterVec::new(
                    opts("snapshots_total", "Snapshots finished, by result."),
                    &["result"],
                ),
            )?,
            snapshot_refusals_total: r.add(
                "snapshot_refusals_total",
                IntCounterVec::new(
                    opts(
                        "snapshot_refusals_total",
                        "Snapshot requests refused before a capture, by reason.",
                    ),
                    &["reason"],
                ),
            )?,
            snapshot_size_bytes: r.add(
                "snapshot_size_bytes",
                IntGauge::with_opts(opts(
                    "snapshot_size_bytes",
                    "Size of the last successful snapshot's RDB file.",
                )),
            )?,
            last_snapshot_success_timestamp_seconds: r.add(
                "last_snapshot_success_timestamp_seconds",
                Gauge::with_opts(opts(
                    "last_snapshot_success_timestamp_seconds",
                    "Unix time of the last successful snapshot, 0 if none yet.",
                )),
            )?,
            uploads_total: r.add(
                "uploads_total",
                IntCounterVec::new(
                    opts(
                        "uploads_total",
                        "Snapshot uploads to storage finished, by result.",
                    ),
                    &["result"],
                ),
            )?,
            upload_bytes_total: r.add(
                "upload_bytes_total",
                IntCounter::with_opts(opts("upload_bytes_total", "Bytes of successful uploads.")),
            )?,
            upload_duration_seconds: r.add(
                "upload_duration_seconds",
                Histogram::with_opts(hist(
                    "upload_duration_seconds",
                    "Duration of successful uploads.",
                    DURATION_BUCKETS,
                )),
            )?,
            last_upload_success_timestamp_seconds: r.add(
                "last_upload_success_timestamp_seconds",
                Gauge::with_opts(opts(
                    "last_upload_success_timestamp_seconds",
                    "Unix time of the last successful upload, 0 if none yet.",
                )),
            )?,
            retention_deleted_total: r.add(
                "retention_deleted_total",
                IntCounter::with_opts(opts(
                    "retention_deleted_total",
                    "Snapshots deleted by the retention policy.",
                )),
            )?,
            stored_snapshots: r.add(
                "stored_snapshots",
                IntGauge::with_opts(opts(
                    "stored_snapshots",
                    "Complete snapshots (with a manifest) in storage.",
                )),
            )?,
            oldest_snapshot_timestamp_seconds: r.add(
                "oldest_snapshot_timestamp_seconds",
                Gauge::with_opts(opts(
                    "oldest_snapshot_timestamp_seconds",
                    "Unix time of the oldest stored snapshot, 0 if none.",
                )),
            )?,
            verify_total: r.add(
                "verify_total",
                IntCounterVec::new(
                    opts(
                        "verify_total",
                        "Scheduled verifications of the newest stored snapshot, by result \
                         (bad: it differs from its manifest or is corrupt; error: could not check).",
                    ),
                    &["result"],
                ),
            )?,
            heartbeats_total: r.add(
                "heartbeats_total",
                IntCounterVec::new(
                    opts(
                        "heartbeats_total",
                        "Calls of [notify] heartbeat_url after a snapshot, by result \
                         (error: no answer, or not 2xx, within [notify] timeout).",
                    ),
                    &["result"],
                ),
            )?,
            hooks_total: r.add(
                "hooks_total",
                IntCounterVec::new(
                    opts(
                        "hooks_total",
                        "Runs of [notify] on_success/on_failure, by hook and result \
                         (error: did not start or exited non-zero; timeout: killed).",
                    ),
                    &["hook", "result"],
                ),
            )?,
            last_verify_success_timestamp_seconds: r.add(
                "last_verify_success_timestamp_seconds",
                Gauge::with_opts(opts(
                    "last_verify_success_timestamp_seconds",
                    "Unix time of the last verification that found the snapshot good, 0 if none yet.",
                )),
            )?,
            lag: Mutex::new(LagTracker::new()),
            last_master_io: AtomicU64::new(0),
            started: Instant::now(),
            registry,
        };
        m.init_labelled()?;
        Ok(m)
    }

    /// Pre-initialise every labelled series, `build_info` and the process collector.
    fn init_labelled(&mut self) -> Result<(), MetricsError> {
        for r in LinkErrorReason::ALL {
            self.link_errors_total.with_label_values(&[r.as_str()]);
        }
        for r in ResyncReason::ALL {
            self.resyncs_forced_total.with_label_values(&[r.as_str()]);
        }
        for o in Outcome::ALL {
            self.snapshots_total.with_label_values(&[o.as_str()]);
            self.uploads_total.with_label_values(&[o.as_str()]);
        }
        for o in VerifyOutcome::ALL {
            self.verify_total.with_label_values(&[o.as_str()]);
        }
        for o in Outcome::ALL {
            self.heartbeats_total.with_label_values(&[o.as_str()]);
        }
        for h in HOOKS {
            for r in HOOK_RESULTS {
                self.hooks_total.with_label_values(&[h, r]);
            }
        }
        for r in REFUSAL_REASONS {
            self.snapshot_refusals_total.with_label_values(&[r]);
        }
        let r = Reg(&self.registry);
        let applied = r.add(
            "commands_applied_total",
            IntCounterVec::new(
                opts(
                    "commands_applied_total",
                    "Commands from the replication stream applied, by command (unlisted names: other).",
                ),
                &["command"],
            ),
        )?;
        self.commands_applied = COMMANDS
            .iter()
            .chain(std::iter::once(&OTHER_COMMAND))
            .map(|c| applied.with_label_values(&[c]))
            .collect();
        let info = r.add(
            "build_info",
            IntGaugeVec::new(
                opts(
                    "build_info",
                    "Always 1; the version label is replisnap's version.",
                ),
                &["version"],
            ),
        )?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // A server with no data yet still shows db0, as INFO keyspace users expect a row.
        self.set_dataset_keys([(0, 0)]);
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|err| MetricsError::Register {
                name: "process",
                err,
            })?;
        Ok(())
    }

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

    /// Bring the values that depend on the current time up to date (lag, I/O age).
    fn refresh(&self, now: Instant) {
        let applied = self.replication_offset_bytes.get();
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
}

#[cfg(test)]
mod tests;
