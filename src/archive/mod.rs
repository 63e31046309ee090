//! The stream archive (SPEC §6, point-in-time recovery): the replication stream exactly as
//! applied, stored in compressed, checksummed, write-once segments beside the snapshots.
//!
//! Owns the archive's side of the replica ([`Tap`], a [`StreamSink`] the apply loop hands
//! each applied command's bytes to), the writer thread ([`Archiver`]), the segment format
//! (`segment.rs`), reading the stored archive back (`listing.rs`), proving it good
//! (`verify.rs`) and its retention (`prune.rs`). The apply loop never
//! waits on it (`queue.rs`: bounded memory, then a spool file, then a recorded gap). It
//! must never store bytes that were not applied, never overwrite a stored segment, and
//! never lose bytes in silence.

mod listing;
mod prune;
mod queue;
pub mod segment;
mod verify;
mod writer;

use std::sync::Arc;
use std::thread::JoinHandle;

pub use listing::{list, ArchiveListing, Gap, History};
pub use prune::{prune, snapshot_in_history, Pruned};
pub use verify::{verify, ArchiveCheck, HistoryCheck};
pub use writer::{read_state, ArchiveState, Settings};

use crate::metrics::Metrics;
use crate::replication::StreamSink;
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what}: corrupt archive segment: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// The memory the queue may hold before it spills to `<state_dir>/archive-spool/`.
pub const QUEUE_MEMORY: u64 = 64 << 20;

/// The replica's end of the archive. Cheap: each call takes one short lock.
pub struct Tap {
    queue: Arc<queue::Queue>,
    /// The history the stream being applied belongs to, by the writer's own rules (a full
    /// sync starts one; a resume continues the recorded one, or starts one when there is
    /// none), so a snapshot taken between two commands can name it.
    history: std::sync::Mutex<Option<String>>,
}

impl StreamSink for Tap {
    fn full_sync(&self, replid: &str, offset: i64) {
        if let Ok(mut h) = self.history.lock() {
            *h = Some(segment::history_name(replid, offset));
        }
        self.queue.push_history(replid, offset);
    }

    fn resumed(&self, replid: &str, offset: i64) {
        if let Ok(mut h) = self.history.lock() {
            h.get_or_insert_with(|| segment::history_name(replid, offset));
        }
        self.queue.push_resumed(replid, offset);
    }

    fn history(&self) -> Option<String> {
        self.history.lock().ok().and_then(|h| h.clone())
    }

    fn applied(&self, offset: i64, bytes: &[u8]) {
        self.queue.push_bytes(offset, bytes);
    }
}

/// The running archive writer.
pub struct Archiver {
    queue: Arc<queue::Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Archiver {
    /// Start the writer thread; the returned [`Tap`] goes to the replica.
    pub fn start(
        storage: Arc<dyn Storage>,
        settings: Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<(Archiver, Arc<Tap>)> {
        let spool_file = settings.segment_bytes.max(1 << 20);
        let q = Arc::new(queue::Queue::new(
            &settings.state_dir,
            QUEUE_MEMORY.max(2 * settings.segment_bytes),
            spool_file,
        ));
        q.clear_spool();
        let recorded = read_state(&settings.state_dir).map(|s| s.history);
        let w = writer::Writer::new(storage, q.clone(), settings, metrics);
        let thread = std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || w.run())?;
        Ok((
            Archiver {
                queue: q.clone(),
                thread: Some(thread),
            },
            Arc::new(Tap {
                queue: q,
                history: std::sync::Mutex::new(recorded),
            }),
        ))
    }

    /// Store everything handed over (the open segment included) and stop. Call after the
    /// replica stopped.
    pub fn finish(mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
