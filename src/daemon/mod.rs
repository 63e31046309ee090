//! The daemon (`replisnap run`), assembled: starts from the newest stored snapshot when
//! there is one (warm restart), follows the master, takes snapshots on schedule into
//! storage with retention, verifies the newest one on its own schedule, serves HTTP and
//! metrics, and stops cleanly on SIGTERM/SIGINT.
//!
//! Owns the wiring and the lifetime of the parts, not their logic, and the shutdown order:
//! the replica runs on its own thread, the snapshot writer on another, HTTP and the metrics
//! poller and the scheduled verification on theirs, and the schedules and signal handling
//! on a current-thread tokio runtime on the calling thread. The files beside this one are
//! leaves: `start.rs` (checks, storage, warm restart), `claim.rs` (waiting for another
//! writer's lease, `[storage] lease_wait_seconds`), `observe.rs` (HTTP control, metric
//! events, the master-offset poller), `verify.rs` (`[verify] schedule`), `hooks.rs`
//! (`[notify]`: the heartbeat URL and the hooks after each snapshot), `notify.rs`
//! (systemd: READY, STATUS, the watchdog fed by the parts' heartbeats, STOPPING),
//! `signals.rs` (the wait for a stop), `error.rs` ([`DaemonError`]). On SIGTERM, once the
//! replica stopped and the writer finished, the stopped replica's data is written as the
//! shutdown checkpoint (`[replica] checkpoint_on_shutdown`). It must never return
//! `Ok` after a part failed, never leave the replica thread running when it returns after
//! a stop, never contact the master before the HTTP port and the storage are taken, and
//! never parse arguments or set up logging (the `run` verb does).

mod checkpoint;
mod claim;
mod cluster;
mod error;
mod hooks;
mod notify;
mod observe;
mod sets;
mod shard;
mod signals;
mod start;
mod verify;

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

pub use error::DaemonError;
use signals::{Ended, Stop};
pub use start::{check, Checked};

use crate::config::Config;
use crate::heartbeat::Heartbeat;
use crate::snapshot::{schedule, Options, SnapshotEvents, Snapshotter};

