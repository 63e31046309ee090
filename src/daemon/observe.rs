//! The daemon's outward faces, wired: the HTTP `Control` over the replica and the
//! snapshotter ([`DaemonControl`]), the snapshot events feeding the metrics
//! ([`MetricsEvents`]), and the once-a-second poller that copies the replica's status into
//! the metrics and reads the master's own offset on a connection of its own.
//!
//! Owns only translation between parts (status atomics → metric events, snapshot states →
//! HTTP answers). It must never wait for a snapshot to be written, never touch the keyspace,
//! never log a password, and never import another file of the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::debug;

use crate::heartbeat::{Heartbeat, Watch};
use crate::http::{Control, SnapshotRequestError, SnapshotStatus};
use crate::metrics::{LinkErrorReason, Metrics, ResyncReason};
use crate::replication::link::{Link, LinkError};
use crate::replication::{Phase, ReplicaHandle, Settings, Status};
use crate::resp::Frame;
use crate::snapshot::{JobState, Reason, RetentionOutcome, SnapshotEvents, Snapshotter, TakeError};
use crate::storage::{Manifest, SnapshotId};

/// What `POST /snapshot`, `GET /snapshot/<id>` and `/readyz` ask.
pub struct DaemonControl {
    pub handle: ReplicaHandle,
    pub snapshotter: Option<Snapshotter>,
    pub metrics: Arc<Metrics>,
    /// `[source] timeout`: a master silent this long makes `/readyz` fail at once.
    pub master_timeout: Duration,
    /// `[http] ready_max_lag`, seconds.
    pub ready_max_lag: f64,
    /// Seconds the snapshot writer has been stuck past `[snapshot] timeout` (0: not),
    /// kept by the poller.
    pub writer_stuck: Arc<AtomicU64>,
    /// Why the daemon waits for the storage's writer lease, while it does.
    pub waiting: Arc<std::sync::Mutex<Option<String>>>,
}

impl Control for DaemonControl {
    fn ready(&self) -> Result<(), String> {
        if let Some(why) = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(why);
        }
        let s = &self.handle.status;
        let stuck = self.writer_stuck.load(Ordering::Relaxed);
        if stuck > 0 {
            return Err(format!(
                "the snapshot writer made no progress for {stuck} s ([snapshot] timeout)"
            ));
        }
        if s.phase() == Phase::FullSync {
            return Err("full sync in progress".into());
        }
        if !s.ready.load(Ordering::Relaxed) {
            return Err("the first full sync has not completed".into());
        }
        if !s.link_up.load(Ordering::Relaxed) {
            return Err("the link to the master is down, reconnecting".into());
        }
        if let Some(age) = s.io.age().filter(|a| *a >= self.master_timeout) {
            return Err(format!(
                "link stalled: nothing from the master for {} s ([source] timeout {} s)",
                age.as_secs(),
                self.master_timeout.as_secs()
            ));
        }
        let (bytes, lag) = self.metrics.lag_now();
        if lag > self.ready_max_lag {
            return Err(format!(
                "lagging {lag:.1} s ({bytes} bytes) behind the master ([http] ready_max_lag {} s)",
                self.ready_max_lag
            ));
        }
        Ok(())
    }

    fn request_snapshot(&self) -> Result<String, SnapshotRequestError> {
        let Some(s) = &self.snapshotter else {
            return Err(SnapshotRequestError::Other(
                "no [storage] configured: snapshots are off".into(),
            ));
        };
        // `take` waits for the capture (between two commands, microseconds of pause) and
        // the id's reservation in storage, then returns; the writing happens elsewhere.
        match s.take(Reason::Api) {
            Ok(id) => Ok(id.to_string()),
            Err(TakeError::Busy(id)) => Err(SnapshotRequestError::Busy { running: Some(id) }),
            Err(TakeError::NotReady(why)) => Err(SnapshotRequestError::NotReady(why)),
            Err(e) => Err(SnapshotRequestError::Other(e.to_string())),
        }
    }

    fn snapshot_status(&self, id: &str) -> Option<SnapshotStatus> {
        let id = SnapshotId::parse(id).ok()?;
        let st = self.snapshotter.as_ref()?.status(&id)?;
        Some(match st.state {
            JobState::Running => SnapshotStatus::Running,
            JobState::Stored => SnapshotStatus::Stored,
            JobState::Failed { error } => SnapshotStatus::Failed(error),
        })
    }
}

/// Snapshot events into the metrics.
pub struct MetricsEvents(pub Arc<Metrics>);

impl SnapshotEvents for MetricsEvents {
    fn started(&self, _id: &SnapshotId, _reason: Reason, pause: Duration) {
        self.0.observe_snapshot_pause(pause.as_secs_f64());
    }

    fn stored(&self, m: &Manifest, total: Duration) {
        let at = SystemTime::from(m.created_at) + total;
        self.0.snapshot_ok(total.as_secs_f64(), m.rdb.bytes, at);
        // The write is the upload (local storage; S3 streams parts while writing).
        self.0.upload_ok(
            m.rdb.bytes,
            m.durations.write_seconds + m.durations.upload_seconds,
            at,
        );
    }

