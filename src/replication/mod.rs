//! The permanent replica: attach to the master, full sync, follow the stream, reconnect.
//!
//! Owns the replica's side of the protocol and its state (replication ID, offset, the
//! keyspace it applies to). It runs on one thread with blocking I/O: the apply loop is
//! single-threaded by nature, and a dedicated thread keeps its timing independent of the
//! rest of the daemon. Other threads talk to it through [`ReplicaHandle`]: status
//! (atomics) and requests served between commands (snapshots).
//!
//! It must never leave a half-loaded dataset (a full sync loads into a fresh keyspace that
//! replaces the live one only when complete), and never drift silently: a command it
//! cannot apply drops the link and asks for a full resync.

mod fullsync;
mod handshake;
pub mod link;
mod stream;
pub mod tls;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

pub use handshake::PsyncOutcome;
use link::{Link, LinkError};

use crate::keyspace::{Keyspace, Snapshot};

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
    #[error("master silent for {}s", stream::MASTER_TIMEOUT.as_secs())]
    Timeout,
    #[error("stopped")]
    Stopped,
    #[error("{0}")]
    Io(#[from] std::io::Error),
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

/// What other threads can read at any time.
#[derive(Debug, Default)]
pub struct Status {
    pub link_up: AtomicBool,
    pub offset: AtomicI64,
    pub full_syncs: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub forced_resyncs: AtomicU64,
    pub link_errors: AtomicU64,
    /// Set once the first full sync completed.
    pub ready: AtomicBool,
    pub replid: Mutex<String>,
    /// Why the last forced full resync happened (the command and the error).
    pub last_forced_reason: Mutex<String>,
}

/// A snapshot with the replication position it is consistent at and the function
/// libraries of that moment.
pub type SnapshotAt = (Snapshot, String, i64, Vec<Vec<u8>>);

pub(crate) enum Control {
    Snapshot(Sender<Option<SnapshotAt>>),
}

pub struct Replica {
    settings: Settings,
    ks: Keyspace,
    /// Replication ID and offset of the data in `ks`; `None` until a sync gave us data.
    replid: String,
    offset: i64,
    has_data: bool,
    /// The master's server version, as its last full-sync payload said.
    master_version: Option<crate::server_version::ServerVersion>,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    controls: Receiver<Control>,
}

/// The other threads' side of a running replica.
#[derive(Clone)]
pub struct ReplicaHandle {
    pub status: Arc<Status>,
    stop: Arc<AtomicBool>,
    controls: Sender<Control>,
}

impl ReplicaHandle {
    /// Ask the replica for a snapshot, taken between two commands; `None` if it has no
    /// data yet, another snapshot is running, or it stopped.
    pub fn snapshot(&self, wait: Duration) -> Option<SnapshotAt> {
        let (tx, rx) = mpsc::channel();
        self.controls.send(Control::Snapshot(tx)).ok()?;
        rx.recv_timeout(wait).ok().flatten()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Replica {
    pub fn new(settings: Settings) -> (Replica, ReplicaHandle) {
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let r = Replica {
            settings,
            ks: Keyspace::new(),
            replid: String::new(),
            offset: 0,
            has_data: false,
            master_version: None,
            status: status.clone(),
            stop: stop.clone(),
            controls: rx,
        };
        (
            r,
            ReplicaHandle {
                status,
                stop,
                controls: tx,
            },
        )
    }

    /// Run until stopped: connect, sync, stream; on any failure back off and reconnect,
    /// resuming with PSYNC from where the data stands.
    pub fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut jitter = 0x9e37_79b9u64;
        while !self.stop.load(Ordering::Relaxed) {
            let syncs_before = self.syncs();
            match self.session() {
                Err(ReplError::Stopped) => break,
                Err(e) => {
                    self.status.link_up.store(false, Ordering::Relaxed);
                    self.status.link_errors.fetch_add(1, Ordering::Relaxed);
                    if let ReplError::Apply(why) = &e {
                        // Never drift: the next attach asks for everything again.
                        self.has_data = false;
                        self.status.forced_resyncs.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut r) = self.status.last_forced_reason.lock() {
                            r.clone_from(why);
                        }
                    }
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "link lost");
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
                let _ = self.serve_controls();
                std::thread::sleep(Duration::from_millis(20));
            }
            // A session that got as far as a sync starts the backoff over.
            backoff = if self.syncs() > syncs_before {
                BACKOFF_MIN
            } else {
                (backoff * 2).min(BACKOFF_MAX)
            };
        }
        self.status.link_up.store(false, Ordering::Relaxed);
    }

    fn syncs(&self) -> u64 {
        self.status.full_syncs.load(Ordering::Relaxed)
            + self.status.partial_syncs.load(Ordering::Relaxed)
    }

    fn session(&mut self) -> Result<(), ReplError> {
        let s = &self.settings;
        let mut link = Link::connect(&s.address, s.connect_timeout, s.tls.as_ref())?;
        info!(address = %s.address, "connected to master");
        let resume = self.has_data.then(|| (self.replid.clone(), self.offset));
        let h = handshake::Handshake {
            username: s.username.as_deref(),
            password: s.password.as_deref(),
            announce_port: s.announce_port,
            psync_command: &s.psync_command,
            resume: resume.as_ref().map(|(id, off)| (id.as_str(), *off)),
        };
        let outcome = handshake::handshake(&mut link, &h)?;
        match outcome {
            PsyncOutcome::Full { replid, offset } => {
                self.full_sync(&mut link)?;
                self.replid = replid;
                self.offset = offset;
            }
            PsyncOutcome::LegacySync => {
                self.full_sync(&mut link)?;
                // SYNC gives no replication ID: the next attach cannot resume.
                self.replid = "?".into();
                self.offset = 0;
            }
            PsyncOutcome::Continue { new_replid } => {
                if let Some(id) = new_replid {
                    self.replid = id;
                }
                self.status.partial_syncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.has_data = self.replid != "?";
        if let Ok(mut r) = self.status.replid.lock() {
            r.clone_from(&self.replid);
        }
        self.status.offset.store(self.offset, Ordering::Relaxed);
        self.status.ready.store(true, Ordering::Relaxed);
        self.status.link_up.store(true, Ordering::Relaxed);
        self.stream(&mut link)
    }

    fn full_sync(&mut self, link: &mut Link) -> Result<(), ReplError> {
        // The master may take a while to produce the payload; it sends newlines meanwhile.
        link.set_read_timeout(stream::MASTER_TIMEOUT)?;
        let payload = fullsync::read_header(link)?;
        match &payload {
            fullsync::Payload::Sized(n) => {
                info!(bytes = n, "full sync started (disk-based payload)")
            }
            fullsync::Payload::Mark(_) => info!("full sync started (diskless payload)"),
        }
        let (ks, report) = fullsync::load_payload(link, &payload)?;
        // Only now, complete and checked, does the new data replace the old.
        self.ks = ks;
        self.master_version = report.writer;
        self.status.full_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
