//! Snapshots of the live dataset: when to take one, and turning it into a stored snapshot.
//!
//! Owns the [`Snapshotter`]: it refuses a snapshot before the first full sync and while
//! another is running (they never overlap), captures one from the replica between two
//! commands (the apply loop stands still only for that O(1) capture, see
//! [`crate::replication::Capture::pause`]), and hands it to its one writer thread, which
//! writes the RDB into storage for the master's server version, computes the digest and
//! counts in the same walk, commits, writes the manifest last, and applies retention.
//! It keeps the state of recent snapshots by id for the HTTP API, and reports every event
//! to a [`SnapshotEvents`] observer (the metrics hook).
//!
//! `checkpoint.rs` is the shutdown checkpoint (local, never a stored snapshot); `warm.rs`
//! loads either at start. A job that panics is a failed snapshot, not a dead writer.
//!
//! It must never write a manifest for anything but the bytes just stored (storage checks
//! that), never delete the newest snapshot or one in progress (retention guards), and never
//! block the apply loop beyond the capture.

pub mod checkpoint;
mod job;
pub mod retain;
pub mod schedule;
pub mod warm;

use std::collections::VecDeque;
use std::fmt;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::heartbeat::Heartbeat;
use crate::replication::{CaptureError, ReplicaHandle};
use crate::retention::Policy;
use crate::storage::{Manifest, SnapshotId, Storage, StorageError};

pub use retain::RetentionOutcome;

/// How long `take` waits for the apply loop to reach a point between commands. It polls
/// its socket every 50 ms, and a long MULTI/EXEC delays the capture until EXEC.
const CAPTURE_WAIT: Duration = Duration::from_secs(10);

/// How many finished snapshots' states are remembered for [`Snapshotter::status`].
const HISTORY: usize = 64;

/// Why a snapshot was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The `[snapshot] schedule`.
    Schedule,
    /// `POST /snapshot` or `replisnap snapshot`.
    Api,
    /// Anything else (tests, tools).
    Manual,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Schedule => "schedule",
            Reason::Api => "api",
            Reason::Manual => "manual",
        })
    }
}

/// Why `take` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// One is running; snapshots never overlap (HTTP 409).
    #[error("snapshot {0} is still running")]
    Busy(String),
    /// The first full sync has not completed (HTTP 503).
    #[error("not ready: {0}")]
    NotReady(String),
    /// The daemon is stopping.
    #[error("shutting down")]
    ShuttingDown,
    #[error("cannot reserve a snapshot in storage: {0}")]
    Storage(#[from] StorageError),
}

/// Where one snapshot stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    Running,
    Stored,
    Failed { error: String },
}

/// What [`Snapshotter::status`] reports about one snapshot (JSON for `GET /snapshot/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub id: SnapshotId,
    #[serde(flatten)]
    pub state: JobState,
    pub reason: Reason,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Replication offset the snapshot is consistent at.
    pub offset: i64,
    /// How long the apply loop stood still for the capture.
    pub pause_seconds: f64,
    /// RDB bytes, once stored.
    pub bytes: Option<u64>,
}

/// Observer of snapshot events: the metrics module implements it. Every method has a
/// no-op default, is called on the thread where the event happens (never the apply
/// loop), and must return quickly.
pub trait SnapshotEvents: Send + Sync {
    /// A snapshot was captured and handed to the writer (`snapshot_pause_seconds`).
    fn started(&self, _id: &SnapshotId, _reason: Reason, _pause: Duration) {}
    /// Stored with its manifest: durations, size, time (`snapshots_total{result="success"}`,
    /// `snapshot_duration_seconds`, `snapshot_size_bytes`, `upload_*`,
    /// `last_snapshot_success_timestamp_seconds`).
    fn stored(&self, _manifest: &Manifest, _total: Duration) {}
    /// Failed after the capture (`snapshots_total{result="failure"}`).
    fn failed(&self, _id: &SnapshotId, _error: &str) {}
    /// Storage refused or lost the file (commit, checks or manifest), after `failed`
    /// (`uploads_total{result="error"}`), also when the sink refused a write while the RDB
    /// streamed into it (a part's upload failed).
    fn upload_failed(&self, _id: &SnapshotId, _error: &str) {}
    /// A request was refused (busy, not ready): a scheduled tick skipped.
    fn refused(&self, _reason: Reason, _error: &TakeError) {}
    /// Retention ran after a snapshot (`retention_deleted_total`, `stored_snapshots`,
    /// `oldest_snapshot_timestamp_seconds`).
    fn retention(&self, _outcome: &RetentionOutcome) {}
}

