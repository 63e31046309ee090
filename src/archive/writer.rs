//! The archive writer thread: takes the applied stream from the [`Queue`], cuts it into
//! segments and stores each once, then records how far the archive reaches.
//!
//! Owns the history rules on this side (a full sync starts a history named after its
//! replid and offset; a partial resync, in this process or after a restart, continues the
//! one in `<state_dir>/archive-state.json`), the segment cut (`segment_seconds` after its
//! first byte, or `segment_bytes`), de-duplication of bytes resent after a restart, and
//! the gap when the stream jumps. It must never drop bytes in silence: every jump of
//! offsets inside a history is logged and visible as a hole between segment names; and
//! it must never hold up the apply loop (it only ever takes from the queue).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::queue::{now_ms, read_spooled, Item, Queue};
use super::segment::{self, history_name};
use crate::metrics::{Metrics, Outcome};
use crate::storage::{Storage, StorageError};

const STATE_NAME: &str = "archive-state.json";
const POLL: Duration = Duration::from_millis(200);
/// Store attempts per segment once stopping (a storage down for good must not hold the
/// exit forever); while running, a segment is retried until it is stored.
const ATTEMPTS_WHEN_STOPPING: u32 = 5;

/// Where the archive stands, kept in `<state_dir>` across restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveState {
    pub history: String,
    /// Every byte of the history before this offset is stored (or a recorded gap).
    pub end: i64,
}

pub struct Settings {
    pub segment_seconds: u64,
    pub segment_bytes: u64,
    pub state_dir: PathBuf,
}

struct Open {
    first: i64,
    buf: Vec<u8>,
    samples: Vec<(i64, i64)>,
    t0: i64,
    t_last: i64,
    started: Instant,
}

pub(super) struct Writer {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) queue: Arc<Queue>,
    pub(super) settings: Settings,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) state: Option<ArchiveState>,
    /// The next offset expected in the current history (None: no history yet).
    expected: Option<i64>,
    open: Option<Open>,
    /// The raw size of the last stored segment: the next one's initial capacity.
    segment_hint: usize,
    stopping: bool,
    reconciled: bool,
}

pub fn read_state(state_dir: &std::path::Path) -> Option<ArchiveState> {
    let data = std::fs::read(state_dir.join(STATE_NAME)).ok()?;
    if data.len() > 64 << 10 {
        return None;
    }
    serde_json::from_slice(&data).ok()
}

impl Writer {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        queue: Arc<Queue>,
        settings: Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> Writer {
        let state = read_state(&settings.state_dir);
        Writer {
            storage,
            queue,
            settings,
            metrics,
            expected: state.as_ref().map(|s| s.end),
            state,
            open: None,
            segment_hint: 0,
            stopping: false,
            reconciled: false,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let item = self.queue.pop(POLL);
            let done = item.is_none() && self.queue.is_closed_and_empty();
            if done {
                self.stopping = true;
            }
            if let Some(item) = item {
                self.take(item);
            }
            let due = self.open.as_ref().is_some_and(|o| {
                o.buf.len() as u64 >= self.settings.segment_bytes
                    || o.started.elapsed() >= Duration::from_secs(self.settings.segment_seconds)
            });
            if due || done {
                self.store_open();
            }
            self.report_lag();
            if done {
                return;
            }
        }
    }

    fn take(&mut self, item: Item) {
        match item {
            Item::History { replid, offset } => {
                self.store_open();
                let history = history_name(&replid, offset);
                info!(history = %history, "archive: full sync, a new history starts");
                self.set_state(history, offset);
            }
            Item::Resumed { replid, offset } => self.resumed(&replid, offset),
            Item::Bytes { offset, data, at } => self.append(offset, &data, at),
            Item::Spooled {
                offset,
                len,
                path,
                pos,
                at,
            } => match read_spooled(&path, pos, len) {
                Ok(data) => self.append(offset, &data, at),
                Err(e) => {
                    warn!(error = %e, offset, bytes = len, "archive: spooled bytes lost; a gap is recorded");
                    self.gap(offset, len);
                }
            },
            Item::Gap { offset, len } => {
                warn!(
                    offset,
                    bytes = len,
                    "archive: bytes neither queued nor spooled; a gap is recorded"
                );
                self.gap(offset, len);
            }
        }
    }

    /// Resumed with a partial resync: continue the recorded history, or start one if
    /// there is none (the first archive of data loaded from a snapshot).
    fn resumed(&mut self, replid: &str, offset: i64) {
        self.reconcile();
        if self.state.is_none() {
            let history = history_name(replid, offset);
            info!(history = %history, "archive: no history recorded; one starts here");
            self.set_state(history, offset);
        }
    }

    /// The storage is the truth: a kill between storing a segment and recording it leaves
    /// the state file behind; the history's stored end is taken from its listing (once).
    fn reconcile(&mut self) {
        if self.reconciled {
            return;
        }
        let Some(st) = self.state.as_mut() else {
            return;
        };
        let prefix = format!("archive/{}/", st.history);
        match self.storage.list_objects(&prefix) {
            Ok(objects) => {
                let end = objects
                    .iter()
                    .filter_map(|o| segment::parse_key(&o.key))
                    .map(|k| k.end)
                    .max();
                if let Some(end) = end.filter(|e| *e > st.end) {
                    info!(history = %st.history, recorded = st.end, stored = end, "archive: stored end ahead of the recorded one");
                    st.end = end;
                    self.expected = Some(end);
                }
                self.reconciled = true;
            }
            Err(e) => {
                warn!(error = %e, "archive: cannot list the stored history; trusting the recorded end")
            }
        }
    }

