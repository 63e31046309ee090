//! Building [`Metrics`]: every SPEC §5 series registered once with its name, type, help
//! text, buckets and label names; labelled counters pre-initialised to 0 for every value of
//! their closed label sets; `build_info` and the process collector.
//!
//! Owns only construction. It must never report an event (that is `mod.rs` and
//! `replication.rs`), never register a series outside [`Metrics::new`], and never import a
//! sibling file: what it needs from `labels` and `lag` comes through `super`.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::{
    LagTracker, LinkErrorReason, Metrics, MetricsError, Outcome, ResyncReason, VerifyOutcome,
    COMMANDS, DURATION_BUCKETS, HOOKS, HOOK_RESULTS, NAMESPACE, OTHER_COMMAND, PAUSE_BUCKETS,
    REFUSAL_REASONS, UPLOAD_RETRY_OPS,
};

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

impl Metrics {
    /// Build the registry: every SPEC §5 series, labelled counters at 0 for every known
    /// label value (so `increase()` works from the first scrape), `build_info` at 1 and,
    /// on Linux, the process collector.
    pub fn new() -> Result<Metrics, MetricsError> {
        Self::build(Registry::new(), true)
    }

    /// One shard's series of a cluster (`[source] cluster`): every series carries
    /// `shard="<name>"`; `build_info` and the process collector are the process's, not a
    /// shard's, and stay in the daemon's own [`Metrics::new`] (see [`Metrics::render_all`]).
    pub fn for_shard(shard: &str) -> Result<Metrics, MetricsError> {
        let labels = std::iter::once(("shard".to_string(), shard.to_string())).collect();
        let registry = Registry::new_custom(None, Some(labels))
            .map_err(|err| MetricsError::Register { name: "shard", err })?;
        Self::build(registry, false)
    }

    fn build(registry: Registry, process: bool) -> Result<Metrics, MetricsError> {
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
            dual_channel_syncs_total: r.add(
                "dual_channel_syncs_total",
                IntCounter::with_opts(opts(
                    "dual_channel_syncs_total",
                    "Full syncs whose RDB came on a second connection (Valkey dual-channel, \
                     Redis rdb-channel); counted in full_resyncs_total too.",
                )),
            )?,
            dual_channel_refusals_total: r.add(
                "dual_channel_refusals_total",
                IntCounter::with_opts(opts(
                    "dual_channel_refusals_total",
                    "Dual-channel full syncs a server answered and then refused a step of; \
                     not offered to it again until the master changes.",
                )),
            )?,
            dual_channel_buffered_bytes_total: r.add(
                "dual_channel_buffered_bytes_total",
                IntCounter::with_opts(opts(
                    "dual_channel_buffered_bytes_total",
                    "Stream bytes buffered locally while dual-channel RDBs loaded.",
                )),
            )?,
            dual_channel_spilled_bytes_total: r.add(
                "dual_channel_spilled_bytes_total",
                IntCounter::with_opts(opts(
                    "dual_channel_spilled_bytes_total",
                    "Of those, bytes written to a file past [source] dual_channel_memory_mb.",
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
                IntGauge::with_opts(opts(
                    "dataset_memory_bytes",
                    "Resident memory of the replisnap process (VmRSS, polled each second): the \
                     dataset plus buffers and code, and freed pages the allocator has not yet \
                     returned to the OS. Not a sum of value sizes.",
                )),
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
            upload_retries_total: r.add(
                "upload_retries_total",
                IntCounterVec::new(
                    opts(
                        "upload_retries_total",
                        "Storage request attempts that failed and were tried again, by operation.",
                    ),
                    &["op"],
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
            archive_lag_seconds: r.add(
                "archive_lag_seconds",
                Gauge::with_opts(opts(
                    "archive_lag_seconds",
                    "Age of the oldest applied stream byte not yet stored in the archive \
                     (the archive's RPO); 0 when everything is stored.",
                )),
            )?,
            archive_lag_bytes: r.add(
                "archive_lag_bytes",
                IntGauge::with_opts(opts(
                    "archive_lag_bytes",
                    "Stream bytes applied but not yet stored in the archive.",
                )),
            )?,
            archive_segments_total: r.add(
                "archive_segments_total",
                IntCounterVec::new(
                    opts(
                        "archive_segments_total",
                        "Archive segments stored (ok) or failed attempts to store one (error).",
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
            sampled_applied: std::sync::atomic::AtomicI64::new(i64::MIN),
            follow: Mutex::new(None),
            last_master_io: AtomicU64::new(0),
            started: Instant::now(),
            registry,
        };
        m.init_labelled(process)?;
        Ok(m)
    }

    /// Pre-initialise every labelled series, `build_info` and the process collector.
    fn init_labelled(&mut self, process: bool) -> Result<(), MetricsError> {
        for r in LinkErrorReason::ALL {
            self.link_errors_total.with_label_values(&[r.as_str()]);
        }
        for r in ResyncReason::ALL {
            self.resyncs_forced_total.with_label_values(&[r.as_str()]);
        }
        for o in Outcome::ALL {
            self.snapshots_total.with_label_values(&[o.as_str()]);
            self.uploads_total.with_label_values(&[o.as_str()]);
            self.archive_segments_total.with_label_values(&[o.as_str()]);
        }
        for op in UPLOAD_RETRY_OPS {
            self.upload_retries_total.with_label_values(&[op]);
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
        // A server with no data yet still shows db0, as INFO keyspace users expect a row.
        self.set_dataset_keys([(0, 0)]);
        // A shard's registry ends here: one process, one build_info, one process collector.
        if !process {
            return Ok(());
        }
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
}