    fn failed(&self, _id: &SnapshotId, _error: &str) {
        self.0.snapshot_failed();
    }

    fn upload_failed(&self, _id: &SnapshotId, _error: &str) {
        self.0.upload_failed();
    }

    fn refused(&self, _reason: Reason, error: &TakeError) {
        // Storage refusing the reservation (read-only, EACCES, full) is also a failed
        // snapshot: the capture was taken, and failure alerts must see a broken disk.
        if matches!(error, TakeError::Storage(_)) {
            self.0.snapshot_failed();
        }
        self.0.snapshot_refused(match error {
            TakeError::NotReady(_) => "not_ready",
            TakeError::Busy(_) => "busy",
            TakeError::Storage(_) => "storage_error",
            TakeError::ShuttingDown => "shutting_down",
        });
    }

    fn retention(&self, outcome: &RetentionOutcome) {
        self.0.inc_retention_deleted(outcome.deleted.len() as u64);
        let oldest = outcome.kept.last().map(|m| SystemTime::from(m.created_at));
        self.0
            .set_stored_snapshots(outcome.kept.len() as u64, oldest);
    }
}

/// How long the poller's connection to the master may take to connect, and to answer.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Copy the replica's status into the metrics every second, and read the master's offset
/// on a connection of its own (TLS too, with the replica's settings), every call on it
/// bounded by [`POLL_TIMEOUT`].
/// The snapshot writer's heartbeat, its bound (`[snapshot] timeout`) and where the poller
/// writes how long it has been stuck past it (0: not stuck).
pub struct WriterWatch {
    pub heartbeat: Arc<Heartbeat>,
    pub bound: Duration,
    pub stuck: Arc<AtomicU64>,
    /// Read for its retried attempts (`upload_retries_total{op}`).
    pub storage: Option<Arc<dyn crate::storage::Storage>>,
}

