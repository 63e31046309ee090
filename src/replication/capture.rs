//! What a snapshot takes from the replica: [`Capture`] (the data, its replication position
//! and what a file needs besides), taken between two commands on the replica thread, and
//! the serving of other threads' requests for one.
//!
//! Owns the moment of the capture; it must never be called inside MULTI/EXEC or while a
//! full sync loads (the callers guarantee it: the stream loop between commands, the
//! backoff loop, a stopped replica), and never block the apply loop longer than the
//! keyspace's own snapshot takes.

use std::time::{Duration, Instant};

use super::{Control, ReplError, Replica};
use crate::keyspace::Snapshot;
use crate::server_version::ServerVersion;

/// Everything a snapshot file needs, taken between two commands in one step.
pub struct Capture {
    pub snapshot: Snapshot,
    /// Replication ID and offset the snapshot is consistent at.
    pub replid: String,
    pub offset: i64,
    /// Function libraries of that moment.
    pub functions: Vec<Vec<u8>>,
    /// The database the stream had selected (`repl-stream-db`): a partial resync from
    /// this offset continues in it without a SELECT.
    pub stream_db: u64,
    /// The master's server, as its last full-sync payload said.
    pub master_version: Option<ServerVersion>,
    /// The master's own version aux fields (`redis-ver`, `valkey-ver`) as it wrote them,
    /// so a file we write is read back as the same server's.
    pub master_aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// How long the apply loop stood still to take it.
    pub pause: Duration,
    /// The stream archive's history at that offset (none without an archive).
    pub history: Option<String>,
}

/// Why no capture was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("no data: the first sync, or the full sync under way, has not completed")]
    NoData,
    #[error("a snapshot is still being walked")]
    Busy,
    #[error("the replica did not answer in time or has stopped")]
    NoAnswer,
}

impl Replica {
    /// Answer requests from other threads. Called only between commands, never inside
    /// MULTI/EXEC; the time the capture takes is the whole pause of the apply loop.
    pub(super) fn serve_controls(&mut self) -> Result<(), ReplError> {
        while let Ok(c) = self.controls.try_recv() {
            match c {
                Control::Capture(reply) => {
                    let _ = reply.send(self.capture_now());
                }
            }
        }
        Ok(())
    }

    /// A [`Capture`] of the data as it stands (between two commands: on the replica
    /// thread, or on a stopped replica from [`Replica::run_to_stop`]).
    pub fn capture_now(&mut self) -> Result<Capture, CaptureError> {
        let started = Instant::now();
        if !self.synced {
            return Err(CaptureError::NoData);
        }
        let snapshot = self.ks.snapshot().ok_or(CaptureError::Busy)?;
        Ok(Capture {
            snapshot,
            replid: self.replid.clone(),
            offset: self.offset,
            functions: self.ks.functions.clone(),
            stream_db: self.stream_state.db,
            master_version: self.master_version,
            master_aux: self.master_aux.clone(),
            history: self.sink.as_ref().and_then(|s| s.history()),
            pause: started.elapsed(),
        })
    }
}

/// The aux fields that say which server wrote a file.
pub fn is_version_aux(key: &[u8]) -> bool {
    key == b"redis-ver" || key == b"valkey-ver"
}
