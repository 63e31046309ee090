//! The permanent replica: attach to the master, full sync, follow the stream, reconnect.
//!
//! Owns the replica's side of the protocol and its state (replication ID, offset, the
//! keyspace it applies to). It runs on one thread with blocking I/O: the apply loop is
//! single-threaded by nature, and a dedicated thread keeps its timing independent of the
//! rest of the daemon. Other threads talk to it through [`ReplicaHandle`]: status
//! (atomics) and requests served between commands (snapshots).
//!
//! It must never leave a half-loaded dataset (a full sync loads into a fresh keyspace that
//! becomes the live one only when complete; the old one, which the master just refused to
//! continue from, is let go when the payload starts), and never drift silently: a command it
//! cannot apply drops the link and asks for a full resync.
//!
//! With `[source] full_sync_from`, full syncs come from a replica of the primary and the
//! link then moves to the primary (`handoff.rs`): the primary must never be sent a PSYNC
//! it would refuse, since a refusal is a fork.

mod capture;
pub mod dualchannel;
mod dualoffer;
mod fullsync;
pub mod handoff;
mod handshake;
pub mod link;
pub mod resolve;
pub mod sentinel;
pub mod status;
mod stream;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

pub use capture::{is_version_aux, Capture, CaptureError};
pub use handshake::PsyncOutcome;
use link::{Link, LinkError};
pub use status::{CommandCounts, IoClock, Phase, Status};