/// Run the daemon with `cfg` (already loaded and validated) until SIGTERM/SIGINT or until
/// the replica thread ends. `file` names the config file in errors.
///
/// The order is the contract of a start: every check that can refuse the config, then the
/// HTTP port, then the storage (claimed, cleaned, its newest snapshot loaded), and only
/// then the replica thread, the first thing to touch the master: a daemon that cannot
/// start never costs the master a sync. systemd hears `READY=1` when the replica thread and
/// the schedules run (not after the first sync: `STATUS=` says how that goes).
pub fn run(cfg: &Config, file: &str) -> Result<(), DaemonError> {
    if cfg.source.cluster {
        return cluster::run(cfg, file);
    }
    let sd = notify::Systemd::from_env();
    let Checked {
        settings,
        retention,
        verify: verify_schedule,
        http_token,
        sentinel,
    } = start::check(cfg, file)?;
    let address = settings.address.clone();
    let poll_settings = settings.clone();
    info!(address = %address, version = env!("CARGO_PKG_VERSION"), "replisnap starting");
    let storage = start::open_storage(cfg, file)?;
    let (mut replica, handle) = start::replica(cfg, settings, sentinel);

    let metrics = Arc::new(crate::metrics::Metrics::new().map_err(DaemonError::Metrics)?);
    let metrics_events = observe::MetricsEvents(metrics.clone());
    let events: Arc<dyn SnapshotEvents> = match (&cfg.notify, &storage) {
        (Some(n), Some(s)) => Arc::new(hooks::HookedEvents {
            metrics: Box::new(metrics_events),
            hooks: hooks::Hooks::start(n, metrics.clone(), s.describe(), address.clone())
                .map_err(DaemonError::start("notify hooks thread"))?,
        }),
        _ => Arc::new(metrics_events),
    };
    let snapshotter = match &storage {
        Some(storage) => Some(
            Snapshotter::start(
                handle.clone(),
                storage.clone(),
                Options {
                    address: address.clone(),
                    compress: cfg.snapshot.rdb_compression,
                    retention,
                },
                events,
            )
            .map_err(DaemonError::start("snapshot writer thread"))?,
        ),
        None => None,
    };

    // HTTP first: a taken port refuses the start before storage or the master is touched.
    let waiting = claim::Waiting::default();
    let writer_stuck = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let control = Arc::new(observe::DaemonControl {
        handle: handle.clone(),
        snapshotter: snapshotter.clone(),
        metrics: metrics.clone(),
        master_timeout: cfg.source.timeout(),
        ready_max_lag: cfg.http.ready_max_lag,
        writer_stuck: writer_stuck.clone(),
        waiting: waiting.clone(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::start("tokio runtime"))?;
    // SIGTERM and SIGINT are caught before anything answers: once `/healthz` does, a stop
    // request always ends the daemon cleanly (it used to kill it until the main loop
    // installed the handler, a race the tests saw under load).
    let stop = {
        let _in_rt = rt.enter();
        Stop::install()?
    };
    let http = crate::http::serve_with(
        cfg.http.listen,
        metrics.clone(),
        control,
        crate::http::Options { token: http_token },
    )
    .map_err(|source| DaemonError::Listen {
        file: file.to_string(),
        source,
    })?;
    let checkpoints = start::open_checkpoints(cfg, file)?;
    // `[storage] lease_wait_seconds`: wait for another writer to let go, stoppable.
    let wait = cfg.storage.as_ref().and_then(claim::Wait::from_config);
    if let (Some(s), Some(wait)) = (&storage, wait) {
        let pause = |d: std::time::Duration| {
            let until = Instant::now() + d;
            rt.block_on(async {
                while stop.received().is_none() && Instant::now() < until {
                    let left = until.saturating_duration_since(Instant::now());
                    tokio::time::sleep(left.min(std::time::Duration::from_millis(100))).await;
                }
            });
            stop.received()
        };
        let claimed = claim::claim_waiting(
            s.as_ref(),
            wait,
            &waiting,
            |reason| sd.status(reason),
            pause,
        )
        .map_err(|source| DaemonError::Claim {
            location: s.describe(),
            source,
        })?;
        if let claim::Claimed::Stopped(signal) = claimed {
            info!(
                signal,
                "stopped while waiting for the storage; nothing was written"
            );
            if let Some(s) = &snapshotter {
                s.shutdown();
            }
            http.shutdown();
            return Ok(());
        }
    }
    if let Some(s) = &storage {
        sd.status(&format!(
            "claiming {}, loading its newest snapshot",
            s.describe()
        ));
    }
    start::claim_and_restore(storage.as_deref(), &checkpoints, &mut replica, &address)?;
    // Config validation guarantees storage when [verify] is set.
    let verifier = match (&verify_schedule, &storage) {
        (Some(_), Some(s)) => Some(Arc::new(
            verify::Verifier::start(s.clone(), metrics.clone())
                .map_err(DaemonError::start("verify thread"))?,
        )),
        _ => None,
    };

    // Config validation guarantees storage when [archive] is enabled.
    let archiver = match (cfg.archive.as_ref().filter(|a| a.enabled), &storage) {
        (Some(a), Some(s)) => {
            let settings = crate::archive::Settings {
                segment_seconds: a.segment_seconds,
                segment_bytes: a.segment_bytes,
                state_dir: cfg.replica.state_dir.clone(),
            };
            let (archiver, tap) =
                crate::archive::Archiver::start(s.clone(), settings, Some(metrics.clone()))
                    .map_err(DaemonError::start("archive thread"))?;
            replica.set_stream_sink(tap);
            Some(archiver)
        }
        _ => None,
    };

    // From here on the master is contacted.
    let replica_thread = std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || replica.run_to_stop())
        .map_err(DaemonError::start("replica thread"))?;
    let writer_bound = std::time::Duration::from_secs(cfg.snapshot.timeout);
    let writer_watch = snapshotter.as_ref().map(|s| observe::WriterWatch {
        heartbeat: s.heartbeat(),
        bound: writer_bound,
        stuck: writer_stuck.clone(),
        storage: storage.clone(),
    });
    let poller =
        observe::spawn_poller(handle.clone(), metrics.clone(), poll_settings, writer_watch)
            .map_err(DaemonError::start("metrics poller"))?;
    let main_beat = Arc::new(Heartbeat::default());
    let mut reporter = notify::Reporter::new(
        handle.status.clone(),
        address.clone(),
        metrics.clone(),
        snapshotter.clone(),
    );
    reporter.watch_pipeline(
        ("replica", "snapshot writer"),
        handle.status.heartbeat.clone(),
        snapshotter.as_ref(),
        writer_bound,
    );
    reporter.watch("main loop", notify::MAIN_BOUND, main_beat.clone());

    let ended = rt.block_on(async {
        let mut sched = schedule::start_for(
            snapshotter.as_ref(),
            &cfg.snapshot.schedule,
            cfg.snapshot.timezone.as_deref(),
        )
        .await?;
        let mut verify_sched = match (&verifier, &verify_schedule) {
            (Some(v), Some((expr, tz))) => {
                Some(verify::start_schedule(v.clone(), expr, *tz).await?)
            }
            _ => None,
        };
        main_beat.set_busy(true);
        sd.ready(&format!("started, master {address}"));
        let notifier = notify::Notifier::start(sd.clone(), reporter)
            .map_err(DaemonError::start("systemd notifier"))?;
        let ended = stop
            .until_or(|| {
                main_beat.beat();
                replica_thread.is_finished()
            })
            .await;
        main_beat.set_busy(false);
        // Told first (the status thread ended, so no line overwrites it): systemd stops
        // watching the watchdog and shows why we linger.
        if let Some(n) = notifier {
            n.shutdown();
        }
        sd.stopping(&match snapshotter.as_ref().and_then(|s| s.running()) {
            Some(id) => format!("stopping: finishing snapshot {id}"),
            None => "stopping".into(),
        });
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
    let stopped = replica_thread.join();
    let replica_ok = stopped.is_ok();
    // Everything applied is handed over: the open segment is stored before exit.
    if let Some(a) = archiver {
        sd.status("stopping: storing the stream archive's open segment");
        a.finish();
    }
    if let Some(s) = &snapshotter {
        s.shutdown();
    }
    // A verification still reading is abandoned at its next read (and not counted).
    if let Some(v) = &verifier {
        v.shutdown();
    }
    // The stopped replica's data, between two commands, with no walk left running.
    if let (Ok(mut replica), Ended::Signal(_)) = (stopped, &ended) {
        if cfg.replica.checkpoint_on_shutdown {
            sd.status("stopping: writing the checkpoint");
            checkpoint::write_checkpoint(&checkpoints, &mut replica, &address);
        }
    }
    http.shutdown();
    let _ = poller.join();
    if !replica_ok || matches!(ended, Ended::Part) {
        return Err(DaemonError::ReplicaFailed);
    }
    info!("stopped");
    Ok(())
}
