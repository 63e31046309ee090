//! The daemon for a cluster (`[source] cluster = true`): discovers the shards from the seed
//! (`source.address`), runs one shard pipeline per shard primary (`shard.rs`: replica,
//! snapshot writer and storage under `shards/<slots>/`), one HTTP server whose metrics are
//! labelled by shard, and one schedule whose ticks take snapshot sets (`sets.rs`).
//!
//! Owns the wiring and the shutdown order of a cluster daemon, as `mod.rs` does for one
//! master: every check that can refuse, then the HTTP port, then each shard's storage
//! (claimed, cleaned, newest snapshot loaded), and only then the shards' replicas. Shards
//! are discovered once at start; each follows its primary across failovers on its own. It
//! must never return `Ok` after a shard failed, and never leave a replica thread running.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::error::DaemonError;
use super::notify;
use super::observe::DaemonControl;
use super::sets::{Member, Scheduled, SetTaker};
use super::shard::{self, ShardPipeline, ShardSpec};
use super::signals::{Ended, Stop};
use super::start;
use crate::cluster::{self as topology, ClusterSettings, ShardFollower};
use crate::config::Config;
use crate::heartbeat::Heartbeat;
use crate::http::{Control, SnapshotRequestError, SnapshotStatus};
use crate::metrics::Metrics;
use crate::snapshot::schedule::{self, Taker};
use crate::snapshot::{Reason, TakeError};

/// `/readyz`, `POST /snapshot` and `/metrics` over every shard.
struct ClusterControl {
    shards: Vec<(String, Arc<DaemonControl>)>,
    sets: Option<SetTaker>,
    metrics: Arc<Metrics>,
    missing: Vec<(u16, u16)>,
}

impl Control for ClusterControl {
    fn ready(&self) -> Result<(), String> {
        if !self.missing.is_empty() {
            return Err(format!(
                "the cluster's slot map is incomplete (no shard owns {:?})",
                self.missing
            ));
        }
        let not: Vec<String> = self
            .shards
            .iter()
            .filter_map(|(n, c)| c.ready().err().map(|why| format!("shard {n}: {why}")))
            .collect();
        if not.is_empty() {
            Ok(())
        } else {
            Err(not.join("; "))
        }
    }

    fn request_snapshot(&self) -> Result<String, SnapshotRequestError> {
        let Some(t) = &self.sets else {
            return Err(SnapshotRequestError::Other(
                "no [storage] configured: snapshots are off".into(),
            ));
        };
        match t.take(Reason::Api) {
            Ok(id) => Ok(id),
            Err(TakeError::Busy(id)) => Err(SnapshotRequestError::Busy { running: Some(id) }),
            Err(TakeError::NotReady(why)) => Err(SnapshotRequestError::NotReady(why)),
            Err(e) => Err(SnapshotRequestError::Other(e.to_string())),
        }
    }

    fn snapshot_status(&self, id: &str) -> Option<SnapshotStatus> {
        self.sets.as_ref()?.status(id)
    }

