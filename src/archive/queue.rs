//! The hand-over between the apply loop and the archive writer: a queue the apply loop
//! never waits on.
//!
//! Owns the bound: items stay in memory up to `mem_limit` bytes; past it the apply loop
//! appends the bytes to a spool file in `<state_dir>/archive-spool/` (0600) and queues only
//! a reference; if even that fails, it queues a [`Item::Gap`] so the loss is recorded and
//! shown, never silent. Order is kept whatever mix of memory and spool is used. It must
//! never block the apply loop beyond a short uncontended lock and, past the bound, one
//! file append; it never talks to storage.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the writer takes, in stream order; `at` is unix ms when it was applied.
#[derive(Debug)]
pub(super) enum Item {
    /// A full sync: a new history starts at `offset`.
    History {
        replid: String,
        offset: i64,
    },
    /// A partial resync: the history goes on (or starts, if none is recorded).
    Resumed {
        replid: String,
        offset: i64,
    },
    Bytes {
        offset: i64,
        data: Vec<u8>,
        at: i64,
    },
    /// `len` bytes from `offset`, in `path` from `pos`.
    Spooled {
        offset: i64,
        len: u64,
        path: PathBuf,
        pos: u64,
        at: i64,
    },
    /// Bytes that could be neither queued nor spooled.
    Gap {
        offset: i64,
        len: u64,
    },
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    mem: u64,
    /// The open spool file and its length; a new one is started when the queue's tail is
    /// not a reference into it.
    spool: Option<(PathBuf, File, u64)>,
    spool_seq: u64,
    /// End offset of everything handed over.
    applied_end: i64,
    /// Unix ms of the oldest item not yet taken by the writer.
    oldest_at: Option<i64>,
    closed: bool,
    /// The writer waits on `ready`: only then is it woken (a wake is a system call, once
    /// per command otherwise).
    waiting: bool,
}

pub(super) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    mem_limit: u64,
    spool_dir: PathBuf,
    spool_file_limit: u64,
}

