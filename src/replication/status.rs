//! What other threads may read of the replica at any time: [`Status`] (atomics and small
//! locked values), the [`Phase`] it is in, the commands applied by name
//! ([`CommandCounts`]) and the [`IoClock`] of the last byte from the master.
//!
//! Owns only the shape and the reading of that state; the replica thread writes it. A
//! leaf: it must never import its siblings (the link, the handshake, the stream), never
//! block a reader for longer than a field copy, and never hold anything from the network
//! that is not already checked (text fields are what the replica logged).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::heartbeat::Heartbeat;

/// When the master last sent a byte (any link), and how many links were declared
/// stalled: shared with other threads (`master_last_io_age_seconds`, `/readyz`).
#[derive(Debug, Default)]
pub struct IoClock {
    /// Unix time in ms of the last byte received; 0: never.
    last_ms: AtomicU64,
    stalls: AtomicU64,
}

impl IoClock {
    pub fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When a byte last arrived; `None` before the first.
    pub fn last(&self) -> Option<SystemTime> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// How long since a byte arrived; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        self.last()
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }

    /// Count one link declared stalled.
    pub fn stalled(&self) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
    }

    /// Links declared stalled so far.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }
}

/// Commands applied, by `metrics::command_index` (the last slot: any other name).
#[derive(Debug)]
pub struct CommandCounts(pub Box<[AtomicU64]>);

impl Default for CommandCounts {
    fn default() -> Self {
        CommandCounts(
            (0..=crate::metrics::COMMANDS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl CommandCounts {
    /// Count one applied command (a binary search over the known names, one atomic add).
    pub fn count(&self, name: &[u8]) {
        let i = crate::metrics::command_index(name).unwrap_or(crate::metrics::COMMANDS.len());
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What other threads can read at any time.
#[derive(Debug, Default)]
pub struct Status {
    pub link_up: AtomicBool,
    pub offset: AtomicI64,
    pub full_syncs: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub forced_resyncs: AtomicU64,
    /// Full syncs taken from `[source] full_sync_from` (counted in `full_syncs` too).
    pub full_syncs_from_replica: AtomicU64,
    /// Times the primary could not continue from such a full sync (its `INFO replication`
    /// did not cover our offset): no PSYNC was sent, so it did not fork.
    pub handoff_refusals: AtomicU64,
    /// Full syncs whose RDB came on a second connection (Valkey dual-channel, Redis
    /// rdb-channel; counted in `full_syncs` too).
    pub dual_channel_syncs: AtomicU64,
    /// Stream bytes buffered during those syncs, and the part of them spilled to a file.
    pub dual_channel_buffered_bytes: AtomicU64,
    pub dual_channel_spilled_bytes: AtomicU64,
    /// Dual-channel syncs offered by the server and then refused at a step (dual-channel
    /// is then not offered to it again until it is another master: `dualoffer.rs`).
    pub dual_channel_refusals: AtomicU64,
    pub link_errors: AtomicU64,
    /// The same link errors by kind, in `metrics::LinkErrorReason::ALL` order.
    pub link_error_kinds: [AtomicU64; 9],
    /// Set once the first full sync completed.
    pub ready: AtomicBool,
    pub replid: Mutex<String>,
    /// Why the last forced full resync happened (the command and the error).
    pub last_forced_reason: Mutex<String>,
    /// The last link error, as logged (a handshake refusal carries what to do about it).
    pub last_link_error: Mutex<String>,
    /// host:port of the master last connected to (Sentinel's answer, or the configured one).
    pub master_address: Mutex<String>,
    /// Commands applied from the stream, by name.
    pub commands: CommandCounts,
    /// Keys per database, refreshed about once a second by the apply loop.
    pub keys_per_db: Mutex<Vec<(u64, u64)>>,
    /// Beats on every read from the master and every turn of the replica's loops; busy
    /// while the replica thread runs (systemd's watchdog watches it).
    pub heartbeat: Arc<Heartbeat>,
    /// When the master last sent a byte, and how many links were declared stalled.
    pub io: Arc<IoClock>,
    /// [`Phase`] as a number.
    phase: AtomicU8,
}

/// What the replica is doing, for status lines (systemd's `STATUS=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The thread has not started.
    Starting,
    /// Connecting and handshaking.
    Connecting,
    /// Receiving and loading a full-sync payload.
    FullSync,
    /// Following the command stream.
    Streaming,
    /// The link failed; waiting to reconnect.
    Reconnecting,
    /// The thread ended.
    Stopped,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Connecting,
        Phase::FullSync,
        Phase::Streaming,
        Phase::Reconnecting,
        Phase::Stopped,
    ];
}

impl Status {
    pub fn phase(&self) -> Phase {
        let i = usize::from(self.phase.load(Ordering::Relaxed));
        Phase::ALL.get(i).copied().unwrap_or(Phase::Starting)
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        let i = Phase::ALL.iter().position(|q| *q == p).unwrap_or(0);
        self.phase.store(i as u8, Ordering::Relaxed);
    }
}