    fn render_metrics(&self) -> Option<String> {
        let shards: Vec<&Metrics> = self
            .shards
            .iter()
            .map(|(_, c)| c.metrics.as_ref())
            .collect();
        Some(self.metrics.render_all(&shards))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NoInstance(String);

#[derive(Debug, thiserror::Error)]
#[error("source.address {seed}: cluster discovery")]
struct Discovery {
    seed: String,
    #[source]
    source: topology::ClusterError,
}

/// Run the cluster daemon with `cfg` (validated, `source.cluster` set) until SIGTERM/SIGINT
/// or until a shard's replica thread ends. `file` names the config file in errors.
///
/// The shards run in rounds: a round discovers the cluster and runs one pipeline per
/// shard; when the watcher sees the topology change (a shard's slots changed, a shard
/// appeared or went), every shard is stopped as for SIGTERM (checkpoints written, so an
/// unchanged shard resumes with a partial resync) and the next round starts from a
/// fresh discovery.
pub fn run(cfg: &Config, file: &str) -> Result<(), DaemonError> {
    let sd = notify::Systemd::from_env();
    let checked = start::check(cfg, file)?;
    let settings = ClusterSettings {
        seeds: vec![cfg.source.address.clone()],
        username: checked.settings.username.clone(),
        password: checked.settings.password.clone(),
        tls: checked.settings.tls.clone(),
        timeout: Duration::from_secs(5),
    };
    info!(seed = %cfg.source.address, version = env!("CARGO_PKG_VERSION"),
        "replisnap starting for a cluster");
    let metrics = Arc::new(Metrics::new().map_err(DaemonError::Metrics)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::start("tokio runtime"))?;
    let stop = {
        let _in_rt = rt.enter();
        Stop::install()?
    };
    let mut round = 0u64;
    loop {
        round += 1;
        let r = Round {
            cfg,
            file,
            sd: &sd,
            http_token: checked.http_token.clone(),
            settings: &settings,
            metrics: &metrics,
            rt: &rt,
            stop: &stop,
        };
        match r.run(round)? {
            Outcome::Stopped => return Ok(()),
            Outcome::Changed(why) => {
                info!(change = %why, "cluster topology changed: the shards start again from a new discovery");
                sd.status(&format!(
                    "cluster topology changed ({why}); restarting the shards"
                ));
            }
        }
    }
}

/// How a round ended.
enum Outcome {
    /// SIGTERM/SIGINT: every shard stopped cleanly.
    Stopped,
    /// The topology changed: start a new round.
    Changed(String),
}

/// What a round needs from the process.
struct Round<'a> {
    cfg: &'a Config,
    file: &'a str,
    sd: &'a notify::Systemd,
    http_token: Option<String>,
    settings: &'a ClusterSettings,
    metrics: &'a Arc<Metrics>,
    rt: &'a tokio::runtime::Runtime,
    stop: &'a Stop,
}

/// Shard names and missing slots: what a topology change is judged on.
fn shape(t: &topology::Topology) -> (Vec<String>, Vec<(u16, u16)>) {
    let mut names: Vec<String> = t.shards.iter().map(|s| s.name()).collect();
    names.sort();
    (names, t.missing_slots())
}

/// Re-discover every `every`; set `changed` (with why) when the shape differs from
/// `known`. A discovery that fails changes nothing (the shards' links report their own
/// troubles); the thread ends when `done` is set.
fn spawn_watcher(
    settings: ClusterSettings,
    known: (Vec<String>, Vec<(u16, u16)>),
    every: Duration,
    changed: Arc<std::sync::Mutex<Option<String>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    std::thread::Builder::new()
        .name("cluster-watch".into())
        .spawn(move || {
            let mut next = std::time::Instant::now() + every;
            while !done.load(Ordering::Relaxed) {
                if std::time::Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                next = std::time::Instant::now() + every;
                match topology::discover(&settings) {
                    Ok(t) => {
                        let now = shape(&t);
                        // A shard with no primary for a moment (a failover) keeps its
                        // slots' owner unknown: wait for a settled map before acting.
                        if now != known && now.1.is_empty() {
                            let why = format!("shards {:?} -> {:?}", known.0, now.0);
                            *changed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cluster re-discovery failed"),
                }
            }
        })
}

impl Round<'_> {
    fn run(self, round: u64) -> Result<Outcome, DaemonError> {
        let Round {
            cfg,
            file,
            sd,
            http_token,
            settings,
            metrics,
            rt,
            stop,
        } = self;
        let sd = sd.clone();
        let metrics = metrics.clone();
        let settings = settings.clone();
        let instance = match (cfg.source.cluster_instances, cfg.source.cluster_instance) {
            (Some(n), Some(k)) => Some((k, n)),
            (Some(n), None) => {
                return Err(DaemonError::config(
                    file,
                    NoInstance(format!(
                        "source.cluster_instances = {n} needs this process's instance: \
                     source.cluster_instance or `run --instance K`"
                    )),
                ));
            }
            _ => None,
        };
        let topo = topology::discover(&settings).map_err(|source| {
            DaemonError::config(
                file,
                Discovery {
                    seed: cfg.source.address.clone(),
                    source,
                },
            )
        })?;
        // Judged on the whole cluster, before this instance keeps its share.
        let missing = topo.missing_slots();
        let full_shape = shape(&topo);
        let mut topo = topo;
        if let Some((k, n)) = instance {
            let all = topo.shards.len();
            topo.shards = std::mem::take(&mut topo.shards)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % n == k)
                .map(|(_, s)| s)
                .collect();
            info!(
                instance = k,
                instances = n,
                shards = topo.shards.len(),
                of = all,
                "this instance's shards (index in slot order modulo instances)"
            );
        }
        if !missing.is_empty() {
            warn!(missing = ?missing, "no shard owns some slots: snapshot sets stay incomplete");
        }
        for s in &topo.shards {
            info!(shard = %s.name(), primary = %s.primary.address, replicas = s.replicas.len(),
            "cluster shard");
        }
        let root = start::open_storage(cfg, file)?;
        let mut prepared = Vec::new();
        for s in &topo.shards {
            let follower = ShardFollower::new(settings.clone(), s);
            prepared.push(shard::prepare(
                cfg,
                file,
                ShardSpec {
                    name: s.name(),
                    slots: s.slots.clone(),
                    primary: s.primary.address.clone(),
                    resolver: Box::new(move || follower.primary().map_err(|e| e.to_string())),
                },
            )?);
        }
        let sets = root.as_ref().map(|root| {
            let members = prepared
                .iter()
                .filter_map(|p| {
                    Some(Member {
                        name: p.spec_name.clone(),
                        slots: p.slots.clone(),
                        primary: p.primary.clone(),
                        snapshotter: p.snapshotter.clone()?,
                        storage: p.storage.clone()?,
                        status: p.handle.status.clone(),
                    })
                })
                .collect();
            SetTaker::new(
                root.clone(),
                members,
                missing.clone(),
                Duration::from_secs(cfg.snapshot.timeout),
                instance,
            )
        });
        let control = Arc::new(ClusterControl {
            shards: prepared
                .iter()
                .map(|p| (p.spec_name.clone(), p.control.clone()))
                .collect(),
            sets: sets.clone(),
            metrics: metrics.clone(),
            missing: missing.clone(),
        });
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
        // Shards start one by one: a refusal (a held storage) stops those already started.
        let mut shards: Vec<ShardPipeline> = Vec::new();
        for p in prepared {
            sd.status(&format!("claiming the storage of shard {}", p.spec_name));
            match p.start() {
                Ok(s) => shards.push(s),
                Err(e) => {
                    stop_all(shards, false);
                    http.shutdown();
                    return Err(e);
                }
            }
        }
        let scheduled = sets.clone().map(Scheduled::new);
        let changed = Arc::new(std::sync::Mutex::new(None::<String>));
        let watch_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = spawn_watcher(
            settings.clone(),
            full_shape,
            Duration::from_secs(cfg.source.cluster_refresh_seconds()),
            changed.clone(),
            watch_done.clone(),
        )
        .map_err(DaemonError::start("cluster watcher"))?;
        let main_beat = Arc::new(Heartbeat::default());
        let reporter = shards.first().map(|first| {
            let mut r = notify::Reporter::new(
                first.handle.status.clone(),
                format!(
                    "{} (shard {} of {})",
                    first.primary,
                    first.name,
                    shards.len()
                ),
                first.metrics.clone(),
                first.snapshotter.clone(),
            );
            for s in &shards {
                r.watch_pipeline(
                    ("shard replica", "shard snapshot writer"),
                    s.handle.status.heartbeat.clone(),
                    s.snapshotter.as_ref(),
                    Duration::from_secs(cfg.snapshot.timeout),
                );
            }
            r.watch("main loop", notify::MAIN_BOUND, main_beat.clone());
            r
        });
        let ended = rt.block_on(async {
            let mut sched = schedule::start_for(
                scheduled.as_ref(),
                &cfg.snapshot.schedule,
                cfg.snapshot.timezone.as_deref(),
            )
            .await?;
            main_beat.set_busy(true);
            sd.ready(&format!(
                "started, cluster of {} shards via {} (round {round})",
                shards.len(),
                cfg.source.address
            ));
            let notifier = match reporter {
                Some(r) => notify::Notifier::start(sd.clone(), r)
                    .map_err(DaemonError::start("systemd notifier"))?,
                None => None,
            };
            let ended = stop
                .until_or(|| {
                    main_beat.beat();
                    shards.iter().any(ShardPipeline::ended)
                        || changed.lock().map(|c| c.is_some()).unwrap_or(false)
                })
                .await;
            main_beat.set_busy(false);
            if let Some(n) = notifier {
                n.shutdown();
            }
            sd.stopping("stopping: every shard's replica, then its writer");
            if let Some(s) = sched.as_mut() {
                if let Err(e) = s.shutdown().await {
                    warn!(error = ?e, "scheduler shutdown");
                }
            }
            Ok::<_, DaemonError>(ended)
        })?;
        if let Some(s) = &scheduled {
            s.close();
        }
        watch_done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = watcher.join();
        let change = changed.lock().ok().and_then(|mut c| c.take());
        let any_ended = shards.iter().any(ShardPipeline::ended);
        // A topology change stops the shards as a signal does: checkpoints written.
        let signalled = matches!(ended, Ended::Signal(_)) || (change.is_some() && !any_ended);
        match ended {
            Ended::Signal(name) => info!(signal = name, "stopping every shard"),
            Ended::Part if any_ended => warn!("a shard's replica thread ended by itself; stopping"),
            Ended::Part => info!("stopping every shard for a new discovery"),
        }
        // A set being completed waits for its shards' writers, which finish their snapshots.
        if let Some(id) = sets.as_ref().and_then(SetTaker::running) {
            info!(set = %id, "finishing the snapshot set");
        }
        let all_ok = stop_all(shards, signalled);
        if let Some(t) = &sets {
            t.wait_idle(Duration::from_secs(cfg.snapshot.timeout));
        }
        http.shutdown();
        if !all_ok || !signalled {
            return Err(DaemonError::ReplicaFailed);
        }
        match (ended, change) {
            (Ended::Part, Some(why)) => Ok(Outcome::Changed(why)),
            _ => {
                info!("stopped");
                Ok(Outcome::Stopped)
            }
        }
    }
}

/// Stop every shard: all replicas are asked first (they stop together), then each is
/// finished. Whether every replica thread ended cleanly.
fn stop_all(shards: Vec<ShardPipeline>, signalled: bool) -> bool {
    for s in &shards {
        s.ask_stop();
    }
    let mut ok = true;
    for s in shards {
        ok &= s.finish(signalled);
    }
    ok
}