impl Queue {
    pub(super) fn new(state_dir: &Path, mem_limit: u64, spool_file_limit: u64) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            mem_limit,
            spool_dir: state_dir.join("archive-spool"),
            spool_file_limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake the writer if it waits (called with the lock held, so it cannot start waiting
    /// in between).
    fn wake(&self, s: &State) {
        if s.waiting {
            self.ready.notify_one();
        }
    }

    /// Remove spool files a previous process left: their bytes were never stored, and the
    /// master resends them on resume or they are a recorded gap.
    pub(super) fn clear_spool(&self) {
        if let Ok(entries) = fs::read_dir(&self.spool_dir) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub(super) fn push_history(&self, replid: &str, offset: i64) {
        let mut s = self.lock();
        s.applied_end = offset;
        s.items.push_back(Item::History {
            replid: replid.to_string(),
            offset,
        });
        self.wake(&s);
    }

    pub(super) fn push_resumed(&self, replid: &str, offset: i64) {
        let mut s = self.lock();
        s.applied_end = offset;
        s.items.push_back(Item::Resumed {
            replid: replid.to_string(),
            offset,
        });
        self.wake(&s);
    }

    pub(super) fn push_bytes(&self, offset: i64, data: &[u8]) {
        self.push_bytes_at(offset, data, now_ms());
    }

    /// [`Queue::push_bytes`] applied at unix ms `at`.
    fn push_bytes_at(&self, offset: i64, data: &[u8], at: i64) {
        let mut s = self.lock();
        s.applied_end = offset + data.len() as i64;
        s.oldest_at.get_or_insert(at);
        if s.mem + data.len() as u64 <= self.mem_limit {
            s.mem += data.len() as u64;
            // Bytes applied in the same millisecond right after the last ones join them:
            // the writer dates a segment's offsets by the first byte of each millisecond
            // at the finest, so it records the same samples, from one item, not one per
            // command.
            match s.items.back_mut() {
                Some(Item::Bytes {
                    offset: o,
                    data: d,
                    at: t,
                }) if *t == at && *o + d.len() as i64 == offset => d.extend_from_slice(data),
                _ => s.items.push_back(Item::Bytes {
                    offset,
                    data: data.to_vec(),
                    at,
                }),
            }
        } else if let Err(e) = self.spill(&mut s, offset, data, at) {
            warn!(error = %e, offset, bytes = data.len(), "archive: cannot spool; recording a gap");
            match s.items.back_mut() {
                Some(Item::Gap { offset: o, len }) if *o + *len as i64 == offset => {
                    *len += data.len() as u64
                }
                _ => s.items.push_back(Item::Gap {
                    offset,
                    len: data.len() as u64,
                }),
            }
        }
        self.wake(&s);
    }

    fn spill(&self, s: &mut State, offset: i64, data: &[u8], at: i64) -> io::Result<()> {
        let extend = matches!(
            (s.items.back(), &s.spool),
            (Some(Item::Spooled { path, offset: o, len, .. }), Some((p, _, flen)))
                if path == p && *o + *len as i64 == offset && *flen < self.spool_file_limit
        );
        if !extend {
            if let Some((_, f, _)) = s.spool.take() {
                f.sync_all()?;
            }
            fs::create_dir_all(&self.spool_dir)?;
            s.spool_seq += 1;
            let path = self
                .spool_dir
                .join(format!("{offset:020}-{}.spool", s.spool_seq));
            let f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            s.spool = Some((path.clone(), f, 0));
            s.items.push_back(Item::Spooled {
                offset,
                len: 0,
                path,
                pos: 0,
                at,
            });
        }
        let Some((_, f, flen)) = s.spool.as_mut() else {
            return Err(io::Error::other("no spool file"));
        };
        f.write_all(data)?;
        *flen += data.len() as u64;
        if let Some(Item::Spooled { len, .. }) = s.items.back_mut() {
            *len += data.len() as u64;
        }
        Ok(())
    }

    /// The next item, waiting at most `wait`; None on timeout or when closed and empty.
    pub(super) fn pop(&self, wait: Duration) -> Option<Item> {
        let mut s = self.lock();
        if s.items.is_empty() && !s.closed {
            s.waiting = true;
            s = self
                .ready
                .wait_timeout(s, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.waiting = false;
        }
        let item = s.items.pop_front()?;
        if let Item::Bytes { data, .. } = &item {
            s.mem -= data.len() as u64;
        }
        if let Item::Spooled { path, .. } = &item {
            // The apply loop must start a new file: this one is the writer's now.
            if s.spool.as_ref().is_some_and(|(p, _, _)| p == path) {
                if let Some((_, f, _)) = s.spool.take() {
                    let _ = f.sync_all();
                }
            }
        }
        s.oldest_at = s.items.iter().find_map(|i| match i {
            Item::Bytes { at, .. } | Item::Spooled { at, .. } => Some(*at),
            _ => None,
        });
        Some(item)
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub(super) fn is_closed_and_empty(&self) -> bool {
        let s = self.lock();
        s.closed && s.items.is_empty()
    }

    /// (end offset of everything handed over, unix ms of the oldest queued byte).
    pub(super) fn position(&self) -> (i64, Option<i64>) {
        let s = self.lock();
        (s.applied_end, s.oldest_at)
    }
}

/// Read a spooled run back and remove its file.
pub(super) fn read_spooled(path: &Path, pos: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(pos))?;
    let mut out = Vec::new();
    f.take(len).read_to_end(&mut out)?;
    if out.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: {} bytes where {len} were spooled",
                path.display(),
                out.len()
            ),
        ));
    }
    let _ = fs::remove_file(path);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_bytes_go_to_the_spool_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path(), 10, 1 << 20);
        q.push_history("r", 0);
        q.push_bytes(0, b"0123456789");
        q.push_bytes(10, b"abc");
        q.push_bytes(13, b"def");
        let mut got = Vec::new();
        while let Some(i) = q.pop(Duration::from_millis(1)) {
            match i {
                Item::History { .. } | Item::Resumed { .. } => {}
                Item::Bytes { data, .. } => got.extend(data),
                Item::Spooled { path, pos, len, .. } => {
                    use std::os::unix::fs::PermissionsExt;
                    let m = fs::metadata(&path).unwrap().permissions().mode();
                    assert_eq!(m & 0o777, 0o600);
                    got.extend(read_spooled(&path, pos, len).unwrap())
                }
                Item::Gap { .. } => panic!("no gap expected"),
            }
        }
        assert_eq!(got, b"0123456789abcdef");
        assert_eq!(q.position().0, 16);
    }

    #[test]
    fn bytes_of_one_millisecond_in_a_row_are_one_item() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path(), 1 << 20, 1 << 20);
        q.push_history("r", 0);
        q.push_bytes_at(0, b"ab", 7);
        q.push_bytes_at(2, b"cd", 7);
        q.push_bytes_at(4, b"e", 8); // a new millisecond
        q.push_bytes_at(10, b"f", 8); // not where the last ended
        q.push_bytes_at(11, b"g", 8);
        let mut got = Vec::new();
        while let Some(i) = q.pop(Duration::from_millis(1)) {
            if let Item::Bytes { offset, data, at } = i {
                got.push((offset, data, at));
            }
        }
        assert_eq!(
            got,
            vec![
                (0, b"abcd".to_vec(), 7),
                (4, b"e".to_vec(), 8),
                (10, b"fg".to_vec(), 8)
            ]
        );
        assert_eq!(q.position().0, 12);
    }

    #[test]
    fn a_waiting_writer_is_woken_by_a_push() {
        let dir = tempfile::tempdir().unwrap();
        let q = std::sync::Arc::new(Queue::new(dir.path(), 1 << 20, 1 << 20));
        let t = std::time::Instant::now();
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || q.pop(Duration::from_secs(30)))
        };
        // Pushed while the writer waits (or before it does: either way it gets it).
        std::thread::sleep(Duration::from_millis(100));
        q.push_bytes(0, b"x");
        assert!(matches!(writer.join().unwrap(), Some(Item::Bytes { .. })));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn an_unwritable_spool_records_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("archive-spool"), b"a file, not a dir").unwrap();
        let q = Queue::new(dir.path(), 0, 1 << 20);
        q.push_bytes(5, b"abc");
        q.push_bytes(8, b"de");
        match q.pop(Duration::from_millis(1)) {
            Some(Item::Gap { offset: 5, len: 5 }) => {}
            other => panic!("{other:?}"),
        }
    }
}
