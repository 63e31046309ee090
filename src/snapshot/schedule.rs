//! The snapshot schedule: `[snapshot] schedule` (cron with a seconds field) in UTC or in
//! `[snapshot] timezone`, run by tokio-cron-scheduler on the daemon's tokio runtime.
//!
//! Owns turning ticks into [`Snapshotter::take`] calls. A tick while a snapshot runs, or
//! before the first full sync, is skipped and logged, never queued: snapshots never
//! overlap and a late one would not be at the scheduled time anyway. It must never call
//! `take` on the runtime's own thread (it blocks for the capture): ticks go through
//! `spawn_blocking`. [`check`] holds the cron and zone rules every schedule of the config
//! follows (`[verify] schedule` too), so they cannot drift apart. [`add_across_steps`]
//! keeps a job firing when the wall clock steps back (both schedules use it).

use std::time::{Duration, Instant, SystemTime};

use chrono_tz::Tz;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{info, warn};

use super::{Reason, Snapshotter, TakeError};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// `key` is the config key that named the zone ("snapshot.timezone").
    #[error("{key} = {name:?}: not a time zone name (IANA, e.g. \"Europe/Paris\", or \"UTC\")")]
    Zone { key: &'static str, name: String },
    /// `key` is the config key that held the expression ("snapshot.schedule").
    #[error("{key} = {expr:?}: not a cron expression with a seconds field (sec min hour day month weekday)")]
    Cron { key: &'static str, expr: String },
    /// A valid expression that matches no time from now on (February 30th).
    #[error("{key} = {expr:?}: never fires (no matching time from now on)")]
    Never { key: &'static str, expr: String },
    #[error("scheduler: {0}")]
    Scheduler(String),
}

impl From<JobSchedulerError> for ScheduleError {
    fn from(e: JobSchedulerError) -> Self {
        ScheduleError::Scheduler(format!("{e:?}"))
    }
}

/// The zone of `[snapshot] timezone`: UTC when absent.
pub fn zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    zone_of("snapshot.timezone", name)
}

/// The zone named by the config key `key`: UTC when absent.
pub fn zone_of(key: &'static str, name: Option<&str>) -> Result<Tz, ScheduleError> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n.parse::<Tz>().map_err(|_| ScheduleError::Zone {
            key,
            name: n.to_string(),
        }),
    }
}

/// Check the snapshot schedule without starting anything (for `run` before it attaches).
pub fn validate(expr: &str, zone_name: Option<&str>) -> Result<(), ScheduleError> {
    check("snapshot.schedule", expr, "snapshot.timezone", zone_name).map(|_| ())
}

/// Check any cron schedule of the config (errors name `schedule_key` or `zone_key`) and
/// return the zone it is read in. The same rules for every schedule: six fields, seconds
/// first, parsed by the scheduler that will run it, with a next time to fire; an IANA
/// zone name or UTC. `check-config` and `run` both call this.
pub fn check(
    schedule_key: &'static str,
    expr: &str,
    zone_key: &'static str,
    zone_name: Option<&str>,
) -> Result<Tz, ScheduleError> {
    let tz = zone_of(zone_key, zone_name)?;
    let mut job = Job::new_tz(expr, tz, |_, _| {}).map_err(|_| ScheduleError::Cron {
        key: schedule_key,
        expr: expr.to_string(),
    })?;
    // The scheduler records 0 when the expression matches no time after now.
    if job.job_data().map_or(0, |d| d.next_tick) == 0 {
        return Err(ScheduleError::Never {
            key: schedule_key,
            expr: expr.to_string(),
        });
    }
    Ok(tz)
}

/// What a tick asks for: one snapshot ([`Snapshotter`]) or, for a cluster, one per shard
/// grouped in a set. `take` blocks until the capture (or captures) are made; it returns
/// what the log names the result by.
pub trait Taker: Clone + Send + Sync + 'static {
    fn take(&self, reason: Reason) -> Result<String, TakeError>;
}

impl Taker for Snapshotter {
    fn take(&self, reason: Reason) -> Result<String, TakeError> {
        Snapshotter::take(self, reason).map(|id| id.to_string())
    }
}

/// [`start`] for `taker` when there is one (a daemon without storage schedules nothing).
pub async fn start_for<T: Taker>(
    taker: Option<&T>,
    expr: &str,
    zone_name: Option<&str>,
) -> Result<Option<Schedule>, ScheduleError> {
    match taker {
        Some(t) => Ok(Some(start(t.clone(), expr, zone_name).await?)),
        None => Ok(None),
    }
}