pub fn spawn_poller(
    handle: ReplicaHandle,
    metrics: Arc<Metrics>,
    mut settings: Settings,
    writer: Option<WriterWatch>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The status is copied at every scrape too, by the same copier (one set of "last
    // copied" counts): a scrape never shows a link or an offset older than itself, nor a
    // link up whose resync is not yet counted.
    let copier = Arc::new(std::sync::Mutex::new(StatusCopier::new(&handle.status)));
    {
        let (copier, status) = (copier.clone(), handle.status.clone());
        metrics.follow(Box::new(move |m: &Metrics| {
            if let Ok(mut c) = copier.lock() {
                c.copy(&status, m);
            }
        }));
    }
    std::thread::Builder::new()
        .name("metrics-poller".into())
        .spawn(move || {
            let s = &handle.status;
            let mut conn: Option<Link> = None;
            let mut watch = writer
                .as_ref()
                .map(|w| Watch::new("snapshot writer", w.bound, std::time::Instant::now()));
            while !handle.is_stopped() {
                if let (Some(w), Some(watch)) = (&writer, watch.as_mut()) {
                    let stuck = watch.stalled(&w.heartbeat, std::time::Instant::now());
                    w.stuck
                        .store(stuck.map_or(0, |d| d.as_secs().max(1)), Ordering::Relaxed);
                }
                if let Some(st) = writer.as_ref().and_then(|w| w.storage.as_ref()) {
                    for (op, total) in st.retries() {
                        metrics.set_upload_retries(op, total);
                    }
                }
                if let Ok(mut c) = copier.lock() {
                    c.copy(s, &metrics);
                }
                if let Some(b) = resident_bytes() {
                    metrics.set_dataset_memory_bytes(b);
                }
                // Through Sentinel, the master is wherever the replica connected last.
                if let Ok(a) = s.master_address.lock() {
                    if !a.is_empty() && *a != settings.address {
                        settings.address.clone_from(&a);
                        conn = None;
                    }
                }
                // Our offset read before the master's: the pair's distance is the lag
                // (bytes in flight included), never less than it was.
                let applied = s.offset.load(Ordering::Relaxed);
                match master_offset(&mut conn, &settings) {
                    Ok(off) => metrics.observe_master_offset(off, applied),
                    Err(e) => {
                        debug!(error = %e, "cannot read the master's offset");
                        conn = None;
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
}

/// The replica's status into the metrics: gauges set, counters advanced by what the
/// status counted since the last copy.
struct StatusCopier {
    full: u64,
    partial: u64,
    forced: u64,
    /// Dual-channel syncs, refusals, buffered and spilled bytes last copied.
    dual: [u64; 4],
    errors: [u64; LinkErrorReason::ALL.len()],
    applied: Vec<u64>,
}

impl StatusCopier {
    fn new(s: &Status) -> Self {
        StatusCopier {
            full: 0,
            partial: 0,
            forced: 0,
            dual: [0; 4],
            errors: [0; LinkErrorReason::ALL.len()],
            applied: vec![0; s.commands.0.len()],
        }
    }

    fn copy(&mut self, s: &Status, metrics: &Metrics) {
        metrics.set_link_up(s.link_up.load(Ordering::Relaxed));
        metrics.set_replication_offset(s.offset.load(Ordering::Relaxed));
        let delta = |now: u64, last: &mut u64| {
            let d = now.saturating_sub(*last);
            *last = now;
            d
        };
        for _ in 0..delta(s.full_syncs.load(Ordering::Relaxed), &mut self.full) {
            metrics.inc_full_resyncs();
        }
        for _ in 0..delta(s.partial_syncs.load(Ordering::Relaxed), &mut self.partial) {
            metrics.inc_partial_resyncs();
        }
        let d = [
            &s.dual_channel_syncs,
            &s.dual_channel_refusals,
            &s.dual_channel_buffered_bytes,
            &s.dual_channel_spilled_bytes,
        ]
        .map(|c| c.load(Ordering::Relaxed));
        let [a, b, c, e] = [0, 1, 2, 3].map(|i| delta(d[i], &mut self.dual[i]));
        metrics.add_dual_channel(a, b, c, e);
        let new_forced = delta(s.forced_resyncs.load(Ordering::Relaxed), &mut self.forced);
        if new_forced > 0 {
            let why = s
                .last_forced_reason
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default();
            let reason = if why.contains("not supported") || why.contains("propagated verbatim") {
                ResyncReason::UnknownCommand
            } else {
                ResyncReason::ApplyError
            };
            for _ in 0..new_forced {
                metrics.inc_resyncs_forced(reason);
            }
        }
        for (i, reason) in LinkErrorReason::ALL.iter().enumerate() {
            let now = s.link_error_kinds[i].load(Ordering::Relaxed);
            for _ in 0..now.saturating_sub(self.errors[i]) {
                metrics.inc_link_errors(*reason);
            }
            self.errors[i] = now;
        }
        for (i, c) in s.commands.0.iter().enumerate() {
            let now = c.load(Ordering::Relaxed);
            if now > self.applied[i] {
                metrics.commands_applied_at(i, now - self.applied[i]);
                self.applied[i] = now;
            }
        }
        if let Ok(k) = s.keys_per_db.lock() {
            metrics.set_dataset_keys(k.iter().copied());
        }
        if let Some(age) = s.io.age() {
            metrics.note_master_io_ago(age);
        }
    }
}

/// What `dataset_memory_bytes` shows: the process's resident memory (`VmRSS` of
/// `/proc/self/status`), one small read, the same cost at any dataset size, never a walk of
/// the keyspace. It is the dataset plus buffers and code, and pages mimalloc freed but has
/// not yet returned to the OS. `None` off Linux or if the line is missing.
fn resident_bytes() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS:   97760 kB` out of `/proc/<pid>/status`, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let v = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = v.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kb.checked_mul(1024)
}

/// One reply, as text; an error reply is an error.
fn reply(link: &mut Link) -> Result<String, LinkError> {
    match link.read_frame()? {
        Frame::Simple(b) | Frame::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Frame::Error(e) => Err(LinkError::Io(std::io::Error::other(format!(
            "master said {}",
            String::from_utf8_lossy(&e)
        )))),
        other => Err(LinkError::Io(std::io::Error::other(format!(
            "unexpected reply {other:?}"
        )))),
    }
}

/// `master_repl_offset` from the master's `INFO replication`, reconnecting as needed.
fn master_offset(conn: &mut Option<Link>, s: &Settings) -> Result<i64, LinkError> {
    if conn.is_none() {
        let mut link = Link::connect(&s.address, POLL_TIMEOUT, s.tls.as_ref())?;
        // INFO replication is a few hundred bytes.
        link.limits.max_bulk = 1 << 20;
        if let Some(p) = &s.password {
            match &s.username {
                Some(u) => link.send(&[b"AUTH", u.as_bytes(), p.as_bytes()])?,
                None => link.send(&[b"AUTH", p.as_bytes()])?,
            }
            reply(&mut link)?;
        }
        *conn = Some(link);
    }
    let Some(link) = conn.as_mut() else {
        return Err(LinkError::Closed);
    };
    link.send(&[b"INFO", b"replication"])?;
    let info = reply(link)?;
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            LinkError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no master_repl_offset",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_come_from_vmrss() {
        let status = "Name:\treplisnap\nVmPeak:\t  200000 kB\nVmRSS:\t   97760 kB\nThreads:\t9\n";
        assert_eq!(vm_rss(status), Some(97760 * 1024));
        assert_eq!(vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss("VmRSS:\t-1 kB\n"), None);
        assert_eq!(vm_rss("VmRSS:\t99999999999999999999 kB\n"), None);
        assert_eq!(vm_rss("VmHWM:\t5 kB\n"), None);
        #[cfg(target_os = "linux")]
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
