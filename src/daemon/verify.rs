//! Scheduled verification (`[verify] schedule`): on each tick the newest stored snapshot is
//! read back through the [`Storage`] trait (local or S3 alike) and checked in the one pass
//! `replisnap verify --config F latest` makes ([`crate::verify::check_stream`]: length,
//! SHA-256, CRC-64, every record parsed, the offline `DEBUG DIGEST` and key count against
//! the manifest). Each outcome is counted in `verify_total{result}` (ok, bad, error), a good
//! one sets `last_verify_success_timestamp_seconds`, and one log line names the snapshot and
//! what differs.
//!
//! Owns the verify thread, the skip-when-busy rule and the classification of outcomes. It
//! must never run a check on the runtime's thread, the replica's or the snapshot writer's
//! (it has its own thread, which holds no lock any of them takes), never run two checks at
//! once or queue a tick (a tick while one runs is skipped and logged), never look at a
//! snapshot storage does not list with a manifest (one being written has none), never
//! write to storage, and never import another file of the daemon.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono_tz::Tz;
use tokio_cron_scheduler::Job;
use tracing::{error, info};

use crate::metrics::{Metrics, VerifyOutcome};
use crate::snapshot::schedule::ScheduleError;
use crate::storage::{Manifest, Storage, StorageError};
use crate::verify::{check_stream, Report};

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The verify thread took it.
    Started,
    /// A verification is still running: this tick is dropped.
    Skipped,
    /// The verifier is shut down.
    Stopped,
}

/// What one verification found.
#[derive(Debug)]
pub enum Outcome {
    /// The newest snapshot matches its manifest in every check.
    Ok(Report),
    /// The newest snapshot differs from its manifest or is corrupt; `problems` says how.
    Bad { id: String, problems: Vec<String> },
    /// The check could not run; `id` when a snapshot had been chosen.
    Error { id: Option<String>, error: String },
    /// Storage holds no snapshot yet: nothing counted.
    Empty,
    /// The daemon is stopping: the check was abandoned, nothing counted.
    Interrupted { id: String },
}

/// The verify thread and the door to it. Cheap to share (`Arc<Verifier>`).
pub struct Verifier {
    shared: Arc<Shared>,
    /// A zero-capacity channel: a send succeeds only while the thread waits for work.
    door: Mutex<Option<SyncSender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    stop: AtomicBool,
    /// The snapshot being checked, for the log line of a skipped tick.
    running: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Verifier {
    /// Start the verify thread (idle until a tick).
    pub fn start(storage: Arc<dyn Storage>, metrics: Arc<Metrics>) -> io::Result<Verifier> {
        let shared = Arc::new(Shared {
            storage,
            metrics,
            stop: AtomicBool::new(false),
            running: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel::<()>(0);
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let started = Instant::now();
                    let outcome =
                        verify_newest(worker.storage.as_ref(), &worker.stop, &worker.running);
                    *lock(&worker.running) = None;
                    record(&worker.metrics, &outcome, started.elapsed().as_secs_f64());
                }
            })?;
        Ok(Verifier {
            shared,
            door: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Start a verification now unless one is running (then the tick is logged and dropped).
    pub fn tick(&self) -> Tick {
        let door = lock(&self.door);
        let Some(tx) = door.as_ref() else {
            return Tick::Stopped;
        };
        match tx.try_send(()) {
            Ok(()) => Tick::Started,
            Err(TrySendError::Full(())) => {
                let running = lock(&self.shared.running)
                    .clone()
                    .unwrap_or_else(|| "(listing storage)".into());
                info!(running = %running, "scheduled verification skipped: one is still running");
                Tick::Skipped
            }
            Err(TrySendError::Disconnected(())) => Tick::Stopped,
        }
    }

    /// Abandon a running check (at its next read) and stop the thread.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        drop(lock(&self.door).take());
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                tracing::warn!("the verify thread panicked");
            }
        }
    }
}

/// A reader that fails once the daemon is stopping, so a long check ends at its next read.
struct Interruptible<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: Read> Read for Interruptible<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Acquire) {
            // Not ErrorKind::Interrupted: io::copy and read_exact retry that one.
            return Err(io::Error::other("the daemon is stopping"));
        }
        self.inner.read(buf)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Check the newest snapshot storage lists. A newest one whose manifest storage refuses