/// The observer that ignores everything.
pub struct NoEvents;
impl SnapshotEvents for NoEvents {}

/// What the snapshotter needs besides the replica and storage.
#[derive(Clone)]
pub struct Options {
    /// The master's address as configured (recorded in manifests).
    pub address: String,
    /// LZF-compress strings (`[snapshot] rdb_compression`).
    pub compress: bool,
    /// The retention policy applied after each snapshot; `None` keeps everything.
    pub retention: Option<Policy>,
}

/// A captured snapshot on its way to the writer thread.
struct Job {
    id: SnapshotId,
    reason: Reason,
    at: DateTime<Utc>,
    capture: crate::replication::Capture,
    sink: Box<dyn crate::storage::RdbSink>,
}

#[derive(Default)]
struct State {
    /// A `take` is between its checks and handing the job over (capture, reservation).
    claimed: bool,
    /// The snapshot being written.
    running: Option<SnapshotId>,
    closed: bool,
    /// Newest last.
    history: VecDeque<JobStatus>,
}

pub(crate) struct Inner {
    replica: ReplicaHandle,
    storage: Arc<dyn Storage>,
    options: Options,
    events: Arc<dyn SnapshotEvents>,
    state: Mutex<State>,
    /// Signalled whenever a snapshot finishes.
    done: Condvar,
    /// Busy while the writer runs a job; beats on every write into storage and between
    /// the job's steps (systemd's watchdog watches it).
    heartbeat: Arc<Heartbeat>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a finished job and wake whoever waits for it.
    fn finish(&self, id: &SnapshotId, state: JobState, bytes: Option<u64>) {
        let mut st = self.state();
        if st.running.as_ref() == Some(id) {
            st.running = None;
        }
        if let Some(j) = st.history.iter_mut().rev().find(|j| &j.id == id) {
            j.state = state;
            j.bytes = bytes;
            j.finished_at = Some(Utc::now());
        }
        drop(st);
        self.done.notify_all();
    }
}