/// Start the schedule on the current tokio runtime. Keep the returned scheduler and call
/// `shutdown` on it when stopping.
pub async fn start<T: Taker>(
    taker: T,
    expr: &str,
    zone_name: Option<&str>,
) -> Result<Schedule, ScheduleError> {
    let tz = zone(zone_name)?;
    let text = expr.to_string();
    let make = move || {
        let taker = taker.clone();
        Job::new_async_tz(text.as_str(), tz, move |_, _| {
            let s = taker.clone();
            Box::pin(async move {
                match tokio::task::spawn_blocking(move || s.take(Reason::Schedule)).await {
                    Ok(Ok(_id)) => {} // logged by the snapshotter with its id and pause
                    Ok(Err(TakeError::Busy(running))) => {
                        info!(running = %running, "scheduled snapshot skipped: one is still running")
                    }
                    Ok(Err(e @ TakeError::NotReady(_))) => {
                        info!(reason = %e, "scheduled snapshot skipped")
                    }
                    Ok(Err(e)) => warn!(error = %e, "scheduled snapshot not taken"),
                    Err(e) => warn!(error = %e, "scheduled snapshot task failed"),
                }
            })
        })
        .map_err(|_| ScheduleError::Cron {
            key: "snapshot.schedule",
            expr: text.clone(),
        })
    };
    let sched = add_across_steps("snapshot schedule", make).await?;
    info!(schedule = %expr, timezone = %tz, "snapshot schedule started");
    Ok(sched)
}

/// A running schedule: the cron scheduler and the task that keeps it on time across wall
/// clock steps. [`Schedule::shutdown`] ends both (dropping it ends the watcher too), so a
/// cluster round that ends leaves no task behind.
pub struct Schedule {
    sched: JobScheduler,
    watcher: tokio::task::AbortHandle,
}

impl Schedule {
    pub async fn shutdown(&mut self) -> Result<(), JobSchedulerError> {
        self.watcher.abort();
        self.sched.shutdown().await
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// A wall clock that went back by more than this (against the monotonic clock) between
/// two looks, one second apart, is a step back.
const STEP_BACK: Duration = Duration::from_secs(2);

/// Start a scheduler with the job `make` builds, and keep it on time when the wall clock steps
/// back. tokio-cron-scheduler fires a job once the wall clock reaches the next tick it
/// computed when the job last fired: stepped back an hour, the next tick stays an hour
/// ahead and nothing fires for an hour (found by the soak's clock-jump fault). A watcher
/// compares the wall clock with the monotonic one every second; after a step back it
/// replaces the job with a fresh one, whose next tick counts from the new time. A step
/// forward needs nothing: the overdue tick fires once and the next counts from then.
pub async fn add_across_steps<F>(what: &'static str, make: F) -> Result<Schedule, ScheduleError>
where
    F: Fn() -> Result<Job, ScheduleError> + Send + Sync + 'static,
{
    let sched = JobScheduler::new().await?;
    let mut id = sched.add(make()?).await?;
    sched.start().await?;
    let watched = sched.clone();
    let watcher = tokio::spawn(async move {
        let sched = watched;
        let (mut wall, mut mono) = (SystemTime::now(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (w, m) = (SystemTime::now(), Instant::now());
            let expected = wall + m.duration_since(mono);
            (wall, mono) = (w, m);
            let Ok(back) = expected.duration_since(w) else {
                continue; // on time, or stepped forward
            };
            if back <= STEP_BACK {
                continue;
            }
            warn!(
                schedule = what,
                seconds = back.as_secs(),
                "the wall clock stepped back: the schedule restarts from the new time"
            );
            let fresh = match make() {
                Ok(job) => sched.add(job).await.map_err(ScheduleError::from),
                Err(e) => Err(e),
            };
            match fresh {
                Ok(new) => {
                    if let Err(e) = sched.remove(&id).await {
                        warn!(schedule = what, error = ?e, "the old job was not removed");
                    }
                    id = new;
                }
                Err(e) => warn!(schedule = what, error = %e, "the schedule was not restarted"),
            }
        }
    });
    Ok(Schedule {
        sched,
        watcher: watcher.abort_handle(),
    })
}
