//! One shard of a cluster daemon: the single-master parts (replica, snapshot writer,
//! storage, checkpoints, metrics poller) for one shard primary, under the shard's own
//! storage prefix (`shards/<name>/`) and state directory, with metrics labelled by shard.
//!
//! Owns deriving a shard's config from the daemon's and the lifetime of that shard's
//! threads. The parts are the ones `replisnap run` uses for one master, started in the same
//! order ("refuse, then claim, then clean, then load, then contact the master"): a shard is
//! an ordinary replisnap of one master whose address is asked of the cluster before every
//! connection, so it follows failovers. It must never contact the master before its storage
//! is claimed, and never leave its replica thread running after [`ShardPipeline::stop`].

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::info;

use super::error::DaemonError;
use super::observe::{self, DaemonControl, MetricsEvents};
use super::start;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::replication::{Replica, ReplicaHandle, Settings};
use crate::snapshot::checkpoint::CheckpointDir;
use crate::snapshot::{Options, Snapshotter};
use crate::storage::set::{self, shard_prefix};
use crate::storage::Storage;

/// Where a shard is and how to find its primary again.
pub struct ShardSpec {
    /// The storage name (slot ranges, "0-5460").
    pub name: String,
    pub slots: Vec<(u16, u16)>,
    /// The primary at discovery.
    pub primary: String,
    /// Asked before every connection for the shard's current primary.
    pub resolver: Box<dyn Fn() -> Result<String, String> + Send>,
}

/// The config one shard runs with: the primary as source, the storage and the state
/// directory one level down (`shards/<name>/`).
pub fn shard_config(cfg: &Config, name: &str, primary: &str) -> Config {
    let mut c = cfg.clone();
    c.source.address = primary.to_string();
    c.source.cluster = false;
    c.replica.state_dir = cfg.replica.state_dir.join(shard_prefix(name));
    c.storage = cfg.storage.as_ref().map(|s| set::shard_storage(s, name));
    c
}

/// A shard whose parts are built but whose replica has not contacted its primary yet.
pub struct Prepared {
    pub spec_name: String,
    pub slots: Vec<(u16, u16)>,
    pub primary: String,
    cfg: Config,
    settings: Settings,
    replica: Replica,
    pub handle: ReplicaHandle,
    pub storage: Option<Arc<dyn Storage>>,
    pub snapshotter: Option<Snapshotter>,
    pub metrics: Arc<Metrics>,
    pub control: Arc<DaemonControl>,
    writer_stuck: Arc<AtomicU64>,
    checkpoints: CheckpointDir,
}

/// A running shard.
pub struct ShardPipeline {
    pub name: String,
    pub primary: String,
    pub handle: ReplicaHandle,
    pub snapshotter: Option<Snapshotter>,
    pub metrics: Arc<Metrics>,
    cfg: Config,
    checkpoints: CheckpointDir,
    thread: Option<JoinHandle<Replica>>,
    poller: Option<JoinHandle<()>>,
}

/// Build a shard's parts (no thread that touches the master yet; the storage is opened,
/// not claimed). `file` names the config file in errors.
pub fn prepare(cfg: &Config, file: &str, spec: ShardSpec) -> Result<Prepared, DaemonError> {
    let scfg = shard_config(cfg, &spec.name, &spec.primary);
    let checked = start::check(&scfg, file)?;
    std::fs::create_dir_all(&scfg.replica.state_dir)
        .map_err(DaemonError::start("shard state dir"))?;
    let checkpoints = start::open_checkpoints(&scfg, file)?;
    let storage = start::open_storage(&scfg, file)?;
    let (mut replica, handle) = start::replica(&scfg, checked.settings.clone(), None);
    replica.set_resolver(spec.resolver);
    let metrics = Arc::new(Metrics::for_shard(&spec.name).map_err(DaemonError::Metrics)?);
    let snapshotter = match &storage {
        Some(s) => Some(
            Snapshotter::start(
                handle.clone(),
                s.clone(),
                Options {
                    address: spec.primary.clone(),
                    compress: scfg.snapshot.rdb_compression,
                    retention: checked.retention.clone(),
                },
                Arc::new(MetricsEvents(metrics.clone())),
            )
            .map_err(DaemonError::start("shard snapshot writer thread"))?,
        ),
        None => None,
    };
    let writer_stuck = Arc::new(AtomicU64::new(0));
    let control = Arc::new(DaemonControl {
        handle: handle.clone(),
        snapshotter: snapshotter.clone(),
        metrics: metrics.clone(),
        master_timeout: scfg.source.timeout(),
        ready_max_lag: scfg.http.ready_max_lag,
        writer_stuck: writer_stuck.clone(),
        waiting: Default::default(),
    });
    Ok(Prepared {
        spec_name: spec.name,
        slots: spec.slots,
        primary: spec.primary,
        cfg: scfg,
        settings: checked.settings,
        replica,
        handle,
        storage,
        snapshotter,
        metrics,
        control,
        writer_stuck,
        checkpoints,
    })
}

impl Prepared {
    /// Claim the shard's storage, load its newest snapshot (warm restart), then start the
    /// replica and the poller: from here the shard's primary is contacted.
    pub fn start(mut self) -> Result<ShardPipeline, DaemonError> {
        start::claim_and_restore(
            self.storage.as_deref(),
            &self.checkpoints,
            &mut self.replica,
            &self.primary,
        )?;
        let replica = self.replica;
        let thread = std::thread::Builder::new()
            .name(format!("replica-{}", self.spec_name))
            .spawn(move || replica.run_to_stop())
            .map_err(DaemonError::start("shard replica thread"))?;
        let watch = self.snapshotter.as_ref().map(|s| observe::WriterWatch {
            heartbeat: s.heartbeat(),
            bound: std::time::Duration::from_secs(self.cfg.snapshot.timeout),
            stuck: self.writer_stuck.clone(),
            storage: self.storage.clone(),
        });
        let poller = observe::spawn_poller(
            self.handle.clone(),
            self.metrics.clone(),
            self.settings,
            watch,
        )
        .map_err(DaemonError::start("shard metrics poller"))?;
        info!(shard = %self.spec_name, primary = %self.primary, "shard started");
        Ok(ShardPipeline {
            name: self.spec_name,
            primary: self.primary,
            handle: self.handle,
            snapshotter: self.snapshotter,
            metrics: self.metrics,
            cfg: self.cfg,
            checkpoints: self.checkpoints,
            thread: Some(thread),
            poller: Some(poller),
        })
    }
}

impl ShardPipeline {
    /// Whether the replica thread ended by itself (it only ends when asked).
    pub fn ended(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Ask the replica to stop (between two commands); [`ShardPipeline::finish`] waits.
    pub fn ask_stop(&self) {
        self.handle.stop();
    }

    /// Wait for the replica, finish the snapshot being written, write the shutdown
    /// checkpoint when configured and `signalled`. Returns whether the replica thread
    /// ended cleanly.
    pub fn finish(mut self, signalled: bool) -> bool {
        self.handle.stop();
        let stopped = self.thread.take().map(|t| t.join());
        if let Some(s) = &self.snapshotter {
            s.shutdown();
        }
        let ok = matches!(stopped, Some(Ok(_)));
        if let (Some(Ok(mut replica)), true) = (stopped, signalled) {
            if self.cfg.replica.checkpoint_on_shutdown {
                super::checkpoint::write_checkpoint(&self.checkpoints, &mut replica, &self.primary);
            }
        }
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
        ok
    }
}