/// (or whose RDB is not the recorded size) is bad too: it is the backup a restore would
/// reach for first.
pub fn verify_newest(
    storage: &dyn Storage,
    stop: &AtomicBool,
    running: &Mutex<Option<String>>,
) -> Outcome {
    // A snapshot listed, then deleted by retention before it was opened: list again, once.
    for attempt in 0..2 {
        let listing = match storage.list() {
            Ok(l) => l,
            Err(e) => {
                return Outcome::Error {
                    id: None,
                    error: format!("{}: {e}", storage.describe()),
                }
            }
        };
        let newest_good = listing.snapshots.first();
        let m: &Manifest = match (newest_good, listing.problems.first()) {
            (_, Some(p)) if newest_good.is_none_or(|m| p.id > m.id) => {
                return Outcome::Bad {
                    id: p.id.to_string(),
                    problems: vec![p.error.to_string()],
                }
            }
            (Some(m), _) => m,
            (None, _) => return Outcome::Empty,
        };
        let id = m.id.to_string();
        *lock(running) = Some(id.clone());
        let input = match storage.open_rdb(&m.id) {
            Ok(r) => r,
            Err(StorageError::NotFound { .. }) if attempt == 0 => continue,
            Err(e) => {
                return Outcome::Error {
                    id: Some(id),
                    error: format!("{}: {e}", storage.describe()),
                }
            }
        };
        let input = Interruptible { inner: input, stop };
        return match check_stream(&id, input, None, Some(m), now_ms(), |_| {}) {
            Ok(r) if r.ok() => Outcome::Ok(r),
            Ok(r) => Outcome::Bad {
                id,
                problems: r.problems,
            },
            Err(_) if stop.load(Ordering::Acquire) => Outcome::Interrupted { id },
            Err(e) => Outcome::Error {
                id: Some(id),
                error: format!("{}: {e}", storage.describe()),
            },
        };
    }
    Outcome::Error {
        id: None,
        error: format!(
            "{}: the newest snapshot vanished twice between listing and reading",
            storage.describe()
        ),
    }
}

/// Count the outcome and log its one line.
pub fn record(metrics: &Metrics, outcome: &Outcome, seconds: f64) {
    let now = SystemTime::now();
    match outcome {
        Outcome::Ok(r) => {
            metrics.verify_finished(VerifyOutcome::Ok, now);
            info!(
                id = %r.name,
                bytes = r.bytes,
                keys = r.keys.unwrap_or(0),
                digest = r.digest.as_deref().unwrap_or("?"),
                target = r.target.as_deref().unwrap_or("?"),
                seconds = format_args!("{seconds:.3}"),
                "scheduled verification: ok"
            );
        }
        Outcome::Bad { id, problems } => {
            metrics.verify_finished(VerifyOutcome::Bad, now);
            error!(
                id = %id,
                problems = %problems.join("; "),
                "scheduled verification: the snapshot is bad"
            );
        }
        Outcome::Error { id, error } => {
            metrics.verify_finished(VerifyOutcome::Error, now);
            error!(
                id = id.as_deref().unwrap_or("-"),
                error = %error,
                "scheduled verification could not run"
            );
        }
        Outcome::Empty => info!("scheduled verification: no snapshot stored yet"),
        Outcome::Interrupted { id } => {
            info!(id = %id, "scheduled verification abandoned: stopping")
        }
    }
}

/// Start `[verify] schedule` on the current tokio runtime. A tick only knocks on the
/// verify thread's door (never blocks the runtime). Keep the returned scheduler and call
/// `shutdown` on it when stopping.
pub async fn start_schedule(
    verifier: Arc<Verifier>,
    expr: &str,
    tz: Tz,
) -> Result<crate::snapshot::schedule::Schedule, ScheduleError> {
    let text = expr.to_string();
    let make = move || {
        let v = verifier.clone();
        Job::new_tz(text.as_str(), tz, move |_, _| {
            v.tick();
        })
        .map_err(|_| ScheduleError::Cron {
            key: "verify.schedule",
            expr: text.clone(),
        })
    };
    let sched = crate::snapshot::schedule::add_across_steps("verify schedule", make).await?;
    info!(schedule = %expr, timezone = %tz, "verify schedule started");
    Ok(sched)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
