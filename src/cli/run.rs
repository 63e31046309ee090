//! `replisnap run --config F`: the daemon. Starts from the newest stored snapshot when
//! there is one (warm restart), follows the master, takes snapshots on schedule into
//! storage with retention, and stops cleanly on SIGTERM/SIGINT.
//!
//! Owns the wiring and the lifetime of the parts, not their logic: the replica runs on its
//! own thread, the snapshot writer on another, and the schedule and signal handling on a
//! current-thread tokio runtime on the main thread (the HTTP server will join it there).
//! It must never exit 0 after a part failed, and never leave the replica thread running
//! when it returns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::{info, warn};

use crate::config::Config;
use crate::replication::tls::TlsSettings;
use crate::replication::{Replica, Settings};
use crate::resp::Limits;
use crate::retention::Policy;
use crate::snapshot::{schedule, warm, Options, SnapshotEvents, Snapshotter};
use crate::storage::Storage;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, value_name = "F")]
    pub config: PathBuf,
}

/// The replica's settings from the config.
pub(crate) fn replica_settings(cfg: &Config) -> Result<Settings> {
    Ok(Settings {
        address: cfg.source.address.clone(),
        username: cfg.source.username.clone(),
        password: cfg.source_password()?,
        announce_port: cfg.replica.announce_port,
        psync_command: cfg
            .source
            .psync_command
            .clone()
            .unwrap_or_else(|| "PSYNC".into()),
        connect_timeout: Duration::from_secs(10),
        tls: cfg.source.tls.as_ref().map(|t| TlsSettings {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
    })
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let cfg = Config::load(&a.config)?;
    init_logging();
    let shown = a.config.display().to_string();
    let settings = replica_settings(&cfg)?;
    // Everything that can be refused is refused before attaching to the master.
    schedule::validate(&cfg.snapshot.schedule, cfg.snapshot.timezone.as_deref())
        .with_context(|| shown.clone())?;
    let retention = cfg
        .retention
        .as_ref()
        .map(Policy::from_config)
        .transpose()
        .with_context(|| shown.clone())?;
    let storage: Option<Arc<dyn Storage>> = match &cfg.storage {
        Some(s) => Some(Arc::from(
            crate::storage::open(s).with_context(|| shown.clone())?,
        )),
        None => {
            warn!("no [storage] section: replicating only, no snapshots");
            None
        }
    };
    info!(address = %settings.address, version = env!("CARGO_PKG_VERSION"), "replisnap starting");

    // One writer per storage: a second daemon refuses here, naming the holder.
    if let Some(s) = &storage {
        s.claim().with_context(|| s.describe())?;
    }
    let restored = match &storage {
        Some(s) => warm::cleanup_and_restore(s.as_ref())
            .with_context(|| format!("{}: startup cleanup", s.describe()))?,
        None => None,
    };
    let (mut replica, handle) = match restored {
        Some(r) => {
            if r.source_address != settings.address {
                // Not refused: a master moved to a new address keeps its replication ID,
                // and PSYNC decides (a foreign ID just means a full sync).
                warn!(
                    id = %r.id, snapshot_source = %r.source_address, configured = %settings.address,
                    "the stored snapshot came from another address; the master decides whether it continues"
                );
            }
            info!(id = %r.id, "resuming from the stored snapshot");
            Replica::with_preload(settings, r.preload)
        }
        None => Replica::new(settings),
    };
    replica.set_limits(Limits {
        max_command_bytes: cfg.replica.max_command_bytes,
        ..Limits::default()
    });
    let replica_thread = std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || replica.run())
        .context("cannot start the replica thread")?;

    let metrics = Arc::new(crate::metrics::Metrics::new().context("cannot set up the metrics")?);
    let events: Arc<dyn SnapshotEvents> =
        Arc::new(super::run_observe::MetricsEvents(metrics.clone()));
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
            .context("cannot start the snapshot writer thread")?,
        ),
        None => None,
    };

    // HTTP on its own thread and runtime: /metrics, /healthz, /readyz, POST /snapshot.
    let control = Arc::new(super::run_observe::DaemonControl {
        handle: handle.clone(),
        snapshotter: snapshotter.clone(),
    });
    let http = crate::http::serve(cfg.http.listen, metrics.clone(), control)
        .with_context(|| format!("{shown}: [http] listen"))?;
    let poller = super::run_observe::spawn_poller(
        handle.clone(),
        metrics.clone(),
        cfg.source.address.clone(),
        cfg.source.username.clone(),
        cfg.source_password()?,
        cfg.source.tls.is_some(),
    )
    .context("cannot start the metrics poller")?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
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
        let ended = until_signal_or(|| replica_thread.is_finished()).await?;
        if let Some(s) = sched.as_mut() {
            if let Err(e) = s.shutdown().await {
                warn!(error = ?e, "scheduler shutdown");
            }
        }
        anyhow::Ok(ended)
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
    http.shutdown();
    let _ = poller.join();
    if !replica_ok || matches!(ended, Ended::Part) {
        anyhow::bail!("the replica thread failed");
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

enum Ended {
    Signal(&'static str),
    Part,
}

/// Wait for SIGTERM or SIGINT, or for `done()` to turn true (checked every 100 ms).
async fn until_signal_or(mut done: impl FnMut() -> bool) -> Result<Ended> {
    use tokio::signal::unix::{signal, SignalKind};
    let got: Arc<std::sync::Mutex<Option<&'static str>>> = Arc::default();
    let seen = Arc::new(AtomicBool::new(false));
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut s = signal(kind).with_context(|| format!("cannot handle {name}"))?;
        let (got, seen) = (got.clone(), seen.clone());
        tokio::spawn(async move {
            if s.recv().await.is_some() {
                if let Ok(mut g) = got.lock() {
                    g.get_or_insert(name);
                }
                seen.store(true, Ordering::Release);
            }
        });
    }
    loop {
        if seen.load(Ordering::Acquire) {
            let name = got.lock().ok().and_then(|g| *g).unwrap_or("signal");
            return Ok(Ended::Signal(name));
        }
        if done() {
            return Ok(Ended::Part);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs to stderr (journald picks them up under systemd); `RUST_LOG` sets the level.
/// Colours only on a terminal: journald and log files get plain `key=value` fields.
fn init_logging() {
    use std::io::IsTerminal;
    // The scheduler crate logs its own start-up steps at info; they say nothing to an operator.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
