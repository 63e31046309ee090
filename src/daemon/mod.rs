//! The daemon (`replisnap run`), assembled: starts from the newest stored snapshot when
//! there is one (warm restart), follows the master, takes snapshots on schedule into
//! storage with retention, verifies the newest one on its own schedule, serves HTTP and
//! metrics, and stops cleanly on SIGTERM/SIGINT.
//!
//! Owns the wiring and the lifetime of the parts, not their logic, and the shutdown order:
//! the replica runs on its own thread, the snapshot writer on another, HTTP and the metrics
//! poller and the scheduled verification on theirs, and the schedules and signal handling
//! on a current-thread tokio runtime on the calling thread. The files beside this one are
//! leaves: `start.rs` (checks, storage, warm restart), `observe.rs` (HTTP control, metric
//! events, the master-offset poller), `verify.rs` (`[verify] schedule`), `signals.rs` (the
//! wait for a stop), `error.rs` ([`DaemonError`]). It must never return `Ok` after a part
//! failed, never leave the replica thread running when it returns after a stop, and never
//! parse arguments or set up logging (the `run` verb does).

mod error;
mod observe;
mod signals;
mod start;
mod verify;

use std::sync::Arc;

use tracing::{info, warn};

pub use error::DaemonError;
use signals::Ended;

use crate::config::Config;
use crate::snapshot::{schedule, Options, SnapshotEvents, Snapshotter};

/// Run the daemon with `cfg` (already loaded and validated) until SIGTERM/SIGINT or until
/// the replica thread ends. `file` names the config file in errors.
pub fn run(cfg: &Config, file: &str) -> Result<(), DaemonError> {
    let start::Prepared {
        replica,
        handle,
        storage,
        retention,
        verify: verify_schedule,
    } = start::prepare(cfg, file)?;
    let replica_thread = std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || replica.run())
        .map_err(DaemonError::start("replica thread"))?;

    let metrics = Arc::new(crate::metrics::Metrics::new().map_err(DaemonError::Metrics)?);
    let events: Arc<dyn SnapshotEvents> = Arc::new(observe::MetricsEvents(metrics.clone()));
    // Config validation guarantees storage when [verify] is set.
    let verifier = match (&verify_schedule, &storage) {
        (Some(_), Some(s)) => Some(Arc::new(
            verify::Verifier::start(s.clone(), metrics.clone())
                .map_err(DaemonError::start("verify thread"))?,
        )),
        _ => None,
    };
    let snapshotter = match storage {
        Some(storage) => Some(
            Snapshotter::start(
                handle.clone(),
                storage,
                Options {
                    address: cfg.source.address.clone(),
                    compress: cfg.snapshot.rdb_compression,
                    retention,
                },
                events,
            )
            .map_err(DaemonError::start("snapshot writer thread"))?,
        ),
        None => None,
    };

    // HTTP on its own thread and runtime: /metrics, /healthz, /readyz, POST /snapshot.
    let control = Arc::new(observe::DaemonControl {
        handle: handle.clone(),
        snapshotter: snapshotter.clone(),
    });
    let http = crate::http::serve(cfg.http.listen, metrics.clone(), control).map_err(|source| {
        DaemonError::Listen {
            file: file.to_string(),
            source,
        }
    })?;
    let poller = observe::spawn_poller(
        handle.clone(),
        metrics.clone(),
        cfg.source.address.clone(),
        cfg.source.username.clone(),
        cfg.source_password()?,
        cfg.source.tls.is_some(),
    )
    .map_err(DaemonError::start("metrics poller"))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::start("tokio runtime"))?;
    let ended = rt.block_on(async {
        let mut sched = match &snapshotter {
            Some(s) => Some(
                schedule::start(
                    s.clone(),
                    &cfg.snapshot.schedule,
                    cfg.snapshot.timezone.as_deref(),
                )
                .await?,
            ),
            None => None,
        };
        let mut verify_sched = match (&verifier, &verify_schedule) {
            (Some(v), Some((expr, tz))) => {
                Some(verify::start_schedule(v.clone(), expr, *tz).await?)
            }
            _ => None,
        };
        let ended = signals::until_signal_or(|| replica_thread.is_finished()).await?;
        for s in [sched.as_mut(), verify_sched.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = s.shutdown().await {
                warn!(error = ?e, "scheduler shutdown");
            }
        }
        Ok::<_, DaemonError>(ended)
    })?;
    match ended {
        Ended::Signal(name) => info!(signal = name, "stopping: replica first, then the writer"),
        Ended::Part => warn!("the replica thread ended by itself; stopping"),
    }
    // The replica stops between two commands and closes its link; a snapshot being
    // written goes on from its capture (it does not need the replica) and is finished,
    // so nothing half-done is left for the next start to clean.
    handle.stop();
    let replica_ok = replica_thread.join().is_ok();
    if let Some(s) = &snapshotter {
        s.shutdown();
    }
    // A verification still reading is abandoned at its next read (and not counted).
    if let Some(v) = &verifier {
        v.shutdown();
    }
    http.shutdown();
    let _ = poller.join();
    if !replica_ok || matches!(ended, Ended::Part) {
        return Err(DaemonError::ReplicaFailed);
    }
    info!("stopped");
    Ok(())
}
