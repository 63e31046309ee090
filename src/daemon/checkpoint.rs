//! The shutdown checkpoint, written once the replica stopped (`[replica]
//! checkpoint_on_shutdown`): for one master and for each shard of a cluster.
//!
//! Owns only the logging around [`CheckpointDir::write`]. It must never fail the stop:
//! a checkpoint not written only costs the next start its partial resync.

use std::time::Instant;

use tracing::{info, warn};

use crate::replication::Replica;
use crate::snapshot::checkpoint::CheckpointDir;

/// The shutdown checkpoint of the stopped `replica` (logged; a failure only costs the
/// next start its partial resync).
pub fn write_checkpoint(dir: &CheckpointDir, replica: &mut Replica, address: &str) {
    let capture = match replica.capture_now() {
        Ok(c) => c,
        Err(e) => {
            info!(reason = %e, "no checkpoint written");
            return;
        }
    };
    let (offset, started) = (capture.offset, Instant::now());
    match dir.write(capture, address) {
        Ok(m) => info!(
            path = %dir.path().display(), replid = %m.source.replid, offset = m.source.offset,
            keys = m.keys_total, bytes = m.rdb.bytes, seconds = started.elapsed().as_secs_f64(),
            "checkpoint written"
        ),
        Err(e) => warn!(
            error = %e, offset,
            "checkpoint not written; the next start resumes from the newest stored snapshot"
        ),
    }
}