    fn set_state(&mut self, history: String, offset: i64) {
        self.state = Some(ArchiveState {
            history,
            end: offset,
        });
        self.expected = Some(offset);
        self.save_state();
    }

    fn gap(&mut self, offset: i64, len: u64) {
        self.store_open();
        self.expected = Some(offset + len as i64);
    }

    fn append(&mut self, offset: i64, data: &[u8], at: i64) {
        let end = offset + data.len() as i64;
        let expected = match self.expected {
            Some(e) => e,
            None => {
                // Bytes before any history (cannot happen with the replica's calls).
                warn!(
                    offset,
                    "archive: stream bytes without a history; not archived"
                );
                return;
            }
        };
        if end <= expected {
            return; // resent after a restart: already stored
        }
        let (offset, data) = if offset < expected {
            (expected, &data[(expected - offset) as usize..])
        } else {
            (offset, data)
        };
        if offset > expected {
            warn!(
                from = expected,
                to = offset,
                bytes = offset - expected,
                "archive: the stream resumed past the stored end; a gap is recorded"
            );
            self.store_open();
        }
        let hint = self.segment_hint.min(self.settings.segment_bytes as usize);
        let o = self.open.get_or_insert_with(|| Open {
            first: offset,
            buf: Vec::with_capacity(hint + hint / 8),
            samples: vec![(at, offset)],
            t0: at,
            t_last: at,
            started: Instant::now(),
        });
        if o.samples
            .last()
            .is_some_and(|(t, _)| at - t >= segment::SAMPLE_MS)
        {
            o.samples.push((at, offset));
        }
        o.buf.extend_from_slice(data);
        o.t_last = at;
        self.expected = Some(end);
    }

    /// Store the open segment, retrying until it is stored (a few times when stopping).
    fn store_open(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let Some(history) = self.state.as_ref().map(|s| s.history.clone()) else {
            return;
        };
        let end = o.first + o.buf.len() as i64;
        let key = segment::object_key(&history, o.first, end, o.t0, o.t_last);
        let data = segment::encode(&history, o.first, o.samples, &o.buf);
        // The next segment starts with room for this one's size (no doubling from empty:
        // each doubling held the old and the new buffer at once); the raw bytes go now,
        // not after the store (an fsync or an upload may take a while).
        self.segment_hint = o.buf.len();
        drop(o.buf);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.storage.put_object(&key, &data) {
                Ok(()) => {
                    self.count(Outcome::Ok);
                    break;
                }
                Err(e @ StorageError::Exists { .. }) => {
                    // Only this process writes here (the storage is claimed): the same
                    // range from the same bytes is already stored.
                    warn!(error = %e, "archive: segment already stored");
                    break;
                }
                Err(e) => {
                    self.count(Outcome::Error);
                    let give_up = self.stopping && attempt >= ATTEMPTS_WHEN_STOPPING;
                    warn!(error = %e, attempt, key = %key, "archive: storing a segment failed");
                    if give_up {
                        warn!(
                            from = o.first,
                            to = end,
                            "archive: giving up at exit; a gap is recorded"
                        );
                        return;
                    }
                    self.report_lag_with(o.t0);
                    std::thread::sleep(Duration::from_millis(500u64 << attempt.min(6)));
                }
            }
        }
        if let Some(s) = self.state.as_mut() {
            if s.history == history {
                s.end = end;
            }
        }
        self.save_state();
    }

    fn count(&self, o: Outcome) {
        if let Some(m) = &self.metrics {
            m.archive_segment(o);
        }
    }

    fn save_state(&self) {
        let Some(s) = &self.state else { return };
        let path = self.settings.state_dir.join(STATE_NAME);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            std::fs::create_dir_all(&self.settings.state_dir)?;
            let mut f = crate::atomic_file::AtomicFile::create(&path)?;
            f.write_all(&serde_json::to_vec(s).unwrap_or_default())?;
            f.commit()
        };
        if let Err(e) = write() {
            warn!(error = %e, path = %path.display(), "archive: cannot record its position");
        }
    }

    fn report_lag(&self) {
        let (_, oldest) = self.queue.position();
        let t = self.open.as_ref().map(|o| o.t0).or(oldest);
        match t {
            Some(t) => self.report_lag_with(t),
            None => self.report_lag_at(None),
        }
    }

    fn report_lag_with(&self, oldest_ms: i64) {
        self.report_lag_at(Some(oldest_ms));
    }

    fn report_lag_at(&self, oldest_ms: Option<i64>) {
        let Some(m) = &self.metrics else { return };
        let (applied, _) = self.queue.position();
        let stored = self.state.as_ref().map_or(applied, |s| s.end);
        let secs = oldest_ms.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
        m.archive_lag(secs, (applied - stored).max(0));
    }
}
