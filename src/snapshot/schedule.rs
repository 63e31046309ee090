//! The snapshot schedule: `[snapshot] schedule` (cron with a seconds field) in UTC or in
//! `[snapshot] timezone`, run by tokio-cron-scheduler on the daemon's tokio runtime.
//!
//! Owns turning ticks into [`Snapshotter::take`] calls. A tick while a snapshot runs, or
//! before the first full sync, is skipped and logged, never queued: snapshots never
//! overlap and a late one would not be at the scheduled time anyway. It must never call
//! `take` on the runtime's own thread (it blocks for the capture): ticks go through
//! `spawn_blocking`. [`check`] holds the cron and zone rules every schedule of the config
//! follows (`[verify] schedule` too), so they cannot drift apart.

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

/// Start the schedule on the current tokio runtime. Keep the returned scheduler and call
/// `shutdown` on it when stopping.
pub async fn start(
    snapshotter: Snapshotter,
    expr: &str,
    zone_name: Option<&str>,
) -> Result<JobScheduler, ScheduleError> {
    let tz = zone(zone_name)?;
    let job = Job::new_async_tz(expr, tz, move |_, _| {
        let s = snapshotter.clone();
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
        expr: expr.to_string(),
    })?;
    let sched = JobScheduler::new().await?;
    sched.add(job).await?;
    sched.start().await?;
    info!(schedule = %expr, timezone = %tz, "snapshot schedule started");
    Ok(sched)
}