/// Takes snapshots on demand; cheap to clone (the HTTP handlers and the scheduler each
/// hold one).
#[derive(Clone)]
pub struct Snapshotter {
    inner: Arc<Inner>,
    jobs: Arc<Mutex<Option<SyncSender<Job>>>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Snapshotter {
    /// Start the writer thread.
    pub fn start(
        replica: ReplicaHandle,
        storage: Arc<dyn Storage>,
        options: Options,
        events: Arc<dyn SnapshotEvents>,
    ) -> std::io::Result<Snapshotter> {
        let inner = Arc::new(Inner {
            replica,
            storage,
            options,
            events,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            heartbeat: Arc::default(),
        });
        // Work storage does inside a step (staging's retries) beats it too.
        inner.storage.set_heartbeat(inner.heartbeat.clone());
        // One slot: `take` refuses while a job runs, so there is never a second waiting.
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    worker.heartbeat.set_busy(true);
                    let (id, reason) = (job.id.clone(), job.reason);
                    // A panic is one failed snapshot, not a dead writer: unwinding drops the
                    // sink (its reservation goes) and the capture (the walk ends), so the
                    // next snapshot starts from a clean slate.
                    let run = std::panic::AssertUnwindSafe(|| job::run(&worker, job));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        job::panicked(&worker, &id, reason, panic.as_ref());
                    }
                    worker.heartbeat.set_busy(false);
                }
            })?;
        Ok(Snapshotter {
            inner,
            jobs: Arc::new(Mutex::new(Some(tx))),
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// The writer thread's liveness: busy while it writes a snapshot, beating as it goes.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.inner.heartbeat.clone()
    }

    /// True once a full sync has completed: snapshots can be taken (`/readyz` also wants
    /// the link up: `ReplicaHandle::status.link_up`).
    pub fn ready(&self) -> bool {
        self.inner
            .replica
            .status
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Take a snapshot now: capture it between two commands and queue it for the writer.
    /// Returns its id at once; [`status`](Self::status) follows it. Refused before the
    /// first full sync and while another snapshot runs. Blocks for the capture (usually
    /// well under 100 ms: the apply loop answers between commands) and the id
    /// reservation in storage; call it from a blocking context.
    pub fn take(&self, reason: Reason) -> Result<SnapshotId, TakeError> {
        let result = self.try_take(reason);
        if let Err(e) = &result {
            self.inner.events.refused(reason, e);
        }
        result
    }

    fn try_take(&self, reason: Reason) -> Result<SnapshotId, TakeError> {
        if !self.ready() {
            return Err(TakeError::NotReady(
                "the first full sync has not completed".into(),
            ));
        }
        {
            let mut st = self.inner.state();
            if st.closed {
                return Err(TakeError::ShuttingDown);
            }
            if let Some(id) = &st.running {
                return Err(TakeError::Busy(id.to_string()));
            }
            if st.claimed {
                return Err(TakeError::Busy("(being captured)".into()));
            }
            st.claimed = true;
        }
        let r = self.capture_and_queue(reason);
        if r.is_err() {
            self.inner.state().claimed = false;
        }
        r
    }

    fn capture_and_queue(&self, reason: Reason) -> Result<SnapshotId, TakeError> {
        let at = Utc::now();
        let capture = self
            .inner
            .replica
            .capture(CAPTURE_WAIT)
            .map_err(|e| match e {
                CaptureError::Busy => TakeError::Busy("(another walk)".into()),
                e => TakeError::NotReady(e.to_string()),
            })?;
        // The capture is released (dropped) if the reservation fails.
        let sink = self.inner.storage.create_rdb(at)?;
        let id = sink.id().clone();
        let pause = capture.pause;
        info!(
            id = %id, %reason, offset = capture.offset,
            pause_us = pause.as_micros() as u64, "snapshot captured"
        );
        self.inner.events.started(&id, reason, pause);
        let status = JobStatus {
            id: id.clone(),
            state: JobState::Running,
            reason,
            started_at: at,
            finished_at: None,
            offset: capture.offset,
            pause_seconds: pause.as_secs_f64(),
            bytes: None,
        };
        let job = Job {
            id: id.clone(),
            reason,
            at,
            capture,
            sink,
        };
        // Recorded as running before the writer can see the job, so its end always
        // finds the entry to update.
        {
            let mut st = self.inner.state();
            st.claimed = false;
            st.running = Some(id.clone());
            st.history.push_back(status);
            while st.history.len() > HISTORY {
                st.history.pop_front();
            }
        }
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let sent = jobs.as_ref().is_some_and(|tx| tx.try_send(job).is_ok());
        match sent {
            true => Ok(id),
            // Closed (or, impossibly while we held the claim, full): the job is dropped,
            // which removes its reservation.
            false => {
                drop(jobs);
                self.inner.finish(
                    &id,
                    JobState::Failed {
                        error: "shutting down".into(),
                    },
                    None,
                );
                Err(TakeError::ShuttingDown)
            }
        }
    }

    /// The state of a snapshot this process took recently (the last 64), by id.
    pub fn status(&self, id: &SnapshotId) -> Option<JobStatus> {
        let st = self.inner.state();
        st.history.iter().rev().find(|j| &j.id == id).cloned()
    }

    /// The snapshot being written, if any.
    pub fn running(&self) -> Option<SnapshotId> {
        self.inner.state().running.clone()
    }

    /// The most recent snapshot this process took, whatever its state.
    pub fn last(&self) -> Option<JobStatus> {
        self.inner.state().history.back().cloned()
    }

    /// Wait until `id` is no longer running (or `timeout` passes); its final status.
    pub fn wait(&self, id: &SnapshotId, timeout: Duration) -> Option<JobStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.inner.state();
        loop {
            let s = st.history.iter().rev().find(|j| &j.id == id).cloned();
            match s {
                Some(s) if s.state != JobState::Running => return Some(s),
                None => return None,
                Some(_) => {}
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return st.history.iter().rev().find(|j| &j.id == id).cloned();
            }
            st = self
                .inner
                .done
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Refuse new snapshots, let a running one finish, and stop the writer thread.
    pub fn shutdown(&self) {
        self.inner.state().closed = true;
        if let Some(id) = self.running() {
            info!(id = %id, "waiting for the running snapshot to finish");
        }
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                warn!("the snapshot writer thread panicked");
            }
        }
    }
}