use crate::commands::StreamState;
use crate::keyspace::{Keyspace, Snapshot};
use crate::metrics::LinkErrorReason;
use crate::resp::Limits;
use crate::server_version::ServerVersion;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("full sync: {0}")]
    Sync(#[from] fullsync::SyncError),
    #[error("stream: {0}")]
    Protocol(#[from] crate::resp::RespError),
    #[error("apply: {0}")]
    Apply(String),
    #[error("master silent for longer than [source] timeout")]
    Timeout,
    #[error("stopped")]
    Stopped,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("sentinel: {0}")]
    Sentinel(#[from] sentinel::SentinelError),
    #[error("master address: {0}")]
    Resolve(String),
    #[error("{0}")]
    Handoff(#[from] handoff::HandoffError),
    #[error("dual-channel full sync: {0}")]
    Dual(#[from] dualchannel::DualError),
}

/// The kind a link error is counted under (`link_errors_total{reason}`).
fn link_error_kind(e: &ReplError) -> LinkErrorReason {
    match e {
        ReplError::Link(LinkError::Connect { .. })
        | ReplError::Sentinel(_)
        | ReplError::Resolve(_) => LinkErrorReason::Connect,
        ReplError::Link(LinkError::Tls(_)) => LinkErrorReason::Tls,
        ReplError::Link(LinkError::Protocol(_)) | ReplError::Protocol(_) => {
            LinkErrorReason::Protocol
        }
        ReplError::Handoff(handoff::HandoffError::CannotContinue { .. }) => {
            LinkErrorReason::HandoffRefused
        }
        ReplError::Handshake(_)
        | ReplError::Handoff(_)
        | ReplError::Dual(dualchannel::DualError::Refused { .. }) => LinkErrorReason::Handshake,
        ReplError::Dual(dualchannel::DualError::EndOff(_)) => LinkErrorReason::Protocol,
        ReplError::Sync(_) => LinkErrorReason::FullSync,
        ReplError::Apply(_) => LinkErrorReason::Apply,
        ReplError::Timeout => LinkErrorReason::Timeout,
        _ => LinkErrorReason::Io,
    }
}

/// Where the applied stream is handed, in order (the stream archive). Called on the apply
/// thread: an implementation must never wait on I/O it does not bound.
pub trait StreamSink: Send + Sync {
    /// A full sync loaded data at (`replid`, `offset`): a new history starts.
    fn full_sync(&self, replid: &str, offset: i64);
    /// A partial resync continues from (`replid`, `offset`).
    fn resumed(&self, replid: &str, offset: i64);
    /// `bytes` from `offset` were applied (a transaction whole, at its EXEC).
    fn applied(&self, offset: i64, bytes: &[u8]);
    /// The archive history the applied stream belongs to now, if the sink keeps one.
    fn history(&self) -> Option<String> {
        None
    }
}

/// How to reach and authenticate to the master.
#[derive(Debug, Clone)]
pub struct Settings {
    pub address: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub announce_port: u16,
    pub psync_command: String,
    pub connect_timeout: Duration,
    /// TLS to the master, when configured.
    pub tls: Option<tls::TlsSettings>,
}

/// A snapshot with the replication position it is consistent at and the function
/// libraries of that moment.
pub type SnapshotAt = (Snapshot, String, i64, Vec<Vec<u8>>);

/// A dataset loaded before the replica starts (warm restart), with the replication
/// position it is consistent at.
pub struct Preload {
    pub keyspace: Keyspace,
    pub replid: String,
    pub offset: i64,
    /// `repl-stream-db` of the file.
    pub stream_db: u64,
    pub master_version: Option<ServerVersion>,
    pub master_aux: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) enum Control {
    Capture(Sender<Result<Capture, CaptureError>>),
}

pub struct Replica {
    settings: Settings,
    ks: Keyspace,
    /// Replication ID and offset of the data in `ks`; `None` until a sync gave us data.
    replid: String,
    offset: i64,
    has_data: bool,
    /// The master's server version, as its last full-sync payload said.
    master_version: Option<ServerVersion>,
    /// The version aux fields of that payload, copied into the files we write.
    master_aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// Stream state (selected db, MULTI) carried across a partial resync, as the server's
    /// replica keeps its cached master client: the backlog after our offset holds no
    /// SELECT for a database selected before it.
    stream_state: StreamState,
    /// Data that is consistent at (`replid`, `offset`) exists: snapshots may be taken.
    synced: bool,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    controls: Receiver<Control>,
    /// Size caps on what the master sends (replies and commands), for every link.
    limits: Limits,
    /// Silence after which a link is declared stalled (`[source] timeout`).
    master_timeout: Duration,
    /// Ask these sentinels for the master's address before each connection.
    sentinel: Option<sentinel::SentinelSettings>,
    /// Or ask this before each connection (`resolve.rs`; a cluster shard's primary).
    resolver: Option<resolve::Resolver>,
    /// The address of the last connection (Sentinel's answers are logged when they change).
    last_address: String,
    /// Take full syncs from this replica of the primary (`[source] full_sync_from`).
    full_sync_from: Option<handoff::FullSyncFrom>,
    /// Offer a full sync on a second connection (`[source] dual_channel`), and to whom.
    dual: dualoffer::DualOffer,
    /// Where the stream buffered during such a sync goes past `spool_memory` bytes.
    spool_dir: std::path::PathBuf,
    spool_memory: usize,
    /// PSYNC names per address, overriding `Settings::psync_command` there.
    psync_commands: std::collections::BTreeMap<String, String>,
    /// The stream archive's tap (`[archive] enabled`).
    sink: Option<Arc<dyn StreamSink>>,
}

/// The other threads' side of a running replica.
#[derive(Clone)]
pub struct ReplicaHandle {
    pub status: Arc<Status>,
    stop: Arc<AtomicBool>,
    controls: Sender<Control>,
}

impl ReplicaHandle {
    /// Whether `stop` was asked for.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ask the replica for a snapshot, taken between two commands; `None` if it has no
    /// data yet, another snapshot is running, or it stopped.
    pub fn snapshot(&self, wait: Duration) -> Option<SnapshotAt> {
        let c = self.capture(wait).ok()?;
        Some((c.snapshot, c.replid, c.offset, c.functions))
    }

    /// Ask the replica for a [`Capture`], taken between two commands (never inside
    /// MULTI/EXEC), waiting at most `wait` for the apply loop to reach that point.
    pub fn capture(&self, wait: Duration) -> Result<Capture, CaptureError> {
        let (tx, rx) = mpsc::channel();
        self.controls
            .send(Control::Capture(tx))
            .map_err(|_| CaptureError::NoAnswer)?;
        rx.recv_timeout(wait).map_err(|_| CaptureError::NoAnswer)?
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Replica {
    pub fn new(settings: Settings) -> (Replica, ReplicaHandle) {
        Self::build(settings, None)
    }

    /// A replica that starts from a dataset loaded beforehand (a stored snapshot): its
    /// first attach asks `PSYNC replid offset+1`, continuing where the data stands when
    /// the master's backlog still covers it, and falling back to a full sync otherwise.
    pub fn with_preload(settings: Settings, preload: Preload) -> (Replica, ReplicaHandle) {
        Self::build(settings, Some(preload))
    }

    fn build(settings: Settings, preload: Option<Preload>) -> (Replica, ReplicaHandle) {
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut r = Replica {
            settings,
            ks: Keyspace::new(),
            replid: String::new(),
            offset: 0,
            has_data: false,
            master_version: None,
            master_aux: Vec::new(),
            stream_state: StreamState::default(),
            synced: false,
            status: status.clone(),
            stop: stop.clone(),
            controls: rx,
            limits: Limits::default(),
            master_timeout: stream::MASTER_TIMEOUT,
            sentinel: None,
            resolver: None,
            last_address: String::new(),
            full_sync_from: None,
            dual: dualoffer::DualOffer::new(true),
            spool_dir: std::env::temp_dir(),
            spool_memory: dualchannel::SPOOL_MEMORY,
            psync_commands: Default::default(),
            sink: None,
        };
        if let Some(p) = preload {
            r.preload(p);
        }
        (
            r,
            ReplicaHandle {
                status,
                stop,
                controls: tx,
            },
        )
    }

    /// Start from a dataset loaded beforehand (see [`Replica::with_preload`]), before
    /// [`Replica::run`]: the data held so far is replaced.
    pub fn preload(&mut self, p: Preload) {
        self.ks = p.keyspace;
        self.replid = p.replid;
        self.offset = p.offset;
        self.master_version = p.master_version;
        self.master_aux = p.master_aux;
        self.stream_state = StreamState::for_master(self.master_version);
        self.stream_state.db = p.stream_db;
        self.has_data = self.replid != "?" && !self.replid.is_empty();
        self.synced = true;
        self.status.offset.store(self.offset, Ordering::Relaxed);
        if let Ok(mut id) = self.status.replid.lock() {
            id.clone_from(&self.replid);
        }
    }

    /// Hand every applied byte of the stream to `sink` (the archive).
    pub fn set_stream_sink(&mut self, sink: Arc<dyn StreamSink>) {
        self.sink = Some(sink);
    }

    /// Use these caps on what the master sends instead of the defaults (config
    /// `[replica] max_command_bytes`).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Declare a link stalled (a link error of kind `timeout`, then a reconnect) after
    /// this long without a byte from the master, data or PING (`[source] timeout`; the
    /// default is the servers' `repl-timeout`, 60 s), in the handshake, the full sync and
    /// the stream alike.
    pub fn set_master_timeout(&mut self, t: Duration) {
        self.master_timeout = t;
    }

    /// Find the master through Sentinel (`[source] sentinels`, `master_name`) before every
    /// connection instead of using `Settings::address`.
    pub fn set_sentinel(&mut self, s: sentinel::SentinelSettings) {
        self.sentinel = Some(s);
    }

    /// Take full syncs from a replica of the primary (`[source] full_sync_from`), so the
    /// primary never forks for us: see [`handoff`]. The replica is reached with the same
    /// credentials, TLS settings and `psync_command` as the primary.
    pub fn set_full_sync_from(&mut self, f: handoff::FullSyncFrom) {
        self.full_sync_from = Some(f);
    }

    /// PSYNC names per node address (`[source] psync_commands`), used instead of
    /// `Settings::psync_command` when connecting to that address (as given or as
    /// Sentinel answers it; case-insensitive).
    pub fn set_psync_commands(&mut self, m: std::collections::BTreeMap<String, String>) {
        self.psync_commands = m;
    }

    /// The PSYNC command to send to `address`.
    pub(super) fn psync_command_for(&self, address: &str) -> String {
        self.psync_commands
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(address))
            .map_or_else(|| self.settings.psync_command.clone(), |(_, c)| c.clone())
    }

    /// Run until stopped: connect, sync, stream; on any failure back off and reconnect,
    /// resuming with PSYNC from where the data stands.
    pub fn run(self) {
        drop(self.run_to_stop());
    }

    /// [`Replica::run`], handing the stopped replica back: its data stands between two
    /// commands, for [`Replica::capture_now`] (the daemon's shutdown checkpoint).
    pub fn run_to_stop(mut self) -> Replica {
        let mut backoff = BACKOFF_MIN;
        let mut jitter = 0x9e37_79b9u64;
        self.status.heartbeat.set_busy(true);
        while !self.stop.load(Ordering::Relaxed) {
            let syncs_before = self.syncs();
            let stalls_before = self.status.io.stalls();
            let result = self.session();
            // The primary could not continue from the replica's full sync: that sync does
            // not start the backoff over, or the replica would be asked again and again.
            let handed_off = !matches!(
                result,
                Err(ReplError::Handoff(
                    handoff::HandoffError::CannotContinue { .. }
                ))
            );
            match result {
                Err(ReplError::Stopped) => break,
                // A read ended by the stop: not a link error.
                Err(_) if self.stop.load(Ordering::Relaxed) => break,
                Err(e) => {
                    self.status.set_phase(Phase::Reconnecting);
                    self.status.link_up.store(false, Ordering::Relaxed);
                    self.status.link_errors.fetch_add(1, Ordering::Relaxed);
                    let kind = if self.status.io.stalls() > stalls_before {
                        // However deep it surfaced (handshake, payload, stream).
                        LinkErrorReason::Timeout
                    } else {
                        link_error_kind(&e)
                    };
                    if let Some(i) = LinkErrorReason::ALL.iter().position(|r| *r == kind) {
                        self.status.link_error_kinds[i].fetch_add(1, Ordering::Relaxed);
                    }
                    if let ReplError::Apply(why) = &e {
                        // Never drift: the next attach asks for everything again, and no
                        // snapshot is taken of data a failed command may have half changed.
                        self.has_data = false;
                        self.synced = false;
                        self.status.forced_resyncs.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut r) = self.status.last_forced_reason.lock() {
                            r.clone_from(why);
                        }
                    }
                    let text = e.to_string();
                    // The same refusal again and again (a wrong password, a missing ACL
                    // permission) is logged once with its fix, then quietly.
                    let repeated = match &e {
                        ReplError::Handshake(_) => {
                            self.status.last_link_error.lock().is_ok_and(|l| *l == text)
                        }
                        // Its offsets differ each time: the same reason is the same kind.
                        ReplError::Handoff(handoff::HandoffError::CannotContinue { .. }) => self
                            .status
                            .last_link_error
                            .lock()
                            .is_ok_and(|l| l.starts_with("primary cannot continue")),
                        _ => false,
                    };
                    if repeated {
                        debug!(error = %e, retry_in_ms = backoff.as_millis() as u64, "link lost again");
                    } else {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "link lost");
                    }
                    if let Ok(mut l) = self.status.last_link_error.lock() {
                        *l = text;
                    }
                }
                Ok(()) => {}
            }
            // Exponential backoff with jitter, so many replicas do not reconnect in step.
            jitter ^= jitter << 13;
            jitter ^= jitter >> 7;
            jitter ^= jitter << 17;
            let extra = backoff.mul_f64((jitter % 1000) as f64 / 4000.0);
            let until = std::time::Instant::now() + backoff + extra;
            while std::time::Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                self.status.heartbeat.beat();
                let _ = self.serve_controls();
                std::thread::sleep(Duration::from_millis(20));
            }
            // A session that got as far as a sync starts the backoff over.
            backoff = if self.syncs() > syncs_before && handed_off {
                BACKOFF_MIN
            } else {
                (backoff * 2).min(BACKOFF_MAX)
            };
        }
        self.status.link_up.store(false, Ordering::Relaxed);
        self.status.set_phase(Phase::Stopped);
        self.status.heartbeat.set_busy(false);
        self
    }

    fn syncs(&self) -> u64 {
        self.status.full_syncs.load(Ordering::Relaxed)
            + self.status.partial_syncs.load(Ordering::Relaxed)
    }

    fn session(&mut self) -> Result<(), ReplError> {
        self.status.set_phase(Phase::Connecting);
        self.status.heartbeat.beat();
        let address = self.master_address()?;
        self.last_address.clone_from(&address);
        if let Ok(mut a) = self.status.master_address.lock() {
            a.clone_from(&address);
        }
        if let Some(f) = self.full_sync_from.clone() {
            if !self.has_data {
                self.full_sync_from_replica(&f)?;
            }
        }
        let mut link = self.connect(&address)?;
        info!(address = %address, "connected to master");
        let resume = self.has_data.then(|| (self.replid.clone(), self.offset));
        // A copy: the check below (`handoff.rs`) changes the replica between the steps.
        let mut s = self.settings.clone();
        s.psync_command = self.psync_command_for(&address);
        let mut h = handshake::Handshake {
            username: s.username.as_deref(),
            password: s.password.as_deref(),
            announce_port: s.announce_port,
            psync_command: &s.psync_command,
            resume: resume.as_ref().map(|(id, off)| (id.as_str(), *off)),
            dual_channel: self.dual.offer(&address, true),
        };
        handshake::prepare(&mut link, &h)?;
        if let Some((id, off)) = &resume {
            if !self.may_resume_on_primary(&mut link, id, *off)? {
                h.resume = None;
            }
        }
        let outcome = handshake::psync(&mut link, &h)?;
        match outcome {
            PsyncOutcome::Full { replid, offset } => {
                if resume.is_some() {
                    // Logged because it is costly and the operator may want to know why
                    // (backlog too small for the time we were away, or a new master).
                    warn!(
                        replid = %replid, offset,
                        "master refused to continue from our data: full resync"
                    );
                }
                self.full_sync(&mut link)?;
                self.replid = replid;
                self.offset = offset;
                if let Some(s) = &self.sink {
                    s.full_sync(&self.replid, self.offset);
                }
            }
            PsyncOutcome::DualChannel | PsyncOutcome::RdbChannel { .. } => {
                if resume.is_some() {
                    warn!("master refused to continue from our data: full resync (dual-channel)");
                }
                self.dual_channel_sync(&mut link, &address, &outcome)?;
            }
            PsyncOutcome::LegacySync => {
                self.full_sync(&mut link)?;
                // SYNC gives no replication ID: the next attach cannot resume.
                self.replid = "?".into();
                self.offset = 0;
                if let Some(s) = &self.sink {
                    s.full_sync("unknown", 0);
                }
            }
            PsyncOutcome::Continue { new_replid } => {
                if let Some(id) = new_replid {
                    self.replid = id;
                }
                self.status.partial_syncs.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = &self.sink {
                    s.resumed(&self.replid, self.offset);
                }
                info!(replid = %self.replid, offset = self.offset, "partial resync: continuing");
            }
        }
        self.dual.synced(&address, &self.replid);
        self.synced = true;
        self.has_data = self.replid != "?";
        if let Ok(mut r) = self.status.replid.lock() {
            r.clone_from(&self.replid);
        }
        self.status.offset.store(self.offset, Ordering::Relaxed);
        self.status.ready.store(true, Ordering::Relaxed);
        self.status.link_up.store(true, Ordering::Relaxed);
        self.status.set_phase(Phase::Streaming);
        self.stream(&mut link)
    }

    /// A link with this replica's limits, clocks and stop flag.
    pub(super) fn connect(&self, address: &str) -> Result<Link, ReplError> {
        let s = &self.settings;
        let mut link = Link::connect(address, s.connect_timeout, s.tls.as_ref())?;
        link.limits = self.limits;
        link.heartbeat = Some(self.status.heartbeat.clone());
        link.stop = Some(self.stop.clone());
        link.idle_limit = Some(self.master_timeout);
        link.io_clock = Some(self.status.io.clone());
        Ok(link)
    }

    /// The master sends a new dataset: it refused to continue from ours and would again (its
    /// backlog only moves on), so ours goes before the new one loads (never two at once).
    /// Until the new one is complete there is no data: no snapshot, and the next attach
    /// asks for all. It is freed here, before the load reads on: freed on another thread,
    /// it could lag the load on a busy machine and both be held at once (seen in CI).
    fn let_go_of_data(&mut self) {
        self.has_data = false;
        self.synced = false;
        let started = std::time::Instant::now();
        drop(std::mem::take(&mut self.ks));
        debug!(seconds = started.elapsed().as_secs_f64(), "old data freed");
    }

    /// Load a full-sync payload; the payload's `repl-stream-db`, when it has one.
    pub(super) fn full_sync(&mut self, link: &mut Link) -> Result<Option<u64>, ReplError> {
        // The master may take a while to produce the payload; it sends newlines meanwhile.
        self.status.set_phase(Phase::FullSync);
        link.set_read_timeout(self.master_timeout)?;
        let payload = fullsync::read_header(link)?;
        self.let_go_of_data();
        match &payload {
            fullsync::Payload::Sized(n) => {
                info!(bytes = n, "full sync started (disk-based payload)")
            }
            fullsync::Payload::Mark(_) => info!("full sync started (diskless payload)"),
        }
        let (ks, report) = fullsync::load_payload(link, &payload)?;
        // Only now, complete and checked, does the new data replace the old.
        self.ks = ks;
        crate::mem::return_freed();
        self.master_version = report.writer;
        self.master_aux = report
            .aux
            .iter()
            .filter(|(k, _)| is_version_aux(k))
            .cloned()
            .collect();
        // The master selects a database before its first command after a full sync.
        self.stream_state = StreamState::for_master(self.master_version);
        self.status.full_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(handoff::stream_db(&report.aux))
    }
}
